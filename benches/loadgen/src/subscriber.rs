//! Subscriber threads: each owns a mio `Poll` and a share of the subscribers.
//!
//! A WebSocket subscriber connects, upgrades (ready on 101) and reads frames; a long-poll
//! subscriber sends `GET …&mid=` (nchan: with `If-Modified-Since`/`If-None-Match`; ready once the
//! first request is written), reads the answer and polls again at once on the same connection (or a
//! new one when the server closes). Payloads are decoded by [`crate::deliver`] according to the
//! run's framing; every delivery goes into the subscriber's [`SubTally`]. The long-poll half is
//! in `subscriber/longpoll.rs`.

mod longpoll;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::config::{Framing, Plan, Transport};
use crate::deliver::{DeliveryCtx, Receiver, take_units, take_whole, widen};
use crate::http::{
    BodyDecoder, DEFAULT_MAX_HEAD_BYTES, Persistence, Resume, parse_response_head, poll_request,
};
use crate::net::{connected, flush, open_socket, unix_micros};
use crate::series::SeriesRec;
use crate::shared::{Shared, new_histogram};
use crate::tally::SubTally;
use crate::ws::{
    DEFAULT_MAX_FRAME_PAYLOAD, Fin, MaskGen, Opcode, encode_client_frame, normal_close_payload,
    parse_server_frame, upgrade_request,
};

/// Longest a connection may take from `connect()` to 101 / first poll written.
///
/// A local server answers in milliseconds; 10 s covers a server busy accepting thousands of
/// connections while still ending a hung handshake well inside a run.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from a socket per `read` call (one buffer per thread).
pub const DEFAULT_READ_CHUNK: usize = 64 * 1024;

/// Consecutive failed polls after which a long-poll subscriber gives up.
///
/// With [`DEFAULT_POLL_RETRY_DELAY`] this is about one second of a broken server.
pub const DEFAULT_MAX_POLL_RETRIES: u32 = 20;

/// Pause before a long-poll subscriber retries after an error.
pub const DEFAULT_POLL_RETRY_DELAY: Duration = Duration::from_millis(50);

/// How often a thread checks timeouts, retries and completeness (and its longest poll wait).
pub const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_millis(20);

/// Reads done for one connection per readiness event before the thread turns to the others.
///
/// With [`DEFAULT_READ_CHUNK`] this is 1 MiB; a connection that still has data is driven again after
/// the others (edge-triggered polling would not report it again), so a flooding server cannot keep a
/// thread from its deadline checks.
pub const DEFAULT_MAX_READS_PER_EVENT: usize = 16;

/// Poll wait while connections are still to be opened (keeps the connect rate smooth).
pub const DEFAULT_CONNECT_TICK: Duration = Duration::from_millis(1);

/// Whether a subscriber ever subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Got its 101 / had a poll in flight.
    Ready,
    /// Failed or was still connecting when the run ended.
    NeverReady,
}

/// One subscriber at the end of the run.
#[derive(Debug, Clone)]
pub struct SubOutcome {
    /// Whether it subscribed.
    pub readiness: Readiness,
    /// What it received.
    pub tally: SubTally,
}

/// What one subscriber thread measured.
#[derive(Debug)]
pub struct WorkerReport {
    /// Latency of first deliveries, µs.
    pub latency: Histogram<u64>,
    /// Subscribers that never became ready.
    pub connect_failures: u64,
    /// Why (e.g. `status 400`, `connect: ConnectionRefused`).
    pub failure_reasons: BTreeMap<String, u64>,
    /// Ready subscribers that lost their connection for good.
    pub disconnects: u64,
    /// Why.
    pub disconnect_reasons: BTreeMap<String, u64>,
    /// Stream-level errors (bad framing, binary frames, garbage between units).
    pub protocol_errors: u64,
    /// Units that were not load-generator messages.
    pub undecodable: u64,
    /// Long-poll responses read.
    pub polls: u64,
    /// Long-poll responses that carried messages (`200`).
    pub data_polls: u64,
    /// Long-poll requests that failed and were retried.
    pub poll_errors: u64,
    /// Pongs sent.
    pub pongs: u64,
    /// Every delivery (duplicates included).
    pub deliveries: u64,
    /// Connections still open at the end.
    pub alive_at_end: u64,
    /// When the first / last subscriber of the thread became ready.
    pub ready_span: Option<(Instant, Instant)>,
    /// First / last delivery.
    pub delivery_span: Option<(Instant, Instant)>,
    /// Per subscriber.
    pub subs: Vec<SubOutcome>,
    /// Per interval.
    pub series: SeriesRec,
    /// Per sequence number: the largest latency of a first delivery, µs + 1 (0 = none).
    pub last_arrival: Vec<u32>,
}

fn bump(map: &mut BTreeMap<String, u64>, reason: String) {
    *map.entry(reason).or_insert(0) += 1;
}

/// How far a readiness event is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Until a read returns less than the buffer: the socket is then empty (epoll(7)), and any
    /// later data or end of stream is a new edge-triggered event, so the read that would only
    /// return `WouldBlock` is saved (one syscall per delivery at high fan-out). Only for events
    /// that did not report the peer's end of stream: a FIN that came with the data is read now.
    UntilShortRead,
    /// Until `WouldBlock` (connections carried over from an earlier turn).
    UntilWouldBlock,
}

enum State {
    Idle,
    Connecting,
    Handshake,
    Open,
    PollHead,
    PollBody(BodyDecoder),
    Backoff(Instant),
    Dead,
}

struct Sub {
    target: String,
    source: Option<IpAddr>,
    state: State,
    stream: Option<TcpStream>,
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    carry: Vec<u8>,
    resume: Resume,
    keep: Persistence,
    started: Instant,
    ready: bool,
    settled: bool,
    retries: u32,
    tally: SubTally,
}

enum Flow {
    Continue,
    Reconnect,
    Fail(String),
}

/// One subscriber thread.
pub struct Worker {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    poll: Poll,
    subs: Vec<Sub>,
    next_start: usize,
    pending: usize,
    host: String,
    framing: Framing,
    masks: MaskGen,
    scratch: Vec<u8>,
    hot: Vec<usize>,
    st: WorkerReport,
}

impl Worker {
    /// A worker for the subscribers with global indices `members`.
    pub fn new(plan: Arc<Plan>, shared: Arc<Shared>, members: &[u64]) -> io::Result<Self> {
        let now = Instant::now();
        let subs = members
            .iter()
            .map(|&g| {
                let ch = g % plan.channels;
                let source = (!plan.source_addrs.is_empty()).then(|| {
                    plan.source_addrs[usize::try_from(g).unwrap_or(0) % plan.source_addrs.len()]
                });
                Sub {
                    target: plan.sub_target(ch),
                    source,
                    state: State::Idle,
                    stream: None,
                    out: Vec::new(),
                    out_pos: 0,
                    inbuf: Vec::new(),
                    carry: Vec::new(),
                    resume: Resume::default(),
                    keep: Persistence::KeepAlive,
                    started: now,
                    ready: false,
                    settled: false,
                    retries: 0,
                    tally: SubTally::new(ch),
                }
            })
            .collect();
        let seed = unix_micros()
            ^ members
                .first()
                .copied()
                .unwrap_or(0)
                .wrapping_mul(0x9E37_79B9);
        let series = SeriesRec::new(shared.start, shared.series_interval);
        Ok(Self {
            host: plan.sub_addr.to_string(),
            framing: plan.framing(),
            plan,
            shared,
            poll: Poll::new()?,
            subs,
            next_start: 0,
            pending: 0,
            masks: MaskGen::new(seed),
            scratch: vec![0; DEFAULT_READ_CHUNK],
            hot: Vec::new(),
            st: WorkerReport {
                latency: new_histogram(),
                connect_failures: 0,
                failure_reasons: BTreeMap::new(),
                disconnects: 0,
                disconnect_reasons: BTreeMap::new(),
                protocol_errors: 0,
                undecodable: 0,
                polls: 0,
                data_polls: 0,
                poll_errors: 0,
                pongs: 0,
                deliveries: 0,
                alive_at_end: 0,
                ready_span: None,
                delivery_span: None,
                subs: Vec::new(),
                series,
                last_arrival: Vec::new(),
            },
        })
    }

    /// Runs until the run's deadline or the stop phase, then closes every socket.
    pub fn run(mut self) -> WorkerReport {
        let mut events = Events::with_capacity(1024);
        let mut last_scan = Instant::now();
        loop {
            let now = Instant::now();
            if self.shared.should_stop(now) {
                break;
            }
            self.start_more(now);
            if now.duration_since(last_scan) >= DEFAULT_SCAN_INTERVAL {
                self.scan(now);
                last_scan = now;
            }
            let more = self.next_start < self.subs.len() && self.pending < self.plan.max_pending;
            let wait = if !self.hot.is_empty() {
                Duration::ZERO
            } else if more {
                DEFAULT_CONNECT_TICK
            } else {
                DEFAULT_SCAN_INTERVAL
            };
            let wait = wait.min(self.shared.deadline.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                bump(
                    &mut self.st.disconnect_reasons,
                    format!("poll: {:?}", e.kind()),
                );
                break;
            }
            for i in std::mem::take(&mut self.hot) {
                self.drive(i, Drain::UntilWouldBlock);
            }
            for ev in events.iter() {
                let drain = if ev.is_read_closed() || ev.is_error() {
                    Drain::UntilWouldBlock
                } else {
                    Drain::UntilShortRead
                };
                self.drive(ev.token().0, drain);
            }
        }
        self.finish()
    }

    fn start_more(&mut self, now: Instant) {
        while self.next_start < self.subs.len()
            && self.pending < self.plan.max_pending
            && self.shared.connect_gate.try_take(now)
        {
            let i = self.next_start;
            self.next_start += 1;
            self.pending += 1;
            self.connect(i, now);
        }
    }

    fn connect(&mut self, i: usize, now: Instant) {
        let sub = &mut self.subs[i];
        if let Some(mut old) = sub.stream.take() {
            let _ = self.poll.registry().deregister(&mut old);
        }
        sub.inbuf.clear();
        sub.carry.clear();
        sub.out.clear();
        sub.out_pos = 0;
        sub.started = now;
        let opened = open_socket(self.plan.sub_addr, sub.source).and_then(|mut s| {
            self.poll
                .registry()
                .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                .map(|()| s)
        });
        match opened {
            Ok(s) => {
                sub.stream = Some(s);
                sub.state = State::Connecting;
            }
            Err(e) => self.lose(i, format!("connect: {:?}", e.kind()), now),
        }
    }

    fn drive(&mut self, i: usize, drain: Drain) {
        let now = Instant::now();
        let Some(sub) = self.subs.get_mut(i) else {
            return;
        };
        match sub.state {
            State::Idle | State::Dead | State::Backoff(_) => return,
            State::Connecting => {
                let Some(stream) = sub.stream.as_ref() else {
                    return;
                };
                match connected(stream) {
                    Ok(false) => return,
                    Ok(true) => {
                        let (req, next) = match self.plan.transport {
                            Transport::Ws => {
                                (upgrade_request(&sub.target, &self.host), State::Handshake)
                            }
                            Transport::Longpoll => (self.poll_req(i), State::PollHead),
                        };
                        let sub = &mut self.subs[i];
                        sub.out.extend(req);
                        sub.state = next;
                    }
                    Err(e) => {
                        self.lose(i, format!("connect: {:?}", e.kind()), now);
                        return;
                    }
                }
            }
            _ => {}
        }
        self.pump(i, now, drain);
    }

    fn poll_req(&self, i: usize) -> Vec<u8> {
        let sub = &self.subs[i];
        poll_request(&sub.target, &sub.resume, &self.host)
    }

    fn pump(&mut self, i: usize, now: Instant, drain: Drain) {
        let mut reads = 0;
        let mut emptied = false;
        loop {
            let sub = &mut self.subs[i];
            let Some(stream) = sub.stream.as_mut() else {
                return;
            };
            if let Err(e) = flush(stream, &mut sub.out, &mut sub.out_pos) {
                self.lose(i, format!("write: {:?}", e.kind()), now);
                return;
            }
            if matches!(sub.state, State::PollHead) && !sub.ready && sub.out.is_empty() {
                self.mark_ready(i, now);
            }
            if emptied {
                return;
            }
            if reads >= DEFAULT_MAX_READS_PER_EVENT {
                self.hot.push(i);
                return;
            }
            reads += 1;
            let sub = &mut self.subs[i];
            let Some(stream) = sub.stream.as_mut() else {
                return;
            };
            let n = match stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.on_eof(i, now);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.lose(i, format!("read: {:?}", e.kind()), now);
                    return;
                }
            };
            sub.inbuf.extend_from_slice(&self.scratch[..n]);
            emptied = drain == Drain::UntilShortRead && n < self.scratch.len();
            match self.process(i, now) {
                Flow::Continue => {}
                Flow::Reconnect => {
                    self.connect(i, now);
                    return;
                }
                Flow::Fail(reason) => {
                    let sub = &mut self.subs[i];
                    if let Some(stream) = sub.stream.as_mut() {
                        let _ = flush(stream, &mut sub.out, &mut sub.out_pos);
                    }
                    self.lose(i, reason, now);
                    return;
                }
            }
        }
    }

    fn process(&mut self, i: usize, now: Instant) -> Flow {
        let d = DeliveryCtx {
            channels: self.plan.channels,
            max_issued: self.shared.max_issued(),
            now,
            now_us: unix_micros(),
        };
        if matches!(self.subs[i].state, State::Handshake) {
            let sub = &mut self.subs[i];
            match parse_response_head(&sub.inbuf, DEFAULT_MAX_HEAD_BYTES) {
                Err(e) => return Flow::Fail(format!("handshake: {}", e.reason())),
                Ok(None) => return Flow::Continue,
                Ok(Some((n, head))) => {
                    sub.inbuf.drain(..n);
                    if head.status != 101 {
                        return Flow::Fail(format!("status {}", head.status));
                    }
                    sub.state = State::Open;
                    self.mark_ready(i, now);
                }
            }
        }
        let sub = &mut self.subs[i];
        match sub.state {
            State::Open => self.ws_frames(i, &d),
            State::PollHead | State::PollBody(_) => self.lp_process(i, &d),
            _ => Flow::Continue,
        }
    }

    fn ws_frames(&mut self, i: usize, d: &DeliveryCtx) -> Flow {
        let framing = self.framing;
        let sub = &mut self.subs[i];
        let st = &mut self.st;
        let mut at = 0;
        let mut closed = None;
        loop {
            match parse_server_frame(&sub.inbuf[at..], DEFAULT_MAX_FRAME_PAYLOAD) {
                Err(e) => {
                    st.protocol_errors += 1;
                    closed = Some(format!("frame: {}", e.reason()));
                    break;
                }
                Ok(None) => break,
                Ok(Some((n, f))) => {
                    at += n;
                    match f.opcode {
                        Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                            let expected = match (framing, f.opcode) {
                                (_, Opcode::Continuation) | (Framing::Plain, _) => true,
                                (Framing::Nms, op) => op == Opcode::Text,
                                (Framing::Protobuf, op) => op == Opcode::Binary,
                            };
                            if !expected {
                                st.protocol_errors += 1;
                                continue;
                            }
                            sub.carry.extend_from_slice(f.payload);
                            if framing == Framing::Nms || f.fin == Fin::More {
                                continue;
                            }
                            let mut rx = Receiver {
                                tally: &mut sub.tally,
                                resume: &mut sub.resume,
                            };
                            if take_whole(framing, &sub.carry, &mut rx, st, d).is_err() {
                                st.protocol_errors += 1;
                            }
                            sub.carry.clear();
                        }
                        Opcode::Ping => {
                            encode_client_frame(
                                Opcode::Pong,
                                f.payload,
                                self.masks.next_mask(),
                                &mut sub.out,
                            );
                            st.pongs += 1;
                        }
                        Opcode::Pong => {}
                        Opcode::Close => {
                            let code = f.payload.get(..2).unwrap_or(&[]);
                            let reason = match code {
                                [a, b] => format!("close {}", u16::from_be_bytes([*a, *b])),
                                _ => "close".to_owned(),
                            };
                            encode_client_frame(
                                Opcode::Close,
                                code,
                                self.masks.next_mask(),
                                &mut sub.out,
                            );
                            closed = Some(reason);
                            break;
                        }
                    }
                }
            }
        }
        sub.inbuf.drain(..at);
        if framing == Framing::Nms {
            let mut rx = Receiver {
                tally: &mut sub.tally,
                resume: &mut sub.resume,
            };
            if take_units(&mut sub.carry, &mut rx, st, d).is_err() {
                st.protocol_errors += 1;
                sub.carry.clear();
            }
        }
        match closed {
            Some(reason) => Flow::Fail(reason),
            None => Flow::Continue,
        }
    }

    fn mark_ready(&mut self, i: usize, now: Instant) {
        let sub = &mut self.subs[i];
        if !sub.ready {
            sub.ready = true;
            self.pending = self.pending.saturating_sub(1);
            self.shared
                .ready
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            widen(&mut self.st.ready_span, now);
            if let Some(b) = self.st.series.at(now) {
                b.ready += 1;
            }
        }
    }

    fn settle(&mut self, i: usize) {
        let sub = &mut self.subs[i];
        if !sub.settled {
            sub.settled = true;
            self.shared
                .settled
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// The connection failed: before ready it is a connect failure; a long-poll subscriber retries;
    /// a WebSocket subscriber is disconnected for good.
    fn lose(&mut self, i: usize, reason: String, now: Instant) {
        let sub = &mut self.subs[i];
        if let Some(mut s) = sub.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        sub.out.clear();
        sub.out_pos = 0;
        if !sub.ready {
            sub.state = State::Dead;
            self.pending = self.pending.saturating_sub(1);
            self.st.connect_failures += 1;
            bump(&mut self.st.failure_reasons, reason);
            self.shared
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            self.settle(i);
        } else if self.plan.transport == Transport::Longpoll
            && sub.retries < DEFAULT_MAX_POLL_RETRIES
        {
            sub.retries += 1;
            sub.state = State::Backoff(now + DEFAULT_POLL_RETRY_DELAY);
            self.st.poll_errors += 1;
            bump(
                &mut self.st.disconnect_reasons,
                format!("retried: {reason}"),
            );
        } else {
            sub.state = State::Dead;
            self.st.disconnects += 1;
            bump(&mut self.st.disconnect_reasons, reason);
            self.settle(i);
        }
    }

    fn scan(&mut self, now: Instant) {
        let accepted = self.shared.accepted.get().cloned();
        for i in 0..self.subs.len() {
            let sub = &self.subs[i];
            match sub.state {
                State::Connecting | State::Handshake
                    if now.duration_since(sub.started) > DEFAULT_CONNECT_TIMEOUT =>
                {
                    self.lose(i, "connect timeout".to_owned(), now);
                }
                State::Backoff(at) if now >= at => self.connect(i, now),
                _ => {}
            }
            let sub = &self.subs[i];
            if let Some(acc) = &accepted
                && sub.ready
                && !sub.settled
                && !matches!(sub.state, State::Dead)
                && sub.tally.is_complete(acc)
            {
                self.settle(i);
            }
        }
    }

    fn finish(mut self) -> WorkerReport {
        for sub in &mut self.subs {
            let alive = matches!(
                sub.state,
                State::Open | State::PollHead | State::PollBody(_)
            );
            if let Some(mut stream) = sub.stream.take() {
                if matches!(sub.state, State::Open) {
                    let mut close = Vec::new();
                    encode_client_frame(
                        Opcode::Close,
                        &normal_close_payload(),
                        self.masks.next_mask(),
                        &mut close,
                    );
                    let _ = stream.write(&close);
                }
                let _ = self.poll.registry().deregister(&mut stream);
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            self.st.alive_at_end += u64::from(alive);
            if !sub.ready && !matches!(sub.state, State::Dead) {
                self.st.connect_failures += 1;
                bump(
                    &mut self.st.failure_reasons,
                    "not subscribed when the run ended".to_owned(),
                );
            }
            self.st.subs.push(SubOutcome {
                readiness: if sub.ready {
                    Readiness::Ready
                } else {
                    Readiness::NeverReady
                },
                tally: std::mem::take(&mut sub.tally),
            });
        }
        self.st
    }
}
