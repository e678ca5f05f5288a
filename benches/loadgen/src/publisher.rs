//! Publisher threads: each keeps one keep-alive HTTP connection and POSTs the messages of the
//! channels it owns (`c % K == p`), one request in flight, so every channel's messages reach the
//! server in sequence order.

use std::collections::BTreeMap;
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
    /// First request sent / last acceptance received.
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
    })
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sends `req` and reads the answer; returns the status.
fn exchange(conn: &mut Conn, req: &[u8], until: Instant) -> Result<(u16, Persistence), String> {
    conn.stream
        .write_all(req)
        .map_err(|e| format!("write: {:?}", e.kind()))?;
    let mut chunk = [0u8; 4096];
    let mut read_more = |conn: &mut Conn| -> Result<(), String> {
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => return Err("closed by server".to_owned()),
                Ok(n) => {
                    conn.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if timed_out(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    if Instant::now() >= until {
                        return Err("timeout".to_owned());
                    }
                }
                Err(e) => return Err(format!("read: {:?}", e.kind())),
            }
        }
    };
    let head = loop {
        match parse_response_head(&conn.buf, DEFAULT_MAX_HEAD_BYTES) {
            Err(e) => return Err(e.reason().to_owned()),
            Ok(Some((n, head))) => {
                conn.buf.drain(..n);
                break head;
            }
            Ok(None) => read_more(conn)?,
        }
    };
    let mut dec = BodyDecoder::new(head.framing);
    let mut sink = Vec::new();
    loop {
        let (n, progress) = dec
            .feed(&conn.buf, &mut sink)
            .map_err(|e| e.reason().to_owned())?;
        conn.buf.drain(..n);
        sink.clear();
        if progress == BodyProgress::Done {
            return Ok((head.status, head.persistence));
        }
        match read_more(conn) {
            Err(e) if e == "closed by server" => {
                dec.finish_on_eof().map_err(|e| e.reason().to_owned())?;
                return Ok((head.status, Persistence::Close));
            }
            other => other?,
        }
    }
}

/// Runs publisher `p` until its share is sent, the duration ends, or the run stops.
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
    let mut conn: Option<Conn> = None;
    for seq in schedule(
        owned_channels(p, plan.publishers, plan.channels),
        plan.channels,
    ) {
        if let Amount::Messages(m) = plan.amount
            && seq >= m
        {
            break;
        }
        loop {
            let now = Instant::now();
            if shared.should_stop(now) || end.is_some_and(|e| now >= e) {
                return r;
            }
            if gate.try_take(now) {
                break;
            }
            let wait = gate.next_due().saturating_duration_since(now);
            std::thread::sleep(wait.clamp(Duration::from_micros(50), DEFAULT_PACING_SLEEP));
        }
        let ch = seq % plan.channels;
        let remaining = shared.deadline.saturating_duration_since(Instant::now());
        let timeout = DEFAULT_PUBLISH_TIMEOUT
            .min(remaining)
            .max(Duration::from_millis(10));
        if conn.is_none() {
            match open(plan.pub_addr, timeout) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    r.attempted += 1;
                    r.errors += 1;
                    *r.error_reasons
                        .entry(format!("connect: {:?}", e.kind()))
                        .or_insert(0) += 1;
                    std::thread::sleep(DEFAULT_RECONNECT_DELAY);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        shared.issue(seq);
        let ts = unix_micros();
        let t0 = Instant::now();
        let body = encode_body(seq, ch, ts, plan.payload_bytes);
        let req = publish_request(&plan.pub_target(ch), plan.expiry, &host, &body);
        r.attempted += 1;
        let first = r.span.map_or(t0, |(a, _)| a);
        match exchange(c, &req, t0 + timeout) {
            Ok((status, keep)) if plan.publish_accepted(status) => {
                let now = Instant::now();
                r.accepted.push(seq);
                if let Some(b) = r.series.at(now) {
                    b.publishes += 1;
                }
                r.ack_latency.saturating_record(
                    u64::try_from(now.duration_since(t0).as_micros()).unwrap_or(u64::MAX),
                );
                r.span = Some((first, now));
                if keep == Persistence::Close {
                    conn = None;
                }
            }
            Ok((status, keep)) => {
                r.errors += 1;
                *r.error_reasons
                    .entry(format!("status {status}"))
                    .or_insert(0) += 1;
                if keep == Persistence::Close {
                    conn = None;
                }
            }
            Err(reason) => {
                r.errors += 1;
                *r.error_reasons.entry(reason).or_insert(0) += 1;
                conn = None;
                std::thread::sleep(DEFAULT_RECONNECT_DELAY);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

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
