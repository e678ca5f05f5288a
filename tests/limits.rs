//! Limits, timeouts and HTTP error answers over loopback (spec/limits.md, spec/errors.md).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// spec/limits.md: a request head that does not complete within `head_timeout` gets 408 and the
/// connection is closed.
#[test]
fn incomplete_head_times_out_with_408() {
    let srv = start(|c| c.head_timeout = Duration::from_millis(300));
    let mut c = Conn::connect(srv.sub);
    let started = Instant::now();
    c.send(b"GET /bitrix/sub/?CHANNEL_ID=");
    let r = c.response();
    assert_eq!(r.status, 408);
    assert!(r.closes());
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(c.closed_within(WAIT));
}

/// spec/limits.md: an idle keep-alive connection is closed after `keepalive_timeout`, silently.
#[test]
fn idle_keep_alive_is_closed() {
    let srv = start(|c| c.keepalive_timeout = Duration::from_millis(300));
    // Never sent anything.
    let mut idle = Conn::connect(srv.sub);
    // Sent one request, then went quiet.
    let mut used = Conn::connect(srv.sub);
    used.send(&format_request("OPTIONS", "/bitrix/sub/", &[], b""));
    assert_eq!(used.response().status, 200);
    let started = Instant::now();
    assert!(
        idle.closed_within(Duration::from_secs(3)),
        "idle connection kept"
    );
    assert!(
        used.closed_within(Duration::from_secs(3)),
        "used connection kept"
    );
    assert!(idle.buffered().is_empty() && used.buffered().is_empty());
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// spec/limits.md: at `max_connections` new connections wait (accepting pauses) and are served
/// once enough connections have gone.
#[test]
fn connection_limit_pauses_accepting() {
    let srv = start(|c| {
        c.threads = 1;
        c.max_connections = 10;
    });
    let ch = channel();
    let mut open: Vec<Ws> = (0..10).map(|_| Ws::connect(srv.sub, &ch, None)).collect();
    let mut late = Conn::connect(srv.sub);
    late.send(&upgrade_request(&ws_path(&ch, None), "13"));
    assert!(
        matches!(
            late.try_response(deadline(Duration::from_millis(400))),
            Err(ReadEnd::Timeout)
        ),
        "served over the limit"
    );
    // One below the limit is not enough: accepting stays paused (hysteresis).
    open.truncate(9);
    assert!(
        matches!(
            late.try_response(deadline(Duration::from_millis(400))),
            Err(ReadEnd::Timeout)
        ),
        "resumed before falling below 90 % of the limit"
    );
    // Below 90 % of the limit (other test connections may still be open), accepting resumes.
    open.truncate(6);
    let r = late.response();
    assert_eq!(r.status, 101);
    assert!(srv.core_sum("accept_paused") >= 1);
    assert_eq!(srv.subscribers(&[&ch]), [7]);
    open[0].send_frame(op::PING, b"still here", true);
    assert_eq!(open[0].frame().payload, b"still here");
}

/// spec/errors.md: a head above 16 KiB is answered 431 and the connection closed.
#[test]
fn huge_head_is_431() {
    let srv = start_default();
    let mut c = Conn::connect(srv.sub);
    let big = format!(
        "GET /bitrix/sub/?CHANNEL_ID={} HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        channel(),
        "a".repeat(20_000)
    );
    c.send(big.as_bytes());
    let r = c.response();
    assert_eq!(r.status, 431);
    assert!(r.closes());
    assert!(c.closed_within(WAIT));
}

/// spec/errors.md: malformed requests are 400 with `Connection: close`.
#[test]
fn malformed_request_is_400() {
    let srv = start_default();
    for raw in [
        &b"NOT A REQUEST\r\n\r\n"[..],
        b"GET /bitrix/sub/ HTTP/1.1\r\nBad Header\r\n\r\n",
        b"POST /bitrix/pub/ HTTP/1.1\r\nContent-Length: 12x\r\n\r\n",
        b"GET bitrix/sub/ HTTP/1.1\r\n\r\n",
    ] {
        let addr = if raw.starts_with(b"POST") {
            srv.publ
        } else {
            srv.sub
        };
        let mut c = Conn::connect(addr);
        c.send(raw);
        let r = c.response();
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert!(r.closes());
        assert!(c.closed_within(WAIT));
    }
    let mut c = Conn::connect(srv.sub);
    c.send(b"GET /bitrix/sub/ HTTP/2.0\r\n\r\n");
    assert_eq!(c.response().status, 505);
}

/// spec/errors.md: a method a route does not serve is 405 with `Allow`.
#[test]
fn wrong_method_is_405() {
    let srv = start_default();
    let r = request(srv.sub, "POST", &poll_path(&channel(), None), &[], b"{}");
    assert_eq!(r.status, 405);
    assert!(r.header("Allow").is_some_and(|a| a.contains("GET")));
    let r = request(
        srv.publ,
        "DELETE",
        &format!("/bitrix/pub/?CHANNEL_ID={}", channel()),
        &[],
        b"",
    );
    assert_eq!(r.status, 405);
    assert!(r.header("Allow").is_some_and(|a| a.contains("POST")));
}

/// spec/binary.md §3, spec/errors.md: an undecodable `binaryMode=true` request is 400 `4013`
/// (chunked publishes: tests/chunked.rs).
#[test]
fn bad_binary_publish_refused() {
    let srv = start_default();
    let r = request(
        srv.publ,
        "POST",
        &format!("/bitrix/pub/?CHANNEL_ID={}&binaryMode=true", channel()),
        &[],
        b"\x0a\x00",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "4013: Wrong Request Data.");
    assert_eq!(srv.stats()["published"], 0);
}

/// spec/longpoll.md §2: an HTTP/1.0 poll is answered and the connection closed.
#[test]
fn http10_poll_closes_after_answer() {
    let srv = start(|c| c.longpoll_hold = Duration::from_millis(300));
    let ch = channel();
    let mid = srv.publish(&ch, &body(1), Some(60));
    let mut c = Conn::connect(srv.sub);
    c.send(format!("GET {} HTTP/1.0\r\n\r\n", poll_path(&ch, Some(MID_ZERO))).as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(parse_messages(&r.body)[0].mid, mid);
    assert!(c.closed_within(WAIT));
}

/// spec/longpoll.md §2, spec/limits.md: a subscriber may name at most 100 channels (4018) and
/// must name at least one (4010, as the reference answers).
#[test]
fn subscriber_channel_count_limits() {
    let srv = start(|c| c.longpoll_hold = Duration::from_millis(200));
    let many: Vec<String> = (0..101).map(|_| channel()).collect();
    let r = poll(srv.sub, &many.join("/"), None);
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("4018: "), "{}", r.text());
    let r = poll(srv.sub, &many[..100].join("/"), None);
    assert_eq!(r.status, 304, "100 channels are fine");
    let r = request(srv.sub, "GET", "/bitrix/sub/", &[], b"");
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "4010: Wrong Channel Id.");
}

/// spec/limits.md (`DEFAULT_MAX_HEADERS`), spec/errors.md §1: a head with 64 header fields is
/// read; one with 65 is answered 431 and the connection closed.
#[test]
fn header_count_limit_is_64() {
    let srv = start_default();
    let head = |fields: usize| {
        // `Host` is one of the fields.
        let extra: String = (1..fields).map(|i| format!("X-F{i}: v\r\n")).collect();
        format!("OPTIONS /bitrix/sub/ HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
    };
    let mut c = Conn::connect(srv.sub);
    c.send(head(64).as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.closes());
    c.send(head(65).as_bytes());
    let r = c.response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (431, "431 Request has too many header fields.")
    );
    assert!(r.closes());
    assert!(c.closed_within(WAIT));
}

/// spec/limits.md (`DEFAULT_MAX_HEAD_BYTES`), spec/README.md §3: while a request is being
/// answered (a held long-poll), the server stops reading once 16 KiB of further input is
/// buffered, so a client that keeps sending is pushed back by TCP instead of filling the
/// server's memory; the held request is still answered, then the oversized head gets its 431.
#[test]
fn input_behind_a_held_request_is_bounded() {
    const OFFER: usize = 64 * 1024 * 1024;
    let srv = start(|c| c.longpoll_hold = Duration::from_secs(30));
    let ch = channel();
    let mut c = Conn::connect(srv.sub);
    c.send(&format_request("GET", &poll_path(&ch, None), &[], b""));
    srv.wait_subscribers(&ch, 1);
    // The start of a next head that never ends, offered without waiting.
    let mut pending = b"GET /bitrix/sub/ HTTP/1.1\r\nX-Pad: ".to_vec();
    pending.resize(OFFER, b'a');
    c.stream.set_nonblocking(true).expect("nonblocking");
    let mut sent = 0;
    let end = deadline(Duration::from_secs(20));
    let mut stalled_since: Option<Instant> = None;
    while sent < OFFER && Instant::now() < end {
        match std::io::Write::write(&mut c.stream, &pending[sent..]) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Blocked for a while: the server no longer reads.
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write failed after {sent} bytes: {e}"),
        }
    }
    c.stream.set_nonblocking(false).expect("blocking");
    assert!(
        sent < OFFER,
        "the server read all {OFFER} bytes offered behind a held request"
    );
    // Whatever the kernel buffers hold, the server itself keeps at most 16 KiB plus one read.
    eprintln!("{sent} bytes accepted before the connection stalled");
    let mid = srv.publish(&ch, &body(1), None);
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(parse_messages(&r.body)[0].mid, mid);
    let r = c.response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (431, "431 Request head is too large.")
    );
}

/// spec/limits.md (`DEFAULT_MAX_MESSAGE`, `DEFAULT_MAX_FRAME_PAYLOAD`), spec/websocket.md §6: a
/// client message of exactly `max_payload` bytes, whole or in fragments, is accepted; one byte
/// more in fragments closes with 1009 `message too large`.
#[test]
fn websocket_message_size_limit() {
    let srv = start(|c| c.max_payload = 1024);
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    ws.send_frame(op::TEXT, &[b'a'; 1024], true);
    let parts = [
        client_frame(false, op::TEXT, &[b'a'; 400], true),
        client_frame(false, op::CONT, &[b'a'; 400], true),
        client_frame(true, op::CONT, &[b'a'; 224], true),
    ];
    ws.conn.send(&parts.concat());
    ws.send_frame(op::PING, b"still open", true);
    let f = ws.frame();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (op::PONG, &b"still open"[..])
    );
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);

    let parts = [
        client_frame(false, op::BINARY, &[0; 400], true),
        client_frame(false, op::CONT, &[0; 400], true),
        client_frame(true, op::CONT, &[0; 225], true),
    ];
    ws.conn.send(&parts.concat());
    assert_eq!(
        ws.expect_close(WAIT),
        (Some(1009), "1009: message too large".to_owned())
    );
    assert!(ws.conn.closed_within(WAIT));
    srv.wait_subscribers(&ch, 0);
}

/// spec/limits.md (`MAX_CONTROL_PAYLOAD`), RFC 6455 §5.5: a ping of 125 bytes is answered with
/// the same 125 bytes; a control frame of 126 bytes, or a fragmented one, closes with 1002.
#[test]
fn websocket_control_frame_rules() {
    let srv = start_default();
    let mut ws = Ws::connect(srv.sub, &channel(), None);
    let max = [b'p'; 125];
    ws.send_frame(op::PING, &max, true);
    let f = ws.frame();
    assert_eq!(
        (f.opcode, f.fin, f.payload.as_slice()),
        (op::PONG, true, &max[..])
    );
    for (frame, reason) in [
        (
            client_frame(true, op::PING, &[b'p'; 126], true),
            "control frame too long",
        ),
        (
            client_frame(true, op::PONG, &[b'p'; 126], true),
            "control frame too long",
        ),
        (
            client_frame(true, op::CLOSE, &[3; 126], true),
            "control frame too long",
        ),
        (
            client_frame(false, op::PING, b"part", true),
            "fragmented control frame",
        ),
        (
            client_frame(false, op::CLOSE, &1000u16.to_be_bytes(), true),
            "fragmented control frame",
        ),
    ] {
        let mut ws = Ws::connect(srv.sub, &channel(), None);
        ws.conn.send(&frame);
        assert_eq!(
            ws.expect_close(WAIT),
            (Some(1002), format!("1002: {reason}"))
        );
        assert!(ws.conn.closed_within(WAIT), "{reason}");
    }
}

/// spec/limits.md (`DEFAULT_MAX_CHANNELS_PER_REQUEST`), spec/errors.md §3: a WebSocket may name
/// 100 channels; with 101 the upgrade is answered and closed with 4018.
#[test]
fn websocket_channel_count_limit() {
    let srv = start_default();
    let many: Vec<String> = (0..101).map(|_| channel()).collect();
    let mut ws = Ws::connect(srv.sub, &many.join("/"), None);
    assert_eq!(
        ws.expect_close(WAIT),
        (
            Some(4018),
            "4018: Request exceeded the maximum number of channels.".to_owned()
        )
    );
    assert!(ws.conn.closed_within(WAIT));
    let mut ws = Ws::connect(srv.sub, &many[..100].join("/"), None);
    srv.wait_subscribers(&many[99], 1);
    let mid = srv.publish(&many[99], &body(1), None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
}
