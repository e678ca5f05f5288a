//! The time series: what happened in each interval of the run (deliveries, publishes, polls,
//! latency percentiles, server RSS and CPU).
//!
//! Every thread records into its own [`SeriesRec`]; the coordinator merges them and adds the
//! server samples taken by the sampler thread at the interval boundaries.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::procstat::ProcSample;
use crate::shared::DEFAULT_MAX_LATENCY_US;

/// Most intervals recorded; later events are not put in the series (the totals still count
/// them). An hour of one-second points.
pub const DEFAULT_MAX_SERIES_POINTS: usize = 3600;

/// Significant figures of the per-interval latency histograms (1 % resolution keeps each one
/// near 26 KiB, where the 0.1 % of the run's histogram would take 190 KiB).
pub const DEFAULT_SERIES_SIGFIG: u8 = 2;

/// A fresh per-interval latency histogram.
pub fn new_series_histogram() -> Histogram<u64> {
    // Constant bounds that satisfy the crate's requirements; no input reaches this call.
    Histogram::new_with_bounds(1, DEFAULT_MAX_LATENCY_US, DEFAULT_SERIES_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// What one thread saw in one interval.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Subscribers that became ready.
    pub ready: u64,
    /// Deliveries read (duplicates included).
    pub deliveries: u64,
    /// Long-poll answers carrying messages.
    pub polls: u64,
    /// Publishes accepted.
    pub publishes: u64,
    /// Latency of first deliveries, µs.
    pub latency: Histogram<u64>,
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            ready: 0,
            deliveries: 0,
            polls: 0,
            publishes: 0,
            latency: new_series_histogram(),
        }
    }
}

/// One thread's series (buckets are allocated when first used).
#[derive(Debug, Clone)]
pub struct SeriesRec {
    start: Instant,
    interval: Duration,
    buckets: Vec<Bucket>,
}

impl SeriesRec {
    /// An empty series starting at `start` with intervals of `interval` (at least 1 ms).
    pub fn new(start: Instant, interval: Duration) -> Self {
        Self {
            start,
            interval: interval.max(Duration::from_millis(1)),
            buckets: Vec::new(),
        }
    }

    /// Index of the interval holding `now`.
    pub fn index(&self, now: Instant) -> usize {
        let n = now.saturating_duration_since(self.start).as_nanos() / self.interval.as_nanos();
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// The bucket of the interval holding `now`; `None` past [`DEFAULT_MAX_SERIES_POINTS`].
    pub fn at(&mut self, now: Instant) -> Option<&mut Bucket> {
        let i = self.index(now);
        if i >= DEFAULT_MAX_SERIES_POINTS {
            return None;
        }
        if i >= self.buckets.len() {
            self.buckets.resize_with(i + 1, Bucket::default);
        }
        self.buckets.get_mut(i)
    }

    /// Adds `other` (same start and interval) into this series.
    pub fn merge(&mut self, other: &SeriesRec) {
        if other.buckets.len() > self.buckets.len() {
            self.buckets
                .resize_with(other.buckets.len(), Bucket::default);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            a.ready += b.ready;
            a.deliveries += b.deliveries;
            a.polls += b.polls;
            a.publishes += b.publishes;
            let _ = a.latency.add(&b.latency);
        }
    }

    /// Number of intervals a run of `elapsed` lasted into (the last one may be partial).
    pub fn intervals(&self, elapsed: Duration) -> usize {
        let n = elapsed.as_nanos().div_ceil(self.interval.as_nanos());
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(DEFAULT_MAX_SERIES_POINTS)
    }

    /// The points of a run that lasted `elapsed`, with the server samples `samples[k]` taken at
    /// the end of interval `k` and `base` at the start. The last interval ends at `elapsed`, so
    /// its rates are over the part of it the run lasted.
    pub fn points(
        &self,
        elapsed: Duration,
        base: Option<ProcSample>,
        samples: &[Option<ProcSample>],
    ) -> Vec<SeriesPoint> {
        let step = self.interval.as_secs_f64();
        let total = elapsed.as_secs_f64();
        let empty = Bucket::default();
        let mut prev = base;
        (0..self.intervals(elapsed))
            .map(|k| {
                let begin = step * k as f64;
                let end = (begin + step).min(total);
                let secs = (end - begin).max(1e-9);
                let b = self.buckets.get(k).unwrap_or(&empty);
                let sample = samples.get(k).copied().flatten();
                let cpu = match (prev, sample) {
                    (Some(p), Some(s)) => Some(100.0 * (s.cpu_seconds() - p.cpu_seconds()) / secs),
                    _ => None,
                };
                if sample.is_some() {
                    prev = sample;
                }
                let l = &b.latency;
                let q = |x: f64| (!l.is_empty()).then(|| l.value_at_quantile(x));
                SeriesPoint {
                    t: end,
                    ready: b.ready,
                    deliveries: b.deliveries,
                    deliveries_per_sec: b.deliveries as f64 / secs,
                    publishes: b.publishes,
                    publishes_per_sec: b.publishes as f64 / secs,
                    polls: b.polls,
                    polls_per_sec: b.polls as f64 / secs,
                    latency_p50_us: q(0.5),
                    latency_p99_us: q(0.99),
                    latency_max_us: (!l.is_empty()).then(|| l.max()),
                    server_rss_kb: sample.map(|s| s.rss_kb),
                    server_cpu_percent: cpu,
                }
            })
            .collect()
    }
}

/// One interval of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// End of the interval, seconds since the run started.
    pub t: f64,
    /// Subscribers that became ready.
    pub ready: u64,
    /// Deliveries read.
    pub deliveries: u64,
    /// Deliveries per second.
    pub deliveries_per_sec: f64,
    /// Publishes accepted.
    pub publishes: u64,
    /// Publishes per second.
    pub publishes_per_sec: f64,
    /// Long-poll answers carrying messages.
    pub polls: u64,
    /// Such answers per second.
    pub polls_per_sec: f64,
    /// Median latency of the interval's first deliveries, µs.
    pub latency_p50_us: Option<u64>,
    /// 99th percentile, µs.
    pub latency_p99_us: Option<u64>,
    /// Largest, µs.
    pub latency_max_us: Option<u64>,
    /// Server RSS at the end of the interval, kB.
    pub server_rss_kb: Option<u64>,
    /// Server CPU use during the interval (100 = one core).
    pub server_cpu_percent: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_merge_and_become_points() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut a = SeriesRec::new(t0, ms(100));
        let mut b = SeriesRec::new(t0, ms(100));
        a.at(t0).expect("first").deliveries += 3;
        a.at(t0 + ms(250))
            .expect("third")
            .latency
            .saturating_record(500);
        b.at(t0 + ms(99)).expect("first").publishes += 2;
        b.at(t0 + ms(120)).expect("second").polls += 1;
        assert_eq!(a.index(t0 + ms(250)), 2);
        assert!(a.at(t0 + ms(100) * 4000).is_none());
        a.merge(&b);
        let base = ProcSample {
            rss_kb: 100,
            utime_ticks: 10,
            ..ProcSample::default()
        };
        let s1 = ProcSample {
            rss_kb: 120,
            utime_ticks: 15,
            ..ProcSample::default()
        };
        let p = a.points(ms(350), Some(base), &[Some(s1), None]);
        assert_eq!(p.len(), 4);
        assert_eq!(a.intervals(ms(300)), 3);
        assert_eq!(a.intervals(Duration::ZERO), 0);
        // The last interval lasted 50 ms: its rates are per those 50 ms.
        assert!((p[3].t - 0.35).abs() < 1e-9);
        assert_eq!((p[0].deliveries, p[0].publishes), (3, 2));
        assert!((p[0].deliveries_per_sec - 30.0).abs() < 1e-9);
        assert!((p[0].t - 0.1).abs() < 1e-9);
        assert_eq!(p[1].polls, 1);
        assert_eq!(p[2].latency_p50_us.map(|v| v / 10), Some(50));
        assert_eq!(p[3].latency_p99_us, None);
        // 5 ticks of CPU in a tenth of a second: half a core.
        assert_eq!(p[0].server_rss_kb, Some(120));
        assert!((p[0].server_cpu_percent.expect("cpu") - 50.0).abs() < 1e-9);
        assert_eq!(p[1].server_cpu_percent, None);
    }
}
