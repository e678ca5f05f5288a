//! Exact bytes on the wire: the response heads, bodies and frames the spec writes out in full
//! (spec/README.md §3, spec/longpoll.md, spec/websocket.md, spec/errors.md, spec/publishing.md,
//! spec/text-format.md).

mod common;

use std::time::Duration;

use common::*;

const HOLD: Duration = Duration::from_millis(300);

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

/// One request on a new connection; the exact bytes of the answer.
fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut c = Conn::connect(addr);
    c.send(request);
    text(&c.raw_response())
}

/// spec/longpoll.md §3, spec/text-format.md §1: the exact `200` head and a message laid out key
/// by key, with `tag` and `time` of the acceptance.
#[test]
fn poll_200_exact_bytes() {
    let srv = start_default();
    let ch = channel();
    let b = r#"{"module_id":"im","command":"x","params":{}}"#;
    let before = std::time::SystemTime::now();
    let mid = srv.publish(&ch, b, Some(60));
    let after = std::time::SystemTime::now();
    let got = raw(
        srv.sub,
        &format_request("GET", &poll_path(&ch, Some(MID_ZERO)), &[], b""),
    );
    let (head, body) = got.split_at(got.find("\r\n\r\n").unwrap() + 4);
    let msgs = parse_messages(body.as_bytes());
    let tag = msgs[0].json["tag"].as_str().unwrap().to_owned();
    let time = msgs[0].json["time"].as_str().unwrap().to_owned();
    let id: u64 = mid[10..].parse().unwrap();
    let expected_body = format!(
        r##"#!NGINXNMS!#{{"id":{id},"mid":"{mid}","channel":"-","tag":"{tag}","time":"{time}","text":{b}}}#!NGINXNME!#"##
    );
    assert_eq!(body, expected_body);
    assert_eq!(
        head,
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
             Access-Control-Expose-Headers: Last-Message-Id\r\nCache-Control: no-cache\r\n\
             Content-Length: {}\r\n\r\n",
            expected_body.len()
        )
    );
    // tag and time are the acceptance time: between the calls around the publish.
    let ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    };
    let (lo, hi) = (ms(before), ms(after));
    let ok = (lo..=hi).any(|t| format!("{:03}", t % 1000) == tag && imf(t / 1000) == time);
    assert!(ok, "tag {tag} time {time} not within [{lo}, {hi}]");
}

/// IMF-fixdate of Unix seconds (test-side, independent of the server's).
fn imf(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// spec/text-format.md §1, spec/publishing.md §4: a message replayed later is the same bytes as
/// when it was delivered live.
#[test]
fn replayed_message_same_bytes_as_live() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    srv.publish(&ch, &body(1), Some(60));
    let live = ws.frame().payload;
    std::thread::sleep(Duration::from_millis(20));
    let r = poll(srv.sub, &ch, Some(MID_ZERO));
    assert_eq!(r.body, live);
}

/// spec/longpoll.md §4: the exact `304`, with and without a last id.
#[test]
fn poll_304_exact_bytes() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let got = raw(
        srv.sub,
        &format_request("GET", &poll_path(&ch, None), &[], b""),
    );
    assert_eq!(
        got,
        "HTTP/1.1 304 Not Modified\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
         Access-Control-Expose-Headers: Last-Message-Id\r\nLast-Message-Id: \r\n\
         Expires: Thu, 01 Jan 1973 11:11:01 GMT\r\nCache-Control: no-cache\r\n\r\n"
    );
    let mid = srv.publish(&ch, &body(0), Some(60));
    let got = raw(
        srv.sub,
        &format_request(
            "GET",
            &poll_path(&ch, Some(&mid)),
            &[("Connection", "close")],
            b"",
        ),
    );
    assert_eq!(
        got,
        format!(
            "HTTP/1.1 304 Not Modified\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
             Access-Control-Expose-Headers: Last-Message-Id\r\nLast-Message-Id: {mid}\r\n\
             Expires: Thu, 01 Jan 1973 11:11:01 GMT\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
    );
}

/// spec/longpoll.md §5: the exact preflight answer.
#[test]
fn options_exact_bytes() {
    let srv = start_default();
    let got = raw(
        srv.sub,
        &format_request(
            "OPTIONS",
            "/bitrix/subws/",
            &[("Origin", "https://a.b")],
            b"",
        ),
    );
    assert_eq!(
        got,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
         Access-Control-Allow-Methods: POST, GET, DELETE, OPTIONS\r\n\
         Access-Control-Allow-Headers: If-Modified-Since, If-None-Match\r\nContent-Length: 0\r\n\r\n"
    );
}

/// spec/longpoll.md §6, spec/errors.md §1: the exact 4010 answer.
#[test]
fn poll_4010_exact_bytes() {
    let srv = start(|c| c.security_key = Some(KEY.into()));
    let got = raw(
        srv.sub,
        &format_request("GET", &poll_path(&channel(), None), &[], b""),
    );
    assert_eq!(
        got,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
         Content-Length: 23\r\n\r\n4010: Wrong Channel Id."
    );
}

/// spec/errors.md §1, spec/channels.md §2: the 4010 body of an empty list and the 4018 body on a
/// long-poll; the connection stays open.
#[test]
fn poll_4010_4018_bodies_keep_connection() {
    let srv = start_default();
    let mut c = Conn::connect(srv.sub);
    c.send(&format_request(
        "GET",
        "/bitrix/sub/?CHANNEL_ID=//",
        &[],
        b"",
    ));
    let r = c.response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "4010: Wrong Channel Id.")
    );
    assert!(!r.closes());
    let many: Vec<String> = (0..101).map(|_| channel()).collect();
    c.send(&format_request(
        "GET",
        &poll_path(&many.join("/"), None),
        &[],
        b"",
    ));
    let r = c.response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            "4018: Request exceeded the maximum number of channels."
        )
    );
    c.send(&format_request("OPTIONS", "/bitrix/sub/", &[], b""));
    assert_eq!(c.response().status, 200, "connection kept");
}

/// spec/errors.md §2: the exact 404 and 405 answers.
#[test]
fn not_found_and_method_not_allowed_exact_bytes() {
    let srv = start_default();
    assert_eq!(
        raw(srv.sub, &format_request("GET", "/nope", &[], b"")),
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
         Content-Length: 0\r\n\r\n"
    );
    assert_eq!(
        raw(srv.sub, &format_request("PUT", "/bitrix/sub/", &[], b"")),
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
         Allow: GET, OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        raw(srv.publ, &format_request("PUT", "/pub/", &[], b"")),
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
         Allow: GET, POST\r\nContent-Length: 0\r\n\r\n"
    );
}

/// spec/publishing.md §1: the exact publish answer, 36 bytes of body.
#[test]
fn publish_200_exact_bytes() {
    let srv = start_default();
    let got = raw(
        srv.publ,
        &format_request(
            "POST",
            &format!("/bitrix/pub/?CHANNEL_ID={}", channel()),
            &[("Message-Expiry", "3600")],
            br#"{"module_id":"im","command":"x","params":{}}"#,
        ),
    );
    let (head, body) = got.split_at(got.find("\r\n\r\n").unwrap() + 4);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nAccess-Control-Allow-Origin: *\r\n\
         Content-Length: 36\r\n\r\n"
    );
    assert!(
        body.starts_with(r#"{"mid":""#) && body.ends_with(r#""}"#) && body.len() == 36,
        "{body}"
    );
}

/// spec/errors.md §1, spec/binary.md §3: an undecodable protobuf request, exact bytes.
#[test]
fn bad_binary_request_exact_bytes() {
    let srv = start_default();
    let got = raw(
        srv.publ,
        b"POST /bitrix/pub/?binaryMode=true HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n\xff\xff",
    );
    assert_eq!(
        got,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
         Content-Length: 25\r\nConnection: close\r\n\r\n4013: Wrong Request Data."
    );
}

/// spec/errors.md §1: the bodies of a bad chunked body's 400, 413 and 408 (all closing).
#[test]
fn http_error_bodies() {
    let srv = start(|c| {
        c.max_payload = 1024;
        c.head_timeout = Duration::from_millis(300);
    });
    let path = format!("/bitrix/pub/?CHANNEL_ID={}", channel());
    let got = raw(
        srv.publ,
        format!("POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n").as_bytes(),
    );
    assert_eq!(
        got,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
         Content-Length: 42\r\nConnection: close\r\n\r\n400: Chunk size is not a valid hex number."
    );

    let mut c = Conn::connect(srv.publ);
    c.send(format!("POST {path} HTTP/1.1\r\nContent-Length: 1025\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 413);
    assert_eq!(r.text(), "413: Payload Too Large. The limit is 1024 bytes.");
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert!(r.closes());

    // A body that stops arriving (spec/publishing.md §1 check 4).
    let mut c = Conn::connect(srv.publ);
    c.send(format!("POST {path} HTTP/1.1\r\nContent-Length: 100\r\n\r\n{{\"a\":").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 408);
    assert_eq!(r.text(), "408: Request Timeout.");
    assert!(r.closes());
    assert!(c.closed_within(WAIT));
    assert_eq!(srv.stats()["published"], 0);
}

/// spec/errors.md §1: the head parser's own bodies, `<status> <reason>`.
#[test]
fn head_parser_bodies() {
    let srv = start_default();
    let cases: [(&[u8], u16, &str); 4] = [
        (
            b"GET / HTTP/1.1\r\nBad\r\n\r\n",
            400,
            "400 Request head is malformed.",
        ),
        (
            b"POST /pub/ HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            400,
            "400 Content-Length is not a valid number.",
        ),
        (
            b"POST /pub/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "400 Request body framing is ambiguous.",
        ),
        (
            b"GET /x HTTP/3.0\r\n\r\n",
            505,
            "505 HTTP version is not supported.",
        ),
    ];
    for (req, status, reason) in cases {
        let mut c = Conn::connect(srv.publ);
        c.send(req);
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (status, reason));
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
        assert!(r.closes());
    }
    let mut c = Conn::connect(srv.sub);
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    c.send(format!("GET /bitrix/sub/ HTTP/1.1\r\n{many}\r\n").as_bytes());
    let r = c.response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (431, "431 Request has too many header fields.")
    );
}

/// spec/websocket.md §1: the exact `101` head, and the exact `426`.
#[test]
fn upgrade_101_and_426_exact_bytes() {
    let srv = start_default();
    let mut c = Conn::connect(srv.sub);
    c.send(&upgrade_request(&ws_path(&channel(), None), "13"));
    assert_eq!(
        text(&c.raw_response()),
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {WS_ACCEPT}\r\n\r\n"
        )
    );
    let mut c = Conn::connect(srv.sub);
    c.send(&upgrade_request(&ws_path(&channel(), None), "12"));
    assert_eq!(
        text(&c.raw_response()),
        "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n\
         Sec-WebSocket-Version: 13\r\nContent-Length: 38\r\n\r\nUnsupported WebSocket version; use 13."
    );
    // The connection stays open after a 426.
    c.send(&format_request("OPTIONS", "/bitrix/sub/", &[], b""));
    assert_eq!(c.response().status, 200);
}

/// spec/websocket.md §5: the exact close frame after a bad channel list, for 4010 (a bad token,
/// no token) and 4018.
#[test]
fn websocket_refusal_close_frames_exact_bytes() {
    let srv = start(|c| c.security_key = Some(KEY.into()));
    let many: Vec<String> = (0..101).map(|_| sign(KEY, &channel())).collect();
    let cases = [
        (channel(), "4010: Wrong Channel Id."),
        ("/".to_owned(), "4010: Wrong Channel Id."),
        (
            many.join("/"),
            "4018: Request exceeded the maximum number of channels.",
        ),
    ];
    for (list, reason) in cases {
        let (mut ws, _) = Ws::connect_path(srv.sub, &ws_path(&list, None));
        let code: u16 = reason[..4].parse().unwrap();
        let mut expected = vec![0x88, (reason.len() + 2) as u8];
        expected.extend_from_slice(&code.to_be_bytes());
        expected.extend_from_slice(reason.as_bytes());
        let got = ws
            .conn
            .take_exact(expected.len(), deadline(WAIT))
            .expect("close frame");
        assert_eq!(got, expected, "{reason}");
        assert!(ws.conn.closed_within(WAIT));
    }
}

/// spec/websocket.md §4: the server's ping is `89 07 "ws ping"`, the first one interval after
/// the upgrade.
#[test]
fn server_ping_exact_bytes() {
    let interval = Duration::from_millis(400);
    let srv = start(|c| c.ws_ping_interval = interval);
    let mut ws = Ws::connect(srv.sub, &channel(), None);
    let upgraded = std::time::Instant::now();
    let got = ws.conn.take_exact(9, deadline(WAIT)).expect("a ping");
    let elapsed = upgraded.elapsed();
    assert_eq!(got, b"\x89\x07ws ping");
    assert!(
        elapsed >= interval - Duration::from_millis(50),
        "first ping after {elapsed:?}"
    );
}

/// spec/publishing.md §6: `GET /server-stat/` answers one line of JSON with its keys in
/// alphabetical order.
#[test]
fn server_stat_format() {
    let srv = start(|c| c.threads = 2);
    for (method, path) in [("GET", "/server-stat/"), ("GET", "/server-stat")] {
        let r = request(srv.publ, method, path, &[], b"");
        assert_eq!(r.status, 200, "{method} {path}");
        let body = r.text();
        assert!(!body.contains('\n') && !body.contains(": "), "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let p = &v.as_array().unwrap()[0];
        // The parsed map sorts its keys anyway: read them in text order.
        let keys = keys_in_text_order(&body, 2);
        let top = [
            "channels",
            "clusterMode",
            "connections",
            "cores",
            "daily",
            "date",
            "delivered",
            "limits",
            "pid",
            "pollings",
            "processUniqueId",
            "published",
            "started",
            "stored_bytes",
            "stored_messages",
            "websockets",
        ];
        assert_eq!(keys, top, "{body}");
        let start = body.find("\"cores\":[").unwrap() + 9;
        let first_core = &body[start..=start + body[start..].find('}').unwrap()];
        let core_keys = keys_in_text_order(first_core, 1);
        let mut sorted = core_keys.clone();
        sorted.sort();
        assert_eq!(core_keys, sorted, "alphabetical: {first_core}");
        for key in [
            "accepted",
            "connections",
            "core",
            "delivered",
            "panicked",
            "pollings",
            "requests",
            "slow_closed",
            "websockets",
        ] {
            assert!(core_keys.iter().any(|k| k == key), "{key} in {first_core}");
        }
        assert_eq!(
            p["processUniqueId"],
            format!("pushpull-{}", std::process::id())
        );
    }
}

/// spec/publishing.md §3, §2: channel info lists accepted channels in list order without
/// duplicates; a `private:public` token names its private id only; junk is skipped.
#[test]
fn channel_info_list_handling() {
    let srv = start(|c| c.security_key = Some(KEY.into()));
    let (a, b, p) = (channel(), channel(), channel());
    let list = format!(
        "{b}/junk/{a}/{b}/{}/{}",
        sign(KEY, &format!("{a}:{p}")),
        sign("bad", &p)
    );
    let r = request(
        srv.publ,
        "GET",
        &format!("/bitrix/pub/?CHANNEL_ID={list}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            r#"{{"infos":[{{"channel":"{b}","subscribers":0}},{{"channel":"{a}","subscribers":0}}]}}"#
        )
    );
    let r = request(srv.publ, "GET", "/bitrix/pub/?CHANNEL_ID=junk", &[], b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "4017: No channels found.")
    );
}

/// The object keys at nesting depth `depth` (1 = the outermost object or array), in text order.
fn keys_in_text_order(json: &str, depth: usize) -> Vec<String> {
    let bytes = json.as_bytes();
    let (mut level, mut i, mut keys) = (0usize, 0usize, Vec::new());
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => level += 1,
            b'}' | b']' => level -= 1,
            b'"' => {
                let start = i + 1;
                i += 1;
                while bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if level == depth && bytes.get(i + 1) == Some(&b':') {
                    keys.push(json[start..i].to_owned());
                }
            }
            _ => {}
        }
        i += 1;
    }
    keys
}

/// spec/text-format.md §2: the exact rewriting of line terminators, from the spec's example.
#[test]
fn line_terminators_rewritten_exactly() {
    let srv = start_default();
    let ch = channel();
    srv.publish(&ch, "{\"n\":\n 2}\r\n", Some(60));
    srv.publish(&ch, "{\"s\":\"a\u{2028}b\u{2029}c\"}", Some(60));
    let r = poll(srv.sub, &ch, Some(MID_ZERO));
    let body = r.text();
    let frames: Vec<&str> = body.split(NME).filter(|f| !f.is_empty()).collect();
    assert!(
        frames[0].ends_with(r#""text":{"n":  2}  }"#),
        "{}",
        frames[0]
    );
    assert!(
        frames[1].ends_with(r#""text":{"s":"a\u2028b\u2029c"}}"#),
        "{}",
        frames[1]
    );
}
