//! Per-core hashed timer wheel for the reactor.
//!
//! Every connection has at most one *armed* deadline at a time: the earliest of its hold, ping,
//! head-read and idle deadlines. The wheel stores one 16-byte entry `(TimerKey, tick: u64)` per arm, in the slot
//! `tick % slots`, where a tick is [`DEFAULT_TICK`]-sized time step counted from the wheel's start
//! instant. Deadlines are rounded **up** to a tick, so an entry never fires before its deadline,
//! and it fires on the first [`TimerWheel::expire`] call whose `now` reaches that tick boundary,
//! which is less than one tick after the deadline.
//!
//! The wheel is pure: it reads no clock, spawns nothing and takes `now` from the caller.
//!
//! # Lazy cancellation (stale-proofing)
//!
//! There is no cancel API. [`TimerWheel::arm`] returns the tick the deadline was filed under, and the
//! caller stores that tick in the connection as "the current deadline". Whenever an entry comes out
//! of [`TimerWheel::expire`] as `(key, tick)`, the caller must treat it as a *hint* and check it:
//!
//! 1. `key.slot` still names a live connection (the slab slot may have been freed or reused),
//! 2. the connection's generation equals `key.generation` (a reused slab slot gets a new generation),
//! 3. the connection's stored armed tick equals `tick` (the deadline was not re-armed since).
//!
//! If any check fails the entry is *stale* and is dropped silently. Re-arming never removes the
//! previous entry, so a re-armed connection produces one stale entry per earlier arm that is still
//! in the wheel. To keep that number small, re-arm only when the new deadline's tick (see
//! [`TimerWheel::tick_of`]) is *earlier* than the stored one; when the deadline moves later, keep
//! the old entry, and when it fires, recompute the connection's earliest deadline and re-arm if it
//! lies in the future. A connection then has about one live entry most of the time.

use std::time::{Duration, Instant};

/// Default tick length: the resolution of every deadline.
///
/// 10 ms is far below the smallest protocol deadline (seconds: ping, hold, idle) yet coarse enough
/// that a wheel turn advances only 100 ticks per second of sleep, and it matches the millisecond
/// granularity of `epoll_wait` timeouts with room to spare.
pub const DEFAULT_TICK: Duration = Duration::from_millis(10);

/// Default number of slots: with [`DEFAULT_TICK`] one revolution spans 40.96 s.
///
/// That covers the 40 s long-poll hold and the 10 s request-head deadline, so most deadlines fire
/// on their first visit (the 75 s keep-alive and 120 s ping intervals take a few revolutions) instead of being re-checked on later
/// revolutions, while the empty slot array costs only 4096 × 24 bytes = 96 KiB per core.
pub const DEFAULT_SLOTS: usize = 4096;

/// Smallest accepted tick; shorter ticks passed to [`TimerWheel::new`] are raised to this.
///
/// Poll timeouts are whole milliseconds, so a finer tick buys no precision and only makes the
/// wheel turn more often.
pub const MIN_TICK: Duration = Duration::from_millis(1);

/// Capacity a slot `Vec` may keep after it has been drained.
///
/// 16 entries (256 bytes) absorbs the usual few entries per slot without reallocating on every
/// arm; beyond that, a slot that became mostly empty after a burst gives its memory back, which
/// bounds idle wheel memory at about 4096 × 256 bytes = 1 MiB per core.
pub const DEFAULT_SLOT_KEEP_CAPACITY: usize = 16;

/// Key of a timer's owner (a connection slab index) and a generation so stale entries are recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerKey {
    /// Slab index of the owning connection.
    pub slot: u32,
    /// Generation of that slab index when the timer was armed.
    pub generation: u32,
}

/// One armed timer: its owner and the tick it is due at (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    key: TimerKey,
    tick: u64,
}

/// Hashed timer wheel with lazy cancellation; see the module documentation.
#[derive(Debug)]
pub struct TimerWheel {
    /// Instant of tick 0.
    start: Instant,
    /// Tick length in nanoseconds (at least [`MIN_TICK`]).
    tick_ns: u128,
    /// `slots[t % slots.len()]` holds the entries due at tick `t` (and at `t + k * slots.len()`).
    slots: Vec<Vec<Entry>>,
    /// Entries armed for a tick the wheel has already passed; they fire on the next `expire`.
    overdue: Vec<Entry>,
    /// Next tick to visit: every tick below it has been processed, every wheel entry is `>= current`.
    current: u64,
    /// Number of entries in `slots` plus `overdue`.
    len: usize,
}

impl TimerWheel {
    /// Creates an empty wheel whose tick 0 is `start`.
    ///
    /// `tick` is raised to [`MIN_TICK`] and `slots` to 1 if smaller.
    pub fn new(start: Instant, tick: Duration, slots: usize) -> Self {
        let tick = tick.max(MIN_TICK);
        let slots = slots.max(1);
        TimerWheel {
            start,
            tick_ns: tick.as_nanos(),
            slots: (0..slots).map(|_| Vec::new()).collect(),
            overdue: Vec::new(),
            current: 0,
            len: 0,
        }
    }

    /// Tick number a deadline is filed under: the first tick boundary at or after `deadline`.
    ///
    /// Deadlines before the wheel's start map to tick 0; absurdly far ones saturate at `u64::MAX`.
    pub fn tick_of(&self, deadline: Instant) -> u64 {
        let ns = deadline.saturating_duration_since(self.start).as_nanos();
        u64::try_from(ns.div_ceil(self.tick_ns)).unwrap_or(u64::MAX)
    }

    /// Arms a deadline for `key`; returns the deadline's tick number.
    ///
    /// The caller stores that tick in its connection as "the current deadline"; arming again simply
    /// adds a new entry (the old one becomes stale and is still returned by [`expire`](Self::expire),
    /// for the caller to drop). A deadline in the past fires on the next `expire` call.
    pub fn arm(&mut self, key: TimerKey, deadline: Instant) -> u64 {
        let tick = self.tick_of(deadline);
        let entry = Entry { key, tick };
        if tick < self.current {
            self.overdue.push(entry);
        } else {
            let idx = self.slot_index(tick);
            self.slots[idx].push(entry);
        }
        self.len += 1;
        tick
    }

    /// Pops all entries due at or before `now` into `out` as `(key, tick)`.
    ///
    /// An entry is due once `now` reaches its (rounded-up) tick boundary. Entries whose deadline lies
    /// beyond the current revolution stay in their slot. The caller drops entries whose
    /// `(key.generation, tick)` no longer match its connection (lazy cancellation: no cancel API needed).
    /// Deadlines in the past fire on the next call. Each slot is visited at most once per call, even
    /// after a time jump longer than a revolution. A `now` earlier than a previous one fires nothing new.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<(TimerKey, u64)>) {
        let Some(now_tick) = self.now_tick(now) else {
            return;
        };
        if !self.overdue.is_empty() {
            self.len -= drain_due(&mut self.overdue, now_tick, out);
        }
        if now_tick < self.current {
            return;
        }
        let n = self.slots.len() as u64;
        let steps = (now_tick - self.current).saturating_add(1);
        if self.len > self.overdue.len() {
            if steps >= n {
                for idx in 0..self.slots.len() {
                    self.len -= drain_due(&mut self.slots[idx], now_tick, out);
                }
            } else {
                for t in self.current..=now_tick {
                    let idx = self.slot_index(t);
                    self.len -= drain_due(&mut self.slots[idx], now_tick, out);
                }
            }
        }
        self.current = now_tick.saturating_add(1);
    }

    /// How long `poll()` may sleep: time until the earliest possibly-due non-empty slot, capped at `max`.
    ///
    /// Returns `Duration::ZERO` if something is already due and `max` if the wheel is empty or
    /// nothing falls due within `max`. Otherwise, if an entry falls due within the coming
    /// revolution, the answer is the exact time to the tick boundary at which the earliest one
    /// does (entries of later revolutions sharing a slot are skipped); if none does, it is the time
    /// to the end of that revolution, so the answer is never later than the next due entry.
    /// Cost: one step per tick scanned plus a look at the entries of non-empty slots until a due
    /// one is found; at most `max / tick` steps and never more than one revolution.
    pub fn timeout(&self, now: Instant, max: Duration) -> Duration {
        if self.len == 0 {
            return max;
        }
        if !self.overdue.is_empty() {
            return Duration::ZERO;
        }
        let n = self.slots.len() as u64;
        // First tick not yet reached by `now`: entries at ticks below it are due.
        let first_future = match self.now_tick(now) {
            Some(now_tick) if now_tick >= self.current => {
                if self.any_due(now_tick) {
                    return Duration::ZERO;
                }
                now_tick.saturating_add(1)
            }
            _ => self.current,
        };
        // Signed offset of `now` from `start`, as (ahead, behind) nanoseconds.
        let ahead = now.saturating_duration_since(self.start).as_nanos();
        let behind = self.start.saturating_duration_since(now).as_nanos();
        let max_ns = max.as_nanos();
        let wait_until = |t: u64| {
            (u128::from(t).saturating_mul(self.tick_ns))
                .saturating_add(behind)
                .saturating_sub(ahead)
        };
        // No wheel entry lies below `first_future`, so within one revolution from it a slot's
        // entry is due exactly at the scanned tick or at a later revolution (skipped).
        for step in 0..n {
            let Some(t) = first_future.checked_add(step) else {
                return max;
            };
            let wait = wait_until(t);
            if wait >= max_ns {
                return max;
            }
            if self.slots[self.slot_index(t)].iter().any(|e| e.tick == t) {
                return nanos_to_duration(wait);
            }
        }
        // Nothing due within a whole revolution: wake at its end to look at the next one.
        match first_future.checked_add(n) {
            Some(t) => nanos_to_duration(wait_until(t)).min(max),
            None => max,
        }
    }

    /// Number of armed entries, stale ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True if a wheel entry is due at `now_tick` (which must be `>= current`). Looks only at the
    /// slots of ticks `current..=now_tick`, i.e. nothing when `expire` ran during this tick.
    fn any_due(&self, now_tick: u64) -> bool {
        let due = |list: &Vec<Entry>| list.iter().any(|e| e.tick <= now_tick);
        let steps = (now_tick - self.current).saturating_add(1);
        if steps >= self.slots.len() as u64 {
            self.slots.iter().any(due)
        } else {
            (self.current..=now_tick).any(|t| due(&self.slots[self.slot_index(t)]))
        }
    }

    /// Tick reached by `now` (rounded down), or `None` if `now` is before the wheel's start.
    fn now_tick(&self, now: Instant) -> Option<u64> {
        let ns = now.checked_duration_since(self.start)?.as_nanos();
        Some(u64::try_from(ns / self.tick_ns).unwrap_or(u64::MAX))
    }

    /// Slot holding tick `tick`.
    fn slot_index(&self, tick: u64) -> usize {
        // The remainder is below `slots.len()`, so it fits in usize.
        (tick % self.slots.len() as u64) as usize
    }
}

/// Moves the entries of `list` due at or before `now_tick` into `out`; returns how many moved.
/// Gives memory back when the list became mostly empty after a burst.
fn drain_due(list: &mut Vec<Entry>, now_tick: u64, out: &mut Vec<(TimerKey, u64)>) -> usize {
    if list.is_empty() {
        return 0;
    }
    let before = list.len();
    list.retain(|e| {
        if e.tick <= now_tick {
            out.push((e.key, e.tick));
            false
        } else {
            true
        }
    });
    let cap = list.capacity();
    if cap > DEFAULT_SLOT_KEEP_CAPACITY && list.len() <= cap / 4 {
        if list.is_empty() {
            *list = Vec::new();
        } else {
            list.shrink_to((list.len() * 2).max(DEFAULT_SLOT_KEEP_CAPACITY));
        }
    }
    before - list.len()
}

/// Converts nanoseconds to a `Duration`, saturating at `Duration::MAX`.
fn nanos_to_duration(ns: u128) -> Duration {
    const NS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(ns / NS_PER_SEC) {
        // The remainder is below 10^9, so it fits in u32.
        Ok(secs) => Duration::new(secs, (ns % NS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn key(slot: u32) -> TimerKey {
        TimerKey {
            slot,
            generation: 0,
        }
    }

    fn fire(w: &mut TimerWheel, now: Instant) -> Vec<(TimerKey, u64)> {
        let mut out = Vec::new();
        w.expire(now, &mut out);
        out
    }

    #[test]
    fn entry_is_16_bytes() {
        assert_eq!(size_of::<Entry>(), 16);
        assert_eq!(size_of::<TimerKey>(), 8);
    }

    #[test]
    fn default_span_is_40_96_s() {
        assert_eq!(
            DEFAULT_TICK * DEFAULT_SLOTS as u32,
            Duration::from_millis(40_960)
        );
    }

    #[test]
    fn fires_not_early_and_within_one_tick() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(10), 64);
        let deadline = t0 + ms(95);
        let tick = w.arm(key(1), deadline);
        assert_eq!(tick, 10, "95 ms rounds up to tick 10");
        assert_eq!(w.len(), 1);
        assert!(fire(&mut w, t0 + ms(90)).is_empty());
        assert!(fire(&mut w, deadline - Duration::from_nanos(1)).is_empty());
        // At the deadline itself the tick boundary (100 ms) is not reached yet.
        assert!(fire(&mut w, deadline).is_empty());
        assert!(fire(&mut w, t0 + ms(99)).is_empty());
        assert_eq!(fire(&mut w, t0 + ms(100)), vec![(key(1), 10)]);
        assert!(w.is_empty());
        assert!(fire(&mut w, t0 + ms(200)).is_empty(), "fires only once");
    }

    #[test]
    fn deadline_on_boundary_fires_exactly_then() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(10), 64);
        assert_eq!(w.arm(key(1), t0 + ms(50)), 5);
        assert!(fire(&mut w, t0 + ms(50) - Duration::from_nanos(1)).is_empty());
        assert_eq!(fire(&mut w, t0 + ms(50)), vec![(key(1), 5)]);
    }

    #[test]
    fn many_keys_fire_once_each() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, DEFAULT_TICK, DEFAULT_SLOTS);
        let count = 20_000u32;
        for i in 0..count {
            let deadline = t0 + ms(u64::from(i % 7_000) * 7);
            w.arm(key(i), deadline);
        }
        assert_eq!(w.len(), count as usize);
        let mut seen = vec![0u8; count as usize];
        let mut now = t0;
        while now < t0 + ms(50_000) {
            now += ms(13);
            for (k, tick) in fire(&mut w, now) {
                let deadline = t0 + ms(u64::from(k.slot % 7_000) * 7);
                assert!(deadline <= now);
                assert_eq!(w.tick_of(deadline), tick);
                seen[k.slot as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        assert!(w.is_empty());
    }

    /// Re-arming leaves the old entry in the wheel; it is still returned and the caller filters it
    /// by comparing the returned tick (and generation) with what the connection stored.
    #[test]
    fn rearm_leaves_stale_entry_for_caller_to_filter() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(10), 64);
        let k = TimerKey {
            slot: 3,
            generation: 7,
        };
        let first = w.arm(k, t0 + ms(30));
        let stored = w.arm(k, t0 + ms(20)); // earlier deadline: connection now stores this tick
        assert_eq!(w.len(), 2);
        let out = fire(&mut w, t0 + ms(20));
        assert_eq!(out, vec![(k, stored)]);
        let out = fire(&mut w, t0 + ms(30));
        assert_eq!(out, vec![(k, first)], "stale entry is still returned");
        assert_ne!(
            out[0].1, stored,
            "caller sees the tick mismatch and drops it"
        );
        // The connection closes and slab slot 3 is reused with generation 8 before the old entry
        // fires: the entry comes out with generation 7 and the caller drops it.
        w.arm(k, t0 + ms(40));
        let reused = TimerKey {
            slot: 3,
            generation: 8,
        };
        let out = fire(&mut w, t0 + ms(40));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.slot, reused.slot);
        assert_ne!(out[0].0.generation, reused.generation);
    }

    #[test]
    fn deadlines_beyond_one_revolution() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(10), 8); // 80 ms per revolution
        w.arm(key(1), t0 + ms(30));
        w.arm(key(2), t0 + ms(110)); // same slot as tick 3, next revolution
        w.arm(key(3), t0 + ms(270)); // tick 27, three revolutions ahead
        let mut now = t0;
        let mut got = Vec::new();
        while now <= t0 + ms(400) {
            for (k, tick) in fire(&mut w, now) {
                got.push((k.slot, tick, now - t0));
            }
            now += ms(10);
        }
        assert_eq!(
            got,
            vec![(1, 3, ms(30)), (2, 11, ms(110)), (3, 27, ms(270))]
        );
    }

    #[test]
    fn large_time_jump_fires_everything_due_and_keeps_the_rest() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(10), 16);
        for i in 0..100u32 {
            w.arm(key(i), t0 + ms(u64::from(i) * 10));
        }
        // Jump 50 ticks (> 3 revolutions) in one call.
        let mut out = fire(&mut w, t0 + ms(495));
        out.sort_by_key(|e| e.0.slot);
        assert_eq!(out.len(), 50);
        assert!(out.iter().enumerate().all(|(i, e)| e.0.slot == i as u32));
        assert_eq!(w.len(), 50);
        // A jump far beyond everything.
        let out = fire(&mut w, t0 + Duration::from_secs(3600));
        assert_eq!(out.len(), 50);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadline_fires_on_next_call() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(10), 16);
        assert!(fire(&mut w, t0 + ms(105)).is_empty());
        // Armed in the past, and also in the current tick which was already visited.
        let past = w.arm(key(1), t0 + ms(40));
        let this_tick = w.arm(key(2), t0 + ms(100));
        assert_eq!((past, this_tick), (4, 10));
        assert_eq!(w.timeout(t0 + ms(105), ms(1000)), Duration::ZERO);
        // Same `now` again: both still fire.
        let out = fire(&mut w, t0 + ms(105));
        assert_eq!(out, vec![(key(1), 4), (key(2), 10)]);
        assert!(w.is_empty());
    }

    #[test]
    fn deadline_before_start_is_tick_zero() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut w = TimerWheel::new(t0, ms(10), 16);
        assert_eq!(w.arm(key(1), t0 - ms(5)), 0);
        assert_eq!(fire(&mut w, t0), vec![(key(1), 0)]);
    }

    #[test]
    fn now_before_start_or_backwards_fires_nothing_new() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut w = TimerWheel::new(t0, ms(10), 16);
        w.arm(key(1), t0 + ms(20));
        assert!(fire(&mut w, t0 - ms(5)).is_empty());
        assert_eq!(w.timeout(t0 - ms(5), ms(1000)), ms(25));
        assert!(fire(&mut w, t0 + ms(100)).len() == 1);
        w.arm(key(2), t0 + ms(50)); // overdue relative to the wheel
        assert!(fire(&mut w, t0 + ms(40)).is_empty(), "now went backwards");
        assert_eq!(fire(&mut w, t0 + ms(50)), vec![(key(2), 5)]);
    }

    #[test]
    fn timeout_values() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(10), 64);
        let cap = ms(1000);
        assert_eq!(w.timeout(t0, cap), cap, "empty wheel sleeps the cap");
        w.arm(key(1), t0 + ms(95)); // tick 10
        assert_eq!(w.timeout(t0, cap), ms(100));
        assert_eq!(w.timeout(t0 + ms(33), cap), ms(67));
        assert_eq!(w.timeout(t0, ms(50)), ms(50), "capped");
        assert_eq!(w.timeout(t0 + ms(100), cap), Duration::ZERO, "due");
        assert_eq!(w.timeout(t0 + ms(500), cap), Duration::ZERO, "overdue");
        assert_eq!(fire(&mut w, t0 + ms(100)).len(), 1);
        assert_eq!(w.timeout(t0 + ms(100), cap), cap);
        // Entry of a later revolution shares slot 12 with tick 12 (due at 120 ms): skipped.
        w.arm(key(2), t0 + ms(100 + 640 + 20)); // tick 76, slot 12
        // Nothing due in ticks 11..75: wake at the revolution's end (750 ms), before 760 ms.
        assert_eq!(w.timeout(t0 + ms(100), cap), ms(650));
        assert_eq!(w.timeout(t0 + ms(100), ms(300)), ms(300));
        assert_eq!(w.timeout(t0 + ms(700), cap), ms(60));
        w.arm(key(3), t0 + ms(140)); // tick 14
        assert_eq!(w.timeout(t0 + ms(100), cap), ms(40));
    }

    #[test]
    fn shrinks_after_burst() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(10), 16);
        for i in 0..10_000u32 {
            w.arm(key(i), t0 + ms(10));
        }
        assert!(w.slots[1].capacity() >= 10_000);
        assert_eq!(fire(&mut w, t0 + ms(10)).len(), 10_000);
        assert!(w.slots[1].capacity() <= DEFAULT_SLOT_KEEP_CAPACITY);
        // Partially drained slot keeps only what it needs.
        for i in 0..1_000u32 {
            w.arm(key(i), t0 + ms(if i < 990 { 170 } else { 330 })); // ticks 17 and 33, both slot 1
        }
        assert_eq!(fire(&mut w, t0 + ms(170)).len(), 990);
        assert!(w.slots[1].capacity() <= 2 * DEFAULT_SLOT_KEEP_CAPACITY);
        assert_eq!(w.len(), 10);
    }

    #[test]
    fn degenerate_parameters_are_clamped() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, Duration::ZERO, 0);
        assert_eq!(w.arm(key(1), t0 + ms(3)), 3);
        assert_eq!(w.arm(key(2), t0 + ms(5)), 5);
        assert_eq!(fire(&mut w, t0 + ms(3)), vec![(key(1), 3)]);
        assert_eq!(w.timeout(t0 + ms(3), ms(100)), ms(2));
        assert_eq!(fire(&mut w, t0 + ms(9)), vec![(key(2), 5)]);
    }

    #[test]
    fn far_future_deadline_saturates_without_panic() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, MIN_TICK, 8);
        let far = t0 + Duration::from_secs(100 * 365 * 24 * 3600);
        let tick = w.arm(key(1), far);
        assert!(tick > 1_000_000_000);
        // Not due within a revolution (ticks 1..=8): wake at its end.
        assert_eq!(w.timeout(t0, ms(500)), ms(9));
        assert!(fire(&mut w, t0 + Duration::from_secs(3600)).is_empty());
        assert_eq!(w.len(), 1);
        assert_eq!(nanos_to_duration(u128::MAX), Duration::MAX);
        // A huge tick must not overflow either.
        let mut w = TimerWheel::new(t0, Duration::MAX, 4);
        assert_eq!(w.arm(key(1), far), 1);
        assert_eq!(w.timeout(t0, ms(500)), ms(500));
        assert!(fire(&mut w, t0 + Duration::from_secs(3600)).is_empty());
    }

    /// xorshift64: deterministic randomness without a crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random arms and expires against a naive model: every armed (key, tick) comes out exactly
    /// once, never before its deadline, and no later than the first call at or after one tick past
    /// its deadline; `timeout` never oversleeps and is zero when something is due.
    #[test]
    fn oracle_against_naive_model() {
        for seed in [1u64, 0x9E37_79B9_7F4A_7C15, 0xDEAD_BEEF, 42, 7_777_777] {
            run_oracle(seed);
        }
    }

    /// `timeout` is zero when something is due, never oversleeps, and is exact when the next
    /// entry falls due within the cap and within one revolution (1 ms ticks).
    fn check_timeout(
        w: &TimerWheel,
        model: &[(TimerKey, u64, Instant)],
        t0: Instant,
        now: Instant,
        cap: Duration,
        n_slots: usize,
        seed: u64,
    ) {
        let timeout = w.timeout(now, cap);
        assert!(timeout <= cap);
        let Some(next) = model.iter().map(|e| e.1).min() else {
            assert_eq!(timeout, cap, "seed {seed}: empty");
            return;
        };
        let due_at = t0 + ms(next);
        if due_at <= now {
            assert_eq!(timeout, Duration::ZERO, "seed {seed}: something is due");
            return;
        }
        assert!(now + timeout <= due_at, "seed {seed}: oversleeps");
        let now_tick = (now - t0).as_millis() as u64;
        if due_at - now < cap && next <= now_tick + n_slots as u64 {
            assert_eq!(now + timeout, due_at, "seed {seed}: not exact");
        }
    }

    fn run_oracle(seed: u64) {
        let tick = ms(1);
        let n_slots = 32;
        let t0 = Instant::now();
        let mut rng = XorShift(seed);
        let mut w = TimerWheel::new(t0, tick, n_slots);
        // Model: (key, tick, deadline) still pending.
        let mut model: Vec<(TimerKey, u64, Instant)> = Vec::new();
        let mut now = t0;
        let mut next_slot = 0u32;
        for _ in 0..20_000 {
            match rng.below(10) {
                0..=5 => {
                    // Deadline from a bit in the past up to ~3 revolutions ahead, sub-tick jitter.
                    let ahead = Duration::from_micros(rng.below(100_000));
                    let deadline = if rng.below(8) == 0 {
                        now.checked_sub(Duration::from_micros(rng.below(5_000)))
                            .unwrap_or(now)
                            .max(t0)
                    } else {
                        now + ahead
                    };
                    let k = TimerKey {
                        slot: next_slot % 500,
                        generation: next_slot / 500,
                    };
                    next_slot += 1;
                    let t = w.arm(k, deadline);
                    assert_eq!(t, w.tick_of(deadline));
                    assert!(t0 + tick * t as u32 >= deadline, "rounded up");
                    assert!(
                        t0 + tick * t as u32 <= deadline + tick,
                        "by less than a tick"
                    );
                    model.push((k, t, deadline));
                }
                _ => {
                    let step = match rng.below(20) {
                        0 => Duration::from_micros(rng.below(200_000)), // big jump
                        1 => Duration::ZERO,
                        _ => Duration::from_micros(rng.below(3_000)),
                    };
                    now += step;
                    let cap = ms(rng.below(150));
                    check_timeout(&w, &model, t0, now, cap, n_slots, seed);
                    let mut out = Vec::new();
                    w.expire(now, &mut out);
                    for (k, t) in out {
                        let pos = model
                            .iter()
                            .position(|e| e.0 == k && e.1 == t)
                            .unwrap_or_else(|| {
                                panic!("seed {seed}: unknown or repeated {k:?} {t}")
                            });
                        let (_, _, deadline) = model.swap_remove(pos);
                        assert!(deadline <= now, "seed {seed}: fired early");
                    }
                    for &(k, t, deadline) in &model {
                        assert!(
                            now < deadline + tick,
                            "seed {seed}: {k:?} tick {t} late: now {:?} deadline {:?}",
                            now - t0,
                            deadline - t0
                        );
                    }
                    assert_eq!(w.len(), model.len());
                    check_timeout(&w, &model, t0, now, cap, n_slots, seed);
                }
            }
        }
        let mut out = Vec::new();
        w.expire(now + Duration::from_secs(10), &mut out);
        assert_eq!(out.len(), model.len());
        assert!(w.is_empty());
    }
}
