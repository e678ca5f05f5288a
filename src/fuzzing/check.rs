//! Properties of what the server writes: message encodings (spec/text-format.md,
//! spec/binary.md §2) and the framing of a connection's whole output.

use prost::Message as _;
use serde_json::Value;

use crate::message::{Message, Sender};
use crate::proto::pb;
use crate::proto::text::{END_MARKER, START_MARKER};

/// Close codes the server sends: the ones a peer may send (echoed), 1001 (shutdown), 1013
/// (busy) and the 40xx codes of spec/errors.md.
fn server_close_code(code: u16) -> bool {
    crate::proto::ws::is_valid_close_code(code) || code == 1013
}

/// Whether `bytes` holds a raw line terminator a client's frame regex stops at
/// (spec/text-format.md §2).
fn has_line_terminator(bytes: &[u8]) -> bool {
    bytes.contains(&b'\r')
        || bytes.contains(&b'\n')
        || bytes
            .windows(3)
            .any(|w| w == [0xe2, 0x80, 0xa8] || w == [0xe2, 0x80, 0xa9])
}

/// The text and binary encodings of a message say what was published.
pub(super) fn message(msg: &Message) {
    let text = &msg.text[..];
    assert!(text.starts_with(START_MARKER) && text.ends_with(END_MARKER));
    assert!(!has_line_terminator(text), "line terminator in {text:?}");
    let inner = &text[START_MARKER.len()..text.len() - END_MARKER.len()];
    assert!(
        !inner.windows(9).any(|w| w == b"#!NGINXNM"),
        "a marker inside {text:?}"
    );
    // Every frame is one JSON object (spec/text-format.md §3): a JSON body is its `text` value,
    // any other body the string of its text.
    let frame: Value = match serde_json::from_slice(inner) {
        Ok(v) => v,
        Err(e) => panic!(
            "text frame is not JSON ({e}): {:?}",
            String::from_utf8_lossy(inner)
        ),
    };
    let body = match std::str::from_utf8(&msg.body) {
        Ok(text) => serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::from(text)),
        Err(_) => Value::from(String::from_utf8_lossy(&msg.body).into_owned()),
    };
    assert_eq!(frame["text"], body, "text frame changed the body");
    assert_eq!(frame["mid"], Value::from(msg.id.to_string()));
    assert_eq!(frame["id"], Value::from(msg.id.counter()));

    let batch = match pb::ResponseBatch::decode(&msg.binary[..]) {
        Ok(b) => b,
        Err(e) => panic!("binary encoding does not decode: {e}"),
    };
    let [
        pb::Response {
            command: Some(pb::response::Command::OutgoingMessages(out)),
        },
    ] = &batch.responses[..]
    else {
        panic!("binary encoding is not one outgoingMessages response: {batch:?}");
    };
    let [one] = &out.messages[..] else {
        panic!("binary encoding holds {} messages", out.messages.len());
    };
    assert_eq!(one.id, msg.id.0);
    assert_eq!(one.body.as_bytes(), &msg.body[..]);
    assert_eq!(one.expiry, msg.expiry);
    let sender = one.sender.as_ref().map(|s| (s.r#type, s.id.clone()));
    let expected = match msg.sender {
        Sender::Backend => (pb::SenderType::Backend as i32, Vec::new()),
        Sender::Client(id) => (pb::SenderType::Client as i32, id.0.to_vec()),
    };
    assert_eq!(sender, Some(expected));
}

/// A connection's whole output: HTTP answers, each framed by `Content-Length` (or a 304 with
/// none), nothing after an answer that closes the connection; after a `101`, server
/// WebSocket frames, nothing after the close frame.
pub(super) fn transcript(mut rest: &[u8]) {
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut head = httparse::Response::new(&mut headers);
        let n = match head.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "malformed answer ({other:?}): {:?}",
                String::from_utf8_lossy(&rest[..rest.len().min(300)])
            ),
        };
        let status = head.code.unwrap_or_default();
        let field = |name: &str| {
            head.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let length = field("Content-Length").map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
        });
        let closes = field("Connection") == Some(b"close");
        let content_type = field("Content-Type").unwrap_or_default();
        let poll_answer = field("Access-Control-Expose-Headers").is_some();
        rest = &rest[n..];
        match (status, length) {
            (100, None) => continue,
            (101, None) => return frames(rest),
            (304, None) => {}
            (_, Some(Some(len))) if len <= rest.len() => {
                let body = &rest[..len];
                if status == 200 && poll_answer {
                    messages(body, content_type == b"application/octet-stream");
                }
                rest = &rest[len..];
            }
            _ => panic!("answer {status} without a usable Content-Length ({length:?})"),
        }
        if closes {
            assert!(
                rest.is_empty(),
                "bytes after an answer with Connection: close"
            );
        }
    }
}

/// Concatenated messages: text (`#!NGINXNMS!#…#!NGINXNME!#`) or a protobuf `ResponseBatch`.
fn messages(body: &[u8], binary: bool) {
    assert!(!body.is_empty(), "a message answer without messages");
    if binary {
        if let Err(e) = pb::ResponseBatch::decode(body) {
            panic!("binary messages do not decode: {e}");
        }
    } else {
        assert!(body.starts_with(START_MARKER) && body.ends_with(END_MARKER));
        assert!(!has_line_terminator(body));
        // WebSocket text frames must be UTF-8 (RFC 6455 §8.1), and so is every body.
        assert!(
            std::str::from_utf8(body).is_ok(),
            "text messages that are not UTF-8"
        );
    }
}

/// Server frames: FIN, no RSV bits, unmasked, shortest length form, known opcode; nothing
/// after the close frame.
fn frames(mut rest: &[u8]) {
    let mut closed = false;
    while !rest.is_empty() {
        assert!(!closed, "a frame after the close frame");
        let [b0, b1, ..] = *rest else {
            panic!("truncated frame header {rest:?}");
        };
        assert_eq!(b0 & 0xf0, 0x80, "FIN without RSV bits");
        assert_eq!(b1 & 0x80, 0, "a server frame is masked");
        let (len, header): (usize, usize) = match b1 & 0x7f {
            126 => {
                let Some(&[hi, lo]) = rest.get(2..4) else {
                    panic!("truncated 16-bit length");
                };
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                assert!(len > 125, "16-bit length {len} for a short payload");
                (len, 4)
            }
            127 => {
                let Some(bytes) = rest.get(2..10) else {
                    panic!("truncated 64-bit length");
                };
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                let len = usize::try_from(u64::from_be_bytes(raw)).unwrap_or(usize::MAX);
                assert!(len > 0xffff, "64-bit length {len} for a 16-bit payload");
                (len, 10)
            }
            short => (usize::from(short), 2),
        };
        let Some(payload) = rest.get(header..header.saturating_add(len)) else {
            panic!("frame of {len} bytes truncated at {}", rest.len());
        };
        match b0 & 0x0f {
            0x1 => messages(payload, false),
            0x2 => messages(payload, true),
            0x8 => {
                closed = true;
                assert!(len <= 125 && len != 1, "close payload of {len} bytes");
                if let [hi, lo, reason @ ..] = payload {
                    let code = u16::from_be_bytes([*hi, *lo]);
                    assert!(server_close_code(code), "close code {code}");
                    assert!(
                        std::str::from_utf8(reason).is_ok(),
                        "close reason not UTF-8"
                    );
                }
            }
            0x9 | 0xa => assert!(len <= 125, "control frame of {len} bytes"),
            op => panic!("server frame with opcode {op:#x}"),
        }
        rest = &rest[header + len..];
    }
}
