//! Channel ids, message ids and published messages: the values every layer shares.
//!
//! A [`Message`] is built once by the engine when it accepts a publication. Its wire encodings
//! are made at that moment and shared (reference-counted) by every subscriber on every core,
//! so delivering a message never formats it again (spec/publishing.md §4).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// Length in bytes of a channel id (32 lower-case hex digits on the wire).
pub const CHANNEL_ID_LEN: usize = 16;
/// Length in bytes of a message id (26 decimal digits read as hex, spec/history.md §1).
pub const MESSAGE_ID_LEN: usize = 13;

/// A channel id: 16 raw bytes, written as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub [u8; CHANNEL_ID_LEN]);

impl ChannelId {
    /// Parses exactly 32 lower-case hex digits.
    pub fn from_hex(hex: &[u8]) -> Option<Self> {
        if hex.len() != CHANNEL_ID_LEN * 2 {
            return None;
        }
        let mut out = [0u8; CHANNEL_ID_LEN];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            out[i] = (lower_hex_digit(pair[0])? << 4) | lower_hex_digit(pair[1])?;
        }
        Some(Self(out))
    }

    /// The 32-digit lower-case hex form.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Whether a channel id names a private channel or the public id of one (spec/channels.md §1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum ChannelKind {
    /// The private (per user, per type) channel; the receiver of back-end publications.
    Private,
    /// The public id of a private channel; the receiver of browser publications.
    Public,
}

/// A receiver of messages: a channel id together with its kind.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Channel {
    /// Private or public.
    pub kind: ChannelKind,
    /// The raw id.
    pub id: ChannelId,
}

impl Channel {
    /// A private channel.
    pub fn private(id: ChannelId) -> Self {
        Self {
            kind: ChannelKind::Private,
            id,
        }
    }

    /// A public channel.
    pub fn public(id: ChannelId) -> Self {
        Self {
            kind: ChannelKind::Public,
            id,
        }
    }
}

/// A message id: the 26 decimal digits `SSSSSSSSSSCCCCCCCCCCCCCCCC` (10-digit start time of the
/// id source, 16-digit counter) stored as the 13 bytes those digits spell in hex. Byte order,
/// string order and publication order agree (spec/history.md §1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MessageId(pub [u8; MESSAGE_ID_LEN]);

impl MessageId {
    /// Number of decimal digits of a message id.
    pub const DIGITS: usize = MESSAGE_ID_LEN * 2;

    /// Builds the id from the id source's start time (Unix seconds, at most 10 digits) and its
    /// counter (at most 16 digits); larger values are reduced modulo the field width.
    pub fn new(start: u64, counter: u64) -> Self {
        let mut digits = [0u8; Self::DIGITS];
        write_decimal(&mut digits[..10], start);
        write_decimal(&mut digits[10..], counter);
        let mut out = [0u8; MESSAGE_ID_LEN];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            out[i] = (pair[0] << 4) | pair[1];
        }
        Self(out)
    }

    /// Parses exactly 26 decimal digits (the `mid` query parameter); anything else is `None`.
    pub fn parse(text: &[u8]) -> Option<Self> {
        if text.len() != Self::DIGITS || !text.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut out = [0u8; MESSAGE_ID_LEN];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            out[i] = ((pair[0] - b'0') << 4) | (pair[1] - b'0');
        }
        Some(Self(out))
    }

    /// Reads an id from its 13 raw bytes (the binary protocol), `None` unless every nibble is a
    /// decimal digit.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let raw: [u8; MESSAGE_ID_LEN] = bytes.try_into().ok()?;
        raw.iter()
            .all(|b| b >> 4 <= 9 && b & 0x0f <= 9)
            .then_some(Self(raw))
    }

    /// The 26 ASCII digits.
    pub fn digits(&self) -> [u8; Self::DIGITS] {
        let mut out = [0u8; Self::DIGITS];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = b'0' + (b >> 4);
            out[2 * i + 1] = b'0' + (b & 0x0f);
        }
        out
    }

    /// The 10-digit start-time part.
    pub fn start(&self) -> u64 {
        self.digits()[..10]
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'))
    }

    /// The 16-digit counter part: the `id` field of the text format.
    pub fn counter(&self) -> u64 {
        self.digits()[10..]
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digits are ASCII by construction.
        f.write_str(std::str::from_utf8(&self.digits()).unwrap_or("?"))
    }
}

/// Who published a message (spec/publishing.md §5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sender {
    /// A trusted back end (the publisher listener).
    Backend,
    /// A browser, publishing to public channels; carries the publisher's public channel id.
    Client(ChannelId),
}

/// A published message with its wire encodings, shared by all subscribers of all cores.
#[derive(Debug)]
pub struct Message {
    /// The message id.
    pub id: MessageId,
    /// The message body as published (JSON text).
    pub body: Bytes,
    /// Unix seconds of acceptance.
    pub created: u32,
    /// Seconds the message is kept for replay; 0 = delivered live only, never stored.
    pub expiry: u32,
    /// Who published it.
    pub sender: Sender,
    /// The channels it was published to (deduplicated).
    pub receivers: Box<[Channel]>,
    /// The text-mode encoding `#!NGINXNMS!#{…}#!NGINXNME!#` (spec/text-format.md).
    pub text: Bytes,
    /// The binary-mode encoding: a protobuf `ResponseBatch` holding this one message
    /// (spec/binary.md §2). Batches concatenate into one batch.
    pub binary: Bytes,
}

impl Message {
    /// Builds a message and its wire encodings; `now_ms` is the wall clock in Unix milliseconds.
    pub fn new(
        id: MessageId,
        body: Bytes,
        expiry: u32,
        sender: Sender,
        receivers: Box<[Channel]>,
        now_ms: u64,
    ) -> Self {
        let created = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        Self {
            id,
            text: crate::proto::text::encode(id, &body, now_ms),
            binary: crate::proto::pb::encode_message(id, &body, expiry, created, sender),
            body,
            created,
            expiry,
            sender,
            receivers,
        }
    }

    /// The encoding of a wire format.
    pub fn encoded(&self, format: Format) -> &Bytes {
        match format {
            Format::Text => &self.text,
            Format::Binary => &self.binary,
        }
    }
}

/// The wire format a subscriber asked for (spec/binary.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `#!NGINXNMS!#…#!NGINXNME!#` text (queue-server versions 1–3).
    Text,
    /// Protobuf `ResponseBatch` (`binaryMode=true`, queue-server version 4).
    Binary,
}

/// A message as it travels between the engine and the cores.
pub type SharedMessage = Arc<Message>;

fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn write_decimal(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_round_trips_and_orders() {
        let a = MessageId::new(1_700_000_000, 1);
        let b = MessageId::new(1_700_000_000, 10);
        let c = MessageId::new(1_700_000_001, 0);
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "17000000000000000000000001");
        assert_eq!(MessageId::parse(a.to_string().as_bytes()), Some(a));
        assert_eq!(b.counter(), 10);
        assert_eq!(MessageId::from_bytes(&a.0), Some(a));
        assert_eq!(MessageId::parse(b"1234"), None);
        assert_eq!(MessageId::parse(b"1700000000000000000000000x"), None);
        assert_eq!(MessageId::from_bytes(&[0xff; 13]), None);
    }

    #[test]
    fn channel_id_hex() {
        let hex = b"0123456789abcdef0123456789abcdef";
        let id = ChannelId::from_hex(hex).expect("valid");
        assert_eq!(id.to_hex().as_bytes(), hex);
        assert_eq!(
            ChannelId::from_hex(b"0123456789ABCDEF0123456789abcdef"),
            None
        );
        assert_eq!(ChannelId::from_hex(b"0123"), None);
    }
}
