//! HTTP requests: reading heads and bodies, routing, and the start of long-poll and WebSocket
//! subscriptions (spec/README.md §2–§3, spec/longpoll.md). Publishing is in `publish`.

use std::time::Instant;

use super::{Cx, Poll, Session, State, Sub, SubRequest, lockdown, publish, respond, websocket};
use crate::config::ListenerKind;
use crate::message::{Format, MessageId};
use crate::proto::channel::ChannelError;
use crate::proto::chunked::{ChunkedDecoder, ChunkedError, ChunkedLimits, Decoded};
use crate::proto::http::{
    BodyFraming, HeadLimits, Method, Persistence, RequestHead, parse_request_head, query_param,
};

/// Subscriber paths (prefixes) of the reference and of BitrixVM's nginx (spec/README.md §2).
pub const SUB_PATHS: [&str; 4] = ["/bitrix/sub/", "/bitrix/subws/", "/sub/", "/subws/"];
/// Publisher paths (prefixes).
pub const PUB_PATHS: [&str; 2] = ["/bitrix/pub/", "/pub/"];
/// Browser publishing paths on the publisher listener (prefixes; BitrixVM's nginx sends
/// `/bitrix/rest/` there).
pub const REST_PATHS: [&str; 2] = ["/bitrix/rest/", "/rest/"];
/// Server statistics path (prefix).
pub const STAT_PATH: &str = "/server-stat/";

/// Tries to parse one request head from the input; returns whether it made progress.
pub(super) fn on_head(s: &mut Session, now: Instant, cx: &mut Cx<'_>) -> bool {
    let limits = HeadLimits::default();
    match parse_request_head(&s.rbuf, &limits) {
        Ok(None) => false,
        Err(e) => {
            let body = format!("{} {}", e.status(), e.reason());
            respond::plain(
                &mut s.out,
                e.status(),
                "text/plain",
                body.as_bytes(),
                Persistence::Close,
            );
            s.close(now, cx);
            false
        }
        Ok(Some((consumed, head))) => {
            s.rbuf.consume(consumed);
            cx.stats.requests.add(1);
            if takes_body(s.kind, &head) {
                dispatch(s, head, now, cx);
                return true;
            }
            // A request that takes no body: its body is dropped (README.md §3).
            let max = cx.shared.config.max_payload;
            match head.body {
                BodyFraming::None => {}
                BodyFraming::Length(n) if n <= max as u64 => s.skip = n,
                BodyFraming::Length(_) => {
                    refuse_body(s, BodyRefusal::TooLarge(max as u64), now, cx);
                    return false;
                }
                // Read and dropped before the request is served: only the decoder knows
                // where it ends, and a bad one is answered in place of the request.
                BodyFraming::Chunked => {
                    s.state = State::Body(Box::new(Reading {
                        framing: Framing::chunked(max),
                        then: Then::Serve(head),
                    }));
                    return true;
                }
            }
            dispatch(s, head, now, cx);
            true
        }
    }
}

/// A request whose body is being read (`State::Body`).
#[derive(Debug)]
pub(super) struct Reading {
    /// How the body ends.
    pub(super) framing: Framing,
    /// What happens with the body and once it is read.
    pub(super) then: Then,
}

/// How a body being read ends.
#[derive(Debug)]
pub(super) enum Framing {
    /// `Content-Length`: this many body bytes are still to come.
    Length(usize),
    /// `Transfer-Encoding: chunked` (spec/README.md §3).
    Chunked(ChunkedDecoder),
}

impl Framing {
    /// A chunked body of at most `max_payload` bytes.
    pub(super) fn chunked(max_payload: usize) -> Self {
        Self::Chunked(ChunkedDecoder::new(ChunkedLimits::new(max_payload as u64)))
    }
}

/// What a body being read is for.
#[derive(Debug)]
pub(super) enum Then {
    /// A publish: the body is kept and the publish runs when it is complete.
    Publish(publish::BodyRequest),
    /// A request that takes no body: the body is dropped, then the request is served.
    Serve(RequestHead),
}

/// Takes body bytes of the request being read; returns whether it made progress.
pub(super) fn on_body(s: &mut Session, now: Instant, cx: &mut Cx<'_>) -> bool {
    let State::Body(reading) = &mut s.state else {
        return false;
    };
    if s.rbuf.is_empty() {
        return false;
    }
    let max = cx.shared.config.max_payload;
    let mut kept = match &mut reading.then {
        Then::Publish(request) => Some(&mut request.body),
        Then::Serve(_) => None,
    };
    let mut sink = |data: &[u8]| {
        if let Some(body) = kept.as_deref_mut() {
            append_bounded(body, data, max);
        }
    };
    let decoded = match &mut reading.framing {
        Framing::Length(left) => {
            let n = (*left).min(s.rbuf.len());
            sink(&s.rbuf[..n]);
            *left -= n;
            Ok(if *left == 0 {
                Decoded::Done(n)
            } else {
                Decoded::NeedMore
            })
        }
        Framing::Chunked(decoder) => decoder.decode(&s.rbuf, &mut sink),
    };
    let used = match decoded {
        Ok(Decoded::NeedMore) => s.rbuf.len(),
        Ok(Decoded::Done(n)) => n,
        Err(ChunkedError::TooLarge) => {
            refuse_body(s, BodyRefusal::TooLarge(max as u64), now, cx);
            return false;
        }
        Err(e) => {
            refuse_body(s, BodyRefusal::Chunked(e), now, cx);
            return false;
        }
    };
    s.rbuf.consume(used);
    // Progress on the body pushes the deadline: slow but steady uploads are fine.
    s.head_until = now + cx.shared.config.head_timeout;
    if let Ok(Decoded::Done(_)) = decoded {
        let State::Body(reading) = std::mem::replace(&mut s.state, State::Head) else {
            return false;
        };
        match reading.then {
            Then::Publish(request) => publish::body_complete(s, request, now, cx),
            Then::Serve(head) => dispatch(s, head, now, cx),
        }
    }
    true
}

/// Appends body bytes, growing the buffer by doubling but never beyond `limit` (a body is at
/// most `max_payload` bytes, so its buffer is too).
fn append_bounded(body: &mut Vec<u8>, data: &[u8], limit: usize) {
    let need = body.len() + data.len();
    if need > body.capacity() {
        let target = body.capacity().saturating_mul(2).min(limit).max(need);
        body.reserve_exact(target - body.len());
    }
    body.extend_from_slice(data);
}

/// Whether the request's body is read by its handler (a publish); other bodies are dropped.
fn takes_body(kind: ListenerKind, head: &RequestHead) -> bool {
    kind == ListenerKind::Pub
        && head.method == Method::Post
        && PUB_PATHS
            .iter()
            .chain(&REST_PATHS)
            .any(|r| matches_route(&head.path, r))
}

/// Why a request body is not read.
#[derive(Clone, Copy)]
pub(super) enum BodyRefusal {
    /// Over the payload limit (413).
    TooLarge(u64),
    /// A chunked body that cannot be decoded (400, 431).
    Chunked(ChunkedError),
}

/// Answers a refused body and closes: the unread body cannot be told apart from a next request.
pub(super) fn refuse_body(s: &mut Session, why: BodyRefusal, now: Instant, cx: &mut Cx<'_>) {
    let (status, body) = match why {
        BodyRefusal::TooLarge(max) => (
            413,
            format!("413: Payload Too Large. The limit is {max} bytes."),
        ),
        BodyRefusal::Chunked(e) => (e.status(), format!("{}: {}", e.status(), e.reason())),
    };
    respond::plain(
        &mut s.out,
        status,
        "text/plain",
        body.as_bytes(),
        Persistence::Close,
    );
    s.close(now, cx);
}

pub(super) fn matches_route(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix) || path == prefix.trim_end_matches('/')
}

fn dispatch(s: &mut Session, head: RequestHead, now: Instant, cx: &mut Cx<'_>) {
    let p = head.persistence;
    let path = head.path.as_str();
    match s.kind {
        ListenerKind::Sub if SUB_PATHS.iter().any(|r| matches_route(path, r)) => {
            match head.method {
                Method::Get if head.websocket_upgrade => websocket::upgrade(s, &head, now, cx),
                Method::Get => long_poll(s, &head, now, cx),
                Method::Options => {
                    respond::preflight(&mut s.out, p);
                    s.finish_request(p, now, cx);
                }
                _ => {
                    respond::method_not_allowed(&mut s.out, "GET, OPTIONS", p);
                    s.finish_request(p, now, cx);
                }
            }
        }
        ListenerKind::Pub if publisher_route(path) => {
            if let Err(why) = lockdown::check_peer(s, cx) {
                return lockdown::forbid(s, why, p, now, cx);
            }
            publisher(s, &head, now, cx);
        }
        ListenerKind::Pub if REST_PATHS.iter().any(|r| matches_route(path, r)) => {
            match head.method {
                Method::Post => publish::start(s, &head, publish::Route::Browser, now, cx),
                Method::Options => {
                    respond::preflight(&mut s.out, p);
                    s.finish_request(p, now, cx);
                }
                _ => {
                    respond::method_not_allowed(&mut s.out, "POST, OPTIONS", p);
                    s.finish_request(p, now, cx);
                }
            }
        }
        _ => {
            respond::not_found(&mut s.out, p);
            s.finish_request(p, now, cx);
        }
    }
}

/// Whether `path` is a publisher route of the pub listener (the browser routes are not).
fn publisher_route(path: &str) -> bool {
    PUB_PATHS.iter().any(|r| matches_route(path, r)) || matches_route(path, STAT_PATH)
}

/// A request on a publisher route from a peer that may use it.
fn publisher(s: &mut Session, head: &RequestHead, now: Instant, cx: &mut Cx<'_>) {
    let p = head.persistence;
    if PUB_PATHS.iter().any(|r| matches_route(&head.path, r)) {
        match head.method {
            Method::Post => publish::start(s, head, publish::Route::Backend, now, cx),
            Method::Get => publish::channel_info(s, head, now, cx),
            _ => {
                respond::method_not_allowed(&mut s.out, "GET, POST", p);
                s.finish_request(p, now, cx);
            }
        }
        return;
    }
    if head.method != Method::Get {
        respond::method_not_allowed(&mut s.out, "GET", p);
        return s.finish_request(p, now, cx);
    }
    let signed = lockdown::get_signed_data(&head.query);
    if let Err(why) = lockdown::check_signature(&head.query, &signed, cx) {
        return lockdown::forbid(s, why, p, now, cx);
    }
    let body = publish::server_stats(cx.shared).to_string();
    respond::plain(&mut s.out, 200, "application/json", body.as_bytes(), p);
    s.finish_request(p, now, cx);
}

/// `GET <sub path>` without upgrade: a long-poll (spec/longpoll.md §2).
fn long_poll(s: &mut Session, head: &RequestHead, now: Instant, cx: &mut Cx<'_>) {
    let p = head.persistence;
    let request = match subscription_request(head, cx) {
        Ok(request) => request,
        Err(e) => {
            respond::error(&mut s.out, 400, e.code(), e.reason(), p);
            s.finish_request(p, now, cx);
            return;
        }
    };
    let config = &cx.shared.config;
    let hold_until = now + config.longpoll_hold;
    let since = request.since;
    let Some(sub) = Sub::start(request, cx) else {
        publish::busy(s, p, now, cx);
        return;
    };
    cx.stats.pollings.add(1);
    s.state = State::Polling(Box::new(Poll {
        sub,
        hold_until,
        persistence: p,
        since,
    }));
}

/// The channels, `mid` and format of a subscribe request (spec/longpoll.md §1,
/// spec/channels.md §2, spec/binary.md §1).
pub(super) fn subscription_request(
    head: &RequestHead,
    cx: &Cx<'_>,
) -> Result<SubRequest, ChannelError> {
    let list = query_param(&head.query, "CHANNEL_ID").unwrap_or_default();
    let max = cx.shared.config.max_channels_per_request;
    let sub = cx.shared.signer.subscription(&list, max)?;
    let since = query_param(&head.query, "mid").and_then(|m| MessageId::parse(&m));
    let format = match query_param(&head.query, "binaryMode").as_deref() {
        Some(b"true") => Format::Binary,
        _ => Format::Text,
    };
    Ok(SubRequest {
        channels: sub.channels,
        capped: sub.capped,
        own_public: sub.own_public,
        since,
        format,
    })
}
