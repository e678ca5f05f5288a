//! Entry points of the fuzz targets in `fuzz/` (not part of the server's API).
//!
//! Each function takes arbitrary bytes, calls one parser the way the server calls it, and
//! panics when the parser panics or breaks one of the properties checked here. The targets in
//! `fuzz/fuzz_targets/` are one line each; the unit tests of this module replay the committed
//! seeds and regression inputs through the same functions, so `cargo test` covers them on a
//! stable toolchain without cargo-fuzz.
//!
//! | Function | Parser |
//! |---|---|
//! | [`http_head`] | request head and query parameters, then the routing of that one request |
//! | [`chunked_body`] | a chunked request body, whole and re-fed in small reads, against a model |
//! | [`ws_frames`] | client WebSocket frames, whole and re-fed in chunks |
//! | [`channel_tokens`] | `CHANNEL_ID` lists: subscription and publish targets, signatures |
//! | [`text_publish`] | `POST /pub/` with a text body and headers, up to the encoded frame |
//! | [`request_batch`] | protobuf `RequestBatch` from a back end or a browser |
//! | [`config`] | pushpull's TOML file, a Bitrix JSON file, the BitrixVM sysconfig file |
//! | [`session`] | one connection's [`Session`](crate::conn::Session), bytes in chunks and events |

mod check;
mod chunked;
mod parsers;
mod session;

#[cfg(test)]
mod seeds;
#[cfg(test)]
mod tests;

pub use chunked::chunked_body;
pub use parsers::{channel_tokens, config, http_head, request_batch, text_publish, ws_frames};
pub use session::session;

/// A fuzz target's function.
pub type Target = fn(&[u8]);

/// Every target: its name (as in `fuzz/fuzz_targets/<name>.rs`) and its function.
pub const TARGETS: [(&str, Target); 8] = [
    ("http_head", http_head),
    ("chunked_body", chunked_body),
    ("ws_frames", ws_frames),
    ("channel_tokens", channel_tokens),
    ("text_publish", text_publish),
    ("request_batch", request_batch),
    ("config", config),
    ("session", session),
];

/// The security key of the fuzzing configuration that checks signatures; the seeds are
/// signed with it.
pub const FUZZ_KEY: &str = "fuzz-key";

/// Reads a fuzz input front to back; past the end every read gives zeros or nothing, so any
/// input is a valid script.
#[derive(Clone, Copy, Debug)]
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next byte, 0 past the end.
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next `n` bytes, fewer at the end.
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// The bytes up to the next `sep` (dropped), or all the rest.
    fn until(&mut self, sep: u8) -> &'a [u8] {
        match self.data.iter().position(|&b| b == sep) {
            Some(i) => {
                let head = &self.data[..i];
                self.data = &self.data[i + 1..];
                head
            }
            None => self.take(self.data.len()),
        }
    }

    fn rest(self) -> &'a [u8] {
        self.data
    }
}
