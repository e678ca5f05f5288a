//! pushpull behind nginx configured as on BitrixVM: the documented example
//! `nginx.bitrixvm.example.conf` (repository root) is the configuration under test. Its listen
//! addresses and upstream servers are replaced by free loopback ports, it is included from
//! `tests/nginx/nginx.conf`, and a throw-away nginx runs it in a temporary prefix in front of an
//! in-process pushpull. Every route of the layout is then exercised through nginx only:
//! long polling on `/bitrix/sub/` (text and binary) and on `/bitrix/subws/`, WebSocket on
//! `/bitrix/subws/` (text and binary frames), browser publishing on `/bitrix/rest/`, PHP
//! publishing, channel queries and `/server-stat/` on the localhost server, the denials, and
//! the push test of Bitrix's site checker (tests/common/site_checker.rs).
//!
//! The example is run twice: as written, and with every line marked `# [not in BitrixVM]`
//! removed, which leaves BitrixVM's own locations (long polls then reach pushpull over
//! HTTP/1.0 with `Connection: close`, as on a real BitrixVM).
//!
//! Needs `/usr/sbin/nginx` (Debian package `nginx`). Without it the tests pass with a notice,
//! except under `CI=true`, where they fail.

mod common;
#[path = "common/site_checker.rs"]
mod site_checker;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{
    EXPIRES_1973, KEY, Response, TestServer, WAIT, Ws, body, channel, deadline, format_request,
    mid_of, op, parse_messages, request, sign, start, start_poll, ws_path,
};
use prost::Message as _;
use pushpull::config::SignatureAlgo;
use pushpull::proto::channel::Signer;
use pushpull::proto::pb;
use serde_json::Value;

/// The documented configuration, exactly as shipped.
const EXAMPLE: &str = include_str!("../nginx.bitrixvm.example.conf");
/// The main configuration of the test nginx; it includes `conf/pushpull.conf`.
const MAIN_CONF: &str = include_str!("nginx/nginx.conf");
/// Marks the example's lines that BitrixVM's own files do not have.
const NOT_IN_BITRIXVM: &str = "# [not in BitrixVM]";
/// Where Debian (and most distributions) install nginx.
const NGINX_PATHS: [&str; 2] = ["/usr/sbin/nginx", "/usr/bin/nginx"];
/// How long nginx may take to start listening.
const NGINX_START: Duration = Duration::from_secs(5);
/// pushpull's long-poll hold in these tests: short, so a 304 through nginx is seen quickly,
/// long enough for the other checks' long polls to be answered by their messages.
const HOLD: Duration = Duration::from_secs(2);

/// The `mid` the idle long poll sends; its 304 must carry it back in `Last-Message-Id`.
const IDLE_MID: &str = "00000000000000000000004242";

/// Which form of the example nginx runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// The file as shipped.
    Example,
    /// Without the lines marked [`NOT_IN_BITRIXVM`]: BitrixVM's own directives.
    BitrixVm,
}

#[test]
fn example_config_in_front_of_pushpull() {
    run(Variant::Example);
}

#[test]
fn bitrixvm_locations_in_front_of_pushpull() {
    run(Variant::BitrixVm);
}

/// Starts pushpull and nginx, then runs every check through nginx.
fn run(variant: Variant) {
    let Some(binary) = find_nginx() else {
        return;
    };
    let srv = start(|c| {
        c.security_key = Some(KEY.into());
        c.longpoll_hold = HOLD;
    });
    let front = Nginx::start(&binary, variant, &srv);

    // A poll nobody publishes to: started first, read last (after the hold).
    let idle_started = Instant::now();
    let mut idle = start_poll(front.public, &sign(KEY, &channel()), Some(IDLE_MID));

    long_poll_text(&front);
    long_poll_binary(&front);
    long_poll_on_websocket_path(&front);
    websocket_text(&front);
    websocket_binary(&front);
    browser_publish(&front);
    server_stat(&front);
    denials(&front);
    site_checker_push_test(&front);

    let r = idle
        .try_response(deadline(HOLD + WAIT))
        .expect("the idle long poll is answered");
    assert_eq!(r.status, 304, "idle long poll: {r:?}");
    assert!(idle_started.elapsed() >= HOLD - Duration::from_millis(100));
    assert_eq!(r.header("Expires"), Some(EXPIRES_1973), "{r:?}");
    assert_eq!(r.header("Last-Message-Id"), Some(IDLE_MID), "{r:?}");

    // The example's upstream keepalive works: nginx reuses its connections to pushpull for the
    // HTTP/1.1 routes (BitrixVM's own locations speak HTTP/1.0 and open one per request).
    if variant == Variant::Example {
        let (accepted, requests) = (srv.core_sum("accepted"), srv.core_sum("requests"));
        assert!(
            accepted * 2 <= requests,
            "upstream keepalive unused: {accepted} connections for {requests} requests"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Text long poll on the public `/bitrix/sub/`, published by "PHP" on the localhost server.
fn long_poll_text(front: &Nginx) {
    let ch = channel();
    let mut c = start_poll(front.public, &sign(KEY, &ch), None);
    front.wait_online(&ch);
    let mid = front.publish(&ch, &body(1));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(content_type(&r).starts_with("text/plain"), "{r:?}");
    let msgs = parse_messages(&r.body);
    assert_eq!(msgs.len(), 1, "{}", r.text());
    assert_eq!(msgs[0].mid, mid);
    assert_eq!(msgs[0].text()["params"]["n"], 1);
}

/// Binary long poll: `application/octet-stream` with a protobuf `ResponseBatch`.
fn long_poll_binary(front: &Nginx) {
    let ch = channel();
    let path = format!("/bitrix/sub/?CHANNEL_ID={}&binaryMode=true", sign(KEY, &ch));
    let mut c = common::Conn::connect(front.public);
    c.send(&format_request("GET", &path, &[], b""));
    front.wait_online(&ch);
    let text = body(2);
    let mid = front.publish(&ch, &text);
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(content_type(&r), "application/octet-stream", "{r:?}");
    let m = one_outgoing(&r.body);
    assert_eq!(hex::encode(&m.id), mid);
    assert_eq!(m.body, text);
}

/// A long poll on `/bitrix/subws/` (the cloud clients' single URL): nginx's maps send
/// `Upgrade: websocket` with `Connection: close`, which must stay a long poll.
fn long_poll_on_websocket_path(front: &Nginx) {
    let ch = channel();
    let path = format!("/bitrix/subws/?CHANNEL_ID={}", sign(KEY, &ch));
    let mut c = common::Conn::connect(front.public);
    c.send(&format_request("GET", &path, &[], b""));
    front.wait_online(&ch);
    let mid = front.publish(&ch, &body(3));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    let msgs = parse_messages(&r.body);
    assert_eq!(msgs.len(), 1, "{}", r.text());
    assert_eq!(msgs[0].mid, mid);
}

/// WebSocket upgrade through nginx; a text publish arrives as one text frame.
fn websocket_text(front: &Nginx) {
    let ch = channel();
    let (mut ws, hs) = Ws::connect_path(front.public, &ws_path(&sign(KEY, &ch), None));
    assert_eq!(
        hs.header("Sec-WebSocket-Accept"),
        Some(common::WS_ACCEPT),
        "{hs:?}"
    );
    front.wait_online(&ch);
    let mid = front.publish(&ch, &body(4));
    let msgs = ws.messages(1, WAIT);
    assert_eq!(msgs[0].mid, mid);
    assert_eq!(msgs[0].text()["params"]["n"], 4);
}

/// WebSocket in binary mode: the message arrives as a binary frame holding a `ResponseBatch`.
fn websocket_binary(front: &Nginx) {
    let ch = channel();
    let path = format!("{}&binaryMode=true", ws_path(&sign(KEY, &ch), None));
    let (mut ws, _) = Ws::connect_path(front.public, &path);
    front.wait_online(&ch);
    let text = body(5);
    let mid = front.publish(&ch, &text);
    let until = deadline(WAIT);
    let frame = loop {
        let f = ws.try_frame(until).expect("a binary frame");
        match f.opcode {
            op::PING => ws.send_frame(op::PONG, &f.payload, true),
            _ => break f,
        }
    };
    assert_eq!(frame.opcode, op::BINARY, "{frame:?}");
    assert!(frame.fin);
    let m = one_outgoing(&frame.payload);
    assert_eq!(hex::encode(&m.id), mid);
    assert_eq!(m.body, text);
}

/// A "browser" publishes a protobuf `RequestBatch` on the public `/bitrix/rest/` with its signed
/// `private:public` token, to another user's signed public channel; that user's subscriber gets
/// it with the sender's public id.
fn browser_publish(front: &Nginx) {
    let (priv_a, pub_a) = (channel(), channel());
    let (priv_b, pub_b) = (channel(), channel());
    let token_b = sign(KEY, &format!("{priv_b}:{pub_b}"));
    let path = format!("/bitrix/sub/?CHANNEL_ID={token_b}&binaryMode=true");
    let mut c = common::Conn::connect(front.public);
    c.send(&format_request("GET", &path, &[], b""));
    front.wait_online(&priv_b);

    let signer = Signer::new(Some(KEY), SignatureAlgo::Sha1);
    let public_sig = signer.sign(format!("public:{pub_b}").as_bytes());
    let text = body(6);
    let batch = pb::RequestBatch {
        requests: vec![pb::Request {
            command: Some(pb::request::Command::IncomingMessages(
                pb::IncomingMessagesRequest {
                    messages: vec![pb::IncomingMessage {
                        receivers: vec![pb::Receiver {
                            id: hex::decode(&pub_b).expect("hex"),
                            is_private: false,
                            signature: hex::decode(public_sig).expect("hex"),
                        }],
                        sender: None,
                        body: text.clone(),
                        expiry: 0,
                        r#type: String::new(),
                    }],
                },
            )),
        }],
    };
    let token_a = sign(KEY, &format!("{priv_a}:{pub_a}"));
    let r = request(
        front.public,
        "POST",
        &format!("/bitrix/rest/?CHANNEL_ID={token_a}"),
        &[("Content-Type", "application/octet-stream")],
        &batch.encode_to_vec(),
    );
    assert_eq!(r.status, 200, "browser publish: {r:?} {}", r.text());

    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    let m = one_outgoing(&r.body);
    assert_eq!(m.body, text);
    let sender = m.sender.expect("sender");
    assert_eq!(sender.r#type, pb::SenderType::Client as i32);
    assert_eq!(hex::encode(sender.id), pub_a);
}

/// `/server-stat/` on the localhost server: pushpull's JSON array.
fn server_stat(front: &Nginx) {
    let r = request(front.rtc, "GET", "/server-stat/", &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(content_type(&r).starts_with("application/json"), "{r:?}");
    let v: Value = serde_json::from_slice(&r.body).expect("server-stat is JSON");
    let procs = v.as_array().expect("server-stat is an array");
    assert_eq!(procs.len(), 1, "{v}");
    assert!(procs[0].is_object(), "{v}");
}

/// Bitrix's site checker, push test: its long poll on the public `/bitrix/sub/`, its publish and
/// `DELETE` on the localhost server's `/bitrix/pub/` (`path_to_publish`).
fn site_checker_push_test(front: &Nginx) {
    let target = site_checker::Target {
        sub: front.public,
        sub_path: "/bitrix/sub/",
        publ: front.rtc,
        pub_path: "/bitrix/pub/",
    };
    site_checker::run(&target, |ch| front.wait_online(ch));
}

/// What BitrixVM keeps closed: publishing and stats on the public server, anything else on the
/// localhost server.
fn denials(front: &Nginx) {
    let ch = channel();
    let pub_path = format!("/bitrix/pub/?CHANNEL_ID={ch}");
    let r = request(front.public, "POST", &pub_path, &[], body(7).as_bytes());
    assert_eq!(r.status, 403, "public POST /bitrix/pub/: {r:?}");
    let r = request(front.public, "GET", &pub_path, &[], b"");
    assert_eq!(r.status, 403, "public GET /bitrix/pub/: {r:?}");
    let r = request(front.public, "GET", "/server-stat/", &[], b"");
    assert_eq!(
        r.status, 404,
        "public /server-stat/ reaches the site only: {r:?}"
    );
    let r = request(front.rtc, "GET", "/", &[], b"");
    assert_eq!(r.status, 403, "localhost server, other paths: {r:?}");
    let r = request(front.rtc, "GET", "/nginx_status", &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.text().starts_with("Active connections"), "{}", r.text());
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The `Content-Type` of `r` ("" when absent).
fn content_type(r: &Response) -> &str {
    r.header("Content-Type").unwrap_or_default()
}

/// The single `OutgoingMessage` of a `ResponseBatch`.
fn one_outgoing(bytes: &[u8]) -> pb::OutgoingMessage {
    let batch = pb::ResponseBatch::decode(bytes).expect("a ResponseBatch");
    assert_eq!(batch.responses.len(), 1, "{batch:?}");
    match batch.responses.into_iter().next().and_then(|r| r.command) {
        Some(pb::response::Command::OutgoingMessages(mut o)) => {
            assert_eq!(o.messages.len(), 1, "{o:?}");
            o.messages.remove(0)
        }
        other => panic!("not outgoing messages: {other:?}"),
    }
}

/// The nginx binary, or `None` (with a notice) when it is missing outside CI.
fn find_nginx() -> Option<PathBuf> {
    if let Some(found) = NGINX_PATHS.iter().map(Path::new).find(|p| p.is_file()) {
        return Some(found.to_path_buf());
    }
    let why = format!(
        "nginx not found at {NGINX_PATHS:?} (Debian: apt-get install --no-install-recommends nginx)"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why}: the nginx tests cannot run under CI=true"
    );
    eprintln!("skipping the nginx tests: {why}");
    None
}

/// A free loopback port (released before nginx binds it; the window is tiny).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let ports = (
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port(),
    );
    drop((a, b));
    ports
}

/// Replaces the single occurrence of `from`; the example and this test must not drift apart.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "nginx.bitrixvm.example.conf must contain {from:?} exactly once"
    );
    text.replacen(from, to, 1)
}

/// The example with the test's addresses, in the requested variant.
fn site_conf(variant: Variant, public: u16, rtc: u16, srv: &TestServer) -> String {
    let text = match variant {
        Variant::Example => EXAMPLE.to_owned(),
        Variant::BitrixVm => {
            let kept: Vec<&str> = EXAMPLE
                .lines()
                .filter(|l| !l.trim_end().ends_with(NOT_IN_BITRIXVM))
                .collect();
            assert!(
                kept.len() + 10 < EXAMPLE.lines().count(),
                "the example marks its additions with {NOT_IN_BITRIXVM:?}"
            );
            kept.join("\n")
        }
    };
    let text = replace_once(&text, "listen 80;", &format!("listen 127.0.0.1:{public};"));
    let text = replace_once(
        &text,
        "listen 127.0.0.1:8895 ",
        &format!("listen 127.0.0.1:{rtc} "),
    );
    let text = replace_once(
        &text,
        "server 127.0.0.1:8010;",
        &format!("server {};", srv.sub),
    );
    replace_once(
        &text,
        "server 127.0.0.1:9010;",
        &format!("server {};", srv.publ),
    )
}

/// Distinguishes the prefixes of the tests of one process.
static NEXT_PREFIX: AtomicU32 = AtomicU32::new(0);

/// A running nginx child in its own prefix; killed (and the prefix removed) when dropped.
struct Nginx {
    child: Child,
    prefix: PathBuf,
    /// The public site server.
    public: SocketAddr,
    /// The localhost publishing server (BitrixVM's 8895).
    rtc: SocketAddr,
}

impl Nginx {
    /// Writes the configuration into a new prefix, starts nginx and waits until both servers
    /// accept connections.
    fn start(binary: &Path, variant: Variant, srv: &TestServer) -> Self {
        let (public, rtc) = free_ports();
        let n = NEXT_PREFIX.fetch_add(1, Ordering::Relaxed);
        let prefix =
            std::env::temp_dir().join(format!("pushpull-nginx-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&prefix);
        for dir in ["conf", "logs", "tmp"] {
            fs::create_dir_all(prefix.join(dir)).expect("create the nginx prefix");
        }
        fs::write(prefix.join("conf/nginx.conf"), MAIN_CONF).expect("write nginx.conf");
        fs::write(
            prefix.join("conf/pushpull.conf"),
            site_conf(variant, public, rtc, srv),
        )
        .expect("write pushpull.conf");
        let log = fs::File::create(prefix.join("logs/stderr.log")).expect("stderr log");
        // nginx wants the prefix to end with a slash.
        let prefix_arg = format!("{}/", prefix.display());
        let child = Command::new(binary)
            .args([
                "-p",
                &prefix_arg,
                "-c",
                "conf/nginx.conf",
                "-e",
                "logs/error.log",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nginx");
        let loopback = |port| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let mut nginx = Self {
            child,
            prefix,
            public: loopback(public),
            rtc: loopback(rtc),
        };
        nginx.wait_listening();
        nginx
    }

    /// Waits until both servers accept connections; panics (with nginx's logs) if nginx exits
    /// or takes longer than [`NGINX_START`].
    fn wait_listening(&mut self) {
        let until = deadline(NGINX_START);
        let connects = |addr| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited at start ({status}):\n{}", self.logs());
            }
            if connects(self.public) && connects(self.rtc) {
                return;
            }
            assert!(
                Instant::now() < until,
                "nginx did not listen within {NGINX_START:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// nginx's error log and stderr, for failure messages.
    fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.prefix.join(name)).unwrap_or_default();
        format!(
            "prefix {}\n--- logs/error.log\n{}--- stderr\n{}",
            self.prefix.display(),
            read("logs/error.log"),
            read("logs/stderr.log")
        )
    }

    /// `GET /bitrix/pub/?CHANNEL_ID=<ch>` on the localhost server, parsed.
    fn channel_info(&self, ch: &str) -> Value {
        let r = request(
            self.rtc,
            "GET",
            &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "channel info: {r:?} {}", r.text());
        serde_json::from_slice(&r.body).expect("channel info is JSON")
    }

    /// Waits until private channel `ch` has a subscriber, asking through nginx.
    fn wait_online(&self, ch: &str) {
        let until = deadline(WAIT);
        loop {
            let v = self.channel_info(ch);
            let online = v["infos"].as_array().is_some_and(|infos| {
                infos
                    .iter()
                    .any(|i| i["channel"] == ch && i["subscribers"].as_u64().unwrap_or(0) > 0)
            });
            if online {
                return;
            }
            assert!(Instant::now() < until, "channel {ch} never online: {v}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Publishes `text` to `ch` as PHP does (localhost server); returns the message id.
    fn publish(&self, ch: &str, text: &str) -> String {
        let r = request(
            self.rtc,
            "POST",
            &format!("/bitrix/pub/?CHANNEL_ID={ch}"),
            &[("Content-Type", "application/json")],
            text.as_bytes(),
        );
        assert_eq!(r.status, 200, "publish: {r:?} {}", r.text());
        mid_of(&r)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("nginx logs kept:\n{}", self.logs());
        } else {
            let _ = fs::remove_dir_all(&self.prefix);
        }
    }
}
