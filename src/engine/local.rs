//! The embedded engine: the one owner of message ids, the in-memory history, the map of which
//! cores have subscribers of which channel, and the online state (spec/history.md).
//!
//! It is the only writer of all of them, so no lock is needed. A publication is encoded once
//! here and the same [`SharedMessage`] goes to each interested core; a core with no subscriber
//! of a channel gets nothing for it.
//!
//! With several cores it runs on its own thread ([`LocalEngine::run`]). With one core it runs
//! inside that core's loop (spec/README.md §4): the core sends its commands to the same queue,
//! then calls [`LocalEngine::pump`] and handles the [`LocalEngine::outbox`] in the same turn, so
//! a publish or a long poll's subscribe costs no thread switch and no wake-up.
//!
//! ```text
//!   thread:  cores ──EngineCmd──▶ run(): recv, handle, housekeeping ──CoreMsg──▶ mailboxes
//!   inline:  core turn: read requests ──EngineCmd──▶ pump(): handle ──▶ outbox ──▶ same turn
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ahash::AHashMap;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{info, warn};

use super::interest::{Cores, Interest, log_summary};
use super::memory::{MemoryStore, StoreLimits};
use super::snapshot;
use super::{ChannelState, ConnRef, CoreMsg, EngineCmd, Publication};
use crate::message::{Channel, Message, MessageId, SharedMessage};
use crate::metrics::{CoreStats, EngineStats};
use crate::reactor::mailbox::CorePeer;

/// Longest sleep of the engine thread when no message expires sooner: purges are never later
/// than this, and stats are refreshed at least this often.
const MAX_IDLE: Duration = Duration::from_millis(500);

/// Commands handled per wake-up before expired messages are purged and stats refreshed.
const DRAIN_BUDGET: usize = 4096;

/// Inline: messages collected in the outbox before a pump stops taking commands and lets the core
/// handle them (its mailbox budget, so one pump costs the core no more than one mailbox drain).
const DEFAULT_OUTBOX_BUDGET: usize = crate::reactor::mailbox::DEFAULT_MAILBOX_BUDGET;

/// Whether an inline engine has more to do this turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pump {
    /// The queue is empty.
    Idle,
    /// Commands are left (the budget was used up): pump again without sleeping.
    More,
    /// [`EngineCmd::Shutdown`] came: the state file is saved; pump no more.
    Stopped,
}

/// How often "last seen" marks older than the online window are dropped.
const SEEN_PRUNE_EVERY: Duration = Duration::from_secs(5);

/// Settings of the embedded engine.
#[derive(Clone, Copy, Debug)]
pub struct LocalSettings {
    /// Upper bound on a message's storage time, seconds.
    pub message_ttl: u32,
    /// Messages per replay answer.
    pub replay_max: usize,
    /// Bytes (text encoding) per replay answer.
    pub replay_max_bytes: usize,
    /// Store bounds.
    pub limits: StoreLimits,
    /// How long a channel stays online after its last connection (`online_ttl + online_delta`).
    pub online_window: Duration,
    /// Connections per capped channel before the oldest is evicted.
    pub max_conn_per_channel: usize,
    /// How often a one-line statistics summary is logged (`stats_interval`).
    pub stats_interval: Duration,
}

/// Produces message ids: start time of the source plus a counter (spec/history.md §1).
#[derive(Debug)]
pub struct IdSource {
    start: u64,
    counter: u64,
}

/// The counter starts at the start time's millisecond times this, so a process restarted within
/// the same second still issues ids above its predecessor's (clients drop a repeated `mid` as a
/// duplicate), with 10^12 ids of headroom per millisecond, and the counter stays below 2^53 for
/// JavaScript's numbers.
const COUNTER_PER_MS: u64 = 1_000_000_000_000;

impl IdSource {
    /// A source started at `start_ms` Unix milliseconds.
    pub fn new(start_ms: u64) -> Self {
        Self {
            start: start_ms / 1000,
            counter: start_ms % 1000 * COUNTER_PER_MS,
        }
    }

    /// A source that continues after `last` when the clock would give lower ids (a restart
    /// that reloads a state file written by a source with a later clock).
    pub fn after(start_ms: u64, last: Option<MessageId>) -> Self {
        let mut source = Self::new(start_ms);
        if let Some(last) = last {
            if MessageId::new(source.start, source.counter) <= last {
                source.start = last.start();
                source.counter = last.counter();
            }
        }
        source
    }

    /// The next id.
    pub fn next_id(&mut self) -> MessageId {
        self.counter += 1;
        MessageId::new(self.start, self.counter)
    }

    /// The last id issued, if any.
    pub fn last(&self) -> Option<MessageId> {
        (self.counter > 0).then(|| MessageId::new(self.start, self.counter))
    }
}

/// The embedded engine's state; [`LocalEngine::run`] is its thread.
pub struct LocalEngine {
    rx: Receiver<EngineCmd>,
    cores: Cores,
    store: MemoryStore,
    interest: Interest,
    /// When channels without connections were last seen.
    seen: AHashMap<Channel, Instant>,
    ids: IdSource,
    settings: LocalSettings,
    stats: Arc<EngineStats>,
    last_prune: Instant,
    last_summary: Instant,
    /// When [`LocalEngine::housekeeping`] last ran.
    last_housekeeping: Instant,
    state_file: Option<PathBuf>,
    core_stats: Vec<Arc<CoreStats>>,
    /// Shutdown was handled (the state file is saved).
    stopped: bool,
}

impl LocalEngine {
    /// An engine on its own thread, answering in the mailboxes of `cores` (indexed by core
    /// number).
    pub fn new(
        rx: Receiver<EngineCmd>,
        cores: Vec<CorePeer>,
        settings: LocalSettings,
        stats: Arc<EngineStats>,
        core_stats: Vec<Arc<CoreStats>>,
        state_file: Option<PathBuf>,
    ) -> Self {
        Self::with_cores(
            rx,
            Cores::new(cores),
            settings,
            stats,
            core_stats,
            state_file,
        )
    }

    /// An engine inside the loop of a server's only core: the core calls [`LocalEngine::pump`]
    /// every turn and handles [`LocalEngine::outbox`].
    pub fn inline(
        rx: Receiver<EngineCmd>,
        settings: LocalSettings,
        stats: Arc<EngineStats>,
        core_stats: Vec<Arc<CoreStats>>,
        state_file: Option<PathBuf>,
    ) -> Self {
        Self::with_cores(rx, Cores::inline(), settings, stats, core_stats, state_file)
    }

    fn with_cores(
        rx: Receiver<EngineCmd>,
        cores: Cores,
        settings: LocalSettings,
        stats: Arc<EngineStats>,
        core_stats: Vec<Arc<CoreStats>>,
        state_file: Option<PathBuf>,
    ) -> Self {
        let mut engine = Self {
            rx,
            interest: Interest::new(cores.count(), settings.max_conn_per_channel),
            cores,
            store: MemoryStore::new(settings.limits),
            seen: AHashMap::new(),
            ids: IdSource::new(unix_ms()),
            settings,
            stats,
            last_prune: Instant::now(),
            last_summary: Instant::now(),
            last_housekeeping: Instant::now(),
            state_file,
            core_stats,
            stopped: false,
        };
        engine.restore();
        engine
    }

    /// Reloads the state file, if one is configured (spec/history.md §5).
    fn restore(&mut self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let now_ms = unix_ms();
        match snapshot::load(path, now_ms) {
            Ok(snap) => {
                let now = Instant::now();
                let count = snap.messages.len();
                for (msg, expires_at_ms) in snap.messages {
                    let left = Duration::from_millis(expires_at_ms.saturating_sub(now_ms));
                    self.store.store_until(Arc::new(msg), now + left);
                }
                self.ids = IdSource::after(now_ms, snap.last_id.max(self.store.last_stored()));
                info!(
                    "state file {}: {count} messages restored, {} unreadable lines skipped",
                    path.display(),
                    snap.skipped
                );
            }
            Err(e) => warn!("state file {}: not restored: {e}", path.display()),
        }
    }

    /// Writes the state file, if one is configured.
    fn save(&self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let (now, now_ms) = (Instant::now(), unix_ms());
        let messages = self.store.messages().map(|(msg, at)| {
            let left = at.saturating_duration_since(now).as_millis() as u64;
            (msg.as_ref(), now_ms + left)
        });
        match snapshot::save(path, self.ids.last(), messages) {
            Ok(n) => info!("state file {}: {n} messages saved", path.display()),
            Err(e) => warn!("state file {}: not saved: {e}", path.display()),
        }
    }

    /// Runs until [`EngineCmd::Shutdown`] or until every core handle is gone.
    pub fn run(mut self) {
        loop {
            let wait = self.next_wake(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(EngineCmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    return self.save();
                }
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Drain what is queued without sleeping, then purge once.
            for _ in 0..DRAIN_BUDGET {
                match self.rx.try_recv() {
                    Ok(EngineCmd::Shutdown) => return self.save(),
                    Ok(cmd) => self.handle(cmd),
                    Err(_) => break,
                }
            }
            self.housekeeping(Instant::now());
        }
    }

    /// How long the engine may wait for a command: until the next message expires, at most
    /// [`MAX_IDLE`].
    pub fn next_wake(&self, now: Instant) -> Duration {
        self.store.next_expiry().map_or(MAX_IDLE, |at| {
            at.saturating_duration_since(now).min(MAX_IDLE)
        })
    }

    /// Inline: handles the queued commands (until the outbox holds [`DEFAULT_OUTBOX_BUDGET`]
    /// messages), then the periodic work when due. The core handles [`LocalEngine::outbox`] next.
    pub fn pump(&mut self, now: Instant) -> Pump {
        if self.stopped {
            return Pump::Stopped;
        }
        let mut handled = false;
        while self.cores.outbox().len() < DEFAULT_OUTBOX_BUDGET {
            match self.rx.try_recv() {
                Ok(EngineCmd::Shutdown) => {
                    self.stopped = true;
                    self.save();
                    return Pump::Stopped;
                }
                Ok(cmd) => {
                    self.handle(cmd);
                    handled = true;
                }
                Err(_) => break,
            }
        }
        let expiring = self.store.next_expiry().is_some_and(|at| at <= now);
        let periodic = now.duration_since(self.last_housekeeping) >= MAX_IDLE;
        if handled || expiring || periodic {
            self.housekeeping(now);
        }
        if self.rx.is_empty() {
            Pump::Idle
        } else {
            Pump::More
        }
    }

    /// Inline: whether commands are queued.
    pub fn has_work(&self) -> bool {
        !self.stopped && !self.rx.is_empty()
    }

    /// Inline: the messages for the core, oldest first; the core takes them all after each pump.
    pub fn outbox(&mut self) -> &mut Vec<CoreMsg> {
        self.cores.outbox()
    }

    /// Inline, when the core's loop ends: handles what is still queued (the connections'
    /// unsubscribes, nobody to answer) and saves the state file, unless shutdown did already.
    pub fn finish(mut self) {
        if self.stopped {
            return;
        }
        while let Ok(cmd) = self.rx.try_recv() {
            if matches!(cmd, EngineCmd::Shutdown) {
                break;
            }
            self.handle(cmd);
            self.cores.outbox().clear();
        }
        self.save();
    }

    /// Purges expired messages, prunes old "last seen" marks, refreshes the statistics and logs
    /// the summary when due.
    fn housekeeping(&mut self, now: Instant) {
        self.last_housekeeping = now;
        self.store.purge(now);
        if now.duration_since(self.last_prune) >= SEEN_PRUNE_EVERY {
            let window = self.settings.online_window;
            self.seen.retain(|_, at| now.duration_since(*at) < window);
            self.last_prune = now;
        }
        self.refresh_stats();
        if now.duration_since(self.last_summary) >= self.settings.stats_interval {
            self.last_summary = now;
            log_summary(&self.core_stats, &self.interest, &self.stats);
        }
    }

    fn handle(&mut self, cmd: EngineCmd) {
        match cmd {
            EngineCmd::Publish { from, messages } => {
                let mut last = None;
                for publication in messages {
                    last = Some(self.publish(publication));
                }
                let result = last.ok_or(super::PublishError::Unavailable);
                self.cores
                    .answer(from, CoreMsg::Published { conn: from, result });
            }
            EngineCmd::Subscribe {
                conn,
                channels,
                capped,
                since,
            } => {
                let evicted = self.interest.subscribe(conn, &channels, &capped);
                self.cores.evict(evicted);
                self.replay(conn, &channels, since);
            }
            EngineCmd::ReplayMore {
                conn,
                channels,
                since,
            } => {
                self.replay(conn, &channels, Some(since));
            }
            EngineCmd::Unsubscribe {
                conn,
                channels,
                capped,
            } => {
                self.interest.unsubscribe(conn, &channels, &capped);
                let now = Instant::now();
                for channel in channels.iter() {
                    self.seen.insert(*channel, now);
                }
            }
            EngineCmd::ChannelInfo { from, channels } => {
                let now = Instant::now();
                let infos = channels
                    .iter()
                    .map(|ch| self.channel_state(*ch, now))
                    .collect();
                self.cores
                    .answer(from, CoreMsg::ChannelInfo { conn: from, infos });
            }
            EngineCmd::Shutdown => {}
        }
    }

    fn channel_state(&self, channel: Channel, now: Instant) -> ChannelState {
        let subscribers = self.interest.count(&channel);
        let recently = self
            .seen
            .get(&channel)
            .is_some_and(|at| now.duration_since(*at) < self.settings.online_window);
        ChannelState {
            channel,
            subscribers,
            online: subscribers > 0 || recently,
        }
    }

    fn publish(&mut self, publication: Publication) -> MessageId {
        let Publication {
            mut receivers,
            body,
            expiry,
            sender,
            label,
        } = publication;
        receivers.sort_unstable();
        receivers.dedup();
        let id = self.ids.next_id();
        let expiry = expiry.min(self.settings.message_ttl);
        let message: SharedMessage = Arc::new(Message::new(
            id,
            body,
            expiry,
            sender,
            receivers.into_boxed_slice(),
            unix_ms(),
        ));
        if expiry > 0 {
            self.store.store(message.clone(), Instant::now());
        }
        self.cores.deliver(&message, &self.interest);
        self.stats.published.add(1);
        self.stats.count_message(label.as_str());
        id
    }

    fn replay(&mut self, conn: ConnRef, channels: &[Channel], since: Option<MessageId>) {
        let now = Instant::now();
        let (messages, more) = match since {
            Some(since) => {
                let s = &self.settings;
                let page = self.store.replay_bounded(
                    channels,
                    since,
                    s.replay_max,
                    s.replay_max_bytes,
                    now,
                );
                (page.messages, page.more)
            }
            None => (Vec::new(), false),
        };
        let last_id = self.store.last_id(channels, now);
        self.cores.answer(
            conn,
            CoreMsg::Replay {
                conn,
                messages,
                more,
                last_id,
                issued: self.ids.last(),
            },
        );
    }

    fn refresh_stats(&self) {
        let s = self.store.stats();
        self.stats.stored_messages.set(s.messages as u64);
        self.stats.stored_bytes.set(s.bytes as u64);
        self.stats.channels.set(self.interest.channels() as u64);
    }
}

/// Wall clock in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
