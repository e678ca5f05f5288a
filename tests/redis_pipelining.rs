//! Pipelined publishes through the Redis engine (spec/cluster.md §5, spec/publishing.md §8):
//! thousands of publishes in flight, whose messages Redis echoes back on the pub/sub stream, are
//! all accepted, even while another process floods the stream with announcements. The echoes reach the engine on their own queue (`DEFAULT_STREAM_QUEUE`), so they
//! never fill the queue the cores publish into and never turn a publish into a `503`. Starts its
//! own redis-server (skips without one; fails under `CI=true`).

mod common;
#[path = "common/redis.rs"]
mod redis_support;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use redis_support::*;

/// Publishing connections, each with a full pipeline in flight.
const PUBLISHERS: usize = 32;
/// Publishes per connection, all written at once by a writer thread: the server keeps a full
/// pipeline (`DEFAULT_MAX_PIPELINED`) of each connection in flight until the last.
const PER_PUBLISHER: usize = 1024;
/// Channels the publishes go round robin over.
const CHANNELS: usize = 100;
/// Announcements another process publishes on `pushserver:*` while the publishes run, in
/// pipelines of [`FLOOD_BATCH`]: at least `DEFAULT_ENGINE_QUEUE` (16,384), at most [`FLOOD_MAX`].
const FLOOD_MIN: usize = 20_000;
const FLOOD_MAX: usize = 200_000;
const FLOOD_BATCH: usize = 1000;

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

    // A real announcement, of a message for a channel nobody here listens on, to flood with.
    let mut listener = redis.client();
    let mut ps = listener.as_pubsub();
    ps.psubscribe("pushserver:*").expect("PSUBSCRIBE");
    srv.publish(&channel(), &body(0), Some(60));
    let announcement = loop {
        let msg = ps.get_message().expect("the announcement of the publish");
        if msg.get_channel_name() != PROBE_CHANNEL {
            break msg.get_payload_bytes().to_vec();
        }
    };
    drop(ps);
    let mut flood_conn = redis.client();
    let publishing = Arc::new(AtomicBool::new(true));
    let flooding = publishing.clone();
    let flooder = std::thread::spawn(move || {
        let mut sent = 0;
        while sent < FLOOD_MIN || (sent < FLOOD_MAX && flooding.load(Ordering::Acquire)) {
            sent += FLOOD_BATCH;
            let mut pipe = redis::pipe();
            for _ in 0..FLOOD_BATCH {
                pipe.cmd("PUBLISH")
                    .arg("pushserver:flood")
                    .arg(&announcement[..])
                    .ignore();
            }
            let () = pipe.query(&mut flood_conn).expect("PUBLISH flood");
        }
    });

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let names = names.clone();
            let publ = srv.publ;
            std::thread::spawn(move || {
                let mut c = Conn::connect(publ);
                let mut all = Vec::new();
                let mut sent = Vec::new();
                for i in 0..PER_PUBLISHER {
                    let n = p * PER_PUBLISHER + i;
                    let ch = n % CHANNELS;
                    let path = format!("/bitrix/pub/?CHANNEL_ID={}", names[ch]);
                    all.extend(format_request("POST", &path, &[], body(n).as_bytes()));
                    sent.push(ch);
                }
                let mut writer = c.stream.try_clone().expect("clone the socket");
                let writing = std::thread::spawn(move || writer.write_all(&all));
                // (channel index, status, mid, text) of every publish, in request order.
                let answers: Vec<_> = sent
                    .into_iter()
                    .map(|ch| {
                        let r = c.response();
                        let mid = (r.status == 200).then(|| mid_of(&r));
                        (ch, r.status, mid, r.text())
                    })
                    .collect();
                writing.join().expect("writer").expect("write the requests");
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
    publishing.store(false, Ordering::Release);
    flooder.join().expect("flooder thread");
    assert_eq!(total, PUBLISHERS * PER_PUBLISHER);
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
