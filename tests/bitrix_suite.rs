//! The behaviours Bitrix's API suite for Push server 2.0 checks, in our own words.
//!
//! Bitrix ships a mocha suite with the Node queue server (`tests/api/index.js`). CI cannot fetch
//! it, so every behaviour it checks is covered by a test of this project. The table maps each of
//! its 46 tests, by describe block and title, to the tests here (`bitrix_suite::…`, with the
//! Data Validation and Last Messages tests in the modules of `tests/bitrix_suite/`) or elsewhere
//! that assert the same thing. Ids are fresh channels rather than the suite's md5 ids; the
//! server has a security key, as the suite's does; the routes are the suite's (`/sub/`, `/pub/`,
//! `/rest/`, `/server-stat/`).
//!
//! | Suite test | Covered by |
//! |---|---|
//! | **Message Exchange › Websocket** | |
//! | sends one-to-one messages | `bitrix_suite::ws_one_to_one_messages` |
//! | sends one-to-one messages (delayed) | `bitrix_suite::ws_one_to_one_messages_delayed` |
//! | sends one message with many public channels | `bitrix_suite::ws_one_message_to_many_public_channels` |
//! | sends one request with all messages | `bitrix_suite::ws_one_request_with_all_messages` |
//! | **Message Exchange › POST /pub/** | |
//! | sends one-to-one messages (plain text) | `bitrix_suite::pub_text_one_to_one_messages` |
//! | sends one message to many channels (plain text) | `bitrix_suite::pub_text_one_message_to_many_channels` |
//! | sends one-to-one messages (binary) | `bitrix_suite::pub_protobuf_one_to_one_messages` |
//! | sends one message to many channels (binary) | `bitrix_suite::pub_protobuf_one_message_to_many_channels` |
//! | **Message Exchange › REST** | |
//! | sends one-to-one messages | `bitrix_suite::rest_one_to_one_messages`, `binary::rest_publish_reaches_public_channel_as_client` |
//! | sends one message to many channels (binary) | `bitrix_suite::rest_one_message_to_many_channels` |
//! | **Channel Stats › Websocket** | |
//! | gets online public channel stats | `bitrix_suite::ws_channel_stats_of_online_public_channels`, `binary::ws_binary_request_publish_and_refusal` |
//! | gets online and offline public channels | `bitrix_suite::ws_channel_stats_of_online_and_offline_public_channels` |
//! | **Channel Stats › POST /pub/ (binary)** | |
//! | gets channel stats (private/public, online/offline) | `bitrix_suite::trusted_channel_stats_private_public_online_offline`, `binary::channel_stats_online_offline` |
//! | **Channel Stats › GET /pub/ (plain text)** | |
//! | gets private channel stats | `bitrix_suite::channel_info_lists_private_channels_in_order`, `wire::channel_info_list_handling` |
//! | **Channel Stats › REST** | |
//! | gets public channel stats | `bitrix_suite::rest_channel_stats_of_public_channels` |
//! | **Server Stats** | |
//! | gets stats via GET /server-stat/ | `bitrix_suite::server_stats_by_get_and_by_protobuf`, `binary::server_stat_shape_and_daily_counts`, `wire::server_stat_format` |
//! | gets stats via POST /pub/ (binary) | `bitrix_suite::server_stats_by_get_and_by_protobuf`, `binary::server_stats_json` |
//! | gets stats via Websocket (not allowed) | `binary::ws_binary_request_publish_and_refusal` |
//! | gets stats via REST (not allowed) | `binary::rest_refusals` |
//! | **Long Polling Emulation** | |
//! | sends binary requests, gets binary responses | `bitrix_suite::long_poll_loop_binary_requests_binary_responses` |
//! | sends text requests, gets text responses | `bitrix_suite::long_poll_loop_text_requests_text_responses`, `longpoll::poll_loop_from_last_mid_sees_every_message_once` |
//! | sends binary requests, gets text responses | `bitrix_suite::long_poll_loop_binary_requests_text_responses` |
//! | sends text requests, gets binary responses | `bitrix_suite::long_poll_loop_text_requests_binary_responses` |
//! | **Data Validation** | |
//! | sends wrong binary data | `bitrix_suite::data_validation::ws_undecodable_request_closes_4013` |
//! | sends a message more than 1MB (websocket) | `bitrix_suite::data_validation::ws_request_over_1_mib_closes_1009`, `websocket::oversize_frame_closes_1009` |
//! | sends a message more than 1MB (rest) | `bitrix_suite::data_validation::rest_request_over_1_mib_is_413` |
//! | sends a REST request without a signature | `binary::rest_refusals` |
//! | sends a REST request without a public channel | `binary::rest_refusals` |
//! | tries to subscribe a lot of clients to one channel | `bitrix_suite::data_validation::connections_over_the_cap_evict_the_oldest`, `binary::third_ws_evicts_oldest_with_4029` |
//! | sends a lot of messages in one request | `bitrix_suite::data_validation::ws_too_many_messages_closes_4016`, `binary::too_many_messages_is_4016` |
//! | sends an empty channel stats request (WS) | `bitrix_suite::data_validation::ws_empty_channel_stats_closes_4017` |
//! | sends an empty channel stats request (HTTP) | `bitrix_suite::data_validation::channel_info_empty_list_is_4017` |
//! | sends a stats request with a lot of channels (WS) | `bitrix_suite::data_validation::ws_channel_stats_over_the_channel_limit_closes_4018` |
//! | sends a stats request with a lot of channels (HTTP) | `bitrix_suite::data_validation::channel_info_over_the_channel_limit_is_4018` |
//! | gets stats for a private channel (REST) | `binary::rest_refusals` |
//! | gets stats for a wrong private channel (trusted) | `bitrix_suite::data_validation::trusted_ids_not_16_bytes_are_4019` |
//! | sends stats request with a wrong signature (REST) | `bitrix_suite::data_validation::rest_channel_stats_with_a_wrong_signature_is_4021` |
//! | sends a message with an empty signature to the public channel | `bitrix_suite::data_validation::ws_public_receiver_without_signature_closes_4021` |
//! | sends a message with empty receivers | `bitrix_suite::data_validation::ws_message_without_receivers_closes_4017` |
//! | sends a message with a wrong signature to the public channel | `bitrix_suite::data_validation::ws_public_receiver_with_a_wrong_signature_closes_4021`, `binary::ws_binary_request_publish_and_refusal` |
//! | sends a message to the private channel | `bitrix_suite::data_validation::ws_private_receiver_closes_4020` |
//! | sends a message with a wrong private channel | `bitrix_suite::data_validation::trusted_ids_not_16_bytes_are_4019`, `binary::trusted_request_errors` |
//! | tries to listen to a public channel | `bitrix_suite::data_validation::subscribing_with_a_public_channel_token_is_4010` |
//! | **Last Messages › Websocket** | |
//! | gets last messages | `bitrix_suite::last_messages::ws_resume_from_mid_replays_the_rest_in_one_frame` |
//! | **Last Messages › Long Polling** | |
//! | gets last messages | `bitrix_suite::last_messages::long_poll_resume_from_mid_replays_the_rest` |
//! | gets last message on timeout | `bitrix_suite::last_messages::long_poll_timeout_names_the_newest_message` |

mod common;
#[path = "bitrix_suite/data_validation.rs"]
mod data_validation;
#[path = "bitrix_suite/last_messages.rs"]
mod last_messages;

use std::time::Duration;

use common::*;
use pushpull::proto::pb;
use serde_json::Value;

/// How long a receiver must stay quiet after its expected messages.
const QUIET: Duration = Duration::from_millis(100);

/// A server with the test key, as the suite's server has one.
fn keyed(f: impl FnOnce(&mut pushpull::config::Config)) -> TestServer {
    start(|c| {
        c.security_key = Some(KEY.into());
        f(c);
    })
}

/// One browser user, as the suite's clients: a private and a public channel and the signed
/// `priv:pub` token it subscribes with.
struct User {
    private: String,
    public: String,
    token: String,
}

impl User {
    fn new() -> Self {
        let (private, public) = (channel(), channel());
        let token = sign_pair(KEY, &private, &public);
        Self {
            private,
            public,
            token,
        }
    }

    /// `n` fresh users.
    fn many(n: usize) -> Vec<Self> {
        (0..n).map(|_| Self::new()).collect()
    }

    /// A receiver naming this user's public channel with its right signature.
    fn public_receiver(&self) -> pb::Receiver {
        pb_receiver(&self.public, false, public_signature(KEY, &self.public))
    }

    /// This user's public channel in a `channelStats` query.
    fn public_query(&self) -> (&str, bool, Vec<u8>) {
        (&self.public, false, public_signature(KEY, &self.public))
    }

    /// A binary-mode WebSocket on `/sub/` (from `mid` if given), registered with the engine.
    fn connect(&self, srv: &TestServer, mid: Option<&str>) -> Ws {
        let mut path = format!("/sub/?CHANNEL_ID={}&binaryMode=true", self.token);
        if let Some(mid) = mid {
            path.push_str(&format!("&mid={mid}"));
        }
        let (ws, _) = Ws::connect_path(srv.sub, &path);
        ws
    }
}

/// Every user connected over a binary WebSocket, each registered.
fn connect_all(srv: &TestServer, users: &[User]) -> Vec<Ws> {
    users
        .iter()
        .map(|u| {
            let ws = u.connect(srv, None);
            srv.wait_subscribers(&u.private, 1);
            ws
        })
        .collect()
}

/// A message with body `body`, expiry 60 and type `unit_test`, as the suite builds them.
fn message(receivers: Vec<pb::Receiver>, body: &str) -> pb::IncomingMessage {
    pb_message(receivers, body, 60, "unit_test")
}

/// `POST /pub/<query>` with a protobuf body (the trusted API on the suite's route).
fn trusted(srv: &TestServer, query: &str, body: &[u8]) -> Response {
    request(srv.publ, "POST", &format!("/pub/{query}"), &[], body)
}

/// Reads exactly `n` messages from a binary WebSocket, then asserts that nothing more comes.
fn receive(ws: &mut Ws, n: usize) -> Vec<pb::OutgoingMessage> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(pb_messages(&ws.binary_frame(WAIT)));
    }
    assert_eq!(got.len(), n, "more messages than sent: {got:?}");
    ws.expect_no_frame(QUIET);
    got
}

/// The bodies, read as numbers, in ascending order.
fn numbers(messages: &[pb::OutgoingMessage]) -> Vec<usize> {
    let mut n: Vec<usize> = messages
        .iter()
        .map(|m| m.body.parse().expect("a numeric body"))
        .collect();
    n.sort_unstable();
    n
}

/// Asserts the sender CLIENT with public id `public`.
fn assert_sent_by(m: &pb::OutgoingMessage, public: &str) {
    let sender = m.sender.as_ref().expect("sender");
    assert_eq!(sender.r#type, pb::SenderType::Client as i32, "{m:?}");
    assert_eq!(sender.id, raw_id(public));
}

/// Asserts the sender BACKEND.
fn assert_backend(m: &pb::OutgoingMessage) {
    let sender = m.sender.as_ref().expect("sender");
    assert_eq!(sender.r#type, pb::SenderType::Backend as i32, "{m:?}");
}

// ---------------------------------------------------------------------------------------------
// Message Exchange

/// Each of 5 users sends, over its binary WebSocket, one request per receiver (itself
/// included) with the body `<sender number>`, senders `gap` apart; every user gets exactly
/// 1..=5, each from its sender.
fn ws_one_to_one(gap: Duration) {
    let srv = keyed(|_| {});
    let users = User::many(5);
    let mut sockets = connect_all(&srv, &users);
    for (i, ws) in sockets.iter_mut().enumerate() {
        for receiver in &users {
            let request = pb_publish(vec![message(
                vec![receiver.public_receiver()],
                &(i + 1).to_string(),
            )]);
            ws.send_frame(op::BINARY, &request, true);
        }
        std::thread::sleep(gap);
    }
    for ws in &mut sockets {
        let got = receive(ws, users.len());
        assert_eq!(numbers(&got), [1, 2, 3, 4, 5]);
        for m in &got {
            let n: usize = m.body.parse().unwrap();
            assert_sent_by(m, &users[n - 1].public);
        }
    }
}

/// spec/binary.md §4 (WebSocket), §2: suite "Message Exchange › Websocket › sends one-to-one
/// messages".
#[test]
fn ws_one_to_one_messages() {
    ws_one_to_one(Duration::ZERO);
}

/// spec/binary.md §4 (WebSocket), §2: suite "Message Exchange › Websocket › sends one-to-one
/// messages (delayed)".
#[test]
fn ws_one_to_one_messages_delayed() {
    ws_one_to_one(Duration::from_millis(100));
}

/// spec/binary.md §4 (WebSocket), §3 step 5: one message naming 5 public receivers reaches each
/// of them once. Suite "Message Exchange › Websocket › sends one message with many public
/// channels".
#[test]
fn ws_one_message_to_many_public_channels() {
    let srv = keyed(|_| {});
    let users = User::many(5);
    let mut sockets = connect_all(&srv, &users);
    let receivers = users.iter().map(User::public_receiver).collect();
    let request = pb_publish(vec![message(receivers, "12345")]);
    sockets[0].send_frame(op::BINARY, &request, true);
    for ws in &mut sockets {
        let got = receive(ws, 1);
        assert_eq!(got[0].body, "12345");
        assert_sent_by(&got[0], &users[0].public);
    }
}

/// spec/binary.md §4 (WebSocket), §3: one request holding a message per receiver publishes each
/// of them. Suite "Message Exchange › Websocket › sends one request with all messages".
#[test]
fn ws_one_request_with_all_messages() {
    let srv = keyed(|_| {});
    let users = User::many(5);
    let mut sockets = connect_all(&srv, &users);
    for (i, ws) in sockets.iter_mut().enumerate() {
        let messages = users
            .iter()
            .map(|r| message(vec![r.public_receiver()], &(i + 1).to_string()))
            .collect();
        ws.send_frame(op::BINARY, &pb_publish(messages), true);
    }
    for ws in &mut sockets {
        assert_eq!(numbers(&receive(ws, 5)), [1, 2, 3, 4, 5]);
    }
}

/// spec/publishing.md §1, spec/binary.md §1, spec/text-format.md §3: 15 binary subscribers;
/// a text publish of the body `<n>` to each one's private id, for n in 1..=15, over one
/// keep-alive connection to `/pub/`: each gets exactly 1..=15, the body as published, sender
/// BACKEND. Suite "Message Exchange › POST /pub/ › sends one-to-one messages (plain text)".
#[test]
fn pub_text_one_to_one_messages() {
    let srv = keyed(|_| {});
    let users = User::many(15);
    let mut sockets = connect_all(&srv, &users);
    let mut publisher = Conn::connect(srv.publ);
    for n in 1..=users.len() {
        for u in &users {
            let path = format!("/pub/?CHANNEL_ID={}", u.private);
            publisher.send(&format_request(
                "POST",
                &path,
                &[],
                n.to_string().as_bytes(),
            ));
            let r = publisher.response();
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    for ws in &mut sockets {
        let got = receive(ws, 15);
        assert_eq!(numbers(&got), (1..=15).collect::<Vec<_>>());
        got.iter().for_each(assert_backend);
    }
}

/// spec/publishing.md §2, spec/text-format.md §3: a text publish of `message` (not JSON) to 15
/// private ids joined by `/` reaches each subscriber once, the body unchanged. Suite "Message
/// Exchange › POST /pub/ › sends one message to many channels (plain text)".
#[test]
fn pub_text_one_message_to_many_channels() {
    let srv = keyed(|_| {});
    let users = User::many(15);
    let mut sockets = connect_all(&srv, &users);
    let list: Vec<&str> = users.iter().map(|u| u.private.as_str()).collect();
    let path = format!("/pub/?CHANNEL_ID={}", list.join("/"));
    let r = request(srv.publ, "POST", &path, &[], b"message");
    assert_eq!(r.status, 200, "{}", r.text());
    for ws in &mut sockets {
        assert_eq!(receive(ws, 1)[0].body, "message");
    }
}

/// spec/binary.md §3: trusted `incomingMessages` on `/pub/?CHANNEL_ID=<sender>&binaryMode=true`
/// (the `CHANNEL_ID` is not read) to each user's signed public channel: every user gets exactly
/// 1..=15, sender BACKEND. Suite "Message Exchange › POST /pub/ › sends one-to-one messages
/// (binary)".
#[test]
fn pub_protobuf_one_to_one_messages() {
    let srv = keyed(|_| {});
    let users = User::many(15);
    let mut sockets = connect_all(&srv, &users);
    for (i, sender) in users.iter().enumerate() {
        for receiver in &users {
            let body = pb_publish(vec![message(
                vec![receiver.public_receiver()],
                &(i + 1).to_string(),
            )]);
            let query = format!("?CHANNEL_ID={}&binaryMode=true", sender.private);
            let r = trusted(&srv, &query, &body);
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(r.body.is_empty());
        }
    }
    for ws in &mut sockets {
        let got = receive(ws, 15);
        assert_eq!(numbers(&got), (1..=15).collect::<Vec<_>>());
        got.iter().for_each(assert_backend);
    }
}

/// spec/binary.md §3: one trusted message naming 15 private receivers reaches each once. Suite
/// "Message Exchange › POST /pub/ › sends one message to many channels (binary)".
#[test]
fn pub_protobuf_one_message_to_many_channels() {
    let srv = keyed(|_| {});
    let users = User::many(15);
    let mut sockets = connect_all(&srv, &users);
    let receivers = users
        .iter()
        .map(|u| pb_receiver(&u.private, true, vec![]))
        .collect();
    let r = trusted(
        &srv,
        "?binaryMode=true",
        &pb_publish(vec![message(receivers, "message")]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for ws in &mut sockets {
        assert_eq!(receive(ws, 1)[0].body, "message");
    }
}

/// spec/binary.md §4 (HTTP): each of 9 users posts to `/rest/` with its own token one request
/// per receiver, itself included; every user gets exactly 1..=9, each with its sender's public
/// id. Suite "Message Exchange › REST › sends one-to-one messages".
#[test]
fn rest_one_to_one_messages() {
    let srv = keyed(|_| {});
    let users = User::many(9);
    let mut sockets = connect_all(&srv, &users);
    for (i, sender) in users.iter().enumerate() {
        for receiver in &users {
            let body = pb_publish(vec![message(
                vec![receiver.public_receiver()],
                &(i + 1).to_string(),
            )]);
            let r = pb_rest(srv.publ, &sender.token, &body);
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    for ws in &mut sockets {
        let got = receive(ws, 9);
        assert_eq!(numbers(&got), (1..=9).collect::<Vec<_>>());
        for m in &got {
            let n: usize = m.body.parse().unwrap();
            assert_sent_by(m, &users[n - 1].public);
        }
    }
}

/// spec/binary.md §4 (HTTP): one browser message naming 9 public receivers reaches each once.
/// Suite "Message Exchange › REST › sends one message to many channels (binary)".
#[test]
fn rest_one_message_to_many_channels() {
    let srv = keyed(|_| {});
    let users = User::many(9);
    let mut sockets = connect_all(&srv, &users);
    let receivers = users.iter().map(User::public_receiver).collect();
    let body = pb_publish(vec![message(receivers, "rest message")]);
    let r = pb_rest(srv.publ, &users[0].token, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    for ws in &mut sockets {
        let got = receive(ws, 1);
        assert_eq!(got[0].body, "rest message");
        assert_sent_by(&got[0], &users[0].public);
    }
}

// ---------------------------------------------------------------------------------------------
// Channel Stats

/// `(id, is_private, is_online)` of each entry of a `channelStats` answer.
fn flags(stats: &[pb::ChannelStats]) -> Vec<(Vec<u8>, bool, bool)> {
    stats
        .iter()
        .map(|s| (s.id.clone(), s.is_private, s.is_online))
        .collect()
}

/// What a `channelStats` answer should say of `users`' public channels.
fn public_flags(users: &[User], online: bool) -> Vec<(Vec<u8>, bool, bool)> {
    users
        .iter()
        .map(|u| (raw_id(&u.public), false, online))
        .collect()
}

/// spec/binary.md §4 (WebSocket), §6: every one of 5 connected users asks over its binary
/// WebSocket for the 5 public channels: each gets one `channelStats` frame listing them in the
/// order asked, public and online. Suite "Channel Stats › Websocket › gets online public channel
/// stats".
#[test]
fn ws_channel_stats_of_online_public_channels() {
    let srv = keyed(|_| {});
    let users = User::many(5);
    let mut sockets = connect_all(&srv, &users);
    let query: Vec<_> = users.iter().map(User::public_query).collect();
    for ws in &mut sockets {
        ws.send_frame(op::BINARY, &pb_channel_stats(&query), true);
    }
    for ws in &mut sockets {
        let stats = pb_stats_of(&ws.binary_frame(WAIT));
        assert_eq!(flags(&stats), public_flags(&users, true));
    }
}

/// spec/binary.md §4 (WebSocket), §6: asked for 5 online and then 5 never-connected public
/// channels, each user gets the 10 in order, the first 5 online, the others offline, none
/// private. Suite "Channel Stats › Websocket › gets online and offline public channels".
#[test]
fn ws_channel_stats_of_online_and_offline_public_channels() {
    let srv = keyed(|_| {});
    let online = User::many(5);
    let offline = User::many(5);
    let mut sockets = connect_all(&srv, &online);
    let query: Vec<_> = online
        .iter()
        .chain(&offline)
        .map(User::public_query)
        .collect();
    let mut want = public_flags(&online, true);
    want.extend(public_flags(&offline, false));
    for ws in &mut sockets {
        ws.send_frame(op::BINARY, &pb_channel_stats(&query), true);
        assert_eq!(flags(&pb_stats_of(&ws.binary_frame(WAIT))), want);
    }
}

/// spec/binary.md §3 (`channelStats`), §6: a trusted query on `/pub/?binaryMode=true` for the
/// private ids of 5 connected and 5 never-connected users, then their public ids, is answered
/// `200` with the 20 channels in the order asked, each with its kind and online state. Suite
/// "Channel Stats › POST /pub/ (binary) › gets channel stats (private/public, online/offline)".
#[test]
fn trusted_channel_stats_private_public_online_offline() {
    let srv = keyed(|_| {});
    let online = User::many(5);
    let offline = User::many(5);
    let _sockets = connect_all(&srv, &online);
    let all: Vec<&User> = online.iter().chain(&offline).collect();
    let mut query: Vec<(&str, bool, Vec<u8>)> = all
        .iter()
        .map(|u| (u.private.as_str(), true, vec![]))
        .collect();
    query.extend(all.iter().map(|u| u.public_query()));
    let r = trusted(&srv, "?binaryMode=true", &pb_channel_stats(&query));
    assert_eq!(r.status, 200, "{}", r.text());
    let mut want: Vec<_> = all
        .iter()
        .enumerate()
        .map(|(i, u)| (raw_id(&u.private), true, i < 5))
        .collect();
    want.extend(
        all.iter()
            .enumerate()
            .map(|(i, u)| (raw_id(&u.public), false, i < 5)),
    );
    assert_eq!(flags(&pb_stats_of(&r.body)), want);
}

/// spec/publishing.md §3: `GET /pub/?CHANNEL_ID=<5 private ids>` lists the 5 channels in the
/// order asked, each with its one subscriber. Suite "Channel Stats › GET /pub/ (plain text) ›
/// gets private channel stats".
#[test]
fn channel_info_lists_private_channels_in_order() {
    let srv = keyed(|_| {});
    let users = User::many(5);
    let _sockets = connect_all(&srv, &users);
    let ids: Vec<&str> = users.iter().map(|u| u.private.as_str()).collect();
    let r = request(
        srv.publ,
        "GET",
        &format!("/pub/?CHANNEL_ID={}", ids.join("/")),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).expect("JSON");
    let infos = v["infos"].as_array().expect("infos");
    let listed: Vec<&str> = infos
        .iter()
        .map(|i| i["channel"].as_str().expect("channel"))
        .collect();
    assert_eq!(listed, ids);
    assert!(infos.iter().all(|i| i["subscribers"] == 1), "{v}");
}

/// spec/binary.md §4 (HTTP), §6: a browser's `channelStats` on `/rest/` for 5 signed public
/// channels of connected users answers them in order, public and online. Suite "Channel Stats ›
/// REST › gets public channel stats".
#[test]
fn rest_channel_stats_of_public_channels() {
    let srv = keyed(|_| {});
    let users = User::many(5);
    let _sockets = connect_all(&srv, &users);
    let query: Vec<_> = users.iter().map(User::public_query).collect();
    let r = pb_rest(srv.publ, &users[0].token, &pb_channel_stats(&query));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(flags(&pb_stats_of(&r.body)), public_flags(&users, true));
}

// ---------------------------------------------------------------------------------------------
// Server Stats

/// The statistics array: every element has `pid` and `date`; returns the first.
fn process_stats(json: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(json).expect("statistics are JSON");
    let all = v.as_array().expect("an array of processes");
    assert!(!all.is_empty());
    for p in all {
        assert!(p.get("pid").is_some() && p.get("date").is_some(), "{p}");
    }
    all[0].clone()
}

/// spec/publishing.md §6, spec/binary.md §3 (`serverStats`): `GET /server-stat/` is `200` with
/// an array of process objects that have `pid` and `date`; the protobuf `serverStats` on
/// `/pub/?binaryMode=true` carries the same shape in `serverStats.json`, with the `limits` and
/// `clusterMode` the suite's Data Validation reads before its tests. Suite "Server Stats › gets
/// stats via GET /server-stat/" and "… via POST /pub/ (binary)".
#[test]
fn server_stats_by_get_and_by_protobuf() {
    let srv = keyed(|c| {
        c.max_conn_per_channel = 42;
        c.max_messages_per_request = 43;
    });
    let r = request(srv.publ, "GET", "/server-stat/", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let by_get = process_stats(&r.body);
    assert_eq!(by_get["pid"], std::process::id());

    let body = pb_request(pb::request::Command::ServerStats(pb::ServerStatsRequest {}));
    let r = trusted(&srv, "?binaryMode=true", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let batch = pb_decode(&r.body);
    let json = match batch.responses.first().and_then(|r| r.command.clone()) {
        Some(pb::response::Command::ServerStats(j)) => j.json,
        other => panic!("not serverStats: {other:?}"),
    };
    let by_pb = process_stats(json.as_bytes());
    assert_eq!(by_pb["pid"], std::process::id());
    assert_eq!(by_pb["clusterMode"], false);
    let limits = &by_pb["limits"];
    assert_eq!(limits["maxConnPerChannel"], 42);
    assert_eq!(limits["maxMessagesPerRequest"], 43);
    assert_eq!(limits["maxChannelsPerRequest"], 100);
    assert_eq!(limits["maxPayload"], 1_048_576);
}

// ---------------------------------------------------------------------------------------------
// Long Polling Emulation

/// A user long-polls on `/sub/` in a loop, each request from the last id it got (`mid` of a
/// text message, the hex of a binary message's `id`), while the bodies 1..9 and 0 are published
/// to its private channel one by one, as text publishes or trusted protobuf requests with
/// `Message-Expiry: 86400` and an `X-Forwarded-For` header. Every poll is a `200` and the user
/// sees `1234567890`, each once, in order.
fn long_poll_loop(binary_request: bool, binary_response: bool) {
    let srv = keyed(|c| c.longpoll_hold = Duration::from_secs(20));
    let user = User::new();
    let mode = if binary_response {
        "&binaryMode=true"
    } else {
        ""
    };
    let base = format!("/sub/?CHANNEL_ID={}{mode}", user.token);
    let mut poller = Conn::connect(srv.sub);
    poller.send(&format_request("GET", &base, &[], b""));
    srv.wait_subscribers(&user.private, 1);

    let (publ, private) = (srv.publ, user.private.clone());
    let publisher = std::thread::spawn(move || {
        let mut c = Conn::connect(publ);
        for digit in "1234567890".chars() {
            std::thread::sleep(Duration::from_millis(50));
            let (path, body) = if binary_request {
                let receiver = pb_receiver(&private, true, vec![]);
                let body = pb_publish(vec![message(vec![receiver], &digit.to_string())]);
                ("/pub/?binaryMode=true".to_owned(), body)
            } else {
                let path = format!("/pub/?CHANNEL_ID={private}");
                (path, digit.to_string().into_bytes())
            };
            let headers = [
                ("Message-Expiry", "86400"),
                ("X-Forwarded-For", "92.50.195.150"),
            ];
            c.send(&format_request("POST", &path, &headers, &body));
            let r = c.response();
            assert_eq!(r.status, 200, "{}", r.text());
        }
    });

    let mut seen = String::new();
    while !seen.ends_with('0') {
        assert!(seen.len() < 10, "more than was published: {seen}");
        let r = poller.response();
        assert_eq!(r.status, 200, "{}", r.text());
        let last = if binary_response {
            let messages = pb_messages(&r.body);
            seen.extend(messages.iter().map(|m| m.body.as_str()));
            let id = hex::encode(&messages.last().expect("a message").id);
            assert_eq!(id.len(), 26, "the hex of an id is a mid");
            id
        } else {
            let messages = parse_messages(&r.body);
            seen.extend(messages.iter().map(|m| m.text().to_string()));
            messages.last().expect("a message").mid.clone()
        };
        std::thread::sleep(Duration::from_millis(20));
        let path = format!("{base}&mid={last}");
        poller.send(&format_request("GET", &path, &[], b""));
    }
    publisher.join().expect("publisher");
    assert_eq!(seen, "1234567890");
}

/// spec/longpoll.md §3, spec/binary.md §1, §3, spec/history.md §3: suite "Long Polling
/// Emulation › sends binary requests, gets binary responses".
#[test]
fn long_poll_loop_binary_requests_binary_responses() {
    long_poll_loop(true, true);
}

/// spec/longpoll.md §3, spec/publishing.md §1, spec/history.md §3: suite "Long Polling
/// Emulation › sends text requests, gets text responses".
#[test]
fn long_poll_loop_text_requests_text_responses() {
    long_poll_loop(false, false);
}

/// spec/longpoll.md §3, spec/binary.md §3, spec/text-format.md §1: suite "Long Polling
/// Emulation › sends binary requests, gets text responses".
#[test]
fn long_poll_loop_binary_requests_text_responses() {
    long_poll_loop(true, false);
}

/// spec/longpoll.md §3, spec/binary.md §1, spec/publishing.md §1: suite "Long Polling
/// Emulation › sends text requests, gets binary responses".
#[test]
fn long_poll_loop_text_requests_binary_responses() {
    long_poll_loop(false, true);
}
