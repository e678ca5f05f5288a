//! What every engine keeps about the cores: which core has subscribers of which channel, the
//! connections of capped channels, and the way to send to the cores. Shared by the embedded
//! and the Redis engine (spec/history.md §4).

use std::collections::VecDeque;
use std::sync::Arc;

use ahash::AHashMap;

use super::{ConnRef, CoreMsg};
use crate::message::{Channel, SharedMessage};
use crate::metrics::{CoreStats, EngineStats};
use crate::reactor::mailbox::CorePeer;

/// Subscriber counts per channel and core, and the connections of capped channels.
#[derive(Debug)]
pub struct Interest {
    cores: usize,
    counts: AHashMap<Channel, Box<[u32]>>,
    capped: AHashMap<Channel, VecDeque<ConnRef>>,
    max_conn_per_channel: usize,
}

impl Interest {
    /// Empty interest for `cores` cores.
    pub fn new(cores: usize, max_conn_per_channel: usize) -> Self {
        Self {
            cores,
            counts: AHashMap::new(),
            capped: AHashMap::new(),
            max_conn_per_channel,
        }
    }

    /// A connection listens on `channels`; returns the connections evicted from capped channels
    /// that went over `max_conn_per_channel` (oldest first).
    pub fn subscribe(
        &mut self,
        conn: ConnRef,
        channels: &[Channel],
        capped: &[Channel],
    ) -> Vec<ConnRef> {
        for channel in channels {
            let counts = self
                .counts
                .entry(*channel)
                .or_insert_with(|| vec![0; self.cores].into());
            if let Some(count) = counts.get_mut(usize::from(conn.core)) {
                *count += 1;
            }
        }
        let mut evicted = Vec::new();
        for channel in capped {
            let queue = self.capped.entry(*channel).or_default();
            queue.push_back(conn);
            while queue.len() > self.max_conn_per_channel {
                evicted.extend(queue.pop_front());
            }
        }
        evicted
    }

    /// A connection stopped listening.
    pub fn unsubscribe(&mut self, conn: ConnRef, channels: &[Channel], capped: &[Channel]) {
        for channel in channels {
            if let Some(counts) = self.counts.get_mut(channel) {
                if let Some(count) = counts.get_mut(usize::from(conn.core)) {
                    *count = count.saturating_sub(1);
                }
                if counts.iter().all(|&c| c == 0) {
                    self.counts.remove(channel);
                }
            }
        }
        for channel in capped {
            if let Some(queue) = self.capped.get_mut(channel) {
                queue.retain(|c| *c != conn);
                if queue.is_empty() {
                    self.capped.remove(channel);
                }
            }
        }
    }

    /// Connections listening on `channel`, on all cores.
    pub fn count(&self, channel: &Channel) -> u32 {
        self.counts.get(channel).map_or(0, |c| c.iter().sum())
    }

    /// Channels with at least one connection.
    pub fn channels(&self) -> usize {
        self.counts.len()
    }

    /// Every channel with at least one connection.
    pub fn channel_list(&self) -> impl Iterator<Item = &Channel> + '_ {
        self.counts.keys()
    }
}

/// Where the engine's messages for one core go.
#[derive(Debug)]
enum Link {
    /// The core's mailbox (the engine runs on its own thread).
    Mailbox(CorePeer),
    /// The engine's outbox, which the core empties after each [`super::local::LocalEngine::pump`]
    /// (the engine runs inside the loop of the server's only core).
    Inline,
}

/// The engine's way to the cores.
#[derive(Debug)]
pub struct Cores {
    links: Vec<Link>,
    targets: Vec<bool>,
    outbox: Vec<CoreMsg>,
}

impl Cores {
    /// The cores' mailboxes, by index.
    pub fn new(peers: Vec<CorePeer>) -> Self {
        let n = peers.len();
        Self {
            links: peers.into_iter().map(Link::Mailbox).collect(),
            targets: vec![false; n],
            outbox: Vec::new(),
        }
    }

    /// The one core of a server whose engine runs inside that core's loop: messages collect in
    /// the outbox ([`Cores::outbox`]), with no queue and no wake-up between them.
    pub fn inline() -> Self {
        Self {
            links: vec![Link::Inline],
            targets: vec![false],
            outbox: Vec::new(),
        }
    }

    /// How many cores there are.
    pub fn count(&self) -> usize {
        self.links.len()
    }

    /// Messages for the inline core, oldest first (always empty with mailboxes).
    pub fn outbox(&mut self) -> &mut Vec<CoreMsg> {
        &mut self.outbox
    }

    fn send(&mut self, core: usize, msg: CoreMsg) {
        match self.links.get(core) {
            Some(Link::Mailbox(peer)) => {
                peer.send(msg);
            }
            Some(Link::Inline) => self.outbox.push(msg),
            None => {}
        }
    }

    /// Sends `message` to every core with a subscriber of one of its receivers, once.
    pub fn deliver(&mut self, message: &SharedMessage, interest: &Interest) {
        self.targets.iter_mut().for_each(|t| *t = false);
        for channel in message.receivers.iter() {
            if let Some(counts) = interest.counts.get(channel) {
                for (target, &count) in self.targets.iter_mut().zip(counts.iter()) {
                    *target |= count > 0;
                }
            }
        }
        for core in 0..self.targets.len() {
            if self.targets[core] {
                self.send(core, CoreMsg::Deliver(message.clone()));
            }
        }
    }

    /// Sends an answer to the core of `conn`.
    pub fn answer(&mut self, conn: ConnRef, msg: CoreMsg) {
        self.send(usize::from(conn.core), msg);
    }

    /// Tells the cores of `evicted` to close those connections (4029).
    pub fn evict(&mut self, evicted: Vec<ConnRef>) {
        for conn in evicted {
            self.answer(conn, CoreMsg::Evict { conn });
        }
    }
}

/// The periodic one-line summary an admin reads in the log (`stats_interval`).
pub fn log_summary(cores: &[Arc<CoreStats>], interest: &Interest, engine: &EngineStats) {
    let sum = |f: fn(&CoreStats) -> u64| -> u64 { cores.iter().map(|c| f(c)).sum() };
    log::info!(
        "stats: connections={} websockets={} pollings={} channels={} published={} \
         delivered={} stored={} ({} bytes) slow_closed={}",
        sum(|c| c.connections.get()),
        sum(|c| c.websockets.get()),
        sum(|c| c.pollings.get()),
        interest.channels(),
        engine.published.get(),
        sum(|c| c.delivered.get()),
        engine.stored_messages.get(),
        engine.stored_bytes.get(),
        sum(|c| c.slow_closed.get()),
    );
}
