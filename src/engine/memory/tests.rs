//! Unit tests of the parent module.
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::message::{ChannelId, Sender};

const START: u64 = 1_700_000_000;
/// A `since` below every id.
const ALL: MessageId = MessageId([0; 13]);

fn ch(n: u8) -> Channel {
    Channel::private(ChannelId([n; 16]))
}

fn mid(n: u64) -> MessageId {
    MessageId::new(START, n)
}

fn msg(n: u64, receivers: &[Channel], expiry: u32, body_len: usize) -> SharedMessage {
    Arc::new(Message {
        id: mid(n),
        body: Bytes::from(vec![b'x'; body_len]),
        created: 0,
        expiry,
        sender: Sender::Backend,
        receivers: receivers.into(),
        text: Bytes::new(),
        binary: Bytes::new(),
    })
}

fn store_with(channel_history: usize, max_bytes: usize) -> MemoryStore {
    let limits = StoreLimits {
        channel_history,
        max_bytes,
    };
    MemoryStore::new(limits)
}

/// Replay as (id counters, more).
fn rp(
    s: &MemoryStore,
    chans: &[Channel],
    since: MessageId,
    max: usize,
    now: Instant,
) -> (Vec<u64>, bool) {
    let r = s.replay(chans, since, max, now);
    (r.messages.iter().map(|m| m.id.counter()).collect(), r.more)
}

/// Checks the internal invariants of the store.
fn check(store: &MemoryStore) {
    let mut refs: BTreeMap<MessageId, u32> = BTreeMap::new();
    for (channel, history) in &store.channels {
        assert!(!history.is_empty(), "empty history kept for {channel:?}");
        assert!(history.len() <= store.limits.channel_history);
        assert!(
            history
                .iter()
                .zip(history.iter().skip(1))
                .all(|(a, b)| a < b)
        );
        for id in history {
            let entry = store.entries.get(id).expect("history id is stored");
            assert!(entry.msg.receivers.contains(channel));
            *refs.entry(*id).or_default() += 1;
        }
    }
    let mut bytes = 0;
    for (id, entry) in &store.entries {
        assert_eq!(entry.msg.id, *id);
        assert_eq!(refs.get(id).copied(), Some(entry.refs), "refs of {id}");
        bytes += message_cost(&entry.msg);
    }
    assert_eq!(bytes, store.bytes);
    assert!(store.bytes <= store.limits.max_bytes);
    let earliest = store.entries.values().map(|e| e.expires_at).min();
    assert_eq!(store.next_expiry(), earliest);
    assert!(store.expiries.len() <= 2 * store.entries.len() + HEAP_SLACK);
}

#[test]
fn defaults() {
    let limits = StoreLimits::default();
    assert_eq!(limits.channel_history, DEFAULT_CHANNEL_HISTORY);
    assert_eq!(limits.max_bytes, DEFAULT_HISTORY_MAX_BYTES);
    let store = MemoryStore::new(limits);
    assert_eq!(store.limits(), limits);
    assert_eq!(store.stats(), StoreStats::default());
    assert_eq!(store.next_expiry(), None);
    assert!(format!("{store:?}").contains("MemoryStore"));
}

#[test]
fn replay_orders_across_channels_and_dedups() {
    let now = Instant::now();
    let mut s = store_with(100, usize::MAX);
    s.store(msg(1, &[ch(1)], 60, 1), now);
    s.store(msg(2, &[ch(2)], 60, 1), now);
    s.store(msg(3, &[ch(1), ch(2)], 60, 1), now);
    s.store(msg(4, &[ch(3)], 60, 1), now);
    s.store(msg(5, &[ch(2), ch(1), ch(3)], 60, 1), now);
    check(&s);
    assert_eq!(
        rp(&s, &[ch(1), ch(2)], ALL, 100, now),
        (vec![1, 2, 3, 5], false)
    );
    // Duplicated and unknown channels in the request change nothing.
    let chans = [ch(2), ch(9), ch(1), ch(2)];
    assert_eq!(rp(&s, &chans, ALL, 100, now), (vec![1, 2, 3, 5], false));
    assert_eq!(rp(&s, &[ch(3)], mid(4), 100, now).0, [5]);
    assert_eq!(
        rp(&s, &[ch(1), ch(2), ch(3)], mid(2), 100, now).0,
        [3, 4, 5]
    );
    assert_eq!(rp(&s, &[], ALL, 100, now), (vec![], false));
    assert_eq!(rp(&s, &[ch(9)], ALL, 100, now), (vec![], false));
    // `since` need not be a stored id; a later one returns nothing.
    assert_eq!(
        rp(&s, &[ch(1)], MessageId::new(START, 2), 100, now).0,
        [3, 5]
    );
    let later = MessageId::new(START + 1, 0);
    assert_eq!(rp(&s, &[ch(1)], later, 100, now), (vec![], false));
}

#[test]
fn replay_pages_with_more() {
    let now = Instant::now();
    let mut s = store_with(100, usize::MAX);
    for n in 1..=10 {
        let receivers = if n % 2 == 0 {
            [ch(1), ch(2)]
        } else {
            [ch(2), ch(3)]
        };
        s.store(msg(n, &receivers, 60, 1), now);
    }
    let chans = [ch(1), ch(2), ch(3)];
    let (mut since, mut pages) = (ALL, Vec::new());
    loop {
        let (ids, more) = rp(&s, &chans, since, 3, now);
        since = mid(*ids.last().expect("pages are not empty"));
        pages.push(ids);
        if !more {
            break;
        }
    }
    assert_eq!(
        pages,
        [vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
    );
    // Exactly max left: no more. max = 0 only tells whether there is anything.
    assert_eq!(rp(&s, &chans, mid(7), 3, now), (vec![8, 9, 10], false));
    assert_eq!(rp(&s, &chans, mid(7), 0, now), (vec![], true));
    assert_eq!(rp(&s, &chans, mid(10), 0, now), (vec![], false));
}

#[test]
fn per_channel_cap_drops_oldest() {
    let now = Instant::now();
    let mut s = store_with(3, usize::MAX);
    for n in 1..=5 {
        s.store(msg(n, &[ch(1)], 60, 1), now);
    }
    check(&s);
    assert_eq!(rp(&s, &[ch(1)], ALL, 100, now).0, [3, 4, 5]);
    assert_eq!((s.stats().messages, s.stats().evicted), (3, 2));

    // A message on two channels survives while one of them still holds it.
    let mut s = store_with(2, usize::MAX);
    s.store(msg(1, &[ch(1), ch(2)], 60, 1), now);
    s.store(msg(2, &[ch(1)], 60, 1), now);
    s.store(msg(3, &[ch(1)], 60, 1), now);
    check(&s);
    assert_eq!(rp(&s, &[ch(1)], ALL, 100, now).0, [2, 3]);
    assert_eq!(rp(&s, &[ch(2)], ALL, 100, now).0, [1]);
    assert_eq!(rp(&s, &[ch(1), ch(2)], ALL, 100, now).0, [1, 2, 3]);
    assert_eq!(s.stats().evicted, 0);
    s.store(msg(4, &[ch(2)], 60, 1), now);
    s.store(msg(5, &[ch(2)], 60, 1), now);
    check(&s);
    assert_eq!(rp(&s, &[ch(1), ch(2)], ALL, 100, now).0, [2, 3, 4, 5]);
    assert_eq!((s.stats().messages, s.stats().evicted), (4, 1));

    // A cap of 0 keeps nothing.
    let mut s = store_with(0, usize::MAX);
    s.store(msg(1, &[ch(1)], 60, 1), now);
    check(&s);
    assert_eq!((s.stats().messages, s.stats().channels), (0, 0));
}

#[test]
fn byte_cap_evicts_globally_oldest() {
    let now = Instant::now();
    let one = message_cost(&msg(1, &[ch(1)], 60, 100));
    let mut s = store_with(100, 3 * one);
    s.store(msg(1, &[ch(1)], 60, 100), now);
    s.store(msg(2, &[ch(2)], 60, 100), now);
    s.store(msg(3, &[ch(1)], 60, 100), now);
    assert_eq!((s.stats().bytes, s.stats().evicted), (3 * one, 0));
    s.store(msg(4, &[ch(3)], 60, 100), now);
    check(&s);
    let chans = [ch(1), ch(2), ch(3)];
    assert_eq!(rp(&s, &chans, ALL, 100, now).0, [2, 3, 4]);
    s.store(msg(5, &[ch(3)], 60, 100), now);
    check(&s);
    assert_eq!(rp(&s, &chans, ALL, 100, now).0, [3, 4, 5]);
    assert_eq!(s.stats().channels, 2, "ch(2) emptied and removed");
    assert_eq!(s.stats().evicted, 2);
    // One big message pushes out several small ones.
    s.store(msg(6, &[ch(1)], 60, 2 * one), now);
    check(&s);
    assert_eq!(rp(&s, &chans, ALL, 100, now).0, [6]);
    // A message larger than the whole cap is not kept, and takes the others with it.
    s.store(msg(7, &[ch(1)], 60, 4 * one), now);
    check(&s);
    let stats = s.stats();
    assert_eq!((stats.messages, stats.bytes, stats.channels), (0, 0, 0));
}

#[test]
fn expired_messages_are_hidden_then_purged() {
    let t0 = Instant::now();
    let at = |secs| t0 + Duration::from_secs(secs);
    let mut s = store_with(100, usize::MAX);
    s.store(msg(1, &[ch(1)], 10, 1), t0);
    s.store(msg(2, &[ch(1), ch(2)], 5, 1), t0);
    s.store(msg(3, &[ch(1)], 20, 1), t0);
    s.store(msg(4, &[ch(2)], 5, 1), at(1));
    assert_eq!(s.next_expiry(), Some(at(5)));
    let both = [ch(1), ch(2)];
    assert_eq!(rp(&s, &both, ALL, 100, t0).0, [1, 2, 3, 4]);
    // At exactly its expiry time a message is gone, purged or not.
    assert_eq!(rp(&s, &both, ALL, 100, at(5)).0, [1, 3, 4]);
    assert_eq!(s.last_id(&[ch(2)], at(5)), Some(mid(4)));
    assert_eq!(s.last_id(&[ch(2)], at(6)), None);
    // Expired entries do not count towards `more`.
    assert_eq!(rp(&s, &both, mid(3), 0, at(6)), (vec![], false));
    assert_eq!(s.stats().messages, 4);

    assert_eq!(s.purge(at(4)), 0);
    assert_eq!(s.purge(at(5)), 1);
    check(&s);
    assert_eq!(s.next_expiry(), Some(at(6)));
    assert_eq!(s.purge(at(10)), 2);
    check(&s);
    assert_eq!(s.stats().channels, 1, "ch(2) emptied and removed");
    assert_eq!(s.next_expiry(), Some(at(20)));
    assert_eq!(rp(&s, &both, ALL, 100, at(10)).0, [3]);
    assert_eq!(s.purge(at(100)), 1);
    check(&s);
    let stats = s.stats();
    assert_eq!((stats.messages, stats.bytes, stats.channels), (0, 0, 0));
    assert_eq!((stats.expired, stats.evicted), (4, 0));
    assert_eq!(s.next_expiry(), None);
    assert_eq!(s.purge(at(1000)), 0);
}

#[test]
fn next_expiry_skips_evicted_and_heap_is_compacted() {
    let t0 = Instant::now();
    let at = |secs| t0 + Duration::from_secs(secs);
    let mut s = store_with(1, usize::MAX);
    s.store(msg(1, &[ch(1)], 5, 1), t0);
    assert_eq!(s.next_expiry(), Some(at(5)));
    s.store(msg(2, &[ch(1)], 50, 1), t0);
    assert_eq!(s.next_expiry(), Some(at(50)));
    assert_eq!(s.purge(at(10)), 0);
    assert_eq!((s.stats().expired, s.stats().evicted), (0, 1));
    check(&s);
    // Many evicted messages with long expiries do not pile up in the heap.
    for n in 3..=10_000 {
        s.store(msg(n, &[ch(1)], 3600 - (n % 1000) as u32, 0), t0);
        assert!(s.expiries.len() <= 2 + HEAP_SLACK);
    }
    check(&s);
    assert_eq!(s.stats().messages, 1);
}

#[test]
fn last_id_over_channels() {
    let now = Instant::now();
    let mut s = store_with(100, usize::MAX);
    assert_eq!(s.last_id(&[ch(1)], now), None);
    s.store(msg(1, &[ch(1)], 60, 1), now);
    s.store(msg(2, &[ch(2)], 60, 1), now);
    s.store(msg(3, &[ch(1), ch(3)], 60, 1), now);
    assert_eq!(s.last_id(&[ch(1)], now), Some(mid(3)));
    assert_eq!(s.last_id(&[ch(2)], now), Some(mid(2)));
    assert_eq!(s.last_id(&[ch(2), ch(3)], now), Some(mid(3)));
    assert_eq!(s.last_id(&[ch(9)], now), None);
    assert_eq!(s.last_id(&[], now), None);
}

#[test]
fn stats_cost_and_edge_cases() {
    let now = Instant::now();
    let mut s = store_with(100, usize::MAX);
    s.store(msg(1, &[ch(1), ch(2)], 60, 10), now);
    s.store(msg(2, &[ch(2)], 60, 20), now);
    s.store(msg(3, &[ch(3)], 0, 20), now); // expiry 0: not stored
    s.store(msg(4, &[], 60, 20), now); // no receivers: not stored
    check(&s);
    let expected = StoreStats {
        messages: 2,
        bytes: (10 + 64 + 64) + (20 + 64 + 32),
        channels: 2,
        evicted: 0,
        expired: 0,
    };
    assert_eq!(s.stats(), expected);
    assert_eq!(
        message_cost(&msg(5, &[ch(1), ch(2), ch(3)], 10, 100)),
        100 + 64 + 3 * 32
    );
    // The longest expiry does not overflow.
    s.store(msg(5, &[ch(1)], u32::MAX, 1), now);
    assert_eq!(
        s.last_id(&[ch(1)], now + Duration::from_secs(1 << 30)),
        Some(mid(5))
    );
    // A receiver listed twice is held once.
    let mut s = store_with(1, usize::MAX);
    s.store(msg(1, &[ch(1), ch(1)], 60, 1), now);
    check(&s);
    s.store(msg(2, &[ch(1)], 60, 1), now);
    check(&s);
    assert_eq!(s.stats().messages, 1);
}

/// Deterministic xorshift64* generator for the oracle test.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn channels(&mut self) -> Vec<Channel> {
        let mut picked = Vec::new();
        for _ in 0..=self.below(3) {
            let c = ch(self.below(6) as u8);
            if !picked.contains(&c) {
                picked.push(c);
            }
        }
        picked
    }
}

/// The naive model: every stored message, its expiry and the channels still holding it.
#[derive(Default)]
struct Model {
    items: Vec<(SharedMessage, Instant, Vec<Channel>)>,
    evicted: u64,
    expired: u64,
}

impl Model {
    fn store(&mut self, m: SharedMessage, now: Instant, limits: StoreLimits) {
        let at = now + Duration::from_secs(u64::from(m.expiry));
        let receivers = m.receivers.to_vec();
        self.items.push((m, at, receivers.clone()));
        for c in receivers {
            let mut holding = (0..self.items.len()).filter(|&i| self.items[i].2.contains(&c));
            if let (Some(oldest), true) =
                (holding.next(), holding.count() >= limits.channel_history)
            {
                self.items[oldest].2.retain(|held| *held != c);
                if self.items[oldest].2.is_empty() {
                    self.items.remove(oldest);
                    self.evicted += 1;
                }
            }
        }
        while self.bytes() > limits.max_bytes {
            self.items.remove(0);
            self.evicted += 1;
        }
    }

    fn bytes(&self) -> usize {
        self.items.iter().map(|(m, _, _)| message_cost(m)).sum()
    }

    fn visible(&self, chans: &[Channel], now: Instant) -> impl Iterator<Item = MessageId> {
        let shown = move |(_, at, held): &&(SharedMessage, Instant, Vec<Channel>)| {
            *at > now && held.iter().any(|c| chans.contains(c))
        };
        self.items.iter().filter(shown).map(|(m, _, _)| m.id)
    }

    fn stats(&self) -> StoreStats {
        let mut chans: Vec<Channel> = self.items.iter().flat_map(|i| i.2.clone()).collect();
        chans.sort();
        chans.dedup();
        StoreStats {
            messages: self.items.len(),
            bytes: self.bytes(),
            channels: chans.len(),
            evicted: self.evicted,
            expired: self.expired,
        }
    }
}

fn oracle_run(seed: u64, channel_history: usize, max_bytes: usize, steps: usize) {
    let (mut rng, mut now) = (Rng(seed), Instant::now());
    let (mut store, mut model) = (store_with(channel_history, max_bytes), Model::default());
    let limits = store.limits();
    let (mut next_id, mut returned, mut paged) = (1u64, 0usize, 0usize);
    for _ in 0..steps {
        match rng.below(10) {
            0..=4 => {
                next_id += 1 + rng.below(3);
                let receivers = rng.channels();
                let (expiry, body) = (1 + rng.below(30) as u32, rng.below(200) as usize);
                let m = msg(next_id, &receivers, expiry, body);
                store.store(m.clone(), now);
                model.store(m, now, limits);
            }
            5 => now += Duration::from_millis(rng.below(4000)),
            6 => {
                let before = model.items.len();
                model.items.retain(|(_, at, _)| *at > now);
                let removed = before - model.items.len();
                model.expired += removed as u64;
                assert_eq!(store.purge(now), removed);
            }
            7 => {
                let chans = rng.channels();
                assert_eq!(
                    store.last_id(&chans, now),
                    model.visible(&chans, now).last()
                );
            }
            _ => {
                let mut chans = rng.channels();
                if rng.below(4) == 0 {
                    chans.push(chans[0]); // a repeated channel
                }
                let since = if rng.below(4) == 0 {
                    ALL
                } else {
                    mid(rng.below(next_id + 2))
                };
                let max = rng.below(8) as usize;
                let visible: Vec<u64> = model
                    .visible(&chans, now)
                    .filter(|id| *id > since)
                    .map(|id| id.counter())
                    .collect();
                let (got, more) = rp(&store, &chans, since, max, now);
                assert_eq!(got, visible[..visible.len().min(max)]);
                assert_eq!(more, visible.len() > max);
                returned += got.len();
                paged += usize::from(more);
            }
        }
        assert_eq!(store.stats(), model.stats());
        assert_eq!(store.next_expiry(), model.items.iter().map(|i| i.1).min());
    }
    check(&store);
    // The run exercised what it is meant to.
    let stats = store.stats();
    if limits.channel_history > 0 {
        assert!(
            returned > 100 && paged > 10 && stats.expired > 0,
            "{returned} {paged}"
        );
    }
    let limited = limits.channel_history < 100 || limits.max_bytes < usize::MAX;
    assert_eq!(stats.evicted > 0, limited, "{stats:?}");
}

#[test]
fn oracle_against_naive_model() {
    let cases = [
        (0x9e37_79b9_7f4a_7c15, 1000, usize::MAX),
        (0x0123_4567_89ab_cdef, 5, usize::MAX),
        (0x5555_aaaa_1234_4321, 3, 2000),
        (0xdead_beef_cafe_f00d, 1, 1500),
        (0x1111_2222_3333_4444, 0, 10_000),
        (0x7777_8888_9999_0000, 8, 900),
    ];
    for (seed, channel_history, max_bytes) in cases {
        oracle_run(seed, channel_history, max_bytes, 4000);
    }
}
