//! Sans-IO WebSocket (RFC 6455) codec for the server side.
//!
//! The server keeps no `tungstenite` `WebSocketContext` per connection (its buffers are far larger
//! than the ~2 KiB budget of an idle connection). Instead each connection owns a small [`Reader`]
//! (a state enum plus a `Vec` that is empty unless a fragmented message is being assembled) and
//! writes its own frames with [`frame_header`], [`control_frame`] and [`close_frame`].
//! `tungstenite` is used only to parse frame headers and to derive the handshake accept key.

use std::io::Cursor;
use std::mem;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Largest payload accepted in one client frame.
///
/// It matches the 1 MiB publish payload limit: a browser publication travelling over the
/// WebSocket never needs more, and rejecting a larger frame as soon as its header is read
/// keeps a peer from making us buffer an arbitrary amount of data.
pub const DEFAULT_MAX_FRAME_PAYLOAD: usize = 1024 * 1024;

/// Largest total payload of one (possibly fragmented) client message.
///
/// The same 1 MiB publish payload limit as [`DEFAULT_MAX_FRAME_PAYLOAD`]: fragmenting must not be a
/// way around the frame limit.
pub const DEFAULT_MAX_MESSAGE: usize = 1024 * 1024;

/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest close reason: a control payload minus the 2-byte status code (RFC 6455 §5.5.1).
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(client_key: &str) -> String {
    tungstenite::handshake::derive_accept_key(client_key.trim().as_bytes())
}

/// A client frame or message that breaks RFC 6455 or our limits; the connection must be closed
/// with [`WsError::close_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// A client frame without a mask (§5.1).
    Unmasked,
    /// An RSV bit set although no extension was negotiated (§5.2).
    ReservedBits,
    /// A reserved opcode (§5.2).
    UnknownOpcode,
    /// A control frame without FIN (§5.5).
    FragmentedControl,
    /// A control frame with more than 125 payload bytes (§5.5).
    ControlTooLong,
    /// A frame payload above the reader's frame limit.
    FrameTooLarge,
    /// A message total above the reader's message limit.
    MessageTooLarge,
    /// A continuation frame with no fragmented message in progress (§5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress (§5.4).
    ExpectedContinuation,
    /// A text message or close reason that is not UTF-8 (§8.1).
    InvalidUtf8,
    /// A close status code that must not be received (§7.4).
    InvalidCloseCode,
    /// A close payload of exactly one byte (§5.5.1).
    BadClosePayload,
}

impl WsError {
    /// The close status code to send for this error (§7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            WsError::InvalidUtf8 => 1007,
            WsError::FrameTooLarge | WsError::MessageTooLarge => 1009,
            WsError::Unmasked
            | WsError::ReservedBits
            | WsError::UnknownOpcode
            | WsError::FragmentedControl
            | WsError::ControlTooLong
            | WsError::UnexpectedContinuation
            | WsError::ExpectedContinuation
            | WsError::InvalidCloseCode
            | WsError::BadClosePayload => 1002,
        }
    }

    /// A short reason for the close frame (at most 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            WsError::Unmasked => "client frame not masked",
            WsError::ReservedBits => "reserved bits set",
            WsError::UnknownOpcode => "unknown opcode",
            WsError::FragmentedControl => "fragmented control frame",
            WsError::ControlTooLong => "control frame too long",
            WsError::FrameTooLarge => "frame too large",
            WsError::MessageTooLarge => "message too large",
            WsError::UnexpectedContinuation => "unexpected continuation frame",
            WsError::ExpectedContinuation => "expected continuation frame",
            WsError::InvalidUtf8 => "invalid UTF-8",
            WsError::InvalidCloseCode => "invalid close code",
            WsError::BadClosePayload => "bad close payload",
        }
    }
}

/// One complete client message after reassembly.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message; the bytes are valid UTF-8.
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping with its application data.
    Ping(Vec<u8>),
    /// A pong with its application data.
    Pong(Vec<u8>),
    /// A close frame: its status code and reason, or `None` if it had no payload.
    Close(Option<(u16, String)>),
}

/// Which data message, if any, is being assembled from fragments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Assembling {
    /// No fragmented message in progress.
    #[default]
    Idle,
    /// A fragmented text message in progress.
    Text,
    /// A fragmented binary message in progress.
    Binary,
}

/// Per-connection reassembly state (small: an enum + a Vec that is empty unless a fragmented
/// message is in progress).
///
/// [`Reader::default`] uses [`DEFAULT_MAX_FRAME_PAYLOAD`] and [`DEFAULT_MAX_MESSAGE`].
#[derive(Debug)]
pub struct Reader {
    /// The fragmented message in progress, if any.
    state: Assembling,
    /// The unmasked payload so far of the fragmented message in progress.
    partial: Vec<u8>,
    /// Largest payload of one frame.
    max_frame: usize,
    /// Largest total payload of one message.
    max_message: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_PAYLOAD, DEFAULT_MAX_MESSAGE)
    }
}

impl Reader {
    /// A reader accepting frames of at most `max_frame` and messages of at most `max_message`
    /// payload bytes.
    pub fn new(max_frame: usize, max_message: usize) -> Self {
        Self {
            state: Assembling::Idle,
            partial: Vec::new(),
            max_frame,
            max_message,
        }
    }

    /// True while a fragmented message is being assembled (so callers know state is held).
    pub fn in_progress(&self) -> bool {
        self.state != Assembling::Idle
    }

    /// Decodes at most one frame from `buf`. Ok(None): need more bytes. Ok(Some((consumed, None))): a
    /// non-final data fragment was absorbed. Ok(Some((consumed, Some(msg)))): a complete message.
    ///
    /// Nothing changes on Ok(None), so the caller re-feeds the same bytes plus more later.
    pub fn read(&mut self, buf: &[u8]) -> Result<Option<(usize, Option<Incoming>)>, WsError> {
        let mut cursor = Cursor::new(buf);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            // On an in-memory cursor the only error `parse` reports is a reserved opcode (§5.2).
            Err(_) => return Err(WsError::UnknownOpcode),
        };
        // RFC 6455 §5.2: RSV1-3 MUST be 0 unless an extension defining them was negotiated (none is).
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::ReservedBits);
        }
        // RFC 6455 §5.1: a server MUST close the connection on a frame that is not masked.
        let Some(mask) = header.mask else {
            return Err(WsError::Unmasked);
        };
        let data = match header.opcode {
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                // RFC 6455 §5.2: reserved opcodes fail the connection.
                return Err(WsError::UnknownOpcode);
            }
            OpCode::Control(_) => {
                // RFC 6455 §5.5: control frames MUST NOT be fragmented.
                if !header.is_final {
                    return Err(WsError::FragmentedControl);
                }
                // RFC 6455 §5.5: control frames MUST have a payload of 125 bytes or less.
                if len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(WsError::ControlTooLong);
                }
                None
            }
            OpCode::Data(data) => {
                // RFC 6455 §5.4: a continuation needs a started message; a new message must wait
                // until the fragmented one is finished.
                match (data, self.state) {
                    (Data::Continue, Assembling::Idle) => {
                        return Err(WsError::UnexpectedContinuation);
                    }
                    (Data::Text | Data::Binary, Assembling::Text | Assembling::Binary) => {
                        return Err(WsError::ExpectedContinuation);
                    }
                    _ => {}
                }
                Some(data)
            }
        };
        // Limits are checked on the header alone, before waiting for the payload.
        if len > self.max_frame as u64 {
            return Err(WsError::FrameTooLarge);
        }
        let len = usize::try_from(len).map_err(|_| WsError::FrameTooLarge)?;
        if data.is_some() && self.partial.len().saturating_add(len) > self.max_message {
            return Err(WsError::MessageTooLarge);
        }
        let header_len = usize::try_from(cursor.position()).map_err(|_| WsError::FrameTooLarge)?;
        let Some(end) = header_len.checked_add(len) else {
            return Err(WsError::FrameTooLarge);
        };
        let Some(masked) = buf.get(header_len..end) else {
            return Ok(None);
        };

        let msg = match header.opcode {
            OpCode::Control(control) => {
                let mut payload = Vec::with_capacity(masked.len());
                unmask_into(&mut payload, masked, mask);
                Some(control_message(control, payload)?)
            }
            OpCode::Data(data) => self.data_frame(data, header.is_final, masked, mask)?,
        };
        Ok(Some((end, msg)))
    }

    /// Absorbs one data frame whose header already passed every check.
    fn data_frame(
        &mut self,
        data: Data,
        is_final: bool,
        masked: &[u8],
        mask: [u8; 4],
    ) -> Result<Option<Incoming>, WsError> {
        let kind = match (data, self.state) {
            (Data::Continue, kind) => kind,
            (Data::Text, _) => Assembling::Text,
            (Data::Binary, _) => Assembling::Binary,
            // Rejected in `read`; kept total so no input can panic.
            (Data::Reserved(_), _) => return Err(WsError::UnknownOpcode),
        };
        unmask_into(&mut self.partial, masked, mask);
        if !is_final {
            self.state = kind;
            return Ok(None);
        }
        self.state = Assembling::Idle;
        let payload = mem::take(&mut self.partial);
        match kind {
            Assembling::Text => {
                // RFC 6455 §8.1: text data MUST be UTF-8; checked once the message is complete.
                if std::str::from_utf8(&payload).is_err() {
                    return Err(WsError::InvalidUtf8);
                }
                Ok(Some(Incoming::Text(payload)))
            }
            Assembling::Binary => Ok(Some(Incoming::Binary(payload))),
            Assembling::Idle => Err(WsError::UnexpectedContinuation),
        }
    }
}

/// Builds the message of a complete, unmasked control frame.
fn control_message(control: Control, payload: Vec<u8>) -> Result<Incoming, WsError> {
    match control {
        Control::Ping => Ok(Incoming::Ping(payload)),
        Control::Pong => Ok(Incoming::Pong(payload)),
        Control::Close => parse_close(&payload).map(Incoming::Close),
        Control::Reserved(_) => Err(WsError::UnknownOpcode),
    }
}

/// Parses a close payload: empty, or a status code and a UTF-8 reason (RFC 6455 §5.5.1).
fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, WsError> {
    match payload {
        [] => Ok(None),
        // RFC 6455 §5.5.1: a body, if present, starts with a 2-byte status code.
        [_] => Err(WsError::BadClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // RFC 6455 §7.4.1/§7.4.2: only defined or application codes may be received.
            if !is_valid_close_code(code) {
                return Err(WsError::InvalidCloseCode);
            }
            // RFC 6455 §5.5.1/§8.1: the reason is UTF-8.
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// Whether a peer may send `code` in a close frame: 1000–1003, 1007–1011 or 3000–4999 (§7.4).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Appends `masked` XOR the repeating 4-byte `mask` to `out` (RFC 6455 §5.3).
fn unmask_into(out: &mut Vec<u8>, masked: &[u8], mask: [u8; 4]) {
    out.reserve(masked.len());
    out.extend(masked.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// Server frames (FIN set, never masked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// A text frame (0x1).
    Text,
    /// A binary frame (0x2).
    Binary,
    /// A close frame (0x8).
    Close,
    /// A ping frame (0x9).
    Ping,
    /// A pong frame (0xA).
    Pong,
}

impl Opcode {
    /// The 4-bit opcode value (RFC 6455 §5.2).
    pub fn code(self) -> u8 {
        match self {
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }
}

/// Writes a server frame header for a payload of `len` bytes into `out` and returns the used length (2, 4 or 10 bytes).
pub fn frame_header(opcode: Opcode, len: usize, out: &mut [u8; 10]) -> usize {
    // RFC 6455 §5.2: FIN set, RSV 0, MASK 0 (a server MUST NOT mask, §5.1), shortest length form.
    out[0] = 0x80 | opcode.code();
    if len <= 125 {
        out[1] = len as u8;
        2
    } else if let Ok(len16) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len16.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// A whole server control frame (payload <= 125 bytes, truncated if longer).
///
/// Meant for `Ping`, `Pong` and `Close`; prefer [`close_frame`] for a close with a reason, since
/// truncating here does not respect UTF-8 boundaries.
pub fn control_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    let mut head = [0u8; 10];
    let n = frame_header(opcode, payload.len(), &mut head);
    let mut frame = Vec::with_capacity(n + payload.len());
    frame.extend_from_slice(&head[..n]);
    frame.extend_from_slice(payload);
    frame
}

/// A whole close frame: the code, then, if `reason` is not empty, the text `<code>: <reason>`
/// as the reference writes every close reason (spec/websocket.md §6), truncated to 123 bytes at
/// a UTF-8 char boundary. An empty `reason` gives a frame with the code only.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let text = if reason.is_empty() {
        String::new()
    } else {
        format!("{code}: {reason}")
    };
    let mut cut = text.len().min(MAX_CLOSE_REASON);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&text.as_bytes()[..cut]);
    control_frame(Opcode::Close, &payload)
}

#[cfg(test)]
mod tests;
