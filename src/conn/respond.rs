//! HTTP responses of pushpull: the exact header sets of spec/longpoll.md and spec/errors.md.

use crate::message::{Format, MessageId};
use crate::proto::http::{Persistence, write_response_head};

/// Value of `Expires` on a long-poll 304; the client trusts `Last-Message-Id` only with it.
pub const EXPIRES_1973: &str = "Thu, 01 Jan 1973 11:11:01 GMT";

/// CORS header on every subscriber-side answer.
const ALLOW_ORIGIN: (&str, &str) = ("Access-Control-Allow-Origin", "*");

/// A plain answer with a text body: errors, 404, small JSON.
pub fn plain(out: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8], p: Persistence) {
    let headers = [("Content-Type", content_type), ALLOW_ORIGIN];
    write_response_head(out, status, &headers, Some(body.len()), p);
    out.extend_from_slice(body);
}

/// A `<code>: <reason>` error answer (spec/errors.md §1).
pub fn error(out: &mut Vec<u8>, status: u16, code: u16, reason: &str, p: Persistence) {
    let body = format!("{code}: {reason}");
    plain(out, status, "text/plain", body.as_bytes(), p);
}

/// 404 for unknown paths: empty body, `text/plain`, CORS header (spec/errors.md §2).
pub fn not_found(out: &mut Vec<u8>, p: Persistence) {
    plain(out, 404, "text/plain", b"", p);
}

/// 405 with the allowed methods.
pub fn method_not_allowed(out: &mut Vec<u8>, allow: &str, p: Persistence) {
    let headers = [
        ("Content-Type", "text/plain"),
        ALLOW_ORIGIN,
        ("Allow", allow),
    ];
    write_response_head(out, 405, &headers, Some(0), p);
}

/// The CORS preflight answer on subscriber paths (spec/longpoll.md §5).
pub fn preflight(out: &mut Vec<u8>, p: Persistence) {
    let headers = [
        ("Content-Type", "text/plain"),
        ALLOW_ORIGIN,
        ("Access-Control-Allow-Methods", "POST, GET, DELETE, OPTIONS"),
        (
            "Access-Control-Allow-Headers",
            "If-Modified-Since, If-None-Match",
        ),
    ];
    write_response_head(out, 200, &headers, Some(0), p);
}

/// Head of a long-poll 200 carrying `len` bytes of messages (spec/longpoll.md §3).
pub fn poll_messages_head(out: &mut Vec<u8>, len: usize, format: Format, p: Persistence) {
    let content_type = match format {
        Format::Text => "text/plain",
        Format::Binary => "application/octet-stream",
    };
    let headers = [
        ("Content-Type", content_type),
        ALLOW_ORIGIN,
        ("Access-Control-Expose-Headers", "Last-Message-Id"),
        ("Cache-Control", "no-cache"),
    ];
    write_response_head(out, 200, &headers, Some(len), p);
}

/// The long-poll 304 at the end of the hold (spec/longpoll.md §4).
pub fn poll_timeout(out: &mut Vec<u8>, last: Option<MessageId>, p: Persistence) {
    let last = last.map(|id| id.to_string()).unwrap_or_default();
    let headers = [
        ("Content-Type", "text/plain"),
        ALLOW_ORIGIN,
        ("Access-Control-Expose-Headers", "Last-Message-Id"),
        ("Last-Message-Id", last.as_str()),
        ("Expires", EXPIRES_1973),
        ("Cache-Control", "no-cache"),
    ];
    write_response_head(out, 304, &headers, None, p);
}

/// `100 Continue` for a request that sent `Expect: 100-continue`.
pub fn continue_100(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
}

/// The `101 Switching Protocols` answer to a WebSocket upgrade (RFC 6455 §4.2.2).
pub fn switching_protocols(out: &mut Vec<u8>, accept: &str) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// `426 Upgrade Required` for an unsupported WebSocket version (RFC 6455 §4.4).
pub fn upgrade_required(out: &mut Vec<u8>, p: Persistence) {
    let headers = [
        ("Content-Type", "text/plain"),
        ALLOW_ORIGIN,
        ("Sec-WebSocket-Version", "13"),
    ];
    let body = b"Unsupported WebSocket version; use 13.";
    write_response_head(out, 426, &headers, Some(body.len()), p);
    out.extend_from_slice(body);
}
