//! Publishing locked down (spec/publishing.md §7, spec/README.md §2): publisher routes only on
//! the pub listener, which binds loopback by default; the `publish_allow` networks; the
//! `publish_signature` check; their `403` answers (spec/errors.md §1).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use common::*;
use pushpull::config::{
    Config, DEFAULT_PUB_LISTEN, ListenerConfig, ListenerKind, PublishSignature, SignatureAlgo,
    parse_net,
};
use pushpull::proto::channel::Signer;

/// Hex HMAC-SHA1 of `data` with `key`, as the PHP module's `CPullChannel::GetSignature`.
fn hmac_hex(key: &str, data: &[u8]) -> String {
    Signer::new(Some(key), SignatureAlgo::Sha1).sign(data)
}

/// A server whose publisher requests must be signed with [`KEY`].
fn signed_server() -> TestServer {
    start(|c| {
        c.security_key = Some(KEY.into());
        c.publish_signature = PublishSignature::Required;
    })
}

/// spec/README.md §2: no publisher or browser route is served on a sub listener: each is `404`
/// and nothing is published.
#[test]
fn publisher_routes_are_404_on_the_sub_listener() {
    let srv = start_default();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let pb = pb_publish(vec![pb_message(
        vec![pb_receiver(&ch, true, vec![])],
        "{}",
        0,
        "t",
    )]);
    for (method, path, body) in [
        (
            "POST",
            format!("/bitrix/pub/?CHANNEL_ID={ch}"),
            body(1).into_bytes(),
        ),
        (
            "POST",
            format!("/pub/?CHANNEL_ID={ch}"),
            body(2).into_bytes(),
        ),
        (
            "POST",
            "/bitrix/pub/?binaryMode=true".to_owned(),
            pb.clone(),
        ),
        ("GET", format!("/bitrix/pub/?CHANNEL_ID={ch}"), Vec::new()),
        ("GET", format!("/pub?CHANNEL_ID={ch}"), Vec::new()),
        ("POST", format!("/bitrix/rest/?CHANNEL_ID={ch}"), pb.clone()),
        ("POST", format!("/rest/?CHANNEL_ID={ch}"), pb.clone()),
        ("GET", "/server-stat/".to_owned(), Vec::new()),
        ("GET", "/server-stat".to_owned(), Vec::new()),
    ] {
        let r = request(srv.sub, method, &path, &[], &body);
        assert_eq!(r.status, 404, "{method} {path}");
        assert!(r.body.is_empty(), "{method} {path}");
    }
    ws.expect_no_message(Duration::from_millis(200));
    assert_eq!(srv.stats()["published"], 0);
}

/// spec/README.md §2, spec/limits.md (`DEFAULT_PUB_LISTEN`): without configuration the pub
/// listener binds the loopback address `127.0.0.1:9010`, in the library's defaults and in the
/// binary's effective configuration.
#[test]
fn default_pub_listener_is_loopback() {
    assert_eq!(DEFAULT_PUB_LISTEN, "127.0.0.1:9010");
    let defaults = Config::default();
    let publ: Vec<SocketAddr> = defaults.listeners_of(ListenerKind::Pub).collect();
    assert_eq!(publ, ["127.0.0.1:9010".parse::<SocketAddr>().unwrap()]);
    assert!(publ.iter().all(|a| a.ip().is_loopback()));
    assert!(defaults.publish_allow.is_empty());
    assert_eq!(defaults.publish_signature, PublishSignature::Off);

    let out = Command::new(env!("CARGO_BIN_EXE_pushpull"))
        .env_clear()
        .arg("check-config")
        .output()
        .expect("run pushpull check-config");
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    let effective: toml::Value = toml::from_str(&printed).expect("check-config prints TOML");
    let pub_addrs: Vec<&str> = effective["listener"]
        .as_array()
        .expect("listeners")
        .iter()
        .filter(|l| l["kind"].as_str() == Some("pub"))
        .filter_map(|l| l["addr"].as_str())
        .collect();
    assert_eq!(pub_addrs, ["127.0.0.1:9010"], "{printed}");
    assert_eq!(effective["publish_signature"].as_str(), Some("off"));
}

/// spec/publishing.md §7, spec/errors.md §1: a peer outside `publish_allow` gets `403` with the
/// reason on every publisher route and method, the connection closes, and nothing is published.
/// The browser routes are not behind the list.
#[test]
fn peer_outside_publish_allow_is_403() {
    let srv = start(|c| {
        c.publish_allow = vec![
            parse_net("10.0.0.0/8").unwrap(),
            parse_net("::1/128").unwrap(),
        ];
    });
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    let reason = "403: Forbidden. 127.0.0.1 is not in publish_allow.";
    let mut c = Conn::connect(srv.publ);
    c.send(&format_request(
        "POST",
        &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
        &[],
        body(1).as_bytes(),
    ));
    assert_eq!(
        c.raw_response(),
        format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n\
             Access-Control-Allow-Origin: *\r\nContent-Length: {}\r\nConnection: close\r\n\r\n\
             {reason}",
            reason.len()
        )
        .into_bytes()
    );
    assert!(c.closed_within(WAIT));
    for (method, path) in [
        ("POST", format!("/pub/?CHANNEL_ID={ch}")),
        ("POST", "/bitrix/pub/?binaryMode=true".to_owned()),
        ("GET", format!("/bitrix/pub/?CHANNEL_ID={ch}")),
        ("GET", "/server-stat/".to_owned()),
        ("DELETE", "/pub/".to_owned()),
    ] {
        let r = request(srv.publ, method, &path, &[], body(2).as_bytes());
        assert_eq!(
            (r.status, r.text().as_str()),
            (403, reason),
            "{method} {path}"
        );
        assert!(r.closes(), "{method} {path}");
    }
    // Not a publisher route: the usual answers.
    let r = request(srv.publ, "POST", "/rest/", &[], b"x");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "4012: Public Channel Id is Required."),
        "browser route"
    );
    assert_eq!(request(srv.publ, "GET", "/elsewhere", &[], b"").status, 404);
    ws.expect_no_message(Duration::from_millis(200));
}

/// spec/publishing.md §7: a peer inside one of the networks publishes as usual; an IPv6 peer is
/// matched against the IPv6 networks.
#[test]
fn peer_inside_publish_allow_publishes() {
    let srv = start(|c| c.publish_allow = vec![parse_net("127.0.0.0/8").unwrap()]);
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &ch, None);
    srv.wait_subscribers(&ch, 1);
    let mid = srv.publish(&ch, &body(1), None);
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
    assert_eq!(srv.stats()["published"], 1);

    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: the IPv6 part is skipped");
        return;
    }
    let v6 = |allow: &str| {
        start(|c| {
            c.listeners.push(ListenerConfig::plain(
                ListenerKind::Pub,
                "[::1]:0".parse().unwrap(),
            ));
            c.listeners
                .retain(|l| l.kind == ListenerKind::Sub || l.addr.is_ipv6());
            c.publish_allow = vec![parse_net(allow).unwrap()];
        })
    };
    let srv = v6("127.0.0.1/32");
    assert!(srv.publ.is_ipv6());
    let r = publish_raw(srv.publ, &ch, body(2).as_bytes(), None);
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "403: Forbidden. ::1 is not in publish_allow.");
    let srv = v6("::1");
    assert_eq!(
        publish_raw(srv.publ, &ch, body(3).as_bytes(), None).status,
        200
    );
}

/// spec/publishing.md §7, spec/errors.md §1: with `publish_signature = "required"`, a text publish
/// without a signature or with a wrong one is `403` (the connection stays open) and publishes
/// nothing; the HMAC of the body publishes.
#[test]
fn text_publish_needs_the_body_signature() {
    let srv = signed_server();
    let ch = channel();
    let mut ws = Ws::connect(srv.sub, &sign(KEY, &ch), None);
    srv.wait_subscribers_signed(&ch, 1);
    let b = body(1);
    let right = hmac_hex(KEY, b.as_bytes());
    let mut c = Conn::connect(srv.publ);
    for (query, answer) in [
        (
            String::new(),
            "403: Forbidden. The request has no signature.",
        ),
        (
            "&signature=".to_owned(),
            "403: Forbidden. The request has no signature.",
        ),
        (
            format!("&signature={}", hmac_hex(KEY, b"something else")),
            "403: Forbidden. The request signature is wrong.",
        ),
        (
            format!("&signature={}", right.to_uppercase()),
            "403: Forbidden. The request signature is wrong.",
        ),
        (
            format!("&signature={}", hmac_hex("other-key", b.as_bytes())),
            "403: Forbidden. The request signature is wrong.",
        ),
        (
            format!("&signature={}", &right[..20]),
            "403: Forbidden. The request signature is wrong.",
        ),
    ] {
        let path = format!("/bitrix/pub/?CHANNEL_ID={ch}{query}");
        c.send(&format_request("POST", &path, &[], b.as_bytes()));
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (403, answer), "{query}");
        assert!(!r.closes(), "{query}");
    }
    ws.expect_no_message(Duration::from_millis(200));
    let path = format!("/bitrix/pub/?signature={right}&CHANNEL_ID={ch}");
    c.send(&format_request("POST", &path, &[], b.as_bytes()));
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ws.messages(1, WAIT)[0].mid, mid_of(&r));
}

/// spec/publishing.md §7: the exact example of the spec (key `secret`, SHA-1).
#[test]
fn spec_example_signature() {
    let srv = start(|c| {
        c.security_key = Some("secret".into());
        c.publish_signature = PublishSignature::Required;
    });
    let priv_id = "0123456789abcdef0123456789abcdef";
    let r = request(
        srv.publ,
        "POST",
        &format!(
            "/bitrix/pub/?CHANNEL_ID={priv_id}&signature=cff53d04c91068b75357b61f0a0460a57c3a26bf"
        ),
        &[("Message-Expiry", "3600")],
        br#"{"module_id":"im","command":"x","params":{}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        srv.publ,
        "GET",
        &format!(
            "/bitrix/pub/?CHANNEL_ID={priv_id}/fedcba9876543210fedcba9876543210\
             &signature=3f0248b1e69fd6782adc6faa76b425b661605835"
        ),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        srv.publ,
        "GET",
        "/server-stat/?signature=25af6174a0fcecc4d346680a72b7ce644b9a88e8",
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// spec/publishing.md §7: a protobuf request signs its body bytes; channel information signs the
/// percent-decoded `CHANNEL_ID` value (whatever body the `GET` carries); `/server-stat/` signs
/// the empty string; the browser routes need no signature.
#[test]
fn protobuf_channel_info_and_stats_signatures() {
    let srv = signed_server();
    let ch = channel();
    let other = channel();
    let mut ws = Ws::connect(srv.sub, &sign(KEY, &ch), None);
    srv.wait_subscribers_signed(&ch, 1);

    let pb = pb_publish(vec![pb_message(
        vec![pb_receiver(&ch, true, vec![])],
        r#"{"n":1}"#,
        0,
        "t",
    )]);
    let r = pb_post(srv.publ, &pb);
    assert_eq!(r.status, 403);
    let path = format!(
        "/bitrix/pub/?binaryMode=true&signature={}",
        hmac_hex(KEY, &pb)
    );
    let r = request(srv.publ, "POST", &path, &[], &pb);
    assert_eq!(r.status, 200, "{}", r.text());
    ws.messages(1, WAIT);

    let list = format!("{ch}/{other}");
    let signed = hmac_hex(KEY, list.as_bytes());
    for (path, status) in [
        (format!("/bitrix/pub/?CHANNEL_ID={list}"), 403),
        (
            format!("/pub/?CHANNEL_ID={list}&signature={}", hmac_hex(KEY, b"")),
            403,
        ),
        (format!("/pub/?CHANNEL_ID={list}&signature={signed}"), 200),
        (
            format!("/pub/?CHANNEL_ID={}%2F{other}&signature={signed}", ch),
            200,
        ),
    ] {
        // The PHP module sends the list as the body too: the body is not what is signed.
        let r = request(srv.publ, "GET", &path, &[], list.as_bytes());
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }

    let r = request(srv.publ, "GET", "/server-stat/", &[], b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "403: Forbidden. The request has no signature.")
    );
    let path = format!("/server-stat/?signature={}", hmac_hex(KEY, b""));
    assert_eq!(request(srv.publ, "GET", &path, &[], b"").status, 200);

    let r = request(srv.publ, "POST", "/rest/", &[], b"x");
    assert_eq!(r.text(), "4012: Public Channel Id is Required.");
}

/// spec/publishing.md §7: with `signature_algo = "sha256"` the SHA-256 HMAC is the signature.
#[test]
fn sha256_request_signature() {
    let srv = start(|c| {
        c.security_key = Some(KEY.into());
        c.signature_algo = SignatureAlgo::Sha256;
        c.publish_signature = PublishSignature::Required;
    });
    let ch = channel();
    let b = body(1);
    let sha256 = Signer::new(Some(KEY), SignatureAlgo::Sha256).sign(b.as_bytes());
    assert_eq!(sha256.len(), 64);
    for (sig, status) in [(hmac_hex(KEY, b.as_bytes()), 403), (sha256, 200)] {
        let path = format!("/bitrix/pub/?CHANNEL_ID={ch}&signature={sig}");
        let r = request(srv.publ, "POST", &path, &[], b.as_bytes());
        assert_eq!(r.status, status, "{}", r.text());
    }
}

impl SignedStats for TestServer {
    fn wait_subscribers_signed(&self, channel: &str, n: u64) {
        let path = format!(
            "/bitrix/pub/?CHANNEL_ID={channel}&signature={}",
            hmac_hex(KEY, channel.as_bytes())
        );
        wait_until("the subscriber", WAIT, || {
            let r = request(self.publ, "GET", &path, &[], b"");
            assert_eq!(r.status, 200, "{}", r.text());
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            v["infos"][0]["subscribers"].as_u64() == Some(n)
        });
    }
}

/// Channel information on a server that wants signed requests.
trait SignedStats {
    /// [`TestServer::wait_subscribers`] with a signed request.
    fn wait_subscribers_signed(&self, channel: &str, n: u64);
}
