//! Publishing over loopback (spec/publishing.md, spec/history.md, spec/limits.md, spec/errors.md).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const HOLD: Duration = Duration::from_millis(300);

/// spec/publishing.md §1, spec/history.md §1: a publish is answered 200 with a JSON `mid` of 26
/// digits.
#[test]
fn post_answers_json_mid() {
    let srv = start_default();
    let r = publish_raw(srv.publ, &channel(), body(1).as_bytes(), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
    mid_of(&r);
    // The short path works too.
    let r = request(
        srv.publ,
        "POST",
        &format!("/pub/?CHANNEL_ID={}", channel()),
        &[],
        body(2).as_bytes(),
    );
    assert_eq!(r.status, 200);
    mid_of(&r);
    assert_eq!(srv.stats()["published"], 2);
}

/// spec/history.md §1: ids increase with every publication, in string and in counter order.
#[test]
fn ids_increase() {
    let srv = start_default();
    let (a, b) = (channel(), channel());
    let mids: Vec<String> = (0..10)
        .map(|n| srv.publish(if n % 2 == 0 { &a } else { &b }, &body(n), None))
        .collect();
    for w in mids.windows(2) {
        assert!(w[0] < w[1], "{} then {}", w[0], w[1]);
        assert_eq!(w[0][..10], w[1][..10], "same id source");
        let (c0, c1): (u64, u64) = (w[0][10..].parse().unwrap(), w[1][10..].parse().unwrap());
        assert!(c0 < c1);
    }
}

/// spec/history.md §2: without `Message-Expiry` a message is delivered live but not stored.
#[test]
fn without_expiry_not_stored() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    srv.publish(&ch, &body(1), None);
    let r = poll(srv.sub, &ch, Some(MID_ZERO));
    assert_eq!(r.status, 304, "nothing to replay: {}", r.text());
    assert_eq!(srv.stats()["stored_messages"], 0);
}

/// spec/history.md §2: with `Message-Expiry` the message is stored and replayed.
#[test]
fn with_expiry_stored() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let mid = srv.publish(&ch, &body(1), Some(120));
    let r = poll(srv.sub, &ch, Some(MID_ZERO));
    assert_eq!(r.status, 200);
    assert_eq!(parse_messages(&r.body)[0].mid, mid);
    wait_until("1 stored", WAIT, || srv.stats()["stored_messages"] == 1);
}

/// spec/history.md §2: a stored message is dropped once its expiry has passed.
#[test]
fn expired_message_not_replayed() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    srv.publish(&ch, &body(1), Some(1));
    std::thread::sleep(Duration::from_millis(1300));
    let r = poll(srv.sub, &ch, Some(MID_ZERO));
    assert_eq!(r.status, 304, "expired: {}", r.text());
}

/// spec/limits.md, spec/errors.md: a body above `max_payload` is refused with 413 and nothing is
/// published.
#[test]
fn body_over_max_payload_is_413() {
    let srv = start(|c| c.max_payload = 1024);
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    let r = publish_raw(srv.publ, &ch, big.as_bytes(), Some(60));
    assert_eq!(r.status, 413);
    ws.expect_no_message(Duration::from_millis(300));
    assert_eq!(srv.stats()["published"], 0);
    // Exactly at the limit is accepted.
    let fit = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1024 - 10));
    assert_eq!(fit.len(), 1024);
    let mid = srv.publish(&ch, &fit, None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
}

/// spec/errors.md §1: an empty body is 400 with code 4013.
#[test]
fn empty_body_is_4013() {
    let srv = start_default();
    for b in ["", "  \r\n"] {
        let r = publish_raw(srv.publ, &channel(), b.as_bytes(), None);
        assert_eq!(r.status, 400, "{b:?}");
        assert!(r.text().starts_with("4013: "), "{}", r.text());
    }
    assert_eq!(srv.stats()["published"], 0);
}

/// spec/publishing.md §1, spec/text-format.md §3: a body that is not JSON is published as
/// any other; text subscribers get it as a JSON string, so their frame stays parseable, and the
/// body text appears unchanged in it when JSON does not escape it (Bitrix's site checker looks
/// for its md5 string). Bytes that are not UTF-8 become U+FFFD.
#[test]
fn non_json_bodies_are_delivered_as_json_strings() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let md5 = "5d41402abc4b2a76b9719d911017c592";
    let cases: [(&[u8], &str); 6] = [
        (b"message", "message"),
        (b"A", "A"),
        (md5.as_bytes(), md5),
        (b"{not json", "{not json"),
        (b"{\"a\":1} trailing\r\n", "{\"a\":1} trailing\r\n"),
        (b"bad \xff\xfe bytes", "bad \u{fffd}\u{fffd} bytes"),
    ];
    for (body, _) in cases {
        let r = publish_raw(srv.publ, &ch, body, Some(60));
        assert_eq!(r.status, 200, "{body:?}: {}", r.text());
        mid_of(&r);
    }
    let got = ws.messages(cases.len(), WAIT);
    for ((body, text), m) in cases.iter().zip(&got) {
        assert_eq!(m.text(), text, "{body:?}");
    }
    // The same from history, in a long-poll body: the raw answer holds the md5 text.
    let r = poll(srv.sub, &ch, Some(&"0".repeat(26)));
    assert_eq!(r.status, 200);
    let raw = String::from_utf8(r.body.clone()).expect("UTF-8");
    assert!(raw.contains(&format!("\"text\":\"{md5}\"")), "{raw}");
    let replayed = parse_messages(&r.body);
    assert_eq!(replayed.len(), cases.len());
    for ((_, text), m) in cases.iter().zip(&replayed) {
        assert_eq!(m.text(), text);
    }
}

/// spec/publishing.md §2: a list with no valid channel is 400 `4017: No channels found.`;
/// invalid tokens next to valid ones are skipped.
#[test]
fn no_valid_channel_is_4017() {
    let srv = start_default();
    for list in ["", "zzz", "ABCDEF0123456789ABCDEF0123456789", "/"] {
        let r = publish_raw(srv.publ, list, body(1).as_bytes(), None);
        assert_eq!(r.status, 400, "{list:?}");
        assert_eq!(r.text(), "4017: No channels found.", "{list:?}");
    }
    let r = request(srv.publ, "POST", "/bitrix/pub/", &[], body(1).as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("4017"));
    // A valid id next to junk is published.
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&format!("junk/{ch}"), &body(2), None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
}

/// spec/limits.md, spec/publishing.md §2: more than 100 channels is 400 with code 4018.
#[test]
fn too_many_channels_is_4018() {
    let srv = start_default();
    let hundred: Vec<String> = (0..100).map(|_| channel()).collect();
    let r = publish_raw(srv.publ, &hundred.join("/"), body(1).as_bytes(), None);
    assert_eq!(r.status, 200, "100 channels are fine: {}", r.text());
    let mut many = hundred.clone();
    many.push(channel());
    let r = publish_raw(srv.publ, &many.join("/"), body(1).as_bytes(), None);
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("4018: "), "{}", r.text());
}

/// spec/channels.md §2: with a key, the back end may publish to bare private ids and signed
/// subscribers receive it.
#[test]
fn publish_to_bare_id_with_key() {
    let srv = start(|c| c.security_key = Some(KEY.into()));
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &sign(KEY, &ch), None);
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
    // A signed token with a wrong signature names nothing.
    let r = publish_raw(srv.publ, &sign("wrong", &ch), body(2).as_bytes(), None);
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "4017: No channels found.");
}

/// spec/publishing.md §3: `GET pub?CHANNEL_ID=a/b` reports subscriber counts that follow
/// connected subscribers.
#[test]
fn channel_info_counts_subscribers() {
    let srv = start(|c| c.threads = 3);
    let (a, b) = (channel(), channel());
    let ws1 = Ws::connect(srv.sub, &a, None);
    let _ws2 = Ws::connect(srv.sub, &format!("{a}/{b}"), None);
    let _poll = start_poll(srv.sub, &a, None);
    wait_until("3 subscribers on a", WAIT, || srv.subscribers(&[&a]) == [3]);

    let r = request(
        srv.publ,
        "GET",
        &format!("/bitrix/pub/?CHANNEL_ID={a}/{b}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let infos = v["infos"].as_array().expect("infos");
    assert_eq!(infos.len(), 2, "{v}");
    assert_eq!(infos[0]["channel"], a.as_str());
    assert_eq!(infos[0]["subscribers"], 3);
    assert_eq!(infos[1]["channel"], b.as_str());
    assert_eq!(infos[1]["subscribers"], 1);

    drop(ws1);
    wait_until("2 subscribers on a", WAIT, || {
        srv.subscribers(&[&a, &b]) == [2, 1]
    });
    let nobody = channel();
    assert_eq!(srv.subscribers(&[&nobody]), [0]);
}

/// spec/publishing.md §6: `/server-stat/` is JSON with process totals and one entry per core.
#[test]
fn server_stat_has_per_core_entries() {
    let srv = start(|c| c.threads = 3);
    let ch = channel();
    let _ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    srv.publish(&ch, &body(1), Some(60));
    // Engine gauges are refreshed after each batch of commands.
    wait_until("1 stored", WAIT, || srv.stats()["stored_messages"] == 1);
    wait_until("websockets gauge", WAIT, || srv.stats()["websockets"] == 1);
    let r = request(srv.publ, "GET", "/server-stat/", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let p = &v.as_array().expect("array")[0];
    assert_eq!(p["pid"], std::process::id());
    for key in [
        "websockets",
        "pollings",
        "connections",
        "published",
        "stored_messages",
        "channels",
    ] {
        assert!(p[key].is_u64(), "{key} in {p}");
    }
    assert_eq!(p["websockets"], 1);
    assert_eq!(p["published"], 1);
    assert_eq!(p["stored_messages"], 1);
    let cores = p["cores"].as_array().expect("cores");
    assert_eq!(cores.len(), 3);
    for (i, c) in cores.iter().enumerate() {
        assert_eq!(c["core"], i);
        for key in [
            "connections",
            "websockets",
            "pollings",
            "accepted",
            "requests",
            "delivered",
            "slow_closed",
            "panicked",
        ] {
            assert!(c[key].is_u64(), "{key} in {c}");
        }
    }
    let ws_sum: u64 = cores
        .iter()
        .map(|c| c["websockets"].as_u64().unwrap())
        .sum();
    assert_eq!(ws_sum, 1);
    wait_until("delivered counted", WAIT, || srv.core_sum("delivered") == 1);
    // The short path form without the slash works as well.
    assert_eq!(
        request(srv.publ, "GET", "/server-stat", &[], b"").status,
        200
    );
}

/// spec/publishing.md §1: `Expect: 100-continue` gets `100 Continue` before the body is sent,
/// then the answer.
#[test]
fn expect_100_continue() {
    let srv = start_default();
    let ch = channel();
    let b = body(1);
    let len = b.len().to_string();
    let mut c = Conn::connect(srv.publ);
    let head = format!(
        "POST /bitrix/pub/?CHANNEL_ID={ch} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
    );
    c.send(head.as_bytes());
    let r = c.response();
    assert_eq!(r.status, 100);
    c.send(b.as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200);
    mid_of(&r);
}

/// spec/publishing.md §1: several publishes on one keep-alive connection, pipelined.
#[test]
fn pipelined_publishes_on_keep_alive() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let mut c = Conn::connect(srv.publ);
    let mut all = Vec::new();
    for n in 0..5 {
        all.extend(format_request(
            "POST",
            &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
            &[],
            body(n).as_bytes(),
        ));
    }
    c.send(&all);
    let mids: Vec<String> = (0..5).map(|_| mid_of(&c.response())).collect();
    let got: Vec<String> = ws.messages(5, WAIT).into_iter().map(|m| m.mid).collect();
    assert_eq!(got, mids);
}

/// spec/publishing.md §8: a long pipeline (more than `DEFAULT_MAX_PIPELINED` publishes) mixed
/// with refused publishes and a channel query is answered in request order, every accepted
/// message is delivered in order, and `Connection: close` on the last request closes the
/// connection after its answer.
#[test]
fn long_pipeline_answers_in_request_order() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let n = pushpull::conn::DEFAULT_MAX_PIPELINED * 3 + 5;
    let path = format!("/bitrix/pub/?CHANNEL_ID={ch}");
    let mut all = Vec::new();
    let mut expect = Vec::new();
    for i in 0..n {
        let close = [("Connection", "close")];
        let headers: &[(&str, &str)] = if i == n - 1 { &close } else { &[] };
        if i % 17 == 5 {
            all.extend(format_request("POST", &path, headers, b" \r\n"));
            expect.push("refused");
        } else if i == n / 2 {
            all.extend(format_request("GET", &path, headers, b""));
            expect.push("info");
        } else {
            all.extend(format_request("POST", &path, headers, body(i).as_bytes()));
            expect.push("mid");
        }
    }
    let mut c = Conn::connect(srv.publ);
    c.send(&all);
    let mut mids = Vec::new();
    for (i, what) in expect.iter().enumerate() {
        let r = c.response();
        match *what {
            "refused" => {
                assert_eq!(r.status, 400, "request {i}: {}", r.text());
                assert!(r.text().starts_with("4013"), "request {i}: {}", r.text());
            }
            "info" => {
                assert_eq!(r.status, 200, "request {i}");
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(v["infos"][0]["subscribers"], 1, "request {i}: {v}");
            }
            _ => mids.push(mid_of(&r)),
        }
    }
    assert!(
        c.closed_within(WAIT),
        "Connection: close on the last request"
    );
    for w in mids.windows(2) {
        assert!(w[0] < w[1], "{} then {}", w[0], w[1]);
    }
    let got: Vec<String> = ws
        .messages(mids.len(), WAIT)
        .into_iter()
        .map(|m| m.mid)
        .collect();
    assert_eq!(got, mids);
}

/// spec/publishing.md §8: a publisher that sends a pipeline and half-closes its side still gets
/// every answer, then the connection closes.
#[test]
fn pipeline_then_half_close_gets_every_answer() {
    let srv = start_default();
    let ch = channel();
    let path = format!("/bitrix/pub/?CHANNEL_ID={ch}");
    let mut all = Vec::new();
    for i in 0..100 {
        all.extend(format_request("POST", &path, &[], body(i).as_bytes()));
    }
    let mut c = Conn::connect(srv.publ);
    c.send(&all);
    c.shutdown_write();
    let mids: Vec<String> = (0..100).map(|_| mid_of(&c.response())).collect();
    assert_eq!(mids.len(), 100);
    assert!(c.closed_within(WAIT));
    assert_eq!(srv.stats()["published"], 100);
}

/// spec/publishing.md §4: one message to many subscribers is the same bytes for each.
#[test]
fn encoded_once_same_bytes_for_everyone() {
    let srv = start(|c| c.threads = 2);
    let ch = channel();
    let mut subs: Vec<Ws> = (0..6).map(|_| Ws::connect(srv.sub, &ch, None)).collect();
    srv.wait_subscribers(&ch, 6);
    srv.publish(&ch, &body(7), None);
    let frames: Vec<Vec<u8>> = subs
        .iter_mut()
        .map(|ws| {
            let f = ws.frame();
            assert_eq!(f.opcode, op::TEXT);
            f.payload
        })
        .collect();
    for f in &frames[1..] {
        assert_eq!(f, &frames[0], "tag and time are fixed at publication");
    }
}

/// spec/publishing.md §1, spec/history.md §2: a `Message-Expiry` that is not a number means
/// "not stored".
#[test]
fn bad_expiry_means_not_stored() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let ch = channel();
    let r = request(
        srv.publ,
        "POST",
        &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
        &[("Message-Expiry", "soon")],
        body(1).as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(poll(srv.sub, &ch, Some(MID_ZERO)).status, 304);
}

/// spec/publishing.md §1, spec/limits.md: `Expect: 100-continue` with a body above the limit
/// gets 413 without 100.
#[test]
fn expect_continue_over_limit_is_413() {
    let srv = start(|c| c.max_payload = 1024);
    let mut c = Conn::connect(srv.publ);
    let head = format!(
        "POST /bitrix/pub/?CHANNEL_ID={} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
        channel()
    );
    c.send(head.as_bytes());
    let r = c.response();
    assert_eq!(r.status, 413);
    assert!(c.closed_within(WAIT));
}

/// spec/publishing.md §1: a publish request arriving one byte at a time is understood.
#[test]
fn byte_split_publish() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let mut c = Conn::connect(srv.publ);
    for b in format_request(
        "POST",
        &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
        &[],
        body(5).as_bytes(),
    ) {
        c.send(&[b]);
    }
    let mid = mid_of(&c.response());
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
}

/// spec/publishing.md §1: any JSON value is a valid body, delivered as the `text` value.
#[test]
fn any_json_value_is_a_body() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    for b in ["42", "\"text\"", "[1,2,3]", "null", "  {\"a\":true}\n"] {
        srv.publish(&ch, b, None);
        let m = &ws.messages(1, WAIT)[0];
        let expected: Value = serde_json::from_str(b).unwrap();
        assert_eq!(m.text(), &expected, "{b:?}");
    }
}

/// spec/publishing.md §1: the checks run in order: the channel list (4017) before the body
/// (4013).
#[test]
fn publish_checks_in_order() {
    let srv = start_default();
    let r = publish_raw(srv.publ, "junk", b"", None);
    assert_eq!(r.text(), "4017: No channels found.");
    let r = publish_raw(srv.publ, &channel(), b"", None);
    assert_eq!(r.text(), "4013: Wrong Request Data. The body is empty.");
    // These errors keep the connection.
    let mut c = Conn::connect(srv.publ);
    c.send(&format_request(
        "POST",
        &format!("/pub/?CHANNEL_ID={}", channel()),
        &[],
        b" ",
    ));
    let r = c.response();
    assert_eq!(r.status, 400);
    assert!(!r.closes());
    c.send(&format_request(
        "POST",
        &format!("/pub/?CHANNEL_ID={}", channel()),
        &[],
        b"{}",
    ));
    assert_eq!(c.response().status, 200);
}

/// spec/publishing.md §2: the 100-channel limit counts distinct accepted channels: duplicates
/// and skipped tokens do not count.
#[test]
fn channel_limit_counts_distinct_accepted() {
    let srv = start_default();
    let mut list: Vec<String> = (0..100).map(|_| channel()).collect();
    list.push(list[0].clone());
    list.push("junk".into());
    list.push(channel().to_uppercase());
    let r = publish_raw(srv.publ, &list.join("/"), body(1).as_bytes(), None);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// spec/publishing.md §1: the answer comes after acceptance: a replay that starts after it sees
/// the stored message.
#[test]
fn stored_before_answer() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    for n in 0..20 {
        let ch = channel();
        let mid = srv.publish(&ch, &body(n), Some(60));
        let r = poll(srv.sub, &ch, Some(MID_ZERO));
        assert_eq!(r.status, 200);
        assert_eq!(parse_messages(&r.body)[0].mid, mid);
    }
}
