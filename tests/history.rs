//! Stored history and replay over loopback (spec/history.md, spec/channels.md).

mod common;

use std::time::Duration;

use common::*;

const HOLD: Duration = Duration::from_millis(300);

fn mids_of(r: &Response) -> Vec<String> {
    assert_eq!(r.status, 200, "status {} {}", r.status, r.text());
    parse_messages(&r.body).into_iter().map(|m| m.mid).collect()
}

/// spec/history.md §2: each channel keeps its newest `channel_history` messages.
#[test]
fn channel_history_keeps_newest() {
    let srv = start(|c| {
        c.channel_history = 3;
        c.longpoll_hold = HOLD;
    });
    let ch = channel();
    let mids: Vec<String> = (0..5)
        .map(|n| srv.publish(&ch, &body(n), Some(60)))
        .collect();
    assert_eq!(mids_of(&poll(srv.sub, &ch, Some(MID_ZERO))), mids[2..]);
    // The engine refreshes its gauges after each batch of commands: eventually 3.
    wait_until("3 stored", WAIT, || srv.stats()["stored_messages"] == 3);
}

/// spec/history.md §3: a long-poll replays one page of `replay_max` messages; the client continues
/// from the last one it got.
#[test]
fn long_poll_replay_pages() {
    let srv = start(|c| {
        c.replay_max = 2;
        c.longpoll_hold = HOLD;
    });
    let ch = channel();
    let mids: Vec<String> = (0..5)
        .map(|n| srv.publish(&ch, &body(n), Some(60)))
        .collect();
    let mut from = MID_ZERO.to_owned();
    let mut got = Vec::new();
    for _ in 0..3 {
        let page = mids_of(&poll(srv.sub, &ch, Some(&from)));
        assert!(!page.is_empty() && page.len() <= 2, "{page:?}");
        from = page.last().cloned().unwrap_or_default();
        got.extend(page);
    }
    assert_eq!(got, mids);
    assert_eq!(poll(srv.sub, &ch, Some(&from)).status, 304);
}

/// spec/history.md §3, spec/websocket.md §2: a WebSocket replays every page, then goes live.
#[test]
fn websocket_replays_all_pages_then_live() {
    let srv = start(|c| c.replay_max = 2);
    let ch = channel();
    let mut mids: Vec<String> = (0..7)
        .map(|n| srv.publish(&ch, &body(n), Some(60)))
        .collect();
    let mut ws = Ws::connect(srv.sub, &ch, Some(MID_ZERO));
    mids.push(srv.publish(&ch, &body(7), None));
    let got: Vec<String> = ws.messages(8, WAIT).into_iter().map(|m| m.mid).collect();
    assert_eq!(got, mids);
    ws.expect_no_message(Duration::from_millis(200));
}

/// spec/history.md §2: `Message-Expiry` is capped by `message_ttl`.
#[test]
fn expiry_capped_by_message_ttl() {
    let srv = start(|c| {
        c.message_ttl = 1;
        c.longpoll_hold = HOLD;
    });
    let ch = channel();
    srv.publish(&ch, &body(0), Some(3600));
    assert_eq!(mids_of(&poll(srv.sub, &ch, Some(MID_ZERO))).len(), 1);
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(poll(srv.sub, &ch, Some(MID_ZERO)).status, 304);
    wait_until("expired message purged", WAIT, || {
        srv.stats()["stored_messages"] == 0
    });
}

/// spec/history.md §3: a replay over several channels merges them in publication order, with a
/// message stored on two of them once.
#[test]
fn multi_channel_replay_merges_in_order() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let (a, b, other) = (channel(), channel(), channel());
    let both = format!("{a}/{b}");
    let mut expected = Vec::new();
    for n in 0..9 {
        let target = match n % 3 {
            0 => a.clone(),
            1 => b.clone(),
            _ => both.clone(),
        };
        expected.push(srv.publish(&target, &body(n), Some(60)));
        srv.publish(&other, &body(100 + n), Some(60));
    }
    assert_eq!(mids_of(&poll(srv.sub, &both, Some(MID_ZERO))), expected);
    let mut ws = Ws::connect(srv.sub, &both, Some(MID_ZERO));
    let got: Vec<String> = ws.messages(9, WAIT).into_iter().map(|m| m.mid).collect();
    assert_eq!(got, expected);
    ws.expect_no_message(Duration::from_millis(200));
}

/// spec/history.md §2, spec/limits.md: total stored bytes stay under `history_max_bytes`; the
/// oldest messages go first.
#[test]
fn history_bytes_bounded_oldest_evicted() {
    let srv = start(|c| {
        c.max_payload = 1024;
        c.history_max_bytes = 4096;
        c.longpoll_hold = HOLD;
    });
    let ch = channel();
    let pad = "x".repeat(400);
    let mids: Vec<String> = (0..20)
        .map(|n| srv.publish(&ch, &format!(r#"{{"n":{n},"p":"{pad}"}}"#), Some(60)))
        .collect();
    let got = mids_of(&poll(srv.sub, &ch, Some(MID_ZERO)));
    let stored = got.len();
    assert!((1..20).contains(&stored), "{stored} stored");
    assert_eq!(got, mids[20 - stored..], "the newest survive");
    // The gauges are refreshed after each engine batch: eventually they agree.
    wait_until("gauges agree", WAIT, || {
        let stats = srv.stats();
        stats["stored_messages"] == stored && stats["stored_bytes"].as_u64().unwrap() <= 4096
    });
}

/// spec/history.md §3: a `mid` that is not 26 digits is ignored (no replay); the 304 then names
/// the newest stored id.
#[test]
fn malformed_mid_means_no_replay() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let newest = srv.publish(&ch, &body(0), Some(60));
    for mid in ["abc", "123", "0000000000000000000000000x"] {
        let r = poll(srv.sub, &ch, Some(mid));
        assert_eq!(r.status, 304, "mid {mid}: {}", r.text());
        assert_eq!(r.header("Last-Message-Id"), Some(newest.as_str()));
    }
}

/// spec/channels.md §2: a signed `private:public` token subscribes to the private channel (and
/// its public id); without a key such tokens are refused.
#[test]
fn private_public_tokens() {
    let srv = start(|c| c.security_key = Some(KEY.into()));
    let (private, public) = (channel(), channel());
    let token = sign(KEY, &format!("{private}:{public}"));
    let mut ws = Ws::connect(srv.sub, &token, None);
    srv.wait_subscribers(&private, 1);
    let mid = srv.publish(&private, &body(1), None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
    // The back end may name the channel by the whole token: it means the private channel.
    let mid = srv.publish(&token, &body(2), None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);

    let open = start(|c| c.longpoll_hold = HOLD);
    let r = poll(open.sub, &format!("{private}:{public}"), None);
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "4010: Wrong Channel Id.");
}

/// spec/history.md §3: a `mid` from an earlier id source (smaller start second, e.g. before a
/// restart) replays every stored message.
#[test]
fn mid_from_earlier_source_replays_everything() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let mids: Vec<String> = (0..3)
        .map(|n| srv.publish(&ch, &body(n), Some(60)))
        .collect();
    let earlier = format!(
        "{:010}{}",
        mids[0][..10].parse::<u64>().unwrap() - 1,
        "9".repeat(16)
    );
    assert_eq!(mids_of(&poll(srv.sub, &ch, Some(&earlier))), mids);
}

/// spec/longpoll.md §2, spec/history.md §3: `mid` only chooses what is replayed; a live message is
/// delivered whatever the `mid` (a client whose `mid` came from a clock that stepped back, or
/// from another server, must not go deaf).
#[test]
fn mid_in_the_future_does_not_filter_live_messages() {
    let srv = start(|c| c.longpoll_hold = Duration::from_millis(500));
    let ch = channel();
    let future = "99999999990000000000000000";
    let mut held = start_poll(srv.sub, &ch, Some(future));
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    let r = held.response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mids_of(&r), vec![mid]);
}

/// spec/history.md §2: an expired message is never reported as the newest id, even before the
/// engine purges it.
#[test]
fn expired_message_not_in_last_message_id() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let old = srv.publish(&ch, &body(0), Some(60));
    srv.publish(&ch, &body(1), Some(1));
    std::thread::sleep(Duration::from_millis(1100));
    let r = poll(srv.sub, &ch, None);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Last-Message-Id"), Some(old.as_str()));
}

/// spec/history.md §2: a message whose cost alone exceeds `history_max_bytes` is removed at once,
/// but still delivered live.
#[test]
fn message_larger_than_history_is_not_kept() {
    let srv = start(|c| {
        c.max_payload = 1024;
        c.history_max_bytes = 1024;
        c.longpoll_hold = HOLD;
    });
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let big = format!(r#"{{"p":"{}"}}"#, "x".repeat(900));
    let mid = srv.publish(&ch, &big, Some(60));
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
    assert_eq!(poll(srv.sub, &ch, Some(MID_ZERO)).status, 304);
}

/// spec/publishing.md §1: `Message-Expiry` values: trimmed, `+` allowed; anything else is 0.
#[test]
fn message_expiry_values() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    for (value, stored) in [
        ("60", true),
        (" \t60 ", true),
        ("+5", true),
        ("0", false),
        ("-1", false),
        ("1.5", false),
        ("4294967296", false),
        ("sixty", false),
        ("", false),
    ] {
        let ch = channel();
        let r = request(
            srv.publ,
            "POST",
            &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
            &[("Message-Expiry", value)],
            body(1).as_bytes(),
        );
        assert_eq!(r.status, 200, "{value:?}");
        let status = poll(srv.sub, &ch, Some(MID_ZERO)).status;
        assert_eq!(status == 200, stored, "Message-Expiry {value:?}");
    }
}

/// spec/limits.md §2: `replay_max = 0` is refused by the configuration check (a replay could
/// never advance).
#[test]
fn replay_max_zero_refused() {
    let mut config = test_config();
    config.replay_max = 0;
    assert!(config.validate().is_err());
}

/// spec/websocket.md §2: on a WebSocket too, `mid` does not filter live messages.
#[test]
fn websocket_mid_in_the_future_does_not_filter_live_messages() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, Some("99999999990000000000000000"));
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
}

/// spec/history.md §5: with a state file, stored messages survive a restart (still within their
/// expiry, with their ids), and new ids continue above the old ones.
#[test]
fn state_file_keeps_messages_across_restart() {
    let path = std::env::temp_dir().join(format!("pushpull-state-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let ch = channel();
    let state = Some(path.clone());
    let srv = start(|c| c.state_file = state.clone());
    let kept = srv.publish(&ch, &body(1), Some(60));
    srv.publish(&ch, &body(2), None);
    drop(srv);
    let srv = start(|c| c.state_file = state.clone());
    assert_eq!(
        mids_of(&poll(srv.sub, &ch, Some(MID_ZERO))),
        vec![kept.clone()]
    );
    let next = srv.publish(&ch, &body(3), Some(60));
    assert!(next > kept, "{next} after {kept}");
    drop(srv);
    let _ = std::fs::remove_file(&path);
}
