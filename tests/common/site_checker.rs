//! The push test of Bitrix's site checker (`check_pull_stream` in
//! `main/classes/general/site_checker.php` of the PHP core, queue-server version 4), replayed
//! request for request, as spec/publishing.md §1 and spec/longpoll.md §1 describe what it sends:
//!
//! 1. on a new connection to the subscriber URL, an HTTP/1.0 long poll with `If-Modified-Since`
//!    one day in the past (PHP's `date('r')` form) on the signed channel;
//! 2. (the checker sleeps a second; here the helper waits until the subscription is registered);
//! 3. the message: a text publish of a bare md5 string (not JSON) with no `Message-Expiry`, as
//!    `CPullChannel::Send` makes it through the module's HTTP client, waiting for the answer,
//!    which must make `{"infos": [<answer>]}` a JSON object (`json_decode` of it must not fail);
//! 4. one read of at most 4096 bytes on the long poll, which must hold the md5 text;
//! 5. an HTTP/1.0 `DELETE` on the publish URL, whose answer the checker never reads.
//!
//! Include it from a test file after `mod common;` with
//! `#[path = "common/site_checker.rs"] mod site_checker;`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::{Conn, KEY, WAIT, channel, sign};

/// Where the checker sends its requests: host and port of each URL, and the `Host` header it
/// writes (the domain of the URL).
pub struct Target {
    /// The subscriber URL's server (`path_to_listener`, or the site through nginx).
    pub sub: SocketAddr,
    /// Its path, e.g. `/bitrix/sub/`.
    pub sub_path: &'static str,
    /// The publisher URL's server (`path_to_publish`).
    pub publ: SocketAddr,
    /// Its path, e.g. `/bitrix/pub/`.
    pub pub_path: &'static str,
}

/// Runs the whole push test against `target`; `wait_subscribed(channel)` returns once the
/// server has registered the long poll (where the checker sleeps a second). Panics with the
/// checker's verdict when a step fails.
pub fn run(target: &Target, wait_subscribed: impl FnOnce(&str)) {
    // The checker's text is md5(mt_rand()), its channel md5(text): 32 hex digits each.
    let text = channel();
    let channel_id = channel();
    let signed = sign(KEY, &channel_id);

    // 1. GET - connection (HTTP/1.0, If-Modified-Since a day ago).
    let mut sub = TcpStream::connect(target.sub).expect("connect to the subscriber URL");
    sub.set_read_timeout(Some(WAIT)).expect("read timeout");
    let listen = format!(
        "GET {}?CHANNEL_ID={signed} HTTP/1.0\r\nIf-Modified-Since: {}\r\nHost: {}\r\n\r\n",
        target.sub_path,
        php_date_r(unix_now() - 86_400),
        target.sub.ip(),
    );
    sub.write_all(listen.as_bytes())
        .expect("send the long poll");
    wait_subscribed(&channel_id);

    // 3. POST - message: the module's HTTP client, waiting for the answer.
    let publish = format!(
        "POST {}?CHANNEL_ID={channel_id} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Bitrix PHP\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}",
        target.pub_path,
        target.publ,
        text.len(),
    );
    let mut publ = Conn::connect(target.publ);
    publ.send(publish.as_bytes());
    let answer = publ.response();
    assert_eq!(
        answer.status, 200,
        "MAIN_SC_NO_PUSH_STREAM_CONNECTION: {answer:?}"
    );
    let wrapped = format!("{{\"infos\": [{}]}}", answer.text());
    let decoded: Value = serde_json::from_str(&wrapped)
        .unwrap_or_else(|e| panic!("the module cannot json_decode {wrapped:?}: {e}"));
    assert!(decoded.is_object(), "{wrapped}");

    // 4. GET - message: one fread($res1, 4096).
    let mut first = vec![0u8; 4096];
    let n = sub.read(&mut first).expect("the long poll answers");
    let got = String::from_utf8_lossy(&first[..n]);
    assert!(
        got.contains(&text),
        "MAIN_SC_PUSH_INCORRECT: the first 4096-byte read lacks {text}: {got:?}"
    );

    // 5. DELETE on the publish URL (HTTP/1.0, the subscriber's Host; never read by the
    // checker): answered at once, connection closed.
    let delete = format!(
        "DELETE {}?CHANNEL_ID={channel_id} HTTP/1.0\r\nHost: {}\r\n\r\n",
        target.pub_path,
        target.sub.ip(),
    );
    let mut del = Conn::connect(target.publ);
    del.send(delete.as_bytes());
    let r = del.response();
    assert!(
        (200..500).contains(&r.status) && r.status != 408,
        "DELETE: {r:?}"
    );
    assert!(del.closed_within(WAIT), "an HTTP/1.0 answer closes");
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// PHP's `date('r', $t)` in UTC: `Mon, 07 Dec 2026 01:40:00 +0000` (RFC 2822, numeric zone),
/// which is not the IMF-fixdate of HTTP.
fn php_date_r(unix: u64) -> String {
    let http = pushpull::proto::text::http_date(unix);
    http.trim_end_matches(" GMT").to_owned() + " +0000"
}
