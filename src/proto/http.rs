//! Sans-IO HTTP/1.1 request-head parser and response-head writer.
//!
//! [`parse_request_head`] takes the bytes received so far and returns the parsed head and the
//! number of bytes it used, `Ok(None)` when more bytes are needed, or an [`HttpError`] that maps
//! to the status code to answer with. Only the head is parsed: the caller reads the body according
//! to [`RequestHead::body`]. Tokenizing is done by `httparse`; this module adds limits, body
//! framing rules, connection persistence and the few header fields pushpull needs.

use std::fmt;

/// Default limit on the bytes of one request head, blank line included.
///
/// Subscribers and publishers send short heads (a path with a channel list in the query and a few
/// headers); 16 KiB leaves room for long `CHANNEL_ID` lists and proxy-added headers while bounding
/// the memory and re-parse work an idle or hostile peer can cost before it is answered with 431.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;

/// Default limit on the number of header fields in one request head.
///
/// Browsers and reverse proxies send well under 30; 64 allows generous proxy chains while keeping
/// the per-request header table small.
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// Hard upper bound on header fields, whatever [`HeadLimits::max_headers`] says.
///
/// The header table lives on the stack (128 entries of two slices, 4 KiB), so larger
/// configured values are clamped to this.
pub const HEADERS_HARD_CAP: usize = 128;

/// Limits for one request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Maximum bytes of the head, including leading empty lines and the final blank line.
    pub max_bytes: usize,
    /// Maximum number of header fields (clamped to [`HEADERS_HARD_CAP`]).
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// Request method. Methods are case-sensitive: `get` is [`Method::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// Any other method token.
    Other,
}

impl Method {
    fn from_token(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            _ => Self::Other,
        }
    }
}

/// Protocol version of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

/// Whether the connection may carry another request after this one.
///
/// HTTP/1.1 keeps the connection alive unless `Connection` lists `close`; HTTP/1.0 closes it
/// unless `Connection` lists `keep-alive` (and not `close`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Keep the connection open after the response.
    KeepAlive,
    /// Close the connection after the response.
    Close,
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// Neither `Content-Length` nor `Transfer-Encoding`: no body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The parsed head of one request, owning its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Request method.
    pub method: Method,
    /// Protocol version.
    pub version: Version,
    /// Path part of the target, raw (no percent-decoding), always starts with '/'.
    pub path: String,
    /// Raw query string after '?', without the '?' ("" when absent). A `#fragment` is dropped.
    pub query: String,
    /// Connection persistence from the version and the `Connection` header.
    pub persistence: Persistence,
    /// Body framing from `Content-Length` / `Transfer-Encoding`.
    pub body: BodyFraming,
    /// `Expect: 100-continue` (case-insensitive) on an HTTP/1.1 request (ignored for HTTP/1.0).
    pub expect_continue: bool,
    /// Upgrade: websocket AND Connection contains the token "upgrade" (comma list, case-insensitive)
    pub websocket_upgrade: bool,
    /// `Sec-WebSocket-Key`, trimmed (first occurrence).
    pub ws_key: Option<String>,
    /// `Sec-WebSocket-Version`, trimmed (first occurrence).
    pub ws_version: Option<String>,
    /// `Message-Expiry` header, raw trimmed (first occurrence).
    pub message_expiry: Option<String>,
    /// First address of `X-Forwarded-For`, else `X-Real-IP`, trimmed.
    pub forwarded_for: Option<String>,
    /// `Origin`, trimmed (first occurrence).
    pub origin: Option<String>,
}

/// A request head that cannot be served; [`HttpError::status`] is the status to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The head exceeds [`HeadLimits::max_bytes`] (431).
    HeadTooLarge,
    /// The head has more than [`HeadLimits::max_headers`] fields (431).
    TooManyHeaders,
    /// The head is not valid HTTP/1.x syntax, or has an unusable `Transfer-Encoding` (400).
    Malformed,
    /// `Content-Length` is not a plain decimal number that fits in a `u64` (400).
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`, or two different `Content-Length`s (400).
    ConflictingFraming,
    /// An `HTTP/x.y` version other than 1.0 and 1.1 (505).
    UnsupportedVersion,
    /// The target is neither origin-form (`/path`) nor absolute-form (`http://host/path`) (400).
    BadTarget,
}

impl HttpError {
    /// HTTP status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::Malformed
            | Self::BadContentLength
            | Self::ConflictingFraming
            | Self::BadTarget => 400,
            Self::UnsupportedVersion => 505,
        }
    }

    /// Short English sentence describing the error (usable as a response body).
    pub fn reason(self) -> &'static str {
        match self {
            Self::HeadTooLarge => "Request head is too large.",
            Self::TooManyHeaders => "Request has too many header fields.",
            Self::Malformed => "Request head is malformed.",
            Self::BadContentLength => "Content-Length is not a valid number.",
            Self::ConflictingFraming => "Request body framing is ambiguous.",
            Self::UnsupportedVersion => "HTTP version is not supported.",
            Self::BadTarget => "Request target is not a path.",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HttpError {}

/// Ok(None): need more bytes. Ok(Some((consumed, head))): consumed = bytes of the head incl. the blank line.
///
/// Only the first `limits.max_bytes` bytes are ever examined, so repeated calls on a growing
/// buffer cost at most that much each. Leading empty lines are skipped (and counted in
/// `consumed`). Bytes after the head (a body, a pipelined request) are left alone.
pub fn parse_request_head(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<(usize, RequestHead)>, HttpError> {
    let window = &buf[..buf.len().min(limits.max_bytes)];
    let mut table = [httparse::EMPTY_HEADER; HEADERS_HARD_CAP];
    let max_headers = limits.max_headers.min(HEADERS_HARD_CAP);
    let mut req = httparse::Request::new(&mut table[..max_headers]);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_bytes => {
            return Err(HttpError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(classify_version_error(window)),
        Err(_) => return Err(HttpError::Malformed),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(HttpError::Malformed);
    };
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HttpError::UnsupportedVersion),
    };
    let (path, query) = split_target(target)?;
    let fields = HeaderFields::collect(req.headers)?;

    let body = match (fields.content_length, fields.chunked) {
        (Some(_), true) => return Err(HttpError::ConflictingFraming),
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
        (None, true) if version == Version::Http10 => return Err(HttpError::Malformed),
        (None, true) => BodyFraming::Chunked,
        (Some(n), false) => BodyFraming::Length(n),
        (None, false) => BodyFraming::None,
    };
    let persistence = match version {
        Version::Http11 if fields.conn_close => Persistence::Close,
        Version::Http11 => Persistence::KeepAlive,
        Version::Http10 if fields.conn_keep_alive && !fields.conn_close => Persistence::KeepAlive,
        Version::Http10 => Persistence::Close,
    };
    let head = RequestHead {
        method: Method::from_token(method),
        version,
        path: path.to_owned(),
        query: query.to_owned(),
        persistence,
        body,
        // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
        expect_continue: fields.expect_continue && version == Version::Http11,
        websocket_upgrade: fields.upgrade_websocket && fields.conn_upgrade,
        ws_key: fields.ws_key,
        ws_version: fields.ws_version,
        message_expiry: fields.message_expiry,
        forwarded_for: fields.forwarded_for.or(fields.real_ip),
        origin: fields.origin,
    };
    Ok(Some((consumed, head)))
}

/// The header fields pushpull looks at, gathered in one pass.
#[derive(Default)]
struct HeaderFields {
    content_length: Option<u64>,
    chunked: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    upgrade_websocket: bool,
    expect_continue: bool,
    ws_key: Option<String>,
    ws_version: Option<String>,
    message_expiry: Option<String>,
    forwarded_for: Option<String>,
    real_ip: Option<String>,
    origin: Option<String>,
}

impl HeaderFields {
    fn collect(headers: &[httparse::Header<'_>]) -> Result<Self, HttpError> {
        let mut f = Self::default();
        for h in headers {
            let value = trim_ows(h.value);
            let is = |name: &str| h.name.eq_ignore_ascii_case(name);
            if is("content-length") {
                let n = parse_content_length(value)?;
                if f.content_length.is_some_and(|prev| prev != n) {
                    return Err(HttpError::ConflictingFraming);
                }
                f.content_length = Some(n);
            } else if is("transfer-encoding") {
                // Only a single, plain "chunked" is understood; anything else (gzip, a repeated
                // header, a non-UTF-8 value) cannot be framed safely.
                if f.chunked || !value.eq_ignore_ascii_case(b"chunked") {
                    return Err(HttpError::Malformed);
                }
                f.chunked = true;
            } else if is("connection") {
                for token in comma_tokens(value) {
                    f.conn_close |= token.eq_ignore_ascii_case(b"close");
                    f.conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                    f.conn_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
                }
            } else if is("upgrade") {
                f.upgrade_websocket |=
                    comma_tokens(value).any(|t| t.eq_ignore_ascii_case(b"websocket"));
            } else if is("expect") {
                f.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            } else if is("sec-websocket-key") {
                first_text(&mut f.ws_key, value);
            } else if is("sec-websocket-version") {
                first_text(&mut f.ws_version, value);
            } else if is("message-expiry") {
                first_text(&mut f.message_expiry, value);
            } else if is("x-forwarded-for") {
                if let Some(first) = comma_tokens(value).next() {
                    first_text(&mut f.forwarded_for, first);
                }
            } else if is("x-real-ip") {
                if !value.is_empty() {
                    first_text(&mut f.real_ip, value);
                }
            } else if is("origin") {
                first_text(&mut f.origin, value);
            }
        }
        Ok(f)
    }
}

/// Stores `value` in `slot` when the slot is empty and the value is UTF-8.
fn first_text(slot: &mut Option<String>, value: &[u8]) {
    if slot.is_none() {
        *slot = std::str::from_utf8(value).ok().map(str::to_owned);
    }
}

/// Strips optional whitespace (spaces and tabs) from both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Non-empty, trimmed elements of a comma-separated header value.
fn comma_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() {
        return Err(HttpError::BadContentLength);
    }
    value.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(HttpError::BadContentLength);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(HttpError::BadContentLength)
    })
}

/// Tells an unsupported `HTTP/x.y` version (505) from a garbled one (400).
///
/// `httparse` stops at the first byte of the version token that cannot start `HTTP/1.0` or
/// `HTTP/1.1`. The decision only uses bytes `httparse` had to read before failing, so a prefix
/// of the input and the whole input get the same answer.
fn classify_version_error(window: &[u8]) -> HttpError {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let line = window[start..]
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let Some(token) = line.splitn(3, |&b| b == b' ').nth(2) else {
        return HttpError::Malformed;
    };
    match token {
        [b'H', b'T', b'T', b'P', b'/', major, ..] if major.is_ascii_digit() && *major != b'1' => {
            HttpError::UnsupportedVersion
        }
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor, ..] if minor.is_ascii_digit() => {
            HttpError::UnsupportedVersion
        }
        _ => HttpError::Malformed,
    }
}

/// Splits a request target into raw path and raw query.
///
/// Accepts origin-form (`/p?q`) and absolute-form (`http://host/p?q`, scheme case-insensitive,
/// `https` too) by dropping scheme and authority; an absolute target without a path gets "/".
fn split_target(target: &str) -> Result<(&str, &str), HttpError> {
    let rest = if target.starts_with('/') {
        target
    } else {
        strip_scheme_and_authority(target)?
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Ok((if path.is_empty() { "/" } else { path }, query))
}

fn strip_scheme_and_authority(target: &str) -> Result<&str, HttpError> {
    let after_scheme = ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        if head.eq_ignore_ascii_case(scheme) {
            target.get(scheme.len()..)
        } else {
            None
        }
    });
    let after_scheme = after_scheme.ok_or(HttpError::BadTarget)?;
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    if authority_end == 0 {
        return Err(HttpError::BadTarget);
    }
    after_scheme
        .get(authority_end..)
        .ok_or(HttpError::BadTarget)
}

/// Percent-decodes a query value ('+' stays '+'; invalid escapes are kept literally). Returns bytes.
pub fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&h| hex_value(h));
            let lo = bytes.get(i + 2).and_then(|&l| hex_value(l));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi << 4) | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// First value of parameter `name` (exact, case-sensitive name match) in a raw query string, percent-decoded.
///
/// The name is compared raw (not decoded). A parameter without `=` has an empty value.
pub fn query_param(query: &str, name: &str) -> Option<Vec<u8>> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| percent_decode(value))
        })
}

/// Reason phrase for a status code used by pushpull: 100,101,200,204,206,304,400,403,404,405,408,411,413,426,429,431,500,503,505 (others "Unknown").
pub fn status_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Appends `"HTTP/1.1 <status> <reason>\r\n"` + each "Name: value\r\n" + "Content-Length: n\r\n" (when Some) +
/// "Connection: close\r\n" when persistence is Close + "\r\n".
///
/// CR and LF bytes inside names and values are dropped so a value can never end the head early.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    content_length: Option<usize>,
    persistence: Persistence,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(status_reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        push_without_newlines(out, name);
        out.extend_from_slice(b": ");
        push_without_newlines(out, value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    if persistence == Persistence::Close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn push_without_newlines(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().filter(|&b| b != b'\r' && b != b'\n'));
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[..len].iter().rev());
}

#[cfg(test)]
mod tests {
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
}
