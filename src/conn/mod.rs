//! One connection's protocol session: HTTP requests, long-poll holds and WebSocket streams, as a
//! pure state machine. The reactor feeds it bytes, deliveries, engine answers and timeouts, all
//! with `now`; it returns a [`Flow`] and leaves bytes to send in its output buffer. It never
//! touches a socket or a clock.
//!
//! ```text
//!                     ┌──────────────── keep-alive: next request ──────────────┐
//!                     ▼                                                        │
//!   accept ──▶ Head ──┬─ POST pub ──▶ Body ──▶ Awaiting ──(engine answer)─────┤
//!                     ├─ GET pub, GET sub(replay) ──────▶ Awaiting / Polling ─┤
//!                     │                          Polling ─(messages | hold)───┘
//!                     ├─ GET sub + Upgrade ──▶ WebSocket ──(close)──▶ Closing
//!                     └─ error, Connection: close ─────────────────▶ Closing ──▶ closed
//! ```
//!
//! Writable invariant: every method that appends to the output buffer is called by the reactor
//! through a path that marks the connection dirty, so the output is flushed in the same loop turn.

mod http;
mod lockdown;
mod publish;
mod respond;
mod websocket;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, ListenerKind};
use crate::engine::{ConnRef, CoreMsg, EngineCmd, EngineHandle};
use crate::hub::Hub;
use crate::message::{Channel, ChannelId, Format, MessageId, SharedMessage};
use crate::metrics::{CoreStats, EngineStats};
use crate::proto::channel::Signer;
use crate::proto::http::Persistence;
use crate::proto::request;

pub use websocket::Ws;

/// Time a closing connection waits for the peer to finish after our last byte (lingering close),
/// so a close frame or error answer is not destroyed by a reset: 2 s.
pub const DEFAULT_LINGER: std::time::Duration = std::time::Duration::from_secs(2);
/// Close code of a WebSocket subscriber whose output queue is full (RFC 6455 1008, policy
/// violation: it does not read what it subscribed to).
pub const SLOW_CLOSE_CODE: u16 = 1008;
/// Close reason of a WebSocket subscriber whose output queue is full.
pub const SLOW_CLOSE_REASON: &str = "Output queue full.";

/// What every connection of the process shares (read-only).
#[derive(Debug)]
pub struct Shared {
    /// The effective configuration.
    pub config: Config,
    /// Channel token checks.
    pub signer: Signer,
    /// Statistics of every core, by core index.
    pub core_stats: Vec<Arc<CoreStats>>,
    /// Statistics of the engine.
    pub engine_stats: Arc<EngineStats>,
    /// Unix seconds at start.
    pub started: u64,
}

impl Shared {
    /// This process's statistics object (spec/publishing.md §6).
    pub fn process_stats(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let config = &self.config;
        let cores: Vec<serde_json::Value> = self
            .core_stats
            .iter()
            .enumerate()
            .map(|(i, c)| c.to_json(i))
            .collect();
        let sum = |f: fn(&CoreStats) -> u64| -> u64 { self.core_stats.iter().map(|c| f(c)).sum() };
        let pid = std::process::id();
        let uid = self
            .engine_stats
            .cluster
            .lock()
            .ok()
            .and_then(|c| c.uid.clone());
        let mut process = serde_json::Map::new();
        process.insert("pid".into(), pid.into());
        process.insert("date".into(), crate::engine::local::unix_ms().into());
        process.insert("clusterMode".into(), uid.is_some().into());
        let unique = uid.unwrap_or_else(|| format!("pushpull-{pid}"));
        process.insert("processUniqueId".into(), unique.into());
        process.insert(
            "limits".into(),
            json!({
                "maxPayload": config.max_payload,
                "maxConnPerChannel": config.max_conn_per_channel,
                "maxMessagesPerRequest": config.max_messages_per_request,
                "maxChannelsPerRequest": config.max_channels_per_request,
            }),
        );
        process.insert("websockets".into(), sum(|c| c.websockets.get()).into());
        process.insert("pollings".into(), sum(|c| c.pollings.get()).into());
        process.insert("daily".into(), self.engine_stats.daily_json());
        process.insert("started".into(), self.started.into());
        process.insert("connections".into(), sum(|c| c.connections.get()).into());
        process.insert("delivered".into(), sum(|c| c.delivered.get()).into());
        self.engine_stats.fill(&mut process);
        process.insert("cores".into(), cores.into());
        process
    }
}

/// A session's view of its core for one call.
pub struct Cx<'a> {
    /// This connection.
    pub conn: ConnRef,
    /// The core's subscriptions.
    pub hub: &'a mut Hub,
    /// The way to the engine.
    pub engine: &'a mut EngineHandle,
    /// Process-wide settings and statistics.
    pub shared: &'a Shared,
    /// This core's statistics.
    pub stats: &'a CoreStats,
}

/// What the reactor must do after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep the connection; flush the output buffer.
    Continue,
    /// Close at once, without flushing (peer gone, or a subscriber too slow to take its output).
    Abort,
}

/// The connection's state.
#[derive(Debug)]
enum State {
    // call: on_input (a request head)
    // next: Body, Awaiting, Polling, WebSocket, Closing, Head
    Head,
    // call: on_input (body bytes)
    // next: Awaiting, Head, Closing
    Body(Box<publish::BodyRequest>),
    // call: on_engine (publish or channel info answer)
    // next: Head, Closing
    Awaiting(Persistence, publish::Reply),
    // call: on_deliver, on_engine (replay), on_timeout (hold)
    // next: Head, Closing
    Polling(Box<Poll>),
    // call: on_input (frames), on_deliver, on_engine (replay), on_timeout (ping)
    // next: Closing
    WebSocket(Box<Ws>),
    // call: on_timeout (linger)
    // next: closed by the reactor once the output is flushed and the peer is done
    Closing(Instant),
}

/// A held long-poll request.
#[derive(Debug)]
struct Poll {
    sub: Sub,
    hold_until: Instant,
    persistence: Persistence,
    since: Option<MessageId>,
}

/// Where a subscription stands in its replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    // call: replayed
    // next: Live, PageWanted (WebSocket), Final (long-poll)
    /// A replay page is on its way from the engine: live messages are held back.
    Replaying,
    // call: next_page (when the output has drained)
    // next: Replaying
    /// A page was written and more are stored (WebSocket); live messages are still held back.
    PageWanted,
    // call: offer
    /// Replay done: live messages go straight out.
    Live,
    /// A long-poll answers with this replay page only; nothing more is taken.
    Final,
}

/// What a subscribe request asks for (spec/longpoll.md §1).
#[derive(Debug)]
struct SubRequest {
    channels: Vec<Channel>,
    capped: Vec<Channel>,
    own_public: Option<ChannelId>,
    since: Option<MessageId>,
    format: Format,
}

/// A live subscription: its channels, replay progress and messages waiting to be written.
#[derive(Debug)]
struct Sub {
    channels: Arc<[Channel]>,
    capped: Arc<[Channel]>,
    format: Format,
    phase: Phase,
    /// Live messages that arrived while the replay was still running.
    held: Vec<SharedMessage>,
    /// Messages ready to be written, in order.
    pending: Vec<SharedMessage>,
    /// Bytes of `held` and `pending` together.
    pending_bytes: usize,
    /// Newest id handed to the client: later duplicates (a message on two of the connection's
    /// channels, or one both replayed and delivered live) are skipped.
    last_sent: Option<MessageId>,
    /// Newest stored id at subscription time (for the long-poll 304).
    last_stored: Option<MessageId>,
    /// The request's `mid`, until the first replay answer says whether to trust it.
    since: Option<MessageId>,
}

impl Sub {
    fn start(request: SubRequest, cx: &mut Cx<'_>) -> Option<Self> {
        let SubRequest {
            channels,
            capped,
            since,
            format,
            ..
        } = request;
        let channels: Arc<[Channel]> = channels.into();
        let capped: Arc<[Channel]> = capped.into();
        let cmd = EngineCmd::Subscribe {
            conn: cx.conn,
            channels: channels.clone(),
            capped: capped.clone(),
            since,
        };
        cx.engine.send_reliable(cmd).ok()?;
        cx.hub.subscribe(cx.conn.slot, &channels);
        Some(Self {
            channels,
            capped,
            format,
            phase: Phase::Replaying,
            held: Vec::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            last_sent: None,
            last_stored: None,
            since,
        })
    }

    fn stop(&self, cx: &mut Cx<'_>) {
        cx.hub.unsubscribe(cx.conn.slot, &self.channels);
        let cmd = EngineCmd::Unsubscribe {
            conn: cx.conn,
            channels: self.channels.clone(),
            capped: self.capped.clone(),
        };
        // A full overflow only loses a count decrement (the channel looks subscribed longer).
        let _ = cx.engine.send_reliable(cmd);
    }

    /// A live message. `Flow::Abort` when the output queue limit is passed.
    fn offer(&mut self, msg: &SharedMessage, limit: usize) -> Flow {
        match self.phase {
            Phase::Replaying | Phase::PageWanted => {
                self.held.push(msg.clone());
                self.pending_bytes += msg.encoded(self.format).len();
            }
            Phase::Live if self.last_sent.is_none_or(|last| msg.id > last) => {
                self.push(msg.clone());
            }
            Phase::Live | Phase::Final => {}
        }
        if self.pending_bytes > limit {
            Flow::Abort
        } else {
            Flow::Continue
        }
    }

    fn push(&mut self, msg: SharedMessage) {
        self.last_sent = Some(msg.id);
        self.pending_bytes += msg.encoded(self.format).len();
        self.pending.push(msg);
    }

    /// The first replay answer tells the newest id issued: a `mid` at or below it names a message
    /// the client has, so messages up to it are duplicates (a long-poll that moved to a node still
    /// behind on the stream). A `mid` above it (another server, a clock set back) is not trusted,
    /// so such a client is never deaf to live messages.
    fn trust_since(&mut self, issued: Option<MessageId>) {
        if let Some(since) = self.since.take() {
            if issued.is_some_and(|issued| since <= issued) {
                self.last_sent = self.last_sent.max(Some(since));
            }
        }
    }

    /// A replay page; `paging` says how it ends the replay. Held live messages up to the page's
    /// last id are merged into it in id order (unstored ones are in no page), the rest stay held
    /// for the next page, or follow the last page.
    fn replayed(&mut self, messages: Vec<SharedMessage>, paging: Paging, last: Option<MessageId>) {
        self.last_stored = self.last_stored.max(last);
        let page_last = messages.last().map(|m| m.id);
        let held = std::mem::take(&mut self.held);
        let (mut merged, keep): (Vec<_>, Vec<_>) = match paging {
            Paging::Done => (held, Vec::new()),
            Paging::Continue | Paging::Stop => held
                .into_iter()
                .partition(|h| page_last.is_some_and(|last| h.id <= last)),
        };
        merged.extend(messages);
        merged.sort_by_key(|m| m.id);
        merged.dedup_by_key(|m| m.id);
        for msg in merged {
            if self.last_sent.is_none_or(|l| msg.id > l) {
                self.push(msg);
            }
        }
        self.phase = match paging {
            Paging::Continue => {
                self.held = keep;
                Phase::PageWanted
            }
            Paging::Done => Phase::Live,
            // More stored messages follow this page: the newer live ones would move the
            // client's `mid` past them, so they are left to its next request.
            Paging::Stop => Phase::Final,
        };
        self.recount();
    }

    /// Asks the engine for the next replay page once the output has room for it.
    fn next_page(&mut self, unsent: usize, limit: usize, cx: &mut Cx<'_>) -> Flow {
        if self.phase != Phase::PageWanted || unsent + self.pending_bytes > limit / 2 {
            return Flow::Continue;
        }
        let cmd = EngineCmd::ReplayMore {
            conn: cx.conn,
            channels: self.channels.clone(),
            since: self.last_sent.unwrap_or_default(),
        };
        if cx.engine.send_reliable(cmd).is_err() {
            return Flow::Abort;
        }
        self.phase = Phase::Replaying;
        Flow::Continue
    }

    /// Whether a long-poll may answer now.
    fn ready(&self) -> bool {
        !self.pending.is_empty() && matches!(self.phase, Phase::Live | Phase::Final)
    }

    fn recount(&mut self) {
        let format = self.format;
        let bytes =
            |v: &Vec<SharedMessage>| v.iter().map(|m| m.encoded(format).len()).sum::<usize>();
        self.pending_bytes = bytes(&self.pending) + bytes(&self.held);
    }

    fn take_pending(&mut self) -> Vec<SharedMessage> {
        let taken = std::mem::take(&mut self.pending);
        self.recount();
        taken
    }
}

/// How a replay page ends the replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Paging {
    /// More pages follow (WebSocket): keep live messages held.
    Continue,
    /// Last page: release the held live messages after it.
    Done,
    /// Answer with this page only (long-poll with more pages left).
    Stop,
}

/// One connection's session.
#[derive(Debug)]
pub struct Session {
    kind: ListenerKind,
    /// The peer's address, for `publish_allow` (spec/publishing.md §7).
    peer: IpAddr,
    state: State,
    rbuf: Vec<u8>,
    out: Vec<u8>,
    /// When the current request head must be complete, or the keep-alive idle deadline.
    head_until: Instant,
    head_started: bool,
    /// Body bytes of the last request still to be dropped.
    skip: u64,
}

impl Session {
    /// A new session on a listener of `kind`, with a peer at `peer`.
    pub fn new(kind: ListenerKind, peer: IpAddr, now: Instant, config: &Config) -> Self {
        Self {
            kind,
            peer,
            state: State::Head,
            rbuf: Vec::new(),
            out: Vec::new(),
            head_until: now + config.keepalive_timeout,
            head_started: false,
            skip: 0,
        }
    }

    /// Bytes read from the peer.
    pub fn on_input(&mut self, data: &[u8], now: Instant, cx: &mut Cx<'_>) -> Flow {
        if matches!(self.state, State::Closing(_)) {
            return Flow::Continue;
        }
        self.rbuf.extend_from_slice(data);
        self.process(now, cx)
    }

    /// The peer closed its sending side.
    pub fn on_eof(&mut self, now: Instant, cx: &mut Cx<'_>) -> Flow {
        match &mut self.state {
            // An answer is on its way: send it, then close.
            State::Awaiting(p, _) => {
                *p = Persistence::Close;
                Flow::Continue
            }
            State::Closing(_) => Flow::Abort,
            State::Head if !self.out.is_empty() => {
                self.close(now, cx);
                Flow::Continue
            }
            _ => Flow::Abort,
        }
    }

    /// A message for the channels this connection subscribed.
    pub fn on_deliver(&mut self, msg: &SharedMessage, limit: usize) -> Flow {
        match &mut self.state {
            State::Polling(poll) => poll.sub.offer(msg, limit),
            State::WebSocket(ws) => ws.sub.offer(msg, limit.saturating_sub(self.out.len())),
            _ => Flow::Continue,
        }
    }

    /// An engine answer addressed to this connection.
    pub fn on_engine(&mut self, msg: CoreMsg, now: Instant, cx: &mut Cx<'_>) -> Flow {
        match msg {
            CoreMsg::Replay {
                messages,
                more,
                last_id,
                issued,
                ..
            } => {
                match &mut self.state {
                    State::Polling(poll) => {
                        // A long-poll answers with one page; the client asks again from it.
                        let paging = if more { Paging::Stop } else { Paging::Done };
                        poll.sub.trust_since(issued);
                        poll.sub.replayed(messages, paging, last_id);
                    }
                    State::WebSocket(ws) => {
                        // The next page is asked for when the output has drained (prepare_write).
                        let paging = if more { Paging::Continue } else { Paging::Done };
                        ws.sub.trust_since(issued);
                        ws.sub.replayed(messages, paging, last_id);
                    }
                    _ => {}
                }
                Flow::Continue
            }
            CoreMsg::Published { result, .. } => {
                // A WebSocket's publications get no answer (spec/binary.md §4).
                if let State::Awaiting(p, reply) = self.state {
                    publish::published(&mut self.out, reply, result, p);
                    self.finish_request(p, now, cx);
                }
                Flow::Continue
            }
            CoreMsg::ChannelInfo { infos, .. } => {
                match &mut self.state {
                    State::Awaiting(p, reply) => {
                        let (p, reply) = (*p, *reply);
                        publish::channel_answer(&mut self.out, reply, &infos, p);
                        self.finish_request(p, now, cx);
                    }
                    State::WebSocket(ws) => ws.channel_stats(&mut self.out, &infos),
                    _ => {}
                }
                Flow::Continue
            }
            CoreMsg::Evict { .. } => {
                self.evict(now, cx);
                Flow::Continue
            }
            CoreMsg::Deliver(_) | CoreMsg::Shutdown | CoreMsg::Reload(_) => Flow::Continue,
        }
    }

    /// The deadline of [`Session::deadline`] has passed.
    pub fn on_timeout(&mut self, now: Instant, cx: &mut Cx<'_>) -> Flow {
        match self.deadline() {
            Some(at) if at <= now => {}
            _ => return Flow::Continue,
        }
        match &mut self.state {
            State::Head | State::Body(_) => {
                if self.head_started || matches!(self.state, State::Body(_)) {
                    respond::error(
                        &mut self.out,
                        408,
                        408,
                        "Request Timeout.",
                        Persistence::Close,
                    );
                    self.close(now, cx);
                    Flow::Continue
                } else {
                    Flow::Abort
                }
            }
            State::Polling(_) => {
                self.end_poll(now, cx);
                Flow::Continue
            }
            State::WebSocket(ws) => ws.on_timeout(&mut self.out, now, cx),
            State::Awaiting(..) => Flow::Continue,
            State::Closing(_) => Flow::Abort,
        }
    }

    /// Frames what is pending into the output buffer (WebSocket) or completes a long-poll
    /// holding messages. Called before each write.
    pub fn prepare_write(&mut self, now: Instant, cx: &mut Cx<'_>) -> Flow {
        match &mut self.state {
            State::WebSocket(ws) => {
                let n = ws.frame_pending(&mut self.out);
                cx.stats.delivered.add(n as u64);
                let limit = cx.shared.config.out_queue_bytes;
                return ws.sub.next_page(self.out.len(), limit, cx);
            }
            State::Polling(poll) if poll.sub.ready() => {
                let messages = poll.sub.take_pending();
                let format = poll.sub.format;
                let len = messages.iter().map(|m| m.encoded(format).len()).sum();
                respond::poll_messages_head(&mut self.out, len, format, poll.persistence);
                for m in &messages {
                    self.out.extend_from_slice(m.encoded(format));
                }
                cx.stats.delivered.add(messages.len() as u64);
                let p = poll.persistence;
                self.leave_poll(cx);
                self.finish_request(p, now, cx);
            }
            _ => {}
        }
        Flow::Continue
    }

    /// Bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of the output were written.
    pub fn consumed(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
        if self.out.is_empty() {
            // Idle connections hold no buffer.
            self.out = Vec::new();
        }
    }

    /// Whether the session takes input now (dropping read interest is the backpressure: a
    /// pipelined request waits in the socket while one is being answered).
    pub fn wants_read(&self) -> bool {
        match self.state {
            State::Head | State::Body(_) | State::WebSocket(_) => true,
            State::Closing(_) => true,
            State::Awaiting(..) | State::Polling(_) => {
                self.rbuf.len() < crate::proto::http::DEFAULT_MAX_HEAD_BYTES
            }
        }
    }

    /// Whether the session is closing: once the output is flushed the reactor shuts the
    /// socket's sending side and closes at the peer's end of stream or at the deadline.
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing(_))
    }

    /// The one deadline of this connection.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Head | State::Body(_) => Some(self.head_until),
            State::Awaiting(..) => None,
            State::Polling(poll) => Some(poll.hold_until),
            State::WebSocket(ws) => Some(ws.next_ping),
            State::Closing(until) => Some(*until),
        }
    }

    /// The server is stopping (spec/websocket.md §6, spec/longpoll.md §4): WebSockets get close
    /// 1001, held polls their 304, idle connections close.
    pub fn shutdown(&mut self, now: Instant, cx: &mut Cx<'_>) -> Flow {
        match &mut self.state {
            State::WebSocket(ws) => {
                ws.close(&mut self.out, 1001, "Server shutdown.");
                self.close(now, cx);
                Flow::Continue
            }
            State::Polling(poll) => {
                poll.persistence = Persistence::Close;
                self.end_poll(now, cx);
                Flow::Continue
            }
            State::Awaiting(p, _) => {
                *p = Persistence::Close;
                Flow::Continue
            }
            State::Closing(_) => Flow::Continue,
            State::Head | State::Body(_) => Flow::Abort,
        }
    }

    /// The subscriber's output queue is full (spec/limits.md `out_queue_bytes`): a WebSocket gets
    /// close 1008 after what is already framed (messages not framed yet are dropped) and then
    /// lingers at most [`DEFAULT_LINGER`]; anything else is closed at once (`Flow::Abort`).
    pub fn on_slow(&mut self, now: Instant, cx: &mut Cx<'_>) -> Flow {
        match &mut self.state {
            State::WebSocket(ws) => {
                ws.close(&mut self.out, SLOW_CLOSE_CODE, SLOW_CLOSE_REASON);
                self.close(now, cx);
                Flow::Continue
            }
            _ => Flow::Abort,
        }
    }

    /// Its channel has too many connections and this one is the oldest (spec/binary.md §5):
    /// a WebSocket is closed with 4029, a held poll answered 429.
    fn evict(&mut self, now: Instant, cx: &mut Cx<'_>) {
        let e = request::WireError::TooManyConnections;
        match &mut self.state {
            State::WebSocket(ws) => {
                ws.close(&mut self.out, e.code(), e.reason());
                self.close(now, cx);
            }
            State::Polling(poll) => {
                let p = poll.persistence;
                self.leave_poll(cx);
                respond::error(&mut self.out, e.status(), e.code(), e.reason(), p);
                self.finish_request(p, now, cx);
            }
            _ => {}
        }
    }

    /// The connection is going away: drop subscriptions and gauges.
    pub fn release(&mut self, now: Instant, cx: &mut Cx<'_>) {
        self.close(now, cx);
    }

    /// Works through buffered input as far as the state allows; the reactor calls it after every
    /// event, since a state change (an answer sent) may let a pipelined request proceed.
    pub fn resume(&mut self, now: Instant, cx: &mut Cx<'_>) -> Flow {
        self.process(now, cx)
    }

    /// Works through buffered input as far as the state allows.
    fn process(&mut self, now: Instant, cx: &mut Cx<'_>) -> Flow {
        loop {
            let progress = match &mut self.state {
                State::Head => {
                    if self.skip > 0 {
                        // The body of a request that takes none is read and dropped.
                        let n = self
                            .rbuf
                            .len()
                            .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                        self.rbuf.drain(..n);
                        self.skip -= n as u64;
                    }
                    if self.rbuf.is_empty() {
                        if self.rbuf.capacity() > 0 {
                            self.rbuf = Vec::new();
                        }
                        return Flow::Continue;
                    }
                    if !self.head_started {
                        self.head_started = true;
                        self.head_until = now + cx.shared.config.head_timeout;
                    }
                    http::on_head(self, now, cx)
                }
                State::Body(_) => http::on_body(self, now, cx),
                State::WebSocket(ws) => {
                    let (consumed, flow) = ws.on_input(&self.rbuf, &mut self.out, now, cx);
                    self.rbuf.drain(..consumed);
                    if flow == Flow::Abort {
                        return Flow::Abort;
                    }
                    if ws.closing {
                        self.close(now, cx);
                    }
                    false
                }
                State::Closing(_) => {
                    self.rbuf.clear();
                    false
                }
                State::Awaiting(..) | State::Polling(_) => false,
            };
            if self.rbuf.is_empty() {
                self.rbuf = Vec::new();
            }
            if !progress {
                return Flow::Continue;
            }
        }
    }

    /// Answer written: back to reading the next request, or closing.
    fn finish_request(&mut self, p: Persistence, now: Instant, cx: &mut Cx<'_>) {
        match p {
            Persistence::KeepAlive => {
                self.state = State::Head;
                self.head_started = false;
                self.head_until = now + cx.shared.config.keepalive_timeout;
                // A pipelined request may be waiting already: the reactor calls `resume`.
            }
            Persistence::Close => self.close(now, cx),
        }
    }

    /// Ends a held poll with a 304 (spec/longpoll.md §4).
    fn end_poll(&mut self, now: Instant, cx: &mut Cx<'_>) {
        if let State::Polling(poll) = &self.state {
            let last = poll.since.max(poll.sub.last_stored);
            let p = poll.persistence;
            respond::poll_timeout(&mut self.out, last, p);
            self.leave_poll(cx);
            self.finish_request(p, now, cx);
        }
    }

    fn leave_poll(&mut self, cx: &mut Cx<'_>) {
        if let State::Polling(poll) = &self.state {
            poll.sub.stop(cx);
            cx.stats.pollings.sub(1);
        }
        self.state = State::Awaiting(Persistence::Close, publish::Reply::Empty);
    }

    /// Enters `Closing`, leaving any subscription first.
    fn close(&mut self, now: Instant, cx: &mut Cx<'_>) {
        match &self.state {
            State::Polling(poll) => {
                poll.sub.stop(cx);
                cx.stats.pollings.sub(1);
            }
            State::WebSocket(ws) => {
                ws.sub.stop(cx);
                cx.stats.websockets.sub(1);
            }
            _ => {}
        }
        if !matches!(self.state, State::Closing(_)) {
            self.state = State::Closing(now + DEFAULT_LINGER);
        }
        self.rbuf = Vec::new();
    }
}
