//! WebSocket client side: the upgrade request, server-frame parsing, masked client frames.
//!
//! Servers send unmasked frames (RFC 6455 §5.1); a client masks every frame it sends. The load
//! generator never sends data, only pongs for pings and a close at the end.

/// Largest server frame payload the parser accepts.
///
/// A text frame carries one or more whole messages; the server's default payload bound is 1 MiB per
/// message and it may join several queued ones, so 16 MiB is generous without letting a broken length
/// field make a subscriber allocate without end.
pub const DEFAULT_MAX_FRAME_PAYLOAD: u64 = 16 << 20;

/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The `Sec-WebSocket-Key` sent with every upgrade: the RFC's sample nonce.
///
/// The load generator does not check `Sec-WebSocket-Accept` (a 101 is enough), so a fixed valid key
/// keeps the request cheap to build.
pub const UPGRADE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: continues a fragmented data message.
    Continuation,
    /// 0x1: UTF-8 text.
    Text,
    /// 0x2: binary data.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    /// The 4-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    fn from_bits(b: u8) -> Option<Self> {
        Some(match b {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong are control frames.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Whether a frame ends its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fin {
    /// FIN bit set: last frame of the message.
    Final,
    /// FIN bit clear: more fragments follow.
    More,
}

/// One parsed server frame, borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// FIN bit.
    pub fin: Fin,
    /// Opcode.
    pub opcode: Opcode,
    /// Payload (servers never mask).
    pub payload: &'a [u8],
}

/// A server frame the client must refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// RSV1-3 set without a negotiated extension.
    #[error("reserved bits set")]
    ReservedBits,
    /// Opcode 3-7 or B-F.
    #[error("unknown opcode")]
    UnknownOpcode,
    /// The server masked a frame (RFC 6455 §5.1 forbids it).
    #[error("masked server frame")]
    MaskedFrame,
    /// A control frame fragmented or longer than 125 bytes.
    #[error("bad control frame")]
    BadControl,
    /// 64-bit length with the top bit set, or over the bound.
    #[error("frame too long")]
    TooLong,
}

impl WsError {
    /// The WebSocket close code for this error.
    pub fn code(self) -> u16 {
        match self {
            Self::TooLong => 1009,
            _ => 1002,
        }
    }

    /// A short static reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::ReservedBits => "reserved bits set",
            Self::UnknownOpcode => "unknown opcode",
            Self::MaskedFrame => "masked server frame",
            Self::BadControl => "bad control frame",
            Self::TooLong => "frame too long",
        }
    }
}

/// Parses one server frame from the front of `buf`.
///
/// `Ok(Some((consumed, frame)))` when a whole frame is there, `Ok(None)` when more bytes are needed.
pub fn parse_server_frame(
    buf: &[u8],
    max_payload: u64,
) -> Result<Option<(usize, Frame<'_>)>, WsError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::ReservedBits);
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsError::UnknownOpcode)?;
    let fin = if b0 & 0x80 != 0 {
        Fin::Final
    } else {
        Fin::More
    };
    if b1 & 0x80 != 0 {
        return Err(WsError::MaskedFrame);
    }
    let (len, head) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let len = u64::from_be_bytes(a);
                if len >> 63 != 0 {
                    return Err(WsError::TooLong);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (fin == Fin::More || len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(WsError::BadControl);
    }
    if len > max_payload {
        return Err(WsError::TooLong);
    }
    let len = usize::try_from(len).map_err(|_| WsError::TooLong)?;
    let end = head + len;
    match buf.get(head..end) {
        Some(payload) => Ok(Some((
            end,
            Frame {
                fin,
                opcode,
                payload,
            },
        ))),
        None => Ok(None),
    }
}

/// Appends one final, masked client frame to `out` (control payloads are cut to 125 bytes).
pub fn encode_client_frame(opcode: Opcode, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let payload = if opcode.is_control() && payload.len() > MAX_CONTROL_PAYLOAD {
        &payload[..MAX_CONTROL_PAYLOAD]
    } else {
        payload
    };
    out.push(0x80 | opcode.bits());
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// The close payload a client sends: status code 1000 (normal closure).
pub fn normal_close_payload() -> [u8; 2] {
    1000u16.to_be_bytes()
}

/// The HTTP/1.1 upgrade request for `path_and_query` on `host`.
pub fn upgrade_request(path_and_query: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A small xorshift generator for frame masks (masks need not be secret for a load generator).
#[derive(Debug, Clone)]
pub struct MaskGen(u64);

impl MaskGen {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 4-byte mask.
    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        let [a, b, c, d, ..] = x.to_le_bytes();
        [a, b, c, d]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = DEFAULT_MAX_FRAME_PAYLOAD;

    fn server_frame(fin: Fin, op: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![if fin == Fin::Final { 0x80 } else { 0 } | op.bits()];
        let len = payload.len();
        if len < 126 {
            v.push(len as u8);
        } else if len <= 0xFFFF {
            v.push(126);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            v.push(127);
            v.extend_from_slice(&(len as u64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    type Parsed = Vec<(Fin, Opcode, Vec<u8>)>;

    fn parse_all(buf: &[u8]) -> Result<(usize, Parsed), WsError> {
        let mut at = 0;
        let mut out = Vec::new();
        while let Some((n, f)) = parse_server_frame(&buf[at..], MAX)? {
            out.push((f.fin, f.opcode, f.payload.to_vec()));
            at += n;
        }
        Ok((at, out))
    }

    #[test]
    fn parses_7_16_64_bit_lengths_split_at_every_byte() {
        let small = b"hello".to_vec();
        let mid = vec![b'm'; 300];
        let big = vec![b'b'; 70_000];
        let mut stream = server_frame(Fin::Final, Opcode::Text, &small);
        stream.extend(server_frame(Fin::Final, Opcode::Ping, b"p"));
        stream.extend(server_frame(Fin::More, Opcode::Text, &mid));
        stream.extend(server_frame(Fin::Final, Opcode::Continuation, &big));
        stream.extend(server_frame(Fin::Final, Opcode::Text, b""));
        let want = vec![
            (Fin::Final, Opcode::Text, small.clone()),
            (Fin::Final, Opcode::Ping, b"p".to_vec()),
            (Fin::More, Opcode::Text, mid.clone()),
            (Fin::Final, Opcode::Continuation, big.clone()),
            (Fin::Final, Opcode::Text, Vec::new()),
        ];
        let (n, got) = parse_all(&stream).expect("ok");
        assert_eq!(n, stream.len());
        assert_eq!(got, want);
        // Every split point: parse the prefix, then prefix-leftover + rest.
        let step = 7; // all cuts near the heads, sampled inside the 70 kB payload
        let cuts: Vec<usize> = (0..=stream.len())
            .filter(|c| *c < 400 || c % step == 0 || *c > stream.len() - 40)
            .collect();
        for cut in cuts {
            let (n1, mut got1) = parse_all(&stream[..cut]).expect("prefix");
            let mut rest = stream[n1..cut].to_vec();
            rest.extend_from_slice(&stream[cut..]);
            let (n2, got2) = parse_all(&rest).expect("rest");
            assert_eq!(n1 + n2, stream.len(), "cut {cut}");
            got1.extend(got2);
            assert_eq!(got1, want, "cut {cut}");
        }
    }

    #[test]
    fn every_byte_of_a_small_stream() {
        let mut stream = server_frame(Fin::Final, Opcode::Text, &[b'a'; 130]);
        stream.extend(server_frame(Fin::Final, Opcode::Close, &[3, 232]));
        for cut in 0..=stream.len() {
            let (n1, mut got) = parse_all(&stream[..cut]).expect("prefix");
            let mut rest = stream[n1..cut].to_vec();
            rest.extend_from_slice(&stream[cut..]);
            let (n2, got2) = parse_all(&rest).expect("rest");
            got.extend(got2);
            assert_eq!(n1 + n2, stream.len());
            assert_eq!(got.len(), 2);
            assert_eq!(got[1].1, Opcode::Close);
        }
    }

    #[test]
    fn refuses_bad_frames() {
        assert_eq!(
            parse_server_frame(&[0x81 | 0x40, 0], MAX),
            Err(WsError::ReservedBits)
        );
        assert_eq!(
            parse_server_frame(&[0x83, 0], MAX),
            Err(WsError::UnknownOpcode)
        );
        assert_eq!(
            parse_server_frame(&[0x81, 0x81, 1, 2, 3, 4, 0], MAX),
            Err(WsError::MaskedFrame)
        );
        assert_eq!(
            parse_server_frame(&[0x09, 0], MAX),
            Err(WsError::BadControl)
        );
        assert_eq!(
            parse_server_frame(&[0x89, 126, 0, 126], MAX),
            Err(WsError::BadControl)
        );
        let huge = [0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_server_frame(&huge, MAX), Err(WsError::TooLong));
        assert_eq!(
            parse_server_frame(&[0x81, 126, 1, 0], 100),
            Err(WsError::TooLong)
        );
        assert_eq!(parse_server_frame(&[0x81], MAX), Ok(None));
        assert_eq!(parse_server_frame(&[0x81, 127, 0, 0], MAX), Ok(None));
        assert_eq!(WsError::TooLong.code(), 1009);
        assert_eq!(WsError::MaskedFrame.code(), 1002);
    }

    #[test]
    fn client_frames_are_masked() {
        let mut out = Vec::new();
        let mask = [1, 2, 3, 4];
        encode_client_frame(Opcode::Pong, b"abcde", mask, &mut out);
        assert_eq!(out[0], 0x8A);
        assert_eq!(out[1], 0x80 | 5);
        assert_eq!(&out[2..6], &mask);
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, b"abcde");
        let mut long = Vec::new();
        encode_client_frame(Opcode::Text, &[0u8; 300], mask, &mut long);
        assert_eq!(&long[1..4], &[0x80 | 126, 1, 44]);
        assert_eq!(long.len(), 4 + 4 + 300);
        let mut ctl = Vec::new();
        encode_client_frame(Opcode::Ping, &[0u8; 200], mask, &mut ctl);
        assert_eq!(ctl[1], 0x80 | 125);
    }

    #[test]
    fn upgrade_request_shape() {
        let r = String::from_utf8(upgrade_request("/bitrix/subws/?CHANNEL_ID=ab", "h:1"))
            .expect("utf8");
        assert!(r.starts_with("GET /bitrix/subws/?CHANNEL_ID=ab HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(r.contains("Upgrade: websocket\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        let mut g = MaskGen::new(0);
        assert_ne!(g.next_mask(), g.next_mask());
    }
}
