//! The committed fuzz inputs replayed on every `cargo test`, and checks that the session
//! harness really reaches the states its seeds are written for.

use std::path::{Path, PathBuf};

use super::{TARGETS, seeds, session};

/// `fuzz/` of this checkout.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir` whose names start with `prefix`, sorted.
fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    out.sort();
    out
}

/// Every generated seed is committed as `fuzz/corpus/<target>/seed-<name>`, byte for byte.
/// With `PUSHPULL_WRITE_FUZZ_SEEDS=1` the files are (re)written first.
#[test]
fn seeds_are_committed() {
    let write = std::env::var_os("PUSHPULL_WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (target, name, bytes) in seeds::all() {
        assert!(TARGETS.iter().any(|(t, _)| *t == target), "{target}");
        let dir = fuzz_dir().join("corpus").join(target);
        let path = dir.join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(&dir).expect("create the corpus folder");
            std::fs::write(&path, &bytes).expect("write a seed");
        }
        if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seeds missing or stale (PUSHPULL_WRITE_FUZZ_SEEDS=1 cargo test --lib fuzzing): {stale:?}"
    );
}

/// The committed seeds and regression inputs run through their targets without a panic.
#[test]
fn committed_inputs_replay() {
    let mut count = 0;
    for (target, run) in TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(target), "seed-");
        assert!(!seeds.is_empty(), "no seeds for {target}");
        let regressions = files(&fuzz_dir().join("regressions").join(target), "");
        for path in seeds.iter().chain(&regressions) {
            let data = std::fs::read(path).expect("read a fuzz input");
            eprintln!("{target}: {}", path.display());
            run(&data);
            count += 1;
        }
    }
    assert!(count >= TARGETS.len());
}

fn seed(name: &str) -> Vec<u8> {
    seeds::all()
        .into_iter()
        .find(|(t, n, _)| *t == "session" && *n == name)
        .map(|(_, _, bytes)| bytes)
        .unwrap_or_else(|| panic!("no session seed {name}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// spec/longpoll.md §3–§4: a message answers the held poll, the next poll ends with a 304.
#[test]
fn harness_longpoll_answers_then_times_out() {
    let out = session::run(&seed("longpoll-message-then-304"));
    assert!(
        out.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(contains(&out, b"#!NGINXNMS!#{\"id\":"));
    assert!(contains(&out, b"HTTP/1.1 304 Not Modified\r\n"));
}

/// spec/history.md: replay pages of one message answer two pipelined polls in order.
#[test]
fn harness_longpoll_replays_pages() {
    let out = session::run(&seed("longpoll-replay-pages-pipelined"));
    assert_eq!(
        count(&out, b"HTTP/1.1 200 OK\r\n"),
        3,
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(contains(&out, b"\"mid\":\"17000000000000000000000002\""));
    assert!(contains(&out, b"\"mid\":\"17000000000000000000000003\""));
}

/// spec/websocket.md: upgrade, a text frame of messages, the server ping, the pong to the
/// client's ping and the echoed close.
#[test]
fn harness_websocket_text_session() {
    let out = session::run(&seed("websocket-text"));
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(contains(&out, b"\x81"), "a text frame");
    assert!(contains(&out, b"\x89\x07ws ping"), "the server's ping");
    assert!(contains(&out, b"\x8a\x0dare you there"), "the pong");
    assert!(out.ends_with(b"\x88\x02\x03\xe8"), "the echoed close 1000");
}

/// spec/binary.md §4–§5: a browser's publish over its WebSocket, its channelStats answer,
/// then the eviction (close 4029).
#[test]
fn harness_websocket_binary_publish_and_evict() {
    let out = session::run(&seed("websocket-binary-publish"));
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(contains(&out, b"\x82"), "a binary frame");
    let close = [&[0x88, 28, 0x0f, 0xbd][..], b"4029: Too many connections"].concat();
    assert!(contains(&out, &close), "close 4029");
}

/// spec/limits.md: a subscriber that does not read is closed once its output queue is full.
#[test]
fn harness_slow_subscriber_is_dropped() {
    let out = session::run(&seed("websocket-slow-subscriber"));
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(!contains(&out, b"\x88"), "dropped without a close frame");
}

/// spec/publishing.md: a keep-alive publisher's text publish (after 100 Continue), channel
/// query, protobuf publish (failing: 503), channelStats and server statistics.
#[test]
fn harness_publisher_requests() {
    let out = session::run(&seed("publisher-keepalive"));
    let text = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{text}"
    );
    assert!(
        text.contains("{\"mid\":\"17000000000000000000000001\"}"),
        "{text}"
    );
    assert!(text.contains("{\"infos\":[{\"channel\":"), "{text}");
    assert!(text.contains("HTTP/1.1 503 Service Unavailable"), "{text}");
    assert!(text.contains("\"processUniqueId\""), "{text}");
    assert!(
        text.ends_with("]") || text.contains("Connection: close"),
        "{text}"
    );
}

/// Asserts that `markers` appear in `text` in this order, each after the end of the previous.
fn assert_in_order(text: &str, markers: &[&str]) {
    let mut from = 0;
    for m in markers {
        let at = text[from..]
            .find(m)
            .unwrap_or_else(|| panic!("{m} after byte {from}: {text}"));
        from += at + m.len();
    }
}

/// spec/publishing.md §8: pipelined publishes are parked and answered in request order, with
/// the answers made at once (a 400), a failed publish (503) and a channel query between them;
/// the pipeline sent before the peer's end of stream is answered, then the connection closes.
#[test]
fn harness_pipelined_publishes_answer_in_order() {
    let out = session::run(&seed("publisher-pipeline"));
    let text = String::from_utf8_lossy(&out);
    let markers = [
        "{\"mid\":\"17000000000000000000000001\"}",
        "4013: Wrong Request Data. The body is empty.",
        "HTTP/1.1 503 Service Unavailable",
        "{\"infos\":[{\"channel\":",
        "{\"mid\":\"17000000000000000000000002\"}",
        "{\"mid\":\"17000000000000000000000003\"}",
    ];
    assert_in_order(&text, &markers);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 6, "{text}");
    assert!(text.contains("Connection: close"), "{text}");
}

/// spec/README.md §3 "Bodies": chunked publishes (text after `100 Continue`, protobuf in
/// one-byte chunks) are answered as with `Content-Length`, a chunked body on a channel query
/// is dropped before its answer, and a bad chunk framing is 400 and closes.
#[test]
fn harness_chunked_publishes() {
    let out = session::run(&seed("publisher-chunked"));
    let text = String::from_utf8_lossy(&out);
    let markers = [
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
        "{\"mid\":\"17000000000000000000000001\"}",
        "{\"infos\":[{\"channel\":",
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
        "HTTP/1.1 400 Bad Request\r\n",
        "Connection: close\r\n\r\n400: Chunked body is malformed.",
    ];
    assert_in_order(&text, &markers);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 5, "{text}");
}

/// spec/errors.md: a head that does not arrive in time gets a 408.
#[test]
fn harness_slow_head_gets_408() {
    let out = session::run(&seed("slow-head-408"));
    assert!(out.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
}

/// spec/longpoll.md §4: a held poll is answered 304 at shutdown.
#[test]
fn harness_shutdown_answers_polls() {
    let out = session::run(&seed("shutdown-while-polling"));
    assert!(out.starts_with(b"HTTP/1.1 304 Not Modified\r\n"));
    assert!(contains(&out, b"Connection: close\r\n"));
}
