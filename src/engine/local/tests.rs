//! Unit tests of the parent module: the inline engine's pump (spec/README.md §4).
use bytes::Bytes;

use super::*;
use crate::message::{ChannelId, Sender};
use crate::proto::request::Label;

fn ch(n: u8) -> Channel {
    Channel::private(ChannelId([n; 16]))
}

fn conn(slot: u32) -> ConnRef {
    ConnRef {
        core: 0,
        slot,
        generation: 1,
    }
}

fn publication(channel: Channel, expiry: u32) -> Publication {
    Publication {
        receivers: vec![channel],
        body: Bytes::from_static(br#"{"module_id":"t","command":"c","params":{}}"#),
        expiry,
        sender: Sender::Backend,
        label: Label::new("t"),
    }
}

fn settings() -> LocalSettings {
    LocalSettings {
        message_ttl: 86_400,
        replay_max: 1000,
        replay_max_bytes: 1 << 20,
        limits: StoreLimits {
            channel_history: 1000,
            max_bytes: 1 << 26,
        },
        online_window: Duration::from_millis(1),
        max_conn_per_channel: 100,
        stats_interval: Duration::from_secs(3600),
    }
}

fn inline(state_file: Option<PathBuf>) -> (crossbeam_channel::Sender<EngineCmd>, LocalEngine) {
    let (tx, rx) = crossbeam_channel::bounded(super::super::DEFAULT_ENGINE_QUEUE);
    let stats = Arc::new(EngineStats::default());
    let engine = LocalEngine::inline(rx, settings(), stats, vec![Arc::default()], state_file);
    (tx, engine)
}

#[test]
fn pump_answers_in_the_outbox_in_command_order() {
    let (tx, mut engine) = inline(None);
    let (sub, publ, a) = (conn(1), conn(2), ch(1));
    tx.send(EngineCmd::Subscribe {
        conn: sub,
        channels: Arc::from([a]),
        capped: Arc::from([]),
        since: None,
    })
    .unwrap();
    tx.send(EngineCmd::Publish {
        from: publ,
        messages: vec![publication(a, 60)],
    })
    .unwrap();
    assert!(engine.has_work());
    assert_eq!(engine.pump(Instant::now()), Pump::Idle);
    assert!(!engine.has_work());
    let out: Vec<CoreMsg> = engine.outbox().drain(..).collect();
    assert!(
        matches!(&out[..], [
            CoreMsg::Replay { conn: r, messages, .. },
            CoreMsg::Deliver(m),
            CoreMsg::Published { conn: p, result: Ok(id) },
        ] if *r == sub && messages.is_empty() && *p == publ && m.id == *id),
        "{out:?}"
    );
    // Nothing queued: a pump changes nothing.
    assert_eq!(engine.pump(Instant::now()), Pump::Idle);
    assert!(engine.outbox().is_empty());
}

#[test]
fn pump_stops_at_the_outbox_budget_and_continues() {
    let (tx, mut engine) = inline(None);
    let a = ch(2);
    tx.send(EngineCmd::Subscribe {
        conn: conn(1),
        channels: Arc::from([a]),
        capped: Arc::from([]),
        since: None,
    })
    .unwrap();
    let publishes = DEFAULT_OUTBOX_BUDGET * 2;
    for i in 0..publishes {
        tx.send(EngineCmd::Publish {
            from: conn(2 + i as u32),
            messages: vec![publication(a, 0)],
        })
        .unwrap();
    }
    let mut taken = 0;
    let mut pumps = 0;
    loop {
        let pumped = engine.pump(Instant::now());
        pumps += 1;
        let n = engine.outbox().len();
        // A pump stops once the budget is reached; a publish adds two messages.
        assert!(n <= DEFAULT_OUTBOX_BUDGET + 1, "pump {pumps}: {n} messages");
        taken += n;
        engine.outbox().clear();
        if pumped == Pump::Idle {
            break;
        }
        assert_eq!(pumped, Pump::More);
    }
    assert!(pumps >= 4, "{pumps} pumps");
    // The replay, then a delivery and an answer per publish.
    assert_eq!(taken, 1 + 2 * publishes);
}

#[test]
fn shutdown_and_finish_save_the_state_file() {
    let dir = std::env::temp_dir().join(format!("pushpull-inline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state");
    let _ = std::fs::remove_file(&path);

    // Shutdown through the queue: the pump saves and stops.
    let (tx, mut engine) = inline(Some(path.clone()));
    tx.send(EngineCmd::Publish {
        from: conn(1),
        messages: vec![publication(ch(3), 600)],
    })
    .unwrap();
    tx.send(EngineCmd::Shutdown).unwrap();
    assert_eq!(engine.pump(Instant::now()), Pump::Stopped);
    assert_eq!(engine.pump(Instant::now()), Pump::Stopped);
    assert!(!engine.has_work());
    assert!(path.exists(), "state file written at shutdown");
    let restored = snapshot::load(&path, unix_ms()).unwrap();
    assert_eq!(restored.messages.len(), 1);
    std::fs::remove_file(&path).unwrap();

    // The core's loop ended first: finish handles what is queued and saves.
    let (tx, engine) = inline(Some(path.clone()));
    for _ in 0..3 {
        tx.send(EngineCmd::Publish {
            from: conn(1),
            messages: vec![publication(ch(4), 600)],
        })
        .unwrap();
    }
    engine.finish();
    let restored = snapshot::load(&path, unix_ms()).unwrap();
    assert_eq!(restored.messages.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
