//! Criterion: the per-core timer wheel (`reactor::timer`): arming deadlines for 10,000
//! connections, firing them as time passes, and the poll timeout computed every loop turn.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pushpull::reactor::timer::{DEFAULT_SLOTS, DEFAULT_TICK, TimerKey, TimerWheel};

/// Connections with an armed deadline.
const CONNECTIONS: u32 = 10_000;

fn key(slot: u32) -> TimerKey {
    TimerKey {
        slot,
        generation: 1,
    }
}

/// Deadline of connection `slot`: spread over the 40 s of a long-poll hold, in a scrambled order.
fn deadline(start: Instant, slot: u32) -> Instant {
    let ms = u64::from(slot.wrapping_mul(2_654_435_761) % 40_000);
    start + Duration::from_millis(ms)
}

fn full_wheel(start: Instant) -> TimerWheel {
    let mut w = TimerWheel::new(start, DEFAULT_TICK, DEFAULT_SLOTS);
    for slot in 0..CONNECTIONS {
        w.arm(key(slot), deadline(start, slot));
    }
    w
}

fn timers(c: &mut Criterion) {
    let start = Instant::now();
    let mut g = c.benchmark_group("timer_wheel");
    g.throughput(Throughput::Elements(u64::from(CONNECTIONS)));
    g.bench_function("arm_10k", |b| {
        b.iter_batched(
            || TimerWheel::new(start, DEFAULT_TICK, DEFAULT_SLOTS),
            |mut w| {
                for slot in 0..CONNECTIONS {
                    w.arm(key(slot), deadline(start, slot));
                }
                w
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("expire_10k_over_40s", |b| {
        b.iter_batched(
            || (full_wheel(start), Vec::with_capacity(CONNECTIONS as usize)),
            |(mut w, mut out)| {
                // One expire call per 10 ms tick, as a busy reactor would make them.
                let mut fired = 0;
                for step in 0..=4_000u64 {
                    w.expire(start + Duration::from_millis(step * 10), &mut out);
                    fired += out.len();
                    out.clear();
                }
                assert_eq!(fired, CONNECTIONS as usize);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("timer_wheel");
    let w = full_wheel(start);
    let now = start + Duration::from_millis(5);
    g.bench_function("timeout_with_10k_armed", |b| {
        b.iter(|| w.timeout(black_box(now), Duration::from_secs(1)))
    });
    g.finish();
}

criterion_group!(benches, timers);
criterion_main!(benches);
