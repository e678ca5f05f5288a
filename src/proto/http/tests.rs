//! Unit tests of the parent module.
use super::*;

type Parsed = Result<Option<(usize, RequestHead)>, HttpError>;

/// Parses `input` the way a connection sees it: first a proper prefix, then the whole buffer,
/// for every split point. A prefix shorter than the head must need more bytes (or, for bad
/// input, may already fail with the same error); the whole buffer must give the same result.
fn parse_split_with(input: &[u8], limits: &HeadLimits) -> Parsed {
    let full = parse_request_head(input, limits);
    for cut in 0..input.len() {
        let mut conn_buf = input[..cut].to_vec();
        let first = parse_request_head(&conn_buf, limits);
        match &full {
            Ok(Some((n, head))) if cut >= *n => {
                assert_eq!(first, Ok(Some((*n, head.clone()))), "cut {cut}")
            }
            Ok(_) => assert_eq!(first, Ok(None), "cut {cut}"),
            Err(e) => assert!(
                first == Ok(None) || first == Err(*e),
                "cut {cut}: {first:?}"
            ),
        }
        conn_buf.extend_from_slice(&input[cut..]);
        assert_eq!(parse_request_head(&conn_buf, limits), full, "cut {cut}");
    }
    full
}

fn parse_split(input: &[u8]) -> Parsed {
    parse_split_with(input, &HeadLimits::default())
}

fn head(input: impl AsRef<[u8]>) -> RequestHead {
    let input = input.as_ref();
    match parse_split(input) {
        Ok(Some((n, h))) => {
            assert_eq!(n, input.len(), "head must use the whole input");
            h
        }
        other => panic!("expected a head, got {other:?}"),
    }
}

fn err(input: impl AsRef<[u8]>) -> HttpError {
    match parse_split(input.as_ref()) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A `POST /p` request with the given version ("1.0"/"1.1") and header lines.
fn post(version: &str, headers: &str) -> Vec<u8> {
    format!("POST /p HTTP/{version}\r\n{headers}\r\n").into_bytes()
}

#[test]
fn simple_get_has_defaults() {
    let h = head(b"GET /sub/?CHANNEL_ID=abc&mid=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((h.method, h.version), (Method::Get, Version::Http11));
    assert_eq!(
        (h.path.as_str(), h.query.as_str()),
        ("/sub/", "CHANNEL_ID=abc&mid=1")
    );
    assert_eq!(
        (h.persistence, h.body),
        (Persistence::KeepAlive, BodyFraming::None)
    );
    assert!(!h.expect_continue && !h.websocket_upgrade);
    assert_eq!((h.ws_key, h.ws_version, h.origin), (None, None, None));
    assert_eq!((h.message_expiry, h.forwarded_for), (None, None));
}

#[test]
fn empty_and_partial_need_more() {
    let limits = HeadLimits::default();
    for partial in [
        &b""[..],
        b"GET / HTTP/1.1\r\n",
        b"\r\n\r\n",
        b"GET / HTTP/1.",
    ] {
        assert_eq!(parse_request_head(partial, &limits), Ok(None));
    }
}

#[test]
fn methods() {
    for (token, m) in [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("OPTIONS", Method::Options),
        ("PATCH", Method::Other),
        ("get", Method::Other),
    ] {
        assert_eq!(
            head(format!("{token} / HTTP/1.1\r\n\r\n")).method,
            m,
            "{token}"
        );
    }
}

#[test]
fn persistence_rules() {
    use Persistence::{Close, KeepAlive};
    for (version, headers, expected) in [
        ("1.0", "", Close),
        ("1.0", "Connection: Keep-Alive\r\n", KeepAlive),
        ("1.0", "Connection: keep-alive, close\r\n", Close),
        ("1.1", "", KeepAlive),
        ("1.1", "Connection: CLOSE\r\n", Close),
        ("1.1", "Connection: upgrade\r\nConnection: close\r\n", Close),
        ("1.1", "Connection: keep-alive\r\n", KeepAlive),
        ("1.1", "Connection: closed\r\n", KeepAlive),
    ] {
        let h = head(post(version, headers));
        assert_eq!(h.persistence, expected, "{version} {headers:?}");
    }
}

#[test]
fn body_framing() {
    for (headers, expected) in [
        ("Content-Length: 42\r\n", BodyFraming::Length(42)),
        (
            "content-length:  007 \r\nContent-Length: 7\r\n",
            BodyFraming::Length(7),
        ),
        (
            "Content-Length: 18446744073709551615\r\n",
            BodyFraming::Length(u64::MAX),
        ),
        ("Transfer-Encoding:  Chunked \r\n", BodyFraming::Chunked),
    ] {
        assert_eq!(head(post("1.1", headers)).body, expected, "{headers:?}");
    }
}

#[test]
fn body_framing_errors() {
    use HttpError::{BadContentLength, ConflictingFraming, Malformed};
    for (version, headers, expected) in [
        ("1.1", "Content-Length: abc\r\n", BadContentLength),
        ("1.1", "Content-Length: \r\n", BadContentLength),
        ("1.1", "Content-Length: -1\r\n", BadContentLength),
        ("1.1", "Content-Length: +1\r\n", BadContentLength),
        ("1.1", "Content-Length: 1 2\r\n", BadContentLength),
        ("1.1", "Content-Length: 5, 5\r\n", BadContentLength),
        (
            "1.1",
            "Content-Length: 18446744073709551616\r\n",
            BadContentLength,
        ),
        (
            "1.1",
            "Content-Length: 1\r\nContent-Length: 2\r\n",
            ConflictingFraming,
        ),
        (
            "1.1",
            "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
            ConflictingFraming,
        ),
        (
            "1.1",
            "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
            ConflictingFraming,
        ),
        ("1.1", "Transfer-Encoding: gzip, chunked\r\n", Malformed),
        (
            "1.1",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            Malformed,
        ),
        ("1.0", "Transfer-Encoding: chunked\r\n", Malformed),
    ] {
        assert_eq!(
            err(post(version, headers)),
            expected,
            "{version} {headers:?}"
        );
    }
    let non_utf8 = b"POST / HTTP/1.1\r\nContent-Length: \xff1\r\n\r\n";
    assert_eq!(err(non_utf8), BadContentLength);
    let non_utf8_te = b"POST / HTTP/1.1\r\nTransfer-Encoding: \xff\r\n\r\n";
    assert_eq!(err(non_utf8_te), Malformed);
}

#[test]
fn expect_continue() {
    assert!(head(post("1.1", "Expect: 100-Continue\r\n")).expect_continue);
    assert!(!head(post("1.1", "Expect: 200-ok\r\n")).expect_continue);
    assert!(!head(post("1.0", "Expect: 100-continue\r\n")).expect_continue);
}

#[test]
fn websocket_fields() {
    let h = head(
        b"GET /subws/?CHANNEL_ID=a HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\
          Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ== \r\n\
          Sec-WebSocket-Version: 13\r\nOrigin: https://portal.example\r\n\r\n",
    );
    assert!(h.websocket_upgrade);
    assert_eq!(h.ws_key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(h.ws_version.as_deref(), Some("13"));
    assert_eq!(h.origin.as_deref(), Some("https://portal.example"));
    for headers in [
        "Upgrade: websocket\r\n",
        "Connection: upgrade\r\n",
        "Upgrade: h2c\r\nConnection: Upgrade\r\n",
    ] {
        assert!(!head(post("1.1", headers)).websocket_upgrade, "{headers:?}");
    }
}

#[test]
fn proxy_and_expiry_fields() {
    let h = head(post(
        "1.1",
        "X-Real-IP: 10.0.0.9\r\nMessage-Expiry:  86400 \r\n\
         X-Forwarded-For: , 203.0.113.7 , 10.0.0.1\r\n",
    ));
    assert_eq!(h.message_expiry.as_deref(), Some("86400"));
    assert_eq!(h.forwarded_for.as_deref(), Some("203.0.113.7"));
    for headers in [
        "X-Real-IP: 10.0.0.9\r\n",
        "X-Forwarded-For: \r\nX-Real-IP: 10.0.0.9\r\n",
    ] {
        let h = head(post("1.1", headers));
        assert_eq!(h.forwarded_for.as_deref(), Some("10.0.0.9"), "{headers:?}");
    }
    let h = head(post("1.1", "Origin: a\r\nOrigin: b\r\n"));
    assert_eq!(h.origin.as_deref(), Some("a"), "first occurrence wins");
}

#[test]
fn non_utf8_values_are_absent() {
    let h = head(
        b"GET / HTTP/1.1\r\nSec-WebSocket-Key: \xff\r\nSec-WebSocket-Version: \xfe\r\n\
          Message-Expiry: \xc3\r\nX-Forwarded-For: \x80\r\nOrigin: \xff\xff\r\n\r\n",
    );
    assert_eq!((h.ws_key, h.ws_version, h.origin), (None, None, None));
    assert_eq!((h.message_expiry, h.forwarded_for), (None, None));
}

#[test]
fn targets() {
    for (target, path, query) in [
        ("/a/b", "/a/b", ""),
        ("/a?x=1?2", "/a", "x=1?2"),
        ("/a?x#frag", "/a", "x"),
        ("http://host:80/pub/?CHANNEL_ID=a", "/pub/", "CHANNEL_ID=a"),
        ("HTTPS://host", "/", ""),
        ("http://host?q=1", "/", "q=1"),
        ("/%2F%zz", "/%2F%zz", ""),
    ] {
        let h = head(format!("GET {target} HTTP/1.1\r\n\r\n"));
        assert_eq!(
            (h.path.as_str(), h.query.as_str()),
            (path, query),
            "{target}"
        );
    }
    for target in ["*", "host:443", "http:///path", "ftp://host/", "path"] {
        let input = format!("OPTIONS {target} HTTP/1.1\r\n\r\n");
        assert_eq!(err(input), HttpError::BadTarget, "{target}");
    }
}

#[test]
fn versions() {
    for line in [
        "GET / HTTP/2.0",
        "GET / HTTP/1.2",
        "GET / HTTP/3",
        "PRI * HTTP/2.0",
    ] {
        let input = format!("{line}\r\n\r\n");
        assert_eq!(err(input), HttpError::UnsupportedVersion, "{line}");
    }
    for line in [
        "GET / HTTX/1.1",
        "GET / HTTP/1x",
        "GET / HTTP/1.1x",
        "GET / ",
    ] {
        let input = format!("{line}\r\n\r\n");
        assert_eq!(err(input), HttpError::Malformed, "{line}");
    }
}

#[test]
fn malformed_syntax() {
    for bad in [
        &b"GET  / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
        b"G\x01T / HTTP/1.1\r\n\r\n",
        b"\r\x00",
        b"GET /\xff HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(err(bad), HttpError::Malformed, "{bad:?}");
    }
}

#[test]
fn lenient_line_endings_and_leading_blank_lines() {
    assert_eq!(head(b"\r\n\nGET /x HTTP/1.1\nHost: y\n\n").path, "/x");
}

#[test]
fn head_too_large() {
    let limits = HeadLimits {
        max_bytes: 32,
        max_headers: 8,
    };
    let too_long = b"GET / HTTP/1.1\r\nHost: abcdefg\r\n\r\n";
    assert_eq!(too_long.len(), 33, "a complete head one byte too long");
    assert_eq!(
        parse_split_with(too_long, &limits),
        Err(HttpError::HeadTooLarge)
    );
    let fits = b"GET / HTTP/1.1\r\nHost: abcdef\r\n\r\nBODY";
    assert!(matches!(parse_split_with(fits, &limits), Ok(Some((32, _)))));
    let endless = b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_eq!(
        parse_split_with(endless, &limits),
        Err(HttpError::HeadTooLarge)
    );
    let zero = HeadLimits {
        max_bytes: 0,
        max_headers: 8,
    };
    assert_eq!(parse_request_head(b"", &zero), Ok(None));
    assert_eq!(
        parse_request_head(b"G", &zero),
        Err(HttpError::HeadTooLarge)
    );
    let big = format!(
        "GET /{} HTTP/1.1\r\n\r\n",
        "a".repeat(DEFAULT_MAX_HEAD_BYTES)
    );
    let defaults = HeadLimits::default();
    assert_eq!(
        parse_request_head(big.as_bytes(), &defaults),
        Err(HttpError::HeadTooLarge)
    );
    let cut = &big.as_bytes()[..DEFAULT_MAX_HEAD_BYTES];
    assert_eq!(parse_request_head(cut, &defaults), Ok(None));
}

#[test]
fn too_many_headers() {
    let limits = |max_headers| HeadLimits {
        max_bytes: 64 * 1024,
        max_headers,
    };
    let many = |n: usize| {
        let lines: String = (0..n).map(|i| format!("H{i}: v\r\n")).collect();
        format!("GET / HTTP/1.1\r\n{lines}\r\n").into_bytes()
    };
    assert!(matches!(
        parse_split_with(&many(2), &limits(2)),
        Ok(Some(_))
    ));
    assert_eq!(
        parse_split_with(&many(3), &limits(2)),
        Err(HttpError::TooManyHeaders)
    );
    assert_eq!(
        parse_split_with(&many(1), &limits(0)),
        Err(HttpError::TooManyHeaders)
    );
    let at_cap = many(HEADERS_HARD_CAP);
    assert!(matches!(
        parse_request_head(&at_cap, &limits(1000)),
        Ok(Some(_))
    ));
    let over_cap = many(HEADERS_HARD_CAP + 1);
    let clamped = parse_request_head(&over_cap, &limits(1000));
    assert_eq!(clamped, Err(HttpError::TooManyHeaders));
    assert_eq!(
        err(many(DEFAULT_MAX_HEADERS + 1)),
        HttpError::TooManyHeaders
    );
}

#[test]
fn pipelined_requests() {
    let first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let second = b"POST /pub/?CHANNEL_ID=b HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    let buf = [&first[..], &second[..]].concat();
    let Ok(Some((n, h1))) = parse_split(&buf) else {
        panic!("first head")
    };
    assert_eq!((n, h1.path.as_str()), (first.len(), "/a"));
    let Ok(Some((m, h2))) = parse_split(&buf[n..]) else {
        panic!("second head")
    };
    assert_eq!(
        (m, h2.method, h2.path.as_str()),
        (second.len(), Method::Post, "/pub/")
    );
    assert_eq!(h2.body, BodyFraming::Length(0));
}

#[test]
fn errors_map_to_status_and_reason() {
    for (e, status) in [
        (HttpError::HeadTooLarge, 431),
        (HttpError::TooManyHeaders, 431),
        (HttpError::Malformed, 400),
        (HttpError::BadContentLength, 400),
        (HttpError::ConflictingFraming, 400),
        (HttpError::UnsupportedVersion, 505),
        (HttpError::BadTarget, 400),
    ] {
        assert_eq!(e.status(), status, "{e:?}");
        assert!(e.reason().ends_with('.') && e.reason().len() > 10);
        assert_eq!(e.to_string(), e.reason());
        assert_ne!(status_reason(e.status()), "Unknown");
    }
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%2Fb%2fc"), b"a/b/c");
    assert_eq!(percent_decode("a+b"), b"a+b");
    assert_eq!(percent_decode("%zz%4"), b"%zz%4");
    assert_eq!(percent_decode("%"), b"%");
    assert_eq!(percent_decode("%FF%00"), [0xff, 0x00]);
    assert_eq!(percent_decode("%%41"), b"%A");
    assert_eq!(percent_decode(""), b"");
}

#[test]
fn query_params() {
    let get = |q, name| query_param(q, name).map(|v| String::from_utf8_lossy(&v).into_owned());
    let q = "CHANNEL_ID=a/b&mid=123";
    assert_eq!(get(q, "CHANNEL_ID").as_deref(), Some("a/b"));
    assert_eq!(get(q, "mid").as_deref(), Some("123"));
    assert_eq!(get(q, "channel_id"), None);
    assert_eq!(get(q, "CHANNEL"), None);
    let q = "CHANNEL_ID=a%2Fb&x=1&CHANNEL_ID=zzz";
    assert_eq!(
        get(q, "CHANNEL_ID").as_deref(),
        Some("a/b"),
        "first of repeated"
    );
    let q = "&&flag&empty=&v=1=2";
    assert_eq!(get(q, "flag").as_deref(), Some(""));
    assert_eq!(get(q, "empty").as_deref(), Some(""));
    assert_eq!(get(q, "v").as_deref(), Some("1=2"));
    assert_eq!(get(q, ""), None);
    assert_eq!(get("", "a"), None);
}

#[test]
fn status_reasons() {
    let table = "100 Continue|101 Switching Protocols|200 OK|204 No Content|\
        206 Partial Content|304 Not Modified|400 Bad Request|403 Forbidden|404 Not Found|\
        405 Method Not Allowed|408 Request Timeout|411 Length Required|\
        413 Payload Too Large|426 Upgrade Required|429 Too Many Requests|\
        431 Request Header Fields Too Large|500 Internal Server Error|\
        503 Service Unavailable|505 HTTP Version Not Supported|418 Unknown|0 Unknown";
    for entry in table.split('|') {
        let (code, reason) = entry.split_once(' ').unwrap_or_default();
        assert_eq!(
            status_reason(code.parse().unwrap_or(999)),
            reason,
            "{entry}"
        );
    }
}

#[test]
fn response_heads() {
    let write = |status, headers: &[(&str, &str)], len, persistence| {
        let mut out = b"prefix|".to_vec();
        write_response_head(&mut out, status, headers, len, persistence);
        String::from_utf8(out).unwrap_or_default()
    };
    let cors = [
        ("Content-Type", "text/plain"),
        ("Access-Control-Allow-Origin", "*"),
    ];
    assert_eq!(
        write(200, &cors, Some(12), Persistence::KeepAlive),
        "prefix|HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
         Access-Control-Allow-Origin: *\r\nContent-Length: 12\r\n\r\n"
    );
    assert_eq!(
        write(304, &[], None, Persistence::Close),
        "prefix|HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        write(
            400,
            &[("X-A\r\n", "v\r\nInjected: 1")],
            Some(0),
            Persistence::Close
        ),
        "prefix|HTTP/1.1 400 Bad Request\r\nX-A: vInjected: 1\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    assert_eq!(
        write(0, &[], Some(usize::MAX), Persistence::KeepAlive),
        format!(
            "prefix|HTTP/1.1 0 Unknown\r\nContent-Length: {}\r\n\r\n",
            usize::MAX
        )
    );
}

/// xorshift64*: deterministic pseudo-random numbers without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn check_invariants(buf: &[u8], limits: &HeadLimits) {
    if let Ok(Some((n, h))) = parse_request_head(buf, limits) {
        assert!(n <= buf.len() && n <= limits.max_bytes);
        assert!(h.path.starts_with('/'));
    }
}

#[test]
fn random_byte_soup_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let limits = [
        HeadLimits::default(),
        HeadLimits {
            max_bytes: 40,
            max_headers: 2,
        },
        HeadLimits {
            max_bytes: usize::MAX,
            max_headers: usize::MAX,
        },
    ];
    for round in 0..3000 {
        let len = rng.below(if round % 10 == 0 { 4000 } else { 300 });
        let buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        for l in &limits {
            check_invariants(&buf, l);
        }
        let text = String::from_utf8_lossy(&buf);
        let _ = percent_decode(&text);
        let _ = query_param(&text, "a");
    }
}

#[test]
fn random_http_like_soup_is_split_consistent() {
    const PIECES: [&str; 28] = [
        "GET ",
        "POST ",
        "/",
        "/pub/?CHANNEL_ID=",
        "http://h",
        "?",
        "#",
        "%2F",
        " HTTP/1.1",
        " HTTP/1.0",
        " HTTP/2",
        "\r\n",
        "\n",
        "\r",
        "Content-Length: ",
        "Transfer-Encoding: ",
        "chunked",
        "Connection: ",
        "close",
        "keep-alive, upgrade",
        "Upgrade: websocket",
        "X-Forwarded-For: ",
        "1",
        "18446744073709551616",
        ",",
        ": ",
        " ",
        "\u{ff}",
    ];
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let small = HeadLimits {
        max_bytes: 96,
        max_headers: 3,
    };
    let mut seen = [0usize; 3];
    for _ in 0..1500 {
        let mut s = String::new();
        if rng.below(2) == 0 {
            s.push_str(["GET / HTTP/1.1\r\n", "POST /pub/ HTTP/1.0\r\n"][rng.below(2)]);
        }
        for _ in 0..rng.below(24) {
            s.push_str(PIECES[rng.below(PIECES.len())]);
        }
        if rng.below(2) == 0 {
            s.push_str("\r\n\r\n");
        }
        match parse_split(s.as_bytes()) {
            Ok(Some(_)) => seen[0] += 1,
            Ok(None) => seen[1] += 1,
            Err(_) => seen[2] += 1,
        }
        let _ = parse_split_with(s.as_bytes(), &small);
        check_invariants(s.as_bytes(), &small);
    }
    assert!(
        seen.iter().all(|&n| n > 50),
        "outcome mix too thin: {seen:?}"
    );
}
