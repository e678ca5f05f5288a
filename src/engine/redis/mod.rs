//! The cluster engine: message ids, history, online marks and fan-out in a Redis shared by any
//! number of pushpull nodes (and Node push-server processes), in the Node push-server's layout
//! (spec/cluster.md).
//!
//! Two threads, neither of them a reactor: the engine thread takes the cores' commands in
//! batches and runs them as pipelines (one script call for all publications of a batch), and
//! the subscriber thread listens on `pushserver:*` and hands every published message, this
//! node's own included, back to the engine for the local subscribers. Delivering through Redis
//! pub/sub gives one order, the id order, on every node.
//!
//! ```text
//!   cores ──EngineCmd──▶ engine thread ──EVALSHA (batch)──▶ Redis ──PUBLISH──┐
//!     ▲                       │  ▲                                            │
//!     └──────CoreMsg──────────┘  └───Fanout───── subscriber thread ◀──pmessage┘
//! ```

mod reads;
pub mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender as ChanSender};
use log::{info, warn};
use redis::{Client, Connection, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Script};

use super::interest::{Cores, Interest, log_summary};
use super::local::unix_ms;
use super::{ChannelState, ConnRef, CoreMsg, EngineCmd, Publication, PublishError};
use crate::config::RedisConfig;
use crate::conn::Shared;
use crate::message::{Channel, MessageId, SharedMessage};
use crate::metrics::{CoreStats, EngineStats};
use crate::reactor::mailbox::CorePeer;
use reads::{issued_id, missed_messages, replay_pages};
use scripts::{PUBLISH_LUA, PublishArgs};

/// Commands taken per batch: one batch is one pipeline (one script call for its publications).
const BATCH: usize = 1024;
/// Longest wait for a command when idle.
const IDLE: Duration = Duration::from_millis(500);
/// Time allowed to connect to Redis, and to any one round trip: a stalled Redis (not closed,
/// just silent) is detected after this long and treated as lost.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before the first reconnection attempt; doubled after each failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Stream messages held back while a catch-up waits for Redis; beyond this they are delivered
/// at once (a catch-up that cannot run for this long only costs ordering, never memory).
pub const DEFAULT_CATCH_UP_HOLD: usize = 65_536;
/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Slack on top of two stats intervals before another process's statistics count as stale
/// (the reference's `statDeltaMsec` plays this part).
const STATS_SLACK: Duration = Duration::from_secs(5);

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

/// A Redis connection that is re-established with backoff after a failure.
struct Link {
    client: Client,
    conn: Option<Connection>,
    next_attempt: Instant,
    backoff: Duration,
    what: &'static str,
}

impl Link {
    fn new(client: Client, what: &'static str) -> Self {
        Self {
            client,
            conn: None,
            next_attempt: Instant::now(),
            backoff: BACKOFF_MIN,
            what,
        }
    }

    /// The connection, connecting if the backoff allows; `None` while Redis is unreachable.
    fn get(&mut self) -> Option<&mut Connection> {
        if self.conn.is_none() && Instant::now() >= self.next_attempt {
            match self
                .client
                .get_connection_with_timeout(DEFAULT_REDIS_TIMEOUT)
            {
                Ok(conn) => {
                    let _ = conn.set_read_timeout(Some(DEFAULT_REDIS_TIMEOUT));
                    let _ = conn.set_write_timeout(Some(DEFAULT_REDIS_TIMEOUT));
                    info!("redis {}: connected", self.what);
                    self.backoff = BACKOFF_MIN;
                    self.conn = Some(conn);
                }
                Err(e) => {
                    warn!(
                        "redis {}: cannot connect ({e}); retrying in {:?}",
                        self.what, self.backoff
                    );
                    self.next_attempt = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.conn.as_mut()
    }

    /// The connection, connecting at once whatever the backoff.
    fn get_now(&mut self) -> Option<&mut Connection> {
        self.next_attempt = Instant::now();
        self.get()
    }

    /// Drops the connection after an error.
    fn failed(&mut self, e: &redis::RedisError) {
        if self.conn.take().is_some() {
            warn!("redis {}: lost ({e}); reconnecting", self.what);
        }
        self.next_attempt = Instant::now() + self.backoff;
    }
}

/// The Redis client for a configuration.
pub fn client(config: &RedisConfig) -> redis::RedisResult<Client> {
    let addr = match &config.socket {
        Some(path) => ConnectionAddr::Unix(path.clone()),
        None => ConnectionAddr::Tcp(config.host.clone(), config.port),
    };
    let mut redis = RedisConnectionInfo::default().set_db(i64::from(config.database));
    if let Some(password) = &config.password {
        redis = redis.set_password(password.clone());
    }
    Client::open(addr.into_connection_info()?.set_redis_settings(redis))
}

/// A replay waiting for its round trips.
struct ReplayRequest {
    conn: ConnRef,
    channels: Arc<[Channel]>,
    since: Option<MessageId>,
}

/// The engine thread's state.
pub struct RedisEngine {
    rx: Receiver<EngineCmd>,
    cores: Cores,
    interest: Interest,
    settings: RedisSettings,
    stats: Arc<EngineStats>,
    core_stats: Vec<Arc<CoreStats>>,
    link: Link,
    publish: Script,
    channel: String,
    subscriber: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    last_summary: Instant,
    /// Newest id delivered from the pub/sub stream (or the newest issued when the stream
    /// started): where a catch-up starts.
    last_fanout: Option<MessageId>,
    /// Stream messages held back while a catch-up is pending (`Some`).
    catching_up: Option<Vec<SharedMessage>>,
    /// The pending catch-up has not been tried yet.
    catch_up_fresh: bool,
    shared: Arc<Shared>,
    uid: String,
    last_stats: Option<Instant>,
}

impl RedisEngine {
    /// An engine for `cores`; starts the subscriber thread, which feeds `tx` (the engine's own
    /// command queue).
    pub fn new(
        rx: Receiver<EngineCmd>,
        tx: ChanSender<EngineCmd>,
        cores: Vec<CorePeer>,
        settings: RedisSettings,
        shared: Arc<Shared>,
    ) -> redis::RedisResult<Self> {
        let stats = shared.engine_stats.clone();
        let core_stats = shared.core_stats.clone();
        let client = client(&settings.redis)?;
        let uid = process_uid();
        info!(
            "redis engine: process {uid}, publishing on {}{uid}",
            scripts::PUBSUB_PREFIX
        );
        if let Ok(mut cluster) = stats.cluster.lock() {
            cluster.uid = Some(uid.clone());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sub_link = Link::new(client.clone(), "subscriber");
        let stop_flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("pushpull-redis-sub".into())
            .spawn(move || subscriber(sub_link, tx, stop_flag))
            .map_err(|e| redis::RedisError::from(std::io::Error::other(e)))?;
        Ok(Self {
            rx,
            interest: Interest::new(cores.len(), settings.max_conn_per_channel),
            cores: Cores::new(cores),
            settings,
            stats,
            core_stats,
            link: Link::new(client, "engine"),
            publish: Script::new(PUBLISH_LUA),
            channel: format!("{}{uid}", scripts::PUBSUB_PREFIX),
            subscriber: Some((stop, handle)),
            last_summary: Instant::now(),
            last_fanout: None,
            catching_up: None,
            catch_up_fresh: false,
            shared,
            uid,
            last_stats: None,
        })
    }

    /// Runs until [`EngineCmd::Shutdown`].
    pub fn run(mut self) {
        let _ = self.link.get();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let wait = if self.catching_up.is_some() {
                BACKOFF_MIN
            } else {
                IDLE
            };
            match self.rx.recv_timeout(wait) {
                Ok(EngineCmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => batch.push(cmd),
                Err(RecvTimeoutError::Timeout) => {}
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
        if let Some((stop, handle)) = self.subscriber.take() {
            stop.store(true, Ordering::Release);
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
                EngineCmd::Fanout(messages) => match &mut self.catching_up {
                    Some(held) if held.len() < DEFAULT_CATCH_UP_HOLD => held.extend(messages),
                    _ => self.fan_out(&messages),
                },
                EngineCmd::Resync => {
                    self.catching_up.get_or_insert_with(Vec::new);
                    self.catch_up_fresh = true;
                }
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
        if self.catching_up.is_some() {
            self.catch_up();
        }
    }

    fn fan_out(&mut self, messages: &[SharedMessage]) {
        for message in messages {
            self.cores.deliver(message, &self.interest);
            self.last_fanout = self.last_fanout.max(Some(message.id));
        }
    }

    /// One script call for every publication of the batch (spec/cluster.md §3). Messages are
    /// delivered when they come back through pub/sub; the publishers are answered now.
    fn publish_batch(&mut self, publishes: Vec<(ConnRef, Vec<Publication>)>) {
        let now_ms = unix_ms();
        let created = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        let ttl = self.settings.message_ttl;
        let count: usize = publishes.iter().map(|(_, m)| m.len()).sum();
        let mut invocation = self.publish.key(scripts::COUNTER_KEY);
        invocation
            .key(scripts::START_KEY)
            .arg(now_ms / 1000)
            .arg(ttl)
            .arg(self.settings.channel_history)
            .arg(&self.channel)
            .arg(count);
        for (_, messages) in &publishes {
            for publication in messages {
                let args = PublishArgs::new(publication, publication.expiry.min(ttl), created);
                invocation
                    .arg(args.expiry)
                    .arg(args.receivers)
                    .arg(args.stored)
                    .arg(args.notification)
                    .arg(args.offsets.0)
                    .arg(args.offsets.1);
            }
        }
        let result: Result<Vec<Vec<u8>>, PublishError> = match self.link.get() {
            None => Err(PublishError::Unavailable),
            Some(conn) => invocation.invoke(conn).map_err(|e| {
                self.link.failed(&e);
                PublishError::Unavailable
            }),
        };
        let mut ids = match result {
            Ok(ids) => ids.into_iter(),
            Err(e) => {
                for (from, _) in publishes {
                    self.cores.answer(
                        from,
                        CoreMsg::Published {
                            conn: from,
                            result: Err(e),
                        },
                    );
                }
                return;
            }
        };
        for (from, messages) in publishes {
            let mut last = None;
            for publication in &messages {
                last = ids.next().and_then(|id| MessageId::from_bytes(&id));
                self.stats.published.add(1);
                self.stats.count_message(publication.label.as_str());
            }
            let result = last.ok_or(PublishError::Unavailable);
            self.cores
                .answer(from, CoreMsg::Published { conn: from, result });
        }
    }

    /// Refreshes the online marks of `channels` (spec/cluster.md §6).
    fn mark_online(&mut self, channels: &mut Vec<Channel>) {
        channels.sort_unstable();
        channels.dedup();
        let window = self.settings.online_window.as_secs().max(1);
        let Some(conn) = self.link.get() else {
            return;
        };
        let mut pipe = redis::pipe();
        for channel in channels.iter() {
            pipe.set_ex(scripts::online_key(channel), 1, window)
                .ignore();
        }
        if let Err(e) = pipe.query::<()>(conn) {
            self.link.failed(&e);
        }
    }

    /// Replays: one pipeline for the id ranges and newest ids of every request, one for the
    /// message values (spec/cluster.md §4).
    fn replay_batch(&mut self, replays: Vec<ReplayRequest>) {
        let limit = self.settings.replay_max;
        let pages = match self.link.get() {
            None => None,
            Some(conn) => {
                let result = replay_pages(conn, &replays, limit);
                if let Err(e) = &result {
                    self.link.failed(e);
                }
                result.ok()
            }
        };
        let Some(pages) = pages else {
            // Redis unreachable: the connection lives on with live messages only.
            for r in replays {
                let msg = CoreMsg::Replay {
                    conn: r.conn,
                    messages: Vec::new(),
                    more: false,
                    last_id: None,
                    issued: None,
                };
                self.cores.answer(r.conn, msg);
            }
            return;
        };
        let (pages, issued) = pages;
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

    /// After the subscriber thread (re)subscribed: delivers the messages stored on the local
    /// channels after the last one seen on the stream, in id order, then the stream messages held
    /// back meanwhile (spec/cluster.md §8). The first subscription only notes the newest id issued
    /// as the starting point. On failure the catch-up stays pending and is retried.
    fn catch_up(&mut self) {
        let channels: Vec<Channel> = self.interest.channel_list().copied().collect();
        let limit = self.settings.replay_max;
        // The subscriber thread has just reached Redis: the first attempt does not wait for the
        // engine connection's backoff; retries do (a stalled Redis must not hold the engine).
        let first = self.catch_up_fresh;
        self.catch_up_fresh = false;
        let link = if first {
            self.link.get_now()
        } else {
            self.link.get()
        };
        let Some(conn) = link else {
            return;
        };
        let missed = match self.last_fanout {
            None => redis::pipe()
                .get(scripts::START_KEY)
                .get(scripts::COUNTER_KEY)
                .query::<Vec<redis::Value>>(conn)
                .map(|answers| {
                    self.last_fanout = issued_id(&answers);
                    Vec::new()
                }),
            Some(_) if channels.is_empty() => Ok(Vec::new()),
            Some(since) => missed_messages(conn, &channels, since, limit),
        };
        let missed = match missed {
            Ok(missed) => missed,
            Err(e) => return self.link.failed(&e),
        };
        if !missed.is_empty() {
            info!(
                "redis catch-up: {} stored messages delivered after the pub/sub gap",
                missed.len()
            );
        }
        self.fan_out(&missed);
        let held = self.catching_up.take().unwrap_or_default();
        self.fan_out(&held);
    }

    /// Stores this process's statistics in the `stats` hash and reads the other live processes'
    /// (spec/cluster.md §7); entries older than two intervals plus `STATS_SLACK` are removed.
    fn exchange_stats(&mut self) {
        let own = serde_json::Value::Object(self.shared.process_stats()).to_string();
        let Some(conn) = self.link.get() else {
            return;
        };
        let result: redis::RedisResult<Vec<(String, String)>> = redis::pipe()
            .hset(scripts::STATS_KEY, &self.uid, own)
            .ignore()
            .hgetall(scripts::STATS_KEY)
            .query::<(Vec<(String, String)>,)>(conn)
            .map(|(all,)| all);
        let all = match result {
            Ok(all) => all,
            Err(e) => return self.link.failed(&e),
        };
        let now_ms = unix_ms();
        let horizon = (self.settings.stats_interval * 2 + STATS_SLACK).as_millis() as u64;
        let mut others = Vec::new();
        let mut stale = Vec::new();
        for (uid, json) in all {
            if uid == self.uid {
                continue;
            }
            let value: Option<serde_json::Value> = serde_json::from_str(&json).ok();
            let date = value.as_ref().and_then(|v| v["date"].as_u64()).unwrap_or(0);
            match value {
                Some(v) if now_ms.saturating_sub(date) <= horizon => others.push(v),
                _ => stale.push(uid),
            }
        }
        if !stale.is_empty() {
            if let Err(e) = redis::cmd("HDEL")
                .arg(scripts::STATS_KEY)
                .arg(&stale)
                .query::<()>(conn)
            {
                self.link.failed(&e);
            }
        }
        if let Ok(mut cluster) = self.stats.cluster.lock() {
            cluster.others = others;
        }
    }

    /// Online state of channels: connected here, or marked online in Redis by any node.
    fn channel_infos(&mut self, infos: Vec<(ConnRef, Vec<Channel>)>) {
        let keys: Vec<Vec<u8>> = infos
            .iter()
            .flat_map(|(_, channels)| channels.iter().map(scripts::online_key))
            .collect();
        let marks: Vec<Option<Vec<u8>>> = match self.link.get() {
            Some(conn) if !keys.is_empty() => redis::cmd("MGET")
                .arg(&keys)
                .query(conn)
                .unwrap_or_else(|e| {
                    self.link.failed(&e);
                    vec![None; keys.len()]
                }),
            _ => vec![None; keys.len()],
        };
        let mut marks = marks.into_iter();
        for (from, channels) in infos {
            let states = channels
                .iter()
                .map(|channel| {
                    let subscribers = self.interest.count(channel);
                    let marked = marks.next().flatten().is_some();
                    ChannelState {
                        channel: *channel,
                        subscribers,
                        online: subscribers > 0 || marked,
                    }
                })
                .collect();
            self.cores.answer(
                from,
                CoreMsg::ChannelInfo {
                    conn: from,
                    infos: states,
                },
            );
        }
    }
}

/// The subscriber thread: every message published on `pushserver:*` goes to the engine.
fn subscriber(mut link: Link, tx: ChanSender<EngineCmd>, stop: Arc<AtomicBool>) {
    let pattern = format!("{}*", scripts::PUBSUB_PREFIX);
    while !stop.load(Ordering::Acquire) {
        let Some(conn) = link.get() else {
            std::thread::sleep(BACKOFF_MIN);
            continue;
        };
        let _ = conn.set_read_timeout(Some(IDLE));
        let mut pubsub = conn.as_pubsub();
        if let Err(e) = pubsub.psubscribe(&pattern) {
            drop(pubsub);
            link.failed(&e);
            continue;
        }
        // Before any message of the new stream: the starting point, or what was stored during
        // the gap.
        if tx.send(EngineCmd::Resync).is_err() {
            return;
        }
        let failure = loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            match pubsub.get_message() {
                Ok(msg) => {
                    let messages: Vec<SharedMessage> =
                        scripts::notification_messages(msg.get_payload_bytes())
                            .into_iter()
                            .map(Arc::new)
                            .collect();
                    if !messages.is_empty() && tx.send(EngineCmd::Fanout(messages)).is_err() {
                        return;
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => break e,
            }
        };
        drop(pubsub);
        link.failed(&failure);
    }
}

/// Eight random base-36 characters, as the reference's process uid.
fn process_uid() -> String {
    let mut x = ahash::RandomState::new().hash_one((std::process::id(), unix_ms()));
    (0..8)
        .map(|_| {
            let d = (x % 36) as u32;
            x /= 36;
            char::from_digit(d, 36).unwrap_or('0')
        })
        .collect()
}
