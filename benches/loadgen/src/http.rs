//! HTTP/1.1 client side: request building, response heads, response bodies.
//!
//! Used by long-poll subscribers (bodies carry messages), by the WebSocket upgrade (status 101) and
//! by publishers (status 200 = accepted).

/// Largest response head (status line and headers) accepted.
///
/// Push-server answers carry a handful of short headers (CORS, `Last-Message-Id`, `Expires`);
/// 16 KiB is far above that and keeps a broken peer from growing the buffer.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most headers parsed in one response head; same reasoning as [`DEFAULT_MAX_HEAD_BYTES`].
pub const DEFAULT_MAX_HEADERS: usize = 48;

/// Largest response body accepted: the splitter's bound on one unit, so a long-poll body may hold at
/// least one maximal message (see [`crate::nms::DEFAULT_MAX_UNIT_BYTES`]).
pub const DEFAULT_MAX_BODY_BYTES: u64 = crate::nms::DEFAULT_MAX_UNIT_BYTES as u64;

/// Longest chunk-size line (hex digits plus extensions) accepted in a chunked body.
pub const MAX_CHUNK_LINE: usize = 1024;

/// A response the client cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Status line or headers malformed.
    #[error("malformed response head")]
    BadHead,
    /// Head longer than the bound.
    #[error("response head too long")]
    HeadTooLong,
    /// `Content-Length` unparsable or conflicting.
    #[error("bad Content-Length")]
    BadLength,
    /// Body longer than the bound.
    #[error("response body too long")]
    BodyTooLong,
    /// Chunked framing broken.
    #[error("bad chunked encoding")]
    BadChunk,
    /// The peer closed before the body was complete.
    #[error("connection closed mid-body")]
    Truncated,
}

impl HttpError {
    /// The HTTP status a proxy would answer for this upstream error (502 Bad Gateway).
    pub fn code(self) -> u16 {
        502
    }

    /// A short static reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::BadHead => "malformed response head",
            Self::HeadTooLong => "response head too long",
            Self::BadLength => "bad Content-Length",
            Self::BodyTooLong => "response body too long",
            Self::BadChunk => "bad chunked encoding",
            Self::Truncated => "connection closed mid-body",
        }
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Read until the peer closes.
    UntilClose,
}

/// Whether the connection may carry another request after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Keep-alive.
    KeepAlive,
    /// The server closes after this response.
    Close,
}

/// What the client needs from a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Body framing.
    pub framing: BodyFraming,
    /// Keep-alive or close.
    pub persistence: Persistence,
    /// `Last-Message-Id` header when present and non-empty (long-poll 304).
    pub last_message_id: Option<String>,
    /// `Last-Modified` header when present and non-empty (nchan long-poll).
    pub last_modified: Option<String>,
    /// `Etag` header when present and non-empty (nchan long-poll).
    pub etag: Option<String>,
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// Parses a response head from the front of `buf`.
pub fn parse_response_head(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(usize, ResponseHead)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_head => {
            return Err(HttpError::HeadTooLong);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLong),
        Err(_) => return Err(HttpError::BadHead),
    };
    if n > max_head {
        return Err(HttpError::HeadTooLong);
    }
    let status = resp.code.ok_or(HttpError::BadHead)?;
    let http11 = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut conn_close = false;
    let mut conn_keep = false;
    let mut last_message_id = None;
    let mut last_modified = None;
    let mut etag = None;
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::BadHead)?
            .trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let v: u64 = value.parse().map_err(|_| HttpError::BadLength)?;
            if length.is_some_and(|old| old != v) {
                return Err(HttpError::BadLength);
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                conn_close |= token.eq_ignore_ascii_case("close");
                conn_keep |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("last-message-id") {
            last_message_id = non_empty(value);
        } else if h.name.eq_ignore_ascii_case("last-modified") {
            last_modified = non_empty(value);
        } else if h.name.eq_ignore_ascii_case("etag") {
            etag = non_empty(value);
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyFraming::Empty
    } else if chunked {
        BodyFraming::Chunked
    } else {
        match length {
            Some(0) => BodyFraming::Empty,
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilClose,
        }
    };
    if let BodyFraming::Length(n) = framing
        && n > DEFAULT_MAX_BODY_BYTES
    {
        return Err(HttpError::BodyTooLong);
    }
    let persistence = if conn_close || (!http11 && !conn_keep) || framing == BodyFraming::UntilClose
    {
        Persistence::Close
    } else {
        Persistence::KeepAlive
    };
    Ok(Some((
        n,
        ResponseHead {
            status,
            framing,
            persistence,
            last_message_id,
            last_modified,
            etag,
        },
    )))
}

/// One piece of a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkHead {
    /// A chunk of this many data bytes follows (then CRLF).
    Data(u64),
    /// The last chunk: trailers (ignored) and the final CRLF were consumed too.
    Last,
}

/// Parses a chunk-size line (or the last chunk with its trailers) from the front of `buf`.
pub fn parse_chunk_head(buf: &[u8]) -> Result<Option<(usize, ChunkHead)>, HttpError> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > MAX_CHUNK_LINE {
            Err(HttpError::BadChunk)
        } else {
            Ok(None)
        };
    };
    if eol > MAX_CHUNK_LINE {
        return Err(HttpError::BadChunk);
    }
    let line = &buf[..eol];
    let digits = line.split(|b| *b == b';').next().unwrap_or(line);
    let digits = std::str::from_utf8(digits)
        .map_err(|_| HttpError::BadChunk)?
        .trim();
    if digits.is_empty() || digits.len() > 15 {
        return Err(HttpError::BadChunk);
    }
    let size = u64::from_str_radix(digits, 16).map_err(|_| HttpError::BadChunk)?;
    if size > 0 {
        return Ok(Some((eol + 2, ChunkHead::Data(size))));
    }
    // Last chunk: skip trailer lines up to the empty line.
    let mut at = eol + 2;
    loop {
        let rest = &buf[at..];
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(0) => return Ok(Some((at + 2, ChunkHead::Last))),
            Some(n) if n <= MAX_CHUNK_LINE => at += n + 2,
            Some(_) => return Err(HttpError::BadChunk),
            None if rest.len() > MAX_CHUNK_LINE => return Err(HttpError::BadChunk),
            None => return Ok(None),
        }
    }
}

/// Whether a body is finished after a call to [`BodyDecoder::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProgress {
    /// More body bytes are expected.
    More,
    /// The body is complete; bytes after `consumed` belong to the next response.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecState {
    Length(u64),
    ChunkHead,
    ChunkData(u64),
    ChunkCrlf,
    UntilClose,
    Done,
}

/// Streams a response body out of the connection buffer.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: DecState,
    total: u64,
}

impl BodyDecoder {
    /// A decoder for `framing`.
    pub fn new(framing: BodyFraming) -> Self {
        let state = match framing {
            BodyFraming::Empty => DecState::Done,
            BodyFraming::Length(n) => DecState::Length(n),
            BodyFraming::Chunked => DecState::ChunkHead,
            BodyFraming::UntilClose => DecState::UntilClose,
        };
        Self { state, total: 0 }
    }

    /// Moves body bytes from the front of `buf` to `out`; returns how much of `buf` was consumed.
    pub fn feed(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, BodyProgress), HttpError> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match self.state {
                DecState::Done => return Ok((at, BodyProgress::Done)),
                DecState::Length(left) | DecState::ChunkData(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    self.push(&rest[..take], out)?;
                    at += take;
                    let left = left - take as u64;
                    self.state = match (self.state, left) {
                        (DecState::Length(_), 0) => DecState::Done,
                        (DecState::Length(_), n) => DecState::Length(n),
                        (_, 0) => DecState::ChunkCrlf,
                        (_, n) => DecState::ChunkData(n),
                    };
                    if left > 0 {
                        return Ok((at, BodyProgress::More));
                    }
                }
                DecState::ChunkCrlf => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        self.state = DecState::ChunkHead;
                    }
                    [] | [b'\r'] => return Ok((at, BodyProgress::More)),
                    _ => return Err(HttpError::BadChunk),
                },
                DecState::ChunkHead => match parse_chunk_head(rest)? {
                    None => return Ok((at, BodyProgress::More)),
                    Some((n, ChunkHead::Data(size))) => {
                        at += n;
                        self.state = DecState::ChunkData(size);
                    }
                    Some((n, ChunkHead::Last)) => {
                        at += n;
                        self.state = DecState::Done;
                    }
                },
                DecState::UntilClose => {
                    self.push(rest, out)?;
                    return Ok((buf.len(), BodyProgress::More));
                }
            }
        }
    }

    /// Called when the peer closed: completes an until-close body, errors on a cut one.
    pub fn finish_on_eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            DecState::Done => Ok(()),
            DecState::UntilClose => {
                self.state = DecState::Done;
                Ok(())
            }
            _ => Err(HttpError::Truncated),
        }
    }

    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), HttpError> {
        self.total += bytes.len() as u64;
        if self.total > DEFAULT_MAX_BODY_BYTES {
            return Err(HttpError::BodyTooLong);
        }
        out.extend_from_slice(bytes);
        Ok(())
    }
}

/// Where a long-poll subscriber goes on from: what the last answer told it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// Bitrix servers: the last message id seen, sent as `&mid=`.
    pub mid: Option<String>,
    /// nchan: the last answer's `Last-Modified`, sent back as `If-Modified-Since`.
    pub last_modified: Option<String>,
    /// nchan: the last answer's `Etag`, sent back as `If-None-Match`.
    pub etag: Option<String>,
}

/// A long-poll request for `target` (path and query): `&mid=` and the `If-*` headers come from
/// `resume`.
pub fn poll_request(target: &str, resume: &Resume, host: &str) -> Vec<u8> {
    let mid = resume
        .mid
        .as_ref()
        .map(|m| format!("&mid={m}"))
        .unwrap_or_default();
    let mut extra = String::new();
    if let Some(lm) = &resume.last_modified {
        extra.push_str(&format!("If-Modified-Since: {lm}\r\n"));
    }
    if let Some(tag) = &resume.etag {
        extra.push_str(&format!("If-None-Match: {tag}\r\n"));
    }
    format!("GET {target}{mid} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n{extra}\r\n").into_bytes()
}

/// A publish request: `POST <target>` (path and query) with the body and `Message-Expiry`.
pub fn publish_request(target: &str, expiry: u32, host: &str, body: &str) -> Vec<u8> {
    let mut v = format!(
        "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n\
         Message-Expiry: {expiry}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body.as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = DEFAULT_MAX_HEAD_BYTES;

    /// Parses as many responses as `buf` holds; returns consumed bytes and (status, body) pairs,
    /// plus the decoder of a response whose body is still open.
    fn drive(
        buf: &[u8],
        open: &mut Option<(u16, BodyDecoder, Vec<u8>)>,
        done: &mut Vec<(u16, Vec<u8>)>,
    ) -> usize {
        let mut at = 0;
        loop {
            if let Some((status, dec, body)) = open.as_mut() {
                let (n, p) = dec.feed(&buf[at..], body).expect("body");
                at += n;
                if p == BodyProgress::More {
                    return at;
                }
                done.push((*status, std::mem::take(body)));
                *open = None;
            }
            match parse_response_head(&buf[at..], MAX).expect("head") {
                None => return at,
                Some((n, head)) => {
                    at += n;
                    *open = Some((head.status, BodyDecoder::new(head.framing), Vec::new()));
                }
            }
        }
    }

    fn run_split(stream: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut all = None;
        for cut in 0..=stream.len() {
            let mut open = None;
            let mut done = Vec::new();
            let n1 = drive(&stream[..cut], &mut open, &mut done);
            let mut rest = stream[n1..cut].to_vec();
            rest.extend_from_slice(&stream[cut..]);
            let n2 = drive(&rest, &mut open, &mut done);
            assert_eq!(n2, rest.len(), "cut {cut}");
            if let Some((s, mut dec, body)) = open.take() {
                dec.finish_on_eof().expect("eof");
                done.push((s, body));
            }
            match &all {
                None => all = Some(done),
                Some(a) => assert_eq!(a, &done, "cut {cut}"),
            }
        }
        all.unwrap_or_default()
    }

    #[test]
    fn long_poll_sequence_split_at_every_byte() {
        let stream = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 304 Not Modified\r\nLast-Message-Id: 00000000000000000000000042\r\nExpires: Thu, 01 Jan 1973 11:11:01 GMT\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: t\r\n\r\n\
HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ntail bytes";
        let got = run_split(stream);
        assert_eq!(
            got,
            vec![
                (200, b"hello".to_vec()),
                (304, Vec::new()),
                (200, b"abcde".to_vec()),
                (200, b"tail bytes".to_vec()),
            ]
        );
    }

    #[test]
    fn head_fields() {
        let (n, h) = parse_response_head(
            b"HTTP/1.1 304 Not Modified\r\nLast-Message-Id: 123\r\n\r\nX",
            MAX,
        )
        .expect("ok")
        .expect("complete");
        assert_eq!(n, 51);
        assert_eq!(h.status, 304);
        assert_eq!(h.framing, BodyFraming::Empty);
        assert_eq!(h.persistence, Persistence::KeepAlive);
        assert_eq!(h.last_message_id.as_deref(), Some("123"));
        let (_, h) = parse_response_head(
            b"HTTP/1.1 200 OK\r\nLast-Modified: Sat, 28 Nov 2026 01:45:16 GMT\r\nEtag: 0\r\n\r\n",
            MAX,
        )
        .expect("ok")
        .expect("complete");
        assert_eq!(
            h.last_modified.as_deref(),
            Some("Sat, 28 Nov 2026 01:45:16 GMT")
        );
        assert_eq!(h.etag.as_deref(), Some("0"));
        let (_, h) = parse_response_head(b"HTTP/1.1 304 N\r\nLast-Message-Id: \r\n\r\n", MAX)
            .expect("ok")
            .expect("complete");
        assert_eq!(h.last_message_id, None);
        let (_, h) = parse_response_head(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", MAX)
            .expect("ok")
            .expect("complete");
        assert_eq!(
            (h.framing, h.persistence),
            (BodyFraming::Length(2), Persistence::Close)
        );
        let (_, h) = parse_response_head(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            MAX,
        )
        .expect("ok")
        .expect("complete");
        assert_eq!((h.status, h.framing), (101, BodyFraming::Empty));
    }

    #[test]
    fn head_errors() {
        assert_eq!(
            parse_response_head(b"garbage\r\n\r\n", MAX),
            Err(HttpError::BadHead)
        );
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", MAX),
            Err(HttpError::BadLength)
        );
        assert_eq!(
            parse_response_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                MAX
            ),
            Err(HttpError::BadLength)
        );
        assert_eq!(
            parse_response_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
                MAX
            ),
            Err(HttpError::BodyTooLong)
        );
        let long = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(parse_response_head(&long, 50), Err(HttpError::HeadTooLong));
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\n", MAX), Ok(None));
        assert_eq!(HttpError::Truncated.code(), 502);
    }

    #[test]
    fn chunk_errors_and_truncation() {
        assert_eq!(parse_chunk_head(b"zz\r\n"), Err(HttpError::BadChunk));
        assert_eq!(parse_chunk_head(b"\r\n"), Err(HttpError::BadChunk));
        assert_eq!(parse_chunk_head(b"0\r\n"), Ok(None));
        assert_eq!(
            parse_chunk_head(b"a\r\n"),
            Ok(Some((3, ChunkHead::Data(10))))
        );
        let mut d = BodyDecoder::new(BodyFraming::Chunked);
        let mut out = Vec::new();
        assert_eq!(d.feed(b"1\r\nax", &mut out), Err(HttpError::BadChunk));
        let mut d = BodyDecoder::new(BodyFraming::Length(4));
        assert_eq!(d.feed(b"ab", &mut out), Ok((2, BodyProgress::More)));
        assert_eq!(d.finish_on_eof(), Err(HttpError::Truncated));
    }

    #[test]
    fn requests() {
        let r = publish_request("/bitrix/pub/?CHANNEL_ID=abc", 0, "h", "{}");
        let s = String::from_utf8(r).expect("utf8");
        assert!(s.starts_with("POST /bitrix/pub/?CHANNEL_ID=abc HTTP/1.1\r\n"));
        assert!(s.contains("Message-Expiry: 0\r\nContent-Length: 2\r\n\r\n{}"));
        let resume = Resume {
            mid: Some("0042".into()),
            ..Resume::default()
        };
        let p = String::from_utf8(poll_request("/bitrix/sub/?CHANNEL_ID=a.b", &resume, "h"))
            .expect("u");
        assert!(p.starts_with("GET /bitrix/sub/?CHANNEL_ID=a.b&mid=0042 HTTP/1.1\r\n"));
        assert!(!p.contains("If-"));
        let p = String::from_utf8(poll_request("/s/?CHANNEL_ID=a", &Resume::default(), "h"))
            .expect("u");
        assert!(p.starts_with("GET /s/?CHANNEL_ID=a HTTP/1.1\r\n"));
        let nchan = Resume {
            mid: None,
            last_modified: Some("Sat, 28 Nov 2026 01:45:16 GMT".into()),
            etag: Some("0".into()),
        };
        let p = String::from_utf8(poll_request("/sub?id=a", &nchan, "h")).expect("u");
        assert!(p.starts_with("GET /sub?id=a HTTP/1.1\r\n"));
        assert!(p.contains("\r\nIf-Modified-Since: Sat, 28 Nov 2026 01:45:16 GMT\r\n"));
        assert!(p.ends_with("\r\nIf-None-Match: 0\r\n\r\n"));
    }
}
