//! Counters and gauges, with their names in one place ([`names`]).
//!
//! Each core owns one [`CoreStats`] and is its only writer (relaxed atomics on its own cache
//! lines: no lock, no contention); `/server-stat/` reads them all. The engine owns one
//! [`EngineStats`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Metric names, as they appear in `/server-stat/` (spec/publishing.md §6).
pub mod names {
    /// Open connections of any kind.
    pub const CONNECTIONS: &str = "connections";
    /// Open WebSocket subscribers.
    pub const WEBSOCKETS: &str = "websockets";
    /// Long-poll requests being held.
    pub const POLLINGS: &str = "pollings";
    /// Connections accepted since start.
    pub const ACCEPTED: &str = "accepted";
    /// Times accepting was paused because the connection limit was reached.
    pub const ACCEPT_PAUSED: &str = "accept_paused";
    /// HTTP requests handled.
    pub const REQUESTS: &str = "requests";
    /// Messages written to subscribers (one per subscriber per message).
    pub const DELIVERED: &str = "delivered";
    /// Subscribers closed because their output queue was full.
    pub const SLOW_CLOSED: &str = "slow_closed";
    /// Connections closed because handling them panicked (a bug: logged with the connection).
    pub const PANICKED: &str = "panicked";
    /// Messages accepted by the engine.
    pub const PUBLISHED: &str = "published";
    /// Messages currently stored for replay.
    pub const STORED_MESSAGES: &str = "stored_messages";
    /// Bytes currently stored for replay.
    pub const STORED_BYTES: &str = "stored_bytes";
    /// Channels with at least one subscriber.
    pub const CHANNELS: &str = "channels";
}

/// A gauge or counter written by one thread, read by any.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Stat(AtomicU64);

impl Stat {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts `n` (gauges only).
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// Reads the value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One core's statistics.
#[derive(Debug, Default)]
pub struct CoreStats {
    /// See [`names::CONNECTIONS`].
    pub connections: Stat,
    /// See [`names::WEBSOCKETS`].
    pub websockets: Stat,
    /// See [`names::POLLINGS`].
    pub pollings: Stat,
    /// See [`names::ACCEPTED`].
    pub accepted: Stat,
    /// See [`names::ACCEPT_PAUSED`].
    pub accept_paused: Stat,
    /// See [`names::REQUESTS`].
    pub requests: Stat,
    /// See [`names::DELIVERED`].
    pub delivered: Stat,
    /// See [`names::SLOW_CLOSED`].
    pub slow_closed: Stat,
    /// See [`names::PANICKED`].
    pub panicked: Stat,
}

impl CoreStats {
    /// The JSON object of this core.
    pub fn to_json(&self, core: usize) -> Value {
        json!({
            "core": core,
            names::CONNECTIONS: self.connections.get(),
            names::WEBSOCKETS: self.websockets.get(),
            names::POLLINGS: self.pollings.get(),
            names::ACCEPTED: self.accepted.get(),
            names::ACCEPT_PAUSED: self.accept_paused.get(),
            names::REQUESTS: self.requests.get(),
            names::DELIVERED: self.delivered.get(),
            names::SLOW_CLOSED: self.slow_closed.get(),
            names::PANICKED: self.panicked.get(),
        })
    }
}

/// Requests by command and messages by type since midnight UTC, as the reference's `daily`
/// statistics (spec/publishing.md §6).
#[derive(Debug, Default)]
pub struct Daily {
    day: u64,
    requests: BTreeMap<String, u64>,
    messages: BTreeMap<String, u64>,
}

impl Daily {
    fn roll(&mut self, unix_secs: u64) {
        let day = unix_secs / 86_400;
        if day != self.day {
            self.day = day;
            self.requests.clear();
            self.messages.clear();
        }
    }

    fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
        match map.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                // The label set is bounded by the label pattern; the command set is fixed.
                map.insert(key.to_owned(), 1);
            }
        }
    }

    /// The JSON object `{"requests":{…},"messages":{…}}`.
    pub fn to_json(&mut self, unix_secs: u64) -> Value {
        self.roll(unix_secs);
        json!({ "requests": self.requests, "messages": self.messages })
    }
}

/// What the cluster engine knows of the other processes sharing its Redis.
#[derive(Debug, Default)]
pub struct Cluster {
    /// This process's unique id in the cluster (`None` without a cluster).
    pub uid: Option<String>,
    /// The other live processes' statistics objects, as they stored them.
    pub others: Vec<Value>,
}

/// The engine's statistics.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// See [`names::PUBLISHED`].
    pub published: Stat,
    /// See [`names::STORED_MESSAGES`].
    pub stored_messages: Stat,
    /// See [`names::STORED_BYTES`].
    pub stored_bytes: Stat,
    /// See [`names::CHANNELS`].
    pub channels: Stat,
    /// Daily counts. A lock, but off the delivery path: taken once per publication by the
    /// engine and once per protobuf request or stats query by a core.
    pub daily: Mutex<Daily>,
    /// The cluster view, refreshed by the Redis engine every `stats_interval`.
    pub cluster: Mutex<Cluster>,
}

impl EngineStats {
    /// Counts a published message of type `label`.
    pub fn count_message(&self, label: &str) {
        if let Ok(mut daily) = self.daily.lock() {
            daily.roll(unix_secs());
            Daily::bump(&mut daily.messages, label);
        }
    }

    /// Counts a protobuf request of `command`.
    pub fn count_request(&self, command: &str) {
        if let Ok(mut daily) = self.daily.lock() {
            daily.roll(unix_secs());
            Daily::bump(&mut daily.requests, command);
        }
    }

    /// The daily counts as JSON.
    pub fn daily_json(&self) -> Value {
        match self.daily.lock() {
            Ok(mut daily) => daily.to_json(unix_secs()),
            Err(_) => json!({ "requests": {}, "messages": {} }),
        }
    }

    /// Adds the engine's figures to a JSON object.
    pub fn fill(&self, out: &mut Map<String, Value>) {
        out.insert(names::PUBLISHED.into(), self.published.get().into());
        out.insert(
            names::STORED_MESSAGES.into(),
            self.stored_messages.get().into(),
        );
        out.insert(names::STORED_BYTES.into(), self.stored_bytes.get().into());
        out.insert(names::CHANNELS.into(), self.channels.get().into());
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
