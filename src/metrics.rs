//! Counters and gauges, with their names in one place ([`names`]).
//!
//! Each core owns one [`CoreStats`] and is its only writer (relaxed atomics on its own cache
//! lines: no lock, no contention); `/server-stat/` reads them all. The engine owns one
//! [`EngineStats`].

use std::sync::atomic::{AtomicU64, Ordering};

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
        })
    }
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
}

impl EngineStats {
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
