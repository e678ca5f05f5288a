//! A tiny in-process fake push server for the load generator's end-to-end tests (std::net, a
//! thread per connection).
//!
//! It speaks just enough of three styles, chosen per request: the Bitrix text mode (WebSocket
//! upgrades on `/bitrix/subws/`, long polls with `mid` on `/bitrix/sub/`, `POST /bitrix/pub/`),
//! the Bitrix binary mode (`binaryMode=true`: protobuf `ResponseBatch` frames and bodies), and
//! nchan (`/sub?id=`: the raw body per text frame or long-poll answer, resumed with
//! `If-None-Match`; `POST /pub?id=` answered `201`). It pings every WebSocket subscriber once and
//! checks the pong is masked.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use pushpull_loadgen::config::{Args, Plan, sign_channel};
use pushpull_loadgen::report::Report;
use pushpull_loadgen::run::run;

#[derive(Default, Clone)]
pub struct Options {
    pub key: Option<String>,
    /// Send the first message of every WebSocket subscriber twice.
    pub duplicate_first: bool,
    /// Never send seq 0 to WebSocket subscribers.
    pub drop_seq0: bool,
    /// Hold the answer to the very first publish this long.
    pub hold_first_publish: Duration,
}

#[derive(Default)]
struct Store {
    next_id: u64,
    log: HashMap<String, Vec<(u64, String)>>,
}

pub struct Fake {
    opts: Options,
    store: Mutex<Store>,
    cv: Condvar,
    stop: AtomicBool,
    pub masked_pongs: AtomicU64,
    /// Publish requests already waiting behind the held first one when it was answered.
    pub pipelined: AtomicU64,
    held: AtomicBool,
    pub polls: AtomicU64,
    pub peers: Mutex<BTreeSet<IpAddr>>,
}

pub struct FakeServer {
    pub fake: Arc<Fake>,
    pub sub: SocketAddr,
    pub publ: SocketAddr,
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
            let style = Style::of(&head);
            let token = match style {
                Style::Nchan => query(&head, "id"),
                _ => query(&head, "CHANNEL_ID").and_then(|t| self.channel(&t)),
            };
            let Some(ch) = token else {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 26\r\n\r\n4010: Wrong Channel Id.\r\n\r\n");
                return;
            };
            if header(&head, "upgrade").is_some() {
                return self.serve_ws(s, &ch, style);
            }
            // Long poll.
            self.polls.fetch_add(1, Ordering::SeqCst);
            let resume = match style {
                Style::Nchan => header(&head, "if-none-match"),
                _ => query(&head, "mid"),
            };
            let after = resume
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| self.newest(&ch));
            let mut new = self.wait_new(&ch, after, Duration::from_millis(300));
            served += 1;
            let close = served % 4 == 0;
            let conn = if close { "Connection: close\r\n" } else { "" };
            let resp = if new.is_empty() && style == Style::Nchan {
                format!("HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n{conn}\r\n")
                    .into_bytes()
            } else if new.is_empty() {
                // Nothing after `after` was seen: say `after`, never a newer id published since
                // the wait ended (the client would skip that message).
                let last = if after == 0 {
                    String::new()
                } else {
                    mid(after)
                };
                format!("HTTP/1.1 304 Not Modified\r\nLast-Message-Id: {last}\r\n{conn}\r\n")
                    .into_bytes()
            } else {
                let mut extra = conn.to_owned();
                let body: Vec<u8> = match style {
                    Style::Text => new
                        .iter()
                        .map(|(id, b)| unit(*id, b))
                        .collect::<String>()
                        .into_bytes(),
                    Style::Binary => new.iter().flat_map(|(id, b)| pb_message(*id, b)).collect(),
                    Style::Nchan => {
                        // nchan answers one message per poll and says where to go on from.
                        new.truncate(1);
                        extra.push_str(&format!(
                            "Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\r\nEtag: {}\r\n",
                            new[0].0
                        ));
                        new[0].1.clone().into_bytes()
                    }
                };
                http_200(&body, &extra, served % 3 == 0)
            };
            if s.write_all(&resp).is_err() || close {
                return;
            }
        }
    }

    fn serve_ws(&self, mut s: TcpStream, ch: &str, style: Style) {
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
            let mut messages: Vec<Vec<u8>> = Vec::new();
            for (id, body) in &new {
                if self.opts.drop_seq0 && body.contains("\"seq\":0,") {
                    continue;
                }
                let encoded = match style {
                    Style::Text => unit(*id, body).into_bytes(),
                    Style::Binary => pb_message(*id, body),
                    Style::Nchan => body.clone().into_bytes(),
                };
                messages.push(encoded.clone());
                if self.opts.duplicate_first && !sent_first {
                    messages.push(encoded);
                }
                sent_first = true;
            }
            // Bitrix joins a batch into one frame; nchan sends a frame per message.
            let (opcode, payloads) = match style {
                Style::Text => (0x1, vec![messages.concat()]),
                Style::Binary => (0x2, vec![messages.concat()]),
                Style::Nchan => (0x1, messages),
            };
            let mut bytes = Vec::new();
            for payload in payloads.iter().filter(|p| !p.is_empty()) {
                n += 1;
                // Every other message is fragmented into a data frame and a continuation.
                if n % 2 == 0 && payload.len() > 1 {
                    let (a, b) = payload.split_at(payload.len() / 2);
                    bytes.extend(ws_frame(false, opcode, a));
                    bytes.extend(ws_frame(true, 0x0, b));
                } else {
                    bytes.extend(ws_frame(true, opcode, payload));
                }
            }
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
            let nchan = Style::of(&head) == Style::Nchan;
            let ch = query(&head, if nchan { "id" } else { "CHANNEL_ID" }).unwrap_or_default();
            assert!(header(&head, "message-expiry").is_some());
            {
                let mut store = self.store.lock().unwrap();
                store.next_id += 1;
                let id = store.next_id;
                store.log.entry(ch).or_default().push((id, body));
            }
            self.cv.notify_all();
            if !self.opts.hold_first_publish.is_zero() && !self.held.swap(true, Ordering::SeqCst) {
                std::thread::sleep(self.opts.hold_first_publish);
                // Count the requests the client pipelined meanwhile.
                let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                let mut chunk = [0u8; 65536];
                while let Ok(n @ 1..) = s.read(&mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                }
                let _ = s.set_read_timeout(None);
                let waiting = buf.windows(5).filter(|w| w == b"POST ").count();
                self.pipelined.store(waiting as u64, Ordering::SeqCst);
            }
            let answer: &[u8] = if nchan {
                b"HTTP/1.1 201 Created\r\nContent-Length: 20\r\n\r\nqueued messages: 1\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
            };
            if s.write_all(answer).is_err() {
                return;
            }
        }
    }
}

/// Which protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Text,
    Binary,
    Nchan,
}

impl Style {
    fn of(head: &str) -> Self {
        if query(head, "id").is_some() {
            Self::Nchan
        } else if query(head, "binaryMode").as_deref() == Some("true") {
            Self::Binary
        } else {
            Self::Text
        }
    }
}

/// A `200` with `body`, chunked in two halves or with a length.
fn http_200(body: &[u8], extra: &str, chunked: bool) -> Vec<u8> {
    if chunked {
        let (a, b) = body.split_at(body.len() / 2);
        let mut v = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{extra}\r\n{:x}\r\n",
            a.len()
        )
        .into_bytes();
        v.extend_from_slice(a);
        v.extend_from_slice(format!("\r\n{:x}\r\n", b.len()).as_bytes());
        v.extend_from_slice(b);
        v.extend_from_slice(b"\r\n0\r\n\r\n");
        v
    } else {
        let mut v = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }
}

fn pb_field(number: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(number << 3 | 2);
    let mut n = bytes.len();
    while n >= 0x80 {
        out.push((n as u8 & 0x7F) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(bytes);
}

/// One message as pushpull's binary mode encodes it: a `ResponseBatch` with one
/// `OutgoingMessage { id: the 26 digits of mid as 13 bytes, body, sender: BACKEND }`.
fn pb_message(id: u64, body: &str) -> Vec<u8> {
    let digits = mid(id);
    let id_bytes: Vec<u8> = (0..13)
        .map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut msg = Vec::new();
    pb_field(1, &id_bytes, &mut msg);
    pb_field(2, body.as_bytes(), &mut msg);
    msg.extend_from_slice(&[0x2a, 0x02, 0x08, 0x02]);
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    pb_field(1, &msg, &mut a);
    pb_field(1, &a, &mut b);
    pb_field(1, &b, &mut c);
    c
}

pub fn start(opts: Options) -> FakeServer {
    let fake = Arc::new(Fake {
        opts,
        store: Mutex::new(Store::default()),
        cv: Condvar::new(),
        stop: AtomicBool::new(false),
        masked_pongs: AtomicU64::new(0),
        pipelined: AtomicU64::new(0),
        held: AtomicBool::new(false),
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

/// Runs the load generator against `server` with `extra` arguments (and short bounds).
pub fn run_against(server: &FakeServer, extra: &[&str]) -> Report {
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
