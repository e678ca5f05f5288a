//! One connection's [`Session`] driven the way the reactor drives it, without a socket: bytes
//! arrive in chunks, time is a fixed start advanced by the script, and a scripted engine
//! answers the session's commands. At the end every subscription must be released and the
//! bytes written must form well-framed answers ([`super::check`]).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;

use super::{FUZZ_KEY, Input, check};
use crate::config::{Config, ListenerKind, MIN_MAX_PAYLOAD};
use crate::conn::{Cx, Flow, Session, Shared};
use crate::engine::{ChannelState, ConnRef, CoreMsg, EngineCmd, EngineHandle, PublishError};
use crate::hub::Hub;
use crate::message::{Channel, ChannelId, Message, MessageId, Sender, SharedMessage};
use crate::metrics::{CoreStats, EngineStats};
use crate::proto::channel::Signer;
use crate::reactor::DEFAULT_READ_CHUNK;

/// The one connection of the harness.
const CONN: ConnRef = ConnRef {
    core: 0,
    slot: 0,
    generation: 1,
};
/// Read-process-write rounds per drive, as the reactor's `DRIVE_ROUNDS`.
const DRIVE_ROUNDS: usize = 8;
/// Start second of the scripted engine's message ids.
const ID_START: u64 = 1_700_000_000;
/// Wall clock of the scripted engine's messages (Unix milliseconds).
const NOW_MS: u64 = ID_START * 1000 + 123;
/// Bodies of messages published by "someone else" (script op 3); the third is replaced by
/// [`LARGE_BODY`] bytes of padding.
const OTHER_BODIES: [&[u8]; 4] = [
    br#"{"module_id":"im","command":"message","params":{"n":1}}"#,
    "{\"text\":\"line\u{2028}break\"}".as_bytes(),
    b"",
    br#""a string body with #!NGINXNMS!# inside""#,
];
/// Size of the large body of script op 3: near the smallest `max_payload`, so a few fill the
/// output queue of the small configuration.
const LARGE_BODY: usize = 900;

/// The configurations a session runs under: 0 is the default configuration with a security
/// key (a BitrixVM install), 1 has no key and the smallest limits a configuration may have,
/// so the fuzzer reaches them with short inputs.
pub(super) fn shared(variant: u8) -> &'static Shared {
    static SHARED: OnceLock<[Shared; 2]> = OnceLock::new();
    &SHARED.get_or_init(|| [fixture(true), fixture(false)])[usize::from(variant & 1)]
}

fn fixture(keyed: bool) -> Shared {
    let mut config = Config {
        threads: 1,
        ..Config::default()
    };
    if keyed {
        config.security_key = Some(FUZZ_KEY.to_owned());
    } else {
        config.max_payload = MIN_MAX_PAYLOAD;
        config.out_queue_bytes = 4 * MIN_MAX_PAYLOAD;
        config.max_channels_per_request = 4;
        config.max_messages_per_request = 4;
    }
    if let Err(e) = config.validate() {
        panic!("fuzzing configuration is invalid: {e}");
    }
    let signer = Signer::new(config.security_key.as_deref(), config.signature_algo);
    Shared {
        config,
        signer,
        core_stats: vec![Arc::new(CoreStats::default())],
        engine_stats: Arc::new(EngineStats::default()),
        started: ID_START,
    }
}

/// Drives a session with a script (see `fuzz/README.md`):
///
/// * byte 0: bit 0 listener kind (0 sub, 1 pub), bit 1 configuration ([`shared`]), bits 2–4
///   engine queue capacity − 1;
/// * byte 1: length `n` of the script, bytes 2..2+n: the script, one operation per byte
///   (low 3 bits the operation, high 5 bits its argument `a`);
/// * the rest: the bytes the peer sends, cut into reads by the script.
///
/// Operations: 0 read `1 + a²` bytes; 1 advance the clock `8·a³` ms and fire the deadline;
/// 2 let the engine answer; 3 another publisher's message on a subscribed channel; 4 set how
/// much one write takes (0: nothing, 31: everything, else `16·a²`); 5 end of stream from the
/// peer; 6 server shutdown; 7 read everything left.
pub fn session(data: &[u8]) {
    run(data);
}

/// [`session`], returning everything the session wrote.
pub(super) fn run(data: &[u8]) -> Vec<u8> {
    let mut input = Input::new(data);
    let setup = input.byte();
    let kind = if setup & 1 == 0 {
        ListenerKind::Sub
    } else {
        ListenerKind::Pub
    };
    let capacity = usize::from((setup >> 2) & 7) + 1;
    let script_len = usize::from(input.byte());
    let script = input.take(script_len);
    let mut stream = input.rest();
    let mut h = Harness::new(kind, setup >> 1, capacity);
    for &op in script {
        if h.closed {
            break;
        }
        let arg = op >> 3;
        match op & 7 {
            0 => {
                let n = 1 + usize::from(arg) * usize::from(arg);
                let (chunk, rest) = stream.split_at(n.min(stream.len()));
                stream = rest;
                h.arrive(chunk);
            }
            1 => h.advance(Duration::from_millis(8 * u64::from(arg).pow(3))),
            2 => h.engine_step(arg),
            3 => h.other_publisher(arg),
            4 => {
                h.write_limit = match arg {
                    0 => Some(0),
                    31 => None,
                    a => Some(16 * usize::from(a) * usize::from(a)),
                };
                h.drive();
            }
            5 => {
                h.peer_eof = true;
                h.drive();
            }
            6 => h.shutdown(),
            _ => {
                h.arrive(stream);
                stream = &[];
            }
        }
    }
    h.arrive(stream);
    h.finish();
    h.transcript()
}

/// What the scripted engine has seen and stored.
#[derive(Default)]
pub(super) struct Engine {
    /// Stored messages, oldest first.
    history: Vec<SharedMessage>,
    /// Last id issued.
    issued: Option<MessageId>,
    /// Channels the connection subscribed at some point.
    known: Vec<Channel>,
    subscribes: usize,
    unsubscribes: usize,
    /// Live subscriptions with capped channels (which the engine may evict).
    capped: usize,
    /// Publications accepted, with their ids.
    pub(super) published: Vec<SharedMessage>,
}

impl Engine {
    fn next_id(&mut self) -> MessageId {
        let counter = self.issued.map_or(1, |id| id.counter() + 1);
        let id = MessageId::new(ID_START, counter);
        self.issued = Some(id);
        id
    }

    /// A replay page of the stored messages after `since` on `channels`.
    fn replay(&self, channels: &[Channel], since: Option<MessageId>, page: usize) -> CoreMsg {
        let on = |m: &SharedMessage| m.receivers.iter().any(|r| channels.contains(r));
        let after: Vec<&SharedMessage> = self
            .history
            .iter()
            .filter(|m| on(m) && since.is_some_and(|s| m.id > s))
            .collect();
        CoreMsg::Replay {
            conn: CONN,
            more: after.len() > page,
            messages: after.into_iter().take(page).cloned().collect(),
            last_id: self.history.iter().rev().find(|m| on(m)).map(|m| m.id),
            issued: self.issued,
        }
    }
}

/// Script argument bits of an engine step.
mod step {
    /// Replay pages of one message (else up to `replay_max`).
    pub(super) const SMALL_PAGES: u8 = 1;
    /// Publications fail with "storage unavailable".
    pub(super) const PUBLISH_FAILS: u8 = 2;
    /// A connection with capped channels is evicted (spec/binary.md §5).
    pub(super) const EVICT: u8 = 4;
    /// Channels without subscribers still count as online.
    pub(super) const ONLINE: u8 = 8;
    /// Answer one command only.
    pub(super) const ONE: u8 = 16;
}

/// A session with everything the reactor gives it.
pub(super) struct Harness<'a> {
    shared: &'static Shared,
    session: Session,
    hub: Hub,
    engine: EngineHandle,
    commands: Receiver<EngineCmd>,
    stats: CoreStats,
    now: Instant,
    /// Reads waiting on the "socket".
    arrived: VecDeque<&'a [u8]>,
    /// The peer has sent everything (end of stream once `arrived` is read).
    pub(super) peer_eof: bool,
    read_eof: bool,
    /// Bytes one write takes; `None`: all.
    pub(super) write_limit: Option<usize>,
    /// Everything written to the peer.
    pub(super) written: Vec<u8>,
    pub(super) closed: bool,
    pub(super) scripted: Engine,
}

/// The session's [`Cx`], from the harness's fields.
macro_rules! cx {
    ($h:expr) => {
        Cx {
            conn: CONN,
            hub: &mut $h.hub,
            engine: &mut $h.engine,
            shared: $h.shared,
            stats: &$h.stats,
        }
    };
}

/// The peer address of a harness's connection (`publish_allow` is not set, so any would do).
const PEER: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

impl<'a> Harness<'a> {
    pub(super) fn new(kind: ListenerKind, variant: u8, capacity: usize) -> Self {
        let shared = shared(variant);
        let (tx, commands) = crossbeam_channel::bounded(capacity);
        let now = Instant::now();
        Self {
            shared,
            session: Session::new(kind, PEER, now, &shared.config),
            hub: Hub::new(),
            engine: EngineHandle::new(tx),
            commands,
            stats: CoreStats::default(),
            now,
            arrived: VecDeque::new(),
            peer_eof: false,
            read_eof: false,
            write_limit: None,
            written: Vec::new(),
            closed: false,
            scripted: Engine::default(),
        }
    }

    /// Bytes arrive from the peer (in reads of at most the reactor's read size).
    pub(super) fn arrive(&mut self, bytes: &'a [u8]) {
        self.arrived.extend(bytes.chunks(DEFAULT_READ_CHUNK));
        self.drive();
    }

    /// One `Core::drive`: read, process and write until nothing moves.
    pub(super) fn drive(&mut self) {
        if self.closed {
            return;
        }
        let now = self.now;
        let mut flow = Flow::Continue;
        for _ in 0..DRIVE_ROUNDS {
            let mut progress = false;
            flow = self.session.resume(now, &mut cx!(self));
            while flow == Flow::Continue && !self.read_eof && self.session.wants_read() {
                match self.arrived.pop_front() {
                    Some(chunk) => {
                        progress = true;
                        flow = self.session.on_input(chunk, now, &mut cx!(self));
                    }
                    None if self.peer_eof => {
                        self.read_eof = true;
                        flow = self.session.on_eof(now, &mut cx!(self));
                    }
                    None => break,
                }
            }
            if flow == Flow::Continue {
                flow = self.session.prepare_write(now, &mut cx!(self));
            }
            if flow == Flow::Continue && self.write_limit != Some(0) {
                let out = self.session.output();
                let n = out.len().min(self.write_limit.unwrap_or(usize::MAX));
                if n > 0 {
                    self.written.extend_from_slice(&out[..n]);
                    self.session.consumed(n);
                    progress = true;
                }
            }
            if flow == Flow::Abort || !progress {
                break;
            }
        }
        if flow == Flow::Abort
            || (self.session.is_closing() && self.session.output().is_empty() && self.read_eof)
        {
            self.close();
        }
    }

    /// The clock moves on; the connection's deadline fires if it has passed.
    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.fire();
    }

    fn fire(&mut self) {
        if self.closed {
            return;
        }
        let now = self.now;
        if self.session.deadline().is_none_or(|d| d > now) {
            return;
        }
        match self.session.on_timeout(now, &mut cx!(self)) {
            Flow::Abort => self.close(),
            Flow::Continue => {
                // Otherwise the reactor would fire the same passed deadline forever.
                if let Some(next) = self.session.deadline() {
                    assert!(
                        next > now,
                        "deadline {next:?} not after the timeout at {now:?}"
                    );
                }
                self.drive();
            }
        }
    }

    pub(super) fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        match self.session.shutdown(self.now, &mut cx!(self)) {
            Flow::Abort => self.close(),
            Flow::Continue => self.drive(),
        }
    }

    /// The reactor drops the connection.
    fn close(&mut self) {
        if !self.closed {
            self.session.release(self.now, &mut cx!(self));
            self.closed = true;
        }
    }

    /// The engine answers the commands waiting (`arg`: the [`step`] bits).
    pub(super) fn engine_step(&mut self, arg: u8) {
        let mut answers = Vec::new();
        loop {
            self.engine.flush();
            let Ok(cmd) = self.commands.try_recv() else {
                break;
            };
            self.command(cmd, arg, &mut answers);
            if arg & step::ONE != 0 {
                break;
            }
        }
        self.engine.flush();
        if arg & step::EVICT != 0 && self.scripted.capped > 0 {
            answers.push(CoreMsg::Evict { conn: CONN });
        }
        for answer in answers {
            match answer {
                CoreMsg::Deliver(msg) => self.deliver(&msg),
                answer => {
                    if self.closed {
                        continue;
                    }
                    match self.session.on_engine(answer, self.now, &mut cx!(self)) {
                        Flow::Abort => self.close(),
                        Flow::Continue => self.drive(),
                    }
                }
            }
        }
    }

    fn command(&mut self, cmd: EngineCmd, arg: u8, answers: &mut Vec<CoreMsg>) {
        let page = if arg & step::SMALL_PAGES != 0 {
            1
        } else {
            self.shared.config.replay_max
        };
        match cmd {
            EngineCmd::Subscribe {
                conn,
                channels,
                capped,
                since,
            } => {
                assert_eq!(conn, CONN);
                self.scripted.subscribes += 1;
                for c in channels.iter() {
                    if !self.scripted.known.contains(c) {
                        self.scripted.known.push(*c);
                    }
                }
                answers.push(self.scripted.replay(&channels, since, page));
                if !capped.is_empty() {
                    self.scripted.capped += 1;
                }
            }
            EngineCmd::ReplayMore {
                conn,
                channels,
                since,
            } => {
                assert_eq!(conn, CONN);
                answers.push(self.scripted.replay(&channels, Some(since), page));
            }
            EngineCmd::Unsubscribe { conn, capped, .. } => {
                assert_eq!(conn, CONN);
                self.scripted.unsubscribes += 1;
                if !capped.is_empty() {
                    self.scripted.capped -= 1;
                }
            }
            EngineCmd::ChannelInfo { from, channels } => {
                let limit = self.shared.config.max_channels_per_request;
                assert!(!channels.is_empty() && channels.len() <= limit);
                let infos = channels
                    .iter()
                    .map(|&channel| {
                        let subscribers = self.hub.count(&channel) as u32;
                        ChannelState {
                            channel,
                            subscribers,
                            online: subscribers > 0 || arg & step::ONLINE != 0,
                        }
                    })
                    .collect();
                answers.push(CoreMsg::ChannelInfo { conn: from, infos });
            }
            EngineCmd::Publish { from, messages } => {
                assert!(!messages.is_empty(), "an empty publish reached the engine");
                let config = &self.shared.config;
                assert!(messages.len() <= config.max_messages_per_request);
                let result = if arg & step::PUBLISH_FAILS != 0 {
                    Err(PublishError::Unavailable)
                } else {
                    let mut last = None;
                    for p in messages {
                        let limit = config.max_channels_per_request;
                        assert!(!p.receivers.is_empty() && p.receivers.len() <= limit);
                        assert!(
                            std::str::from_utf8(&p.body).is_ok(),
                            "a body that is not UTF-8 was accepted"
                        );
                        let id = self.scripted.next_id();
                        let receivers = p.receivers.into_boxed_slice();
                        let msg = Arc::new(Message::new(
                            id, p.body, p.expiry, p.sender, receivers, NOW_MS,
                        ));
                        check::message(&msg);
                        if msg.expiry > 0 {
                            self.scripted.history.push(msg.clone());
                        }
                        self.scripted.published.push(msg.clone());
                        answers.push(CoreMsg::Deliver(msg));
                        last = Some(id);
                    }
                    last.ok_or(PublishError::Unavailable)
                };
                answers.push(CoreMsg::Published { conn: from, result });
            }
            other => panic!("a session sent {other:?}"),
        }
    }

    /// A message from another publisher on one of the channels the connection subscribed.
    fn other_publisher(&mut self, arg: u8) {
        let known = &self.scripted.known;
        let channel = match known.len() {
            0 => Channel::private(ChannelId([arg; 16])),
            n => known[usize::from(arg >> 2) % n],
        };
        let id = self.scripted.next_id();
        let body = match arg & 3 {
            2 => Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(LARGE_BODY))),
            i => Bytes::from_static(OTHER_BODIES[usize::from(i)]),
        };
        let expiry = if arg & 16 != 0 { 60 } else { 0 };
        let receivers = vec![channel].into_boxed_slice();
        let msg = Arc::new(Message::new(
            id,
            body,
            expiry,
            Sender::Backend,
            receivers,
            NOW_MS,
        ));
        if expiry > 0 {
            self.scripted.history.push(msg.clone());
        }
        self.deliver(&msg);
    }

    /// A delivery, as the reactor's mailbox hands it out: once per receiver the connection
    /// listens on.
    fn deliver(&mut self, msg: &SharedMessage) {
        let limit = self.shared.config.out_queue_bytes;
        for channel in msg.receivers.iter() {
            let listening = self.hub.subscribers(channel).any(|slot| slot == CONN.slot);
            if self.closed || !listening {
                continue;
            }
            match self.session.on_deliver(msg, limit) {
                Flow::Abort => self.close(),
                Flow::Continue => self.drive(),
            }
        }
    }

    /// Everything written and still queued.
    pub(super) fn transcript(&self) -> Vec<u8> {
        let mut all = self.written.clone();
        all.extend_from_slice(self.session.output());
        all
    }

    /// Ends the run: writes are unblocked, the engine answers everything, deadlines pass until
    /// the session closes; then no subscription may be left and the output must be well framed.
    pub(super) fn finish(&mut self) {
        self.write_limit = None;
        self.drive();
        for _ in 0..4 {
            self.engine_step(0);
            if self.closed {
                break;
            }
            if let Some(deadline) = self.session.deadline() {
                self.now = self.now.max(deadline);
                self.fire();
            }
        }
        self.close();
        self.engine_step(0);
        assert_eq!(self.hub.channels(), 0, "subscriptions left in the hub");
        assert_eq!(
            self.stats.pollings.get(),
            0,
            "long-poll gauge not back to 0"
        );
        assert_eq!(
            self.stats.websockets.get(),
            0,
            "WebSocket gauge not back to 0"
        );
        assert_eq!(
            self.scripted.subscribes, self.scripted.unsubscribes,
            "every Subscribe needs its Unsubscribe"
        );
        check::transcript(&self.transcript());
    }
}
