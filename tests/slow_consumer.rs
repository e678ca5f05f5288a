//! A subscriber that stops reading is cut off without hurting the others (spec/limits.md).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// spec/limits.md: a WebSocket subscriber that never reads is closed once its output passes
/// `out_queue_bytes` (counted in `slow_closed`), while a reading subscriber on the same channel
/// gets every message in order.
#[test]
fn slow_websocket_is_closed_others_unaffected() {
    const MESSAGES: usize = 5000;
    let srv = start(|c| {
        c.threads = 2;
        c.max_payload = 16 * 1024;
        c.out_queue_bytes = 64 * 1024;
    });
    let ch = channel();
    let slow = Ws::connect(srv.sub, &ch, None);
    let fast = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 2);

    // The fast reader reads until it has as many messages as the publisher reports in the end.
    let total = Arc::new(AtomicUsize::new(0));
    let reader_total = total.clone();
    let reader = std::thread::spawn(move || {
        let mut fast = fast;
        let mut got = Vec::new();
        let end = deadline(Duration::from_secs(60));
        loop {
            got.append(&mut fast.backlog);
            let want = reader_total.load(Ordering::Acquire);
            if want != 0 && got.len() >= want {
                return (fast, got);
            }
            match fast.try_frame(deadline(Duration::from_millis(50)).min(end)) {
                Ok(f) => fast.absorb(f),
                Err(ReadEnd::Timeout) => assert!(Instant::now() < end, "{} of {want}", got.len()),
                Err(ReadEnd::Closed) => panic!("fast subscriber closed after {}", got.len()),
            }
        }
    });

    let pad = "p".repeat(1024);
    let started = Instant::now();
    let mut mids = Vec::with_capacity(MESSAGES);
    let mut publisher = Conn::connect(srv.publ);
    // Pipelined in batches of 50 to keep the publishing quick. 5,000 messages overflow the
    // queue plus the kernel's socket buffers on usual settings; on hosts with larger buffers,
    // publish more (up to 4x) until the server has cut the slow subscriber off.
    let mut n = 0;
    while n < MESSAGES || (n < 4 * MESSAGES && srv.core_sum("slow_closed") == 0) {
        let mut requests = Vec::new();
        for _ in 0..50 {
            let b = format!(r#"{{"module_id":"t","params":{{"n":{n}}},"pad":"{pad}"}}"#);
            requests.extend(format_request(
                "POST",
                &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
                &[],
                b.as_bytes(),
            ));
            n += 1;
        }
        publisher.send(&requests);
        for _ in 0..50 {
            let r = publisher.response();
            assert_eq!(r.status, 200, "{}", r.text());
            mids.push(mid_of(&r));
        }
    }
    total.store(mids.len(), Ordering::Release);
    let publish_time = started.elapsed();

    let (mut fast, got) = reader.join().expect("reader thread");
    let got_mids: Vec<String> = got.iter().map(|m| m.mid.clone()).collect();
    assert!(
        got_mids == mids,
        "fast subscriber missed or reordered messages"
    );
    for (n, m) in got.iter().enumerate() {
        assert_eq!(m.text()["params"]["n"], n);
    }

    wait_until("slow subscriber closed", WAIT, || {
        srv.core_sum("slow_closed") >= 1
    });
    srv.wait_subscribers(&ch, 1);
    // The slow client sees its connection end after whatever was queued before the cut.
    let mut slow = slow;
    assert!(
        slow.conn.closed_within(Duration::from_secs(10)),
        "slow connection still open"
    );
    fast.expect_no_message(Duration::from_millis(100));
    eprintln!("published {} messages in {publish_time:?}", mids.len());
}

/// spec/limits.md: a long-poll subscriber never builds a queue (one answer per request), so a
/// poll that is not read does not disturb WebSockets on the channel.
#[test]
fn unread_long_poll_does_not_block_channel() {
    let srv = start(|c| c.longpoll_hold = Duration::from_secs(30));
    let ch = channel();
    let _unread = start_poll(srv.sub, &ch, None);
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 2);
    let mids: Vec<String> = (0..200).map(|n| srv.publish(&ch, &body(n), None)).collect();
    let got: Vec<String> = ws.messages(200, WAIT).into_iter().map(|m| m.mid).collect();
    assert_eq!(got, mids);
    assert_eq!(srv.core_sum("slow_closed"), 0);
}
