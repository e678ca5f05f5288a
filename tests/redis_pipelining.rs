//! Pipelined publishes through the Redis engine (spec/cluster.md §5, spec/publishing.md §8):
//! thousands of publishes in flight, whose messages Redis echoes back on the pub/sub stream, are
//! all accepted. The echoes reach the engine on their own queue (`DEFAULT_STREAM_QUEUE`), so they
//! never fill the queue the cores publish into and never turn a publish into a `503`. Starts its
//! own redis-server (skips without one; fails under `CI=true`).

mod common;
#[path = "common/redis.rs"]
mod redis_support;

use std::time::Duration;

use common::*;
use redis_support::*;

/// Publishing connections, each with a full pipeline in flight.
const PUBLISHERS: usize = 32;
/// Rounds of one full pipeline per connection.
const ROUNDS: usize = 3;
/// Channels the publishes go round robin over.
const CHANNELS: usize = 100;

#[test]
fn thousands_of_pipelined_publishes_are_all_accepted() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let srv = start(|c| c.storage = redis.storage());
    wait_until("the node to PSUBSCRIBE pushserver:*", WAIT, || {
        pattern_subscribers(&redis) > 0
    });
    let names: Vec<String> = (0..CHANNELS).map(|_| channel()).collect();
    let mut ws = Ws::connect(srv.sub, &names[0], None);
    srv.wait_subscribers(&names[0], 1);

    let depth = pushpull::conn::DEFAULT_MAX_PIPELINED;
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let names = names.clone();
            let publ = srv.publ;
            std::thread::spawn(move || {
                let mut c = Conn::connect(publ);
                // (channel index, status, mid) of every publish, in request order.
                let mut answers = Vec::new();
                for round in 0..ROUNDS {
                    let mut all = Vec::new();
                    let mut sent = Vec::new();
                    for i in 0..depth {
                        let n = (p * ROUNDS + round) * depth + i;
                        let ch = n % CHANNELS;
                        let path = format!("/bitrix/pub/?CHANNEL_ID={}", names[ch]);
                        all.extend(format_request("POST", &path, &[], body(n).as_bytes()));
                        sent.push(ch);
                    }
                    c.send(&all);
                    for ch in sent {
                        let r = c.response();
                        let mid = (r.status == 200).then(|| mid_of(&r));
                        answers.push((ch, r.status, mid, r.text()));
                    }
                }
                answers
            })
        })
        .collect();
    let mut mids_of_first = Vec::new();
    let mut refused = Vec::new();
    let mut total = 0;
    for handle in publishers {
        for (ch, status, mid, text) in handle.join().expect("publisher thread") {
            total += 1;
            match mid {
                Some(mid) if ch == 0 => mids_of_first.push(mid),
                Some(_) => {}
                None => refused.push(format!("{status} {text}")),
            }
        }
    }
    assert_eq!(total, PUBLISHERS * ROUNDS * depth);
    assert!(
        refused.is_empty(),
        "{} of {total} publishes refused, first: {:?}",
        refused.len(),
        refused.first()
    );
    // Every message of the subscribed channel arrives, in id order.
    mids_of_first.sort();
    let got: Vec<String> = ws
        .messages(mids_of_first.len(), Duration::from_secs(30))
        .into_iter()
        .map(|m| m.mid)
        .collect();
    assert_eq!(got, mids_of_first);
}
