//! A subscriber that stops reading is cut off without hurting the others (spec/limits.md).

#[path = "common/binary.rs"]
mod binary_support;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use binary_support::Binary;
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

    // The fast reader reads until it has as many messages as the publisher reports in the end,
    // and reports its progress so that the publisher never runs far ahead of it: it must not
    // become a slow consumer itself when the test threads are starved of CPU.
    let total = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(AtomicUsize::new(0));
    let reader_total = total.clone();
    let reader_progress = progress.clone();
    let reader = std::thread::spawn(move || {
        let mut fast = fast;
        let mut got = Vec::new();
        let end = deadline(Duration::from_secs(60));
        loop {
            got.append(&mut fast.backlog);
            reader_progress.store(got.len(), Ordering::Release);
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
    // Pipelined in batches of 10 to keep the publishing quick. 5,000 messages overflow the
    // queue plus the kernel's socket buffers on usual settings; on hosts with larger buffers,
    // publish more (up to 4x) until the server has cut the slow subscriber off.
    let mut n = 0;
    while n < MESSAGES || (n < 4 * MESSAGES && srv.core_sum("slow_closed") == 0) {
        // At most 20 messages (about 24 KiB) between the publisher and the fast reader. The
        // kernel counts each ~1.2 KiB segment at about twice its size against the reader's
        // receive buffer, so a wider window could fill that buffer while the reader thread is
        // starved (a busy test host), and the server would rightly count the fast reader's
        // unsent output towards its 64 KiB limit.
        let end = deadline(Duration::from_secs(30));
        while progress.load(Ordering::Acquire) + 10 < n {
            assert!(
                Instant::now() < end,
                "the fast reader stalled at {}",
                progress.load(Ordering::Acquire)
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut requests = Vec::new();
        for _ in 0..10 {
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
        for _ in 0..10 {
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

/// spec/limits.md (`out_queue_bytes`), spec/websocket.md §2: a reading WebSocket that replays a
/// history larger than its output queue, while live messages keep arriving, is not mistaken for
/// a slow consumer: replay pages are asked for only as the output drains, so it gets the whole
/// history, then the live messages, in order. (Sizes are chosen so that a page plus every live
/// message fit in the queue: the test holds even when the reader thread is starved of CPU.)
#[test]
fn replay_larger_than_out_queue_is_not_slow() {
    const STORED: usize = 400;
    const LIVE: usize = 100;
    let srv = start(|c| {
        c.max_payload = 16 * 1024;
        c.out_queue_bytes = 256 * 1024;
        c.replay_max = 20;
    });
    let ch = channel();
    let pad = "s".repeat(1024);
    let mut expected = Vec::new();
    let mut publisher = Conn::connect(srv.publ);
    let path = format!("/bitrix/pub/?CHANNEL_ID={ch}");
    for n in 0..STORED {
        let b = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
        publisher.send(&format_request(
            "POST",
            &path,
            &[("Message-Expiry", "60")],
            b.as_bytes(),
        ));
        expected.push(mid_of(&publisher.response()));
    }
    let ws = Ws::connect(srv.sub, &ch, Some(MID_ZERO));
    let reader = std::thread::spawn(move || {
        let mut ws = ws;
        let got: Vec<String> = ws
            .messages(STORED + LIVE, Duration::from_secs(30))
            .into_iter()
            .map(|m| m.mid)
            .collect();
        (ws, got)
    });
    for n in 0..LIVE {
        let b = format!(r#"{{"live":{n},"pad":"{pad}"}}"#);
        publisher.send(&format_request("POST", &path, &[], b.as_bytes()));
        expected.push(mid_of(&publisher.response()));
    }
    let (_ws, got) = reader.join().expect("reader");
    assert!(
        got == expected,
        "got {} messages, first difference at {:?}",
        got.len(),
        got.iter().zip(&expected).position(|(a, b)| a != b)
    );
    assert_eq!(srv.core_sum("slow_closed"), 0);
}

/// spec/limits.md (`DEFAULT_OUT_QUEUE_BYTES`): subscribers that stop reading are each closed once
/// their output passes `out_queue_bytes`, so the server's memory stays bounded by the queues, not
/// by what is published: twenty stalled WebSockets on a channel that receives 64 MiB (1.25 GiB of
/// output if nothing were bounded) raise the server's peak memory by a few tens of MiB. The
/// server keeps serving. The server runs as its own process, so its memory is measured alone.
#[test]
fn stalled_subscribers_keep_server_memory_flat() {
    const STALLED: usize = 20;
    const QUEUE: usize = 1024 * 1024;
    const MESSAGE: usize = 60 * 1024;
    const TOTAL: usize = 64 * 1024 * 1024;
    /// Allowed growth of the server's peak memory: the queues (20 MiB) and room for the
    /// allocator, the publisher's bodies and the framing of one round of messages.
    const GROWTH_LIMIT_KIB: u64 = 96 * 1024;
    let (max_payload, queue) = ((2 * MESSAGE).to_string(), QUEUE.to_string());
    let srv = Binary::start(&[
        ("PUSHPULL_MAX_PAYLOAD", max_payload.as_str()),
        ("PUSHPULL_OUT_QUEUE_BYTES", queue.as_str()),
    ]);
    let ch = channel();
    let stalled: Vec<Ws> = (0..STALLED)
        .map(|_| Ws::connect(srv.sub, &ch, None))
        .collect();
    srv.wait_subscribers(&ch, STALLED as u64);
    let before = srv.rss_kib();

    let pad = "m".repeat(MESSAGE - 40);
    let mut publisher = Conn::connect(srv.publ);
    let mut sent = 0;
    let mut n = 0;
    while sent < TOTAL {
        let mut requests = Vec::new();
        for _ in 0..16 {
            let b = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
            sent += b.len();
            n += 1;
            requests.extend(format_request(
                "POST",
                &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
                &[],
                b.as_bytes(),
            ));
        }
        publisher.send(&requests);
        for _ in 0..16 {
            let r = publisher.response();
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    wait_until(
        "every stalled subscriber closed",
        Duration::from_secs(30),
        || srv.core_sum("slow_closed") >= STALLED as u64,
    );
    srv.wait_subscribers(&ch, 0);
    let peak = srv.peak_rss_kib();
    let after = srv.rss_kib();
    eprintln!(
        "{n} messages ({sent} bytes) to {STALLED} stalled subscribers: server RSS {before:?} KiB \
         before, peak {peak:?} KiB, {after:?} KiB after"
    );
    if let (Some(before), Some(peak)) = (before, peak) {
        assert!(
            peak.saturating_sub(before) < GROWTH_LIMIT_KIB,
            "the server grew from {before} KiB to a peak of {peak} KiB"
        );
    }
    // The stalled clients see their connections end; the server still serves.
    for mut ws in stalled {
        assert!(ws.conn.closed_within(Duration::from_secs(20)), "still open");
    }
    let mut reader = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1));
    assert_eq!(reader.messages(1, WAIT)[0].mid, mid);
}

/// spec/limits.md (`out_queue_bytes`), spec/websocket.md §5: a WebSocket subscriber that stalls
/// until its queue is full, then reads again within the linger time, finds the messages framed
/// before the cut followed by close 1008 `Output queue full.`, in order, and then the end of the
/// connection.
#[test]
fn slow_websocket_gets_close_1008_after_what_was_framed() {
    let srv = start(|c| {
        c.max_payload = 16 * 1024;
        c.out_queue_bytes = 64 * 1024;
    });
    let ch = channel();
    let mut slow = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let pad = "p".repeat(4096);
    let mut sent = 0;
    while srv.core_sum("slow_closed") == 0 {
        assert!(sent < 20_000, "never cut off after {sent} messages");
        let body =
            format!(r#"{{"module_id":"t","command":"c","params":{{"n":{sent},"pad":"{pad}"}}}}"#);
        let r = publish_raw(srv.publ, &ch, body.as_bytes(), None);
        assert_eq!(r.status, 200);
        sent += 1;
    }
    // Read everything the server still sends: messages in order, then the close frame.
    let until = deadline(Duration::from_secs(10));
    let mut next = 0u64;
    let close = loop {
        match slow.try_frame(until) {
            Ok(f) if f.opcode == op::TEXT => {
                for m in parse_messages(&f.payload) {
                    assert_eq!(m.text()["params"]["n"], next, "in order, none skipped");
                    next += 1;
                }
            }
            Ok(f) if f.opcode == op::CLOSE => break f,
            Ok(f) if f.opcode == op::PING => {}
            Ok(f) => panic!("unexpected frame {f:?}"),
            Err(e) => panic!("no close frame after {next} messages: {e:?}"),
        }
    };
    assert_eq!(
        u16::from_be_bytes([close.payload[0], close.payload[1]]),
        1008
    );
    assert_eq!(&close.payload[2..], b"1008: Output queue full.");
    assert!(
        next > 0 && next < sent as u64,
        "{next} of {sent} framed before the cut"
    );
    assert!(
        slow.conn.closed_within(Duration::from_secs(5)),
        "still open"
    );
    assert_eq!(srv.core_sum("slow_closed"), 1);
}
