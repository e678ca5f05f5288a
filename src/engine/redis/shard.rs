//! Sharding over several Redis servers (spec/cluster.md §9): which server a message and a
//! channel's online mark live on, and the merge that turns the servers' pub/sub streams back into
//! one stream in id order. Pure code: no sockets, no clock.
//!
//! Every server's stream is in id order (its script issues ids from its own clock, one script at
//! a time), but the streams reach a node independently. The merge holds a message until every
//! live stream has passed its id (a message, or a clock tick published by the server), so that
//! the node delivers in id order whatever the interleaving, and a client's one `mid` means "every
//! message up to here" across all servers.
//!
//! ```text
//!   stream 0 ──messages/ticks──┐
//!   stream 1 ──messages/ticks──┼──▶ held (by id) ──release while id ≤ min(last of live streams)──▶ out
//!   stream 2 ──messages/ticks──┘
//! ```

use std::collections::BTreeMap;

use crate::message::{Channel, ChannelKind, MessageId, SharedMessage};

/// The server index of a channel: FNV-1a (64 bit) over its kind byte and its 16 id bytes, mixed
/// by the MurmurHash3 64-bit finalizer, mapped onto the servers as `hash × servers / 2⁶⁴`.
/// Stable across nodes and restarts (spec/cluster.md §9).
pub fn shard_of(channel: &Channel, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let kind = match channel.kind {
        ChannelKind::Private => b'p',
        ChannelKind::Public => b'u',
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(kind).chain(channel.id.0.iter().copied()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    ((u128::from(hash) * shards as u128) >> 64) as usize
}

/// The server that issued a sharded id: its last two decimal digits (the id's last byte, which
/// holds two digits as hex nibbles). `None` for a byte that is not two decimal digits.
pub fn shard_of_id(id: &MessageId, shards: usize) -> Option<usize> {
    let byte = id.0[id.0.len() - 1];
    let (high, low) = (byte >> 4, byte & 0x0f);
    if high > 9 || low > 9 {
        return None;
    }
    Some(usize::from(high * 10 + low)).filter(|&s| s < shards)
}

/// One server's stream as the merge sees it.
#[derive(Clone, Copy, Debug, Default)]
struct Stream {
    /// Newest id seen on it (message or tick), or its clock when the stream started.
    last: Option<MessageId>,
    /// Subscribed and caught up: its `last` bounds what may be released.
    live: bool,
}

/// The merge of the servers' streams.
#[derive(Debug)]
pub struct Merge {
    streams: Vec<Stream>,
    held: BTreeMap<MessageId, SharedMessage>,
    released: Option<MessageId>,
}

impl Merge {
    /// A merge of `shards` streams, none live yet.
    pub fn new(shards: usize) -> Self {
        Self {
            streams: vec![Stream::default(); shards.max(1)],
            held: BTreeMap::new(),
            released: None,
        }
    }

    /// Messages from `shard`'s stream, in its order; released ones are appended to `out`.
    pub fn messages(
        &mut self,
        shard: usize,
        messages: impl IntoIterator<Item = SharedMessage>,
        out: &mut Vec<SharedMessage>,
    ) {
        for message in messages {
            self.advance(shard, message.id);
            self.held.insert(message.id, message);
        }
        self.release(out);
    }

    /// A clock tick (or the clock read when the stream started) from `shard`.
    pub fn tick(&mut self, shard: usize, id: MessageId, out: &mut Vec<SharedMessage>) {
        self.advance(shard, id);
        self.release(out);
    }

    /// Marks `shard`'s stream live (caught up) or not (lost): a stream that is not live does
    /// not hold the others back.
    pub fn set_live(&mut self, shard: usize, live: bool, out: &mut Vec<SharedMessage>) {
        if let Some(stream) = self.streams.get_mut(shard) {
            stream.live = live;
        }
        self.release(out);
    }

    /// Newest id seen on `shard`'s stream.
    pub fn last(&self, shard: usize) -> Option<MessageId> {
        self.streams.get(shard).and_then(|s| s.last)
    }

    /// Newest id released; every message of a live stream up to it has been released.
    pub fn released(&self) -> Option<MessageId> {
        self.released
    }

    /// Newest id seen on any stream.
    pub fn newest(&self) -> Option<MessageId> {
        self.streams.iter().filter_map(|s| s.last).max()
    }

    /// Messages waiting for another stream.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The live streams behind the oldest held message: those a clock tick would unblock.
    pub fn lagging(&self) -> Vec<usize> {
        let Some((&head, _)) = self.held.first_key_value() else {
            return Vec::new();
        };
        self.streams
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live && s.last.is_some_and(|last| last < head))
            .map(|(i, _)| i)
            .collect()
    }

    fn advance(&mut self, shard: usize, id: MessageId) {
        if let Some(stream) = self.streams.get_mut(shard) {
            stream.last = stream.last.max(Some(id));
        }
    }

    /// Releases, in id order, every held message at or below the bound: the oldest `last` of
    /// the live streams that have one (no such stream: no bound).
    fn release(&mut self, out: &mut Vec<SharedMessage>) {
        let bound = self
            .streams
            .iter()
            .filter(|s| s.live)
            .filter_map(|s| s.last)
            .min();
        while let Some(entry) = self.held.first_entry() {
            if bound.is_some_and(|b| *entry.key() > b) {
                break;
            }
            let message = entry.remove();
            self.released = self.released.max(Some(message.id));
            out.push(message);
        }
        // Nothing held: everything up to the bound has been seen and released.
        if self.held.is_empty() {
            self.released = self.released.max(bound);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::message::{ChannelId, Message, Sender};

    fn id(n: u64, shard: u64) -> MessageId {
        MessageId::new(1_700_000_000, n * 100 + shard)
    }

    fn msg(n: u64, shard: u64) -> SharedMessage {
        let channel = Channel::private(ChannelId([1; 16]));
        Arc::new(Message::new(
            id(n, shard),
            bytes::Bytes::from_static(b"{}"),
            60,
            Sender::Backend,
            vec![channel].into_boxed_slice(),
            0,
        ))
    }

    fn ids(out: &[SharedMessage]) -> Vec<MessageId> {
        out.iter().map(|m| m.id).collect()
    }

    #[test]
    fn shard_of_spreads_and_is_stable() {
        let mut counts = [0usize; 3];
        for i in 0..3000u32 {
            let mut raw = [0u8; 16];
            raw[12..].copy_from_slice(&i.to_be_bytes());
            let c = Channel::private(ChannelId(raw));
            let s = shard_of(&c, 3);
            assert_eq!(s, shard_of(&c, 3));
            counts[s] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
        let c = Channel::private(ChannelId([7; 16]));
        assert_eq!(shard_of(&c, 1), 0);
        // Private and public channels with the same id are different channels.
        let spread: std::collections::BTreeSet<_> = (0..64u8)
            .map(|b| {
                let id = ChannelId([b; 16]);
                (
                    shard_of(&Channel::private(id), 2),
                    shard_of(&Channel::public(id), 2),
                )
            })
            .collect();
        assert!(spread.len() > 2, "{spread:?}");
    }

    #[test]
    fn shard_of_id_reads_the_last_two_digits() {
        assert_eq!(shard_of_id(&id(5, 0), 2), Some(0));
        assert_eq!(shard_of_id(&id(5, 1), 2), Some(1));
        assert_eq!(shard_of_id(&id(5, 42), 50), Some(42));
        assert_eq!(shard_of_id(&id(5, 42), 3), None);
        let mut bad = id(5, 1);
        bad.0[12] = 0xab;
        assert_eq!(shard_of_id(&bad, 99), None);
    }

    #[test]
    fn one_stream_releases_at_once() {
        let mut m = Merge::new(1);
        let mut out = Vec::new();
        m.set_live(0, true, &mut out);
        m.messages(0, [msg(1, 0), msg(2, 0)], &mut out);
        assert_eq!(ids(&out), [id(1, 0), id(2, 0)]);
        assert_eq!(m.released(), Some(id(2, 0)));
        assert_eq!(m.held(), 0);
    }

    #[test]
    fn interleaved_streams_come_out_in_id_order() {
        let mut m = Merge::new(2);
        let mut out = Vec::new();
        m.tick(0, id(0, 0), &mut out);
        m.tick(1, id(0, 1), &mut out);
        m.set_live(0, true, &mut out);
        m.set_live(1, true, &mut out);
        // Stream 1 runs ahead: its messages wait for stream 0.
        m.messages(1, [msg(3, 1), msg(5, 1)], &mut out);
        assert!(out.is_empty());
        assert_eq!(m.lagging(), [0]);
        m.messages(0, [msg(2, 0)], &mut out);
        assert_eq!(ids(&out), [id(2, 0)]);
        m.messages(0, [msg(4, 0)], &mut out);
        assert_eq!(ids(&out), [id(2, 0), id(3, 1), id(4, 0)]);
        // A tick past 5 on stream 0 releases the rest.
        m.tick(0, id(6, 0), &mut out);
        assert_eq!(ids(&out), [id(2, 0), id(3, 1), id(4, 0), id(5, 1)]);
        assert_eq!(m.held(), 0);
        assert_eq!(m.released(), Some(id(5, 1)));
        assert!(m.lagging().is_empty());
    }

    #[test]
    fn a_lost_stream_does_not_hold_the_others() {
        let mut m = Merge::new(2);
        let mut out = Vec::new();
        for s in 0..2 {
            m.tick(s, id(0, s as u64), &mut out);
            m.set_live(s, true, &mut out);
        }
        m.messages(1, [msg(3, 1)], &mut out);
        assert!(out.is_empty());
        m.set_live(0, false, &mut out);
        assert_eq!(ids(&out), [id(3, 1)]);
        // Back and caught up: it bounds again.
        m.set_live(0, true, &mut out);
        m.messages(1, [msg(4, 1)], &mut out);
        assert_eq!(ids(&out), [id(3, 1)]);
        assert_eq!(m.lagging(), [0]);
    }

    #[test]
    fn streams_without_a_start_do_not_bound() {
        let mut m = Merge::new(3);
        let mut out = Vec::new();
        m.set_live(0, true, &mut out);
        m.messages(0, [msg(1, 0)], &mut out);
        assert_eq!(ids(&out), [id(1, 0)]);
        // A message older than what was released (a catch-up) goes out at once.
        m.tick(1, id(9, 1), &mut out);
        m.set_live(1, true, &mut out);
        m.messages(0, [msg(2, 0)], &mut out);
        m.messages(2, [msg(0, 2)], &mut out);
        assert_eq!(ids(&out), [id(1, 0), id(2, 0), id(0, 2)]);
        assert_eq!(m.newest(), Some(id(9, 1)));
    }
}
