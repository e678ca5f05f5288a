//! Many subscribers spread over several cores (spec/README.md, spec/websocket.md §2,
//! spec/publishing.md §6).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// spec/websocket.md §2, spec/publishing.md §6: with four cores, 200 WebSocket subscribers land
/// on several cores and each gets every message of its channel exactly once, in order.
#[test]
fn every_subscriber_gets_every_message_once_in_order() {
    let srv = start(|c| c.threads = 4);
    let chans = [channel(), channel()];
    let mut subs: Vec<(usize, Ws)> = (0..200)
        .map(|i| (i % 2, Ws::connect(srv.sub, &chans[i % 2], None)))
        .collect();
    wait_until("200 subscribers", WAIT, || {
        srv.subscribers(&[&chans[0], &chans[1]]) == [100, 100]
    });
    // The core counts its gauge just after registering with the engine.
    wait_until("websockets gauge", WAIT, || {
        srv.stats()["websockets"] == 200
    });
    let stats = srv.stats();
    let cores = stats["cores"].as_array().expect("cores");
    assert_eq!(cores.len(), 4);
    let busy = cores
        .iter()
        .filter(|c| c["websockets"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(busy > 1, "all WebSockets on one core: {cores:?}");
    assert_eq!(stats["websockets"], 200);

    // 100 messages, alternating channels, on one keep-alive publisher connection.
    let mut expected: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut publisher = Conn::connect(srv.publ);
    for n in 0..100 {
        let which = n % 2;
        let path = format!("/bitrix/pub/?CHANNEL_ID={}", chans[which]);
        publisher.send(&format_request("POST", &path, &[], body(n).as_bytes()));
        let r = publisher.response();
        assert_eq!(r.status, 200);
        expected[which].push(mid_of(&r));
    }

    for (i, (which, ws)) in subs.iter_mut().enumerate() {
        let got = ws.messages(50, WAIT);
        let mids: Vec<&str> = got.iter().map(|m| m.mid.as_str()).collect();
        assert_eq!(mids, expected[*which], "subscriber {i}");
        for (k, m) in got.iter().enumerate() {
            assert_eq!(m.text()["params"]["n"], 2 * k + *which, "subscriber {i}");
        }
    }
    for (_, ws) in subs.iter_mut().take(10) {
        ws.expect_no_message(Duration::from_millis(50));
    }
    wait_until("delivered count", WAIT, || {
        srv.core_sum("delivered") == 200 * 50
    });
}

/// spec/README.md, spec/limits.md: 1,000 concurrent WebSocket subscribers on 10 channels all
/// receive their channel's message.
#[test]
fn thousand_subscribers_all_receive() {
    let started = Instant::now();
    let srv = start(|c| c.threads = 4);
    let chans: Vec<String> = (0..10).map(|_| channel()).collect();
    let mut subs: Vec<(usize, Ws)> = (0..1000)
        .map(|i| (i % 10, Ws::connect(srv.sub, &chans[i % 10], None)))
        .collect();
    let refs: Vec<&str> = chans.iter().map(String::as_str).collect();
    wait_until("1000 subscribers", Duration::from_secs(10), || {
        srv.subscribers(&refs) == [100; 10]
    });
    let mids: Vec<String> = chans
        .iter()
        .enumerate()
        .map(|(n, ch)| srv.publish(ch, &body(n), None))
        .collect();
    for (i, (which, ws)) in subs.iter_mut().enumerate() {
        let got = ws.messages(1, WAIT);
        assert_eq!(got[0].mid, mids[*which], "subscriber {i}");
    }
    drop(subs);
    wait_until("subscribers gone", WAIT, || srv.stats()["websockets"] == 0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

/// spec/longpoll.md §3: 1,000 concurrent long-polls on 10 channels all receive their message.
#[test]
fn thousand_long_polls_all_receive() {
    let srv = start(|c| c.threads = 4);
    let chans: Vec<String> = (0..10).map(|_| channel()).collect();
    let mut polls: Vec<(usize, Conn)> = (0..1000)
        .map(|i| (i % 10, start_poll(srv.sub, &chans[i % 10], None)))
        .collect();
    let refs: Vec<&str> = chans.iter().map(String::as_str).collect();
    wait_until("1000 polls", Duration::from_secs(10), || {
        srv.subscribers(&refs) == [100; 10]
    });
    wait_until("pollings gauge", WAIT, || srv.stats()["pollings"] == 1000);
    let mids: Vec<String> = chans
        .iter()
        .enumerate()
        .map(|(n, ch)| srv.publish(ch, &body(n), None))
        .collect();
    for (i, (which, c)) in polls.iter_mut().enumerate() {
        let r = c.response();
        assert_eq!(r.status, 200, "poll {i}");
        let got = parse_messages(&r.body);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].mid, mids[*which], "poll {i}");
    }
    wait_until("polls ended", WAIT, || srv.stats()["pollings"] == 0);
}
