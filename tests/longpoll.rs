//! Long-poll subscribers over loopback (spec/longpoll.md, spec/text-format.md, spec/errors.md).

mod common;

use std::time::{Duration, Instant};

use common::*;

const HOLD: Duration = Duration::from_millis(300);

fn short_hold() -> TestServer {
    start(|c| c.longpoll_hold = HOLD)
}

/// spec/longpoll.md §3, spec/text-format.md §1: a message published while the poll is held ends
/// it with a 200 carrying exactly that message.
#[test]
fn message_published_after_poll_starts_arrives() {
    let srv = start_default();
    let ch = channel();
    let mut poll = start_poll(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let body = r#"{"module_id":"im","command":"message","params":{"text":"hello"},"extra":{}}"#;
    let mid = srv.publish(&ch, body, None);

    let r = poll.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let text = r.text();
    assert!(text.starts_with(NMS) && text.ends_with(NME), "{text}");
    let msgs = parse_messages(&r.body);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.mid, mid);
    assert_eq!(
        m.id,
        mid[10..].parse::<u64>().unwrap(),
        "id is the 16-digit counter of mid"
    );
    assert_eq!(m.json["channel"], "-");
    let tag = m.json["tag"].as_str().unwrap();
    assert!(
        tag.len() == 3 && tag.bytes().all(|b| b.is_ascii_digit()),
        "tag {tag}"
    );
    assert!(m.json["time"].as_str().unwrap().ends_with(" GMT"));
    let published: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(m.text(), &published);
}

/// spec/longpoll.md §3, spec/history.md §3: stored messages newer than `mid` come together in one
/// body, in publication order.
#[test]
fn stored_messages_come_together_in_order() {
    let srv = start_default();
    let ch = channel();
    let m1 = srv.publish(&ch, &body(1), Some(60));
    let m2 = srv.publish(&ch, &body(2), Some(60));
    let r = poll(srv.sub, &ch, Some(MID_ZERO));
    assert_eq!(r.status, 200);
    let msgs = parse_messages(&r.body);
    let mids: Vec<_> = msgs.iter().map(|m| m.mid.as_str()).collect();
    assert_eq!(mids, [m1.as_str(), m2.as_str()]);
    assert_eq!(msgs[0].text()["params"]["n"], 1);
    assert_eq!(msgs[1].text()["params"]["n"], 2);
}

/// spec/history.md §3: a poll from `mid` gets only the messages after it.
#[test]
fn mid_replay_returns_only_newer_messages() {
    let srv = start_default();
    let ch = channel();
    let m0 = srv.publish(&ch, &body(0), Some(60));
    let m1 = srv.publish(&ch, &body(1), Some(60));
    let m2 = srv.publish(&ch, &body(2), Some(60));
    let r = poll(srv.sub, &ch, Some(&m0));
    assert_eq!(r.status, 200);
    let mids: Vec<_> = parse_messages(&r.body).into_iter().map(|m| m.mid).collect();
    assert_eq!(mids, [m1.clone(), m2.clone()]);
    // From the newest id: nothing to replay, the poll is held and a live message ends it.
    let mut held = start_poll(srv.sub, &ch, Some(&m2));
    srv.wait_subscribers(&ch, 1);
    let m3 = srv.publish(&ch, &body(3), None);
    let r = held.response();
    assert_eq!(r.status, 200);
    let mids: Vec<_> = parse_messages(&r.body).into_iter().map(|m| m.mid).collect();
    assert_eq!(mids, [m3]);
}

/// spec/longpoll.md §4: at the end of the hold the poll is answered 304 with `Last-Message-Id`
/// (the client's mid) and the 1973 `Expires`, with no body.
#[test]
fn hold_timeout_answers_304_with_last_message_id() {
    let srv = short_hold();
    let ch = channel();
    let m0 = srv.publish(&ch, &body(0), Some(60));
    let started = Instant::now();
    let r = poll(srv.sub, &ch, Some(&m0));
    let elapsed = started.elapsed();
    assert_eq!(r.status, 304);
    assert!(
        elapsed >= HOLD - Duration::from_millis(50),
        "answered after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
    assert_eq!(r.header("Last-Message-Id"), Some(m0.as_str()));
    assert_eq!(r.header("Expires"), Some(EXPIRES_1973));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let expose = r
        .header("Access-Control-Expose-Headers")
        .unwrap_or_default();
    assert!(expose.contains("Last-Message-Id"), "{expose}");
    assert!(r.body.is_empty());
}

/// spec/longpoll.md §4: without `mid` the 304 names the newest stored message of the channels,
/// or is empty when none is stored.
#[test]
fn hold_timeout_without_mid_names_newest_stored() {
    let srv = short_hold();
    let empty = channel();
    let r = poll(srv.sub, &empty, None);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Last-Message-Id"), Some(""));
    assert_eq!(r.header("Expires"), Some(EXPIRES_1973));

    let ch = channel();
    srv.publish(&ch, &body(0), Some(60));
    let m1 = srv.publish(&ch, &body(1), Some(60));
    let r = poll(srv.sub, &ch, None);
    assert_eq!(r.status, 304, "no mid: nothing is replayed");
    assert_eq!(r.header("Last-Message-Id"), Some(m1.as_str()));
}

/// spec/longpoll.md §5: the CORS preflight.
#[test]
fn options_preflight_headers() {
    let srv = start_default();
    let r = request(
        srv.sub,
        "OPTIONS",
        &poll_path(&channel(), None),
        &[("Origin", "http://x")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let methods = r.header("Access-Control-Allow-Methods").unwrap_or_default();
    for m in ["GET", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = r.header("Access-Control-Allow-Headers").unwrap_or_default();
    assert!(
        allowed.contains("If-Modified-Since") && allowed.contains("If-None-Match"),
        "{allowed}"
    );
    assert!(r.body.is_empty());
}

/// spec/longpoll.md §2: two polls, one after the other, on one keep-alive connection.
#[test]
fn keep_alive_two_polls_on_one_connection() {
    let srv = short_hold();
    let ch = channel();
    let mut c = Conn::connect(srv.sub);
    for n in 0..2 {
        c.send(&format_request("GET", &poll_path(&ch, None), &[], b""));
        srv.wait_subscribers(&ch, 1);
        let mid = srv.publish(&ch, &body(n), None);
        let r = c.response();
        assert_eq!(r.status, 200, "poll {n}");
        assert!(!r.closes());
        let msgs = parse_messages(&r.body);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].mid, mid);
    }
    // And a third that ends with the hold, still on the same connection.
    c.send(&format_request("GET", &poll_path(&ch, None), &[], b""));
    assert_eq!(c.response().status, 304);
}

/// spec/longpoll.md §2: pipelined requests are answered in order, the second after the first.
#[test]
fn pipelined_requests_answered_in_order() {
    let srv = short_hold();
    let (a, b) = (channel(), channel());
    let ma = srv.publish(&a, &body(1), Some(60));
    let mb = srv.publish(&b, &body(2), Some(60));
    let mut c = Conn::connect(srv.sub);
    let mut both = format_request("GET", &poll_path(&a, Some(MID_ZERO)), &[], b"");
    both.extend(format_request(
        "GET",
        &poll_path(&b, Some(MID_ZERO)),
        &[],
        b"",
    ));
    c.send(&both);
    let r1 = c.response();
    let r2 = c.response();
    assert_eq!((r1.status, r2.status), (200, 200));
    assert_eq!(parse_messages(&r1.body)[0].mid, ma);
    assert_eq!(parse_messages(&r2.body)[0].mid, mb);

    // A held poll followed by a preflight: the preflight waits for the 304.
    let mut both = format_request("GET", &poll_path(&channel(), None), &[], b"");
    both.extend(format_request("OPTIONS", &poll_path(&a, None), &[], b""));
    let started = Instant::now();
    c.send(&both);
    let r1 = c.response();
    let r2 = c.response();
    assert_eq!(r1.status, 304);
    assert_eq!(r2.status, 200);
    assert!(started.elapsed() >= HOLD - Duration::from_millis(50));
}

/// spec/errors.md §2, spec/README.md §2: unknown paths are 404 with the CORS header.
#[test]
fn unknown_path_is_404_with_cors() {
    let srv = start_default();
    for path in ["/", "/nothing/here", "/bitrix/", "/bitrix/subscribe"] {
        let r = request(srv.sub, "GET", path, &[], b"");
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"), "{path}");
    }
}

/// spec/README.md §2: publisher paths are not served on the subscriber listener, nor
/// subscriber paths on the publisher listener.
#[test]
fn listeners_serve_only_their_routes() {
    let srv = start_default();
    let ch = channel();
    let r = request(
        srv.sub,
        "POST",
        &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
        &[],
        body(1).as_bytes(),
    );
    assert_eq!(r.status, 404);
    let r = request(srv.sub, "GET", "/server-stat/", &[], b"");
    assert_eq!(r.status, 404);
    let r = request(srv.publ, "GET", &poll_path(&ch, None), &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(srv.stats()["published"], 0);
}

/// spec/channels.md §2, spec/errors.md §1: with a key set, a wrong or missing signature is
/// refused with 400 `4010: Wrong Channel Id.`; the right one is accepted.
#[test]
fn bad_signature_with_key_is_4010() {
    let srv = start(|c| {
        c.security_key = Some(KEY.into());
        c.longpoll_hold = HOLD;
    });
    let ch = channel();
    let good = sign(KEY, &ch);
    let wrong = sign("another-key", &ch);
    for token in [
        wrong.as_str(),
        ch.as_str(),
        &format!("{ch}.{}", "0".repeat(40)),
    ] {
        let r = poll(srv.sub, token, None);
        assert_eq!(r.status, 400, "{token}");
        assert_eq!(r.text(), "4010: Wrong Channel Id.", "{token}");
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    }
    // One bad token refuses the whole list.
    let r = poll(srv.sub, &format!("{good}/{wrong}"), None);
    assert_eq!(r.status, 400);

    let mut held = start_poll(srv.sub, &good, None);
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    let r = held.response();
    assert_eq!(r.status, 200);
    assert_eq!(parse_messages(&r.body)[0].mid, mid);
}

/// spec/channels.md §2: without a key, bare private ids are accepted.
#[test]
fn unsigned_id_accepted_without_key() {
    let srv = short_hold();
    let ch = channel();
    let mut held = start_poll(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    let r = held.response();
    assert_eq!(r.status, 200);
    assert_eq!(parse_messages(&r.body)[0].mid, mid);
    // Malformed ids are still refused.
    let r = poll(srv.sub, "not-a-channel", None);
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "4010: Wrong Channel Id.");
}

/// spec/text-format.md §2: a body with line breaks is delivered on one line, still valid JSON
/// with the same value.
#[test]
fn message_frame_has_no_line_breaks() {
    let srv = start_default();
    let ch = channel();
    let raw = "{\n  \"module_id\": \"im\",\r\n  \"params\": {\"t\": \"a\u{2028}b\"}\n}";
    srv.publish(&ch, raw, Some(60));
    let r = poll(srv.sub, &ch, Some(MID_ZERO));
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        !text.contains(['\r', '\n', '\u{2028}', '\u{2029}']),
        "{text:?}"
    );
    let msgs = parse_messages(&r.body);
    let expected: serde_json::Value = serde_json::from_str(raw).unwrap();
    assert_eq!(msgs[0].text(), &expected);
}

/// spec/longpoll.md §2: a message on two of the poll's channels is delivered once.
#[test]
fn message_on_two_channels_delivered_once() {
    let srv = start_default();
    let (a, b) = (channel(), channel());
    let mut held = start_poll(srv.sub, &format!("{a}/{b}"), None);
    srv.wait_subscribers(&b, 1);
    let mid = srv.publish(&format!("{a}/{b}"), &body(1), None);
    let r = held.response();
    let mids: Vec<_> = parse_messages(&r.body).into_iter().map(|m| m.mid).collect();
    assert_eq!(mids, [mid]);
}

/// spec/longpoll.md §3, spec/history.md §3: a client that keeps polling from the last `mid` it
/// got, while stored messages are being published, sees every message once and in order.
#[test]
fn poll_loop_from_last_mid_sees_every_message_once() {
    const N: usize = 300;
    let srv = short_hold();
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
    let mut c = Conn::connect(srv.sub);
    let mut last = MID_ZERO.to_owned();
    let mut got: Vec<String> = Vec::new();
    let end = deadline(Duration::from_secs(20));
    let mut polls = 0;
    while got.len() < N {
        assert!(
            Instant::now() < end,
            "only {} of {N} after {polls} polls",
            got.len()
        );
        c.send(&format_request(
            "GET",
            &poll_path(&ch, Some(&last)),
            &[],
            b"",
        ));
        let r = c.response();
        polls += 1;
        match r.status {
            200 => {
                let msgs = parse_messages(&r.body);
                assert!(!msgs.is_empty());
                for m in msgs {
                    assert!(m.mid > last, "{} not after {last}", m.mid);
                    last = m.mid.clone();
                    got.push(m.mid);
                }
            }
            304 => {}
            s => panic!("status {s}"),
        }
    }
    let published = publisher.join().expect("publisher");
    assert_eq!(got, published);
}

/// spec/longpoll.md §2: a client that goes away during the hold is unsubscribed.
#[test]
fn abandoned_poll_is_unsubscribed() {
    let srv = start_default();
    let ch = channel();
    let polls: Vec<Conn> = (0..5).map(|_| start_poll(srv.sub, &ch, None)).collect();
    srv.wait_subscribers(&ch, 5);
    wait_until("pollings gauge", WAIT, || srv.stats()["pollings"] == 5);
    drop(polls);
    wait_until("pollings back to 0", WAIT, || srv.stats()["pollings"] == 0);
    wait_until("connections closed", WAIT, || {
        srv.core_sum("connections") <= 1
    });
    // Publishing to the channel still works, to nobody.
    srv.publish(&ch, &body(1), None);
}

/// spec/longpoll.md §3: a large message (over 64 KiB) is delivered whole.
#[test]
fn large_message_delivered_whole() {
    let srv = start_default();
    let ch = channel();
    let big = format!(
        r#"{{"module_id":"t","params":{{"p":"{}"}}}}"#,
        "y".repeat(200_000)
    );
    let mid = srv.publish(&ch, &big, Some(60));
    let r = poll(srv.sub, &ch, Some(MID_ZERO));
    let msgs = parse_messages(&r.body);
    assert_eq!(msgs[0].mid, mid);
    assert_eq!(
        msgs[0].text()["params"]["p"].as_str().map(str::len),
        Some(200_000)
    );
}

/// spec/longpoll.md §3, spec/history.md §3: with small replay pages, a client polling from its
/// last `mid` while stored messages are published still sees every message once, in order.
#[test]
fn poll_loop_with_small_pages_sees_every_message_once() {
    const N: usize = 200;
    let srv = start(|c| {
        c.longpoll_hold = HOLD;
        c.replay_max = 7;
    });
    let ch = channel();
    let (publ, ch2) = (srv.publ, ch.clone());
    let publisher = std::thread::spawn(move || {
        let mut c = Conn::connect(publ);
        (0..N)
            .map(|n| {
                let path = format!("/bitrix/pub/?CHANNEL_ID={ch2}");
                c.send(&format_request(
                    "POST",
                    &path,
                    &[("Message-Expiry", "60")],
                    body(n).as_bytes(),
                ));
                mid_of(&c.response())
            })
            .collect::<Vec<_>>()
    });
    let mut c = Conn::connect(srv.sub);
    let mut last = MID_ZERO.to_owned();
    let mut got: Vec<String> = Vec::new();
    let end = deadline(Duration::from_secs(20));
    while got.len() < N {
        assert!(Instant::now() < end, "only {} of {N}", got.len());
        c.send(&format_request(
            "GET",
            &poll_path(&ch, Some(&last)),
            &[],
            b"",
        ));
        let r = c.response();
        if r.status == 200 {
            let msgs = parse_messages(&r.body);
            assert!(
                msgs.len() <= 7 || got.len() + msgs.len() > 0,
                "page of {}",
                msgs.len()
            );
            for m in msgs {
                assert!(m.mid > last, "{} not after {last}", m.mid);
                last = m.mid.clone();
                got.push(m.mid);
            }
        } else {
            assert_eq!(r.status, 304);
        }
    }
    assert_eq!(got, publisher.join().expect("publisher"));
}

/// spec/longpoll.md §1: the parameters Bitrix clients add (`revision`, `rnd`, `tag`, `time`, …)
/// and the conditional headers are ignored; the answer is text.
#[test]
fn client_extras_ignored() {
    let srv = start_default();
    let ch = channel();
    let mid = srv.publish(&ch, &body(1), Some(60));
    let path = format!(
        "/bitrix/subws/?CHANNEL_ID={ch}&binaryMode=false&revision=19&clientId=x&tag=1&time=2&mid={MID_ZERO}&rnd=12345"
    );
    let headers = [
        ("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ("If-None-Match", "7"),
    ];
    let r = request(srv.sub, "GET", &path, &headers, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(parse_messages(&r.body)[0].mid, mid);
}
