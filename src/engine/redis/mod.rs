//! The cluster engine: message ids, history, online marks and fan-out in a Redis shared by any
//! number of pushpull nodes (and Node push-server processes), in the Node push-server's layout
//! (spec/cluster.md), optionally sharded over several Redis servers (§9).
//!
//! Threads, none of them a reactor: the engine thread takes the cores' commands in batches and
//! runs them as pipelines (one script call per server for all publications of a batch), and one
//! subscriber thread per server listens on `pushserver:*` and hands every published message,
//! this node's own included, back to the engine for the local subscribers. Delivering through
//! Redis pub/sub gives one order, the id order, on every node; with several servers the merge
//! (shard.rs) restores it from their streams.
//!
//! ```text
//!   cores ──EngineCmd──▶ engine thread ──EVALSHA (batch)──▶ Redis[i] ──PUBLISH──┐
//!     ▲                    │  ▲                                                 │
//!     └─────CoreMsg────────┘  └──Stream{i}── merge ◀── subscriber thread[i] ◀───┘
//! ```

mod link;
mod publish;
mod reads;
pub mod scripts;
pub mod shard;
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use log::info;
use redis::Script;

use super::interest::{Cores, Interest, log_summary};
use super::local::unix_ms;
use super::{ChannelState, ConnRef, CoreMsg, EngineCmd, Publication, StreamEvent, StreamMsg};
use crate::config::RedisConfig;
use crate::conn::Shared;
use crate::message::{Channel, MessageId, SharedMessage};
use crate::metrics::{CoreStats, EngineStats};
use crate::reactor::mailbox::CorePeer;
use link::{BACKOFF_MIN, Link, Origin};
pub use link::{DEFAULT_REDIS_TIMEOUT, client, install_crypto_provider};
use reads::{caught_up, replay_pages, sharded_pages};
use shard::Merge;

/// Commands taken per batch: one batch is one pipeline (one script call for its publications).
const BATCH: usize = 1024;
/// Capacity of the queue from the subscriber threads to the engine thread, in stream events (an
/// event holds the messages of one Redis pub/sub message). It is separate from the cores' command
/// queue, so messages echoed back by Redis never make publishes answer 503; when it is full the
/// subscriber thread waits, Redis buffers the stream, and a stream Redis cuts off for falling
/// behind is caught up from storage (spec/cluster.md §8).
pub const DEFAULT_STREAM_QUEUE: usize = 16_384;
/// Longest wait for a command when idle.
const IDLE: Duration = Duration::from_millis(500);
/// Stream messages held back while a catch-up waits for Redis; beyond this they are delivered
/// at once (a catch-up that cannot run for this long only costs ordering, never memory).
pub const DEFAULT_CATCH_UP_HOLD: usize = 65_536;
/// Slack on top of two stats intervals before another process's statistics count as stale
/// (the reference's `statDeltaMsec` plays this part).
const STATS_SLACK: Duration = Duration::from_secs(5);
/// Sharded: how long the merge holds a message for a server whose stream has not passed it
/// before this node asks that server for a clock tick (the publishing node asks at once; this
/// covers a publisher that died in between). Bounds the extra latency of sharding.
pub const DEFAULT_TICK_AFTER: Duration = Duration::from_millis(20);

/// Settings of the Redis engine.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// Where Redis is.
    pub redis: RedisConfig,
    /// Upper bound on a message's storage time, seconds; also the channel sets' TTL.
    pub message_ttl: u32,
    /// Messages kept per channel set.
    pub channel_history: usize,
    /// Messages per replay answer.
    pub replay_max: usize,
    /// Connections per capped channel before the oldest is evicted.
    pub max_conn_per_channel: usize,
    /// Online mark lifetime (`online_ttl + online_delta`).
    pub online_window: Duration,
    /// How often the summary is logged.
    pub stats_interval: Duration,
}

/// A replay waiting for its round trips.
struct ReplayRequest {
    conn: ConnRef,
    channels: Arc<[Channel]>,
    since: Option<MessageId>,
}

/// The catch-up state of one server's stream.
///
/// ```text
///   live ──Resync──▶ catching_up = Some(held), from = last seen (None: first subscription)
///   catching_up ──catch_up() succeeds──▶ live     (fails: stays, retried)
/// ```
#[derive(Default)]
struct StreamState {
    /// Stream messages held back while a catch-up is pending (`Some`).
    catching_up: Option<Vec<SharedMessage>>,
    /// The pending catch-up has not been tried yet.
    catch_up_fresh: bool,
    /// Where the pending catch-up starts: the last id seen on the stream before its gap; `None`
    /// on the first subscription, which starts at the engine connection's origin.
    from: Option<MessageId>,
}

/// The engine thread's state.
pub struct RedisEngine {
    rx: Receiver<EngineCmd>,
    /// Events of the subscriber threads.
    stream_rx: Receiver<StreamMsg>,
    cores: Cores,
    interest: Interest,
    settings: RedisSettings,
    stats: Arc<EngineStats>,
    core_stats: Vec<Arc<CoreStats>>,
    /// One connection per server; index = shard.
    links: Vec<Link>,
    streams: Vec<StreamState>,
    merge: Merge,
    publish: Script,
    tick: Script,
    channel: String,
    stop: Arc<AtomicBool>,
    subscribers: Vec<JoinHandle<()>>,
    last_summary: Instant,
    /// Sharded: since when the merge holds messages (ticks are asked after
    /// [`DEFAULT_TICK_AFTER`]).
    hold_since: Option<Instant>,
    /// Newest id this node issued.
    issued: Option<MessageId>,
    /// Released messages on their way to the cores.
    out: Vec<SharedMessage>,
    shared: Arc<Shared>,
    uid: String,
    last_stats: Option<Instant>,
}

impl RedisEngine {
    /// An engine for `cores`; starts one subscriber thread per Redis server, which feed the
    /// engine's stream queue.
    pub fn new(
        rx: Receiver<EngineCmd>,
        cores: Vec<CorePeer>,
        settings: RedisSettings,
        shared: Arc<Shared>,
    ) -> redis::RedisResult<Self> {
        let stats = shared.engine_stats.clone();
        let core_stats = shared.core_stats.clone();
        let addrs = settings.redis.addrs();
        let sharded = addrs.len() > 1;
        let mut clients = Vec::with_capacity(addrs.len());
        for addr in &addrs {
            clients.push(client(&settings.redis, addr)?);
        }
        let uid = link::process_uid();
        info!(
            "redis engine: process {uid}, publishing on {}{uid}{}",
            scripts::PUBSUB_PREFIX,
            if sharded {
                format!(", channels sharded over {} servers", addrs.len())
            } else {
                String::new()
            }
        );
        if let Ok(mut cluster) = stats.cluster.lock() {
            cluster.uid = Some(uid.clone());
        }
        let name = |what: &str, i: usize| match sharded {
            true => format!("{what} [{i}: {}]", addrs[i]),
            false => what.to_owned(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, stream_rx) = crossbeam_channel::bounded(DEFAULT_STREAM_QUEUE);
        let mut subscribers = Vec::with_capacity(addrs.len());
        for (i, client) in clients.iter().enumerate() {
            let link = Link::new(client.clone(), name("subscriber", i), Origin::Unwanted);
            let (tx, stop) = (tx.clone(), stop.clone());
            let handle = std::thread::Builder::new()
                .name(format!("pushpull-redis-sub-{i}"))
                .spawn(move || link::subscriber(i, sharded, link, tx, stop))
                .map_err(|e| redis::RedisError::from(std::io::Error::other(e)))?;
            subscribers.push(handle);
        }
        let links = clients
            .into_iter()
            .enumerate()
            .map(|(i, c)| Link::new(c, name("engine", i), Origin::Unread { sharded }))
            .collect();
        Ok(Self {
            rx,
            stream_rx,
            interest: Interest::new(cores.len(), settings.max_conn_per_channel),
            cores: Cores::new(cores),
            settings,
            stats,
            core_stats,
            links,
            streams: (0..addrs.len()).map(|_| StreamState::default()).collect(),
            merge: Merge::new(addrs.len()),
            publish: Script::new(&scripts::publish_lua()),
            tick: Script::new(&scripts::tick_lua()),
            channel: format!("{}{uid}", scripts::PUBSUB_PREFIX),
            stop,
            subscribers,
            last_summary: Instant::now(),
            hold_since: None,
            issued: None,
            out: Vec::new(),
            shared,
            uid,
            last_stats: None,
        })
    }

    fn sharded(&self) -> bool {
        self.links.len() > 1
    }

    /// Runs until [`EngineCmd::Shutdown`].
    pub fn run(mut self) {
        for link in &mut self.links {
            let _ = link.get();
        }
        let mut batch = Vec::with_capacity(BATCH);
        let mut events = Vec::with_capacity(BATCH);
        loop {
            let wait = if self.streams.iter().any(|s| s.catching_up.is_some()) {
                BACKOFF_MIN
            } else if self.merge.held() > 0 {
                DEFAULT_TICK_AFTER
            } else {
                IDLE
            };
            select! {
                recv(self.rx) -> cmd => match cmd {
                    Ok(EngineCmd::Shutdown) | Err(_) => break,
                    Ok(cmd) => batch.push(cmd),
                },
                recv(self.stream_rx) -> event => match event {
                    Ok(event) => events.push(event),
                    // Every subscriber thread is gone (they only end when stopped).
                    Err(_) => self.stream_rx = crossbeam_channel::never(),
                },
                default(wait) => {}
            }
            while events.len() < BATCH {
                match self.stream_rx.try_recv() {
                    Ok(event) => events.push(event),
                    Err(_) => break,
                }
            }
            for StreamMsg { shard, event } in events.drain(..) {
                self.stream_event(shard, event);
            }
            let mut stop = false;
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(EngineCmd::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            self.run_batch(&mut batch);
            let now = Instant::now();
            self.guard_ticks(now);
            self.stats.channels.set(self.interest.channels() as u64);
            if now.duration_since(self.last_summary) >= self.settings.stats_interval {
                self.last_summary = now;
                log_summary(&self.core_stats, &self.interest, &self.stats);
            }
            if self
                .last_stats
                .is_none_or(|at| now.duration_since(at) >= self.settings.stats_interval)
            {
                self.last_stats = Some(now);
                self.exchange_stats();
            }
            if stop {
                break;
            }
        }
        self.stop.store(true, Ordering::Release);
        for handle in self.subscribers.drain(..) {
            let _ = handle.join();
        }
    }

    /// Runs one batch of commands: local bookkeeping first, then one pipeline per kind of work.
    fn run_batch(&mut self, batch: &mut Vec<EngineCmd>) {
        let mut publishes: Vec<(ConnRef, Vec<Publication>)> = Vec::new();
        let mut replays = Vec::new();
        let mut online: Vec<Channel> = Vec::new();
        let mut infos = Vec::new();
        for cmd in batch.drain(..) {
            match cmd {
                EngineCmd::Publish { from, messages } => publishes.push((from, messages)),
                EngineCmd::Subscribe {
                    conn,
                    channels,
                    capped,
                    since,
                } => {
                    let evicted = self.interest.subscribe(conn, &channels, &capped);
                    self.cores.evict(evicted);
                    online.extend(channels.iter().copied());
                    replays.push(ReplayRequest {
                        conn,
                        channels,
                        since,
                    });
                }
                EngineCmd::ReplayMore {
                    conn,
                    channels,
                    since,
                } => {
                    replays.push(ReplayRequest {
                        conn,
                        channels,
                        since: Some(since),
                    });
                }
                EngineCmd::Unsubscribe {
                    conn,
                    channels,
                    capped,
                } => {
                    self.interest.unsubscribe(conn, &channels, &capped);
                    // Last seen now: the mark lasts the online window from here.
                    online.extend(channels.iter().copied());
                }
                EngineCmd::ChannelInfo { from, channels } => infos.push((from, channels)),
                EngineCmd::Shutdown => {}
            }
        }
        if !publishes.is_empty() {
            self.publish_batch(publishes);
        }
        if !online.is_empty() {
            self.mark_online(&mut online);
        }
        if !replays.is_empty() {
            self.replay_batch(replays);
        }
        if !infos.is_empty() {
            self.channel_infos(infos);
        }
        for shard in 0..self.streams.len() {
            if self.streams[shard].catching_up.is_some() {
                self.catch_up(shard);
            }
        }
    }

    /// An event of server `shard`'s pub/sub stream.
    fn stream_event(&mut self, shard: usize, event: StreamEvent) {
        let Some(stream) = self.streams.get_mut(shard) else {
            return;
        };
        match event {
            StreamEvent::Messages(messages) => match &mut stream.catching_up {
                Some(held) if held.len() < DEFAULT_CATCH_UP_HOLD => held.extend(messages),
                _ => self.merge.messages(shard, messages, &mut self.out),
            },
            // While catching up the stream does not bound the merge; the catch-up sets its
            // position.
            StreamEvent::Tick(id) if stream.catching_up.is_none() => {
                self.merge.tick(shard, id, &mut self.out)
            }
            StreamEvent::Tick(_) => {}
            StreamEvent::Resync => {
                // A catch-up already pending keeps its start: the gap began there.
                if stream.catching_up.is_none() {
                    stream.from = self.merge.last(shard);
                }
                stream.catching_up.get_or_insert_with(Vec::new);
                stream.catch_up_fresh = true;
                self.merge.set_live(shard, false, &mut self.out);
            }
            StreamEvent::Lost => self.merge.set_live(shard, false, &mut self.out),
        }
        self.deliver();
    }

    /// Hands the released messages to the cores.
    fn deliver(&mut self) {
        for message in self.out.drain(..) {
            self.cores.deliver(&message, &self.interest);
        }
    }

    /// Sharded: asks the servers whose streams hold the merge back for a clock tick, once the
    /// oldest held message has waited [`DEFAULT_TICK_AFTER`].
    fn guard_ticks(&mut self, now: Instant) {
        if self.merge.held() == 0 {
            self.hold_since = None;
            return;
        }
        let since = *self.hold_since.get_or_insert(now);
        if now.duration_since(since) < DEFAULT_TICK_AFTER {
            return;
        }
        self.hold_since = Some(now);
        let lagging = self.merge.lagging();
        if let Some(hint) = self.merge.newest() {
            self.tick_shards(&lagging, hint);
        }
    }

    /// Replays: one pipeline for the id ranges and newest ids of every request, one for the
    /// message values (spec/cluster.md §4); sharded, the same on every server (§9).
    fn replay_batch(&mut self, replays: Vec<ReplayRequest>) {
        let limit = self.settings.replay_max;
        let (pages, issued) = if self.sharded() {
            // Messages after what the merge released reach the subscribers live.
            let upto = self.merge.released();
            sharded_pages(&mut self.links, &replays, limit, upto)
        } else {
            let link = &mut self.links[0];
            let result = link.get().map(|conn| replay_pages(conn, &replays, limit));
            match result {
                Some(Ok(answer)) => answer,
                failed => {
                    if let Some(Err(e)) = &failed {
                        link.failed(e);
                    }
                    // Redis unreachable: the connections live on with live messages only.
                    let empty = || (Vec::new(), false, None);
                    (replays.iter().map(|_| empty()).collect(), None)
                }
            }
        };
        for (r, (messages, more, last_id)) in replays.into_iter().zip(pages) {
            self.cores.answer(
                r.conn,
                CoreMsg::Replay {
                    conn: r.conn,
                    messages,
                    more,
                    last_id,
                    issued,
                },
            );
        }
    }

    /// After server `shard`'s subscriber thread (re)subscribed: merges the messages stored on the
    /// local channels after the catch-up's start, then the stream messages held back meanwhile,
    /// moves the stream's position to the newest id the server issued, and marks the stream
    /// live (spec/cluster.md §8). The start is the last id seen before the gap, or on the first
    /// subscription the server's id state at the engine's first contact ([`Link::origin`]), so
    /// a message stored before the stream was subscribed, through this node or another, is
    /// delivered too. On failure the catch-up stays pending and is retried.
    fn catch_up(&mut self, shard: usize) {
        let channels: Vec<Channel> = self.interest.channel_list().copied().collect();
        let limit = self.settings.replay_max;
        let sharded = self.sharded();
        // The subscriber thread has just reached Redis: the first attempt does not wait for the
        // engine connection's backoff; retries do (a stalled Redis must not hold the engine).
        let first = std::mem::take(&mut self.streams[shard].catch_up_fresh);
        let link = &mut self.links[shard];
        let reached = if first { link.get_now() } else { link.get() };
        if reached.is_none() {
            return;
        }
        // A connected engine link has read its origin; the default (every stored message) is
        // never used.
        let since = match self.streams[shard].from {
            Some(from) => from,
            None => link.origin().unwrap_or_default(),
        };
        let Some(conn) = link.get() else {
            return;
        };
        let (missed, issued) = match caught_up(conn, &channels, since, limit, sharded) {
            Ok(answer) => answer,
            Err(e) => return link.failed(&e),
        };
        if !missed.is_empty() {
            info!(
                "redis catch-up: {} stored messages delivered after the pub/sub gap",
                missed.len()
            );
        }
        let held = self.streams[shard].catching_up.take().unwrap_or_default();
        self.merge.tick(shard, since, &mut self.out);
        self.merge.messages(shard, missed, &mut self.out);
        self.merge.messages(shard, held, &mut self.out);
        if let Some(issued) = issued {
            self.merge.tick(shard, issued, &mut self.out);
        }
        self.merge.set_live(shard, true, &mut self.out);
        self.deliver();
    }
}
