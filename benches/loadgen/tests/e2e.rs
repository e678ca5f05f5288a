//! End-to-end runs of the load generator against a tiny in-process fake push server
//! ([`fake`]) in the Bitrix text mode.

mod fake;

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use fake::{Options, run_against, start};
use pushpull_loadgen::config::{Args, Plan};
use pushpull_loadgen::report::Outcome;
use pushpull_loadgen::run::run;

#[test]
fn websocket_subscribers_get_every_message() {
    let server = start(Options {
        key: Some("secret".into()),
        ..Options::default()
    });
    let r = run_against(
        &server,
        &[
            "--subscribers",
            "40",
            "--channels",
            "4",
            "--threads",
            "2",
            "--messages",
            "200",
            "--publishers",
            "3",
            "--key",
            "secret",
            "--payload-bytes",
            "300",
            "--source-addrs",
            "127.0.0.1,127.0.0.2",
            "--server-pid",
            &std::process::id().to_string(),
        ],
    );
    println!("{}", r.summary_line());
    assert_eq!(r.outcome, Outcome::Complete, "{}", r.summary_line());
    assert!(r.ok, "{}", r.summary_line());
    assert_eq!(r.connect.ready, 40);
    assert_eq!(r.publish.accepted, 200);
    assert_eq!(r.delivery.expected, 40 * 50);
    assert_eq!(r.delivery.received, 40 * 50);
    assert_eq!(r.delivery.total_deliveries, 40 * 50);
    assert_eq!(
        (
            r.delivery.lost,
            r.delivery.duplicates,
            r.delivery.out_of_order
        ),
        (0, 0, 0)
    );
    assert_eq!(
        r.delivery.protocol_errors + r.delivery.undecodable + r.delivery.misrouted,
        0
    );
    assert_eq!(r.latency_us.count, 40 * 50);
    assert_eq!(r.delivery.pongs, 40);
    assert_eq!(server.fake.masked_pongs.load(Ordering::SeqCst), 40);
    assert_eq!(r.connect.alive_at_end, 40);
    let peers = server.fake.peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(
        r.server
            .as_ref()
            .and_then(|s| s.after)
            .is_some_and(|a| a.rss_kb > 0)
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["delivery"]["lost"], 0);
    assert_eq!(json["plan"]["transport"], "ws");
    assert!(json["plan"].get("key").is_none());
}

#[test]
fn long_poll_subscribers_get_every_message() {
    let server = start(Options::default());
    let r = run_against(
        &server,
        &[
            "--transport",
            "longpoll",
            "--subscribers",
            "20",
            "--channels",
            "5",
            "--threads",
            "2",
            "--messages",
            "100",
            "--publishers",
            "2",
            "--rate",
            "400",
        ],
    );
    println!("{}", r.summary_line());
    assert!(r.ok, "{}", r.summary_line());
    assert_eq!(r.outcome, Outcome::Complete);
    assert_eq!(r.delivery.expected, 20 * 20);
    assert_eq!(r.delivery.received, 20 * 20);
    assert_eq!(r.delivery.duplicates, 0);
    assert_eq!(r.delivery.protocol_errors, 0);
    assert!(r.delivery.polls > 20, "{}", r.delivery.polls);
    assert!(server.fake.polls.load(Ordering::SeqCst) >= r.delivery.polls);
    // Rate 400/s for 100 messages: about a quarter of a second.
    assert!(r.publish.seconds >= 0.2, "{}", r.publish.seconds);
}

#[test]
fn duration_mode_publishes_for_the_duration() {
    let server = start(Options::default());
    let r = run_against(
        &server,
        &[
            "--subscribers",
            "6",
            "--channels",
            "3",
            "--duration",
            "0.5",
            "--rate",
            "200",
            "--publishers",
            "2",
        ],
    );
    assert!(r.ok, "{}", r.summary_line());
    assert!(
        (80..=120).contains(&r.publish.accepted),
        "{}",
        r.publish.accepted
    );
    assert_eq!(r.delivery.expected, r.publish.accepted * 2);
}

#[test]
fn loss_and_duplicates_are_detected() {
    let server = start(Options {
        drop_seq0: true,
        duplicate_first: true,
        ..Options::default()
    });
    let r = run_against(
        &server,
        &[
            "--subscribers",
            "4",
            "--channels",
            "2",
            "--messages",
            "10",
            "--drain-timeout",
            "1",
        ],
    );
    assert!(!r.ok);
    assert_eq!(r.outcome, Outcome::DrainTimedOut);
    // Subscribers of channel 0 miss seq 0; every subscriber sees its first delivery twice.
    assert_eq!(r.delivery.lost, 2);
    assert_eq!(r.delivery.duplicates, 4);
    assert!(
        r.summary_line().contains("lost=2 dup=4"),
        "{}",
        r.summary_line()
    );
}

#[test]
fn bad_signature_and_refused_connections_are_connect_failures() {
    let server = start(Options {
        key: Some("right".into()),
        ..Options::default()
    });
    let r = run_against(
        &server,
        &[
            "--subscribers",
            "5",
            "--channels",
            "5",
            "--key",
            "wrong",
            "--messages",
            "5",
        ],
    );
    assert!(!r.ok);
    assert_eq!(r.connect.failures, 5);
    assert_eq!(r.connect.failure_reasons.get("status 400"), Some(&5));

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let plan = Plan::from_args(
        Args::try_parse_from([
            "pushpull-loadgen",
            "--sub-addr",
            &closed,
            "--pub-addr",
            &closed,
            "--subscribers",
            "3",
            "--timeout",
            "5",
            "--messages",
            "3",
        ])
        .unwrap(),
        1,
    )
    .unwrap();
    let r = run(plan).unwrap();
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(!r.ok);
    assert_eq!(r.connect.failures, 3);
    assert_eq!(
        r.connect.failure_reasons.get("connect: ConnectionRefused"),
        Some(&3),
        "{:?}",
        r.connect
    );
}

#[test]
fn connect_mode_holds_connections() {
    let server = start(Options::default());
    let r = run_against(
        &server,
        &["--mode", "connect", "--subscribers", "10", "--hold", "0.3"],
    );
    assert!(r.ok, "{}", r.summary_line());
    assert_eq!(r.connect.ready, 10);
    assert_eq!(r.connect.alive_at_end, 10);
    assert_eq!(r.publish.attempted, 0);
}

#[test]
fn large_frames_use_64_bit_lengths_and_many_reads() {
    let server = start(Options::default());
    let r = run_against(
        &server,
        &[
            "--subscribers",
            "3",
            "--channels",
            "1",
            "--threads",
            "1",
            "--messages",
            "40",
            "--payload-bytes",
            "70000",
        ],
    );
    assert!(r.ok, "{}", r.summary_line());
    assert_eq!(r.delivery.received, 3 * 40);
    assert_eq!(r.delivery.protocol_errors, 0);
}
