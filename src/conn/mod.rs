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
//!
//!   Awaiting(keep-alive publish) ──(next request buffered)──▶ parked in `pipeline` ──▶ Head
//!   Head ──(chunked body on a request that takes none)──▶ Body ──(body dropped)──▶ served as above
//! ```
//!
//! A publish body is read in `Body` whatever its framing (`Content-Length` or chunked); a
//! `Content-Length` body of any other request is dropped after the answer (`skip`), a chunked
//! one in `Body` before it, since only its decoder knows where it ends.
//!
//! A parked publish (pipelining, `pipeline.rs`) keeps the place of its answer in the output
//! buffer; only the bytes before the oldest parked answer are offered to the socket.
//!
//! Writable invariant: every method that appends to the output buffer is called by the reactor
//! through a path that marks the connection dirty, so the output is flushed in the same loop turn.

mod http;
mod inbuf;
mod lockdown;
mod pipeline;
mod publish;
mod respond;
mod sub;
mod websocket;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, ListenerKind};
use crate::engine::{ConnRef, CoreMsg, EngineHandle};
use crate::hub::Hub;
use crate::message::{MessageId, SharedMessage};
use crate::metrics::{CoreStats, EngineStats};
use crate::proto::channel::Signer;
use crate::proto::http::Persistence;
use crate::proto::request;
use inbuf::InBuf;
use publish::Reply;
use sub::{Paging, Sub, SubRequest};

pub use pipeline::DEFAULT_MAX_PIPELINED;
use pipeline::Pipeline;

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
    // call: on_input (body bytes: a publish's, or a chunked body dropped before its request
    //       is served)
    // next: Awaiting, Polling, WebSocket, Head, Closing
    Body(Box<http::Reading>),
    // call: on_engine (publish or channel info answer), process (a keep-alive publish with a
    //       next request buffered is parked)
    // next: Head, Closing
    Awaiting(Persistence, Reply),
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

/// One connection's session.
#[derive(Debug)]
pub struct Session {
    kind: ListenerKind,
    /// The peer's address, for `publish_allow` (spec/publishing.md §7).
    peer: IpAddr,
    state: State,
    rbuf: InBuf,
    out: Vec<u8>,
    /// When the current request head must be complete, or the keep-alive idle deadline.
    head_until: Instant,
    head_started: bool,
    /// Body bytes of the last request still to be dropped.
    skip: u64,
    /// Publishes passed to the engine while later requests were read (pipelining).
    pipeline: Pipeline,
    /// The peer half-closed with requests still buffered: they are answered, then the
    /// connection closes.
    peer_done: bool,
}

impl Session {
    /// A new session on a listener of `kind`, with a peer at `peer`.
    pub fn new(kind: ListenerKind, peer: IpAddr, now: Instant, config: &Config) -> Self {
        Self {
            kind,
            peer,
            state: State::Head,
            rbuf: InBuf::default(),
            out: Vec::new(),
            head_until: now + config.keepalive_timeout,
            head_started: false,
            skip: 0,
            pipeline: Pipeline::default(),
            peer_done: false,
        }
    }

    /// Bytes read from the peer.
    pub fn on_input(&mut self, data: &[u8], now: Instant, cx: &mut Cx<'_>) -> Flow {
        if matches!(self.state, State::Closing(_)) {
            return Flow::Continue;
        }
        self.rbuf.extend(data);
        self.process(now, cx)
    }

    /// The peer closed its sending side.
    pub fn on_eof(&mut self, now: Instant, cx: &mut Cx<'_>) -> Flow {
        if !self.pipeline.is_empty() && matches!(self.state, State::Head | State::Body(_)) {
            // Parked publishes are answered first; a half-read request is dropped.
            self.close(now, cx);
            return Flow::Continue;
        }
        match &mut self.state {
            // An answer is on its way: send it, then close; requests received after it are
            // answered first.
            State::Awaiting(p, _) => {
                if self.rbuf.is_empty() {
                    *p = Persistence::Close;
                } else {
                    self.peer_done = true;
                }
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
                if self.pipeline.answer(&mut self.out, result) {
                    if self.pipeline.is_empty() {
                        self.pipeline_drained(now, cx);
                    }
                    return Flow::Continue;
                }
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

    /// Bytes that may be written now (none past the answer of a parked publish).
    pub fn output(&self) -> &[u8] {
        &self.out[..self.pipeline.sendable(self.out.len())]
    }

    /// `n` bytes of the output were written.
    pub fn consumed(&mut self, n: usize) {
        let n = n.min(self.pipeline.sendable(self.out.len()));
        self.pipeline.consumed(n);
        self.out.drain(..n);
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
        matches!(self.state, State::Closing(_)) && self.pipeline.is_empty()
    }

    /// The one deadline of this connection.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            // Idle between requests while parked publishes wait for the engine: no deadline,
            // as in `Awaiting`.
            State::Head if !self.head_started && !self.pipeline.is_empty() => None,
            State::Closing(_) if !self.pipeline.is_empty() => None,
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
            State::Head | State::Body(_) if !self.pipeline.is_empty() => {
                self.close(now, cx);
                Flow::Continue
            }
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
                        self.rbuf.consume(n);
                        self.skip -= n as u64;
                    }
                    if self.rbuf.is_empty() {
                        self.rbuf.release_if_empty();
                        return self.input_ended(now, cx);
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
                    self.rbuf.consume(consumed);
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
                // A keep-alive publish with the next request behind it: parked, so that the
                // next request proceeds now (spec/publishing.md §8).
                State::Awaiting(Persistence::KeepAlive, reply @ (Reply::Mid | Reply::Empty))
                    if self.kind == ListenerKind::Pub
                        && !self.rbuf.is_empty()
                        && self.pipeline.has_room()
                        && cx.engine.has_room_for_pipelining() =>
                {
                    let reply = *reply;
                    self.pipeline.park(reply, self.out.len());
                    self.state = State::Head;
                    self.head_started = false;
                    true
                }
                State::Awaiting(..) | State::Polling(_) => false,
            };
            self.rbuf.release_if_empty();
            if !progress {
                return self.input_ended(now, cx);
            }
        }
    }

    /// No more progress on the input: a peer that half-closed gets no further request read.
    fn input_ended(&mut self, now: Instant, cx: &mut Cx<'_>) -> Flow {
        if self.peer_done && matches!(self.state, State::Head | State::Body(_)) {
            self.close(now, cx);
        }
        Flow::Continue
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

    /// The last parked publish was answered: the idle deadline starts again, and a closing
    /// connection lingers from now.
    fn pipeline_drained(&mut self, now: Instant, cx: &mut Cx<'_>) {
        match &mut self.state {
            State::Head if !self.head_started => {
                self.head_until = now + cx.shared.config.keepalive_timeout;
            }
            State::Closing(until) => *until = now + DEFAULT_LINGER,
            _ => {}
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
        self.state = State::Awaiting(Persistence::Close, Reply::Empty);
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
        self.rbuf.release();
    }
}
