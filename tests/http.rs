//! HTTP/1.1 handling shared by every route (spec/README.md §2, §3).

mod common;

use std::net::Shutdown;
use std::time::Duration;

use common::*;

const HOLD: Duration = Duration::from_millis(200);

/// spec/README.md §2: route matching: prefix, or the route without its trailing slash; not a
/// longer word.
#[test]
fn route_matching() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    for prefix in [
        "/bitrix/sub",
        "/bitrix/sub/",
        "/bitrix/sub/extra/",
        "/subws",
        "/sub/x",
    ] {
        let r = request(
            srv.sub,
            "GET",
            &format!("{prefix}?CHANNEL_ID={ch}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 304, "{prefix}");
    }
    for path in ["/bitrix/subx", "/subwsx/", "/BITRIX/SUB/"] {
        let r = request(srv.sub, "GET", &format!("{path}?CHANNEL_ID={ch}"), &[], b"");
        assert_eq!(r.status, 404, "{path}");
    }
    let r = request(srv.publ, "GET", &format!("/pub?CHANNEL_ID={ch}"), &[], b"");
    assert_eq!(r.status, 200);
}

/// spec/README.md §3: empty lines before the request line are skipped; the absolute form of
/// the target works.
#[test]
fn leading_empty_lines_and_absolute_target() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let mut c = Conn::connect(srv.sub);
    c.send(format!("\r\n\r\nGET /bitrix/sub/?CHANNEL_ID={ch} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(c.response().status, 304);
    c.send(
        format!("GET http://example.com/bitrix/sub/?CHANNEL_ID={ch} HTTP/1.1\r\n\r\n").as_bytes(),
    );
    assert_eq!(c.response().status, 304);
}

/// spec/README.md §3: methods are case-sensitive: `get` on a sub route is not `GET`.
#[test]
fn methods_case_sensitive() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let r = request(srv.sub, "get", &poll_path(&channel(), None), &[], b"");
    assert_eq!(r.status, 405);
}

/// spec/README.md §3: an HTTP/1.0 request that asks for keep-alive keeps its connection, without
/// `Connection: keep-alive` in the answer.
#[test]
fn http10_keep_alive() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let mut c = Conn::connect(srv.sub);
    for _ in 0..2 {
        c.send(
            format!(
                "GET {} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                poll_path(&ch, None)
            )
            .as_bytes(),
        );
        let r = c.response();
        assert_eq!(r.status, 304);
        assert_eq!(r.header("Connection"), None);
    }
}

/// spec/README.md §3: a publisher that closes its sending side right after the request still
/// gets the answer, then the close.
#[test]
fn half_closed_publisher_gets_answer() {
    let srv = start_default();
    let mut c = Conn::connect(srv.publ);
    c.send(&format_request(
        "POST",
        &format!("/bitrix/pub/?CHANNEL_ID={}", channel()),
        &[],
        body(1).as_bytes(),
    ));
    c.stream.shutdown(Shutdown::Write).expect("shutdown");
    let r = c.response();
    assert_eq!(r.status, 200);
    mid_of(&r);
    assert!(c.closed_within(WAIT));
}

/// spec/README.md §3: a held poll whose client half-closes is dropped without an answer.
#[test]
fn half_closed_poll_is_dropped() {
    let srv = start_default();
    let ch = channel();
    let mut c = start_poll(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    c.stream.shutdown(Shutdown::Write).expect("shutdown");
    assert!(c.closed_within(WAIT));
    assert!(c.buffered().is_empty());
    // The channel stays "online" for a while (spec/publishing.md §3); the poll itself is gone.
    wait_until("poll dropped", WAIT, || srv.core_sum("pollings") == 0);
}

/// spec/README.md §3: a body on a request that takes none (the PHP module sends its channel
/// list as the body of `GET /pub/`) is skipped, and the next request on the connection works.
#[test]
fn body_on_get_is_skipped() {
    let srv = start_default();
    let ch = channel();
    let mut c = Conn::connect(srv.publ);
    let mut both = format_request(
        "GET",
        &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
        &[],
        ch.as_bytes(),
    );
    both.extend(format_request("GET", "/server-stat/", &[], b""));
    c.send(&both);
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&ch), "{}", r.text());
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("[{"), "{}", r.text());
}

/// spec/README.md §3: every answer carries `Access-Control-Allow-Origin: *` (except 100 and
/// 101), on both listeners.
#[test]
fn every_answer_has_cors() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let cases: Vec<(std::net::SocketAddr, &str, String, Vec<u8>)> = vec![
        (srv.sub, "GET", poll_path(&ch, None), vec![]),
        (srv.sub, "GET", "/bitrix/sub/".into(), vec![]),
        (srv.sub, "DELETE", "/bitrix/sub/".into(), vec![]),
        (srv.sub, "GET", "/x".into(), vec![]),
        (
            srv.publ,
            "POST",
            format!("/pub/?CHANNEL_ID={ch}"),
            body(1).into_bytes(),
        ),
        (
            srv.publ,
            "POST",
            format!("/pub/?CHANNEL_ID={ch}"),
            b"nope".to_vec(),
        ),
        (srv.publ, "GET", format!("/pub/?CHANNEL_ID={ch}"), vec![]),
        (srv.publ, "GET", "/server-stat/".into(), vec![]),
        (srv.publ, "GET", "/x".into(), vec![]),
    ];
    for (addr, method, path, b) in cases {
        let r = request(addr, method, &path, &[], &b);
        assert_eq!(
            r.header("Access-Control-Allow-Origin"),
            Some("*"),
            "{method} {path}: {}",
            r.status
        );
    }
}

/// spec/README.md §3: while a poll is held, a pipelined request waits; it is answered after the
/// poll, even when the poll ends with a message.
#[test]
fn pipelined_request_waits_for_held_poll() {
    let srv = start_default();
    let ch = channel();
    let mut c = Conn::connect(srv.sub);
    let mut both = format_request("GET", &poll_path(&ch, None), &[], b"");
    both.extend(format_request("OPTIONS", "/bitrix/sub/", &[], b""));
    c.send(&both);
    srv.wait_subscribers(&ch, 1);
    assert!(matches!(
        c.try_response(deadline(Duration::from_millis(200))),
        Err(ReadEnd::Timeout)
    ));
    let mid = srv.publish(&ch, &body(1), None);
    let r = c.response();
    assert_eq!(parse_messages(&r.body)[0].mid, mid);
    assert_eq!(c.response().status, 200);
}
