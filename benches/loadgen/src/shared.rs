//! State shared by the coordinator, the subscriber threads and the publisher threads.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::rate::RateGate;
use crate::tally::AcceptedSet;

/// Highest latency recorded, µs (one hour); larger values are clamped.
pub const DEFAULT_MAX_LATENCY_US: u64 = 3_600_000_000;

/// Significant figures of the latency histograms (0.1 % resolution).
pub const DEFAULT_HISTOGRAM_SIGFIG: u8 = 3;

/// A fresh latency histogram (1 µs .. [`DEFAULT_MAX_LATENCY_US`]).
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that satisfy the crate's requirements (low >= 1, high >= 2 * low,
    // sigfig <= 5); no input reaches this call.
    Histogram::new_with_bounds(1, DEFAULT_MAX_LATENCY_US, DEFAULT_HISTOGRAM_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Opening subscribers.
    Connecting,
    /// Publishers running.
    Publishing,
    /// Waiting for the last deliveries.
    Draining,
    /// Every thread finishes now.
    Stopping,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connecting,
            1 => Self::Publishing,
            2 => Self::Draining,
            _ => Self::Stopping,
        }
    }
}

/// The shared state of one run.
#[derive(Debug)]
pub struct Shared {
    phase: AtomicU8,
    /// Start of the run: time zero of the time series.
    pub start: Instant,
    /// Hard end of the run: every loop checks it.
    pub deadline: Instant,
    /// Length of one time-series interval.
    pub series_interval: Duration,
    /// Paces connection attempts over all threads.
    pub connect_gate: RateGate,
    /// Subscribers that got a 101 / have a poll in flight.
    pub ready: AtomicU64,
    /// Subscribers that failed before becoming ready.
    pub failed: AtomicU64,
    /// Subscribers that are complete or can make no more progress.
    pub settled: AtomicU64,
    /// What the server accepted, known once publishing ended.
    pub accepted: OnceLock<Arc<AcceptedSet>>,
    /// One more than the highest sequence number a publisher has started to send (0 = none).
    max_issued_plus_one: AtomicU64,
}

impl Shared {
    /// New shared state of a run that started at `start`.
    pub fn new(
        start: Instant,
        deadline: Instant,
        series_interval: Duration,
        connect_gate: RateGate,
    ) -> Self {
        Self {
            phase: AtomicU8::new(0),
            start,
            deadline,
            series_interval,
            connect_gate,
            ready: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            accepted: OnceLock::new(),
            max_issued_plus_one: AtomicU64::new(0),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Whether every thread should stop now.
    pub fn should_stop(&self, now: Instant) -> bool {
        now >= self.deadline || self.phase() == Phase::Stopping
    }

    /// A publisher is about to send `seq`.
    pub fn issue(&self, seq: u64) {
        self.max_issued_plus_one
            .fetch_max(seq.saturating_add(1), Ordering::AcqRel);
    }

    /// The highest sequence number issued so far.
    pub fn max_issued(&self) -> Option<u64> {
        self.max_issued_plus_one
            .load(Ordering::Acquire)
            .checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::Rate;

    #[test]
    fn phases_and_issue() {
        let now = Instant::now();
        let s = Shared::new(
            now,
            now + Duration::from_secs(5),
            Duration::from_secs(1),
            RateGate::new(Rate::Unbounded, now),
        );
        assert_eq!(s.phase(), Phase::Connecting);
        assert!(!s.should_stop(now));
        s.set_phase(Phase::Draining);
        assert_eq!(s.phase(), Phase::Draining);
        s.set_phase(Phase::Stopping);
        assert!(s.should_stop(now));
        assert_eq!(s.max_issued(), None);
        s.issue(5);
        s.issue(3);
        assert_eq!(s.max_issued(), Some(5));
        let mut h = new_histogram();
        h.saturating_record(u64::MAX);
        assert_eq!(h.len(), 1);
    }
}
