//! Faults of the Redis engine: Redis down at start, lost while running, stalled
//! (spec/cluster.md §8). Each test starts its own redis-server.

mod common;
#[path = "common/redis.rs"]
mod redis_support;

use std::time::{Duration, Instant};

use common::*;
use redis_support::*;

macro_rules! redis_or_skip {
    () => {
        match RedisServer::start() {
            Some(r) => r,
            None => return,
        }
    };
}

fn body(n: u32) -> String {
    format!(r#"{{"module_id":"t","command":"c","params":{{"n":{n}}}}}"#)
}

/// spec/cluster.md §8: a node started while Redis is down starts anyway, accepts subscribers,
/// answers publishes 503 with a reason, and works once Redis is up, without a restart.
#[test]
fn redis_down_at_start_then_up() {
    let mut redis = redis_or_skip!();
    redis.stop();
    let srv = start(|c| c.storage = redis.storage());
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    let r = publish_raw(srv.publ, &ch, body(1).as_bytes(), Some(60));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), "503: Message storage unavailable.");
    redis.restart();
    // The node reconnects with backoff (at most 5 s between attempts) and subscribes again.
    let mut mid = String::new();
    wait_until("publishing works again", Duration::from_secs(15), || {
        let r = publish_raw(srv.publ, &ch, body(2).as_bytes(), Some(60));
        if r.status == 200 {
            mid = mid_of(&r);
        }
        r.status == 200
    });
    // Delivered: live, or by the catch-up after the subscriber thread's reconnect.
    let got = ws.messages(1, Duration::from_secs(10));
    assert_eq!(got[0].mid, mid, "delivery after Redis came up");
}

/// spec/cluster.md §8: a Redis that stops answering (paused, connections open) is detected by
/// the timeout: the publish is answered 503 before the stall ends, not held for it, and the
/// node works again when Redis answers.
#[test]
fn stalled_redis_is_detected() {
    let redis = redis_or_skip!();
    let srv = start(|c| c.storage = redis.storage());
    let ch = channel();
    let first = publish_raw(srv.publ, &ch, body(1).as_bytes(), Some(60));
    assert_eq!(first.status, 200, "{}", first.text());
    redis.pause(Duration::from_secs(6));
    let started = Instant::now();
    let r = publish_raw(srv.publ, &ch, body(2).as_bytes(), Some(60));
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    // The 2 s timeout, plus at most one other call the engine was in when the stall began.
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    wait_until(
        "publishing works after the stall",
        Duration::from_secs(15),
        || publish_raw(srv.publ, &ch, body(3).as_bytes(), Some(60)).status == 200,
    );
}
