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
        501 => "Not Implemented",
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
mod tests;
