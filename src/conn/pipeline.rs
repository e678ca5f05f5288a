//! Pipelined publishes (spec/publishing.md §8): a publisher that sends its next requests before
//! the answer to the first does not wait one engine round trip per request. A keep-alive publish
//! waiting for the engine is *parked* here with the place in the output buffer where its answer
//! belongs, and the session goes on with the next request. Whatever the session writes meanwhile
//! (answers of later requests, an error, a 408) lands after that place, so the peer reads every
//! answer in request order; only the bytes before the oldest parked answer may be sent.
//!
//! ```text
//!   Awaiting(keep-alive publish) ──(more input, fewer than DEFAULT_MAX_PIPELINED parked)──▶ park
//!   park ──▶ Head (next request)        engine answer ──▶ oldest parked: spliced in at its place
//! ```
//!
//! Both engines answer one connection's publishes in the order they were sent, so the oldest
//! parked publish is always the one answered.

use std::collections::VecDeque;

use super::publish::{self, Reply};
use crate::engine::PublishError;
use crate::message::MessageId;
use crate::proto::http::Persistence;

/// Publishes of one connection passed to the engine and not yet answered, besides the one the
/// session waits for: 256. A few pipelining publishers then fill the engine's batches, and a
/// batch carries several messages per channel, so subscribers get several per write (benches/
/// README.md: fan-out with 16, 64 and 256 in flight). A publisher that pipelines more waits (its
/// requests stay in the socket, read interest drops). Each parked publish costs 16 bytes.
pub const DEFAULT_MAX_PIPELINED: usize = 256;

/// The parked publishes of one connection, oldest first.
#[derive(Debug, Default)]
pub(super) struct Pipeline {
    parked: VecDeque<Parked>,
}

/// A publish the engine has not answered yet.
#[derive(Debug)]
struct Parked {
    reply: Reply,
    /// Where its answer goes in the output buffer (from the first unsent byte).
    at: usize,
}

impl Pipeline {
    /// Whether no publish is parked.
    pub(super) fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    /// Whether another publish may be parked.
    pub(super) fn has_room(&self) -> bool {
        self.parked.len() < DEFAULT_MAX_PIPELINED
    }

    /// Parks a publish whose answer belongs at `at`, the output buffer's current length.
    pub(super) fn park(&mut self, reply: Reply, at: usize) {
        debug_assert!(self.parked.back().is_none_or(|p| p.at <= at));
        self.parked.push_back(Parked { reply, at });
    }

    /// How many bytes of an output buffer of `len` bytes may be sent: those before the oldest
    /// parked answer.
    pub(super) fn sendable(&self, len: usize) -> usize {
        self.parked.front().map_or(len, |p| p.at.min(len))
    }

    /// `n` sendable bytes were written.
    pub(super) fn consumed(&mut self, n: usize) {
        for p in &mut self.parked {
            p.at = p.at.saturating_sub(n);
        }
    }

    /// Writes the answer of the oldest parked publish at its place in `out`; false when none is
    /// parked (the answer is for the request the session waits for).
    pub(super) fn answer(
        &mut self,
        out: &mut Vec<u8>,
        result: Result<MessageId, PublishError>,
    ) -> bool {
        let Some(oldest) = self.parked.pop_front() else {
            return false;
        };
        let at = oldest.at.min(out.len());
        let before = out.len();
        // Appended, then rotated into its place (nothing moves when nothing was written after
        // it, the usual case).
        publish::published(out, oldest.reply, result, Persistence::KeepAlive);
        let added = out.len() - before;
        out[at..].rotate_right(added);
        for p in &mut self.parked {
            p.at += added;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Result<MessageId, PublishError> {
        Ok(MessageId::new(1, n))
    }

    #[test]
    fn answers_land_in_request_order() {
        let mut pipe = Pipeline::default();
        let mut out = Vec::new();
        pipe.park(Reply::Mid, out.len());
        out.extend_from_slice(b"<second>");
        pipe.park(Reply::Empty, out.len());
        out.extend_from_slice(b"<fourth>");
        assert_eq!(pipe.sendable(out.len()), 0);
        assert!(pipe.answer(&mut out, id(1)));
        let first = out.windows(6).position(|w| w == b"\"mid\":").unwrap();
        let second = out.windows(8).position(|w| w == b"<second>").unwrap();
        assert!(first < second);
        assert_eq!(pipe.sendable(out.len()), second + 8);
        pipe.consumed(second + 8);
        out.drain(..second + 8);
        assert_eq!(pipe.sendable(out.len()), 0);
        assert!(pipe.answer(&mut out, Err(PublishError::Unavailable)));
        assert!(out.starts_with(b"HTTP/1.1 503"));
        assert!(out.ends_with(b"<fourth>"));
        assert!(pipe.is_empty());
        assert_eq!(pipe.sendable(out.len()), out.len());
        assert!(!pipe.answer(&mut out, id(2)));
    }

    #[test]
    fn room_is_bounded() {
        let mut pipe = Pipeline::default();
        for _ in 0..DEFAULT_MAX_PIPELINED {
            assert!(pipe.has_room());
            pipe.park(Reply::Mid, 0);
        }
        assert!(!pipe.has_room());
    }
}
