//! The engine: message ids, history, replay, online state and cross-core fan-out, behind one
//! message interface (spec/history.md).
//!
//! Reactors never call the engine directly: they send [`EngineCmd`]s through an [`EngineHandle`]
//! and receive [`CoreMsg`]s in their mailbox. The embedded engine ([`local`]) runs on its own
//! thread over the in-memory [`memory`] store; a Redis engine fills the same interface, so no
//! reactor code knows which engine runs.
//!
//! ```text
//!   core 0 ──EngineCmd──┐                ┌──CoreMsg──▶ core 0 mailbox
//!   core 1 ──EngineCmd──┼──▶ engine ─────┼──CoreMsg──▶ core 1 mailbox
//!   core N ──EngineCmd──┘   (ids, store, └──CoreMsg──▶ core N mailbox
//!                            interest)       (only cores with subscribers of the channel)
//! ```

pub mod interest;
pub mod local;
pub mod memory;
pub mod redis;
pub mod snapshot;

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::{Sender as ChanSender, TrySendError};

use crate::message::{Channel, MessageId, SharedMessage};
pub use crate::proto::request::Publication;

/// Capacity of the queue from all cores to the engine. A full queue makes publishes answer 503
/// at once (a reactor never waits); 16,384 commands absorb bursts of a few hundred milliseconds.
/// The queue is allocated up front, so a larger one would cost memory on every idle server.
pub const DEFAULT_ENGINE_QUEUE: usize = 16_384;

/// Commands overflowed locally per core (subscribe/unsubscribe bookkeeping, which must not be
/// lost) before the core refuses new subscriptions with 503.
pub const DEFAULT_ENGINE_OVERFLOW: usize = 65_536;

/// Identifies the connection an answer is for: its core, slab slot and generation (a slot reused
/// by a newer connection has another generation, so late answers are dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRef {
    /// Core index.
    pub core: u16,
    /// Slab slot on that core.
    pub slot: u32,
    /// Generation of the connection in that slot.
    pub generation: u32,
}

/// What cores ask of the engine.
#[derive(Debug)]
pub enum EngineCmd {
    /// Assign ids, store (when `expiry > 0`) and deliver each message to every subscriber of its
    /// receivers, in order. Answered with [`CoreMsg::Published`].
    Publish {
        /// Connection to answer.
        from: ConnRef,
        /// The messages.
        messages: Vec<Publication>,
    },
    /// A connection starts listening on `channels`. Answered with [`CoreMsg::Replay`] holding the
    /// stored messages after `since` (none when `since` is absent) and the newest stored id.
    Subscribe {
        /// The subscribing connection.
        conn: ConnRef,
        /// Its channels.
        channels: Arc<[Channel]>,
        /// Channels on which it counts against `max_conn_per_channel` (private channels named
        /// with a public part); the oldest connection over the limit is evicted.
        capped: Arc<[Channel]>,
        /// Its last received message id.
        since: Option<MessageId>,
    },
    /// The next page of a replay that answered `more: true`; changes no subscription counts.
    ReplayMore {
        /// The subscribing connection.
        conn: ConnRef,
        /// Its channels.
        channels: Arc<[Channel]>,
        /// The last id it was given.
        since: MessageId,
    },
    /// A connection stopped listening on `channels` (it was last seen now).
    Unsubscribe {
        /// The connection.
        conn: ConnRef,
        /// The channels it listened on.
        channels: Arc<[Channel]>,
        /// Its capped channels.
        capped: Arc<[Channel]>,
    },
    /// Subscriber counts and online state of channels, answered with [`CoreMsg::ChannelInfo`].
    ChannelInfo {
        /// Connection to answer.
        from: ConnRef,
        /// Channels asked about.
        channels: Vec<Channel>,
    },
    /// Stop the engine thread.
    Shutdown,
}

/// An event of a Redis server's pub/sub stream, sent by the Redis engine's subscriber thread of
/// that server on the engine's stream queue (never on the cores' command queue: the messages
/// echoed back by Redis must not take the room publishes need, spec/cluster.md §5).
#[derive(Debug)]
pub struct StreamMsg {
    /// Index of the Redis server (0 unless sharded).
    pub shard: usize,
    /// What happened.
    pub event: StreamEvent,
}

/// What a Redis server's pub/sub stream brought (spec/cluster.md §5, §8, §9).
#[derive(Debug)]
pub enum StreamEvent {
    /// Messages published through the cluster's pub/sub, for the local subscribers.
    Messages(Vec<SharedMessage>),
    /// A sharded server's clock passed this id: no message with a smaller id will follow.
    Tick(MessageId),
    /// The stream (re)subscribed: messages stored meanwhile are fetched and delivered before
    /// the new stream's.
    Resync,
    /// The stream was lost; the thread reconnects.
    Lost,
}

/// Subscriber count and online state of one channel (spec/publishing.md §3, spec/binary.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelState {
    /// The channel.
    pub channel: Channel,
    /// Connections listening on it now, on all cores.
    pub subscribers: u32,
    /// Listening now, or seen within `online_ttl + online_delta`.
    pub online: bool,
}

/// Why a publication was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The engine cannot take more work now (503).
    Busy,
    /// The engine cannot store the message (503); nothing was delivered.
    Unavailable,
}

impl PublishError {
    /// HTTP status for the publisher.
    pub fn status(self) -> u16 {
        503
    }

    /// Reason text for the publisher.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Busy => "Server busy, try again.",
            Self::Unavailable => "Message storage unavailable.",
        }
    }
}

/// What the engine sends to a core.
#[derive(Debug)]
pub enum CoreMsg {
    /// A new message for the local subscribers of its receivers.
    Deliver(SharedMessage),
    /// Stored messages for one connection, oldest first.
    Replay {
        /// The connection.
        conn: ConnRef,
        /// Messages after the asked id, ascending.
        messages: Vec<SharedMessage>,
        /// More stored messages follow; ask with [`EngineCmd::ReplayMore`].
        more: bool,
        /// Newest stored id over the connection's channels.
        last_id: Option<MessageId>,
        /// Newest id the id source has issued (any channel): a `mid` at or below it is a real
        /// id, so live messages up to it are duplicates for this connection (spec/history.md §3).
        issued: Option<MessageId>,
    },
    /// Outcome of a [`EngineCmd::Publish`].
    Published {
        /// The publishing connection.
        conn: ConnRef,
        /// The new id, or why nothing was published.
        result: Result<MessageId, PublishError>,
    },
    /// Channel states, in the order asked.
    ChannelInfo {
        /// The asking connection.
        conn: ConnRef,
        /// One state per asked channel.
        infos: Vec<ChannelState>,
    },
    /// The connection must close: its channel has too many connections (spec/binary.md §5).
    Evict {
        /// The connection.
        conn: ConnRef,
    },
    /// Stop accepting, close connections, exit the core.
    Shutdown,
    /// The configuration was reloaded (SIGHUP): use these settings from now on.
    Reload(Arc<crate::conn::Shared>),
}

impl CoreMsg {
    /// The connection an answer is for (`None` for broadcasts).
    pub fn conn(&self) -> Option<ConnRef> {
        match self {
            Self::Replay { conn, .. }
            | Self::Published { conn, .. }
            | Self::ChannelInfo { conn, .. }
            | Self::Evict { conn } => Some(*conn),
            Self::Deliver(_) | Self::Shutdown | Self::Reload(_) => None,
        }
    }
}

/// A core's sending side to the engine. Never blocks: publishes fail fast when the engine queue
/// is full; bookkeeping commands wait in a bounded local overflow queue flushed every loop turn.
#[derive(Debug)]
pub struct EngineHandle {
    tx: ChanSender<EngineCmd>,
    overflow: VecDeque<EngineCmd>,
}

/// The engine queue is full (publish) or the local overflow too (bookkeeping).
#[derive(Debug)]
pub struct Busy;

impl EngineHandle {
    /// A handle over the engine's command queue.
    pub fn new(tx: ChanSender<EngineCmd>) -> Self {
        Self {
            tx,
            overflow: VecDeque::new(),
        }
    }

    /// Sends a command that may be refused (a publish, a stats query): `Err(Busy)` when the
    /// engine queue is full.
    pub fn try_send(&mut self, cmd: EngineCmd) -> Result<(), Busy> {
        if !self.overflow.is_empty() {
            return Err(Busy);
        }
        match self.tx.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// Whether the engine queue is less than half full with nothing overflowed: a pipelining
    /// publisher may then have another publish taken before its answers (spec/publishing.md
    /// §8); beyond that it waits for them, leaving the rest of the queue to other publishers.
    pub fn has_room_for_pipelining(&self) -> bool {
        let half = self.tx.capacity().unwrap_or(DEFAULT_ENGINE_QUEUE) / 2;
        self.overflow.is_empty() && self.tx.len() < half
    }

    /// Sends a command that must not be lost, keeping order with earlier ones: it waits in the
    /// overflow queue while the engine queue is full. `Err(Busy)` only when that is full too.
    pub fn send_reliable(&mut self, cmd: EngineCmd) -> Result<(), Busy> {
        if self.overflow.is_empty() {
            match self.tx.try_send(cmd) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Ok(()),
                Err(TrySendError::Full(cmd)) => {
                    self.overflow.push_back(cmd);
                    return Ok(());
                }
            }
        }
        if self.overflow.len() >= DEFAULT_ENGINE_OVERFLOW {
            return Err(Busy);
        }
        self.overflow.push_back(cmd);
        Ok(())
    }

    /// Moves overflowed commands to the engine queue; call once per loop turn. Returns whether
    /// some are still waiting.
    pub fn flush(&mut self) -> bool {
        while let Some(cmd) = self.overflow.pop_front() {
            match self.tx.try_send(cmd) {
                Ok(()) => {}
                Err(TrySendError::Disconnected(_)) => self.overflow.clear(),
                Err(TrySendError::Full(cmd)) => {
                    self.overflow.push_front(cmd);
                    return true;
                }
            }
        }
        false
    }
}
