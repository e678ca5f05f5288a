//! Publisher threads: each keeps one keep-alive HTTP connection and POSTs the messages of the
//! channels it owns (`c % K == p`) in sequence order, one request in flight or several pipelined
//! (`--pipeline`; answers come back in order), so every channel's messages reach the server in
//! sequence order.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Amount, Plan};
use crate::http::{
    BodyDecoder, BodyProgress, DEFAULT_MAX_HEAD_BYTES, Persistence, parse_response_head,
    publish_request,
};
use crate::net::unix_micros;
use crate::nms::encode_body;
use crate::rate::RateGate;
use crate::series::SeriesRec;
use crate::shared::{Shared, new_histogram};

/// Longest wait for one publish answer (and for connecting).
///
/// The server answers after the engine accepted the message, normally in well under a millisecond;
/// 10 s marks a stuck server without ending a run over a hiccup.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Read timeout of a publisher socket: how often a waiting publisher rechecks the run's deadline.
pub const DEFAULT_IO_TICK: Duration = Duration::from_millis(200);

/// Pause after a failed connection before the next attempt, so a dead server is not hammered.
pub const DEFAULT_RECONNECT_DELAY: Duration = Duration::from_millis(50);

/// Longest sleep while waiting for the rate gate (keeps the deadline checks frequent).
pub const DEFAULT_PACING_SLEEP: Duration = Duration::from_millis(10);

/// What one publisher did.
#[derive(Debug)]
pub struct PublisherReport {
    /// Requests sent.
    pub attempted: u64,
    /// Sequence numbers accepted (pushpull: `200`; nchan: `201`/`202`).
    pub accepted: Vec<u64>,
    /// Requests not accepted.
    pub errors: u64,
    /// Why (`status 503`, `read: ConnectionReset`, `timeout` …).
    pub error_reasons: BTreeMap<String, u64>,
    /// Request → acceptance time, µs.
    pub ack_latency: Histogram<u64>,
    /// First accepted request sent / last acceptance received.
    pub span: Option<(Instant, Instant)>,
    /// Acceptances per interval.
    pub series: SeriesRec,
}

/// The channel indices publisher `p` of `k` owns.
pub fn owned_channels(p: usize, k: usize, channels: u64) -> Vec<u64> {
    let k = k.max(1) as u64;
    (0..channels).filter(|c| c % k == p as u64).collect()
}

/// The sequence numbers a publisher owning `owned` sends, in order: round `r`, channel `c` is
/// `r * channels + c` (strictly increasing; ends before overflowing).
pub fn schedule(owned: Vec<u64>, channels: u64) -> impl Iterator<Item = u64> {
    let rounds = if owned.is_empty() { 0 } else { u64::MAX };
    (0..rounds)
        .map_while(move |round| round.checked_mul(channels))
        .flat_map(move |base| {
            owned
                .clone()
                .into_iter()
                .filter_map(move |c| base.checked_add(c))
        })
}

struct Conn {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
    /// The read timeout currently set on the socket.
    read_timeout: Duration,
}

fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_tcp_nodelay(true)?;
    sock.connect_timeout(&addr.into(), timeout)?;
    let stream = std::net::TcpStream::from(sock);
    stream.set_read_timeout(Some(DEFAULT_IO_TICK))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(Conn {
        stream,
        buf: Vec::with_capacity(4096),
        read_timeout: DEFAULT_IO_TICK,
    })
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Takes one whole response off the front of `buf`: its status and persistence, or `None` while
/// it is incomplete. `eof` completes a body delimited by the end of the stream.
pub fn take_response(buf: &mut Vec<u8>, eof: bool) -> Result<Option<(u16, Persistence)>, String> {
    let Some((n, head)) =
        parse_response_head(buf, DEFAULT_MAX_HEAD_BYTES).map_err(|e| e.reason().to_owned())?
    else {
        return Ok(None);
    };
    let mut dec = BodyDecoder::new(head.framing);
    let mut sink = Vec::new();
    let (m, progress) = dec
        .feed(&buf[n..], &mut sink)
        .map_err(|e| e.reason().to_owned())?;
    match progress {
        BodyProgress::Done => {
            buf.drain(..n + m);
            Ok(Some((head.status, head.persistence)))
        }
        BodyProgress::More if eof => {
            dec.finish_on_eof().map_err(|e| e.reason().to_owned())?;
            buf.clear();
            Ok(Some((head.status, Persistence::Close)))
        }
        BodyProgress::More => Ok(None),
    }
}

/// Reads until a whole response is there (`Some`) or `until` passes (`None`).
fn next_response(conn: &mut Conn, until: Instant) -> Result<Option<(u16, Persistence)>, String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(done) = take_response(&mut conn.buf, false)? {
            return Ok(Some(done));
        }
        let now = Instant::now();
        if now >= until {
            return Ok(None);
        }
        // Wake up no later than `until` (a due publish), and at least every tick.
        let wait = (until - now).clamp(Duration::from_millis(1), DEFAULT_IO_TICK);
        if wait != conn.read_timeout {
            conn.stream
                .set_read_timeout(Some(wait))
                .map_err(|e| format!("read: {:?}", e.kind()))?;
            conn.read_timeout = wait;
        }
        match conn.stream.read(&mut chunk) {
            Ok(0) => {
                return match take_response(&mut conn.buf, true)? {
                    Some(done) => Ok(Some(done)),
                    None => Err("closed by server".to_owned()),
                };
            }
            Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
            Err(e) if timed_out(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {:?}", e.kind())),
        }
    }
}

/// A request sent and not yet answered.
struct Sent {
    seq: u64,
    t0: Instant,
    /// When it counts as unanswered.
    until: Instant,
}

impl PublisherReport {
    fn fail(&mut self, reason: String) {
        self.errors += 1;
        *self.error_reasons.entry(reason).or_insert(0) += 1;
    }

    /// Every request in flight failed for `reason`.
    fn fail_all(&mut self, inflight: &mut VecDeque<Sent>, reason: &str) {
        for _ in inflight.drain(..) {
            self.fail(reason.to_owned());
        }
    }
}

/// Runs publisher `p` until its share is sent and answered, the duration ends, or the run stops.
///
/// Up to `plan.pipeline` requests are in flight on the connection (HTTP/1.1 pipelining: answers
/// come back in order), so a fixed rate holds even when an answer takes longer than the interval
/// between publishes; with 1 the publisher waits for each answer.
pub fn run_publisher(
    p: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    gate: Arc<RateGate>,
    start: Instant,
) -> PublisherReport {
    let mut r = PublisherReport {
        attempted: 0,
        accepted: Vec::new(),
        errors: 0,
        error_reasons: BTreeMap::new(),
        ack_latency: new_histogram(),
        span: None,
        series: SeriesRec::new(shared.start, shared.series_interval),
    };
    let host = plan.pub_addr.to_string();
    let end = match plan.amount {
        Amount::Seconds(s) => Some(start + Duration::from_secs_f64(s)),
        Amount::Messages(_) => None,
    };
    let limit = match plan.amount {
        Amount::Messages(m) => m,
        Amount::Seconds(_) => u64::MAX,
    };
    let mut seqs = schedule(
        owned_channels(p, plan.publishers, plan.channels),
        plan.channels,
    )
    .take_while(|seq| *seq < limit);
    let mut next = seqs.next();
    let depth = plan.pipeline.max(1);
    let mut inflight: VecDeque<Sent> = VecDeque::with_capacity(depth);
    let mut conn: Option<Conn> = None;
    loop {
        let now = Instant::now();
        if now >= shared.deadline {
            r.fail_all(&mut inflight, "timeout");
            return r;
        }
        let publishing = next.is_some() && !shared.should_stop(now) && end.is_none_or(|e| now < e);
        if publishing && inflight.len() < depth && gate.try_take(now) {
            let Some(seq) = next else {
                continue;
            };
            next = seqs.next();
            let remaining = shared.deadline.saturating_duration_since(now);
            let timeout = DEFAULT_PUBLISH_TIMEOUT
                .min(remaining)
                .max(Duration::from_millis(10));
            r.attempted += 1;
            if conn.is_none() {
                match open(plan.pub_addr, timeout) {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        r.fail(format!("connect: {:?}", e.kind()));
                        std::thread::sleep(DEFAULT_RECONNECT_DELAY);
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else {
                continue;
            };
            shared.issue(seq);
            let ch = seq % plan.channels;
            let ts = unix_micros();
            let t0 = Instant::now();
            let body = encode_body(seq, ch, ts, plan.payload_bytes);
            let req = publish_request(&plan.pub_target(ch), plan.expiry, &host, &body);
            if let Err(e) = c.stream.write_all(&req) {
                let reason = format!("write: {:?}", e.kind());
                r.fail(reason.clone());
                r.fail_all(&mut inflight, &reason);
                conn = None;
                std::thread::sleep(DEFAULT_RECONNECT_DELAY);
                continue;
            }
            inflight.push_back(Sent {
                seq,
                t0,
                until: t0 + timeout,
            });
            continue;
        }
        let (Some(front), Some(c)) = (inflight.front(), conn.as_mut()) else {
            if !publishing {
                return r;
            }
            let wait = gate.next_due().saturating_duration_since(now);
            std::thread::sleep(wait.clamp(Duration::from_micros(50), DEFAULT_PACING_SLEEP));
            continue;
        };
        // Wait for the oldest answer; while more may be sent, only until the next one is due.
        let until = if publishing && inflight.len() < depth {
            gate.next_due()
                .max(now + Duration::from_micros(50))
                .min(front.until)
        } else {
            front.until
        };
        let answered_by = front.until;
        match next_response(c, until) {
            Ok(Some((status, keep))) => {
                let Some(sent) = inflight.pop_front() else {
                    continue;
                };
                let now = Instant::now();
                if plan.publish_accepted(status) {
                    r.accepted.push(sent.seq);
                    if let Some(b) = r.series.at(now) {
                        b.publishes += 1;
                    }
                    r.ack_latency.saturating_record(
                        u64::try_from(now.duration_since(sent.t0).as_micros()).unwrap_or(u64::MAX),
                    );
                    r.span = Some((r.span.map_or(sent.t0, |(a, _)| a), now));
                } else {
                    r.fail(format!("status {status}"));
                }
                if keep == Persistence::Close {
                    r.fail_all(&mut inflight, "closed by server");
                    conn = None;
                }
            }
            Ok(None) if Instant::now() >= answered_by => {
                r.fail_all(&mut inflight, "timeout");
                conn = None;
            }
            Ok(None) => {}
            Err(reason) => {
                r.fail_all(&mut inflight, &reason);
                conn = None;
                std::thread::sleep(DEFAULT_RECONNECT_DELAY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_taken_one_by_one() {
        let mut buf = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKHTTP/1.1 201 Created\r\n\
            Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\nHTTP/1.1 503 Busy\r\nConnection: close\r\n\r\nbu"
            .to_vec();
        assert_eq!(
            take_response(&mut buf, false),
            Ok(Some((200, Persistence::KeepAlive)))
        );
        assert_eq!(
            take_response(&mut buf, false),
            Ok(Some((201, Persistence::KeepAlive)))
        );
        // The last body runs until the connection closes.
        assert_eq!(take_response(&mut buf, false), Ok(None));
        assert_eq!(
            take_response(&mut buf, true),
            Ok(Some((503, Persistence::Close)))
        );
        assert!(buf.is_empty());
        let mut cut = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab".to_vec();
        assert_eq!(take_response(&mut cut, false), Ok(None));
        assert!(take_response(&mut cut, true).is_err());
        assert_eq!(take_response(&mut b"HTTP/1.1 20".to_vec(), false), Ok(None));
    }

    #[test]
    fn channels_are_partitioned() {
        let k = 3;
        let mut all: Vec<u64> = (0..k).flat_map(|p| owned_channels(p, k, 10)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(owned_channels(1, 3, 10), vec![1, 4, 7]);
        assert!(owned_channels(5, 6, 3).is_empty());
    }

    #[test]
    fn schedule_is_round_robin_and_increasing() {
        let s: Vec<u64> = schedule(vec![1, 4, 7], 10).take(6).collect();
        assert_eq!(s, vec![1, 4, 7, 11, 14, 17]);
        // Every seq below M appears exactly once over all publishers.
        let m = 95;
        let mut all: Vec<u64> = (0..4)
            .flat_map(|p| schedule(owned_channels(p, 4, 7), 7).take_while(|s| *s < m))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..m).collect::<Vec<_>>());
        assert_eq!(schedule(vec![0], u64::MAX).take(5).count(), 2);
        assert_eq!(schedule(Vec::new(), 3).take(1).count(), 0);
    }
}
