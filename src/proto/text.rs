//! The text wire format of queue-server versions 1–3 (spec/text-format.md).
//!
//! Every message is `#!NGINXNMS!#{"id":…,"mid":"…","channel":"-","tag":"…","time":"…","text":<body>}#!NGINXNME!#`
//! and several messages are concatenated with no separator. Clients cut frames with a regular
//! expression whose `.` matches no line terminator, so the encoder guarantees the frame holds no raw
//! CR, LF, U+2028 or U+2029 (spec/text-format.md §2).

use std::io::Write as _;

use bytes::Bytes;

use crate::message::MessageId;

/// Opening marker of a text-mode message.
pub const START_MARKER: &[u8] = b"#!NGINXNMS!#";
/// Closing marker of a text-mode message.
pub const END_MARKER: &[u8] = b"#!NGINXNME!#";
/// What both markers start with: a body never carries it raw.
const MARKER_PREFIX: &[u8] = b"#!NGINXNM";

/// Longest envelope around a body: the markers, the keys, a 20-digit counter, the mid, the tag
/// and a 29-byte date (160 bytes), rounded up.
const ENVELOPE_MAX: usize = 176;

/// Whether `body` is one JSON value (RFC 8259): UTF-8 text, any type, surrounding whitespace
/// allowed (spec/text-format.md §3).
///
/// UTF-8 is checked first: serde_json skips the contents of strings it ignores without
/// checking them, and a stray byte would reach WebSocket text frames, which browsers must
/// refuse (RFC 6455 §8.1), and differ between the text and binary encodings.
pub fn is_json(body: &[u8]) -> bool {
    std::str::from_utf8(body)
        .is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
}

/// Encodes one message in the text format.
///
/// `now_ms` is the wall clock in Unix milliseconds at encoding time: `tag` is its last three
/// digits and `time` its HTTP date, as the reference server writes them.
///
/// A body that is one JSON value is the `text` value as it is; any other body is written as a
/// JSON string of its text, so the message stays one JSON object (spec/text-format.md §3).
pub fn encode(id: MessageId, body: &[u8], now_ms: u64) -> Bytes {
    let quoted;
    let body = if is_json(body) {
        body
    } else {
        quoted = json_string(body);
        &quoted
    };
    // One allocation of the final size (only a U+2028/U+2029 or a marker in the body, escaped
    // to 6 bytes, can grow it): the stored message keeps no spare capacity.
    let mut out = Vec::with_capacity(body.len() + ENVELOPE_MAX);
    out.extend_from_slice(START_MARKER);
    out.extend_from_slice(b"{\"id\":");
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}", id.counter());
    out.extend_from_slice(b",\"mid\":\"");
    out.extend_from_slice(&id.digits());
    out.extend_from_slice(b"\",\"channel\":\"-\",\"tag\":\"");
    let _ = write!(out, "{:03}", now_ms % 1000);
    out.extend_from_slice(b"\",\"time\":\"");
    write_http_date(&mut out, now_ms / 1000);
    out.extend_from_slice(b"\",\"text\":");
    push_single_line(&mut out, body);
    out.push(b'}');
    out.extend_from_slice(END_MARKER);
    Bytes::from(out)
}

/// `body` as a JSON string (RFC 8259 §7): its text, with each invalid UTF-8 sequence as U+FFFD,
/// quoted and escaped by serde_json (`"`, `\\` and control characters, CR and LF as `\r`, `\n`).
fn json_string(body: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&String::from_utf8_lossy(body)).unwrap_or_else(|_| b"\"\"".to_vec())
}

/// Appends `body` with every line terminator and marker made harmless: CR and LF (only legal in
/// JSON as whitespace between tokens) become spaces; U+2028/U+2029 (legal raw inside JSON
/// strings) become the escapes `\u2028`/`\u2029`, which decode to the same characters; the `#`
/// that starts `#!NGINXNM` (only possible inside a JSON string) becomes `\u0023`, so a marker
/// in a body cannot end the message early (spec/text-format.md §2).
fn push_single_line(out: &mut Vec<u8>, body: &[u8]) {
    let mut rest = body;
    while let Some(pos) = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n' || b == 0xe2 || b == b'#')
    {
        out.extend_from_slice(&rest[..pos]);
        match rest[pos] {
            b'#' if rest[pos..].starts_with(MARKER_PREFIX) => out.extend_from_slice(b"\\u0023"),
            b'#' => out.push(b'#'),
            0xe2 if rest.get(pos + 1) == Some(&0x80)
                && matches!(rest.get(pos + 2), Some(0xa8 | 0xa9)) =>
            {
                out.extend_from_slice(if rest[pos + 2] == 0xa8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                rest = &rest[pos + 3..];
                continue;
            }
            0xe2 => out.push(0xe2),
            _ => out.push(b' '),
        }
        rest = &rest[pos + 1..];
    }
    out.extend_from_slice(rest);
}

/// Formats Unix seconds as an IMF-fixdate (`Thu, 29 Jun 2017 09:50:16 GMT`).
pub fn http_date(unix_secs: u64) -> String {
    let mut out = Vec::with_capacity(29);
    write_http_date(&mut out, unix_secs);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends Unix seconds as an IMF-fixdate.
fn write_http_date(out: &mut Vec<u8>, unix_secs: u64) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// Gregorian date of a day count since 1970-01-01 (the days-to-civil algorithm of Howard Hinnant,
/// restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_matches_known_values() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_498_729_816), "Thu, 29 Jun 2017 09:50:16 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
    }

    /// The envelope of the largest counter and a 4-digit year fits the one allocation.
    #[test]
    fn largest_envelope_fits_the_reserved_room() {
        let id = MessageId::new(9_999_999_999, 9_999_999_999_999_999);
        let body = b"{}";
        let frame = encode(id, body, 253_402_300_799_999);
        assert!(frame.len() - body.len() <= ENVELOPE_MAX, "{}", frame.len());
    }

    /// spec/text-format.md §1: the exact frame layout.
    #[test]
    fn encodes_reference_layout() {
        let id = MessageId::new(1_498_729_816, 42);
        let frame = encode(
            id,
            br#"{"module_id":"im","command":"x","params":{}}"#,
            1_498_729_816_123,
        );
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            "#!NGINXNMS!#{\"id\":42,\"mid\":\"14987298160000000000000042\",\"channel\":\"-\",\
             \"tag\":\"123\",\"time\":\"Thu, 29 Jun 2017 09:50:16 GMT\",\
             \"text\":{\"module_id\":\"im\",\"command\":\"x\",\"params\":{}}}#!NGINXNME!#"
        );
    }

    /// spec/text-format.md §2: no raw line terminator inside a frame.
    #[test]
    fn removes_line_terminators() {
        let body = "{\"a\":\r\n\"x\u{2028}y\u{2029}\u{e9}\"}".as_bytes();
        let frame = encode(MessageId::new(1, 1), body, 0);
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(!text.contains(['\r', '\n', '\u{2028}', '\u{2029}']));
        let json = &text[START_MARKER.len()..text.len() - END_MARKER.len()];
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["text"]["a"], "x\u{2028}y\u{2029}\u{e9}");
    }

    /// The message between the markers, parsed.
    fn parsed(frame: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(frame).unwrap();
        assert!(
            !text.contains(['\r', '\n', '\u{2028}', '\u{2029}']),
            "{text}"
        );
        let json = &text[START_MARKER.len()..text.len() - END_MARKER.len()];
        serde_json::from_str(json).unwrap()
    }

    /// spec/text-format.md §3: a body that is not JSON is the JSON string of its text, so the
    /// frame stays parseable; a JSON body is copied as it is.
    #[test]
    fn non_json_bodies_are_json_strings() {
        let id = MessageId::new(1_498_729_816, 42);
        let frame = encode(id, b"message", 1_498_729_816_123);
        assert!(frame.ends_with(b",\"text\":\"message\"}#!NGINXNME!#"));
        for (body, text) in [
            (&b"A"[..], "A"),
            (
                b"5d41402abc4b2a76b9719d911017c592",
                "5d41402abc4b2a76b9719d911017c592",
            ),
            (b"say \"hi\"\\", "say \"hi\"\\"),
            (b"two\r\nlines\t", "two\r\nlines\t"),
            ("sep\u{2028}\u{2029}".as_bytes(), "sep\u{2028}\u{2029}"),
            (b"{\"a\":", "{\"a\":"),
            (b"bad \xff utf-8", "bad \u{fffd} utf-8"),
            (b" ", " "),
        ] {
            assert_eq!(parsed(&encode(id, body, 0))["text"], text, "{body:?}");
        }
        // JSON values of every type are copied unchanged.
        for body in ["{\"a\":1}", "[1,2]", "\"str\"", "12.5", "true", "null"] {
            let frame = encode(id, body.as_bytes(), 0);
            let tail = format!(",\"text\":{body}}}#!NGINXNME!#");
            assert!(frame.ends_with(tail.as_bytes()), "{body}");
        }
    }

    /// spec/text-format.md §3: a body is JSON only as UTF-8 text. Found by the
    /// `text_publish` fuzz target (fuzz/regressions/*/crash-*-non-utf8-body): serde_json
    /// skipped a Latin-1 byte inside an ignored string, the text frame carried it raw and the
    /// binary encoding replaced it.
    #[test]
    fn json_bodies_are_utf8() {
        assert!(is_json(br#" {"module_id":"im","text":"H\u00e9llo"} "#));
        assert!(is_json("\"H\u{e9}llo\"".as_bytes()));
        assert!(is_json(b"[1,2.5e3,null]\r\n"));
        assert!(!is_json(b"\"H\xe9llo\""));
        assert!(!is_json(b"{\"comman\xff\":1}"));
        assert!(
            !is_json(b"\"\xed\xa0\x80\""),
            "a UTF-16 surrogate encoded as UTF-8"
        );
        assert!(!is_json(b"{\"a\":"));
        assert!(!is_json(b""));
    }

    /// spec/text-format.md §2: a marker inside a body is escaped, so the frame still splits into
    /// its messages and the body reads back unchanged.
    #[test]
    fn markers_in_bodies_are_escaped() {
        let id = MessageId::new(1, 1);
        let json = b"{\"a\":\"#!NGINXNME!##!NGINXNMS!# #!x #\"}";
        for body in [&json[..], b"plain #!NGINXNME!# text"] {
            let frame = encode(id, body, 0);
            let inner = &frame[START_MARKER.len()..frame.len() - END_MARKER.len()];
            assert!(!inner.windows(9).any(|w| w == MARKER_PREFIX), "{frame:?}");
            let value = parsed(&frame);
            match std::str::from_utf8(body).ok().filter(|_| is_json(body)) {
                Some(text) => assert_eq!(
                    value["text"],
                    serde_json::from_str::<serde_json::Value>(text).unwrap()
                ),
                None => assert_eq!(value["text"], "plain #!NGINXNME!# text"),
            }
        }
    }
}
