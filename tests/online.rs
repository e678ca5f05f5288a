//! Online status (spec/binary.md §6, spec/publishing.md §3): a channel is online while it has a
//! connection and for `online_ttl + online_delta` after its last connection left, both in
//! `channelStats` and in the subscriber counts of `GET /pub/`.

mod common;

use std::time::{Duration, Instant};

use common::*;

const ONLINE_TTL: Duration = Duration::from_millis(300);
const ONLINE_DELTA: Duration = Duration::from_millis(100);
/// `online_ttl + online_delta`.
const WINDOW: Duration = Duration::from_millis(400);
/// Slack for the moment the engine marks the channel against the moment the client saw the end.
const SLACK: Duration = Duration::from_millis(50);
const HOLD: Duration = Duration::from_millis(100);

/// A server with the 400 ms online window (the shared test configuration has 2 ms).
fn server() -> TestServer {
    start(|c| {
        c.security_key = Some(KEY.into());
        c.online_ttl = ONLINE_TTL;
        c.online_delta = ONLINE_DELTA;
        c.longpoll_hold = HOLD;
    })
}

/// Both views of one private channel: `channelStats.isOnline` and the `GET /pub/` count.
fn views(srv: &TestServer, private: &str) -> (bool, u64) {
    let online = pb_online(srv.publ, &[(private, true)])[0];
    let count = srv.subscribers(&[private])[0];
    (online, count)
}

/// Waits until `private` is offline in both views; returns when that was first seen.
fn wait_offline(srv: &TestServer, private: &str) -> Instant {
    let mut seen = Instant::now();
    wait_until("channel offline", WAIT, || {
        seen = Instant::now();
        views(srv, private) == (false, 0)
    });
    seen
}

/// spec/binary.md §6, spec/publishing.md §3: after its only long-poll ended, a channel is still
/// online (`isOnline` true, `GET /pub/` reports 1 subscriber) until `online_ttl + online_delta`
/// have passed, then offline (false, 0).
#[test]
fn ended_long_poll_stays_online_for_the_window() {
    let srv = server();
    let ch = channel();
    let token = sign(KEY, &ch);
    assert_eq!(views(&srv, &ch), (false, 0), "never seen: offline");
    let r = poll(srv.sub, &token, None);
    assert_eq!(r.status, 304);
    let ended = Instant::now();
    let (online, count) = views(&srv, &ch);
    let asked_within = ended.elapsed();
    assert!(
        asked_within < WINDOW - SLACK,
        "the check itself took {asked_within:?}"
    );
    assert!(online, "online within the window");
    assert_eq!(count, 1, "a recently-online channel reports 1 subscriber");

    let offline_at = wait_offline(&srv, &ch);
    let after = offline_at.duration_since(ended);
    assert!(after + SLACK >= WINDOW, "offline after {after:?}");
}

/// spec/binary.md §6: a channel with a connected WebSocket is online however long ago it
/// connected; `GET /pub/` reports the real count; the public id of a `priv:pub` token is online
/// too. After the last WebSocket closes, both stay online for the window, then go offline.
#[test]
fn connected_ws_is_online_then_window_after_close() {
    let srv = server();
    let (private, public) = (channel(), channel());
    let token = sign(KEY, &format!("{private}:{public}"));
    let mut a = Ws::connect(srv.sub, &token, None);
    let mut b = Ws::connect(srv.sub, &token, None);
    srv.wait_subscribers(&private, 2);
    let both = [(private.as_str(), true), (public.as_str(), false)];
    assert_eq!(pb_online(srv.publ, &both), [true, true]);
    std::thread::sleep(WINDOW + SLACK);
    assert_eq!(pb_online(srv.publ, &both), [true, true], "connected");
    assert_eq!(srv.subscribers(&[&private]), [2]);

    for ws in [&mut a, &mut b] {
        ws.send_frame(op::CLOSE, &1000u16.to_be_bytes(), true);
        ws.expect_close(WAIT);
        assert!(ws.conn.closed_within(WAIT));
    }
    // Connections gone: the count is the recently-online 1 until the window ends.
    srv.wait_subscribers(&private, 1);
    let left = Instant::now();
    assert_eq!(pb_online(srv.publ, &both), [true, true]);
    assert!(left.elapsed() < WINDOW - SLACK);

    wait_offline(&srv, &private);
    assert_eq!(pb_online(srv.publ, &both), [false, false]);
}

/// spec/binary.md §6: a long-poll client that asks again within the window never looks offline;
/// the window counts from the end of its last request.
#[test]
fn polling_client_stays_online_between_requests() {
    let srv = server();
    let ch = channel();
    let token = sign(KEY, &ch);
    for _ in 0..3 {
        assert_eq!(poll(srv.sub, &token, None).status, 304);
        let ended = Instant::now();
        let (online, count) = views(&srv, &ch);
        if ended.elapsed() < WINDOW - SLACK {
            assert!(online && count == 1, "between requests: {online} {count}");
        }
    }
    let ended = Instant::now();
    let offline_at = wait_offline(&srv, &ch);
    assert!(offline_at.duration_since(ended) + SLACK >= WINDOW);
}
