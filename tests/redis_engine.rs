//! The Redis engine (spec/cluster.md) against a real `redis-server` started per test: the key
//! layout of the Node push-server (§1), shared message ids (§2), publishing in one round trip
//! (§3), replay from Redis (§4), pub/sub fan-out between nodes and foreign processes (§5), online
//! keys (§6) and shared statistics (§7). Each test has its own Redis, so tests never see each
//! other's keys or messages. Without `redis-server` the tests skip (they fail under `CI=true`).

mod common;
#[path = "common/redis.rs"]
mod redis_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use prost::Message as _;
use pushpull::config::Config;
use pushpull::message::MessageId;
use pushpull::proto::pb;
use redis_support::*;
use serde_json::Value;

/// Long-poll hold of the nodes: a poll with nothing to replay answers 304 quickly.
const HOLD: Duration = Duration::from_millis(300);

/// Starts a Redis for the test, or returns from the test (skipped) when there is none.
macro_rules! redis_or_skip {
    () => {
        match RedisServer::start() {
            Some(r) => r,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A pushpull node on `redis` (signature key [`KEY`], short hold) changed by `f`; returns once
/// it has subscribed to `pushserver:*`.
fn node(redis: &RedisServer, f: impl FnOnce(&mut Config)) -> TestServer {
    let before = pattern_subscribers(redis);
    let srv = start(|c| {
        c.storage = redis.storage();
        c.security_key = Some(KEY.into());
        c.longpoll_hold = HOLD;
        f(c);
    });
    wait_until(
        "the node to PSUBSCRIBE pushserver:* (without the Redis engine the server falls back \
         to memory)",
        WAIT,
        || pattern_subscribers(redis) > before,
    );
    srv
}

/// The stored `OutgoingMessage` of `mid`.
fn stored(c: &mut redis::Connection, mid: &str) -> pb::OutgoingMessage {
    let bytes = get(c, &message_key(mid)).unwrap_or_else(|| panic!("message:<{mid}> is stored"));
    pb::OutgoingMessage::decode(&bytes[..]).expect("message:<id> is a protobuf OutgoingMessage")
}

fn assert_backend(m: &pb::OutgoingMessage) {
    let sender = m.sender.as_ref().expect("sender is present");
    assert_eq!(sender.r#type, pb::SenderType::Backend as i32, "{sender:?}");
}

/// The uid suffix of `pushserver:<uid>`, checked: 8 characters `[a-z0-9]`.
fn uid_of(channel_name: &str) -> String {
    let uid = channel_name
        .strip_prefix("pushserver:")
        .unwrap_or_else(|| panic!("channel {channel_name}"));
    assert_eq!(uid.len(), 8, "uid {uid:?}");
    assert!(
        uid.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "uid {uid:?}"
    );
    uid.to_owned()
}

// ---------------------------------------------------------------------------------------------
// The support code itself

/// The test Redis starts, answers, stops (port closed), restarts empty on the same port, pauses
/// on request and removes its directory when dropped.
#[test]
fn redis_support_start_ping_stop_restart() {
    let mut r = redis_or_skip!();
    let port = r.port;
    let mut c = r.client();
    let () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    assert_eq!(get(&mut c, b"k"), Some(b"v".to_vec()));
    assert!(r.is_running());
    r.stop();
    assert!(!r.is_running());
    assert!(
        std::net::TcpStream::connect(r.addr()).is_err(),
        "port closed"
    );
    r.restart();
    assert_eq!(r.port, port, "same port");
    let mut c = r.client();
    assert_eq!(get(&mut c, b"k"), None, "persistence is off");
    // Cached client settings stay valid after a restart.
    assert_eq!(r.config().port, port);

    r.pause(Duration::from_millis(300));
    let t = Instant::now();
    let _ = get(&mut c, b"k");
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );

    let dir = r.dir().to_path_buf();
    assert!(dir.is_dir());
    drop(r);
    assert!(!dir.exists(), "directory removed");
}

// ---------------------------------------------------------------------------------------------
// §1, §3: keys, encodings, TTLs

/// spec/cluster.md §1, §3: a text publish with expiry E stores `message:<13 id bytes>` as a
/// protobuf `OutgoingMessage` and adds the id (score 0) to `channel:messages:<16 bytes>` of each
/// receiver.
#[test]
fn text_publish_key_layout() {
    let redis = redis_or_skip!();
    let a = node(&redis, |_| {});
    let (c1, c2) = (channel(), channel());
    let before = now_secs();
    let mid = a.publish(&format!("{c1}/{c2}"), &body(1), Some(60));
    let mut c = redis.client();

    let m = stored(&mut c, &mid);
    assert_eq!(m.id, id_bytes(&mid), "id: the 13 raw bytes");
    assert_eq!(m.id.len(), 13);
    assert_eq!(m.body, body(1));
    assert_eq!(m.expiry, 60);
    let created = u64::from(m.created);
    assert!(
        created + 1 >= before && created <= now_secs() + 1,
        "created {created}"
    );
    assert_backend(&m);
    for ch in [&c1, &c2] {
        let set = private_set(ch);
        assert_eq!(
            key_type(&mut c, &set),
            "zset",
            "channel:messages:<raw {ch}>"
        );
        assert_eq!(members(&mut c, &set), [id_bytes(&mid)]);
        assert_eq!(score(&mut c, &set, &id_bytes(&mid)), Some(0.0));
        assert!(!exists(&mut c, &public_set(ch)), "no public set");
    }
    // Hex-named keys are not the layout.
    assert!(!exists(&mut c, format!("channel:messages:{c1}").as_bytes()));
}

/// spec/cluster.md §1, §3: a protobuf publish stores each message; private receivers go to
/// `channel:messages:`, public receivers to `pubchannel:messages:`.
#[test]
fn protobuf_publish_private_and_public_sets() {
    let redis = redis_or_skip!();
    let a = node(&redis, |_| {});
    let (private, public) = (channel(), channel());
    let request = pb_publish(vec![
        pb_message(
            vec![pb_receiver(&private, true, vec![])],
            &body(1),
            30,
            "im_x",
        ),
        pb_message(
            vec![pb_receiver(&public, false, vec![])],
            &body(2),
            40,
            "im_y",
        ),
    ]);
    let r = pb_post(a.publ, &request);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut c = redis.client();

    let private_ids = members(&mut c, &private_set(&private));
    let public_ids = members(&mut c, &public_set(&public));
    assert_eq!((private_ids.len(), public_ids.len()), (1, 1));
    assert!(!exists(&mut c, &public_set(&private)));
    assert!(!exists(&mut c, &private_set(&public)));
    assert!(private_ids[0] < public_ids[0], "ids in publication order");
    for (id, n, expiry) in [(&private_ids[0], 1, 30), (&public_ids[0], 2, 40)] {
        let bytes = get(&mut c, &key("message:", id)).expect("message stored");
        let m = pb::OutgoingMessage::decode(&bytes[..]).expect("OutgoingMessage");
        assert_eq!(&m.id, id);
        assert_eq!(m.body, body(n));
        assert_eq!(m.expiry, expiry);
        assert_backend(&m);
    }
}

/// spec/cluster.md §3: the message key lives at most its expiry, capped at `message_ttl`; the
/// sets get an EXPIRE of `message_ttl`, refreshed on every add.
#[test]
fn ttls_capped_and_sets_refreshed() {
    let redis = redis_or_skip!();
    let a = node(&redis, |c| c.message_ttl = 100);
    let ch = channel();
    let mut c = redis.client();

    let short = a.publish(&ch, &body(1), Some(60));
    let t = ttl(&mut c, &message_key(&short));
    assert!((55..=60).contains(&t), "TTL {t} of a 60 s message");
    let t = ttl(&mut c, &private_set(&ch));
    assert!((95..=100).contains(&t), "set TTL {t}, message_ttl 100");

    let long = a.publish(&ch, &body(2), Some(1000));
    let t = ttl(&mut c, &message_key(&long));
    assert!((95..=100).contains(&t), "TTL {t}: capped at message_ttl");
    assert_eq!(stored(&mut c, &long).expiry, 100, "stored expiry capped");

    // Every add refreshes the set's expiry.
    let () = redis::cmd("EXPIRE")
        .arg(private_set(&ch))
        .arg(10)
        .query(&mut c)
        .unwrap();
    a.publish(&ch, &body(3), Some(60));
    let t = ttl(&mut c, &private_set(&ch));
    assert!((95..=100).contains(&t), "set TTL {t} after another add");
}

/// spec/cluster.md §3: the sets keep the newest `channel_history` ids; replay agrees.
#[test]
fn sets_trimmed_to_channel_history() {
    let redis = redis_or_skip!();
    let a = node(&redis, |c| c.channel_history = 5);
    let ch = channel();
    let mids: Vec<String> = (0..8).map(|n| a.publish(&ch, &body(n), Some(60))).collect();
    let mut c = redis.client();
    let want: Vec<Vec<u8>> = mids[3..].iter().map(|m| id_bytes(m)).collect();
    assert_eq!(members(&mut c, &private_set(&ch)), want, "newest 5 kept");
    let r = poll(a.sub, &sign(KEY, &ch), Some(MID_ZERO));
    let got: Vec<String> = parse_messages(&r.body).into_iter().map(|m| m.mid).collect();
    assert_eq!(got, mids[3..]);
}

/// spec/cluster.md §3: a message with expiry 0 is delivered but nothing is stored.
#[test]
fn expiry_zero_delivered_not_stored() {
    let redis = redis_or_skip!();
    let a = node(&redis, |_| {});
    let ch = channel();
    let mut ws = ws_on(&a, &[&ch]);
    let mid = a.publish(&ch, &body(7), None);
    let got = ws.messages(1, WAIT);
    assert_eq!(
        (got[0].mid.as_str(), got[0].text()["params"]["n"].as_u64()),
        (mid.as_str(), Some(7))
    );
    let mut c = redis.client();
    assert!(
        !exists(&mut c, &message_key(&mid)),
        "message:<id> not stored"
    );
    assert!(!exists(&mut c, &private_set(&ch)), "no set");
    ws.expect_no_message(Duration::from_millis(200));
}

// ---------------------------------------------------------------------------------------------
// §2: ids

/// spec/cluster.md §2: ids come from `INCR server:messagecounter` and the shared
/// `server:startdate` (an existing one is kept): 26 digits, 13 bytes, increasing across nodes.
#[test]
fn ids_from_shared_counter_and_start_date() {
    let redis = redis_or_skip!();
    let mut c = redis.client();
    let () = redis::cmd("SET")
        .arg("server:startdate")
        .arg(1_600_000_000)
        .query(&mut c)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("server:messagecounter")
        .arg(41)
        .query(&mut c)
        .unwrap();
    let a = node(&redis, |_| {});
    let b = node(&redis, |_| {});
    let ch = channel();
    let mids: Vec<String> = (0..4)
        .map(|n| [&a, &b][n % 2].publish(&ch, &body(n), Some(60)))
        .collect();
    let want: Vec<String> = (42..46).map(|n| format!("1600000000{n:016}")).collect();
    assert_eq!(mids, want);
    let counter: u64 = redis::cmd("GET")
        .arg("server:messagecounter")
        .query(&mut c)
        .unwrap();
    assert_eq!(counter, 45);
    for mid in &mids {
        assert_eq!(stored(&mut c, mid).id.len(), 13);
    }
}

/// spec/cluster.md §2: on a fresh Redis the first node sets `server:startdate` to the current
/// Unix second; the next node uses it; ids increase across the nodes.
#[test]
fn fresh_redis_start_date_set_once() {
    let redis = redis_or_skip!();
    let before = now_secs();
    let a = node(&redis, |_| {});
    let ch = channel();
    let first = a.publish(&ch, &body(1), Some(60));
    let mut c = redis.client();
    let start: u64 = redis::cmd("GET")
        .arg("server:startdate")
        .query(&mut c)
        .expect("server:startdate is set");
    assert!(
        start + 1 >= before && start <= now_secs(),
        "startdate {start}"
    );
    assert_eq!(first[..10], format!("{start:010}"));
    let counter: u64 = redis::cmd("GET")
        .arg("server:messagecounter")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        MessageId::parse(first.as_bytes()).unwrap().counter(),
        counter
    );

    let b = node(&redis, |_| {});
    let second = b.publish(&ch, &body(2), Some(60));
    assert_eq!(second[..10], first[..10], "one start date for the cluster");
    assert!(second > first, "{second} after {first}");
}

// ---------------------------------------------------------------------------------------------
// §5: pub/sub

/// spec/cluster.md §5: every message (stored or not) is PUBLISHed on `pushserver:<uid>` as a
/// `NotificationBatch` of `IPCMessage{receivers, outgoingMessageId, outgoingMessage}`; each node
/// has its own 8-character uid.
#[test]
fn publish_announced_as_notification_batch() {
    let redis = redis_or_skip!();
    let a = node(&redis, |_| {});
    let b = node(&redis, |_| {});
    let mut con = redis.client();
    let mut ps = con.as_pubsub();
    ps.psubscribe("pushserver:*").expect("PSUBSCRIBE");
    ps.set_read_timeout(Some(WAIT)).unwrap();
    let (c1, c2) = (channel(), channel());

    let mid = a.publish(&format!("{c1}/{c2}"), &body(1), Some(60));
    let (name_a, batch) = next_announcement(&mut ps);
    let uid_a = uid_of(&name_a);
    let msgs = ipc_messages(batch);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let ipc = &msgs[0];
    assert_eq!(ipc.outgoing_message_id, id_bytes(&mid));
    let ids: BTreeSet<(Vec<u8>, bool)> = ipc
        .receivers
        .iter()
        .map(|r| (r.id.clone(), r.is_private))
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([(raw_id(&c1), true), (raw_id(&c2), true)])
    );
    let m = ipc.outgoing_message.as_ref().expect("outgoingMessage");
    assert_eq!(
        (m.id.clone(), m.body.as_str(), m.expiry),
        (id_bytes(&mid), body(1).as_str(), 60)
    );
    assert_backend(m);

    // Expiry 0 and a public receiver, from the other node.
    let public = channel();
    let r = pb_post(
        b.publ,
        &pb_publish(vec![pb_message(
            vec![pb_receiver(&public, false, vec![])],
            &body(2),
            0,
            "",
        )]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (name_b, batch) = next_announcement(&mut ps);
    assert_ne!(uid_of(&name_b), uid_a, "each node has its own uid");
    let msgs = ipc_messages(batch);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].receivers.len(), 1);
    assert_eq!(
        (
            msgs[0].receivers[0].id.clone(),
            msgs[0].receivers[0].is_private
        ),
        (raw_id(&public), false)
    );
    let m = msgs[0].outgoing_message.as_ref().expect("outgoingMessage");
    assert_eq!((m.body.as_str(), m.expiry), (body(2).as_str(), 0));
    assert_eq!(msgs[0].outgoing_message_id, m.id);
    assert!(m.id > id_bytes(&mid), "ids increase across nodes");
}

/// spec/cluster.md §5: two nodes on one Redis deliver each other's messages exactly once, to
/// WebSockets and held long-polls.
#[test]
fn two_nodes_deliver_each_others_messages() {
    let redis = redis_or_skip!();
    let a = node(&redis, |c| c.longpoll_hold = Duration::from_secs(5));
    let b = node(&redis, |c| c.longpoll_hold = Duration::from_secs(5));
    let (ch_a, ch_b, ch_poll, marker) = (channel(), channel(), channel(), channel());
    let mut on_a = ws_on(&a, &[&ch_a]);
    let mut on_b = ws_on(&b, &[&ch_b]);

    let mid = b.publish(&ch_a, &body(1), Some(60));
    let got = on_a.messages(1, WAIT);
    assert_eq!(
        (got[0].mid.as_str(), got[0].text()["params"]["n"].as_u64()),
        (mid.as_str(), Some(1))
    );
    let mid = a.publish(&ch_b, &body(2), None);
    let got = on_b.messages(1, WAIT);
    assert_eq!(
        (got[0].mid.as_str(), got[0].text()["params"]["n"].as_u64()),
        (mid.as_str(), Some(2))
    );

    let mut held = start_poll(b.sub, &token(&[&ch_poll, &marker]), None);
    b.wait_subscribers(&marker, 1);
    let mid = a.publish(&ch_poll, &body(3), Some(60));
    let r = held.response();
    assert_eq!(r.status, 200, "{}", r.text());
    let got = parse_messages(&r.body);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mid, mid);

    on_a.expect_no_message(Duration::from_millis(200));
    on_b.expect_no_message(Duration::from_millis(1));
}

/// spec/cluster.md §5: 200 messages published alternately on two nodes reach a subscriber on
/// each node exactly once, in publication (id) order.
#[test]
fn alternating_nodes_total_order() {
    const N: usize = 200;
    let redis = redis_or_skip!();
    let a = node(&redis, |_| {});
    let b = node(&redis, |_| {});
    let ch = channel();
    let mut on_a = ws_on(&a, &[&ch]);
    let mut on_b = ws_on(&b, &[&ch]);
    let mids: Vec<String> = (0..N)
        .map(|n| [&a, &b][n % 2].publish(&ch, &body(n), if n % 3 == 0 { Some(60) } else { None }))
        .collect();
    assert!(mids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    for (name, ws) in [("a", &mut on_a), ("b", &mut on_b)] {
        let got = ws.messages(N, Duration::from_secs(10));
        let got_mids: Vec<&str> = got.iter().map(|m| m.mid.as_str()).collect();
        assert_eq!(
            got_mids, mids,
            "subscriber on {name}: every message once, in order"
        );
        for (n, m) in got.iter().enumerate() {
            assert_eq!(m.text()["params"]["n"].as_u64(), Some(n as u64));
        }
    }
    on_a.expect_no_message(Duration::from_millis(200));
    on_b.expect_no_message(Duration::from_millis(1));
}

/// spec/cluster.md §5: a `NotificationBatch` PUBLISHed by a foreign process (a Node
/// push-server) on `pushserver:<its uid>` reaches the subscribers of its private and public
/// receivers, text and binary, with the foreign id.
#[test]
fn foreign_notification_reaches_subscribers() {
    let redis = redis_or_skip!();
    let a = node(&redis, |_| {});
    let (private, other_private, public) = (channel(), channel(), channel());
    let mut text = ws_on(&a, &[&private]);
    let marker = channel();
    let bin_token = format!(
        "{}/{}",
        sign_pair(KEY, &other_private, &public),
        sign(KEY, &marker)
    );
    let mut bin = Ws::connect(a.sub, &format!("{bin_token}&binaryMode=true"), None);
    a.wait_subscribers(&marker, 1);

    let id1 = MessageId::new(1_700_000_000, 7);
    let id2 = MessageId::new(1_700_000_000, 8);
    let ipc = |id: MessageId, receiver: pb::Receiver, n: usize| pb::IpcMessage {
        receivers: vec![receiver],
        outgoing_message_id: id.0.to_vec(),
        outgoing_message: Some(node_message(id, &body(n), 0)),
    };
    let batch = pb::NotificationBatch {
        notifications: vec![pb::Notification {
            command: Some(pb::notification::Command::IpcMessages(pb::IpcMessages {
                messages: vec![
                    ipc(id1, pb_receiver(&private, true, vec![]), 1),
                    ipc(id2, pb_receiver(&public, false, vec![]), 2),
                ],
            })),
        }],
    };
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("pushserver:nodejs01")
        .arg(batch.encode_to_vec())
        .query(&mut redis.client())
        .unwrap();
    assert!(receivers >= 1, "the node is subscribed");

    let got = text.messages(1, WAIT);
    assert_eq!(got[0].mid, id1.to_string());
    assert_eq!(got[0].id, 7);
    assert_eq!(got[0].text()["params"]["n"], 1);
    let got = pb_messages(&bin.binary_frame(WAIT));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].id.clone(), got[0].body.as_str()),
        (id2.0.to_vec(), body(2).as_str())
    );
    text.expect_no_message(Duration::from_millis(200));
}

// ---------------------------------------------------------------------------------------------
// §4: replay

/// spec/cluster.md §4: replay after `mid` reads messages written directly in the Node layout
/// (private and public sets, merged in id order); ids whose `message:` key is gone are skipped.
#[test]
fn replay_of_node_layout() {
    let redis = redis_or_skip!();
    let a = node(&redis, |_| {});
    let (private, public) = (channel(), channel());
    let id = |n| MessageId::new(1_700_000_000, n);
    let mut c = redis.client();
    let value = |n: u64| Some(node_message(id(n), &body(n as usize), 60).encode_to_vec());
    write_node_message(&mut c, &private_set(&private), id(1), value(1));
    write_node_message(&mut c, &private_set(&private), id(2), None);
    write_node_message(&mut c, &public_set(&public), id(3), value(3));
    write_node_message(&mut c, &private_set(&private), id(4), value(4));
    let tok = sign_pair(KEY, &private, &public);

    let from_zero = id(0).to_string();
    let r = poll(a.sub, &tok, Some(&from_zero));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = parse_messages(&r.body);
    let mids: Vec<String> = got.iter().map(|m| m.mid.clone()).collect();
    assert_eq!(mids, [id(1), id(3), id(4)].map(|i| i.to_string()));
    let ns: Vec<u64> = got
        .iter()
        .map(|m| m.text()["params"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [1, 3, 4]);

    let r = poll(a.sub, &tok, Some(&id(1).to_string()));
    let mids: Vec<String> = parse_messages(&r.body).into_iter().map(|m| m.mid).collect();
    assert_eq!(mids, [id(3), id(4)].map(|i| i.to_string()));
}

/// spec/cluster.md §4: a stored value that is not an `OutgoingMessage` is skipped, not fatal.
#[test]
fn replay_skips_undecodable_values() {
    let redis = redis_or_skip!();
    let a = node(&redis, |_| {});
    let ch = channel();
    let id = |n| MessageId::new(1_700_000_000, n);
    let mut c = redis.client();
    let set = private_set(&ch);
    write_node_message(&mut c, &set, id(1), Some(b"\xff\xff not protobuf".to_vec()));
    write_node_message(
        &mut c,
        &set,
        id(2),
        Some(node_message(id(2), &body(2), 60).encode_to_vec()),
    );
    let r = poll(a.sub, &sign(KEY, &ch), Some(&id(0).to_string()));
    assert_eq!(r.status, 200, "{}", r.text());
    let mids: Vec<String> = parse_messages(&r.body).into_iter().map(|m| m.mid).collect();
    assert_eq!(mids, [id(2).to_string()]);
}

/// spec/cluster.md §4: messages published on node A are replayed by node B.
#[test]
fn replay_across_nodes() {
    let redis = redis_or_skip!();
    let a = node(&redis, |_| {});
    let b = node(&redis, |_| {});
    let ch = channel();
    let mids: Vec<String> = (0..3).map(|n| a.publish(&ch, &body(n), Some(60))).collect();
    let tok = sign(KEY, &ch);
    let got: Vec<String> = parse_messages(&poll(b.sub, &tok, Some(MID_ZERO)).body)
        .into_iter()
        .map(|m| m.mid)
        .collect();
    assert_eq!(got, mids);
    let got: Vec<String> = parse_messages(&poll(b.sub, &tok, Some(&mids[0])).body)
        .into_iter()
        .map(|m| m.mid)
        .collect();
    assert_eq!(got, mids[1..]);
    // A WebSocket on B replays from A's store, then gets live messages from A.
    let mut ws = Ws::connect(b.sub, &tok, Some(&mids[1]));
    assert_eq!(ws.messages(1, WAIT)[0].mid, mids[2]);
}

// ---------------------------------------------------------------------------------------------
// §6: online

/// spec/cluster.md §6: a subscriber on node A sets `channel:online:<16 bytes>` and
/// `pubchannel:online:<16 bytes>` for `online_ttl + online_delta`; node B reads them in
/// `channelStats` and `GET /pub/`. Leaving refreshes the marks (last seen now).
#[test]
fn online_across_nodes() {
    let redis = redis_or_skip!();
    let window = |c: &mut Config| {
        c.online_ttl = Duration::from_secs(60);
        c.online_delta = Duration::from_secs(10);
    };
    let a = node(&redis, window);
    let b = node(&redis, window);
    let (private, public, other) = (channel(), channel(), channel());
    let mut ws = Ws::connect(a.sub, &sign_pair(KEY, &private, &public), None);
    a.wait_subscribers(&private, 1);

    let mut c = redis.client();
    let marks = [
        channel_key("channel:online:", &private),
        channel_key("pubchannel:online:", &public),
    ];
    for k in &marks {
        let t = ttl(&mut c, k);
        assert!(
            (60..=70).contains(&t),
            "TTL {t} of {:?}",
            String::from_utf8_lossy(k)
        );
    }
    let asked = [
        (private.as_str(), true),
        (public.as_str(), false),
        (other.as_str(), true),
    ];
    assert_eq!(
        pb_online(b.publ, &asked),
        [true, true, false],
        "channelStats on B"
    );
    assert_eq!(b.subscribers(&[&private, &other]), [1, 0], "GET /pub/ on B");

    // Leaving sets the marks again for the whole window.
    for k in &marks {
        let _: i64 = redis::cmd("EXPIRE").arg(k).arg(5).query(&mut c).unwrap();
    }
    ws.send_frame(op::CLOSE, &1000u16.to_be_bytes(), true);
    ws.expect_close(WAIT);
    wait_until("online marks refreshed on leave", WAIT, || {
        marks.iter().all(|k| ttl(&mut c, k) >= 60)
    });
    assert_eq!(
        pb_online(b.publ, &asked),
        [true, true, false],
        "still online on B"
    );
}

/// spec/cluster.md §6: an online key written by another process (a Node push-server's user)
/// makes the channel online on a pushpull node.
#[test]
fn foreign_online_key_counts() {
    let redis = redis_or_skip!();
    let a = node(&redis, |_| {});
    let (private, public) = (channel(), channel());
    let mut c = redis.client();
    for k in [
        channel_key("channel:online:", &private),
        channel_key("pubchannel:online:", &public),
    ] {
        let () = redis::cmd("SETEX")
            .arg(k)
            .arg(100)
            .arg(1)
            .query(&mut c)
            .unwrap();
    }
    assert_eq!(
        pb_online(
            a.publ,
            &[(&private, true), (&public, false), (&public, true)]
        ),
        [true, true, false]
    );
    assert_eq!(a.subscribers(&[&private]), [1]);
}

// ---------------------------------------------------------------------------------------------
// §7: statistics

/// spec/cluster.md §7: each node writes `HSET stats <processUniqueId> <json>`; `/server-stat/`
/// on any node lists every live node.
#[test]
fn server_stat_lists_every_node() {
    let redis = redis_or_skip!();
    let fast = |c: &mut Config| c.stats_interval = Duration::from_secs(1);
    let a = node(&redis, fast);
    let b = node(&redis, fast);
    let mut c = redis.client();
    let mut fields: Vec<(String, String)> = Vec::new();
    wait_until("two entries in HGETALL stats", WAIT, || {
        fields = redis::cmd("HGETALL").arg("stats").query(&mut c).unwrap();
        fields.len() >= 2
    });
    let mut ids = BTreeSet::new();
    for (field, json) in &fields {
        let v: Value = serde_json::from_str(json).expect("stats value is JSON");
        assert_eq!(
            v["processUniqueId"].as_str(),
            Some(field.as_str()),
            "{json}"
        );
        ids.insert(field.clone());
    }
    assert_eq!(ids.len(), 2, "distinct processUniqueIds: {ids:?}");
    // Each node refreshes its view of the others every `stats_interval`.
    for srv in [&a, &b] {
        let listed = || -> BTreeSet<String> {
            let r = request(srv.publ, "GET", "/server-stat/", &[], b"");
            assert_eq!(r.status, 200, "{}", r.text());
            let v: Value = serde_json::from_slice(&r.body).expect("JSON");
            v.as_array()
                .expect("an array")
                .iter()
                .map(|e| {
                    e["processUniqueId"]
                        .as_str()
                        .expect("processUniqueId")
                        .to_owned()
                })
                .collect()
        };
        wait_until("every node lists both", WAIT, || listed() == ids);
    }
}
