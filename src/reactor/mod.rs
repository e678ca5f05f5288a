//! The per-core reactor: the only code that polls, accepts, reads and writes.
//!
//! Each core runs one [`Core`] on its own thread: a mio `Poll`, its own `SO_REUSEPORT` listeners,
//! a slab of connections, a timer wheel, its share of the subscriptions ([`Hub`]) and a mailbox
//! from the engine. One loop turn:
//!
//! ```text
//!   poll(timeout = next timer) ─▶ socket events: note readiness, mark dirty; listeners: note
//!        ▲                       ─▶ mailbox (budgeted): deliveries and engine answers, mark dirty
//!        │                       ─▶ timers due: on_timeout, mark dirty
//!        │                       ─▶ dirty connections: read until WouldBlock, process, write
//!        └──────────────────────── ─▶ accept (deferred to the end of the batch), engine overflow
//! ```
//!
//! Readiness is edge-triggered: a connection remembers that it is readable or writable until a
//! call returns `WouldBlock`, or a plain socket's read returns less than asked for (the socket is
//! then empty and new bytes raise a new edge; not when the peer's end of stream was signalled,
//! which only a further read returns). Every path that gives a connection output marks it dirty,
//! so output is written in the same turn (the writable invariant).

pub mod mailbox;
pub mod timer;

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::config::ListenerKind;
use crate::conn::{Cx, Flow, Session, Shared};
use crate::engine::local::{LocalEngine, Pump};
use crate::engine::{ConnRef, CoreMsg, EngineHandle};
use crate::hub::Hub;
use crate::metrics::CoreStats;
use crate::net::tls::TlsAcceptor;
use crate::net::transport::Transport;
use mailbox::{DEFAULT_MAILBOX_BUDGET, Mailbox};
use timer::{DEFAULT_SLOTS, DEFAULT_TICK, TimerKey, TimerWheel};

/// Token of the core's waker.
pub const WAKER_TOKEN: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE + i`; connections use their slab slot.
const LISTENER_BASE: usize = usize::MAX / 2;

/// Bytes one read call takes (a per-core scratch buffer, so idle connections hold none).
pub const DEFAULT_READ_CHUNK: usize = 64 * 1024;
/// Bytes read from one connection per loop turn before others get their turn.
pub const DEFAULT_READ_BUDGET: usize = 256 * 1024;
/// Longest poll sleep: bounds how late a coarse timer or a shutdown check can be.
const MAX_POLL: Duration = Duration::from_millis(1000);
/// Read-process-write rounds per connection per turn (a pipelined request answered at once
/// lets the next one proceed in the same turn, up to this many).
const DRIVE_ROUNDS: usize = 8;
/// Accepting resumes when the connection count falls below this share (in %) of the limit
/// (hysteresis, so a full server does not flap between accepting and refusing).
const ACCEPT_RESUME_PERCENT: usize = 90;
/// After an accept error (out of descriptors: EMFILE, ENFILE; out of memory), accepting is tried
/// again this much later: the connections waiting in the kernel's queue raise no new event, and
/// retrying at once would spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Socket events taken per poll call.
const EVENTS_CAPACITY: usize = 1024;

/// Logs with the connection's context: `[core=N conn=S peer=ADDR]`.
macro_rules! conn_log {
    ($level:ident, $core:expr, $slot:expr, $peer:expr, $($arg:tt)+) => {
        $level!("[core={} conn={} peer={}] {}", $core, $slot, $peer, format_args!($($arg)+))
    };
}

/// A session's [`Cx`] built from the core's fields (not a method: the connection itself stays
/// borrowed from the slab meanwhile).
macro_rules! core_cx {
    ($core:expr, $conn:expr) => {
        Cx {
            conn: $conn,
            hub: &mut $core.hub,
            engine: &mut $core.engine,
            shared: &$core.shared,
            stats: &$core.stats,
        }
    };
}

/// Everything a core needs, built by the server before the thread starts.
pub struct CoreSetup {
    /// Core index.
    pub index: u16,
    /// The core's poll (its waker is registered on [`WAKER_TOKEN`]).
    pub poll: Poll,
    /// The core's listeners.
    pub listeners: Vec<Listener>,
    /// The engine's answers and deliveries.
    pub mailbox: Mailbox,
    /// The way to the engine.
    pub engine: EngineHandle,
    /// The embedded engine, when it runs inside this core's loop (the server's only core).
    pub inline: Option<LocalEngine>,
    /// Process-wide settings.
    pub shared: Arc<Shared>,
    /// This core's statistics.
    pub stats: Arc<CoreStats>,
}

/// One listening socket of a core.
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// What it serves.
    pub kind: ListenerKind,
    /// Its TLS configuration, shared with the other cores' copies (and reloaded on SIGHUP).
    pub tls: Option<Arc<TlsAcceptor>>,
}

/// One connection as the reactor holds it.
struct Conn {
    io: Transport,
    session: Session,
    generation: u32,
    peer: SocketAddr,
    readable: bool,
    writable: bool,
    read_eof: bool,
    /// The peer's end of stream (or an error) was signalled and not read yet: reads go on until
    /// they return it, a short read does not count as drained.
    eof_signalled: bool,
    write_shut: bool,
    dirty: bool,
    /// Tick of the armed timer entry that counts, if any.
    armed: Option<u64>,
}

/// A running core.
pub struct Core {
    index: u16,
    poll: Poll,
    listeners: Vec<Listener>,
    mailbox: Mailbox,
    engine: EngineHandle,
    /// The embedded engine, pumped every turn (one core only).
    inline: Option<LocalEngine>,
    shared: Arc<Shared>,
    stats: Arc<CoreStats>,
    conns: Slab<Conn>,
    hub: Hub,
    wheel: TimerWheel,
    dirty: Vec<usize>,
    to_close: Vec<usize>,
    scratch: Vec<u8>,
    next_generation: u32,
    max_conns: usize,
    accept_ready: Vec<bool>,
    accept_paused: bool,
    /// When accepting is tried again after an accept error.
    accept_retry: Option<Instant>,
    /// Accepting failed and has not succeeded since (the failure was logged).
    accept_failing: bool,
    stopping: Option<Instant>,
    /// Work is left for the next turn (budget used up): poll without sleeping.
    busy: bool,
}

impl Core {
    /// Prepares a core; [`Core::run`] is its loop.
    pub fn new(setup: CoreSetup, now: Instant) -> io::Result<Self> {
        let CoreSetup {
            index,
            poll,
            mut listeners,
            mailbox,
            engine,
            inline,
            shared,
            stats,
        } = setup;
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry().register(
                &mut listener.socket,
                Token(LISTENER_BASE + i),
                Interest::READABLE,
            )?;
        }
        let cores = shared.core_stats.len().max(1);
        let max_conns = (shared.config.max_connections / cores).max(1);
        let n = listeners.len();
        Ok(Self {
            index,
            poll,
            listeners,
            mailbox,
            engine,
            inline,
            shared,
            stats,
            conns: Slab::new(),
            hub: Hub::new(),
            wheel: TimerWheel::new(now, DEFAULT_TICK, DEFAULT_SLOTS),
            dirty: Vec::new(),
            to_close: Vec::new(),
            scratch: vec![0; DEFAULT_READ_CHUNK],
            next_generation: 0,
            max_conns,
            accept_ready: vec![true; n],
            accept_retry: None,
            accept_failing: false,
            accept_paused: false,
            stopping: None,
            busy: true,
        })
    }

    /// Runs until shutdown completes; an inline engine then handles what is left and saves its
    /// state file.
    pub fn run(mut self) -> io::Result<()> {
        let result = self.run_loop();
        if let Some(engine) = self.inline.take() {
            engine.finish();
        }
        result
    }

    fn run_loop(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut expired = Vec::new();
        loop {
            let now = Instant::now();
            let timeout = if self.busy {
                Duration::ZERO
            } else {
                let mut wheel = self.wheel.timeout(now, MAX_POLL);
                if let Some(engine) = &self.inline {
                    wheel = wheel.min(engine.next_wake(now));
                }
                match self.accept_retry {
                    Some(at) => wheel.min(at.saturating_duration_since(now)),
                    None => wheel,
                }
            };
            self.busy = false;
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER_TOKEN => {}
                    Token(t) if t >= LISTENER_BASE => {
                        if let Some(ready) = self.accept_ready.get_mut(t - LISTENER_BASE) {
                            *ready = true;
                        }
                    }
                    Token(slot) => {
                        // Spurious events for closed slots are ignored.
                        if let Some(conn) = self.conns.get_mut(slot) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                conn.readable = true;
                            }
                            if event.is_read_closed() || event.is_error() {
                                conn.eof_signalled = true;
                            }
                            if event.is_writable() || event.is_write_closed() || event.is_error() {
                                conn.writable = true;
                            }
                            mark_dirty(&mut self.dirty, conn, slot);
                        }
                    }
                }
            }
            if self.drain_mailbox(now) == Drain::Stop {
                self.begin_shutdown(now);
            }
            expired.clear();
            self.wheel.expire(now, &mut expired);
            for &(key, tick) in &expired {
                self.on_timer(key, tick, now);
            }
            self.drive_dirty(now);
            if self.inline.is_some() {
                // The engine answers this turn's requests in this turn.
                if self.pump_inline(now) == Drain::Stop {
                    self.begin_shutdown(now);
                }
                self.drive_dirty(now);
            }
            self.close_pending(now);
            if self.accept_retry.is_some_and(|at| at <= now) {
                self.accept_retry = None;
                self.accept_ready.iter_mut().for_each(|r| *r = true);
            }
            self.accept(now);
            self.busy |= self.engine.flush();
            // Commands queued after the pump (a pipelined request read in the second drive,
            // a closed connection's unsubscribe) are taken next turn, without sleeping first.
            self.busy |= self.inline.as_ref().is_some_and(LocalEngine::has_work);
            if let Some(deadline) = self.stopping {
                if self.conns.is_empty() || now >= deadline {
                    info!(
                        "[core={}] stopped with {} connections left",
                        self.index,
                        self.conns.len()
                    );
                    return Ok(());
                }
                self.busy = false;
            }
        }
    }

    fn drain_mailbox(&mut self, now: Instant) -> Drain {
        self.mailbox.arm();
        for _ in 0..DEFAULT_MAILBOX_BUDGET {
            let Some(msg) = self.mailbox.next() else {
                return Drain::Continue;
            };
            if self.on_msg(msg, now) == Drain::Stop {
                return Drain::Stop;
            }
        }
        self.busy = true;
        Drain::Continue
    }

    /// Inline engine: handles the commands queued this turn, then its outbox like a mailbox.
    fn pump_inline(&mut self, now: Instant) -> Drain {
        let Some(engine) = self.inline.as_mut() else {
            return Drain::Continue;
        };
        let pumped = engine.pump(now);
        let mut outbox = std::mem::take(engine.outbox());
        let mut drain = Drain::Continue;
        for msg in outbox.drain(..) {
            if self.on_msg(msg, now) == Drain::Stop {
                drain = Drain::Stop;
            }
        }
        if let Some(engine) = self.inline.as_mut() {
            // The emptied buffer is kept for the next pump.
            *engine.outbox() = outbox;
        }
        if pumped == Pump::More {
            self.busy = true;
        }
        drain
    }

    /// One message from the engine (mailbox or inline outbox).
    fn on_msg(&mut self, msg: CoreMsg, now: Instant) -> Drain {
        match msg {
            CoreMsg::Deliver(message) => {
                let limit = self.shared.config.out_queue_bytes;
                let mut slow = Vec::new();
                for channel in message.receivers.iter() {
                    for slot in self.hub.subscribers(channel) {
                        let slot = slot as usize;
                        let Some(conn) = self.conns.get_mut(slot) else {
                            continue;
                        };
                        match conn.session.on_deliver(&message, limit) {
                            Flow::Continue => mark_dirty(&mut self.dirty, conn, slot),
                            Flow::Abort => slow.push(slot),
                        }
                    }
                }
                // A connection on several of the message's channels is cut once.
                slow.sort_unstable();
                slow.dedup();
                for slot in slow {
                    self.slow_consumer(slot, now);
                }
            }
            CoreMsg::Shutdown => return Drain::Stop,
            CoreMsg::Reload(shared) => {
                let cores = shared.core_stats.len().max(1);
                self.max_conns = (shared.config.max_connections / cores).max(1);
                self.shared = shared;
                info!("[core={}] configuration reloaded", self.index);
            }
            answer => {
                let Some(target) = answer.conn() else {
                    return Drain::Continue;
                };
                let slot = target.slot as usize;
                let Some(conn) = self.conns.get_mut(slot) else {
                    return Drain::Continue;
                };
                if conn.generation != target.generation {
                    return Drain::Continue;
                }
                let mut cx = core_cx!(self, target);
                match conn.session.on_engine(answer, now, &mut cx) {
                    Flow::Continue => mark_dirty(&mut self.dirty, conn, slot),
                    Flow::Abort => self.to_close.push(slot),
                }
            }
        }
        Drain::Continue
    }

    /// A subscriber whose output queue is full: counted, logged, and closed (a WebSocket with a
    /// close code after what is already framed).
    fn slow_consumer(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        self.stats.slow_closed.add(1);
        conn_log!(
            info,
            self.index,
            slot,
            conn.peer,
            "output queue full: closing slow subscriber"
        );
        let mut cx = core_cx!(self, conn_ref(self.index, slot, conn.generation));
        match conn.session.on_slow(now, &mut cx) {
            Flow::Continue => mark_dirty(&mut self.dirty, conn, slot),
            Flow::Abort => self.to_close.push(slot),
        }
    }

    fn on_timer(&mut self, key: TimerKey, tick: u64, now: Instant) {
        let slot = key.slot as usize;
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.generation != key.generation || conn.armed != Some(tick) {
            return;
        }
        conn.armed = None;
        let mut cx = core_cx!(self, conn_ref(self.index, slot, conn.generation));
        match conn.session.on_timeout(now, &mut cx) {
            Flow::Continue => mark_dirty(&mut self.dirty, conn, slot),
            Flow::Abort => {
                conn_log!(debug, self.index, slot, conn.peer, "timed out");
                self.to_close.push(slot);
            }
        }
    }

    fn drive_dirty(&mut self, now: Instant) {
        let dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.dirty = false;
            }
            // A bug in one connection's handling must not take the core down: the connection
            // is closed and the panic counted (the panic message is logged by the hook).
            let driven =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.drive(slot, now)));
            if driven.is_err() {
                self.stats.panicked.add(1);
                if let Some(conn) = self.conns.get(slot) {
                    conn_log!(
                        error,
                        self.index,
                        slot,
                        conn.peer,
                        "handling panicked: closing"
                    );
                }
                self.to_close.push(slot);
            }
        }
        // Keep the allocation for the next turn.
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Reads, processes and writes one connection until it would block or its budget is spent.
    fn drive(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let mut cx = core_cx!(self, conn_ref(self.index, slot, conn.generation));
        let mut budget = DEFAULT_READ_BUDGET;
        let mut flow = Flow::Continue;
        for _ in 0..DRIVE_ROUNDS {
            let mut progress = false;
            flow = conn.session.resume(now, &mut cx);
            // Read until WouldBlock, end of stream, backpressure or budget.
            while flow == Flow::Continue
                && conn.readable
                && !conn.read_eof
                && conn.session.wants_read()
            {
                if budget == 0 {
                    self.busy = true;
                    mark_dirty(&mut self.dirty, conn, slot);
                    break;
                }
                match conn.io.read(&mut self.scratch) {
                    Ok(0) => {
                        conn.read_eof = true;
                        flow = conn.session.on_eof(now, &mut cx);
                    }
                    Ok(n) => {
                        budget = budget.saturating_sub(n);
                        progress = true;
                        // A short read of a plain socket took all there was (epoll(7)): the
                        // next bytes raise a new edge, so the read that would only say
                        // WouldBlock is saved (one syscall per request).
                        if n < self.scratch.len() && !conn.eof_signalled && conn.io.is_plain() {
                            conn.readable = false;
                        }
                        flow = conn.session.on_input(&self.scratch[..n], now, &mut cx);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => conn.readable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        conn_log!(debug, self.index, slot, conn.peer, "read error: {e}");
                        flow = Flow::Abort;
                    }
                }
            }
            if flow == Flow::Continue {
                flow = conn.session.prepare_write(now, &mut cx);
            }
            // Write until WouldBlock or done.
            while flow == Flow::Continue && conn.writable && !conn.session.output().is_empty() {
                match conn.io.write(conn.session.output()) {
                    Ok(0) => flow = Flow::Abort,
                    Ok(n) => {
                        conn.session.consumed(n);
                        progress = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => conn.writable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        conn_log!(debug, self.index, slot, conn.peer, "write error: {e}");
                        flow = Flow::Abort;
                    }
                }
            }
            // TLS records still waiting (handshake, encrypted output).
            while flow == Flow::Continue && conn.writable && conn.io.wants_write() {
                match conn.io.flush() {
                    Ok(()) => progress = true,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => conn.writable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        conn_log!(debug, self.index, slot, conn.peer, "write error: {e}");
                        flow = Flow::Abort;
                    }
                }
            }
            if flow == Flow::Abort || !progress {
                break;
            }
        }
        if flow == Flow::Abort {
            self.to_close.push(slot);
            return;
        }
        if conn.session.is_closing() && conn.session.output().is_empty() && !conn.io.wants_write() {
            if !conn.write_shut {
                // Lingering close: stop sending, wait for the peer's end of stream.
                conn.write_shut = true;
                conn.io.shutdown_write();
            }
            if conn.read_eof {
                self.to_close.push(slot);
                return;
            }
        }
        // Arm the connection's one deadline (only if earlier than the armed one; a later one is
        // re-armed when the earlier entry fires).
        if let Some(deadline) = conn.session.deadline() {
            let tick = self.wheel.tick_of(deadline);
            if conn.armed.is_none_or(|armed| tick < armed) {
                let key = TimerKey {
                    slot: slot as u32,
                    generation: conn.generation,
                };
                conn.armed = Some(self.wheel.arm(key, deadline));
            }
        }
    }

    fn close_pending(&mut self, now: Instant) {
        while let Some(slot) = self.to_close.pop() {
            if !self.conns.contains(slot) {
                continue;
            }
            let mut conn = self.conns.remove(slot);
            let mut cx = core_cx!(self, conn_ref(self.index, slot, conn.generation));
            // Releasing a connection whose handling panicked may panic again: contain it too.
            let released = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                conn.session.release(now, &mut cx)
            }));
            if released.is_err() {
                self.stats.panicked.add(1);
            }
            self.stats.connections.sub(1);
            conn_log!(debug, self.index, slot, conn.peer, "closed");
            // Dropping the socket closes it and removes it from the poll set.
        }
        if self.accept_paused && self.conns.len() < self.max_conns * ACCEPT_RESUME_PERCENT / 100 {
            self.accept_paused = false;
            self.accept_ready.iter_mut().for_each(|r| *r = true);
            info!(
                "[core={}] accepting again ({} connections)",
                self.index,
                self.conns.len()
            );
        }
    }

    /// Accepts until WouldBlock on every ready listener, within the connection limit.
    fn accept(&mut self, now: Instant) {
        // Paused until the count falls below ACCEPT_RESUME_PERCENT of the limit (close_pending).
        if self.stopping.is_some() || self.accept_paused {
            return;
        }
        for i in 0..self.listeners.len() {
            while self.accept_ready[i] {
                if self.conns.len() >= self.max_conns {
                    if !self.accept_paused {
                        warn!(
                            "[core={}] connection limit {} reached: accepting paused",
                            self.index, self.max_conns
                        );
                        self.stats.accept_paused.add(1);
                    }
                    self.accept_paused = true;
                    return;
                }
                let listener = &self.listeners[i];
                let kind = listener.kind;
                match listener.socket.accept() {
                    Ok((mut socket, peer)) => {
                        if self.accept_failing {
                            self.accept_failing = false;
                            info!("[core={}] accepting again after failures", self.index);
                        }
                        let _ = socket.set_nodelay(true);
                        let entry = self.conns.vacant_entry();
                        let slot = entry.key();
                        if let Err(e) = self.poll.registry().register(
                            &mut socket,
                            Token(slot),
                            Interest::READABLE | Interest::WRITABLE,
                        ) {
                            warn!("[core={}] register failed: {e}", self.index);
                            continue;
                        }
                        let io = match &listener.tls {
                            None => Transport::Plain(socket),
                            Some(tls) => match tls.accept() {
                                Ok(state) => Transport::tls(socket, state),
                                Err(e) => {
                                    warn!("[core={}] TLS setup failed: {e}", self.index);
                                    continue;
                                }
                            },
                        };
                        self.next_generation = self.next_generation.wrapping_add(1);
                        entry.insert(Conn {
                            io,
                            session: Session::new(kind, peer.ip(), now, &self.shared.config),
                            generation: self.next_generation,
                            peer,
                            readable: false,
                            writable: false,
                            read_eof: false,
                            eof_signalled: false,
                            write_shut: false,
                            dirty: false,
                            armed: None,
                        });
                        self.stats.accepted.add(1);
                        self.stats.connections.add(1);
                        if let Some(conn) = self.conns.get_mut(slot) {
                            mark_dirty(&mut self.dirty, conn, slot);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.accept_ready[i] = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        // EMFILE and friends: try again a little later rather than spin; log
                        // the first failure of a run, not every retry.
                        if !self.accept_failing {
                            warn!(
                                "[core={}] accept failed: {e}; retrying every {ACCEPT_RETRY:?}",
                                self.index
                            );
                        }
                        self.accept_failing = true;
                        self.accept_ready[i] = false;
                        self.accept_retry = Some(now + ACCEPT_RETRY);
                    }
                }
            }
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(now + self.shared.config.shutdown_grace);
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            let mut cx = core_cx!(self, conn_ref(self.index, slot, conn.generation));
            match conn.session.shutdown(now, &mut cx) {
                Flow::Continue => mark_dirty(&mut self.dirty, conn, slot),
                Flow::Abort => self.to_close.push(slot),
            }
        }
        info!("[core={}] shutting down", self.index);
    }
}

#[derive(PartialEq, Eq)]
enum Drain {
    Continue,
    Stop,
}

fn mark_dirty(dirty: &mut Vec<usize>, conn: &mut Conn, slot: usize) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(slot);
    }
}

fn conn_ref(core: u16, slot: usize, generation: u32) -> ConnRef {
    ConnRef {
        core,
        slot: slot as u32,
        generation,
    }
}
