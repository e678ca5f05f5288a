//! Chunked request bodies over loopback (spec/README.md §3 "Bodies", spec/publishing.md §1,
//! spec/errors.md §1, spec/limits.md).

mod common;

use std::time::Duration;

use common::*;
use pushpull::proto::pb;
use serde_json::Value;

const HOLD: Duration = Duration::from_millis(300);

fn pub_path(ch: &str) -> String {
    format!("/bitrix/pub/?CHANNEL_ID={ch}")
}

/// The JSON of a published message's text, as a subscriber gets it.
fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("JSON")
}

/// spec/README.md §3, spec/publishing.md §1: a chunked publish is answered like a
/// `Content-Length` one and the subscriber gets the decoded body; chunk extensions and trailer
/// fields are dropped; the connection stays open for the next request.
#[test]
fn chunked_publish_reaches_subscriber() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let text = body(7);
    let bytes = text.as_bytes();
    let (a, b) = bytes.split_at(10);
    let framed = [
        format!("{:X};name=value;q=\"a \\\" b\"\r\n", a.len()).as_bytes(),
        a,
        b"\r\n",
        format!("{:x} \r\n", b.len()).as_bytes(),
        b,
        b"\r\n0;last\r\nX-Checksum: 123\r\nExpires: never\r\n\r\n",
    ]
    .concat();
    let mut c = Conn::connect(srv.publ);
    for path in [pub_path(&ch), format!("/pub/?CHANNEL_ID={ch}")] {
        let headers = [
            ("Content-Type", "application/json"),
            ("Message-Expiry", "60"),
        ];
        c.send(&format_chunked_request("POST", &path, &headers, &framed));
        let r = c.response();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(!r.closes());
        let mid = mid_of(&r);
        let m = ws.messages(1, WAIT).remove(0);
        assert_eq!((&m.mid, m.text()), (&mid, &json(&text)));
    }
    // Stored as a Content-Length publish is (Message-Expiry 60): replayed to a late poll.
    let r = poll(srv.sub, &ch, Some(MID_ZERO));
    assert_eq!(parse_messages(&r.body).len(), 2);
    // The same connection serves a Content-Length publish next.
    c.send(&format_request(
        "POST",
        &pub_path(&ch),
        &[],
        body(8).as_bytes(),
    ));
    assert_eq!(c.response().status, 200);
    assert_eq!(ws.messages(1, WAIT)[0].text(), &json(&body(8)));
    assert_eq!(srv.stats()["published"], 3);
}

/// spec/README.md §3 "Expect: 100-continue": a chunked publish that expects it gets the `100`
/// first; an empty chunked body fails the publish checks like an empty one (4013).
#[test]
fn chunked_publish_with_expect_and_empty_body() {
    let srv = start_default();
    let ch = channel();
    let mut c = Conn::connect(srv.publ);
    let head = format_chunked_request("POST", &pub_path(&ch), &[("Expect", "100-continue")], b"");
    c.send(&head);
    assert_eq!(c.response().status, 100);
    c.send(&chunked(body(1).as_bytes(), 5));
    let r = c.response();
    assert_eq!(r.status, 200);
    mid_of(&r);
    c.send(&format_chunked_request(
        "POST",
        &pub_path(&ch),
        &[],
        b"0\r\n\r\n",
    ));
    let r = c.response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "4013: Wrong Request Data. The body is empty.")
    );
    assert!(!r.closes());
}

/// spec/README.md §3, spec/binary.md §3: a protobuf publish (`binaryMode=true`) with a
/// chunked body.
#[test]
fn chunked_binary_publish() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let batch = pb_publish(vec![pb_message(
        vec![pb_receiver(&ch, true, vec![])],
        &body(3),
        0,
        "",
    )]);
    let mut c = Conn::connect(srv.publ);
    c.send(&format_chunked_request(
        "POST",
        "/bitrix/pub/?binaryMode=true",
        &[],
        &chunked(&batch, 7),
    ));
    let r = c.response();
    assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.text());
    assert_eq!(ws.messages(1, WAIT)[0].text(), &json(&body(3)));
}

/// spec/binary.md §4, spec/README.md §3 "Bodies": a browser publish with a chunked body (one
/// byte per chunk, with an extension and a trailer field) is served as with `Content-Length`.
#[test]
fn rest_publish_with_chunked_body() {
    let srv = start(|c| c.security_key = Some(KEY.into()));
    let (a_priv, a_pub) = (channel(), channel());
    let (b_priv, b_pub) = (channel(), channel());
    let b_token = sign_pair(KEY, &b_priv, &b_pub);
    let mut b = Ws::connect(srv.sub, &format!("{b_token}&binaryMode=true"), None);
    srv.wait_subscribers(&b_priv, 1);
    let request = pb_publish(vec![pb_message(
        vec![pb_receiver(&b_pub, false, public_signature(KEY, &b_pub))],
        &body(9),
        0,
        "im_typing",
    )]);
    let mut framed = Vec::new();
    for byte in &request {
        framed.extend_from_slice(b"1;e=1\r\n");
        framed.push(*byte);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let path = format!(
        "/bitrix/rest/?CHANNEL_ID={}",
        sign_pair(KEY, &a_priv, &a_pub)
    );
    let mut c = Conn::connect(srv.publ);
    let headers = [("Content-Type", "application/octet-stream")];
    c.send(&format_chunked_request("POST", &path, &headers, &framed));
    let r = c.response();
    assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.text());
    assert!(!r.closes());
    let m = pb_messages(&b.binary_frame(WAIT)).remove(0);
    assert_eq!(m.body, body(9));
    let sender = m.sender.expect("a sender");
    assert_eq!(sender.r#type, pb::SenderType::Client as i32);
    assert_eq!(sender.id, raw_id(&a_pub));
}

/// spec/README.md §3, spec/publishing.md §1 check 3, spec/errors.md §1: a chunked body whose
/// sizes add up to more than `max_payload` is `413` as soon as the size line says so, before
/// its data; the connection closes and nothing is published.
#[test]
fn oversized_chunked_body_is_413() {
    let srv = start(|c| c.max_payload = 1024);
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let text = "413: Payload Too Large. The limit is 1024 bytes.";
    // One chunk too large: answered from its size line alone.
    let mut c = Conn::connect(srv.publ);
    c.send(&format_chunked_request(
        "POST",
        &pub_path(&ch),
        &[],
        b"401\r\n",
    ));
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (413, text));
    assert!(r.closes());
    assert!(c.closed_within(WAIT));
    // The running total: 1000 bytes, then a chunk of 25.
    let mut c = Conn::connect(srv.publ);
    let data = format!("\"{}\"", "x".repeat(998));
    let framed = [&chunked(data.as_bytes(), 1000)[..data.len() + 7], b"19\r\n"].concat();
    c.send(&format_chunked_request(
        "POST",
        &pub_path(&ch),
        &[],
        &framed,
    ));
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (413, text));
    assert!(c.closed_within(WAIT));
    // A request that takes no body gets the same answer.
    let mut c = Conn::connect(srv.publ);
    c.send(&format_chunked_request(
        "GET",
        &pub_path(&ch),
        &[],
        b"ffff\r\n",
    ));
    assert_eq!(c.response().status, 413);
    ws.expect_no_message(Duration::from_millis(200));
    assert_eq!(srv.stats()["published"], 0);
    // Exactly the limit is accepted.
    let fit = format!("\"{}\"", "x".repeat(1022));
    let r = {
        let mut c = Conn::connect(srv.publ);
        c.send(&format_chunked_request(
            "POST",
            &pub_path(&ch),
            &[],
            &chunked(fit.as_bytes(), 100),
        ));
        c.response()
    };
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ws.messages(1, WAIT)[0].text(), &json(&fit));
}

/// spec/README.md §3, spec/errors.md §1: malformed chunk framing is `400` (`431` for a trailer
/// section over 16 KiB) with its own body, and the connection closes; the framing rules of the
/// head (`Content-Length` with chunked, other codings, chunked on HTTP/1.0) are unchanged.
#[test]
fn malformed_chunked_bodies_are_refused() {
    let srv = start_default();
    let ch = channel();
    let long_ext = format!("1;{}\r\nx\r\n", "e".repeat(5000));
    let tiny_long = format!("1;{}\r\nx\r\n", "e".repeat(1000)).repeat(30);
    let big_trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(17_000));
    let size = "400: Chunk size is not a valid hex number.";
    let framing = "400: Chunked body is malformed.";
    let cases: [(&[u8], u16, &str); 11] = [
        (b"zz\r\n", 400, size),
        (b"-1\r\n", 400, size),
        (b"1 0\r\nx\r\n", 400, size),
        (b"10000000000000000\r\n", 400, size),
        (b"\r\n", 400, size),
        (b"5\nhello\r\n0\r\n\r\n", 400, framing),
        (b"5\r\nhelloX0\r\n\r\n", 400, framing),
        (b"5;a=\"x\r\n", 400, framing),
        (
            long_ext.as_bytes(),
            400,
            "400: Chunk size line is too long.",
        ),
        (
            tiny_long.as_bytes(),
            400,
            "400: Chunked body has too much framing for its data.",
        ),
        (
            big_trailer.as_bytes(),
            431,
            "431: Trailer section is too large.",
        ),
    ];
    for (framed, status, text) in cases {
        let mut c = Conn::connect(srv.publ);
        c.send(&format_chunked_request("POST", &pub_path(&ch), &[], framed));
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (status, text));
        assert!(r.closes());
        assert!(c.closed_within(WAIT));
    }
    let heads: [(&[u8], &str); 3] = [
        (
            b"POST /pub/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "400 Request body framing is ambiguous.",
        ),
        (
            b"POST /pub/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "400 Request head is malformed.",
        ),
        (
            b"POST /pub/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400 Request head is malformed.",
        ),
    ];
    for (raw, text) in heads {
        let mut c = Conn::connect(srv.publ);
        c.send(raw);
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (400, text));
        assert!(r.closes());
    }
    assert_eq!(srv.stats()["published"], 0);
}

/// spec/README.md §3: a whole chunked publish sent one byte per write is answered as usual.
#[test]
fn chunked_publish_in_one_byte_pieces() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let request =
        format_chunked_request("POST", &pub_path(&ch), &[], &chunked(body(4).as_bytes(), 3));
    let mut c = Conn::connect(srv.publ);
    for b in &request {
        c.send(std::slice::from_ref(b));
    }
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid_of(&r));
}

/// spec/README.md §3 "Pipelining": the request after a chunked body starts right after the
/// final CRLF of its trailer section, also when sent in the same write.
#[test]
fn pipelined_request_after_chunked_body() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let mut all = format_chunked_request(
        "POST",
        &pub_path(&ch),
        &[],
        b"5\r\n\"abc\"\r\n0\r\nT: 1\r\n\r\n",
    );
    all.extend(format_request("GET", &pub_path(&ch), &[], b""));
    all.extend(format_chunked_request(
        "POST",
        &pub_path(&ch),
        &[("Connection", "close")],
        &chunked(body(2).as_bytes(), 1),
    ));
    let mut c = Conn::connect(srv.publ);
    c.send(&all);
    let first = c.response();
    assert_eq!(first.status, 200);
    let info = c.response();
    assert_eq!(info.status, 200);
    assert!(info.text().contains("\"subscribers\":1"), "{}", info.text());
    let last = c.response();
    assert_eq!(last.status, 200);
    assert!(last.closes());
    let got = ws.messages(2, WAIT);
    assert_eq!(
        (&got[0].mid, got[0].text()),
        (&mid_of(&first), &json("\"abc\""))
    );
    assert_eq!(
        (&got[1].mid, got[1].text()),
        (&mid_of(&last), &json(&body(2)))
    );
    assert!(c.closed_within(WAIT));
}

/// spec/README.md §3, spec/publishing.md §1 check 4: a chunked body that stops arriving is
/// `408` after `head_timeout`, and the connection closes.
#[test]
fn stalled_chunked_body_is_408() {
    let srv = start(|c| c.head_timeout = Duration::from_millis(300));
    let mut c = Conn::connect(srv.publ);
    c.send(&format_chunked_request(
        "POST",
        &pub_path(&channel()),
        &[],
        b"10\r\n{\"a\":",
    ));
    let r = c.response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (408, "408: Request Timeout.")
    );
    assert!(c.closed_within(WAIT));
    assert_eq!(srv.stats()["published"], 0);
}

/// spec/README.md §3 "Bodies": a chunked body on a request that takes none is read and
/// dropped, then the request is served and the next one follows; a WebSocket upgrade with one
/// is refused.
#[test]
fn chunked_body_on_other_requests_is_dropped() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let mut c = Conn::connect(srv.publ);
    let mut both = format_chunked_request("GET", &pub_path(&ch), &[], &chunked(ch.as_bytes(), 9));
    both.extend(format_request("GET", "/server-stat/", &[], b""));
    c.send(&both);
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&ch), "{}", r.text());
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("[{"), "{}", r.text());

    // A long-poll starts once its body is read.
    let mut c = Conn::connect(srv.sub);
    c.send(&format_chunked_request(
        "GET",
        &poll_path(&ch, None),
        &[],
        b"3;x\r\nabc\r\n",
    ));
    c.expect_silence(Duration::from_millis(100));
    assert_eq!(srv.subscribers(&[&ch]), [0]);
    c.send(b"0\r\n\r\n");
    srv.wait_subscribers(&ch, 1);
    assert_eq!(c.response().status, 304);

    let mut upgrade = upgrade_request(&ws_path(&ch, None), "13");
    let end = upgrade.len() - 2;
    upgrade.splice(end..end, b"Transfer-Encoding: chunked\r\n".iter().copied());
    upgrade.extend_from_slice(b"0\r\n\r\n");
    let mut c = Conn::connect(srv.sub);
    c.send(&upgrade);
    let r = c.response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "400: A WebSocket upgrade request carries no body.")
    );
    assert!(r.closes());
}
