//! The coordinator: connect, settle, publish, drain, sample, report. Every wait is bounded by the
//! run's hard deadline.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, Mode, Plan};
use crate::procstat::{ProcSample, open_files_limit, sample, sample_all};
use crate::publisher::{PublisherReport, run_publisher};
use crate::rate::{Rate, RateGate};
use crate::report::{
    ConnectStats, DeliveryStats, GeneratorStats, Outcome, Percentiles, PublishStats, Report,
    ServerStats,
};
use crate::series::SeriesRec;
use crate::shared::{Phase, Shared, new_histogram};
use crate::subscriber::{Readiness, Worker, WorkerReport};
use crate::tally::{AcceptedSet, BitSet};

/// How often the coordinator looks at the shared counters while it waits.
pub const DEFAULT_WAIT_TICK: Duration = Duration::from_millis(5);

/// A run that could not be carried out (as opposed to one that measured a failure).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The plan does not fit this process.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Creating a poller or a thread failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A client thread panicked (a bug in the load generator).
    #[error("a {0} thread panicked")]
    Panicked(&'static str),
}

fn secs(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64()
}

fn per_sec(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// Sleeps in small steps until `until` or until `done()` holds; returns whether `done()` held.
fn wait_for(until: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep(DEFAULT_WAIT_TICK.min(until - now));
    }
}

fn stop_and_join(
    shared: &Shared,
    workers: Vec<JoinHandle<WorkerReport>>,
) -> Result<Vec<WorkerReport>, RunError> {
    shared.set_phase(Phase::Stopping);
    let mut out = Vec::with_capacity(workers.len());
    let mut panicked = false;
    for w in workers {
        match w.join() {
            Ok(r) => out.push(r),
            Err(_) => panicked = true,
        }
    }
    if panicked {
        Err(RunError::Panicked("subscriber"))
    } else {
        Ok(out)
    }
}

/// Samples the server at the end of every series interval until the run stops.
fn sample_server(pids: Vec<u32>, shared: Arc<Shared>) -> Vec<Option<ProcSample>> {
    let mut out = Vec::new();
    for k in 1..=crate::series::DEFAULT_MAX_SERIES_POINTS as u32 {
        let at = shared.start + shared.series_interval * k;
        let stopped = wait_for(at, || shared.should_stop(Instant::now()));
        if stopped {
            break;
        }
        out.push(sample_all(&pids));
    }
    out
}

/// Writes `{"ready":N,"failed":M}` to `path` through a temporary file, so a reader never sees
/// half of it.
fn write_ready_file(path: &Path, ready: u64, failed: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{{\"ready\":{ready},\"failed\":{failed}}}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Runs `plan` and measures it.
pub fn run(plan: Plan) -> Result<Report, RunError> {
    if let Some(limit) = open_files_limit() {
        plan.check_fds(limit)?;
    }
    let plan = Arc::new(plan);
    let before = sample_all(&plan.server_pids);
    let start = Instant::now();
    let deadline = start + plan.timeout();
    let shared = Arc::new(Shared::new(
        start,
        deadline,
        plan.series_interval(),
        RateGate::new(Rate::from_per_sec(plan.connect_rate), start),
    ));
    let sampler = if plan.server_pids.is_empty() {
        None
    } else {
        let (pids, sh) = (plan.server_pids.clone(), shared.clone());
        Some(
            std::thread::Builder::new()
                .name("lg-sample".to_owned())
                .spawn(move || sample_server(pids, sh))?,
        )
    };

    let threads = plan.threads.max(1);
    let mut built = Vec::with_capacity(threads);
    for t in 0..threads as u64 {
        let members: Vec<u64> = (0..plan.subscribers)
            .filter(|j| j % threads as u64 == t)
            .collect();
        built.push(Worker::new(plan.clone(), shared.clone(), &members)?);
    }
    let mut workers = Vec::with_capacity(threads);
    for (t, w) in built.into_iter().enumerate() {
        match std::thread::Builder::new()
            .name(format!("lg-sub-{t}"))
            .spawn(move || w.run())
        {
            Ok(h) => workers.push(h),
            Err(e) => {
                let _ = stop_and_join(&shared, workers);
                return Err(e.into());
            }
        }
    }

    let n = plan.subscribers;
    let mut outcome = Outcome::Complete;
    let connected = wait_for(deadline, || {
        shared.ready.load(Ordering::Acquire) + shared.failed.load(Ordering::Acquire) >= n
    });
    if !connected {
        outcome = Outcome::ConnectTimedOut;
    }
    if let Some(path) = &plan.ready_file {
        let ready = shared.ready.load(Ordering::Acquire);
        let failed = shared.failed.load(Ordering::Acquire);
        if let Err(e) = write_ready_file(path, ready, failed) {
            let _ = stop_and_join(&shared, workers);
            return Err(e.into());
        }
    }

    let mut pub_reports: Vec<PublisherReport> = Vec::new();
    let mut pub_start = Instant::now();
    let mut at_publish = None;
    let mut own_at_publish = None;
    if outcome == Outcome::Complete {
        let settle_end = (Instant::now() + Duration::from_millis(plan.settle_ms)).min(deadline);
        wait_for(settle_end, || false);
        match plan.mode {
            Mode::Connect => {
                let hold_end =
                    (Instant::now() + Duration::from_secs_f64(plan.hold_secs)).min(deadline);
                wait_for(hold_end, || false);
            }
            Mode::Delivery => {
                at_publish = sample_all(&plan.server_pids);
                own_at_publish = sample(std::process::id());
                shared.set_phase(Phase::Publishing);
                pub_start = Instant::now();
                let gate = Arc::new(RateGate::new(Rate::from_per_sec(plan.rate), pub_start));
                let mut handles = Vec::with_capacity(plan.publishers);
                for p in 0..plan.publishers {
                    let (pl, sh, g) = (plan.clone(), shared.clone(), gate.clone());
                    let h = std::thread::Builder::new()
                        .name(format!("lg-pub-{p}"))
                        .spawn(move || run_publisher(p, pl, sh, g, pub_start));
                    match h {
                        Ok(h) => handles.push(h),
                        Err(e) => {
                            shared.set_phase(Phase::Stopping);
                            for h in handles {
                                let _ = h.join();
                            }
                            let _ = stop_and_join(&shared, workers);
                            return Err(e.into());
                        }
                    }
                }
                let mut panicked = false;
                for h in handles {
                    match h.join() {
                        Ok(r) => pub_reports.push(r),
                        Err(_) => panicked = true,
                    }
                }
                if panicked {
                    let _ = stop_and_join(&shared, workers);
                    return Err(RunError::Panicked("publisher"));
                }
                if Instant::now() >= deadline {
                    outcome = Outcome::PublishTimedOut;
                }
                let accepted = AcceptedSet::new(
                    plan.channels,
                    pub_reports.iter().flat_map(|r| r.accepted.iter().copied()),
                );
                let _ = shared.accepted.set(Arc::new(accepted));
                shared.set_phase(Phase::Draining);
                let drain_end = (Instant::now() + Duration::from_secs_f64(plan.drain_timeout_secs))
                    .min(deadline);
                let drained = wait_for(drain_end, || shared.settled.load(Ordering::Acquire) >= n);
                if !drained && outcome == Outcome::Complete {
                    outcome = Outcome::DrainTimedOut;
                }
            }
        }
    }

    let after = sample_all(&plan.server_pids);
    let own_after = sample(std::process::id());
    let worker_reports = stop_and_join(&shared, workers)?;
    let samples = match sampler {
        Some(h) => h.join().map_err(|_| RunError::Panicked("sampler"))?,
        None => Vec::new(),
    };
    let end = Instant::now();
    let accepted = shared.accepted.get().cloned().unwrap_or_default();
    Ok(assemble(
        &plan,
        outcome,
        Times {
            start,
            end,
            pub_start,
            interval: shared.series_interval,
        },
        &accepted,
        worker_reports,
        pub_reports,
        Samples {
            before,
            at_publish,
            after,
            series: samples,
            own: (own_at_publish, own_after),
        },
    ))
}

/// When the run and its publishing started and ended.
struct Times {
    start: Instant,
    end: Instant,
    pub_start: Instant,
    interval: Duration,
}

/// The server samples of a run.
struct Samples {
    before: Option<ProcSample>,
    at_publish: Option<ProcSample>,
    after: Option<ProcSample>,
    series: Vec<Option<ProcSample>>,
    /// This process when publishing started and after the drain.
    own: (Option<ProcSample>, Option<ProcSample>),
}

/// Publish → last arrival of every accepted message that every ready subscriber of its channel
/// received: AND the subscribers' received sets per channel, then look each message up in the
/// merged last-arrival table.
fn last_deliveries(
    plan: &Plan,
    accepted: &AcceptedSet,
    per_channel: &BTreeMap<u64, BitSet>,
    last: &[u32],
) -> (u64, hdrhistogram::Histogram<u64>) {
    let mut h = new_histogram();
    let mut complete = 0;
    for (&ch, got) in per_channel {
        let Some(acc) = accepted.channel(ch) else {
            continue;
        };
        let mut both = got.clone();
        both.intersect_with(acc);
        for index in both.iter() {
            complete += 1;
            let seq = index.saturating_mul(plan.channels).saturating_add(ch);
            if let Some(&v) = usize::try_from(seq).ok().and_then(|i| last.get(i))
                && v > 0
            {
                h.saturating_record(u64::from(v - 1));
            }
        }
    }
    (complete, h)
}

fn assemble(
    plan: &Plan,
    outcome: Outcome,
    t: Times,
    accepted: &AcceptedSet,
    workers: Vec<WorkerReport>,
    pubs: Vec<PublisherReport>,
    samples: Samples,
) -> Report {
    let (start, end, pub_start) = (t.start, t.end, t.pub_start);
    let mut series = SeriesRec::new(start, t.interval);
    let mut last: Vec<u32> = Vec::new();
    let mut per_channel: BTreeMap<u64, BitSet> = BTreeMap::new();
    let mut latency = new_histogram();
    let mut c = ConnectStats {
        attempted: plan.subscribers,
        ..ConnectStats::default()
    };
    let mut d = DeliveryStats::default();
    let mut last_ready: Option<Instant> = None;
    let mut last_delivery: Option<Instant> = None;
    for w in workers {
        let _ = latency.add(&w.latency);
        c.failures += w.connect_failures;
        c.disconnects += w.disconnects;
        c.alive_at_end += w.alive_at_end;
        for (k, v) in w.failure_reasons {
            *c.failure_reasons.entry(k).or_insert(0) += v;
        }
        for (k, v) in w.disconnect_reasons {
            *c.disconnect_reasons.entry(k).or_insert(0) += v;
        }
        d.protocol_errors += w.protocol_errors;
        d.undecodable += w.undecodable;
        d.polls += w.polls;
        d.data_polls += w.data_polls;
        series.merge(&w.series);
        if w.last_arrival.len() > last.len() {
            last.resize(w.last_arrival.len(), 0);
        }
        for (a, b) in last.iter_mut().zip(&w.last_arrival) {
            *a = (*a).max(*b);
        }
        d.poll_errors += w.poll_errors;
        d.pongs += w.pongs;
        d.total_deliveries += w.deliveries;
        if let Some((_, b)) = w.ready_span {
            last_ready = Some(last_ready.map_or(b, |x| x.max(b)));
        }
        if let Some((_, b)) = w.delivery_span {
            last_delivery = Some(last_delivery.map_or(b, |x| x.max(b)));
        }
        for s in w.subs {
            if s.readiness != Readiness::Ready {
                continue;
            }
            c.ready += 1;
            per_channel
                .entry(s.tally.channel)
                .and_modify(|set| set.intersect_with(&s.tally.received))
                .or_insert_with(|| s.tally.received.clone());
            let (e, r, x) = s.tally.score(accepted);
            d.expected += e;
            d.received += r;
            d.extra += x;
            d.complete_subscribers += u64::from(r == e);
            d.duplicates += s.tally.duplicates;
            d.out_of_order += s.tally.out_of_order;
            d.misrouted += s.tally.misrouted;
            d.bogus += s.tally.bogus;
        }
    }
    d.lost = d.expected - d.received;
    if let Some(t) = last_ready {
        c.seconds = secs(start, t);
        c.rate_per_sec = per_sec(c.ready, c.seconds);
    }
    if let Some(t) = last_delivery {
        d.seconds = secs(pub_start, t);
        d.rate_per_sec = per_sec(d.total_deliveries, d.seconds);
        d.polls_per_sec = per_sec(d.data_polls, d.seconds);
    }
    let (complete, last_hist) = last_deliveries(plan, accepted, &per_channel, &last);
    d.complete_messages = complete;

    let mut p = PublishStats::default();
    let mut ack = new_histogram();
    let mut span: Option<(Instant, Instant)> = None;
    for r in pubs {
        p.attempted += r.attempted;
        p.accepted += r.accepted.len() as u64;
        p.errors += r.errors;
        for (k, v) in r.error_reasons {
            *p.error_reasons.entry(k).or_insert(0) += v;
        }
        let _ = ack.add(&r.ack_latency);
        series.merge(&r.series);
        if let Some((a, b)) = r.span {
            span = Some(span.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
    }
    p.ack_latency_us = Percentiles::of(&ack);
    if let Some((a, b)) = span {
        p.seconds = secs(a, b);
        p.rate_per_sec = per_sec(p.accepted, p.seconds);
    }

    let (ready, deliveries) = (c.ready, d.total_deliveries);
    let mut report = Report {
        tool: "pushpull-loadgen",
        version: env!("CARGO_PKG_VERSION"),
        plan: plan.clone(),
        outcome,
        ok: false,
        elapsed_secs: secs(start, end),
        connect: c,
        publish: p,
        delivery: d,
        latency_us: Percentiles::of(&latency),
        last_delivery_us: Percentiles::of(&last_hist),
        generator: GeneratorStats::new(samples.own, deliveries),
        server: plan.server_pid.map(|pid| {
            let mut s = ServerStats::new(pid, samples.before, samples.after);
            s.pids = plan.server_pids.clone();
            s.with_load(samples.at_publish, ready, deliveries)
        }),
        series: {
            // The sample after the drain stands for the end of the last, partial interval.
            let elapsed = end.saturating_duration_since(start);
            let mut server = samples.series;
            if server.len() + 1 == series.intervals(elapsed) {
                server.push(samples.after);
            }
            series.points(elapsed, samples.before, &server)
        },
    };
    report.ok = report.verdict();
    report
}
