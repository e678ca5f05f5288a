//! Faults of the Redis engine: Redis down at start, the first subscription's pub/sub gap, a
//! stalled Redis (spec/cluster.md §8). Each test starts its own redis-server; a relay
//! ([`RedisRelay`]) in front of it holds a node's subscription back to force the losing order.

mod common;
#[path = "common/redis.rs"]
mod redis_support;

use std::time::{Duration, Instant};

use common::*;
use prost::Message as _;
use pushpull::message::MessageId;
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
/// answers publishes 503 with a reason, and works once Redis is up, without a restart. The
/// losing order of the first subscription is forced: a relay holds the node's `PSUBSCRIBE`
/// until a publish has been answered 200 (the engine connection reached Redis first), and the
/// node's subscriber must still get that message, by the catch-up of the first subscription
/// from the id state of the engine's first contact. A message stored before that contact (the
/// Redis keeps it across the restart) is not delivered: the catch-up starts at the contact, not
/// at the beginning.
#[test]
fn redis_down_at_start_then_up() {
    let mut redis = match RedisServer::start_durable() {
        Some(r) => r,
        None => return,
    };
    let ch = channel();
    let startdate = now_secs();
    let old = MessageId::new(startdate, 41);
    {
        let mut c = redis.client();
        let () = redis::pipe()
            .set("server:startdate", startdate)
            .ignore()
            .set("server:messagecounter", 41)
            .ignore()
            .query(&mut c)
            .expect("set the id state");
        let value = node_message(old, &body(0), 60).encode_to_vec();
        write_node_message(&mut c, &private_set(&ch), old, Some(value));
    }
    redis.stop();
    let relay = RedisRelay::start(redis.addr());
    relay.hold_subscribes();
    let srv = start(|c| c.storage = relay.storage());
    let mut ws = ws_on(&srv, &[&ch]);
    let r = publish_raw(srv.publ, &ch, body(1).as_bytes(), Some(60));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), "503: Message storage unavailable.");
    redis.restart();
    // The node reconnects with backoff (at most 5 s between attempts).
    let mut mid = String::new();
    wait_until("publishing works again", Duration::from_secs(15), || {
        let r = publish_raw(srv.publ, &ch, body(2).as_bytes(), Some(60));
        if r.status == 200 {
            mid = mid_of(&r);
        }
        r.status == 200
    });
    assert!(mid.as_str() > old.to_string().as_str(), "{mid} after {old}");
    // The subscriber connection has reached Redis too and is held at its PSUBSCRIBE: the
    // message was published before the node's stream was subscribed.
    wait_until(
        "the node's PSUBSCRIBE to reach the relay",
        Duration::from_secs(15),
        || relay.held() > 0,
    );
    relay.release_subscribes();
    let got = ws.messages(1, Duration::from_secs(10));
    assert_eq!(
        got[0].mid, mid,
        "the message accepted before the subscription"
    );
    // Live again, and nothing twice.
    let live = srv.publish(&ch, &body(3), Some(60));
    let got = ws.messages(1, Duration::from_secs(10));
    assert_eq!(got[0].mid, live, "the next message, live");
}

/// spec/cluster.md §8: a node started while Redis is up catches up on its first subscription
/// the messages another node stored between the node's start and its `PSUBSCRIBE` (held by a
/// relay until they were answered 200) for the subscribers it had meanwhile.
#[test]
fn first_subscription_catches_up_other_nodes() {
    let redis = redis_or_skip!();
    let relay = RedisRelay::start(redis.addr());
    relay.hold_subscribes();
    let held = start(|c| c.storage = relay.storage());
    let other = start(|c| c.storage = redis.storage());
    let (a, b) = (channel(), channel());
    let mut ws = ws_on(&held, &[&a, &b]);
    wait_until(
        "the node's PSUBSCRIBE to reach the relay",
        Duration::from_secs(15),
        || relay.held() > 0,
    );
    let mids = [
        other.publish(&a, &body(1), Some(60)),
        other.publish(&b, &body(2), Some(60)),
        held.publish(&a, &body(3), Some(60)),
    ];
    relay.release_subscribes();
    let got: Vec<String> = ws
        .messages(3, Duration::from_secs(10))
        .into_iter()
        .map(|m| m.mid)
        .collect();
    assert_eq!(
        got, mids,
        "every message stored before the subscription, in id order"
    );
    let live = other.publish(&b, &body(4), Some(60));
    let got = ws.messages(1, Duration::from_secs(10));
    assert_eq!(got[0].mid, live, "the next message, live");
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
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
