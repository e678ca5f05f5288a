//! Criterion: fan-out inside one core for 10,000 WebSocket subscribers, without sockets.
//!
//! The sessions are real (`conn::Session` after an upgrade request and an empty replay answer,
//! as the reactor drives them); each iteration does what the reactor does for published messages
//! (`reactor::Core::drain_mailbox` and `drive`): look the channel up in the core's `Hub`, offer
//! the message to every subscriber session, then prepare each one's output (the WebSocket frame)
//! and take it as written.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pushpull::config::{Config, ListenerKind, SignatureAlgo};
use pushpull::conn::{Cx, Flow, Session, Shared};
use pushpull::engine::{ConnRef, CoreMsg, EngineCmd, EngineHandle};
use pushpull::hub::Hub;
use pushpull::message::{Channel, ChannelId, Message, MessageId, Sender, SharedMessage};
use pushpull::metrics::{CoreStats, EngineStats};
use pushpull::proto::channel::Signer;

/// Subscribers on the core.
const SUBSCRIBERS: usize = 10_000;

/// Wall clock of the messages, Unix milliseconds.
const NOW_MS: u64 = 1_795_830_315_123;

/// A 200-byte message body.
const BODY: &str = r#"{"module_id":"lg","command":"m","params":{"seq":1,"ch":0,"ts":1795830315123456,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#;

struct Core {
    sessions: Vec<Session>,
    hub: Hub,
    engine: EngineHandle,
    commands: crossbeam_channel::Receiver<EngineCmd>,
    shared: Shared,
    stats: CoreStats,
    dirty: Vec<usize>,
}

/// A new message (ids increase: a session skips ids it has already sent) for channel `ch`.
fn message(next_id: &Cell<u64>, ch: usize) -> SharedMessage {
    let id = MessageId::new(1_795_830_315, next_id.get());
    next_id.set(next_id.get() + 1);
    let receivers: Box<[Channel]> = vec![channel(ch)].into_boxed_slice();
    Arc::new(Message::new(
        id,
        Bytes::from_static(BODY.as_bytes()),
        0,
        Sender::Backend,
        receivers,
        NOW_MS,
    ))
}

fn conn(slot: usize) -> ConnRef {
    ConnRef {
        core: 0,
        slot: slot as u32,
        generation: 0,
    }
}

/// First channel id of the benches (as a number; ids are 32 hex digits).
const CHANNEL_BASE: u64 = 0x00C0_FFEE_0000;

fn channel(i: usize) -> Channel {
    let hex = format!("{:032x}", CHANNEL_BASE + i as u64);
    Channel::private(ChannelId::from_hex(hex.as_bytes()).expect("32 hex digits"))
}

macro_rules! cx {
    ($core:expr, $slot:expr) => {
        Cx {
            conn: conn($slot),
            hub: &mut $core.hub,
            engine: &mut $core.engine,
            shared: &$core.shared,
            stats: &$core.stats,
        }
    };
}

impl Core {
    /// `SUBSCRIBERS` live WebSocket sessions, subscriber `j` on channel `j % channels`.
    fn new(channels: usize, binary: bool) -> Self {
        let (tx, commands) = crossbeam_channel::unbounded();
        let mut core = Core {
            sessions: Vec::with_capacity(SUBSCRIBERS),
            hub: Hub::new(),
            engine: EngineHandle::new(tx),
            commands,
            shared: Shared {
                config: Config::default(),
                signer: Signer::new(None, SignatureAlgo::Sha1),
                core_stats: Vec::new(),
                engine_stats: Arc::new(EngineStats::default()),
                started: 0,
            },
            stats: CoreStats::default(),
            dirty: Vec::with_capacity(SUBSCRIBERS),
        };
        let now = Instant::now();
        let mode = if binary { "&binaryMode=true" } else { "" };
        for slot in 0..SUBSCRIBERS {
            let mut s = Session::new(
                ListenerKind::Sub,
                std::net::Ipv4Addr::LOCALHOST.into(),
                now,
                &core.shared.config,
            );
            let id = format!("{:032x}", CHANNEL_BASE + (slot % channels) as u64);
            let req = format!(
                "GET /bitrix/subws/?CHANNEL_ID={id}{mode} HTTP/1.1\r\nHost: bench\r\n\
                 Upgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            let mut cx = cx!(core, slot);
            assert_eq!(s.on_input(req.as_bytes(), now, &mut cx), Flow::Continue);
            let replay = CoreMsg::Replay {
                conn: conn(slot),
                messages: Vec::new(),
                more: false,
                last_id: None,
                issued: None,
            };
            assert_eq!(s.on_engine(replay, now, &mut cx), Flow::Continue);
            assert_eq!(s.prepare_write(now, &mut cx), Flow::Continue);
            assert!(s.output().starts_with(b"HTTP/1.1 101 "), "upgrade answered");
            let n = s.output().len();
            s.consumed(n);
            core.sessions.push(s);
        }
        // The engine's side of the subscriptions is not part of the fan-out.
        while core.commands.try_recv().is_ok() {}
        assert_eq!(core.hub.channels(), channels);
        core
    }

    /// Delivers `messages` as the reactor does; returns the bytes written.
    fn fan_out(&mut self, messages: &[SharedMessage]) -> usize {
        let now = Instant::now();
        let limit = self.shared.config.out_queue_bytes;
        for msg in messages {
            for ch in msg.receivers.iter() {
                for slot in self.hub.subscribers(ch) {
                    let slot = slot as usize;
                    if self.sessions[slot].on_deliver(msg, limit) == Flow::Continue {
                        self.dirty.push(slot);
                    }
                }
            }
        }
        let mut written = 0;
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let s = &mut self.sessions[slot];
            let mut cx = cx!(self, slot);
            if s.prepare_write(now, &mut cx) == Flow::Continue {
                let n = s.output().len();
                written += n;
                s.consumed(n);
            }
        }
        dirty.clear();
        self.dirty = dirty;
        written
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_10k");
    g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    g.sample_size(30);
    for (name, channels, binary) in [
        ("one_channel_text", 1, false),
        ("one_channel_binary", 1, true),
        ("100_channels_text", 100, false),
    ] {
        let mut core = Core::new(channels, binary);
        let next_id = Cell::new(1);
        // One message per channel: every subscriber gets exactly one delivery per iteration.
        let probe: Vec<SharedMessage> = (0..channels).map(|ch| message(&next_id, ch)).collect();
        assert!(core.fan_out(&probe) >= SUBSCRIBERS * BODY.len());
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    (0..channels)
                        .map(|ch| message(&next_id, ch))
                        .collect::<Vec<_>>()
                },
                |msgs| core.fan_out(&msgs),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
