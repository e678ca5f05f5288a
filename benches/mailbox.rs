//! Criterion: the cross-core mailbox (`reactor::mailbox`), the queue from the engine thread to a
//! core: a burst sent and drained on one thread, and the same burst crossing to a core thread
//! that sleeps in `epoll_wait` until the mailbox's waker wakes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mio::{Events, Poll, Token, Waker};
use pushpull::engine::CoreMsg;
use pushpull::message::{Channel, ChannelId, Message, MessageId, Sender, SharedMessage};
use pushpull::reactor::mailbox::{DEFAULT_MAILBOX_BUDGET, mailbox};

/// Messages per burst: one reactor turn's budget.
const BURST: usize = DEFAULT_MAILBOX_BUDGET;

/// Token of the waker in the benches' polls.
const WAKER: Token = Token(0);

fn shared_message() -> SharedMessage {
    let ch = ChannelId::from_hex(b"0123456789abcdef0123456789abcdef").expect("constant hex id");
    Arc::new(Message::new(
        MessageId::new(1_795_830_315, 1),
        Bytes::from_static(br#"{"module_id":"im","command":"x","params":{}}"#),
        0,
        Sender::Backend,
        vec![Channel::private(ch)].into_boxed_slice(),
        1_795_830_315_123,
    ))
}

fn same_thread(c: &mut Criterion) {
    let poll = Poll::new().expect("epoll instance");
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).expect("waker"));
    let (peer, mb) = mailbox(waker);
    let msg = shared_message();
    let mut g = c.benchmark_group("mailbox");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("burst_same_thread", |b| {
        b.iter(|| {
            for _ in 0..BURST {
                assert!(peer.send(CoreMsg::Deliver(msg.clone())));
            }
            mb.arm();
            let mut n = 0;
            while mb.next().is_some() {
                n += 1;
            }
            assert_eq!(n, BURST);
        })
    });
    g.finish();
}

fn cross_thread(c: &mut Criterion) {
    let mut poll = Poll::new().expect("epoll instance");
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).expect("waker"));
    let (peer, mb) = mailbox(waker);
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let core = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut events = Events::with_capacity(16);
            while !stop.load(Ordering::Acquire) {
                // Sleep until woken (or 100 ms, to see `stop`), then drain as a core does.
                let _ = poll.poll(&mut events, Some(Duration::from_millis(100)));
                mb.arm();
                let mut n = 0;
                while mb.next().is_some() {
                    n += 1;
                }
                received.fetch_add(n, Ordering::AcqRel);
            }
        })
    };
    let msg = shared_message();
    let mut g = c.benchmark_group("mailbox");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("burst_to_core_thread", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let want = received.load(Ordering::Acquire) + BURST as u64;
                for _ in 0..BURST {
                    assert!(peer.send(CoreMsg::Deliver(msg.clone())));
                }
                // The burst counts once the core has taken all of it. Yield rather than spin:
                // on a 2-core machine a spinning producer would take the core thread's CPU.
                while received.load(Ordering::Acquire) < want {
                    std::thread::yield_now();
                }
            }
            start.elapsed()
        })
    });
    g.finish();
    stop.store(true, Ordering::Release);
    let _ = core.join();
}

criterion_group!(benches, same_thread, cross_thread);
criterion_main!(benches);
