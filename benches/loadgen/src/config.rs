//! Command line, the validated run plan, channel ids and their signatures.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use hmac::{Hmac, Mac};
use serde::Serialize;

/// Default connections opened per second.
///
/// High enough to connect 10,000 subscribers in a couple of seconds, low enough not to overflow a
/// default listen backlog (4096 on current kernels) with SYNs while the server is busy.
pub const DEFAULT_CONNECT_RATE: u64 = 5_000;

/// Default most connections of one client thread that are opened but not yet subscribed.
///
/// Bounds the SYNs and upgrade requests in flight per thread so that a slow server sees a steady
/// queue instead of a burst it answers with resets.
pub const DEFAULT_MAX_PENDING_CONNECTS: usize = 512;

/// Most source addresses taken from `--source-addrs` / `--source-range`.
///
/// Each source address gives about 28,000 ephemeral ports; far fewer than this are ever needed in one
/// process, which is bounded by its open-files limit anyway.
pub const DEFAULT_MAX_SOURCE_ADDRS: usize = 4096;

/// File descriptors the process needs besides the client sockets (stdio, epoll instances, wakers,
/// the result file, publisher reconnects in flight).
pub const DEFAULT_FD_RESERVE: u64 = 64;

/// Most client threads; more than this only adds contention on a small machine.
pub const DEFAULT_MAX_THREADS: usize = 256;

/// Default length of one time-series interval, milliseconds.
///
/// One point per second is fine enough to see a backlog build up during a run of tens of seconds
/// and coarse enough that every interval holds thousands of deliveries.
pub const DEFAULT_SERIES_MS: u64 = 1000;

/// Most publish requests in flight on one publisher connection (`--pipeline`).
///
/// A server that takes pipelined publishes in batches (pushpull parks up to 256 per connection)
/// delivers several messages per write when many are in flight; deeper pipelines only queue
/// requests in the server's socket buffer.
pub const DEFAULT_MAX_PIPELINE: usize = 256;

/// Most server processes sampled (`--server-pid`): an nginx master and its workers fit easily.
pub const DEFAULT_MAX_SERVER_PIDS: usize = 64;

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Connect subscribers, publish, check that every subscriber got every message.
    Delivery,
    /// Connect subscribers and hold them for `--hold` seconds (connection capacity and memory).
    Connect,
}

/// Which kind of server is measured: it decides the URLs, the publish answer and the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// pushpull or another Bitrix push server: `CHANNEL_ID=…`, `200` on publish,
    /// `#!NGINXNMS!#` units (or protobuf batches with `--format binary`), `mid` to resume.
    Pushpull,
    /// nginx with nchan: `id=…`, `201`/`202` on publish, the raw body per WebSocket frame or
    /// long-poll answer, `Last-Modified`/`Etag` to resume.
    Nchan,
}

/// How a pushpull subscriber asks for its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `#!NGINXNMS!#{json}#!NGINXNME!#` units in text frames / bodies.
    Text,
    /// `binaryMode=true`: protobuf `ResponseBatch` in binary frames / octet-stream bodies.
    Binary,
}

/// How a delivered payload holds messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A stream of `#!NGINXNMS!#…#!NGINXNME!#` units (units may span frames).
    Nms,
    /// One protobuf `ResponseBatch` per WebSocket message or long-poll body.
    Protobuf,
    /// One raw published body per WebSocket message or long-poll body (nchan).
    Plain,
}

/// How subscribers listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket on `/bitrix/subws/`.
    Ws,
    /// HTTP long polling on `/bitrix/sub/`.
    Longpoll,
}

/// Command-line arguments of `pushpull-loadgen`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "pushpull-loadgen",
    version,
    about = "Load generator for pushpull / Bitrix push servers"
)]
pub struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Delivery)]
    pub mode: Mode,
    /// Kind of server (URLs, publish answer, framing, resume).
    #[arg(long, value_enum, default_value_t = Target::Pushpull)]
    pub target: Target,
    /// Message format of pushpull subscribers.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Subscriber address of the server.
    #[arg(long, default_value = "127.0.0.1:8010")]
    pub sub_addr: SocketAddr,
    /// Publisher address of the server.
    #[arg(long, default_value = "127.0.0.1:9010")]
    pub pub_addr: SocketAddr,
    /// Subscriber transport.
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,
    /// Subscribe path (pushpull: `/bitrix/subws/` for ws, `/bitrix/sub/` for longpoll; nchan:
    /// `/sub`).
    #[arg(long)]
    pub sub_path: Option<String>,
    /// Publish path (pushpull: `/bitrix/pub/`; nchan: `/pub`).
    #[arg(long)]
    pub pub_path: Option<String>,
    /// Number of subscribers (0 in delivery mode: publish only).
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// Number of channels; subscriber j listens on channel j % C.
    #[arg(long, default_value_t = 10)]
    pub channels: u64,
    /// Client threads in this process, each with its own poller.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Source addresses bound round-robin before connect (comma separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "source_range")]
    pub source_addrs: Vec<IpAddr>,
    /// Inclusive IPv4 source range, e.g. 127.0.0.1-127.0.0.20.
    #[arg(long)]
    pub source_range: Option<String>,
    /// Connections opened per second (all threads together).
    #[arg(long, default_value_t = DEFAULT_CONNECT_RATE)]
    pub connect_rate: u64,
    /// Messages to publish in total, round robin over channels (default 1000).
    #[arg(long, conflicts_with = "duration")]
    pub messages: Option<u64>,
    /// Publish for this many seconds instead of a message count.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Publishes per second, all publishers together (0 = as fast as the server accepts).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Keep-alive publisher connections (each owns channels c % K).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Publish requests in flight per publisher connection (HTTP/1.1 pipelining), so that a fixed
    /// `--rate` holds while answers are slow.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// `Message-Expiry` header value, seconds.
    #[arg(long, default_value_t = 0)]
    pub expiry: u32,
    /// Pad every published body to this many bytes.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Hard bound on the whole run, seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Longest wait for deliveries after the last publish, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// Pause between "all subscribed" and the first publish, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub settle_ms: u64,
    /// Connect mode: how long to hold the connections, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Write the JSON result here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Signature key: subscribers send `<id>.<hex HMAC-SHA1(key, id)>`.
    #[arg(long, env = "LOADGEN_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Sample RSS and CPU time of these server processes (comma separated, e.g. an nginx master
    /// and its workers; the samples are added up).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Channel i is `format!("{:032x}", i + seed)` (default: random per run, fresh channels).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most unsubscribed connections in flight per thread.
    #[arg(long, default_value_t = DEFAULT_MAX_PENDING_CONNECTS)]
    pub max_pending: usize,
    /// Length of one interval of the time series, milliseconds.
    #[arg(long, default_value_t = DEFAULT_SERIES_MS)]
    pub series_ms: u64,
    /// Write an SVG chart of latency and throughput over time here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write `{"ready":N,"failed":M}` here once every subscriber is ready or failed (lets a
    /// script that runs several processes know when all of them hold their connections).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// How much to publish.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Amount {
    /// This many messages in total.
    Messages(u64),
    /// For this many seconds.
    Seconds(f64),
}

/// A validated run plan (serialized into the result file; the key is never written).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// What to measure.
    pub mode: Mode,
    /// Kind of server.
    pub target: Target,
    /// pushpull message format.
    pub format: Format,
    /// Subscriber transport.
    pub transport: Transport,
    /// Subscriber address.
    pub sub_addr: SocketAddr,
    /// Publisher address.
    pub pub_addr: SocketAddr,
    /// Subscribe path.
    pub sub_path: String,
    /// Publish path.
    pub pub_path: String,
    /// Subscribers.
    pub subscribers: u64,
    /// Channels.
    pub channels: u64,
    /// Client threads.
    pub threads: usize,
    /// Source addresses (empty: let the kernel choose).
    pub source_addrs: Vec<IpAddr>,
    /// Connections per second (0 = unbounded).
    pub connect_rate: u64,
    /// How much to publish.
    pub amount: Amount,
    /// Publishes per second (0 = as fast as accepted).
    pub rate: u64,
    /// Publisher connections (at most one per channel).
    pub publishers: usize,
    /// Requests in flight per publisher connection.
    pub pipeline: usize,
    /// `Message-Expiry`.
    pub expiry: u32,
    /// Body size.
    pub payload_bytes: usize,
    /// Hard bound on the run, seconds.
    pub timeout_secs: f64,
    /// Drain bound, seconds.
    pub drain_timeout_secs: f64,
    /// Settle pause, milliseconds.
    pub settle_ms: u64,
    /// Connect-mode hold, seconds.
    pub hold_secs: f64,
    /// Channel id seed.
    pub seed: u64,
    /// Whether subscribers sign their channel ids.
    pub signed: bool,
    /// First server process sampled.
    pub server_pid: Option<u32>,
    /// Every server process sampled.
    pub server_pids: Vec<u32>,
    /// Pending-connection bound per thread.
    pub max_pending: usize,
    /// Time-series interval, milliseconds.
    pub series_ms: u64,
    /// Result file.
    pub out: Option<PathBuf>,
    /// Chart file.
    pub plot: Option<PathBuf>,
    /// Ready file.
    pub ready_file: Option<PathBuf>,
    #[serde(skip)]
    key: Option<String>,
}

/// A command line that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A count that must be positive is zero.
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
    /// A duration that must be positive and finite is not.
    #[error("--{0} must be a positive number of seconds")]
    BadSeconds(&'static str),
    /// Options that do not go together.
    #[error("{0}")]
    Conflict(&'static str),
    /// A count above its bound.
    #[error("--{0} is at most {1}")]
    TooLarge(&'static str, usize),
    /// `--source-range` unreadable.
    #[error("--source-range: {0}")]
    BadRange(String),
    /// More client sockets than the open-files limit allows.
    #[error(
        "{need} file descriptors needed but the open-files limit is {limit}: run at most {max_subscribers} subscribers per process and start more processes"
    )]
    TooManyFds {
        /// Sockets plus reserve.
        need: u64,
        /// Soft `RLIMIT_NOFILE`.
        limit: u64,
        /// Most subscribers this process can hold with the other settings unchanged.
        max_subscribers: u64,
    },
}

fn seconds(v: f64, name: &'static str) -> Result<f64, ConfigError> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(v)
    } else {
        Err(ConfigError::BadSeconds(name))
    }
}

impl Plan {
    /// Validates `args`; `default_seed` is used when `--seed` is absent.
    pub fn from_args(args: Args, default_seed: u64) -> Result<Self, ConfigError> {
        // Publishing without subscribers measures the publish API alone; holding nothing is no run.
        let min_subscribers = u64::from(args.mode == Mode::Connect);
        if args.subscribers < min_subscribers {
            return Err(ConfigError::Zero("subscribers"));
        }
        for (v, name) in [
            (args.channels, "channels"),
            (args.threads as u64, "threads"),
            (args.publishers as u64, "publishers"),
            (args.max_pending as u64, "max-pending"),
            (args.series_ms, "series-ms"),
            (args.pipeline as u64, "pipeline"),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let amount = match (args.duration, args.messages) {
            (Some(d), _) => Amount::Seconds(seconds(d, "duration")?),
            (None, m) => Amount::Messages(m.unwrap_or(1000)),
        };
        let source_addrs = match &args.source_range {
            Some(r) => parse_source_range(r)?,
            None => args.source_addrs.clone(),
        };
        if source_addrs.len() > DEFAULT_MAX_SOURCE_ADDRS {
            return Err(ConfigError::BadRange(format!(
                "more than {DEFAULT_MAX_SOURCE_ADDRS} addresses"
            )));
        }
        if args.target == Target::Nchan && args.format == Format::Binary {
            return Err(ConfigError::Conflict(
                "--format binary is pushpull's protobuf mode; nchan has no such format",
            ));
        }
        if args.pipeline > DEFAULT_MAX_PIPELINE {
            return Err(ConfigError::TooLarge("pipeline", DEFAULT_MAX_PIPELINE));
        }
        if args.server_pid.len() > DEFAULT_MAX_SERVER_PIDS {
            return Err(ConfigError::Conflict("too many --server-pid values"));
        }
        let sub_path = args.sub_path.clone().unwrap_or_else(|| {
            match (args.target, args.transport) {
                (Target::Pushpull, Transport::Ws) => "/bitrix/subws/",
                (Target::Pushpull, Transport::Longpoll) => "/bitrix/sub/",
                (Target::Nchan, _) => "/sub",
            }
            .to_owned()
        });
        let pub_path = args.pub_path.clone().unwrap_or_else(|| {
            match args.target {
                Target::Pushpull => "/bitrix/pub/",
                Target::Nchan => "/pub",
            }
            .to_owned()
        });
        let publishers = usize::try_from(args.channels)
            .unwrap_or(usize::MAX)
            .min(args.publishers);
        Ok(Self {
            mode: args.mode,
            target: args.target,
            format: args.format,
            transport: args.transport,
            sub_addr: args.sub_addr,
            pub_addr: args.pub_addr,
            sub_path,
            pub_path,
            subscribers: args.subscribers,
            channels: args.channels,
            threads: args.threads.min(DEFAULT_MAX_THREADS),
            source_addrs,
            connect_rate: args.connect_rate,
            amount,
            rate: args.rate,
            publishers,
            pipeline: args.pipeline,
            expiry: args.expiry,
            payload_bytes: args.payload_bytes,
            timeout_secs: seconds(args.timeout, "timeout")?,
            drain_timeout_secs: seconds(args.drain_timeout, "drain-timeout")?,
            settle_ms: args.settle_ms,
            hold_secs: seconds(args.hold, "hold")?,
            seed: args.seed.unwrap_or(default_seed),
            signed: args.key.is_some(),
            server_pid: args.server_pid.first().copied(),
            server_pids: args.server_pid,
            max_pending: args.max_pending,
            series_ms: args.series_ms,
            out: args.out,
            plot: args.plot,
            ready_file: args.ready_file,
            key: args.key,
        })
    }

    /// Checks that the sockets of this plan fit under the open-files limit `limit`.
    pub fn check_fds(&self, limit: u64) -> Result<(), ConfigError> {
        let overhead = self.publishers as u64 + 2 * self.threads as u64 + DEFAULT_FD_RESERVE;
        let need = self.subscribers + overhead;
        if need > limit {
            Err(ConfigError::TooManyFds {
                need,
                limit,
                max_subscribers: limit.saturating_sub(overhead),
            })
        } else {
            Ok(())
        }
    }

    /// Hex id of channel index `i`.
    pub fn channel_id(&self, i: u64) -> String {
        channel_id(i, self.seed)
    }

    /// The `CHANNEL_ID` value a subscriber of channel index `i` sends (signed when a key is set).
    pub fn sub_channel_param(&self, i: u64) -> String {
        let id = self.channel_id(i);
        match &self.key {
            Some(k) => sign_channel(&id, k),
            None => id,
        }
    }

    /// The hard bound on the run.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }

    /// The time-series interval.
    pub fn series_interval(&self) -> Duration {
        Duration::from_millis(self.series_ms)
    }

    /// How delivered payloads hold messages.
    pub fn framing(&self) -> Framing {
        match (self.target, self.format) {
            (Target::Nchan, _) => Framing::Plain,
            (Target::Pushpull, Format::Text) => Framing::Nms,
            (Target::Pushpull, Format::Binary) => Framing::Protobuf,
        }
    }

    /// Path and query a subscriber of channel index `i` asks for (long-poll resume comes on top).
    pub fn sub_target(&self, i: u64) -> String {
        match (self.target, self.format) {
            (Target::Nchan, _) => format!("{}?id={}", self.sub_path, self.channel_id(i)),
            (Target::Pushpull, Format::Text) => {
                format!("{}?CHANNEL_ID={}", self.sub_path, self.sub_channel_param(i))
            }
            (Target::Pushpull, Format::Binary) => format!(
                "{}?CHANNEL_ID={}&binaryMode=true",
                self.sub_path,
                self.sub_channel_param(i)
            ),
        }
    }

    /// Path and query of a publish to channel index `i`.
    pub fn pub_target(&self, i: u64) -> String {
        match self.target {
            Target::Pushpull => format!("{}?CHANNEL_ID={}", self.pub_path, self.channel_id(i)),
            Target::Nchan => format!("{}?id={}", self.pub_path, self.channel_id(i)),
        }
    }

    /// Whether a publish answered `status` was accepted: pushpull answers `200`; nchan `201`
    /// (queued for subscribers) or `202` (queued, nobody listening).
    pub fn publish_accepted(&self, status: u16) -> bool {
        match self.target {
            Target::Pushpull => status == 200,
            Target::Nchan => status == 201 || status == 202,
        }
    }
}

/// Channel `i` as 32 lower-case hex digits: `format!("{:032x}", i + seed)` (128-bit, no overflow).
pub fn channel_id(i: u64, seed: u64) -> String {
    format!("{:032x}", u128::from(i) + u128::from(seed))
}

/// `<id>.<hex HMAC-SHA1(key, id)>`, as the PHP side's `SignChannel` makes it.
pub fn sign_channel(id: &str, key: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()) else {
        return id.to_owned();
    };
    mac.update(id.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(id.len() + 1 + digest.len() * 2);
    out.push_str(id);
    out.push('.');
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Parses an inclusive IPv4 range `a.b.c.d-e.f.g.h`.
pub fn parse_source_range(s: &str) -> Result<Vec<IpAddr>, ConfigError> {
    let bad = |why: &str| ConfigError::BadRange(format!("{s:?}: {why}"));
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| bad("expected FIRST-LAST"))?;
    let a: Ipv4Addr = a
        .trim()
        .parse()
        .map_err(|_| bad("first is not an IPv4 address"))?;
    let b: Ipv4Addr = b
        .trim()
        .parse()
        .map_err(|_| bad("last is not an IPv4 address"))?;
    let (a, b) = (u32::from(a), u32::from(b));
    if b < a {
        return Err(bad("last before first"));
    }
    if (b - a) as usize >= DEFAULT_MAX_SOURCE_ADDRS {
        return Err(bad("range too large"));
    }
    Ok((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from([&["pushpull-loadgen"], extra].concat()).expect("parses")
    }

    #[test]
    fn channel_ids_and_signatures() {
        assert_eq!(channel_id(0, 1), "00000000000000000000000000000001");
        assert_eq!(
            channel_id(u64::MAX, u64::MAX),
            "0000000000000001fffffffffffffffe"
        );
        // RFC 2202 test case 2: HMAC-SHA1("Jefe", "what do ya want for nothing?").
        assert_eq!(
            sign_channel("what do ya want for nothing?", "Jefe"),
            "what do ya want for nothing?.effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn ranges() {
        let r = parse_source_range("127.0.0.254-127.0.1.1").expect("ok");
        assert_eq!(r.len(), 4);
        assert_eq!(r[3], IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)));
        assert!(parse_source_range("127.0.0.2-127.0.0.1").is_err());
        assert!(parse_source_range("127.0.0.1").is_err());
        assert!(parse_source_range("x-127.0.0.1").is_err());
        assert!(parse_source_range("10.0.0.0-10.255.255.255").is_err());
    }

    #[test]
    fn plan_from_args() {
        let p = Plan::from_args(
            args(&["--subscribers", "10", "--channels", "3", "--key", "k"]),
            7,
        )
        .expect("ok");
        assert_eq!(p.sub_path, "/bitrix/subws/");
        assert_eq!(p.publishers, 3);
        assert_eq!(p.amount, Amount::Messages(1000));
        assert_eq!(p.seed, 7);
        assert!(
            p.sub_channel_param(1)
                .starts_with("00000000000000000000000000000008.")
        );
        let json = serde_json::to_string(&p).expect("json");
        assert!(!json.contains("\"key\""));
        let p = Plan::from_args(
            args(&[
                "--transport",
                "longpoll",
                "--duration",
                "2",
                "--source-range",
                "127.0.0.1-127.0.0.3",
            ]),
            0,
        )
        .expect("ok");
        assert_eq!(p.sub_path, "/bitrix/sub/");
        assert_eq!(p.amount, Amount::Seconds(2.0));
        assert_eq!(p.source_addrs.len(), 3);
        assert!(Plan::from_args(args(&["--subscribers", "0", "--mode", "connect"]), 0).is_err());
        assert!(Plan::from_args(args(&["--subscribers", "0"]), 0).is_ok());
        assert!(Plan::from_args(args(&["--series-ms", "0"]), 0).is_err());
        assert!(Plan::from_args(args(&["--pipeline", "0"]), 0).is_err());
        assert!(Plan::from_args(args(&["--pipeline", "257"]), 0).is_err());
        assert_eq!(
            Plan::from_args(args(&["--pipeline", "8"]), 0)
                .expect("ok")
                .pipeline,
            8
        );
        assert!(Plan::from_args(args(&["--timeout=-1"]), 0).is_err());
        let big = Plan::from_args(args(&["--subscribers", "19990"]), 0).expect("ok");
        assert!(matches!(
            big.check_fds(20_000),
            Err(ConfigError::TooManyFds { .. })
        ));
        assert!(p.check_fds(20_000).is_ok());
    }

    #[test]
    fn targets_and_formats() {
        let p = Plan::from_args(args(&["--channels", "3"]), 1).expect("ok");
        assert_eq!(p.framing(), Framing::Nms);
        assert_eq!(
            p.sub_target(1),
            "/bitrix/subws/?CHANNEL_ID=00000000000000000000000000000002"
        );
        assert_eq!(
            p.pub_target(0),
            "/bitrix/pub/?CHANNEL_ID=00000000000000000000000000000001"
        );
        assert!(p.publish_accepted(200) && !p.publish_accepted(201));
        let p = Plan::from_args(args(&["--format", "binary", "--transport", "longpoll"]), 1)
            .expect("ok");
        assert_eq!(p.framing(), Framing::Protobuf);
        assert!(p.sub_target(0).starts_with("/bitrix/sub/?CHANNEL_ID="));
        assert!(p.sub_target(0).ends_with("&binaryMode=true"));
        let p = Plan::from_args(
            args(&[
                "--target",
                "nchan",
                "--server-pid",
                "10,11",
                "--plot",
                "x.svg",
            ]),
            1,
        )
        .expect("ok");
        assert_eq!(p.framing(), Framing::Plain);
        assert_eq!(p.sub_target(0), "/sub?id=00000000000000000000000000000001");
        assert_eq!(p.pub_target(0), "/pub?id=00000000000000000000000000000001");
        assert!(p.publish_accepted(201) && p.publish_accepted(202) && !p.publish_accepted(200));
        assert_eq!((p.server_pid, p.server_pids.len()), (Some(10), 2));
        assert!(Plan::from_args(args(&["--target", "nchan", "--format", "binary"]), 1).is_err());
    }
}
