//! A small client for the cluster tests that survives its server going away: HTTP requests that
//! report failures instead of panicking, publishing, and reconnecting subscribers (WebSocket and
//! long poll) that remember their last `mid` and resume from it, each on its own thread. Every
//! read and connect has a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{
    KEY, Response, client_frame, find, format_request, op, parse_messages, parse_server_frame,
    poll_path, sign, upgrade_request, ws_path,
};

/// Connect timeout of every connection.
const CONNECT_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for a whole answer to a short request (publish, statistics).
pub const REQUEST_WAIT: Duration = Duration::from_secs(5);
/// Slice of a blocking read: subscribers look at their stop flag this often.
const READ_SLICE: Duration = Duration::from_millis(100);
/// Pause before a subscriber tries again after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// A subscriber thread ends after this long whatever happens, so a test cannot hang on it.
const SUBSCRIBER_LIFETIME: Duration = Duration::from_secs(60);

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The connection could not be opened.
    Connect,
    /// The peer closed or reset the connection before the answer was complete.
    Closed,
    /// The deadline passed.
    Timeout,
    /// An answer that is not the expected one.
    Status(u16),
    /// Bytes that do not parse.
    Malformed,
}

/// A connection with a read buffer.
pub struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    /// Connects within [`CONNECT_WAIT`].
    pub fn connect(addr: SocketAddr) -> Result<Self, HttpError> {
        let stream =
            TcpStream::connect_timeout(&addr, CONNECT_WAIT).map_err(|_| HttpError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    /// Writes all of `data`.
    pub fn send(&mut self, data: &[u8]) -> Result<(), HttpError> {
        self.stream.write_all(data).map_err(|_| HttpError::Closed)
    }

    /// Reads more bytes, waiting at most until `until`.
    fn fill(&mut self, until: Instant) -> Result<(), HttpError> {
        let now = Instant::now();
        if now >= until {
            return Err(HttpError::Timeout);
        }
        let _ = self
            .stream
            .set_read_timeout(Some((until - now).max(Duration::from_millis(1))));
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(HttpError::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(HttpError::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(_) => Err(HttpError::Closed),
        }
    }

    /// Reads one response by `until`. Bodies are framed by `Content-Length`; 1xx, 204 and 304
    /// have none; otherwise the body runs to the end of the stream. Nothing is consumed until
    /// the response is complete, so a timed-out call can be repeated.
    pub fn response(&mut self, until: Instant) -> Result<Response, HttpError> {
        let mut closed = false;
        loop {
            if let Some(r) = self.complete_response(closed)? {
                return Ok(r);
            }
            if closed {
                return Err(HttpError::Closed);
            }
            match self.fill(until) {
                Ok(()) => {}
                Err(HttpError::Closed) => closed = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// The buffered response, taken from the buffer once complete (`closed`: the stream ended).
    fn complete_response(&mut self, closed: bool) -> Result<Option<Response>, HttpError> {
        let Some(pos) = find(&self.buf, b"\r\n\r\n") else {
            return Ok(None);
        };
        let head_end = pos + 4;
        let head = std::str::from_utf8(&self.buf[..pos]).map_err(|_| HttpError::Malformed)?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| {
                l.strip_prefix("HTTP/1.1 ")
                    .or_else(|| l.strip_prefix("HTTP/1.0 "))
            })
            .and_then(|l| l.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or(HttpError::Malformed)?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let body_len = if (100..200).contains(&status) || status == 204 || status == 304 {
            0
        } else {
            match r.header("Content-Length").map(str::parse::<usize>) {
                Some(Ok(len)) => len,
                Some(Err(_)) => return Err(HttpError::Malformed),
                None if closed => self.buf.len() - head_end,
                None => return Ok(None),
            }
        };
        if self.buf.len() < head_end + body_len {
            return Ok(None);
        }
        r.body = self.buf[head_end..head_end + body_len].to_vec();
        self.buf.drain(..head_end + body_len);
        Ok(Some(r))
    }
}

/// One request on a new connection (closed after it), answered within [`REQUEST_WAIT`].
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    let mut c = Reader::connect(addr)?;
    c.send(&format_request(method, path, &all, body))?;
    c.response(Instant::now() + REQUEST_WAIT)
}

/// The outcome of one publish.
#[derive(Debug, Clone)]
pub struct Published {
    /// The publish's tag (`params.n` of the body).
    pub n: u64,
    /// The HTTP status, or why there was none.
    pub status: Result<u16, HttpError>,
    /// The `mid` of a `200`.
    pub mid: Option<String>,
}

/// The body of publish `n`.
pub fn body(n: u64) -> String {
    format!(r#"{{"module_id":"cluster","command":"n","params":{{"n":{n}}},"extra":{{}}}}"#)
}

/// Publishes message `n` to `channel` with `Message-Expiry: expiry` through `addr`.
pub fn publish(addr: SocketAddr, channel: &str, n: u64, expiry: u32) -> Published {
    let expiry = expiry.to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("Message-Expiry", expiry.as_str()),
    ];
    let path = format!("/bitrix/pub/?CHANNEL_ID={channel}");
    match request(addr, "POST", &path, &headers, body(n).as_bytes()) {
        Ok(r) => {
            let mid = (r.status == 200).then(|| {
                let v: serde_json::Value =
                    serde_json::from_slice(&r.body).expect("a publish answer is JSON");
                let mid = v["mid"].as_str().expect("a publish answer has a mid");
                assert!(
                    mid.len() == 26 && mid.bytes().all(|b| b.is_ascii_digit()),
                    "mid {mid}"
                );
                mid.to_owned()
            });
            Published {
                n,
                status: Ok(r.status),
                mid,
            }
        }
        Err(e) => Published {
            n,
            status: Err(e),
            mid: None,
        },
    }
}

/// How a subscriber listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A WebSocket, reconnected with `mid` when it closes.
    WebSocket,
    /// A long-poll loop: a new connection per request, each with the last `mid`.
    LongPoll,
}

/// One message as a subscriber received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    /// Its `mid`.
    pub mid: String,
    /// The publish's tag.
    pub n: u64,
}

/// What a subscriber has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Messages in arrival order.
    pub got: Vec<Got>,
    /// Successful connections (WebSocket: 101 answers; long poll: answered polls).
    pub connects: u32,
    /// Failed attempts: refused or cut connections, error answers.
    pub failures: u32,
}

/// A subscriber on its own thread.
pub struct Subscriber {
    /// How it listens.
    pub kind: Kind,
    /// Its channel (unsigned id).
    pub channel: String,
    /// A second channel only this subscriber listens on: a node reporting it online proves the
    /// subscription was registered (spec/cluster.md §6: the mark is set after registering).
    pub marker: String,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Starts listening on `channel` through `addr`, from `mid` (none: live messages only).
    pub fn spawn(kind: Kind, addr: SocketAddr, channel: &str, mid: Option<&str>) -> Self {
        let record = Arc::new(Mutex::new(Record::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let marker = crate::common::channel();
        let mut state = Loop {
            addr,
            token: format!("{}/{}", sign(KEY, channel), sign(KEY, &marker)),
            mid: mid.map(str::to_owned),
            record: record.clone(),
            stop: stop.clone(),
            end: Instant::now() + SUBSCRIBER_LIFETIME,
        };
        let handle = std::thread::Builder::new()
            .name(format!("sub-{channel}"))
            .spawn(move || match kind {
                Kind::WebSocket => state.websocket(),
                Kind::LongPoll => state.long_poll(),
            })
            .expect("spawn a subscriber thread");
        Self {
            kind,
            channel: channel.to_owned(),
            marker,
            record,
            stop,
            handle: Some(handle),
        }
    }

    /// A copy of what it has seen so far.
    pub fn snapshot(&self) -> Record {
        self.record.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Stops the thread and returns its record; a panic of the thread fails the caller.
    pub fn finish(mut self) -> Record {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take()
            && let Err(e) = h.join()
        {
            std::panic::resume_unwind(e);
        }
        self.snapshot()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The state of a subscriber thread.
struct Loop {
    addr: SocketAddr,
    token: String,
    mid: Option<String>,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    end: Instant,
}

impl Loop {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Acquire) && Instant::now() < self.end
    }

    fn with(&self, f: impl FnOnce(&mut Record)) {
        if let Ok(mut r) = self.record.lock() {
            f(&mut r);
        }
    }

    /// Records the messages of a text body; the last one's `mid` is where to resume.
    fn take(&mut self, body: &[u8]) {
        let msgs = parse_messages(body);
        let got: Vec<Got> = msgs
            .iter()
            .map(|m| Got {
                mid: m.mid.clone(),
                n: m.text()["params"]["n"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("a message without params.n: {}", m.json)),
            })
            .collect();
        if let Some(last) = got.last() {
            self.mid = Some(last.mid.clone());
        }
        self.with(|r| r.got.extend(got));
    }

    fn failed(&self) {
        self.with(|r| r.failures += 1);
        std::thread::sleep(RETRY_PAUSE);
    }

    /// Reconnects until stopped: each session upgrades with the last `mid`.
    fn websocket(&mut self) {
        while self.running() {
            let _ = self.ws_session();
            if self.running() {
                self.failed();
            }
        }
    }

    /// One WebSocket connection, until it ends or the thread is stopped.
    fn ws_session(&mut self) -> Result<(), HttpError> {
        let mut c = Reader::connect(self.addr)?;
        c.send(&upgrade_request(
            &ws_path(&self.token, self.mid.as_deref()),
            "13",
        ))?;
        let r = c.response(Instant::now() + REQUEST_WAIT)?;
        if r.status != 101 {
            return Err(HttpError::Status(r.status));
        }
        self.with(|r| r.connects += 1);
        while self.running() {
            let frame = match parse_server_frame(&c.buf) {
                Some((n, frame)) => {
                    c.buf.drain(..n);
                    frame
                }
                None => match c.fill(Instant::now() + READ_SLICE) {
                    Ok(()) | Err(HttpError::Timeout) => continue,
                    Err(e) => return Err(e),
                },
            };
            match frame.opcode {
                op::TEXT => {
                    assert!(frame.fin, "server messages are single frames");
                    self.take(&frame.payload);
                }
                op::PING => c.send(&client_frame(true, op::PONG, &frame.payload, true))?,
                op::CLOSE => return Err(HttpError::Closed),
                other => panic!("unexpected frame opcode {other}: {frame:?}"),
            }
        }
        let _ = c.send(&client_frame(true, op::CLOSE, &1000u16.to_be_bytes(), true));
        Ok(())
    }

    /// Polls until stopped, each request on a new connection with the last `mid`.
    fn long_poll(&mut self) {
        while self.running() {
            match self.poll_once() {
                Ok(()) => {}
                Err(_) if !self.running() => {}
                Err(_) => self.failed(),
            }
        }
    }

    /// One long poll: `200` messages, or a `304` with the `Last-Message-Id` to send next.
    fn poll_once(&mut self) -> Result<(), HttpError> {
        let mut c = Reader::connect(self.addr)?;
        let path = poll_path(&self.token, self.mid.as_deref());
        c.send(&format_request(
            "GET",
            &path,
            &[("Connection", "close")],
            b"",
        ))?;
        let r = loop {
            match c.response(Instant::now() + READ_SLICE) {
                Ok(r) => break r,
                Err(HttpError::Timeout) if self.running() => {}
                Err(e) => return Err(e),
            }
        };
        match r.status {
            200 => {
                self.take(&r.body);
                self.with(|r| r.connects += 1);
                Ok(())
            }
            304 => {
                let last = r.header("Last-Message-Id").unwrap_or_default();
                if last.len() == 26 && self.mid.as_deref().is_none_or(|m| last > m) {
                    self.mid = Some(last.to_owned());
                }
                self.with(|r| r.connects += 1);
                Ok(())
            }
            s => Err(HttpError::Status(s)),
        }
    }
}
