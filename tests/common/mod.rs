//! Shared helpers of the integration tests: an in-process server on loopback ports, a small
//! blocking HTTP/1.1 client, a WebSocket client that masks its frames, publishing and parsing of
//! text-mode messages, and protobuf requests and answers of binary mode (spec/binary.md). Every wait is bounded by a deadline, so a broken server fails a test
//! instead of hanging it.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message as _;
use pushpull::config::{Config, ListenerConfig, ListenerKind, SignatureAlgo};
use pushpull::proto::channel::Signer;
use pushpull::proto::pb;
use pushpull::server::Server;
use serde_json::Value;

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);
/// Security key used by tests that turn signature checks on.
pub const KEY: &str = "integration-test-key";
/// Opening marker of a text-mode message.
pub const NMS: &str = "#!NGINXNMS!#";
/// Closing marker of a text-mode message.
pub const NME: &str = "#!NGINXNME!#";
/// `Expires` value of a long-poll 304.
pub const EXPIRES_1973: &str = "Thu, 01 Jan 1973 11:11:01 GMT";
/// A message id older than any the server hands out.
pub const MID_ZERO: &str = "00000000000000000000000000";

/// A deadline `d` from now.
pub fn deadline(d: Duration) -> Instant {
    Instant::now() + d
}

/// Polls `cond` every 10 ms until it holds; panics with `what` at the deadline.
pub fn wait_until(what: &str, d: Duration, mut cond: impl FnMut() -> bool) {
    let end = deadline(d);
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Server

/// An in-process server on loopback ports; stopped when dropped.
pub struct TestServer {
    server: Option<Server>,
    /// Subscriber listener.
    pub sub: SocketAddr,
    /// Publisher listener.
    pub publ: SocketAddr,
}

/// The tests' base configuration: two cores, loopback listeners on port 0, quiet logs and a short
/// shutdown grace so dropping a server is quick, and no online window after disconnects.
pub fn test_config() -> Config {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Config {
        threads: test_threads(),
        listeners: vec![
            ListenerConfig::plain(ListenerKind::Sub, loopback),
            ListenerConfig::plain(ListenerKind::Pub, loopback),
        ],
        shutdown_grace: Duration::from_millis(300),
        log_level: "warn".into(),
        // A channel counts as online only while connected, so subscriber counts fall to 0 at
        // once; tests of the online window set their own.
        online_ttl: Duration::from_millis(1),
        online_delta: Duration::from_millis(1),
        ..Config::default()
    }
}

/// Cores of the tests' servers: 2 (the engine on its own thread), or `PUSHPULL_TEST_THREADS`
/// (`.ci/run` runs the release suite again with 1: the engine inside the core's loop).
pub fn test_threads() -> usize {
    std::env::var("PUSHPULL_TEST_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// Starts a server with [`test_config`] changed by `f`.
pub fn start(f: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = test_config();
    f(&mut config);
    config.validate().expect("test configuration is valid");
    let server = Server::start(config).expect("server starts");
    let sub = server.addr(ListenerKind::Sub).expect("sub listener");
    let publ = server.addr(ListenerKind::Pub).expect("pub listener");
    TestServer {
        server: Some(server),
        sub,
        publ,
    }
}

/// Starts a server with the default test configuration.
pub fn start_default() -> TestServer {
    start(|_| {})
}

impl TestServer {
    /// `GET /server-stat/` parsed: the process object (first array element).
    pub fn stats(&self) -> Value {
        let r = request(self.publ, "GET", "/server-stat/", &[], b"");
        assert_eq!(r.status, 200, "server-stat: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).expect("server-stat is JSON");
        v.as_array()
            .and_then(|a| a.first())
            .cloned()
            .expect("server-stat is a one-element array")
    }

    /// Sum of a per-core counter over every core.
    pub fn core_sum(&self, name: &str) -> u64 {
        let stats = self.stats();
        stats["cores"]
            .as_array()
            .expect("cores")
            .iter()
            .map(|c| c[name].as_u64().unwrap_or(0))
            .sum()
    }

    /// Subscriber counts of `channels` (`GET /bitrix/pub/?CHANNEL_ID=a/b`).
    pub fn subscribers(&self, channels: &[&str]) -> Vec<u64> {
        let path = format!("/bitrix/pub/?CHANNEL_ID={}", channels.join("/"));
        let r = request(self.publ, "GET", &path, &[], b"");
        assert_eq!(r.status, 200, "channel info: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).expect("channel info is JSON");
        channels
            .iter()
            .map(|c| {
                v["infos"]
                    .as_array()
                    .expect("infos")
                    .iter()
                    .find(|i| i["channel"] == **c)
                    .and_then(|i| i["subscribers"].as_u64())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Waits until `channel` has exactly `n` subscribers (the engine has registered them, so a
    /// message published now reaches them).
    pub fn wait_subscribers(&self, channel: &str, n: u64) {
        let end = deadline(WAIT);
        loop {
            let last = self.subscribers(&[channel])[0];
            if last == n {
                return;
            }
            assert!(
                Instant::now() < end,
                "channel {channel}: {last} subscribers, want {n}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Publishes `body` to `channels` (slash-separated) with an optional `Message-Expiry`;
    /// asserts success and returns the message id.
    pub fn publish(&self, channels: &str, body: &str, expiry: Option<u32>) -> String {
        let r = publish_raw(self.publ, channels, body.as_bytes(), expiry);
        assert_eq!(r.status, 200, "publish: {}", r.text());
        mid_of(&r)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Channels

static NEXT_CHANNEL: AtomicU64 = AtomicU64::new(1);

/// A fresh private channel id (32 lower-case hex digits), unique in this process.
pub fn channel() -> String {
    let n = NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}{:016x}",
        u64::from(std::process::id()) << 16 | 0xc0de,
        n
    )
}

/// `<id>.<hex HMAC-SHA1 of id>` with `key`.
pub fn sign(key: &str, id: &str) -> String {
    format!(
        "{id}.{}",
        Signer::new(Some(key), SignatureAlgo::Sha1).sign(id.as_bytes())
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP client

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server will close after this response.
    pub fn closes(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// One client connection with a read buffer (responses may arrive together).
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// Why a read gave up.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The deadline passed.
    Timeout,
    /// The peer closed (or reset) the connection.
    Closed,
}

impl Conn {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes all of `data`.
    pub fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).expect("write to server");
    }

    /// Closes the sending side (the server reads end of stream).
    pub fn shutdown_write(&mut self) {
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
    }

    /// Reads more bytes into the buffer, waiting at most until `until`.
    pub fn fill(&mut self, until: Instant) -> Result<usize, ReadEnd> {
        let now = Instant::now();
        if now >= until {
            return Err(ReadEnd::Timeout);
        }
        let wait = (until - now).max(Duration::from_millis(1));
        self.stream
            .set_read_timeout(Some(wait))
            .expect("set timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ReadEnd::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(ReadEnd::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(0),
            Err(_) => Err(ReadEnd::Closed),
        }
    }

    /// Reads until `n` bytes are buffered, then takes them.
    pub fn take_exact(&mut self, n: usize, until: Instant) -> Result<Vec<u8>, ReadEnd> {
        while self.buf.len() < n {
            self.fill(until)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads one response; bodies are framed by `Content-Length`, absent for 1xx, 204 and 304,
    /// otherwise read to the end of the stream.
    pub fn try_response(&mut self, until: Instant) -> Result<Response, ReadEnd> {
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill(until)?;
        };
        let head: Vec<u8> = self.buf.drain(..head_end).collect();
        let head = String::from_utf8(head).expect("response head is UTF-8");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(
            parts.next(),
            Some("HTTP/1.1"),
            "status line {status_line:?}"
        );
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header has a colon");
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(response);
        }
        if let Some(len) = response.header("Content-Length") {
            let len: usize = len.parse().expect("Content-Length is a number");
            response.body = self.take_exact(len, until)?;
        } else {
            loop {
                match self.fill(until) {
                    Ok(_) => {}
                    Err(ReadEnd::Closed) => break,
                    Err(e) => return Err(e),
                }
            }
            response.body = std::mem::take(&mut self.buf);
        }
        Ok(response)
    }

    /// Reads one response and returns its exact bytes (head, and a body framed by
    /// `Content-Length` if the head has one).
    pub fn raw_response(&mut self) -> Vec<u8> {
        let until = deadline(WAIT);
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill(until).expect("a response head");
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let len: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.parse().expect("Content-Length"));
        self.take_exact(head_end + len, until)
            .expect("the response body")
    }

    /// Reads one response within [`WAIT`]; panics otherwise.
    pub fn response(&mut self) -> Response {
        self.try_response(deadline(WAIT)).expect("a response")
    }

    /// Whether the server closes the connection within `d` (any pending bytes are discarded).
    pub fn closed_within(&mut self, d: Duration) -> bool {
        let until = deadline(d);
        loop {
            match self.fill(until) {
                Ok(_) => self.buf.clear(),
                Err(ReadEnd::Closed) => return true,
                Err(ReadEnd::Timeout) => return false,
            }
        }
    }

    /// Asserts that nothing arrives for `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        let until = deadline(d);
        match self.fill(until) {
            Err(ReadEnd::Timeout) => {}
            Ok(_) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&self.buf)),
            Err(ReadEnd::Closed) => panic!("connection closed unexpectedly"),
        }
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Formats a request with `Host`, the given extra headers and a `Content-Length` when there is a
/// body (or the method is POST).
pub fn format_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Formats a request with `Host`, the given extra headers and `Transfer-Encoding: chunked`,
/// followed by `chunked_body`, already in chunk encoding (see [`chunked`]).
pub fn format_chunked_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    chunked_body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("Transfer-Encoding: chunked\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(chunked_body);
    out
}

/// `data` in chunk encoding (RFC 9112 §7.1): chunks of at most `size` bytes, then the last
/// chunk and an empty trailer section.
pub fn chunked(data: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in data.chunks(size.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Subscribers of `ch` as the pub listener at `publ` reports them (`GET /bitrix/pub/`; 0 when the
/// answer names none).
pub fn subscribers_at(publ: SocketAddr, ch: &str) -> u64 {
    let path = format!("/bitrix/pub/?CHANNEL_ID={ch}");
    let r = request(publ, "GET", &path, &[], b"");
    let v: Value = serde_json::from_slice(&r.body).expect("JSON");
    v["infos"][0]["subscribers"].as_u64().unwrap_or(0)
}

/// One request on a new connection; returns the response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut c = Conn::connect(addr);
    c.send(&format_request(method, path, headers, body));
    c.response()
}

/// Path of a long-poll on `channels` (already signed if needed) from `mid`.
pub fn poll_path(channels: &str, mid: Option<&str>) -> String {
    match mid {
        Some(mid) => format!("/bitrix/sub/?CHANNEL_ID={channels}&mid={mid}"),
        None => format!("/bitrix/sub/?CHANNEL_ID={channels}"),
    }
}

/// Starts a long-poll on a new connection; read the answer with [`Conn::response`].
pub fn start_poll(addr: SocketAddr, channels: &str, mid: Option<&str>) -> Conn {
    let mut c = Conn::connect(addr);
    c.send(&format_request("GET", &poll_path(channels, mid), &[], b""));
    c
}

/// A whole long-poll: request and answer.
pub fn poll(addr: SocketAddr, channels: &str, mid: Option<&str>) -> Response {
    start_poll(addr, channels, mid).response()
}

/// `POST /bitrix/pub/?CHANNEL_ID=<channels>` with `body` and an optional `Message-Expiry`.
pub fn publish_raw(addr: SocketAddr, channels: &str, body: &[u8], expiry: Option<u32>) -> Response {
    let expiry = expiry.map(|e| e.to_string());
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(e) = &expiry {
        headers.push(("Message-Expiry", e.as_str()));
    }
    request(
        addr,
        "POST",
        &format!("/bitrix/pub/?CHANNEL_ID={channels}"),
        &headers,
        body,
    )
}

/// The `mid` of a publish answer (`{"mid":"<26 digits>"}`), checked.
pub fn mid_of(r: &Response) -> String {
    let v: Value = serde_json::from_slice(&r.body).expect("publish answer is JSON");
    let mid = v["mid"]
        .as_str()
        .expect("publish answer has a mid")
        .to_owned();
    assert_eq!(mid.len(), 26, "mid {mid}");
    assert!(mid.bytes().all(|b| b.is_ascii_digit()), "mid {mid}");
    mid
}

// ---------------------------------------------------------------------------------------------
// Text-mode messages

/// One message of the text format.
#[derive(Debug, Clone)]
pub struct Msg {
    /// `id`: the 16-digit counter.
    pub id: u64,
    /// `mid`: 26 digits.
    pub mid: String,
    /// The whole parsed object.
    pub json: Value,
}

impl Msg {
    /// The `text` field (the published body).
    pub fn text(&self) -> &Value {
        &self.json["text"]
    }
}

/// Splits concatenated `#!NGINXNMS!#…#!NGINXNME!#` frames; panics on anything else.
pub fn parse_messages(body: &[u8]) -> Vec<Msg> {
    let text = std::str::from_utf8(body).expect("messages are UTF-8");
    let mut rest = text;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let inner = rest
            .strip_prefix(NMS)
            .unwrap_or_else(|| panic!("no start marker: {rest:?}"));
        let end = inner
            .find(NME)
            .unwrap_or_else(|| panic!("no end marker: {inner:?}"));
        let json: Value = serde_json::from_str(&inner[..end]).expect("message is JSON");
        let mid = json["mid"].as_str().expect("mid").to_owned();
        let id = json["id"].as_u64().expect("id");
        out.push(Msg { id, mid, json });
        rest = &inner[end + NME.len()..];
    }
    out
}

/// A small JSON body in the shape Bitrix publishes, tagged with `n`.
pub fn body(n: usize) -> String {
    format!(r#"{{"module_id":"test","command":"n","params":{{"n":{n}}},"extra":{{}}}}"#)
}

// ---------------------------------------------------------------------------------------------
// WebSocket client

/// The RFC 6455 sample key and its accept value.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// `Sec-WebSocket-Accept` for [`WS_KEY`].
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Frame opcodes.
pub mod op {
    /// Continuation.
    pub const CONT: u8 = 0;
    /// Text.
    pub const TEXT: u8 = 1;
    /// Binary.
    pub const BINARY: u8 = 2;
    /// Close.
    pub const CLOSE: u8 = 8;
    /// Ping.
    pub const PING: u8 = 9;
    /// Pong.
    pub const PONG: u8 = 10;
}

/// One server frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Payload (server frames are never masked).
    pub payload: Vec<u8>,
}

impl Frame {
    /// Close code and reason of a close frame.
    pub fn close(&self) -> (Option<u16>, String) {
        assert_eq!(self.opcode, op::CLOSE, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (None, String::new());
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        (
            Some(code),
            String::from_utf8_lossy(&self.payload[2..]).into_owned(),
        )
    }
}

/// A WebSocket client connection.
pub struct Ws {
    /// The connection (its buffer holds bytes after the 101).
    pub conn: Conn,
    /// Messages read but not yet taken.
    pub backlog: Vec<Msg>,
}

/// The upgrade request for `path`.
pub fn upgrade_request(path: &str, version: &str) -> Vec<u8> {
    format_request(
        "GET",
        path,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", WS_KEY),
            ("Sec-WebSocket-Version", version),
            ("Origin", "http://localhost"),
        ],
        b"",
    )
}

/// Path of a WebSocket subscription.
pub fn ws_path(channels: &str, mid: Option<&str>) -> String {
    match mid {
        Some(mid) => format!("/bitrix/subws/?CHANNEL_ID={channels}&mid={mid}"),
        None => format!("/bitrix/subws/?CHANNEL_ID={channels}"),
    }
}

impl Ws {
    /// Upgrades a new connection to `path`; returns the client and the server's handshake
    /// answer (asserted to be 101).
    pub fn connect_path(addr: SocketAddr, path: &str) -> (Self, Response) {
        let mut conn = Conn::connect(addr);
        conn.send(&upgrade_request(path, "13"));
        let r = conn.response();
        assert_eq!(r.status, 101, "upgrade refused: {r:?} {}", r.text());
        (
            Self {
                conn,
                backlog: Vec::new(),
            },
            r,
        )
    }

    /// Subscribes to `channels` from `mid`.
    pub fn connect(addr: SocketAddr, channels: &str, mid: Option<&str>) -> Self {
        Self::connect_path(addr, &ws_path(channels, mid)).0
    }

    /// Sends one frame, masked (as clients must) or not.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8], masked: bool) {
        self.conn.send(&client_frame(true, opcode, payload, masked));
    }

    /// Reads one frame by `until`.
    pub fn try_frame(&mut self, until: Instant) -> Result<Frame, ReadEnd> {
        loop {
            if let Some((n, frame)) = parse_server_frame(self.conn.buffered()) {
                self.conn.buf.drain(..n);
                return Ok(frame);
            }
            self.conn.fill(until)?;
        }
    }

    /// Reads one frame within [`WAIT`]; panics otherwise.
    pub fn frame(&mut self) -> Frame {
        self.try_frame(deadline(WAIT)).expect("a frame")
    }

    /// Reads frames, answering server pings, until `n` messages have arrived; returns exactly
    /// those (extras stay in the backlog).
    pub fn messages(&mut self, n: usize, d: Duration) -> Vec<Msg> {
        let until = deadline(d);
        while self.backlog.len() < n {
            match self.try_frame(until) {
                Ok(f) => self.absorb(f),
                Err(e) => panic!("{} of {n} messages, then {e:?}", self.backlog.len()),
            }
        }
        self.backlog.drain(..n).collect()
    }

    /// Handles a frame that arrived while waiting for messages.
    pub fn absorb(&mut self, f: Frame) {
        match f.opcode {
            op::TEXT => {
                assert!(f.fin, "server messages are single frames");
                self.backlog.extend(parse_messages(&f.payload));
            }
            op::PING => self.send_frame(op::PONG, &f.payload, true),
            _ => panic!("unexpected frame while waiting for messages: {f:?}"),
        }
    }

    /// Asserts that no message arrives for `d` (pings are answered).
    pub fn expect_no_message(&mut self, d: Duration) {
        assert!(
            self.backlog.is_empty(),
            "unexpected messages: {:?}",
            self.backlog
        );
        let until = deadline(d);
        loop {
            match self.try_frame(until) {
                Ok(f) => {
                    self.absorb(f);
                    assert!(
                        self.backlog.is_empty(),
                        "unexpected messages: {:?}",
                        self.backlog
                    );
                }
                Err(ReadEnd::Timeout) => return,
                Err(ReadEnd::Closed) => panic!("connection closed unexpectedly"),
            }
        }
    }

    /// Reads until a close frame (skipping messages and pings); returns its code and reason.
    pub fn expect_close(&mut self, d: Duration) -> (Option<u16>, String) {
        let until = deadline(d);
        loop {
            let f = self.try_frame(until).expect("a close frame");
            if f.opcode == op::CLOSE {
                return f.close();
            }
        }
    }
}

/// Encodes one client frame (mask key fixed; masking is what matters).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Parses one unmasked server frame from `buf`: `(consumed, frame)`, or `None` if incomplete.
/// Panics on a masked server frame (RFC 6455 §5.1).
pub fn parse_server_frame(buf: &[u8]) -> Option<(usize, Frame)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    assert_eq!(buf[0] & 0x70, 0, "server frame with RSV bits");
    let opcode = buf[0] & 0x0f;
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let (len, head) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (
                usize::try_from(u64::from_be_bytes(b)).expect("frame length"),
                10,
            )
        }
        n => (usize::from(n), 2),
    };
    if buf.len() < head + len {
        return None;
    }
    Some((
        head + len,
        Frame {
            fin,
            opcode,
            payload: buf[head..head + len].to_vec(),
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Binary mode (protobuf, spec/binary.md)

/// The 16 raw bytes of a 32-digit hex channel id.
pub fn raw_id(hex: &str) -> Vec<u8> {
    hex::decode(hex).expect("channel id is hex")
}

/// `<private>:<public>.<signature>` with `key` (channels.md §2).
pub fn sign_pair(key: &str, private: &str, public: &str) -> String {
    sign(key, &format!("{private}:{public}"))
}

/// The raw signature bytes of public channel `public` with `key`: HMAC-SHA1 of
/// `public:<hex>` (channels.md §3).
pub fn public_signature(key: &str, public: &str) -> Vec<u8> {
    let signer = Signer::new(Some(key), SignatureAlgo::Sha1);
    hex::decode(signer.sign(format!("public:{public}").as_bytes())).expect("hex signature")
}

/// A `RequestBatch` holding one request with `command`, encoded.
pub fn pb_request(command: pb::request::Command) -> Vec<u8> {
    pb::RequestBatch {
        requests: vec![pb::Request {
            command: Some(command),
        }],
    }
    .encode_to_vec()
}

/// A receiver: `id` (hex), private or public, with a raw signature (may be empty).
pub fn pb_receiver(id: &str, is_private: bool, signature: Vec<u8>) -> pb::Receiver {
    pb::Receiver {
        id: raw_id(id),
        is_private,
        signature,
    }
}

/// One `IncomingMessage` to `receivers` with `body`, `expiry` and statistics `type`.
pub fn pb_message(
    receivers: Vec<pb::Receiver>,
    body: &str,
    expiry: u32,
    kind: &str,
) -> pb::IncomingMessage {
    pb::IncomingMessage {
        receivers,
        sender: None,
        body: body.into(),
        expiry,
        r#type: kind.into(),
    }
}

/// An encoded `incomingMessages` request.
pub fn pb_publish(messages: Vec<pb::IncomingMessage>) -> Vec<u8> {
    pb_request(pb::request::Command::IncomingMessages(
        pb::IncomingMessagesRequest { messages },
    ))
}

/// An encoded `channelStats` request for `(hex id, is_private, signature)` entries.
pub fn pb_channel_stats(channels: &[(&str, bool, Vec<u8>)]) -> Vec<u8> {
    let channels = channels
        .iter()
        .map(|(id, is_private, signature)| pb::ChannelIdPb {
            id: raw_id(id),
            is_private: *is_private,
            signature: signature.clone(),
        })
        .collect();
    pb_request(pb::request::Command::ChannelStats(
        pb::ChannelStatsRequest { channels },
    ))
}

/// `POST /bitrix/pub/?binaryMode=true` with a protobuf body (the trusted API).
pub fn pb_post(addr: SocketAddr, body: &[u8]) -> Response {
    let headers = [("Content-Type", "application/octet-stream")];
    request(addr, "POST", "/bitrix/pub/?binaryMode=true", &headers, body)
}

/// `POST /rest/?CHANNEL_ID=<token>` with a protobuf body (browser publishing, binary.md §4).
pub fn pb_rest(addr: SocketAddr, token: &str, body: &[u8]) -> Response {
    let headers = [("Content-Type", "application/octet-stream")];
    let path = format!("/rest/?CHANNEL_ID={token}");
    request(addr, "POST", &path, &headers, body)
}

/// Decodes a `ResponseBatch`, panicking on bad bytes.
pub fn pb_decode(bytes: &[u8]) -> pb::ResponseBatch {
    pb::ResponseBatch::decode(bytes).expect("a ResponseBatch")
}

/// Every `OutgoingMessage` of a `ResponseBatch`, in order; panics on other responses.
pub fn pb_messages(bytes: &[u8]) -> Vec<pb::OutgoingMessage> {
    pb_decode(bytes)
        .responses
        .into_iter()
        .flat_map(|r| match r.command {
            Some(pb::response::Command::OutgoingMessages(m)) => m.messages,
            other => panic!("not outgoingMessages: {other:?}"),
        })
        .collect()
}

/// The `channelStats` entries of a `ResponseBatch` with one response.
pub fn pb_stats_of(bytes: &[u8]) -> Vec<pb::ChannelStats> {
    let batch = pb_decode(bytes);
    assert_eq!(batch.responses.len(), 1, "{batch:?}");
    match batch.responses.into_iter().next().and_then(|r| r.command) {
        Some(pb::response::Command::ChannelStats(s)) => s.channels,
        other => panic!("not channelStats: {other:?}"),
    }
}

/// Online flags of `channels` (`(hex id, is_private)`) by a trusted `channelStats` request.
pub fn pb_online(addr: SocketAddr, channels: &[(&str, bool)]) -> Vec<bool> {
    let list: Vec<(&str, bool, Vec<u8>)> = channels.iter().map(|(c, p)| (*c, *p, vec![])).collect();
    let r = pb_post(addr, &pb_channel_stats(&list));
    assert_eq!(r.status, 200, "channelStats: {}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    let stats = pb_stats_of(&r.body);
    assert_eq!(stats.len(), channels.len(), "{stats:?}");
    stats
        .iter()
        .zip(channels)
        .map(|(s, (id, is_private))| {
            assert_eq!(s.id, raw_id(id), "channelStats answers in request order");
            assert_eq!(s.is_private, *is_private);
            s.is_online
        })
        .collect()
}

impl Ws {
    /// Reads frames, answering pings, until a binary data frame; returns its payload.
    pub fn binary_frame(&mut self, d: Duration) -> Vec<u8> {
        let until = deadline(d);
        loop {
            match self.try_frame(until) {
                Ok(f) if f.opcode == op::BINARY => {
                    assert!(f.fin, "server messages are single frames");
                    return f.payload;
                }
                Ok(f) if f.opcode == op::PING => self.send_frame(op::PONG, &f.payload, true),
                Ok(f) => panic!("expected a binary frame, got {f:?}"),
                Err(e) => panic!("expected a binary frame, then {e:?}"),
            }
        }
    }

    /// Asserts that no data frame arrives for `d` (pings are answered; a close fails).
    pub fn expect_no_frame(&mut self, d: Duration) {
        let until = deadline(d);
        loop {
            match self.try_frame(until) {
                Ok(f) if f.opcode == op::PING => self.send_frame(op::PONG, &f.payload, true),
                Ok(f) => panic!("unexpected frame: {f:?}"),
                Err(ReadEnd::Timeout) => return,
                Err(ReadEnd::Closed) => panic!("connection closed unexpectedly"),
            }
        }
    }
}
