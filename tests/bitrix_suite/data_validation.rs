//! Suite "Data Validation": refused requests, limits and bad tokens.

use std::io::Write;

use super::*;

/// Reads the next frame, answering pings: it must be a close (nothing was delivered before it);
/// returns its code and reason.
fn close_before_data(ws: &mut Ws) -> (Option<u16>, String) {
    let until = deadline(WAIT);
    loop {
        let f = ws.try_frame(until).expect("a close frame");
        match f.opcode {
            op::PING => ws.send_frame(op::PONG, &f.payload, true),
            op::CLOSE => return f.close(),
            _ => panic!("a frame before the close: {f:?}"),
        }
    }
}

/// A connected user sends the request `build` makes over its binary WebSocket; the server closes
/// it, and publishes nothing. Returns the close code and reason.
fn ws_refusal(build: impl FnOnce(&TestServer, &User) -> Vec<u8>) -> (Option<u16>, String) {
    let srv = keyed(|_| {});
    let user = User::new();
    let mut ws = user.connect(&srv, None);
    srv.wait_subscribers(&user.private, 1);
    let request = build(&srv, &user);
    ws.send_frame(op::BINARY, &request, true);
    let close = close_before_data(&mut ws);
    assert!(ws.conn.closed_within(WAIT), "closed after the close frame");
    assert_eq!(srv.stats()["published"], 0, "nothing is published");
    close
}

/// The close `(code, "<code>: <reason>")`.
fn closed(code: u16, reason: &str) -> (Option<u16>, String) {
    (Some(code), format!("{code}: {reason}"))
}

/// spec/binary.md §4 (WebSocket), §3 step 1, spec/errors.md §3: bytes that are no `RequestBatch`
/// close with 4013. Suite "Data Validation › sends wrong binary data".
#[test]
fn ws_undecodable_request_closes_4013() {
    let close = ws_refusal(|_, _| vec![1, 2, 3, 4, 5]);
    assert_eq!(close, closed(4013, "Wrong Request Data."));
}

/// spec/binary.md §4 (WebSocket), §3 step 4, spec/limits.md: one message more than the
/// `maxMessagesPerRequest` that `serverStats` reports closes with 4016. Suite "Data Validation ›
/// sends a lot of messages in one request".
#[test]
fn ws_too_many_messages_closes_4016() {
    let close = ws_refusal(|srv, user| {
        let limit = srv.stats()["limits"]["maxMessagesPerRequest"]
            .as_u64()
            .expect("maxMessagesPerRequest") as usize;
        let messages = (0..=limit)
            .map(|n| message(vec![user.public_receiver()], &n.to_string()))
            .collect();
        pb_publish(messages)
    });
    assert_eq!(
        close,
        closed(4016, "Request exceeded the maximum number of messages.")
    );
}

/// spec/binary.md §4 (WebSocket), §3 (`channelStats` step 4): a query without channels closes
/// with 4017. Suite "Data Validation › sends an empty channel stats request (WS)".
#[test]
fn ws_empty_channel_stats_closes_4017() {
    let close = ws_refusal(|_, _| pb_channel_stats(&[]));
    assert_eq!(close, closed(4017, "No channels found."));
}

/// spec/binary.md §4 (WebSocket), §3 (`channelStats` step 4), spec/limits.md: a query for 101
/// signed public channels closes with 4018. Suite "Data Validation › sends a stats request with
/// a lot of channels (WS)".
#[test]
fn ws_channel_stats_over_the_channel_limit_closes_4018() {
    let close = ws_refusal(|_, _| {
        let users = User::many(101);
        let query: Vec<_> = users.iter().map(User::public_query).collect();
        pb_channel_stats(&query)
    });
    assert_eq!(
        close,
        closed(4018, "Request exceeded the maximum number of channels.")
    );
}

/// spec/binary.md §4 step 3, spec/channels.md §3: a public receiver without a signature closes
/// with 4021 and is not delivered (the sender listens on that very channel). Suite "Data
/// Validation › sends a message with an empty signature to the public channel".
#[test]
fn ws_public_receiver_without_signature_closes_4021() {
    let close = ws_refusal(|_, user| {
        let receiver = pb_receiver(&user.public, false, vec![]);
        pb_publish(vec![message(vec![receiver], "message")])
    });
    assert_eq!(close, closed(4021, "Channel has an invalid signature."));
}

/// spec/binary.md §4 (WebSocket), §3 step 5: a message without receivers closes with 4017.
/// Suite "Data Validation › sends a message with empty receivers".
#[test]
fn ws_message_without_receivers_closes_4017() {
    let close = ws_refusal(|_, _| pb_publish(vec![message(vec![], "message")]));
    assert_eq!(close, closed(4017, "No channels found."));
}

/// spec/binary.md §4 step 3, spec/channels.md §3: a public receiver carrying the signature of
/// another id closes with 4021 and is not delivered. Suite "Data Validation › sends a message
/// with a wrong signature to the public channel".
#[test]
fn ws_public_receiver_with_a_wrong_signature_closes_4021() {
    let close = ws_refusal(|_, user| {
        let receiver = pb_receiver(&user.public, false, public_signature(KEY, "wrong id"));
        pb_publish(vec![message(vec![receiver], "message")])
    });
    assert_eq!(close, closed(4021, "Channel has an invalid signature."));
}

/// spec/binary.md §4 step 3: a browser naming a private receiver, even its own, is closed with
/// 4020. Suite "Data Validation › sends a message to the private channel".
#[test]
fn ws_private_receiver_closes_4020() {
    let close = ws_refusal(|_, user| {
        let receiver = pb_receiver(&user.private, true, vec![]);
        pb_publish(vec![message(vec![receiver], "message")])
    });
    assert_eq!(close, closed(4020, "Private channel is not allowed."));
}

/// One message to the public channel of `user` whose body alone is 1 MiB of `1`, as the suite
/// sends it: the request is above the 1 MiB `max_payload`.
fn mib_request(user: &User) -> Vec<u8> {
    let body = "1".repeat(1_048_576);
    pb_publish(vec![message(vec![user.public_receiver()], &body)])
}

/// spec/limits.md (`max_payload`), spec/websocket.md §6, spec/errors.md §3: with the default
/// limit of 1 MiB, a binary frame carrying a message whose body alone is 1 MiB closes the
/// socket with 1009 and nothing is delivered. Suite "Data Validation › sends a message more than
/// 1MB (websocket)".
#[test]
fn ws_request_over_1_mib_closes_1009() {
    let srv = keyed(|_| {});
    let user = User::new();
    let mut ws = user.connect(&srv, None);
    srv.wait_subscribers(&user.private, 1);
    let frame = client_frame(true, op::BINARY, &mib_request(&user), true);
    // The server may stop reading at the header: a failed write is no failure.
    let _ = ws.conn.stream.write_all(&frame);
    assert_eq!(close_before_data(&mut ws), closed(1009, "frame too large"));
    assert!(ws.conn.closed_within(WAIT));
    assert_eq!(srv.stats()["published"], 0);
}

/// spec/limits.md (`max_payload`), spec/errors.md §1: the same request posted to `/rest/` is
/// `413` and nothing is published. Suite "Data Validation › sends a message more than 1MB
/// (rest)".
#[test]
fn rest_request_over_1_mib_is_413() {
    let srv = keyed(|_| {});
    let user = User::new();
    let mut c = Conn::connect(srv.publ);
    let path = format!("/rest/?CHANNEL_ID={}", user.token);
    let _ = c
        .stream
        .write_all(&format_request("POST", &path, &[], &mib_request(&user)));
    let r = c.response();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(
        r.text(),
        "413: Payload Too Large. The limit is 1048576 bytes."
    );
    assert!(r.closes());
    assert_eq!(srv.stats()["published"], 0);
}

/// spec/binary.md §5: with the cap `maxConnPerChannel` that `serverStats` reports (the default
/// 100), three binary WebSockets on one `priv:pub` token and then as many again as the cap:
/// exactly the three oldest are closed with 4029 `4029: Too many connections`, the others stay
/// subscribed and get the next message. Suite "Data Validation › tries to subscribe a lot of
/// clients to one channel".
#[test]
fn connections_over_the_cap_evict_the_oldest() {
    let srv = keyed(|_| {});
    let stats = srv.stats();
    assert_eq!(stats["clusterMode"], false);
    let cap = stats["limits"]["maxConnPerChannel"]
        .as_u64()
        .expect("maxConnPerChannel");
    assert_eq!(cap, 100);
    let user = User::new();
    let mut oldest: Vec<Ws> = (1..=3)
        .map(|n| {
            let ws = user.connect(&srv, None);
            srv.wait_subscribers(&user.private, n);
            ws
        })
        .collect();
    let mut newer: Vec<Ws> = (0..cap).map(|_| user.connect(&srv, None)).collect();
    for ws in &mut oldest {
        assert_eq!(close_before_data(ws), closed(4029, "Too many connections"));
        assert!(ws.conn.closed_within(WAIT));
    }
    srv.wait_subscribers(&user.private, cap);
    srv.publish(&user.private, "after", None);
    for ws in &mut newer {
        assert_eq!(pb_messages(&ws.binary_frame(WAIT))[0].body, "after");
    }
}

/// spec/publishing.md §3, §2 step 8: `GET /pub/?CHANNEL_ID=` (an empty list) is `400`
/// `4017: No channels found.`. Suite "Data Validation › sends an empty channel stats request
/// (HTTP)".
#[test]
fn channel_info_empty_list_is_4017() {
    let srv = keyed(|_| {});
    let r = request(srv.publ, "GET", "/pub/?CHANNEL_ID=", &[], b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "4017: No channels found.")
    );
}

/// spec/publishing.md §3, §2 step 7, spec/limits.md: `GET /pub/` naming 101 ids is `400`
/// `4018: Request exceeded the maximum number of channels.`. Suite "Data Validation › sends a
/// stats request with a lot of channels (HTTP)".
#[test]
fn channel_info_over_the_channel_limit_is_4018() {
    let srv = keyed(|_| {});
    let ids: Vec<String> = (0..101).map(|_| channel()).collect();
    let path = format!("/pub/?CHANNEL_ID={}", ids.join("/"));
    let r = request(srv.publ, "GET", &path, &[], b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            "4018: Request exceeded the maximum number of channels."
        )
    );
}

/// spec/binary.md §3 (`incomingMessages` step 5, `channelStats` step 4): trusted requests naming
/// a channel whose id is not 16 bytes are `400` `4019: Request has an invalid channel id.`: a
/// `channelStats` for the 8 bytes `wrong id`, and a message to a private receiver whose id is
/// empty (what the suite's hex decoding of `wrong id` yields). Suite "Data Validation › gets
/// stats for a wrong private channel (trusted)" and "… › sends a message with a wrong private
/// channel".
#[test]
fn trusted_ids_not_16_bytes_are_4019() {
    let srv = keyed(|_| {});
    let user = User::new();
    let query = pb_request(pb::request::Command::ChannelStats(
        pb::ChannelStatsRequest {
            channels: vec![pb::ChannelIdPb {
                id: b"wrong id".to_vec(),
                is_private: false,
                signature: public_signature(KEY, &user.public),
            }],
        },
    ));
    let empty = pb::Receiver {
        id: vec![],
        is_private: true,
        signature: vec![],
    };
    let publish = pb_publish(vec![message(vec![empty], "message")]);
    for body in [query, publish] {
        let r = trusted(&srv, "?binaryMode=true", &body);
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "4019: Request has an invalid channel id.")
        );
    }
    assert_eq!(srv.stats()["published"], 0);
}

/// spec/binary.md §4 step 3, spec/channels.md §3: a browser's `channelStats` for a public
/// channel whose signature is the bytes `wrong id` is `400`
/// `4021: Channel has an invalid signature.`. Suite "Data Validation › sends stats request with
/// a wrong signature (REST)".
#[test]
fn rest_channel_stats_with_a_wrong_signature_is_4021() {
    let srv = keyed(|_| {});
    let user = User::new();
    let query = pb_channel_stats(&[(&user.public, false, b"wrong id".to_vec())]);
    let r = pb_rest(srv.publ, &user.token, &query);
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "4021: Channel has an invalid signature.")
    );
}

/// spec/channels.md §2, §3, spec/longpoll.md §6: a subscriber cannot listen with a public id
/// signed with its public signature: `/sub/?CHANNEL_ID=<pub>.<public signature>&binaryMode=true`
/// is `400` `4010: Wrong Channel Id.` as a long-poll, and a WebSocket upgrade on it is closed
/// with 4010 (websocket.md §5). Suite "Data Validation › tries to listen to a public channel".
#[test]
fn subscribing_with_a_public_channel_token_is_4010() {
    let srv = keyed(|_| {});
    let user = User::new();
    let token = format!(
        "{}.{}",
        user.public,
        hex::encode(public_signature(KEY, &user.public))
    );
    let path = format!("/sub/?CHANNEL_ID={token}&binaryMode=true");
    let r = request(srv.sub, "GET", &path, &[], b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "4010: Wrong Channel Id.")
    );
    let (mut ws, _) = Ws::connect_path(srv.sub, &path);
    assert_eq!(
        close_before_data(&mut ws),
        closed(4010, "Wrong Channel Id.")
    );
}
