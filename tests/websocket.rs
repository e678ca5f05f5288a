//! WebSocket subscribers over loopback (spec/websocket.md).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// spec/websocket.md §1: the upgrade is answered 101 with the RFC 6455 accept value.
#[test]
fn upgrade_answers_101_with_accept_key() {
    let srv = start_default();
    let ch = channel();
    let mut open = Vec::new();
    for path in [
        ws_path(&ch, None),
        format!("/subws/?CHANNEL_ID={ch}"),
        format!("/bitrix/sub/?CHANNEL_ID={ch}"),
    ] {
        let (ws, r) = Ws::connect_path(srv.sub, &path);
        open.push(ws);
        assert_eq!(r.header("Sec-WebSocket-Accept"), Some(WS_ACCEPT), "{path}");
        assert!(
            r.header("Upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        );
        assert!(
            r.header("Connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("upgrade"))
        );
    }
    srv.wait_subscribers(&ch, 3);
    wait_until("websockets gauge", WAIT, || srv.stats()["websockets"] == 3);
    drop(open);
    srv.wait_subscribers(&ch, 0);
    wait_until("websockets gauge", WAIT, || srv.stats()["websockets"] == 0);
}

/// spec/websocket.md §2, §3: live messages arrive as text frames holding text-format messages.
#[test]
fn live_messages_arrive_as_text_frames() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let mids: Vec<String> = (0..3).map(|n| srv.publish(&ch, &body(n), None)).collect();
    let f = ws.frame();
    assert_eq!(f.opcode, op::TEXT);
    assert!(f.fin);
    ws.absorb(f);
    let got = ws.messages(3, WAIT);
    let got_mids: Vec<String> = got.iter().map(|m| m.mid.clone()).collect();
    assert_eq!(got_mids, mids);
    for (n, m) in got.iter().enumerate() {
        assert_eq!(m.text()["params"]["n"], n);
    }
    ws.expect_no_message(Duration::from_millis(200));
}

/// spec/websocket.md §2, spec/history.md §3: with `mid`, stored messages after it come first,
/// then live ones, each exactly once.
#[test]
fn replay_then_live_without_duplicates() {
    let srv = start_default();
    let ch = channel();
    let m0 = srv.publish(&ch, &body(0), Some(60));
    let m1 = srv.publish(&ch, &body(1), Some(60));
    let m2 = srv.publish(&ch, &body(2), Some(60));
    let mut ws = Ws::connect(srv.sub, &ch, Some(&m0));
    // Published (and stored) while the replay may still be running: must not be doubled.
    let m3 = srv.publish(&ch, &body(3), Some(60));
    let got: Vec<String> = ws.messages(3, WAIT).into_iter().map(|m| m.mid).collect();
    assert_eq!(got, [m1, m2, m3]);
    srv.wait_subscribers(&ch, 1);
    let m4 = srv.publish(&ch, &body(4), None);
    let got: Vec<String> = ws.messages(1, WAIT).into_iter().map(|m| m.mid).collect();
    assert_eq!(got, [m4]);
    ws.expect_no_message(Duration::from_millis(200));
}

/// spec/websocket.md §2: a burst published during a replay reaches the subscriber once each,
/// in order, whatever interleaving happens.
#[test]
fn burst_during_replay_is_ordered_and_unique() {
    let srv = start_default();
    let ch = channel();
    let first = srv.publish(&ch, &body(0), Some(60));
    let mut expected: Vec<String> = (1..20)
        .map(|n| srv.publish(&ch, &body(n), Some(60)))
        .collect();
    let mut ws = Ws::connect(srv.sub, &ch, Some(&first));
    expected.extend((20..40).map(|n| srv.publish(&ch, &body(n), Some(60))));
    let got: Vec<String> = ws
        .messages(expected.len(), WAIT)
        .into_iter()
        .map(|m| m.mid)
        .collect();
    assert_eq!(got, expected);
    ws.expect_no_message(Duration::from_millis(200));
}

/// spec/websocket.md §5, spec/channels.md §2: a bad signature gets the 101, then close 4010.
#[test]
fn bad_signature_closes_with_4010() {
    let srv = start(|c| c.security_key = Some(KEY.into()));
    let ch = channel();
    let (mut ws, _) = Ws::connect_path(srv.sub, &ws_path(&sign("wrong", &ch), None));
    let (code, reason) = ws.expect_close(WAIT);
    assert_eq!(code, Some(4010));
    assert!(reason.contains("Wrong Channel Id."), "{reason}");
    assert!(
        ws.conn.closed_within(WAIT),
        "connection ends after the close"
    );

    // The signed id is accepted.
    let mut ws = Ws::connect(srv.sub, &sign(KEY, &ch), None);
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
}

/// spec/websocket.md §4: a client ping is answered with a pong carrying the same payload.
#[test]
fn client_ping_gets_pong_with_same_payload() {
    let srv = start_default();
    let mut ws = Ws::connect(srv.sub, &channel(), None);
    ws.send_frame(op::PING, b"are you there?", true);
    let f = ws.frame();
    assert_eq!(f.opcode, op::PONG);
    assert_eq!(f.payload, b"are you there?");
    ws.send_frame(op::PING, b"", true);
    let f = ws.frame();
    assert_eq!((f.opcode, f.payload.len()), (op::PONG, 0));
}

/// spec/websocket.md §4: the server pings every `ws_ping_interval`; a client that answers stays,
/// one that does not is disconnected.
#[test]
fn server_pings_and_drops_silent_clients() {
    let interval = Duration::from_millis(300);
    let srv = start(|c| c.ws_ping_interval = interval);
    let ch = channel();
    let mut polite = Ws::connect(srv.sub, &ch, None);
    let mut silent = Ws::connect(srv.sub, &ch, None);

    // The polite client answers three pings, roughly one per interval.
    let started = Instant::now();
    for _ in 0..3 {
        let f = polite.frame();
        assert_eq!(f.opcode, op::PING, "{f:?}");
        polite.send_frame(op::PONG, &f.payload, true);
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= interval * 2, "3 pings in {elapsed:?}");

    // The silent client got a ping and then lost its connection.
    let f = silent.frame();
    assert_eq!(f.opcode, op::PING);
    assert!(
        silent
            .conn
            .closed_within(interval * 4 + Duration::from_secs(1))
    );

    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    assert_eq!(polite.messages(1, WAIT)[0].mid, mid);
}

/// spec/websocket.md §6: a client close is echoed with the same code and the connection ends.
#[test]
fn client_close_is_echoed() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    ws.send_frame(op::CLOSE, &payload, true);
    let (code, _) = ws.expect_close(WAIT);
    assert_eq!(code, Some(1000));
    assert!(ws.conn.closed_within(WAIT));
    srv.wait_subscribers(&ch, 0);
}

/// spec/websocket.md §6, RFC 6455 §5.1: an unmasked client frame closes with 1002.
#[test]
fn unmasked_client_frame_closes_1002() {
    let srv = start_default();
    let mut ws = Ws::connect(srv.sub, &channel(), None);
    ws.send_frame(op::TEXT, b"hello", false);
    let (code, _) = ws.expect_close(WAIT);
    assert_eq!(code, Some(1002));
    assert!(ws.conn.closed_within(WAIT));
}

/// spec/websocket.md §6, spec/limits.md: a frame above `max_payload` closes with 1009, decided on
/// the header alone.
#[test]
fn oversize_frame_closes_1009() {
    let srv = start(|c| c.max_payload = 1024);
    let mut ws = Ws::connect(srv.sub, &channel(), None);
    let frame = client_frame(true, op::TEXT, &vec![b'a'; 2000], true);
    // Only the header and a few bytes: the server must not wait for the rest.
    ws.conn.send(&frame[..20]);
    let (code, _) = ws.expect_close(WAIT);
    assert_eq!(code, Some(1009));
    assert!(ws.conn.closed_within(WAIT));

    // A frame within the limit is fine.
    let mut ws = Ws::connect(srv.sub, &channel(), None);
    ws.send_frame(op::TEXT, &[b'a'; 1000], true);
    ws.send_frame(op::PING, b"x", true);
    assert_eq!(ws.frame().opcode, op::PONG);
}

/// spec/websocket.md §1: an unsupported `Sec-WebSocket-Version` is answered 426 naming 13.
#[test]
fn bad_version_is_426() {
    let srv = start_default();
    let mut c = Conn::connect(srv.sub);
    c.send(&upgrade_request(&ws_path(&channel(), None), "8"));
    let r = c.response();
    assert_eq!(r.status, 426);
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"));
}

/// spec/websocket.md §2: a WebSocket on several channels gets each channel's messages, and a
/// message addressed to two of them once.
#[test]
fn several_channels_one_socket() {
    let srv = start_default();
    let (a, b) = (channel(), channel());
    let mut ws = Ws::connect(srv.sub, &format!("{a}/{b}"), None);
    srv.wait_subscribers(&b, 1);
    let m1 = srv.publish(&a, &body(1), None);
    let m2 = srv.publish(&b, &body(2), None);
    let m3 = srv.publish(&format!("{a}/{b}"), &body(3), None);
    let got: Vec<String> = ws.messages(3, WAIT).into_iter().map(|m| m.mid).collect();
    assert_eq!(got, [m1, m2, m3]);
    ws.expect_no_message(Duration::from_millis(200));
}

/// spec/websocket.md §2, spec/history.md §3: a WebSocket that drops and reconnects from the last
/// `mid` it got misses nothing and repeats nothing.
#[test]
fn reconnect_from_last_mid_misses_nothing() {
    const N: usize = 300;
    let srv = start_default();
    let ch = channel();
    let publ = srv.publ;
    let ch2 = ch.clone();
    let publisher = std::thread::spawn(move || {
        let mut c = Conn::connect(publ);
        let mut mids = Vec::new();
        for n in 0..N {
            c.send(&format_request(
                "POST",
                &format!("/bitrix/pub/?CHANNEL_ID={ch2}"),
                &[("Message-Expiry", "60")],
                body(n).as_bytes(),
            ));
            mids.push(mid_of(&c.response()));
        }
        mids
    });
    let mut got: Vec<String> = Vec::new();
    let mut last = MID_ZERO.to_owned();
    while got.len() < N {
        let mut ws = Ws::connect(srv.sub, &ch, Some(&last));
        let want = (N - got.len()).min(40);
        for m in ws.messages(want, Duration::from_secs(10)) {
            assert!(m.mid > last, "{} not after {last}", m.mid);
            last = m.mid.clone();
            got.push(m.mid);
        }
    }
    let published = publisher.join().expect("publisher");
    assert_eq!(got, published);
}

/// spec/websocket.md §3: a large message (over 64 KiB) comes in one frame with a 64-bit length.
#[test]
fn large_message_in_one_frame() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let big = format!(
        r#"{{"module_id":"t","params":{{"p":"{}"}}}}"#,
        "z".repeat(100_000)
    );
    let mid = srv.publish(&ch, &big, None);
    let f = ws.frame();
    assert_eq!(f.opcode, op::TEXT);
    let msgs = parse_messages(&f.payload);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].mid, mid);
    assert_eq!(
        msgs[0].text()["params"]["p"].as_str().map(str::len),
        Some(100_000)
    );
}

/// spec/websocket.md §4, §6: client data frames (also fragmented, with a ping in between) are
/// read and ignored; frames written one byte at a time are understood.
#[test]
fn client_data_frames_ignored_and_byte_split_frames_understood() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    ws.conn
        .send(&client_frame(false, op::TEXT, b"part one ", true));
    ws.send_frame(op::PING, b"mid-message", true);
    ws.conn
        .send(&client_frame(true, op::CONT, b"part two", true));
    ws.send_frame(op::BINARY, &[0, 1, 2, 3], true);
    let f = ws.frame();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (op::PONG, &b"mid-message"[..])
    );
    for b in client_frame(true, op::PING, b"slowly", true) {
        ws.conn.send(&[b]);
        std::thread::sleep(Duration::from_millis(2));
    }
    let f = ws.frame();
    assert_eq!((f.opcode, f.payload.as_slice()), (op::PONG, &b"slowly"[..]));
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
}

/// spec/websocket.md §6: a close without a code is answered with an empty close.
#[test]
fn empty_client_close_echoed_empty() {
    let srv = start_default();
    let mut ws = Ws::connect(srv.sub, &channel(), None);
    ws.send_frame(op::CLOSE, b"", true);
    let f = ws.frame();
    assert_eq!(f.opcode, op::CLOSE);
    assert!(f.payload.is_empty(), "{:?}", f.payload);
    assert!(ws.conn.closed_within(WAIT));
}

/// spec/websocket.md §1: an upgrade without `Sec-WebSocket-Key` is refused with 400.
#[test]
fn upgrade_without_key_is_400() {
    let srv = start_default();
    let mut c = Conn::connect(srv.sub);
    let req = format_request(
        "GET",
        &ws_path(&channel(), None),
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
        ],
        b"",
    );
    c.send(&req);
    assert_eq!(c.response().status, 400);
}

/// spec/websocket.md §6: an abruptly dropped WebSocket is unsubscribed.
#[test]
fn dropped_websocket_is_unsubscribed() {
    let srv = start_default();
    let ch = channel();
    let subs: Vec<Ws> = (0..5).map(|_| Ws::connect(srv.sub, &ch, None)).collect();
    srv.wait_subscribers(&ch, 5);
    drop(subs);
    srv.wait_subscribers(&ch, 0);
    wait_until("websockets gauge 0", WAIT, || {
        srv.stats()["websockets"] == 0
    });
}

/// spec/README.md §5: stopping the server closes WebSockets with 1001 and ends held polls with
/// their 304.
#[test]
fn in_process_shutdown_closes_clients() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    let mut held = start_poll(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 2);
    let stopper = std::thread::spawn(move || drop(srv));
    let (code, _) = ws.expect_close(WAIT);
    assert_eq!(code, Some(1001));
    let r = held.response();
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Expires"), Some(EXPIRES_1973));
    assert!(
        held.closed_within(WAIT),
        "the poll connection is closed after its 304"
    );
    // A well-behaved client answers the close, which lets the server finish at once.
    ws.send_frame(op::CLOSE, &1001u16.to_be_bytes(), true);
    stopper.join().expect("shutdown");
}

/// spec/README.md §5, spec/longpoll.md §4: a held poll that asked to close gets its shutdown
/// `304` with `Connection: close`. (One that did not ask gets no `Connection: close`, although the
/// server closes right after it: that is what the spec says, see the report.)
#[test]
fn shutdown_304_of_closing_request_says_close() {
    let srv = start_default();
    let ch = channel();
    let mut held = Conn::connect(srv.sub);
    held.send(&format_request(
        "GET",
        &poll_path(&ch, None),
        &[("Connection", "close")],
        b"",
    ));
    srv.wait_subscribers(&ch, 1);
    let stopper = std::thread::spawn(move || drop(srv));
    let r = held.response();
    assert_eq!(r.status, 304);
    assert!(r.closes(), "headers: {:?}", r.headers);
    assert!(held.closed_within(WAIT));
    stopper.join().expect("shutdown");
}

/// spec/websocket.md §1: frames sent in the same packet as the upgrade request are read as
/// WebSocket frames.
#[test]
fn frames_in_upgrade_packet() {
    let srv = start_default();
    let mut c = Conn::connect(srv.sub);
    let mut bytes = upgrade_request(&ws_path(&channel(), None), "13");
    bytes.extend(client_frame(true, op::PING, b"early", true));
    c.send(&bytes);
    assert_eq!(c.response().status, 101);
    let mut ws = Ws {
        conn: c,
        backlog: Vec::new(),
    };
    let f = ws.frame();
    assert_eq!((f.opcode, f.payload.as_slice()), (op::PONG, &b"early"[..]));
}

/// spec/websocket.md §6, spec/errors.md §3: each client protocol error closes with its code and
/// reason.
#[test]
fn protocol_errors_close_with_code_and_reason() {
    let srv = start(|c| c.max_payload = 1024);
    let mut rsv = client_frame(true, op::TEXT, b"x", true);
    rsv[0] |= 0x40;
    let mut reserved = client_frame(true, 3, b"x", true);
    reserved[0] = 0x83;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            client_frame(true, op::TEXT, b"x", false),
            1002,
            "client frame not masked",
        ),
        (rsv, 1002, "reserved bits set"),
        (reserved, 1002, "unknown opcode"),
        (
            client_frame(false, op::PING, b"x", true),
            1002,
            "fragmented control frame",
        ),
        (
            client_frame(true, op::PING, &[b'x'; 126], true),
            1002,
            "control frame too long",
        ),
        (
            client_frame(true, op::CONT, b"x", true),
            1002,
            "unexpected continuation frame",
        ),
        (
            [
                client_frame(false, op::TEXT, b"a", true),
                client_frame(true, op::TEXT, b"b", true),
            ]
            .concat(),
            1002,
            "expected continuation frame",
        ),
        (
            client_frame(true, op::CLOSE, &[3], true),
            1002,
            "bad close payload",
        ),
        (
            client_frame(true, op::CLOSE, &1005u16.to_be_bytes(), true),
            1002,
            "invalid close code",
        ),
        (
            client_frame(true, op::TEXT, &[0xff, 0xfe], true),
            1007,
            "invalid UTF-8",
        ),
        (
            client_frame(true, op::TEXT, &[b'a'; 1025], true),
            1009,
            "frame too large",
        ),
        (
            [
                client_frame(false, op::TEXT, &[b'a'; 600], true),
                client_frame(true, op::CONT, &[b'a'; 600], true),
            ]
            .concat(),
            1009,
            "message too large",
        ),
    ];
    for (bytes, code, reason) in cases {
        let mut ws = Ws::connect(srv.sub, &channel(), None);
        ws.conn.send(&bytes);
        assert_eq!(
            ws.expect_close(WAIT),
            (Some(code), format!("{code}: {reason}")),
            "{reason}"
        );
        assert!(ws.conn.closed_within(WAIT), "{reason}");
    }
}

/// spec/websocket.md §4: any pong counts, also an unsolicited one sent before the ping; pings
/// go out on schedule even while messages flow.
#[test]
fn pings_on_schedule_any_pong_counts() {
    let interval = Duration::from_millis(300);
    let srv = start(|c| c.ws_ping_interval = interval);
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let started = Instant::now();
    let mut pings = 0;
    let mut messages = 0;
    while started.elapsed() < interval * 4 {
        // Keep messages flowing and answer pings in advance with an unrelated payload.
        srv.publish(&ch, &body(messages), None);
        ws.send_frame(op::PONG, b"unsolicited", true);
        loop {
            match ws.try_frame(deadline(Duration::from_millis(30))) {
                Ok(f) if f.opcode == op::PING => pings += 1,
                Ok(f) if f.opcode == op::TEXT => messages += parse_messages(&f.payload).len(),
                Ok(f) => panic!("{f:?}"),
                Err(ReadEnd::Timeout) => break,
                Err(ReadEnd::Closed) => panic!("closed after {pings} pings"),
            }
        }
    }
    assert!(pings >= 2, "{pings} pings in {:?}", started.elapsed());
    assert!(messages > 0);
}

/// spec/websocket.md §6: messages queued before a client close are sent before the echo.
#[test]
fn queued_messages_before_close_echo() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    ws.send_frame(op::CLOSE, &1000u16.to_be_bytes(), true);
    let f = ws.frame();
    assert_eq!(f.opcode, op::TEXT, "the message first");
    assert_eq!(parse_messages(&f.payload)[0].mid, mid);
    assert_eq!(ws.expect_close(WAIT), (Some(1000), String::new()));
}

/// spec/websocket.md §2: with small replay pages and live messages during the replay, a
/// WebSocket gets everything once and in order, including live messages that were not stored.
#[test]
fn small_pages_with_live_traffic() {
    let srv = start(|c| c.replay_max = 3);
    let ch = channel();
    let mut expected: Vec<String> = (0..50)
        .map(|n| srv.publish(&ch, &body(n), Some(60)))
        .collect();
    let mut ws = Ws::connect(srv.sub, &ch, Some(MID_ZERO));
    // Some stored, some not: live delivery must cover the unstored ones.
    expected.extend(
        (50..100).map(|n| srv.publish(&ch, &body(n), if n % 2 == 0 { Some(60) } else { None })),
    );
    let got: Vec<String> = ws
        .messages(expected.len(), Duration::from_secs(10))
        .into_iter()
        .map(|m| m.mid)
        .collect();
    assert_eq!(got, expected);
    ws.expect_no_message(Duration::from_millis(200));
}
