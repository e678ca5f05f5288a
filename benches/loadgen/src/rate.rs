//! A rate gate shared by threads: at most `1 + rate × elapsed` permits since the start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a rate is allowed per second; `Unbounded` hands out permits at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// No pacing.
    Unbounded,
    /// This many permits per second (at least 1).
    PerSecond(u64),
}

impl Rate {
    /// `0` means unbounded, anything else a per-second rate.
    pub fn from_per_sec(n: u64) -> Self {
        if n == 0 {
            Self::Unbounded
        } else {
            Self::PerSecond(n)
        }
    }
}

/// Permits allowed after `elapsed` at `rate`: one at once, then `rate` per second.
pub fn allowance(rate: Rate, elapsed: Duration) -> u64 {
    match rate {
        Rate::Unbounded => u64::MAX,
        Rate::PerSecond(r) => {
            let n = elapsed.as_nanos().saturating_mul(u128::from(r)) / 1_000_000_000;
            u64::try_from(n).unwrap_or(u64::MAX).saturating_add(1)
        }
    }
}

/// A thread-safe pacing gate.
#[derive(Debug)]
pub struct RateGate {
    rate: Rate,
    start: Instant,
    issued: AtomicU64,
}

impl RateGate {
    /// A gate that starts counting at `start`.
    pub fn new(rate: Rate, start: Instant) -> Self {
        Self {
            rate,
            start,
            issued: AtomicU64::new(0),
        }
    }

    /// Takes one permit if the rate allows it at `now`.
    pub fn try_take(&self, now: Instant) -> bool {
        let allowed = allowance(self.rate, now.saturating_duration_since(self.start));
        self.issued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur < allowed).then_some(cur + 1)
            })
            .is_ok()
    }

    /// When the next permit becomes available (now or in the past when one is available).
    pub fn next_due(&self) -> Instant {
        match self.rate {
            Rate::Unbounded => self.start,
            Rate::PerSecond(r) => {
                let issued = self.issued.load(Ordering::Acquire);
                let nanos = u128::from(issued) * 1_000_000_000 / u128::from(r);
                self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        }
    }

    /// Permits handed out so far.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_grows_with_time() {
        let r = Rate::PerSecond(1000);
        assert_eq!(allowance(r, Duration::ZERO), 1);
        assert_eq!(allowance(r, Duration::from_millis(1)), 2);
        assert_eq!(allowance(r, Duration::from_secs(2)), 2001);
        assert_eq!(allowance(Rate::Unbounded, Duration::ZERO), u64::MAX);
        assert_eq!(Rate::from_per_sec(0), Rate::Unbounded);
    }

    #[test]
    fn gate_hands_out_at_most_the_allowance() {
        let t0 = Instant::now();
        let g = RateGate::new(Rate::PerSecond(10), t0);
        assert!(g.try_take(t0));
        assert!(!g.try_take(t0));
        let later = t0 + Duration::from_millis(250);
        assert!(g.try_take(later));
        assert!(g.try_take(later));
        assert!(!g.try_take(later));
        assert_eq!(g.issued(), 3);
        assert_eq!(g.next_due(), t0 + Duration::from_millis(300));
        let u = RateGate::new(Rate::Unbounded, t0);
        for _ in 0..100 {
            assert!(u.try_take(t0));
        }
    }
}
