//! Seeds of the `chunked_body` target, and the chunk encoding the session seeds use.

use super::{IM_BODY, Seed};

/// `data` in chunks of `size` bytes, each size line with `ext`, then the last chunk, `trailer`
/// fields and the final CRLF.
pub(super) fn chunked(data: &[u8], size: usize, ext: &str, trailer: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in data.chunks(size) {
        out.extend_from_slice(format!("{:x}{ext}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("0{ext}\r\n{trailer}\r\n").as_bytes());
    out
}

/// A request head with `Transfer-Encoding: chunked` and its chunked body.
pub(super) fn post_chunked(path_query: &str, extra: &str, chunked_body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path_query} HTTP/1.1\r\nHost: 127.0.0.1:8895\r\n{extra}Transfer-Encoding: chunked\r\n\r\n"
    );
    [head.as_bytes(), chunked_body].concat()
}

pub(super) fn chunked_body() -> Vec<Seed> {
    let with = |setup: u8, body: Vec<u8>| [vec![setup], body].concat();
    let long_ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(40));
    vec![
        (
            "chunked_body",
            "simple",
            with(0, b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ),
        (
            "chunked_body",
            "extensions-trailers-next-request",
            with(
                1 << 2,
                b"5;name=value\r\nhello\r\n6 ; q = \"a \\\" b\" ;flag\r\n world\r\n\
                  0;last\r\nX-Checksum: 1\r\nExpires:\r\n\r\nGET / HTTP/1.1\r\n\r\n"
                    .to_vec(),
            ),
        ),
        (
            "chunked_body",
            "im-message",
            with(7 << 2, chunked(IM_BODY.as_bytes(), 40, "", "")),
        ),
        (
            "chunked_body",
            "one-byte-chunks-small",
            with(1, chunked(b"abcdefghij", 1, "", "")),
        ),
        (
            "chunked_body",
            "over-body-limit",
            with(2, chunked(b"0123456789", 4, ";x", "")),
        ),
        (
            "chunked_body",
            "long-extension",
            with(3, long_ext.into_bytes()),
        ),
        (
            "chunked_body",
            "bare-lf",
            with(0, b"5\nhello\n0\n\n".to_vec()),
        ),
        (
            "chunked_body",
            "huge-size",
            with(
                3,
                b"ffffffffffffffff\r\nab\r\n10000000000000000\r\n".to_vec(),
            ),
        ),
    ]
}
