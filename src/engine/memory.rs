//! The in-memory message history of the embedded engine.
//!
//! A pure data structure: no threads, no clock. Callers pass `now` to every call that depends on
//! time and arm their own timer from [`MemoryStore::next_expiry`].
//!
//! Layout:
//! - every stored message once, in a [`BTreeMap`] keyed by id (publication order), so the globally
//!   oldest message is found and evicted in O(log n);
//! - per channel, the ids stored on it in ascending order (a [`VecDeque`]: new ids are pushed at
//!   the back, the per-channel cap pops the front); a channel's entry is removed when it empties;
//! - a min-heap of expiry times. Messages removed for another reason leave stale heap items behind;
//!   those are skipped, the heap's top is kept live after every mutation (so
//!   [`MemoryStore::next_expiry`] is exact) and the heap is rebuilt when stale items dominate.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use ahash::AHashMap;

use crate::message::{Channel, Message, MessageId, SharedMessage};

pub use crate::config::{DEFAULT_CHANNEL_HISTORY, DEFAULT_HISTORY_MAX_BYTES, DEFAULT_REPLAY_MAX};

/// Fixed bytes counted per stored message besides its body and text: the [`Message`] header
/// behind the `Arc`, the global map's entry and the expiry heap item (an estimate).
pub const MESSAGE_OVERHEAD_BYTES: usize = 64;

/// Bytes counted per receiver of a stored message: the [`Channel`] in its receiver list (17
/// bytes) and its id in that channel's history (13 bytes), rounded up.
pub const RECEIVER_OVERHEAD_BYTES: usize = 32;

/// Stale expiry-heap items tolerated beyond the number of stored messages before the heap is
/// rebuilt (keeps rebuilds rare for small stores; the rebuild is amortised O(1) per item).
const HEAP_SLACK: usize = 1024;

/// What one stored message counts against [`StoreLimits::max_bytes`]:
/// `body + text + binary + MESSAGE_OVERHEAD_BYTES + RECEIVER_OVERHEAD_BYTES * receivers`.
pub fn message_cost(msg: &Message) -> usize {
    msg.body
        .len()
        .saturating_add(msg.text.len())
        .saturating_add(msg.binary.len())
        .saturating_add(MESSAGE_OVERHEAD_BYTES)
        .saturating_add(RECEIVER_OVERHEAD_BYTES.saturating_mul(msg.receivers.len()))
}

/// The bounds of a [`MemoryStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Messages kept per channel (oldest dropped first); see [`DEFAULT_CHANNEL_HISTORY`].
    pub channel_history: usize,
    /// Bytes of all stored messages together (oldest evicted first); see
    /// [`DEFAULT_HISTORY_MAX_BYTES`].
    pub max_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            channel_history: DEFAULT_CHANNEL_HISTORY,
            max_bytes: DEFAULT_HISTORY_MAX_BYTES,
        }
    }
}

/// The answer to [`MemoryStore::replay`].
#[derive(Debug, Default)]
pub struct Replay {
    /// The messages, ascending by id, each once.
    pub messages: Vec<SharedMessage>,
    /// Whether further messages follow the last one returned (ask again from its id).
    pub more: bool,
}

/// Counters of a [`MemoryStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Messages stored (including expired ones not purged yet).
    pub messages: usize,
    /// Their total cost, as counted by [`message_cost`].
    pub bytes: usize,
    /// Channels holding at least one message.
    pub channels: usize,
    /// Messages removed by a limit (the last channel holding them dropped them, or the byte cap).
    pub evicted: u64,
    /// Messages removed by [`MemoryStore::purge`] because they expired.
    pub expired: u64,
}

/// One stored message.
struct Entry {
    msg: SharedMessage,
    expires_at: Instant,
    /// Channel histories still holding the id; the message goes when this reaches 0.
    refs: u32,
}

/// The message history: see the module documentation.
pub struct MemoryStore {
    limits: StoreLimits,
    entries: BTreeMap<MessageId, Entry>,
    channels: AHashMap<Channel, VecDeque<MessageId>>,
    expiries: BinaryHeap<Reverse<(Instant, MessageId)>>,
    bytes: usize,
    evicted: u64,
    expired: u64,
    last_stored: Option<MessageId>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store with these limits.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            limits,
            entries: BTreeMap::new(),
            channels: AHashMap::new(),
            expiries: BinaryHeap::new(),
            bytes: 0,
            evicted: 0,
            expired: 0,
            last_stored: None,
        }
    }

    /// The limits the store was made with.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Stores `msg` under each of its receivers, expiring at `now + msg.expiry` seconds, then
    /// applies the per-channel cap and the byte cap (globally oldest evicted first; a message
    /// larger than the whole cap is evicted at once).
    ///
    /// Ids must arrive in increasing order (debug-asserted). In release builds an out-of-order
    /// id is still filed in its sorted place and a repeated id is ignored. A message with
    /// `expiry == 0` or no receivers is not stored.
    pub fn store(&mut self, msg: SharedMessage, now: Instant) {
        let expires_at = expiry_instant(now, msg.expiry);
        self.store_until(msg, expires_at);
    }

    /// [`MemoryStore::store`] with an explicit expiry time (messages reloaded at start keep
    /// the time they had left).
    pub fn store_until(&mut self, msg: SharedMessage, expires_at: Instant) {
        let id = msg.id;
        debug_assert!(
            self.last_stored.is_none_or(|last| id > last),
            "message ids must be stored in increasing order"
        );
        self.last_stored = Some(self.last_stored.map_or(id, |last| last.max(id)));
        if msg.expiry == 0 || msg.receivers.is_empty() || self.entries.contains_key(&id) {
            return;
        }
        let mut refs = 0u32;
        for channel in msg.receivers.iter() {
            let history = self.channels.entry(*channel).or_default();
            if insert_sorted(history, id) {
                refs += 1;
            }
        }
        self.bytes = self.bytes.saturating_add(message_cost(&msg));
        self.expiries.push(Reverse((expires_at, id)));
        self.entries.insert(
            id,
            Entry {
                msg: msg.clone(),
                expires_at,
                refs,
            },
        );

        let cap = self.limits.channel_history;
        for channel in msg.receivers.iter() {
            while let Some(history) = self.channels.get_mut(channel) {
                if history.len() <= cap {
                    break;
                }
                let Some(oldest) = history.pop_front() else {
                    break;
                };
                if history.is_empty() {
                    self.channels.remove(channel);
                }
                self.release(oldest);
            }
        }

        while self.bytes > self.limits.max_bytes {
            let Some(oldest) = self.entries.first_key_value().map(|(id, _)| *id) else {
                break;
            };
            if self.remove_message(oldest) {
                self.evicted += 1;
            }
        }
        self.settle_expiries();
    }

    /// Messages stored on any of `channels` with id > `since`, not expired at `now`, ascending by
    /// id, each once even if it is on several of the channels: the oldest `max` of them, with
    /// `more` telling whether further ones follow. Work is proportional to the messages looked
    /// at plus the channels (a binary search per channel, then a k-way merge).
    pub fn replay(
        &self,
        channels: &[Channel],
        since: MessageId,
        max: usize,
        now: Instant,
    ) -> Replay {
        self.replay_bounded(channels, since, max, usize::MAX, now)
    }

    /// [`MemoryStore::replay`] with a byte bound too: the page stops before the message that would
    /// take the sum of text encodings past `max_bytes` (a page always has at least one message).
    pub fn replay_bounded(
        &self,
        channels: &[Channel],
        since: MessageId,
        max: usize,
        max_bytes: usize,
        now: Instant,
    ) -> Replay {
        // One cursor per channel history, positioned on its first id > since.
        let mut cursors: Vec<(&VecDeque<MessageId>, usize)> = Vec::with_capacity(channels.len());
        let mut heads: BinaryHeap<Reverse<(MessageId, usize)>> =
            BinaryHeap::with_capacity(channels.len());
        for channel in channels {
            let Some(history) = self.channels.get(channel) else {
                continue;
            };
            let pos = history.partition_point(|id| *id <= since);
            if let Some(&id) = history.get(pos) {
                heads.push(Reverse((id, cursors.len())));
                cursors.push((history, pos));
            }
        }

        let mut replay = Replay::default();
        let mut bytes = 0usize;
        let mut previous: Option<MessageId> = None;
        while let Some(Reverse((id, cursor))) = heads.pop() {
            if let Some((history, pos)) = cursors.get_mut(cursor) {
                *pos += 1;
                if let Some(&next) = history.get(*pos) {
                    heads.push(Reverse((next, cursor)));
                }
            }
            if previous == Some(id) {
                continue;
            }
            previous = Some(id);
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            if entry.expires_at <= now {
                continue;
            }
            let size = entry.msg.text.len();
            let over_bytes = !replay.messages.is_empty() && bytes.saturating_add(size) > max_bytes;
            if replay.messages.len() >= max || over_bytes {
                replay.more = true;
                break;
            }
            bytes += size;
            replay.messages.push(entry.msg.clone());
        }
        replay
    }

    /// Every stored message with its expiry time, oldest first.
    pub fn messages(&self) -> impl Iterator<Item = (&SharedMessage, Instant)> + '_ {
        self.entries.values().map(|e| (&e.msg, e.expires_at))
    }

    /// The newest id ever stored.
    pub fn last_stored(&self) -> Option<MessageId> {
        self.last_stored
    }

    /// The newest id stored on any of `channels` and not expired at `now`, if any.
    pub fn last_id(&self, channels: &[Channel], now: Instant) -> Option<MessageId> {
        channels
            .iter()
            .filter_map(|channel| self.channels.get(channel))
            .filter_map(|history| {
                history
                    .iter()
                    .rev()
                    .find(|id| self.is_live(id, now))
                    .copied()
            })
            .max()
    }

    /// Removes every message whose expiry time is <= `now`; returns how many were removed.
    pub fn purge(&mut self, now: Instant) -> usize {
        let mut removed = 0usize;
        while let Some(&Reverse((at, id))) = self.expiries.peek() {
            if at > now {
                break;
            }
            self.expiries.pop();
            let current = self.entries.get(&id).is_some_and(|e| e.expires_at == at);
            if current && self.remove_message(id) {
                removed += 1;
            }
        }
        self.expired += removed as u64;
        self.settle_expiries();
        removed
    }

    /// When the next stored message expires (for the caller's timer), if any message is stored.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.peek().map(|Reverse((at, _))| *at)
    }

    /// The store's counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            messages: self.entries.len(),
            bytes: self.bytes,
            channels: self.channels.len(),
            evicted: self.evicted,
            expired: self.expired,
        }
    }

    fn is_live(&self, id: &MessageId, now: Instant) -> bool {
        self.entries.get(id).is_some_and(|e| e.expires_at > now)
    }

    /// One channel history dropped `id`; the message goes when no history holds it.
    fn release(&mut self, id: MessageId) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0 {
            if let Some(entry) = self.entries.remove(&id) {
                self.bytes = self.bytes.saturating_sub(message_cost(&entry.msg));
            }
            self.evicted += 1;
        }
    }

    /// Removes a message from the store and from every channel history holding it.
    fn remove_message(&mut self, id: MessageId) -> bool {
        let Some(entry) = self.entries.remove(&id) else {
            return false;
        };
        self.bytes = self.bytes.saturating_sub(message_cost(&entry.msg));
        for channel in entry.msg.receivers.iter() {
            let Some(history) = self.channels.get_mut(channel) else {
                continue;
            };
            // Usually the oldest of its channel, so check the front before searching.
            if history.front() == Some(&id) {
                history.pop_front();
            } else if let Ok(pos) = history.binary_search(&id) {
                history.remove(pos);
            }
            if history.is_empty() {
                self.channels.remove(channel);
            }
        }
        true
    }

    /// Drops stale items from the top of the expiry heap (so its top is a stored message), and
    /// rebuilds the heap when stale items dominate it.
    fn settle_expiries(&mut self) {
        if self.expiries.len() > self.entries.len().saturating_mul(2) + HEAP_SLACK {
            self.expiries = self
                .entries
                .iter()
                .map(|(id, entry)| Reverse((entry.expires_at, *id)))
                .collect();
        }
        while let Some(&Reverse((at, id))) = self.expiries.peek() {
            if self.entries.get(&id).is_some_and(|e| e.expires_at == at) {
                break;
            }
            self.expiries.pop();
        }
    }
}

/// Files `id` in an ascending history; `false` if it is already there.
fn insert_sorted(history: &mut VecDeque<MessageId>, id: MessageId) -> bool {
    match history.back() {
        Some(&back) if back >= id => match history.binary_search(&id) {
            Ok(_) => false,
            Err(pos) => {
                history.insert(pos, id);
                true
            }
        },
        _ => {
            history.push_back(id);
            true
        }
    }
}

/// `now + secs`, saturating at the furthest instant the platform represents.
fn expiry_instant(now: Instant, secs: u32) -> Instant {
    let mut ahead = Duration::from_secs(u64::from(secs));
    loop {
        if let Some(at) = now.checked_add(ahead) {
            return at;
        }
        ahead /= 2;
    }
}

#[cfg(test)]
mod tests;
