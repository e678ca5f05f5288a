//! End-to-end runs of the load generator against a tiny in-process fake push server.
//!
//! The fake server (std::net, a thread per connection) speaks just enough of the Bitrix text mode:
//! WebSocket upgrades on `/bitrix/subws/`, long polls with `mid` on `/bitrix/sub/`, and
//! `POST /bitrix/pub/`. It pings every WebSocket subscriber once and checks the pong is masked.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use pushpull_loadgen::config::{Args, Plan, sign_channel};
use pushpull_loadgen::report::{Outcome, Report};
use pushpull_loadgen::run::run;

#[derive(Default, Clone)]
struct Options {
    key: Option<String>,
    /// Send the first message of every WebSocket subscriber twice.
    duplicate_first: bool,
    /// Never send seq 0 to WebSocket subscribers.
    drop_seq0: bool,
}

#[derive(Default)]
struct Store {
    next_id: u64,
    log: HashMap<String, Vec<(u64, String)>>,
}

struct Fake {
    opts: Options,
    store: Mutex<Store>,
    cv: Condvar,
    stop: AtomicBool,
    masked_pongs: AtomicU64,
    polls: AtomicU64,
    peers: Mutex<BTreeSet<IpAddr>>,
}

struct FakeServer {
    fake: Arc<Fake>,
    sub: SocketAddr,
    publ: SocketAddr,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.fake.stop.store(true, Ordering::SeqCst);
        self.fake.cv.notify_all();
    }
}

fn mid(id: u64) -> String {
    format!("{id:026}")
}

fn unit(id: u64, body: &str) -> String {
    format!(
        "#!NGINXNMS!#{{\"id\":{id},\"mid\":\"{}\",\"channel\":\"-\",\"tag\":\"123\",\"time\":\"Thu, 01 Jan 1970 00:00:00 GMT\",\"text\":{body}}}#!NGINXNME!#",
        mid(id)
    )
}

fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p + 4]).into_owned();
            buf.drain(..p + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn query(head: &str, name: &str) -> Option<String> {
    let target = head.split_whitespace().nth(1)?;
    let q = target.split_once('?')?.1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn ws_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = payload.len();
    if len < 126 {
        v.push(len as u8);
    } else if len <= 0xFFFF {
        v.push(126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

impl Fake {
    /// Checks the channel token; returns the bare channel id.
    fn channel(&self, token: &str) -> Option<String> {
        let (id, sig) = match token.split_once('.') {
            Some((id, sig)) => (id, Some(sig)),
            None => (token, None),
        };
        match (&self.opts.key, sig) {
            (None, _) => Some(id.to_owned()),
            (Some(k), Some(_)) if sign_channel(id, k) == token => Some(id.to_owned()),
            _ => None,
        }
    }

    fn wait_new(&self, ch: &str, after: u64, max: Duration) -> Vec<(u64, String)> {
        let end = Instant::now() + max;
        let mut store = self.store.lock().unwrap();
        loop {
            let new: Vec<_> = store
                .log
                .get(ch)
                .map(|l| l.iter().filter(|(id, _)| *id > after).cloned().collect())
                .unwrap_or_default();
            let now = Instant::now();
            if !new.is_empty() || now >= end || self.stop.load(Ordering::SeqCst) {
                return new;
            }
            store = self
                .cv
                .wait_timeout(store, (end - now).min(Duration::from_millis(50)))
                .unwrap()
                .0;
        }
    }

    fn newest(&self, ch: &str) -> u64 {
        let store = self.store.lock().unwrap();
        store
            .log
            .get(ch)
            .and_then(|l| l.last())
            .map_or(0, |(id, _)| *id)
    }

    fn serve_sub(&self, mut s: TcpStream) {
        let mut buf = Vec::new();
        if let Ok(peer) = s.peer_addr() {
            self.peers.lock().unwrap().insert(peer.ip());
        }
        let mut served = 0u64;
        while let Some(head) = read_head(&mut s, &mut buf) {
            let Some(ch) = query(&head, "CHANNEL_ID").and_then(|t| self.channel(&t)) else {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 26\r\n\r\n4010: Wrong Channel Id.\r\n\r\n");
                return;
            };
            if header(&head, "upgrade").is_some() {
                return self.serve_ws(s, &ch);
            }
            // Long poll.
            self.polls.fetch_add(1, Ordering::SeqCst);
            let after = query(&head, "mid")
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| self.newest(&ch));
            let new = self.wait_new(&ch, after, Duration::from_millis(300));
            served += 1;
            let close = served % 4 == 0;
            let conn = if close { "Connection: close\r\n" } else { "" };
            let resp = if new.is_empty() {
                let last = self.newest(&ch);
                let last = if last == 0 { String::new() } else { mid(last) };
                format!("HTTP/1.1 304 Not Modified\r\nLast-Message-Id: {last}\r\n{conn}\r\n")
                    .into_bytes()
            } else {
                let body: String = new.iter().map(|(id, b)| unit(*id, b)).collect();
                if served % 3 == 0 {
                    let (a, b) = body.split_at(body.len() / 2);
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{conn}\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                        a.len(),
                        b.len()
                    )
                    .into_bytes()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{conn}\r\n{body}",
                        body.len()
                    )
                    .into_bytes()
                }
            };
            if s.write_all(&resp).is_err() || close {
                return;
            }
        }
    }

    fn serve_ws(&self, mut s: TcpStream, ch: &str) {
        let mut after = self.newest(ch);
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
        if s.write_all(ok.as_bytes()).is_err() || s.write_all(&ws_frame(true, 0x9, b"hi")).is_err()
        {
            return;
        }
        // Expect a masked pong: 0x8A, mask bit, 4 mask bytes, 2 masked payload bytes.
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut pong = [0u8; 8];
        if s.read_exact(&mut pong).is_ok() && pong[0] == 0x8A && pong[1] == 0x82 {
            let unmasked = [pong[6] ^ pong[2], pong[7] ^ pong[3]];
            if &unmasked == b"hi" {
                self.masked_pongs.fetch_add(1, Ordering::SeqCst);
            }
        }
        let mut sent_first = false;
        let mut n = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            let new = self.wait_new(ch, after, Duration::from_millis(100));
            let Some((last, _)) = new.last() else {
                continue;
            };
            after = *last;
            let mut text = String::new();
            for (id, body) in &new {
                if self.opts.drop_seq0 && body.contains("\"seq\":0,") {
                    continue;
                }
                text.push_str(&unit(*id, body));
                if self.opts.duplicate_first && !sent_first {
                    text.push_str(&unit(*id, body));
                }
                sent_first = true;
            }
            n += 1;
            // Every other batch is fragmented into a text frame and a continuation.
            let bytes = if n % 2 == 0 && text.len() > 1 {
                let (a, b) = text.as_bytes().split_at(text.len() / 2);
                [ws_frame(false, 0x1, a), ws_frame(true, 0x0, b)].concat()
            } else {
                ws_frame(true, 0x1, text.as_bytes())
            };
            if s.write_all(&bytes).is_err() {
                return;
            }
        }
    }

    fn serve_pub(&self, mut s: TcpStream) {
        let mut buf = Vec::new();
        while let Some(head) = read_head(&mut s, &mut buf) {
            let len: usize = header(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < len {
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = String::from_utf8_lossy(&buf[..len]).into_owned();
            buf.drain(..len);
            let ch = query(&head, "CHANNEL_ID").unwrap_or_default();
            assert!(header(&head, "message-expiry").is_some());
            {
                let mut store = self.store.lock().unwrap();
                store.next_id += 1;
                let id = store.next_id;
                store.log.entry(ch).or_default().push((id, body));
            }
            self.cv.notify_all();
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                .is_err()
            {
                return;
            }
        }
    }
}

fn start(opts: Options) -> FakeServer {
    let fake = Arc::new(Fake {
        opts,
        store: Mutex::new(Store::default()),
        cv: Condvar::new(),
        stop: AtomicBool::new(false),
        masked_pongs: AtomicU64::new(0),
        polls: AtomicU64::new(0),
        peers: Mutex::new(BTreeSet::new()),
    });
    let sub = TcpListener::bind("127.0.0.1:0").unwrap();
    let publ = TcpListener::bind("127.0.0.1:0").unwrap();
    let (sub_addr, pub_addr) = (sub.local_addr().unwrap(), publ.local_addr().unwrap());
    for (listener, is_pub) in [(sub, false), (publ, true)] {
        let fake = fake.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if fake.stop.load(Ordering::SeqCst) {
                    return;
                }
                let fake = fake.clone();
                std::thread::spawn(move || {
                    if is_pub {
                        fake.serve_pub(conn)
                    } else {
                        fake.serve_sub(conn)
                    }
                });
            }
        });
    }
    FakeServer {
        fake,
        sub: sub_addr,
        publ: pub_addr,
    }
}

fn run_against(server: &FakeServer, extra: &[&str]) -> Report {
    let sub = server.sub.to_string();
    let publ = server.publ.to_string();
    let mut argv = vec![
        "pushpull-loadgen",
        "--sub-addr",
        &sub,
        "--pub-addr",
        &publ,
        "--timeout",
        "30",
        "--settle-ms",
        "300",
        "--connect-rate",
        "2000",
    ];
    if !extra.contains(&"--drain-timeout") {
        argv.extend_from_slice(&["--drain-timeout", "5"]);
    }
    argv.extend_from_slice(extra);
    let plan = Plan::from_args(Args::try_parse_from(argv).unwrap(), 1 << 40).unwrap();
    run(plan).unwrap()
}

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
