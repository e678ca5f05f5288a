//! End-to-end runs of the other targets and outputs against the fake server ([`fake`]): binary
//! mode, nchan's plain framing and resume headers, publishing without subscribers, the time
//! series, the last-subscriber figure, the ready file, and the command line with `--plot`.

mod fake;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fake::{Options, run_against, start};
use pushpull_loadgen::plot::render_report;
use pushpull_loadgen::report::{Outcome, Report};

fn assert_exactly_once(r: &Report, subscribers: u64, per_subscriber: u64) {
    assert!(r.ok, "{}", r.summary_line());
    assert_eq!(r.outcome, Outcome::Complete, "{}", r.summary_line());
    assert_eq!(r.connect.ready, subscribers);
    assert_eq!(r.delivery.expected, subscribers * per_subscriber);
    assert_eq!(r.delivery.received, subscribers * per_subscriber);
    assert_eq!(r.delivery.total_deliveries, subscribers * per_subscriber);
    assert_eq!(
        (
            r.delivery.lost,
            r.delivery.duplicates,
            r.delivery.protocol_errors,
            r.delivery.undecodable,
            r.delivery.misrouted
        ),
        (0, 0, 0, 0, 0),
        "{}",
        r.summary_line()
    );
}

#[test]
fn binary_mode_websocket_and_long_poll() {
    let server = start(Options::default());
    let r = run_against(
        &server,
        &[
            "--format",
            "binary",
            "--subscribers",
            "30",
            "--channels",
            "3",
            "--messages",
            "120",
            "--payload-bytes",
            "200",
        ],
    );
    assert_exactly_once(&r, 30, 40);
    assert_eq!(r.delivery.pongs, 30);
    let r = run_against(
        &server,
        &[
            "--format",
            "binary",
            "--transport",
            "longpoll",
            "--subscribers",
            "10",
            "--channels",
            "5",
            "--messages",
            "60",
            "--rate",
            "300",
        ],
    );
    assert_exactly_once(&r, 10, 12);
    // Every 200 carried messages; a binary poll resumes from the hex of the protobuf id.
    assert!(r.delivery.data_polls >= 10, "{}", r.delivery.data_polls);
    assert!(r.delivery.polls_per_sec > 0.0);
}

#[test]
fn nchan_plain_framing_and_resume_headers() {
    let server = start(Options::default());
    let r = run_against(
        &server,
        &[
            "--target",
            "nchan",
            "--subscribers",
            "20",
            "--channels",
            "4",
            "--messages",
            "100",
        ],
    );
    assert_exactly_once(&r, 20, 25);
    assert_eq!(r.publish.accepted, 100);
    let r = run_against(
        &server,
        &[
            "--target",
            "nchan",
            "--transport",
            "longpoll",
            "--subscribers",
            "8",
            "--channels",
            "4",
            "--messages",
            "40",
            "--rate",
            "200",
        ],
    );
    assert_exactly_once(&r, 8, 10);
    // One message per nchan poll: every delivery took one poll answered 200.
    assert_eq!(r.delivery.data_polls, r.delivery.total_deliveries);
}

#[test]
fn nchan_loss_and_duplicates_are_detected() {
    let server = start(Options {
        drop_seq0: true,
        duplicate_first: true,
        ..Options::default()
    });
    let r = run_against(
        &server,
        &[
            "--target",
            "nchan",
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
    assert_eq!((r.delivery.lost, r.delivery.duplicates), (2, 4));
    // Seq 0 never reached channel 0: only the other 4 messages of channel 0 are complete.
    assert_eq!(r.delivery.complete_messages, 9);
}

#[test]
fn pipelining_holds_the_rate_through_a_slow_answer() {
    let hold = Duration::from_millis(400);
    for (depth, want_waiting) in [("1", 0..=0), ("8", 4..=7)] {
        let server = start(Options {
            hold_first_publish: hold,
            ..Options::default()
        });
        let r = run_against(
            &server,
            &[
                "--subscribers",
                "4",
                "--channels",
                "1",
                "--messages",
                "40",
                "--rate",
                "50",
                "--pipeline",
                depth,
            ],
        );
        assert!(r.ok, "{}", r.summary_line());
        assert_eq!((r.publish.accepted, r.delivery.out_of_order), (40, 0));
        // While the first answer was held, a pipelining publisher kept sending at the rate
        // (8 in flight: 7 behind the first); a non-pipelining one waited.
        let waiting = server.fake.pipelined.load(Ordering::SeqCst);
        assert!(want_waiting.contains(&waiting), "depth {depth}: {waiting}");
        assert!(r.publish.ack_latency_us.max >= hold.as_micros() as u64);
    }
}

#[test]
fn publish_only_without_subscribers() {
    let server = start(Options::default());
    let r = run_against(
        &server,
        &[
            "--subscribers",
            "0",
            "--channels",
            "8",
            "--messages",
            "300",
            "--publishers",
            "3",
        ],
    );
    assert!(r.ok, "{}", r.summary_line());
    assert_eq!(r.outcome, Outcome::Complete);
    assert_eq!((r.publish.accepted, r.publish.errors), (300, 0));
    assert!(r.publish.rate_per_sec > 0.0);
    assert_eq!((r.delivery.expected, r.connect.ready), (0, 0));
}

#[test]
fn series_last_subscriber_and_ready_file() {
    let server = start(Options::default());
    let dir = std::env::temp_dir().join(format!("lg-modes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready.json");
    let me = std::process::id().to_string();
    let r = run_against(
        &server,
        &[
            "--subscribers",
            "12",
            "--channels",
            "1",
            "--duration",
            "0.6",
            "--rate",
            "50",
            "--series-ms",
            "100",
            "--server-pid",
            &me,
            "--ready-file",
            ready.to_str().unwrap(),
        ],
    );
    assert!(r.ok, "{}", r.summary_line());
    let ready_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    assert_eq!(ready_json["ready"], 12);
    assert_eq!(ready_json["failed"], 0);
    // The series adds up to the totals.
    let sum = |f: fn(&pushpull_loadgen::series::SeriesPoint) -> u64| -> u64 {
        r.series.iter().map(f).sum()
    };
    assert_eq!(sum(|p| p.deliveries), r.delivery.total_deliveries);
    assert_eq!(sum(|p| p.publishes), r.publish.accepted);
    assert_eq!(sum(|p| p.ready), 12);
    assert!(r.series.len() >= 6, "{}", r.series.len());
    assert!(r.series.windows(2).all(|w| w[1].t > w[0].t));
    assert!(r.series.iter().any(|p| p.latency_p99_us.is_some()));
    assert!(r.series.iter().any(|p| p.server_cpu_percent.is_some()));
    assert!(r.series.iter().any(|p| p.server_rss_kb.is_some()));
    // Every message reached all 12 subscribers: one last-arrival time per message, each at least
    // the message's median arrival.
    assert_eq!(r.delivery.complete_messages, r.publish.accepted);
    assert_eq!(r.last_delivery_us.count, r.publish.accepted);
    assert!(r.last_delivery_us.p50 >= r.latency_us.min);
    assert!(r.last_delivery_us.max <= r.latency_us.max + r.latency_us.max / 100 + 1);
    let server = r.server.as_ref().expect("sampled");
    assert!(server.at_publish.is_some());
    assert!(server.cpu_us_per_delivery.is_some());
    let svg = render_report(&r);
    assert!(svg.contains("<polyline") && svg.contains("server CPU %"));
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["series"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(json["last_delivery_us"]["p99"].as_u64().is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn command_line_writes_result_and_plot() {
    let server = start(Options::default());
    let dir = std::env::temp_dir().join(format!("lg-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, plot) = (dir.join("r.json"), dir.join("r.svg"));
    let status = Command::new(env!("CARGO_BIN_EXE_pushpull-loadgen"))
        .args(["--sub-addr", &server.sub.to_string()])
        .args(["--pub-addr", &server.publ.to_string()])
        .args(["--subscribers", "6", "--channels", "2", "--messages", "20"])
        .args([
            "--timeout",
            "20",
            "--settle-ms",
            "300",
            "--series-ms",
            "100",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("outcome=complete OK"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(json["delivery"]["received"], 60);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg ") && svg.contains("<polyline"));
    // Bad arguments exit 2 without running.
    let bad = Command::new(env!("CARGO_BIN_EXE_pushpull-loadgen"))
        .args(["--target", "nchan", "--format", "binary"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
