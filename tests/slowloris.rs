//! Many slow clients (slowloris) against the head deadline (spec/limits.md, `DEFAULT_HEAD_TIMEOUT`;
//! spec/README.md §3): thousands of connections that send a request head a byte at a time do not
//! delay a normal subscriber's delivery, and each is answered `408` and closed at its deadline.
//! The server is the `pushpull` binary in its own process, so that the clients and the server
//! each have the whole descriptor limit.

#[path = "common/binary.rs"]
mod binary_support;
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use binary_support::Binary;
use common::*;

/// Slow clients of the normal test run. `PUSHPULL_TEST_SLOW_CLIENTS` overrides it (10,000 is
/// run by hand); the test takes fewer when `ulimit -n` does not leave a descriptor per client.
const SLOW_CLIENTS_DEFAULT: usize = 2000;
/// The head deadline of the test's server: long enough for the subscriber's rounds below, short
/// enough for a quick test.
const HEAD_TIMEOUT: Duration = Duration::from_secs(3);
/// Publish-and-deliver rounds measured while the slow clients trickle.
const ROUNDS: usize = 5;
/// Time between two bytes of one slow client.
const TRICKLE_EVERY: Duration = Duration::from_millis(200);
/// Descriptors kept free for the subscriber, the publisher and the test harness.
const FD_RESERVE: usize = 256;

/// The soft limit on open files of this process (Linux), if known.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The number of slow clients: the wanted count, within what the descriptor limit allows.
fn slow_client_count() -> usize {
    let wanted = std::env::var("PUSHPULL_TEST_SLOW_CLIENTS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(SLOW_CLIENTS_DEFAULT);
    match open_files_limit() {
        Some(limit) if limit.saturating_sub(FD_RESERVE) < wanted => {
            let fit = limit.saturating_sub(FD_RESERVE);
            eprintln!("ulimit -n {limit} allows {fit} slow clients of the {wanted} wanted");
            fit
        }
        _ => wanted,
    }
}

/// Reads one slow client's answer to the end of the stream, by `until`.
fn answer_of(mut s: &TcpStream, until: Instant) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no end of stream after {out:?}"));
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("timed out after {out:?}"));
            }
            // The server drops a lingering connection whose peer kept sending: a reset after
            // the answer is fine.
            Err(_) if !out.is_empty() => return Ok(out),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// spec/limits.md (`DEFAULT_HEAD_TIMEOUT`): while thousands of clients send partial heads a byte
/// at a time, a WebSocket subscriber gets each published message promptly; every slow client is
/// answered `408` and closed at its head deadline, none before.
#[test]
fn slow_heads_do_not_delay_delivery() {
    let count = slow_client_count();
    assert!(count >= 100, "too few descriptors for the test");
    let head_timeout = format!("{}ms", HEAD_TIMEOUT.as_millis());
    let srv = Binary::start(&[("PUSHPULL_HEAD_TIMEOUT", head_timeout.as_str())]);

    let t0 = Instant::now();
    let slow: Vec<TcpStream> = (0..count)
        .map(|i| {
            let s = TcpStream::connect_timeout(&srv.sub, WAIT)
                .unwrap_or_else(|e| panic!("slow client {i}: {e}"));
            s.set_nodelay(true).expect("nodelay");
            s
        })
        .collect();
    wait_until(
        "every slow client accepted",
        Duration::from_secs(30),
        || srv.connections() > count as u64,
    );
    let connect_time = t0.elapsed();

    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);

    // Every slow client starts a head now: its deadline runs from this first byte.
    let started = Instant::now();
    for mut s in &slow {
        s.write_all(b"GET /bitrix/sub/?CHANNEL_ID=")
            .expect("first bytes of a head");
    }
    let first_bytes_time = started.elapsed();
    let slow = Arc::new(slow);
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let (slow, stop) = (slow.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut bytes = 0u64;
            while !stop.load(Ordering::Acquire) {
                for mut s in slow.iter() {
                    // Clients already answered reset the connection: that is fine.
                    if s.write(b"0").is_ok() {
                        bytes += 1;
                    }
                }
                std::thread::sleep(TRICKLE_EVERY);
            }
            bytes
        })
    };

    let mut latencies = Vec::with_capacity(ROUNDS);
    for n in 0..ROUNDS {
        let t = Instant::now();
        let mid = srv.publish(&ch, &body(n));
        assert_eq!(ws.messages(1, WAIT)[0].mid, mid, "round {n}");
        latencies.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let rounds_done = started.elapsed();
    let worst = latencies.iter().max().copied().unwrap_or_default();
    // Before the deadline, the slow clients have had no answer.
    if rounds_done + Duration::from_millis(300) < HEAD_TIMEOUT {
        for s in slow.iter().step_by((count / 100).max(1)) {
            s.set_nonblocking(true).expect("nonblocking");
            let mut b = [0u8; 1];
            let peeked = s.peek(&mut b);
            s.set_nonblocking(false).expect("blocking");
            assert!(
                matches!(&peeked, Err(e) if e.kind() == ErrorKind::WouldBlock),
                "a slow client was answered {:?} after {:?}, before its deadline",
                peeked,
                started.elapsed()
            );
        }
    } else {
        eprintln!("the rounds took {rounds_done:?}: the early-answer check is skipped");
    }
    assert!(
        worst < HEAD_TIMEOUT / 2,
        "delivery took {worst:?} among {count} slow clients"
    );

    // At the deadline, every slow client gets its 408 and the end of the stream.
    let until = started + HEAD_TIMEOUT + Duration::from_secs(30);
    let mut first_answer: Option<Duration> = None;
    for (i, s) in slow.iter().enumerate() {
        let answer = answer_of(s, until).unwrap_or_else(|e| panic!("slow client {i}: {e}"));
        first_answer.get_or_insert(started.elapsed());
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n")
                && text.ends_with("\r\n\r\n408: Request Timeout.")
                && text.contains("Connection: close\r\n"),
            "slow client {i}: {text:?}"
        );
    }
    let all_answered = started.elapsed();
    stop.store(true, Ordering::Release);
    let trickled = trickler.join().expect("trickler");
    assert!(
        first_answer.is_some_and(|t| t >= HEAD_TIMEOUT),
        "answered after {first_answer:?}"
    );

    // The subscriber is still served, and the slow connections are gone.
    let mid = srv.publish(&ch, &body(ROUNDS));
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
    wait_until(
        "the slow connections closed",
        Duration::from_secs(10),
        || srv.connections() <= 3,
    );
    eprintln!(
        "{count} slow clients: connected in {connect_time:?}, first bytes in \
         {first_bytes_time:?}, {trickled} bytes trickled; delivery latencies {latencies:?} \
         (worst {worst:?}); all answered 408 {all_answered:?} after their first byte \
         (deadline {HEAD_TIMEOUT:?})"
    );
}
