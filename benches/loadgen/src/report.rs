//! The result of a run: the JSON file and the one-line summary.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::{Mode, Plan};
use crate::procstat::ProcSample;
use crate::series::SeriesPoint;

/// Percentiles of a latency histogram, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Reads `h` (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every phase finished.
    Complete,
    /// The hard timeout hit while subscribers were still connecting.
    ConnectTimedOut,
    /// Publishing was cut by the hard timeout.
    PublishTimedOut,
    /// Not every subscriber had every message when the drain bound passed.
    DrainTimedOut,
}

/// Subscriber connections.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectStats {
    /// Subscribers planned.
    pub attempted: u64,
    /// Subscribers that got a 101 / had a poll in flight.
    pub ready: u64,
    /// Subscribers that never did.
    pub failures: u64,
    /// Why.
    pub failure_reasons: BTreeMap<String, u64>,
    /// First connect → last ready, seconds.
    pub seconds: f64,
    /// `ready / seconds`.
    pub rate_per_sec: f64,
    /// Ready subscribers that lost their connection for good.
    pub disconnects: u64,
    /// Why (long-poll retries appear as `retried: …`).
    pub disconnect_reasons: BTreeMap<String, u64>,
    /// Connections open at the end.
    pub alive_at_end: u64,
}

/// Publishing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishStats {
    /// Requests sent.
    pub attempted: u64,
    /// Answered 200.
    pub accepted: u64,
    /// Not answered 200.
    pub errors: u64,
    /// Why.
    pub error_reasons: BTreeMap<String, u64>,
    /// First request → last 200, seconds.
    pub seconds: f64,
    /// `accepted / seconds`.
    pub rate_per_sec: f64,
    /// Request → 200 time, µs.
    pub ack_latency_us: Percentiles,
}

/// Deliveries to ready subscribers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryStats {
    /// Σ over ready subscribers of the messages accepted on their channel.
    pub expected: u64,
    /// Of those, received at least once.
    pub received: u64,
    /// `expected - received`.
    pub lost: u64,
    /// Repeated deliveries.
    pub duplicates: u64,
    /// First deliveries after a later message of the channel.
    pub out_of_order: u64,
    /// Delivered although the publish was not answered 200.
    pub extra: u64,
    /// Another channel's messages.
    pub misrouted: u64,
    /// Sequence numbers never published.
    pub bogus: u64,
    /// Units that were not load-generator messages.
    pub undecodable: u64,
    /// Stream-level errors.
    pub protocol_errors: u64,
    /// Every delivery read, duplicates included.
    pub total_deliveries: u64,
    /// Long-poll responses read.
    pub polls: u64,
    /// Long-poll responses that carried messages.
    pub data_polls: u64,
    /// `data_polls / seconds`: completed polls per second while messages flowed.
    pub polls_per_sec: f64,
    /// Long-poll requests retried after an error.
    pub poll_errors: u64,
    /// Pongs sent for server pings.
    pub pongs: u64,
    /// Ready subscribers that received every expected message.
    pub complete_subscribers: u64,
    /// Accepted messages that every ready subscriber of their channel received.
    pub complete_messages: u64,
    /// First publish → last delivery, seconds.
    pub seconds: f64,
    /// `total_deliveries / seconds`.
    pub rate_per_sec: f64,
}

/// Server process samples (several processes are added up).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerStats {
    /// Process id (the first one given).
    pub pid: u32,
    /// Every process sampled.
    pub pids: Vec<u32>,
    /// Before the first connection.
    pub before: Option<ProcSample>,
    /// When publishing started (all subscribers connected).
    pub at_publish: Option<ProcSample>,
    /// With all subscribers still connected, after the drain.
    pub after: Option<ProcSample>,
    /// `after.rss_kb - before.rss_kb`.
    pub rss_delta_kb: i64,
    /// CPU seconds the server used during the run.
    pub cpu_seconds: f64,
    /// CPU seconds from the first publish to the end of the drain.
    pub publish_cpu_seconds: f64,
    /// `rss_delta_kb` per ready subscriber, bytes.
    pub rss_bytes_per_subscriber: Option<f64>,
    /// `publish_cpu_seconds` per delivery, µs.
    pub cpu_us_per_delivery: Option<f64>,
}

impl ServerStats {
    /// Fills the deltas from the two samples.
    pub fn new(pid: u32, before: Option<ProcSample>, after: Option<ProcSample>) -> Self {
        let (rss_delta_kb, cpu_seconds) = match (before, after) {
            (Some(b), Some(a)) => (
                i64::try_from(a.rss_kb).unwrap_or(i64::MAX)
                    - i64::try_from(b.rss_kb).unwrap_or(i64::MAX),
                a.cpu_seconds() - b.cpu_seconds(),
            ),
            _ => (0, 0.0),
        };
        Self {
            pid,
            pids: vec![pid],
            before,
            after,
            rss_delta_kb,
            cpu_seconds,
            ..Self::default()
        }
    }

    /// Adds the publish-start sample and the per-subscriber and per-delivery figures.
    pub fn with_load(
        mut self,
        at_publish: Option<ProcSample>,
        ready: u64,
        deliveries: u64,
    ) -> Self {
        self.at_publish = at_publish;
        if let (Some(p), Some(a)) = (at_publish, self.after) {
            self.publish_cpu_seconds = a.cpu_seconds() - p.cpu_seconds();
            if deliveries > 0 {
                self.cpu_us_per_delivery = Some(self.publish_cpu_seconds * 1e6 / deliveries as f64);
            }
        }
        if ready > 0 && self.after.is_some() && self.before.is_some() {
            self.rss_bytes_per_subscriber = Some(self.rss_delta_kb as f64 * 1024.0 / ready as f64);
        }
        self
    }
}

/// The load generator's own CPU use: when it is near a core per thread, the generator and not the
/// server may be what limits the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GeneratorStats {
    /// CPU seconds of this process from the first publish to the end of the drain.
    pub publish_cpu_seconds: f64,
    /// `publish_cpu_seconds` per delivery, µs.
    pub cpu_us_per_delivery: Option<f64>,
}

impl GeneratorStats {
    /// From this process's samples at publish start and after the drain.
    pub fn new(own: (Option<ProcSample>, Option<ProcSample>), deliveries: u64) -> Self {
        let publish_cpu_seconds = match own {
            (Some(a), Some(b)) => b.cpu_seconds() - a.cpu_seconds(),
            _ => 0.0,
        };
        Self {
            publish_cpu_seconds,
            cpu_us_per_delivery: (deliveries > 0 && own.0.is_some())
                .then(|| publish_cpu_seconds * 1e6 / deliveries as f64),
        }
    }
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `pushpull-loadgen`.
    pub tool: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// What was run.
    pub plan: Plan,
    /// How it ended.
    pub outcome: Outcome,
    /// The exit-code verdict (see [`Report::verdict`]).
    pub ok: bool,
    /// Wall time of the run, seconds.
    pub elapsed_secs: f64,
    /// Subscriber connections.
    pub connect: ConnectStats,
    /// Publishing.
    pub publish: PublishStats,
    /// Deliveries.
    pub delivery: DeliveryStats,
    /// Publish → receive latency of first deliveries, µs.
    pub latency_us: Percentiles,
    /// Per complete message: publish → its last subscriber has it, µs (the broadcast figure).
    pub last_delivery_us: Percentiles,
    /// Server samples when `--server-pid` was given.
    pub server: Option<ServerStats>,
    /// The load generator's own CPU use.
    pub generator: GeneratorStats,
    /// What happened in each interval (`--series-ms`).
    pub series: Vec<SeriesPoint>,
}

impl Report {
    /// Success: no connect failure, no loss, no duplicate, no publish error; in connect mode also
    /// no disconnect.
    pub fn verdict(&self) -> bool {
        let base = self.connect.failures == 0
            && self.delivery.lost == 0
            && self.delivery.duplicates == 0
            && self.publish.errors == 0;
        match self.plan.mode {
            Mode::Delivery => base,
            Mode::Connect => base && self.connect.disconnects == 0,
        }
    }

    /// The one-line summary printed on stdout.
    pub fn summary_line(&self) -> String {
        let c = &self.connect;
        let d = &self.delivery;
        let l = &self.latency_us;
        let mut s = format!(
            "subs={} ready={} connect_fail={} delivered={}/{} lost={} dup={} ooo={} p50={}us p90={}us p99={}us p999={}us max={}us rate={:.0}/s pub={}/{} pub_err={} pub_rate={:.0}/s connect_rate={:.0}/s",
            c.attempted,
            c.ready,
            c.failures,
            d.received,
            d.expected,
            d.lost,
            d.duplicates,
            d.out_of_order,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            d.rate_per_sec,
            self.publish.accepted,
            self.publish.attempted,
            self.publish.errors,
            self.publish.rate_per_sec,
            c.rate_per_sec,
        );
        if d.data_polls > 0 {
            s.push_str(&format!(" polls={:.0}/s", d.polls_per_sec));
        }
        if self.last_delivery_us.count > 0 {
            s.push_str(&format!(
                " last_p50={}us last_p99={}us",
                self.last_delivery_us.p50, self.last_delivery_us.p99
            ));
        }
        if let Some(sv) = &self.server
            && let Some(a) = sv.after
        {
            s.push_str(&format!(
                " server_rss={}kB server_cpu={:.2}s",
                a.rss_kb, sv.cpu_seconds
            ));
            if let Some(b) = sv.rss_bytes_per_subscriber {
                s.push_str(&format!(" rss/sub={b:.0}B"));
            }
            if let Some(c) = sv.cpu_us_per_delivery {
                s.push_str(&format!(" cpu/delivery={c:.2}us"));
            }
        }
        if let Some(c) = self.generator.cpu_us_per_delivery {
            s.push_str(&format!(" gen_cpu/delivery={c:.2}us"));
        }
        s.push_str(&format!(
            " outcome={} {}",
            serde_json::to_value(self.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            if self.ok { "OK" } else { "FAIL" }
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::new_histogram;

    #[test]
    fn percentiles() {
        let mut h = new_histogram();
        assert_eq!(Percentiles::of(&h), Percentiles::default());
        for v in 1..=1000 {
            h.saturating_record(v);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(p.min, 1);
        assert!((499..=501).contains(&p.p50), "{}", p.p50);
        assert!((989..=991).contains(&p.p99), "{}", p.p99);
        assert!(p.max >= 1000 && p.max <= 1001);
    }

    #[test]
    fn server_deltas() {
        let b = ProcSample {
            rss_kb: 1000,
            utime_ticks: 100,
            ..ProcSample::default()
        };
        let a = ProcSample {
            rss_kb: 800,
            utime_ticks: 150,
            stime_ticks: 50,
            ..ProcSample::default()
        };
        let s = ServerStats::new(1, Some(b), Some(a));
        assert_eq!(s.rss_delta_kb, -200);
        assert!((s.cpu_seconds - 1.0).abs() < 1e-9);
        let mid = ProcSample {
            utime_ticks: 120,
            ..b
        };
        let s = s.with_load(Some(mid), 100, 400_000);
        // 80 ticks = 0.8 s over 400,000 deliveries; -200 kB over 100 subscribers.
        assert!((s.publish_cpu_seconds - 0.8).abs() < 1e-9);
        assert!((s.cpu_us_per_delivery.expect("cpu") - 2.0).abs() < 1e-9);
        assert!((s.rss_bytes_per_subscriber.expect("rss") + 2048.0).abs() < 1e-9);
        let g = GeneratorStats::new((Some(b), Some(a)), 1_000_000);
        assert!((g.publish_cpu_seconds - 1.0).abs() < 1e-9);
        assert!((g.cpu_us_per_delivery.expect("cpu") - 1.0).abs() < 1e-9);
        assert_eq!(
            GeneratorStats::new((None, Some(a)), 5).cpu_us_per_delivery,
            None
        );
        let none = ServerStats::new(1, None, Some(a)).with_load(None, 5, 5);
        assert_eq!(
            (none.cpu_us_per_delivery, none.rss_bytes_per_subscriber),
            (None, None)
        );
        assert_eq!(ServerStats::new(1, None, Some(a)).rss_delta_kb, 0);
    }
}
