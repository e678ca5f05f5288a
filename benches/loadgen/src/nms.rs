//! The text-mode delivery stream and the load generator's own message bodies.
//!
//! A WebSocket text frame or a long-poll body is a concatenation of units
//! `#!NGINXNMS!#{"id":N,"mid":"…","channel":"-","tag":"…","time":"…","text":<body>}#!NGINXNME!#`.
//! [`split_next`] cuts one unit off the front of a byte stream, [`decode_unit`] reads the envelope
//! and the load generator's body, and [`encode_body`] makes that body on the publishing side.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;

/// The marker that opens every unit of the text-mode stream.
pub const START_MARKER: &[u8] = b"#!NGINXNMS!#";
/// The marker that closes every unit of the text-mode stream.
pub const END_MARKER: &[u8] = b"#!NGINXNME!#";

/// Largest unit (markers included) the splitter waits for before giving up.
///
/// The server's own default payload bound is 1 MiB (`limits.maxPayload`); 16 MiB leaves room for the
/// envelope and for `--payload-bytes` experiments while keeping a broken stream from growing a
/// subscriber's buffer without end.
pub const DEFAULT_MAX_UNIT_BYTES: usize = 16 << 20;

/// Why the delivery stream could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The stream does not begin with the start marker.
    #[error("bytes before the start marker")]
    Garbage,
    /// No end marker within [`DEFAULT_MAX_UNIT_BYTES`] (or the bound given).
    #[error("unit longer than the bound")]
    TooLong,
}

impl SplitError {
    /// The WebSocket close code this error maps to (1007: inconsistent payload data).
    pub fn code(self) -> u16 {
        1007
    }

    /// A short static reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Garbage => "bytes before the start marker",
            Self::TooLong => "unit longer than the bound",
        }
    }
}

/// Cuts the first unit off `buf`.
///
/// `Ok(Some((consumed, json)))`: `buf[..consumed]` is one whole unit and `buf[json]` is the JSON
/// between its markers. `Ok(None)`: `buf` is a proper prefix of a unit (or empty).
pub fn split_next(
    buf: &[u8],
    max_unit: usize,
) -> Result<Option<(usize, Range<usize>)>, SplitError> {
    if buf.len() < START_MARKER.len() {
        return if START_MARKER.starts_with(buf) {
            Ok(None)
        } else {
            Err(SplitError::Garbage)
        };
    }
    if !buf.starts_with(START_MARKER) {
        return Err(SplitError::Garbage);
    }
    let body = &buf[START_MARKER.len()..];
    match find(body, END_MARKER) {
        Some(at) => {
            let json = START_MARKER.len()..START_MARKER.len() + at;
            Ok(Some((json.end + END_MARKER.len(), json)))
        }
        None if buf.len() > max_unit => Err(SplitError::TooLong),
        None => Ok(None),
    }
}

/// First position of `needle` (non-empty) in `hay`: scan for its first byte, then compare.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut at = 0;
    while let Some(p) = hay.get(at..)?.iter().position(|&b| b == first) {
        let i = at + p;
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

/// One of the load generator's messages as a subscriber received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Global publish sequence number.
    pub seq: u64,
    /// Channel index (not the hex id) it was published to.
    pub ch: u64,
    /// Unix time in microseconds taken just before the publish request was written.
    pub ts_us: u64,
    /// The envelope's message id (26 digits), used as `mid` by long-poll subscribers.
    pub mid: Option<String>,
}

/// Why a unit could not be read as one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not an envelope whose `text.params` carries `seq`, `ch` and `ts`.
    #[error("unit is not a load-generator message")]
    NotOurs,
}

impl DecodeError {
    /// The WebSocket close code this error maps to (1007: inconsistent payload data).
    pub fn code(self) -> u16 {
        1007
    }

    /// A short static reason.
    pub fn reason(self) -> &'static str {
        "unit is not a load-generator message"
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    mid: Option<Cow<'a, str>>,
    text: Text,
}

#[derive(Deserialize)]
struct Text {
    params: Params,
}

#[derive(Deserialize)]
struct Params {
    seq: u64,
    ch: u64,
    ts: u64,
}

/// Reads the JSON between the markers (the `json` range of [`split_next`]).
pub fn decode_unit(json: &[u8]) -> Result<Delivery, DecodeError> {
    let env: Envelope<'_> = serde_json::from_slice(json).map_err(|_| DecodeError::NotOurs)?;
    Ok(Delivery {
        seq: env.text.params.seq,
        ch: env.text.params.ch,
        ts_us: env.text.params.ts,
        mid: env.mid.map(Cow::into_owned),
    })
}

/// Reads a bare published body (nchan's plain framing, a protobuf message's `body`): the
/// load generator's `{"module_id":"lg","command":"m","params":{…}}` without an envelope.
pub fn decode_body(json: &[u8]) -> Result<Delivery, DecodeError> {
    let text: Text = serde_json::from_slice(json).map_err(|_| DecodeError::NotOurs)?;
    Ok(Delivery {
        seq: text.params.seq,
        ch: text.params.ch,
        ts_us: text.params.ts,
        mid: None,
    })
}

/// The publish body for message `seq` on channel index `ch`, stamped `ts_us`.
///
/// `{"module_id":"lg","command":"m","params":{"seq":…,"ch":…,"ts":…}}`; when `pad_to` is larger than
/// that, a `"pad":"xxx…"` member brings the body to exactly `pad_to` bytes.
pub fn encode_body(seq: u64, ch: u64, ts_us: u64, pad_to: usize) -> String {
    let base = format!(
        r#"{{"module_id":"lg","command":"m","params":{{"seq":{seq},"ch":{ch},"ts":{ts_us}"#
    );
    const PAD_OVERHEAD: usize = r#","pad":"""#.len();
    const TAIL: &str = "}}";
    let plain = base.len() + TAIL.len();
    if pad_to > plain + PAD_OVERHEAD {
        let fill = pad_to - plain - PAD_OVERHEAD;
        let mut s = String::with_capacity(pad_to);
        s.push_str(&base);
        s.push_str(r#","pad":""#);
        s.extend(std::iter::repeat_n('x', fill));
        s.push('"');
        s.push_str(TAIL);
        s
    } else {
        base + TAIL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seq: u64, ch: u64, mid: &str) -> Vec<u8> {
        let body = encode_body(seq, ch, 1_700_000_000_000_000 + seq, 0);
        format!(
            "#!NGINXNMS!#{{\"id\":{seq},\"mid\":\"{mid}\",\"channel\":\"-\",\"tag\":\"123\",\"time\":\"Thu, 29 Jun 2017 09:50:16 GMT\",\"text\":{body}}}#!NGINXNME!#"
        )
        .into_bytes()
    }

    fn split_all(buf: &mut Vec<u8>, out: &mut Vec<Delivery>) -> Result<(), SplitError> {
        while let Some((n, json)) = split_next(buf, DEFAULT_MAX_UNIT_BYTES)? {
            out.push(decode_unit(&buf[json]).expect("decodes"));
            buf.drain(..n);
        }
        Ok(())
    }

    #[test]
    fn splits_a_concatenation() {
        let mut stream = unit(1, 0, "00000000000000000000000001");
        stream.extend(unit(2, 1, "00000000000000000000000002"));
        stream.extend(unit(3, 0, "00000000000000000000000003"));
        let mut out = Vec::new();
        let mut buf = stream.clone();
        split_all(&mut buf, &mut out).expect("ok");
        assert!(buf.is_empty());
        assert_eq!(out.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(out[1].ch, 1);
        assert_eq!(out[2].mid.as_deref(), Some("00000000000000000000000003"));
        assert_eq!(out[0].ts_us, 1_700_000_000_000_001);
    }

    #[test]
    fn split_at_every_byte() {
        let mut stream = unit(10, 3, "00000000000000000000000010");
        stream.extend(unit(11, 4, "00000000000000000000000011"));
        for cut in 0..=stream.len() {
            let mut buf = stream[..cut].to_vec();
            let mut out = Vec::new();
            split_all(&mut buf, &mut out).expect("prefix ok");
            buf.extend_from_slice(&stream[cut..]);
            split_all(&mut buf, &mut out).expect("rest ok");
            assert!(buf.is_empty(), "cut {cut}");
            assert_eq!(
                out.iter().map(|d| d.seq).collect::<Vec<_>>(),
                vec![10, 11],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn rejects_garbage_and_bounds_length() {
        assert_eq!(split_next(b"x", 100), Err(SplitError::Garbage));
        assert_eq!(split_next(b"#!NGINXNMx", 100), Err(SplitError::Garbage));
        assert_eq!(
            split_next(b"hello world, not a unit", 100),
            Err(SplitError::Garbage)
        );
        assert_eq!(split_next(b"", 100), Ok(None));
        assert_eq!(split_next(b"#!NGI", 100), Ok(None));
        let long = [START_MARKER, &[b'a'; 200][..]].concat();
        assert_eq!(split_next(&long, 100), Err(SplitError::TooLong));
        assert_eq!(split_next(&long, 1000), Ok(None));
        assert_eq!(SplitError::TooLong.code(), 1007);
    }

    #[test]
    fn foreign_units_are_not_ours() {
        assert_eq!(
            decode_unit(b"{\"text\":{\"x\":1}}"),
            Err(DecodeError::NotOurs)
        );
        assert_eq!(decode_unit(b"not json"), Err(DecodeError::NotOurs));
        let d =
            decode_unit(br#"{"text":{"params":{"seq":5,"ch":2,"ts":9,"pad":"xx"}}}"#).expect("ok");
        assert_eq!((d.seq, d.ch, d.ts_us, d.mid), (5, 2, 9, None));
    }

    #[test]
    fn finds_markers() {
        assert_eq!(find(b"ab#!NGINXNME!#", END_MARKER), Some(2));
        assert_eq!(find(b"#x#!NGINXNME#!NGINXNME!#", END_MARKER), Some(12));
        assert_eq!(find(b"#!NGINXNME!", END_MARKER), None);
        assert_eq!(find(b"", END_MARKER), None);
        assert_eq!(find(b"abc", b""), None);
    }

    #[test]
    fn bare_bodies() {
        let d = decode_body(encode_body(7, 3, 11, 200).as_bytes()).expect("ours");
        assert_eq!((d.seq, d.ch, d.ts_us, d.mid), (7, 3, 11, None));
        assert_eq!(decode_body(b"{}"), Err(DecodeError::NotOurs));
        assert_eq!(
            decode_body(unit(1, 0, "00000000000000000000000001").as_slice()),
            Err(DecodeError::NotOurs)
        );
    }

    #[test]
    fn body_pads_to_exact_size() {
        let plain = encode_body(1, 2, 3, 0);
        assert_eq!(
            plain,
            r#"{"module_id":"lg","command":"m","params":{"seq":1,"ch":2,"ts":3}}"#
        );
        for want in [
            0,
            10,
            plain.len(),
            plain.len() + 5,
            plain.len() + 9,
            100,
            4096,
        ] {
            let b = encode_body(1, 2, 3, want);
            assert!(
                b.len() == want.max(plain.len()) || b.len() == plain.len(),
                "{want} {}",
                b.len()
            );
            let v: serde_json::Value = serde_json::from_str(&b).expect("json");
            assert_eq!(v["params"]["seq"], 1);
        }
        assert_eq!(encode_body(1, 2, 3, 4096).len(), 4096);
    }
}
