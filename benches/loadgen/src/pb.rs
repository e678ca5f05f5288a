//! The binary-mode delivery format: just enough protobuf to read a `ResponseBatch`.
//!
//! A binary WebSocket message or long-poll body is one `ResponseBatch` (spec/binary.md §2):
//! `responses (1)` → `outgoingMessages (1)` → `messages (1)` → `OutgoingMessage { id (1) bytes,
//! body (2) string, … }`. Other responses and fields are skipped by wire type, so a server that
//! adds fields stays readable.

/// Most varint bytes (a 64-bit value takes at most ten).
pub const MAX_VARINT_BYTES: usize = 10;

/// A payload that is not a readable protobuf `ResponseBatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PbError {
    /// The bytes end inside a field.
    #[error("truncated protobuf")]
    Truncated,
    /// A varint longer than ten bytes.
    #[error("overlong varint")]
    Varint,
    /// Wire type 3, 4 (groups), 6 or 7.
    #[error("unsupported wire type")]
    WireType,
}

impl PbError {
    /// The WebSocket close code this error maps to (1007: inconsistent payload data).
    pub fn code(self) -> u16 {
        1007
    }

    /// A short static reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Truncated => "truncated protobuf",
            Self::Varint => "overlong varint",
            Self::WireType => "unsupported wire type",
        }
    }
}

/// One `OutgoingMessage`, borrowing from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The binary message id (13 bytes from pushpull).
    pub id: &'a [u8],
    /// The body as published.
    pub body: &'a [u8],
}

impl Outgoing<'_> {
    /// The message id as the `mid` a client sends back: lower-case hex of the id bytes.
    pub fn mid(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

enum Value<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], at: &mut usize) -> Result<u64, PbError> {
    let mut v = 0u64;
    for i in 0..MAX_VARINT_BYTES {
        let b = *buf.get(*at).ok_or(PbError::Truncated)?;
        *at += 1;
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(PbError::Varint)
}

/// Reads the next field of `buf` at `at`: its number and value.
fn field<'a>(buf: &'a [u8], at: &mut usize) -> Result<(u64, Value<'a>), PbError> {
    let key = varint(buf, at)?;
    let skip = |at: &mut usize, n: usize| -> Result<(), PbError> {
        if buf.len() - *at < n {
            return Err(PbError::Truncated);
        }
        *at += n;
        Ok(())
    };
    let value = match key & 7 {
        0 => {
            varint(buf, at)?;
            Value::Varint
        }
        1 => {
            skip(at, 8)?;
            Value::Fixed
        }
        5 => {
            skip(at, 4)?;
            Value::Fixed
        }
        2 => {
            let len = usize::try_from(varint(buf, at)?).map_err(|_| PbError::Truncated)?;
            let start = *at;
            skip(at, len)?;
            Value::Bytes(&buf[start..start + len])
        }
        _ => return Err(PbError::WireType),
    };
    Ok((key >> 3, value))
}

/// Calls `f` with every length-delimited field numbered `number` of the message `buf`.
fn each<'a>(
    buf: &'a [u8],
    number: u64,
    mut f: impl FnMut(&'a [u8]) -> Result<(), PbError>,
) -> Result<(), PbError> {
    let mut at = 0;
    while at < buf.len() {
        if let (n, Value::Bytes(b)) = field(buf, &mut at)?
            && n == number
        {
            f(b)?;
        }
    }
    Ok(())
}

/// Appends every `OutgoingMessage` of the `ResponseBatch` in `batch` to `out`, in order.
pub fn outgoing_messages<'a>(batch: &'a [u8], out: &mut Vec<Outgoing<'a>>) -> Result<(), PbError> {
    each(batch, 1, |response| {
        each(response, 1, |outgoing| {
            each(outgoing, 1, |message| {
                let mut m = Outgoing { id: &[], body: &[] };
                let mut at = 0;
                while at < message.len() {
                    match field(message, &mut at)? {
                        (1, Value::Bytes(b)) => m.id = b,
                        (2, Value::Bytes(b)) => m.body = b,
                        _ => {}
                    }
                }
                out.push(m);
                Ok(())
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// The two examples of spec/binary.md §2, written back to back (one 131-byte batch).
    fn spec_examples() -> Vec<u8> {
        let first = hex(
            "0a 4d 0a 4b 0a 49 0a 0d 17 00 00 00 00 00 00 00 00 00 00 00 42
             12 2c 7b 22 6d 6f 64 75 6c 65 5f 69 64 22 3a 22 69 6d 22 2c 22 63 6f
             6d 6d 61 6e 64 22 3a 22 78 22 2c 22 70 61 72 61 6d 73 22 3a 7b 7d 7d
             18 90 1c 25 00 f1 53 65 2a 02 08 02",
        );
        let second = hex(
            "0a 32 0a 30 0a 2e 0a 0d 17 00 00 00 00 00 00 00 00 00 00 00 42
             12 02 7b 7d 25 00 f1 53 65
             2a 14 08 01 12 10 fe dc ba 98 76 54 32 10 fe dc ba 98 76 54 32 10",
        );
        [first, second].concat()
    }

    #[test]
    fn reads_the_spec_examples() {
        let batch = spec_examples();
        assert_eq!(batch.len(), 131);
        let mut out = Vec::new();
        outgoing_messages(&batch, &mut out).expect("decodes");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].mid(), "17000000000000000000000042");
        assert_eq!(
            out[0].body,
            br#"{"module_id":"im","command":"x","params":{}}"#
        );
        assert_eq!(out[1].body, b"{}");
        assert_eq!(out[1].mid(), out[0].mid());
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix() {
        let batch = spec_examples();
        for cut in 0..batch.len() {
            let mut out = Vec::new();
            // Cutting inside a message must never yield a message with a wrong body.
            if outgoing_messages(&batch[..cut], &mut out).is_ok() {
                assert!(out.len() < 2, "cut {cut}");
            }
        }
    }

    #[test]
    fn skips_other_responses_and_rejects_bad_wire() {
        // Response with channelStats (field 2) only, then a fixed64 field at the batch level.
        let other = hex("0a 04 12 02 0a 00 09 01 02 03 04 05 06 07 08");
        let mut out = Vec::new();
        outgoing_messages(&other, &mut out).expect("skips");
        assert!(out.is_empty());
        let group = hex("0b");
        let long = [
            0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        ];
        let cut = hex("0a 05 0a");
        for (bytes, want) in [
            (&group[..], PbError::WireType),
            (&long[..], PbError::Varint),
            (&cut[..], PbError::Truncated),
        ] {
            let mut out = Vec::new();
            assert_eq!(outgoing_messages(bytes, &mut out), Err(want));
        }
        assert_eq!(PbError::Truncated.code(), 1007);
    }
}
