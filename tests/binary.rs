//! Binary mode (queue-server version 4) end to end: protobuf subscribers, the trusted protobuf
//! API, browser publishing, connection caps and daily counts (spec/binary.md, spec/errors.md,
//! spec/publishing.md §6).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use prost::Message as _;
use pushpull::message::MessageId;
use pushpull::proto::pb;
use serde_json::Value;

const HOLD: Duration = Duration::from_millis(300);
/// Long enough that a held poll is still held when the test acts on it.
const LONG_HOLD: Duration = Duration::from_secs(20);

/// A fresh `priv:pub` pair of channel ids.
fn pair() -> (String, String) {
    (channel(), channel())
}

/// A server with the test key (public channels need one).
fn keyed(f: impl FnOnce(&mut pushpull::config::Config)) -> TestServer {
    start(|c| {
        c.security_key = Some(KEY.into());
        c.longpoll_hold = HOLD;
        f(c);
    })
}

/// A binary-mode WebSocket on `token`, registered with the engine.
fn binary_ws(srv: &TestServer, token: &str, private: &str, n: u64) -> Ws {
    let ws = Ws::connect(srv.sub, &format!("{token}&binaryMode=true"), None);
    srv.wait_subscribers(private, n);
    ws
}

/// `POST <path>?CHANNEL_ID=<token>` on the publisher listener (browser publishing).
fn rest(srv: &TestServer, path: &str, token: &str, body: &[u8]) -> Response {
    let headers = [("Content-Type", "application/octet-stream")];
    request(
        srv.publ,
        "POST",
        &format!("{path}?CHANNEL_ID={token}"),
        &headers,
        body,
    )
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

fn assert_backend(m: &pb::OutgoingMessage) {
    let sender = m.sender.as_ref().expect("sender is always present");
    assert_eq!(sender.r#type, pb::SenderType::Backend as i32);
    assert!(sender.id.is_empty(), "{sender:?}");
}

fn assert_client(m: &pb::OutgoingMessage, public: &str) {
    let sender = m.sender.as_ref().expect("sender is always present");
    assert_eq!(sender.r#type, pb::SenderType::Client as i32);
    assert_eq!(sender.id, raw_id(public));
}

/// `<code>: <reason>` with status 400 and a kept connection.
fn assert_wire_error(r: &Response, text: &str) {
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.text(), text);
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert!(!r.closes(), "the connection is kept");
}

/// Bytes written as hex pairs separated by spaces (the spec's notation).
fn hex_bytes(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// §1–§2: binary subscribers and the message encoding

/// spec/binary.md §1, §2: a `binaryMode=true` WebSocket gets each message as one binary frame
/// holding a `ResponseBatch` with one `outgoingMessages` response: the 13-byte id of the
/// publish's `mid`, the body, the expiry, `created` in Unix seconds, and sender BACKEND.
#[test]
fn binary_ws_gets_protobuf_frame() {
    let srv = start_default();
    let ch = channel();
    let mut ws = binary_ws(&srv, &ch, &ch, 1);
    let before = unix_now();
    let mid = srv.publish(&ch, &body(1), Some(60));
    let bytes = ws.binary_frame(WAIT);
    let batch = pb_decode(&bytes);
    assert_eq!(batch.responses.len(), 1);
    let messages = pb_messages(&bytes);
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    let id = MessageId::parse(mid.as_bytes()).expect("mid");
    assert_eq!(m.id, id.0.to_vec());
    assert_eq!(m.body, body(1));
    assert_eq!(m.expiry, 60);
    assert!(
        (before..=unix_now()).contains(&m.created),
        "created {}",
        m.created
    );
    assert_backend(m);
    // Without Message-Expiry the expiry is 0 and the field is left out.
    srv.publish(&ch, &body(2), None);
    let m = pb_messages(&ws.binary_frame(WAIT)).remove(0);
    assert_eq!((m.expiry, m.body.as_str()), (0, body(2).as_str()));
}

/// spec/binary.md §2: the two example encodings of the spec, byte for byte, and their
/// concatenation decoding as one batch of two responses.
#[test]
fn spec_example_bytes() {
    use pushpull::message::{ChannelId, Sender};
    let id = MessageId::parse(b"17000000000000000000000042").unwrap();
    let backend = pb::encode_message(
        id,
        br#"{"module_id":"im","command":"x","params":{}}"#,
        3600,
        1_700_000_000,
        Sender::Backend,
    );
    let want = hex_bytes(
        "0a 4d 0a 4b 0a 49 0a 0d 17 00 00 00 00 00 00 00 00 00 00 00 42 \
         12 2c 7b 22 6d 6f 64 75 6c 65 5f 69 64 22 3a 22 69 6d 22 2c 22 63 6f \
         6d 6d 61 6e 64 22 3a 22 78 22 2c 22 70 61 72 61 6d 73 22 3a 7b 7d 7d \
         18 90 1c 25 00 f1 53 65 2a 02 08 02",
    );
    assert_eq!(backend.as_ref(), want.as_slice());
    let public = ChannelId::from_hex(b"fedcba9876543210fedcba9876543210").unwrap();
    let client = pb::encode_message(id, b"{}", 0, 1_700_000_000, Sender::Client(public));
    let want = hex_bytes(
        "0a 32 0a 30 0a 2e 0a 0d 17 00 00 00 00 00 00 00 00 00 00 00 42 12 02 7b 7d \
         25 00 f1 53 65 2a 14 08 01 12 10 fe dc ba 98 76 54 32 10 fe dc ba 98 76 54 32 10",
    );
    assert_eq!(client.as_ref(), want.as_slice());
    let mut both = backend.to_vec();
    both.extend_from_slice(&client);
    assert_eq!(both.len(), 131);
    assert_eq!(pb_decode(&both).responses.len(), 2);
    // The request examples of §3 and §4.
    let publish = pb_publish(vec![pb_message(
        vec![pb_receiver(
            "0123456789abcdef0123456789abcdef",
            true,
            vec![],
        )],
        "{}",
        60,
        "im_x",
    )]);
    let want = hex_bytes(
        "0a 26 0a 24 0a 22 0a 14 0a 10 01 23 45 67 89 ab cd ef 01 23 45 67 89 ab cd ef 10 01 \
         1a 02 7b 7d 20 3c 2a 04 69 6d 5f 78",
    );
    assert_eq!(publish, want);
    let pub_hex = "fedcba9876543210fedcba9876543210";
    let signature = public_signature("secret", pub_hex);
    assert_eq!(
        hex::encode(&signature),
        "323aacfb759655cbc1d7c237b1ef0d01f90fffb6"
    );
    let browser = pb_publish(vec![pb_message(
        vec![pb_receiver(pub_hex, false, signature)],
        "{}",
        0,
        "im_x",
    )]);
    let want = hex_bytes(
        "0a 38 0a 36 0a 34 0a 28 0a 10 fe dc ba 98 76 54 32 10 fe dc ba 98 76 54 32 10 \
         1a 14 32 3a ac fb 75 96 55 cb c1 d7 c2 37 b1 ef 0d 01 f9 0f ff b6 \
         1a 02 7b 7d 2a 04 69 6d 5f 78",
    );
    assert_eq!(browser, want);
    let stats = pb_channel_stats(&[("0123456789abcdef0123456789abcdef", true, vec![])]);
    let want =
        hex_bytes("0a 18 12 16 0a 14 0a 10 01 23 45 67 89 ab cd ef 01 23 45 67 89 ab cd ef 10 01");
    assert_eq!(stats, want);
}

/// spec/binary.md §1: a `binaryMode=true` long-poll is answered `200`
/// `application/octet-stream` with the protobuf bytes; the hold end is the same `304` as in text
/// mode.
#[test]
fn binary_long_poll_is_octet_stream() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let mut c = start_poll(srv.sub, &format!("{ch}&binaryMode=true"), None);
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(7), None);
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    let messages = pb_messages(&r.body);
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].id,
        MessageId::parse(mid.as_bytes()).unwrap().0.to_vec()
    );
    assert_eq!(messages[0].body, body(7));
    assert_backend(&messages[0]);
    // Nothing new: 304 with Last-Message-Id, as in text mode.
    let r = poll(srv.sub, &format!("{ch}&binaryMode=true"), Some(&mid));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Last-Message-Id"), Some(mid.as_str()));
}

/// spec/binary.md §2: several messages written together are concatenated batches, which decode
/// as one `ResponseBatch` with one response per message (a replay on a WebSocket and on a
/// long-poll).
#[test]
fn two_messages_one_frame_decode_as_one_batch() {
    let srv = start_default();
    let ch = channel();
    let first = srv.publish(&ch, &body(1), Some(60));
    let second = srv.publish(&ch, &body(2), Some(60));
    let ids = [&first, &second].map(|m| MessageId::parse(m.as_bytes()).unwrap().0.to_vec());

    let mut ws = Ws::connect(srv.sub, &format!("{ch}&binaryMode=true"), Some(MID_ZERO));
    let bytes = ws.binary_frame(WAIT);
    let batch = pb_decode(&bytes);
    assert_eq!(batch.responses.len(), 2, "one response per message");
    let got: Vec<Vec<u8>> = pb_messages(&bytes).into_iter().map(|m| m.id).collect();
    assert_eq!(got, ids);

    let r = poll(srv.sub, &format!("{ch}&binaryMode=true"), Some(MID_ZERO));
    assert_eq!(r.status, 200);
    assert_eq!(pb_decode(&r.body).responses.len(), 2);
    let got: Vec<Vec<u8>> = pb_messages(&r.body).into_iter().map(|m| m.id).collect();
    assert_eq!(got, ids);
}

// ---------------------------------------------------------------------------------------------
// §3: the trusted protobuf API

/// spec/binary.md §3: `incomingMessages` on `/pub/?binaryMode=true` is answered `200` with an
/// empty body; private receivers reach the private channel, public receivers (no signature
/// needed) reach the subscribers of a `priv:pub` token; text subscribers get the same message in
/// text form.
#[test]
fn protobuf_publish_private_and_public_receivers() {
    let srv = keyed(|_| {});
    let (private, public) = pair();
    let token = sign_pair(KEY, &private, &public);
    let mut bin = binary_ws(&srv, &token, &private, 1);
    let mut text = Ws::connect(srv.sub, &token, None);
    srv.wait_subscribers(&private, 2);

    let request = pb_publish(vec![
        pb_message(
            vec![pb_receiver(&private, true, vec![])],
            &body(1),
            0,
            "im_x",
        ),
        pb_message(
            vec![pb_receiver(&public, false, vec![])],
            &body(2),
            60,
            "im_y",
        ),
    ]);
    let r = pb_post(srv.publ, &request);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty(), "empty body: {:?}", r.text());

    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(pb_messages(&bin.binary_frame(WAIT)));
    }
    assert_eq!(got[0].body, body(1));
    assert_eq!(got[1].body, body(2));
    assert_eq!(got[1].expiry, 60);
    got.iter().for_each(assert_backend);
    assert!(got[0].id < got[1].id, "ids ascend");

    let texts = text.messages(2, WAIT);
    assert_eq!(texts[0].text()["params"]["n"], 1);
    assert_eq!(texts[1].text()["params"]["n"], 2);
}

/// spec/binary.md §3, §6: `channelStats` answers `200` `application/octet-stream` with one
/// `ChannelStats` per asked channel, in order, online while connected.
#[test]
fn channel_stats_online_offline() {
    let srv = keyed(|_| {});
    let (private, public) = pair();
    let other = channel();
    let token = sign_pair(KEY, &private, &public);
    let mut ws = Ws::connect(srv.sub, &token, None);
    srv.wait_subscribers(&private, 1);
    let asked = [
        (private.as_str(), true),
        (public.as_str(), false),
        (other.as_str(), true),
        // The public id asked as a private channel is another channel.
        (public.as_str(), true),
    ];
    assert_eq!(pb_online(srv.publ, &asked), [true, true, false, false]);
    // A channel named twice is answered once.
    let twice = pb_channel_stats(&[(&private, true, vec![]), (&private, true, vec![])]);
    let r = pb_post(srv.publ, &twice);
    assert_eq!(pb_stats_of(&r.body).len(), 1);
    ws.send_frame(op::CLOSE, &1000u16.to_be_bytes(), true);
    ws.expect_close(WAIT);
    srv.wait_subscribers(&private, 0);
    // The test configuration's online window is 2 ms.
    wait_until("channels offline", WAIT, || {
        pb_online(srv.publ, &asked) == [false; 4]
    });
}

/// spec/binary.md §3, spec/publishing.md §6: `serverStats` answers a `ResponseBatch` whose
/// `serverStats.json` is the `/server-stat/` array.
#[test]
fn server_stats_json() {
    let srv = start(|c| c.max_conn_per_channel = 7);
    let body = pb_request(pb::request::Command::ServerStats(pb::ServerStatsRequest {}));
    assert_eq!(body, [0x0a, 0x02, 0x1a, 0x00]);
    let r = pb_post(srv.publ, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    let batch = pb_decode(&r.body);
    assert_eq!(batch.responses.len(), 1);
    let json = match &batch.responses[0].command {
        Some(pb::response::Command::ServerStats(j)) => j.json.clone(),
        other => panic!("not serverStats: {other:?}"),
    };
    let v: Value = serde_json::from_str(&json).expect("JSON");
    let process = &v.as_array().expect("an array")[0];
    assert_eq!(process["pid"], std::process::id());
    assert_eq!(process["limits"]["maxConnPerChannel"], 7);
    assert_eq!(process["clusterMode"], false);
    assert_eq!(process["daily"]["requests"]["serverStats"], 1);
}

/// spec/binary.md §3, spec/errors.md §1: bad trusted requests get `400 <code>: <reason>` and
/// keep the connection: undecodable or empty batches and bodies that are not JSON 4013,
/// messages without receivers 4017, ids that are not 16 bytes 4019.
#[test]
fn trusted_request_errors() {
    let srv = start_default();
    let ch = channel();
    let e4013 = "4013: Wrong Request Data.";
    assert_wire_error(&pb_post(srv.publ, b"\xff\xff"), e4013);
    assert_wire_error(&pb_post(srv.publ, b""), e4013);
    // A request without a command.
    assert_wire_error(&pb_post(srv.publ, &[0x0a, 0x00]), e4013);
    let not_json = pb_publish(vec![pb_message(
        vec![pb_receiver(&ch, true, vec![])],
        "not json",
        0,
        "",
    )]);
    assert_wire_error(&pb_post(srv.publ, &not_json), e4013);
    let none = pb_publish(vec![pb_message(vec![], &body(1), 0, "")]);
    assert_wire_error(&pb_post(srv.publ, &none), "4017: No channels found.");
    let short = pb_publish(vec![pb_message(
        vec![pb::Receiver {
            id: vec![1; 15],
            is_private: true,
            signature: vec![],
        }],
        &body(1),
        0,
        "",
    )]);
    assert_wire_error(
        &pb_post(srv.publ, &short),
        "4019: Request has an invalid channel id.",
    );
    assert_wire_error(
        &pb_post(srv.publ, &pb_channel_stats(&[])),
        "4017: No channels found.",
    );
    // The connection stays usable after an error.
    let mut c = Conn::connect(srv.publ);
    let path = "/bitrix/pub/?binaryMode=true";
    c.send(&format_request("POST", path, &[], b"\xff"));
    assert_eq!(c.response().status, 400);
    c.send(&format_request(
        "POST",
        path,
        &[],
        &pb_channel_stats(&[(&ch, true, vec![])]),
    ));
    assert_eq!(c.response().status, 200);
}

/// spec/binary.md §3: an `incomingMessages` request with no messages publishes nothing and is
/// answered `200` with an empty body.
#[test]
fn empty_incoming_messages_is_200() {
    let srv = start_default();
    let r = pb_post(srv.publ, &pb_publish(vec![]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty(), "{}", r.text());
}

/// spec/binary.md §3: only `requests[0]` of a batch is executed.
#[test]
fn only_first_request_runs() {
    let srv = start_default();
    let ch = channel();
    let one = |n: usize| pb::Request {
        command: Some(pb::request::Command::IncomingMessages(
            pb::IncomingMessagesRequest {
                messages: vec![pb_message(
                    vec![pb_receiver(&ch, true, vec![])],
                    &body(n),
                    60,
                    "",
                )],
            },
        )),
    };
    let batch = pb::RequestBatch {
        requests: vec![one(1), one(2)],
    };
    let r = pb_post(srv.publ, &batch.encode_to_vec());
    assert_eq!(r.status, 200, "{}", r.text());
    let r = poll(srv.sub, &ch, Some(MID_ZERO));
    let got = parse_messages(&r.body);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].text()["params"]["n"], 1);
}

/// spec/binary.md §3, spec/limits.md: more messages than `max_messages_per_request` is 4016;
/// exactly the limit is accepted.
#[test]
fn too_many_messages_is_4016() {
    let srv = start(|c| c.max_messages_per_request = 2);
    let ch = channel();
    let msg = || pb_message(vec![pb_receiver(&ch, true, vec![])], &body(1), 0, "");
    let r = pb_post(srv.publ, &pb_publish(vec![msg(), msg(), msg()]));
    assert_wire_error(&r, "4016: Request exceeded the maximum number of messages.");
    let r = pb_post(srv.publ, &pb_publish(vec![msg(), msg()]));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// spec/binary.md §3, spec/limits.md: a message or `channelStats` query naming more than
/// `max_channels_per_request` (100) channels is 4018; 100 are accepted.
#[test]
fn too_many_channels_is_4018() {
    let srv = start_default();
    let ids: Vec<String> = (0..101).map(|_| channel()).collect();
    let receivers = |n: usize| {
        ids[..n]
            .iter()
            .map(|c| pb_receiver(c, true, vec![]))
            .collect()
    };
    let e4018 = "4018: Request exceeded the maximum number of channels.";
    let r = pb_post(
        srv.publ,
        &pb_publish(vec![pb_message(receivers(101), &body(1), 0, "")]),
    );
    assert_wire_error(&r, e4018);
    let r = pb_post(
        srv.publ,
        &pb_publish(vec![pb_message(receivers(100), &body(1), 0, "")]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let asked: Vec<(&str, bool, Vec<u8>)> =
        ids.iter().map(|c| (c.as_str(), true, vec![])).collect();
    assert_wire_error(&pb_post(srv.publ, &pb_channel_stats(&asked)), e4018);
    let r = pb_post(srv.publ, &pb_channel_stats(&asked[..100]));
    assert_eq!(r.status, 200);
    assert_eq!(pb_stats_of(&r.body).len(), 100);
}

// ---------------------------------------------------------------------------------------------
// §4: browser publishing

/// spec/binary.md §4: `POST /rest/` (and `/bitrix/rest/`) with the browser's own signed
/// `priv:pub` token publishes to another user's public channel; the receiver gets the message
/// with sender CLIENT and the publisher's public id; the answer is `200` with an empty body.
#[test]
fn rest_publish_reaches_public_channel_as_client() {
    let srv = keyed(|_| {});
    let (a_priv, a_pub) = pair();
    let (b_priv, b_pub) = pair();
    let mut b = binary_ws(&srv, &sign_pair(KEY, &b_priv, &b_pub), &b_priv, 1);
    let a_token = sign_pair(KEY, &a_priv, &a_pub);
    for (n, path) in ["/rest/", "/bitrix/rest/"].into_iter().enumerate() {
        let request = pb_publish(vec![pb_message(
            vec![pb_receiver(&b_pub, false, public_signature(KEY, &b_pub))],
            &body(n),
            0,
            "im_typing",
        )]);
        let r = rest(&srv, path, &a_token, &request);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(r.body.is_empty());
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
        let m = pb_messages(&b.binary_frame(WAIT)).remove(0);
        assert_eq!(m.body, body(n));
        assert_client(&m, &a_pub);
    }
    // channelStats is allowed to browsers, on signed public channels.
    let query = pb_channel_stats(&[(&b_pub, false, public_signature(KEY, &b_pub))]);
    let r = rest(&srv, "/rest/", &a_token, &query);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    let stats = pb_stats_of(&r.body);
    assert_eq!(stats.len(), 1);
    assert!(stats[0].is_online && !stats[0].is_private);
}

/// spec/binary.md §4, spec/errors.md §1: browser refusals: no public part in `CHANNEL_ID` 4012,
/// a bad token 4010, a private receiver 4020, a bad public signature 4021, `serverStats` 4014.
/// Nothing is published.
#[test]
fn rest_refusals() {
    let srv = keyed(|_| {});
    let (a_priv, a_pub) = pair();
    let (b_priv, b_pub) = pair();
    let mut b = binary_ws(&srv, &sign_pair(KEY, &b_priv, &b_pub), &b_priv, 1);
    let a_token = sign_pair(KEY, &a_priv, &a_pub);
    let to_b = pb_publish(vec![pb_message(
        vec![pb_receiver(&b_pub, false, public_signature(KEY, &b_pub))],
        &body(1),
        0,
        "",
    )]);

    let r = rest(&srv, "/rest/", &sign(KEY, &a_priv), &to_b);
    assert_wire_error(&r, "4012: Public Channel Id is Required.");
    let r = rest(&srv, "/rest/", &format!("{a_priv}:{a_pub}"), &to_b);
    assert_wire_error(&r, "4010: Wrong Channel Id.");
    let r = rest(&srv, "/rest/", "", &to_b);
    assert_wire_error(&r, "4017: No channels found.");

    let private = pb_publish(vec![pb_message(
        vec![pb_receiver(&b_priv, true, vec![])],
        &body(2),
        0,
        "",
    )]);
    let r = rest(&srv, "/rest/", &a_token, &private);
    assert_wire_error(&r, "4020: Private channel is not allowed.");
    let query = pb_channel_stats(&[(&b_priv, true, vec![])]);
    let r = rest(&srv, "/rest/", &a_token, &query);
    assert_wire_error(&r, "4020: Private channel is not allowed.");

    let mut wrong = public_signature(KEY, &b_pub);
    wrong[0] ^= 1;
    for signature in [wrong, vec![], public_signature("other-key", &b_pub)] {
        let bad = pb_publish(vec![pb_message(
            vec![pb_receiver(&b_pub, false, signature)],
            &body(3),
            0,
            "",
        )]);
        let r = rest(&srv, "/rest/", &a_token, &bad);
        assert_wire_error(&r, "4021: Channel has an invalid signature.");
    }

    let stats = pb_request(pb::request::Command::ServerStats(pb::ServerStatsRequest {}));
    let r = rest(&srv, "/rest/", &a_token, &stats);
    assert_wire_error(&r, "4014: Request command is not allowed.");

    b.expect_no_frame(Duration::from_millis(200));
}

/// spec/README.md §2, spec/binary.md §4: the browser routes answer `OPTIONS` with the CORS
/// preflight, other methods `405` with `Allow: POST, OPTIONS`, and are not served on a sub
/// listener.
#[test]
fn rest_routes() {
    let srv = keyed(|_| {});
    let r = request(srv.publ, "OPTIONS", "/bitrix/rest/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Access-Control-Allow-Methods"),
        Some("POST, GET, DELETE, OPTIONS")
    );
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let r = request(srv.publ, "GET", "/rest/", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST, OPTIONS"));
    let r = request(srv.sub, "POST", "/rest/", &[], b"\x0a\x00");
    assert_eq!(r.status, 404);
}

/// spec/binary.md §4: a `binaryMode=true` WebSocket with a public part sends `RequestBatch`
/// binary frames: a publish to another user's public channel arrives with sender CLIENT and gets
/// no answer, `channelStats` is answered with one binary frame, and a refused request closes the
/// socket with its code.
#[test]
fn ws_binary_request_publish_and_refusal() {
    let srv = keyed(|_| {});
    let (a_priv, a_pub) = pair();
    let (b_priv, b_pub) = pair();
    let mut b = binary_ws(&srv, &sign_pair(KEY, &b_priv, &b_pub), &b_priv, 1);
    let mut a = binary_ws(&srv, &sign_pair(KEY, &a_priv, &a_pub), &a_priv, 1);

    let to_b = pb_publish(vec![pb_message(
        vec![pb_receiver(&b_pub, false, public_signature(KEY, &b_pub))],
        &body(5),
        0,
        "im_typing",
    )]);
    a.send_frame(op::BINARY, &to_b, true);
    let m = pb_messages(&b.binary_frame(WAIT)).remove(0);
    assert_eq!(m.body, body(5));
    assert_client(&m, &a_pub);

    let query = pb_channel_stats(&[(&b_pub, false, public_signature(KEY, &b_pub))]);
    a.send_frame(op::BINARY, &query, true);
    let stats = pb_stats_of(&a.binary_frame(WAIT));
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].id, raw_id(&b_pub));
    assert!(stats[0].is_online);

    let mut bad = public_signature(KEY, &b_pub);
    bad[3] ^= 0x40;
    let bad = pb_publish(vec![pb_message(
        vec![pb_receiver(&b_pub, false, bad)],
        &body(6),
        0,
        "",
    )]);
    a.send_frame(op::BINARY, &bad, true);
    assert_eq!(
        a.expect_close(WAIT),
        (Some(4021), "Channel has an invalid signature.".into())
    );
    assert!(a.conn.closed_within(WAIT));
    b.expect_no_frame(Duration::from_millis(200));

    // A binary WebSocket without a public part may not send requests: 4012.
    let c_priv = channel();
    let mut c = binary_ws(&srv, &sign(KEY, &c_priv), &c_priv, 1);
    c.send_frame(op::BINARY, &to_b, true);
    assert_eq!(
        c.expect_close(WAIT),
        (Some(4012), "Public Channel Id is Required.".into())
    );
    // serverStats from a WebSocket: 4014.
    let (d_priv, d_pub) = pair();
    let mut d = binary_ws(&srv, &sign_pair(KEY, &d_priv, &d_pub), &d_priv, 1);
    let stats = pb_request(pb::request::Command::ServerStats(pb::ServerStatsRequest {}));
    d.send_frame(op::BINARY, &stats, true);
    assert_eq!(
        d.expect_close(WAIT),
        (Some(4014), "Request command is not allowed.".into())
    );
}

/// spec/binary.md §4, spec/websocket.md §3: a text-mode WebSocket's binary frames are read and
/// dropped: nothing is published and the socket stays open.
#[test]
fn text_ws_ignores_binary_frames() {
    let srv = keyed(|_| {});
    let (a_priv, a_pub) = pair();
    let (b_priv, b_pub) = pair();
    let mut b = binary_ws(&srv, &sign_pair(KEY, &b_priv, &b_pub), &b_priv, 1);
    let a_token = sign_pair(KEY, &a_priv, &a_pub);
    let mut a = Ws::connect(srv.sub, &a_token, None);
    srv.wait_subscribers(&a_priv, 1);
    let to_b = pb_publish(vec![pb_message(
        vec![pb_receiver(&b_pub, false, public_signature(KEY, &b_pub))],
        &body(1),
        0,
        "",
    )]);
    a.send_frame(op::BINARY, &to_b, true);
    a.send_frame(op::BINARY, b"\xff\xff", true);
    b.expect_no_frame(Duration::from_millis(300));
    // Still open and subscribed.
    srv.publish(&a_priv, &body(2), None);
    assert_eq!(a.messages(1, WAIT)[0].text()["params"]["n"], 2);
}

// ---------------------------------------------------------------------------------------------
// §5: connections per channel

/// spec/binary.md §5: with `max_conn_per_channel = 2`, a third WebSocket with the same `priv:pub`
/// token closes the oldest with 4029 `Too many connections`; the others keep receiving.
#[test]
fn third_ws_evicts_oldest_with_4029() {
    let srv = keyed(|c| c.max_conn_per_channel = 2);
    let (private, public) = pair();
    let token = sign_pair(KEY, &private, &public);
    let mut first = Ws::connect(srv.sub, &token, None);
    srv.wait_subscribers(&private, 1);
    let mut second = Ws::connect(srv.sub, &token, None);
    srv.wait_subscribers(&private, 2);
    let mut third = Ws::connect(srv.sub, &token, None);
    assert_eq!(
        first.expect_close(WAIT),
        (Some(4029), "Too many connections".into())
    );
    assert!(first.conn.closed_within(WAIT));
    srv.wait_subscribers(&private, 2);
    srv.publish(&private, &body(1), None);
    assert_eq!(second.messages(1, WAIT)[0].text()["params"]["n"], 1);
    assert_eq!(third.messages(1, WAIT)[0].text()["params"]["n"], 1);
}

/// spec/binary.md §5: a held long-poll evicted by newer connections is answered `429`
/// `4029: Too many connections`.
#[test]
fn evicted_long_poll_is_429() {
    let srv = keyed(|c| {
        c.max_conn_per_channel = 2;
        c.longpoll_hold = LONG_HOLD;
    });
    let (private, public) = pair();
    let token = sign_pair(KEY, &private, &public);
    let mut held = start_poll(srv.sub, &token, None);
    srv.wait_subscribers(&private, 1);
    let _second = Ws::connect(srv.sub, &token, None);
    srv.wait_subscribers(&private, 2);
    let _third = Ws::connect(srv.sub, &token, None);
    let r = held.response();
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.text(), "4029: Too many connections");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert!(!r.closes(), "the connection is kept");
}

/// spec/binary.md §5: tokens without a public part are not capped.
#[test]
fn private_only_tokens_are_not_capped() {
    let srv = keyed(|c| c.max_conn_per_channel = 1);
    let ch = channel();
    let token = sign(KEY, &ch);
    let mut all: Vec<Ws> = (0..3).map(|_| Ws::connect(srv.sub, &token, None)).collect();
    srv.wait_subscribers(&ch, 3);
    srv.publish(&ch, &body(1), None);
    for ws in &mut all {
        assert_eq!(ws.messages(1, WAIT)[0].text()["params"]["n"], 1);
    }
}

// ---------------------------------------------------------------------------------------------
// spec/publishing.md §6: daily counts

/// spec/publishing.md §6: `/server-stat/` has the reference's keys and `daily` counts of
/// protobuf requests by command and of messages by type (text publishes and invalid types count
/// as `unknown`; refused requests are not counted).
#[test]
fn server_stat_shape_and_daily_counts() {
    let srv = keyed(|_| {});
    let (private, public) = pair();
    let (a_priv, a_pub) = pair();
    let _ws = binary_ws(&srv, &sign_pair(KEY, &private, &public), &private, 1);
    let to = |kind: &str| pb_message(vec![pb_receiver(&private, true, vec![])], &body(1), 0, kind);
    assert_eq!(
        pb_post(
            srv.publ,
            &pb_publish(vec![to("im_message"), to("im_message")])
        )
        .status,
        200
    );
    assert_eq!(
        pb_post(srv.publ, &pb_publish(vec![to("bad type!")])).status,
        200
    );
    srv.publish(&private, &body(2), None);
    let from_browser = pb_publish(vec![pb_message(
        vec![pb_receiver(&public, false, public_signature(KEY, &public))],
        &body(3),
        0,
        "im_typing",
    )]);
    let a_token = sign_pair(KEY, &a_priv, &a_pub);
    assert_eq!(rest(&srv, "/rest/", &a_token, &from_browser).status, 200);
    pb_online(srv.publ, &[(&private, true)]);
    // Refused: not counted.
    assert_eq!(pb_post(srv.publ, b"\xff").status, 400);
    let private_from_browser = pb_publish(vec![to("x")]);
    assert_eq!(
        rest(&srv, "/rest/", &a_token, &private_from_browser).status,
        400
    );

    let stats = srv.stats();
    for key in [
        "pid",
        "date",
        "processUniqueId",
        "channels",
        "limits",
        "clusterMode",
        "websockets",
        "pollings",
        "daily",
    ] {
        assert!(stats.get(key).is_some(), "{key} missing: {stats}");
    }
    assert_eq!(
        stats["limits"],
        serde_json::json!({
            "maxPayload": 1_048_576,
            "maxConnPerChannel": 100,
            "maxMessagesPerRequest": 100,
            "maxChannelsPerRequest": 100,
        })
    );
    assert_eq!(stats["clusterMode"], false);
    assert_eq!(stats["websockets"], 1);
    let date = stats["date"].as_u64().expect("date");
    assert!(date.abs_diff(u64::from(unix_now()) * 1000) < 60_000, "ms");
    assert_eq!(
        stats["daily"]["requests"],
        serde_json::json!({"incomingMessages": 3, "channelStats": 1})
    );
    assert_eq!(
        stats["daily"]["messages"],
        serde_json::json!({"im_message": 2, "unknown": 2, "im_typing": 1})
    );
}
