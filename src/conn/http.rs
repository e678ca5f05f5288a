//! HTTP requests: routing, publishing, channel info, server stats and the start of long-poll and
//! WebSocket subscriptions (spec/longpoll.md, spec/publishing.md).

use std::time::Instant;

use bytes::Bytes;
use serde_json::json;

use super::{Cx, Poll, Session, State, Sub, respond, websocket};
use crate::config::ListenerKind;
use crate::engine::{EngineCmd, PublishError};
use crate::message::{Channel, ChannelId, MessageId, Sender};
use crate::proto::channel::ChannelError;
use crate::proto::http::{
    BodyFraming, HeadLimits, Method, Persistence, RequestHead, parse_request_head, query_param,
};

/// Subscriber paths (prefixes) of the reference and of BitrixVM's nginx (spec/README.md §2).
pub const SUB_PATHS: [&str; 4] = ["/bitrix/sub/", "/bitrix/subws/", "/sub/", "/subws/"];
/// Publisher paths (prefixes).
pub const PUB_PATHS: [&str; 2] = ["/bitrix/pub/", "/pub/"];
/// Server statistics path (prefix).
pub const STAT_PATH: &str = "/server-stat/";

/// Most bytes reserved up front for a publish body: `Content-Length` is the peer's word, so a
/// large body grows as it arrives instead of being allocated before a byte is sent.
const BODY_PREALLOC: usize = 64 * 1024;

/// A publish request waiting for its body.
#[derive(Debug)]
pub(super) struct Publish {
    query: String,
    expiry: u32,
    persistence: Persistence,
    need: usize,
    body: Vec<u8>,
}

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
            s.rbuf.drain(..consumed);
            cx.stats.requests.add(1);
            if !takes_body(s.kind, &head) && !skip_body(s, &head, now, cx) {
                return false;
            }
            dispatch(s, head, now, cx);
            true
        }
    }
}

/// Takes body bytes of a publish request; returns whether it made progress.
pub(super) fn on_body(s: &mut Session, now: Instant, cx: &mut Cx<'_>) -> bool {
    let State::Body(publish) = &mut s.state else {
        return false;
    };
    let take = (publish.need - publish.body.len()).min(s.rbuf.len());
    if take == 0 {
        return false;
    }
    publish.body.extend_from_slice(&s.rbuf[..take]);
    s.rbuf.drain(..take);
    // Progress on the body pushes the deadline: slow but steady uploads are fine.
    s.head_until = now + cx.shared.config.head_timeout;
    if publish.body.len() == publish.need {
        let State::Body(publish) = std::mem::replace(&mut s.state, State::Head) else {
            return false;
        };
        publish_now(s, *publish, now, cx);
    }
    true
}

/// Whether the request's body is read by its handler (a publish); other bodies are dropped.
fn takes_body(kind: ListenerKind, head: &RequestHead) -> bool {
    kind == ListenerKind::Pub
        && head.method == Method::Post
        && PUB_PATHS.iter().any(|r| matches_route(&head.path, r))
}

/// Arranges for the body of a request that takes none to be dropped (the PHP module sends its
/// channel list as the body of `GET /pub/` too). Returns false when the request was refused.
fn skip_body(s: &mut Session, head: &RequestHead, now: Instant, cx: &mut Cx<'_>) -> bool {
    let max = cx.shared.config.max_payload as u64;
    match head.body {
        BodyFraming::None => true,
        BodyFraming::Length(n) if n <= max => {
            s.skip = n;
            true
        }
        BodyFraming::Length(_) => {
            refuse_body(s, BodyRefusal::TooLarge(max), now, cx);
            false
        }
        BodyFraming::Chunked => {
            refuse_body(s, BodyRefusal::NoLength, now, cx);
            false
        }
    }
}

/// Why a request body is not read.
#[derive(Clone, Copy)]
enum BodyRefusal {
    /// Over the payload limit (413).
    TooLarge(u64),
    /// Chunked: only `Content-Length` bodies are read (411).
    NoLength,
}

/// Answers a refused body and closes: the unread body cannot be told apart from a next request.
fn refuse_body(s: &mut Session, why: BodyRefusal, now: Instant, cx: &mut Cx<'_>) {
    let (status, body) = match why {
        BodyRefusal::TooLarge(max) => (
            413,
            format!("413: Payload Too Large. The limit is {max} bytes."),
        ),
        BodyRefusal::NoLength => (
            411,
            "411: Length Required. Send the body with Content-Length.".into(),
        ),
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

fn matches_route(path: &str, prefix: &str) -> bool {
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
        ListenerKind::Pub if PUB_PATHS.iter().any(|r| matches_route(path, r)) => {
            match head.method {
                Method::Post => start_publish(s, &head, now, cx),
                Method::Get => channel_info_request(s, &head, now, cx),
                _ => {
                    respond::method_not_allowed(&mut s.out, "GET, POST", p);
                    s.finish_request(p, now, cx);
                }
            }
        }
        ListenerKind::Pub if matches_route(path, STAT_PATH) => {
            if head.method == Method::Get {
                let body = server_stats(cx);
                respond::plain(&mut s.out, 200, "application/json", body.as_bytes(), p);
            } else {
                respond::method_not_allowed(&mut s.out, "GET", p);
            }
            s.finish_request(p, now, cx);
        }
        _ => {
            respond::not_found(&mut s.out, p);
            s.finish_request(p, now, cx);
        }
    }
}

/// `GET <sub path>` without upgrade: a long-poll (spec/longpoll.md §2).
fn long_poll(s: &mut Session, head: &RequestHead, now: Instant, cx: &mut Cx<'_>) {
    let p = head.persistence;
    let (channels, since) = match subscription_request(head, cx) {
        Ok(request) => request,
        Err(e) => {
            respond::error(&mut s.out, 400, e.code(), e.reason(), p);
            s.finish_request(p, now, cx);
            return;
        }
    };
    let config = &cx.shared.config;
    let hold_until = now + config.longpoll_hold;
    let Some(sub) = Sub::start(channels, since, cx) else {
        busy(s, p, now, cx);
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

/// The channels and `mid` of a subscribe request (spec/longpoll.md §1, spec/channels.md §2).
pub(super) fn subscription_request(
    head: &RequestHead,
    cx: &Cx<'_>,
) -> Result<(Vec<Channel>, Option<MessageId>), ChannelError> {
    let list = query_param(&head.query, "CHANNEL_ID").unwrap_or_default();
    let max = cx.shared.config.max_channels_per_request;
    let channels = cx.shared.signer.subscription(&list, max)?.channels;
    let since = query_param(&head.query, "mid").and_then(|m| MessageId::parse(&m));
    Ok((channels, since))
}

/// `POST <pub path>`: checks the head, then waits for the body (spec/publishing.md §1).
fn start_publish(s: &mut Session, head: &RequestHead, now: Instant, cx: &mut Cx<'_>) {
    let p = head.persistence;
    let max = cx.shared.config.max_payload;
    if query_param(&head.query, "binaryMode").as_deref() == Some(b"true") {
        // The protobuf API (queue server version 4) is not served by this build.
        let reason = "Binary mode is not supported by this server.";
        respond::error(&mut s.out, 501, 4015, reason, Persistence::Close);
        s.close(now, cx);
        return;
    }
    let need = match head.body {
        BodyFraming::None => 0,
        BodyFraming::Length(n) if n > max as u64 => {
            let body = format!("413: Payload Too Large. The limit is {max} bytes.");
            respond::plain(
                &mut s.out,
                413,
                "text/plain",
                body.as_bytes(),
                Persistence::Close,
            );
            s.close(now, cx);
            return;
        }
        BodyFraming::Length(n) => n as usize,
        BodyFraming::Chunked => {
            let body = b"411: Length Required. Send the body with Content-Length.";
            respond::plain(&mut s.out, 411, "text/plain", body, Persistence::Close);
            s.close(now, cx);
            return;
        }
    };
    if head.expect_continue && need > 0 {
        respond::continue_100(&mut s.out);
    }
    let expiry = head
        .message_expiry
        .as_deref()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let publish = Publish {
        query: head.query.clone(),
        expiry,
        persistence: p,
        need,
        body: Vec::with_capacity(need.min(BODY_PREALLOC)),
    };
    s.state = State::Body(Box::new(publish));
    if need == 0 {
        let State::Body(publish) = std::mem::replace(&mut s.state, State::Head) else {
            return;
        };
        publish_now(s, *publish, now, cx);
    }
}

/// The whole publish request is here: validate and hand it to the engine.
fn publish_now(s: &mut Session, publish: Publish, now: Instant, cx: &mut Cx<'_>) {
    let p = publish.persistence;
    let config = &cx.shared.config;
    let list = query_param(&publish.query, "CHANNEL_ID").unwrap_or_default();
    let receivers = match cx
        .shared
        .signer
        .publish_targets(&list, config.max_channels_per_request)
    {
        Ok(r) => r,
        Err(e) => {
            respond::error(&mut s.out, 400, e.code(), e.reason(), p);
            s.finish_request(p, now, cx);
            return;
        }
    };
    if publish.body.iter().all(u8::is_ascii_whitespace) {
        respond::error(
            &mut s.out,
            400,
            4013,
            "Wrong Request Data. The body is empty.",
            p,
        );
        s.finish_request(p, now, cx);
        return;
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(&publish.body).is_err() {
        respond::error(
            &mut s.out,
            400,
            4013,
            "Wrong Request Data. The body is not JSON.",
            p,
        );
        s.finish_request(p, now, cx);
        return;
    }
    let cmd = EngineCmd::Publish {
        from: cx.conn,
        receivers,
        body: Bytes::from(publish.body),
        expiry: publish.expiry,
        sender: Sender::Backend,
    };
    if cx.engine.try_send(cmd).is_err() {
        busy(s, p, now, cx);
        return;
    }
    s.state = State::Awaiting(p);
}

/// `GET <pub path>?CHANNEL_ID=…`: subscriber counts (spec/publishing.md §3).
fn channel_info_request(s: &mut Session, head: &RequestHead, now: Instant, cx: &mut Cx<'_>) {
    let p = head.persistence;
    let list = query_param(&head.query, "CHANNEL_ID").unwrap_or_default();
    let max = cx.shared.config.max_channels_per_request;
    let channels = match cx.shared.signer.publish_targets(&list, max) {
        Ok(c) => c,
        Err(e) => {
            respond::error(&mut s.out, 400, e.code(), e.reason(), p);
            s.finish_request(p, now, cx);
            return;
        }
    };
    let cmd = EngineCmd::ChannelInfo {
        from: cx.conn,
        channels,
    };
    if cx.engine.try_send(cmd).is_err() {
        busy(s, p, now, cx);
        return;
    }
    s.state = State::Awaiting(p);
}

fn busy(s: &mut Session, p: Persistence, now: Instant, cx: &mut Cx<'_>) {
    let e = PublishError::Busy;
    respond::error(&mut s.out, e.status(), e.status(), e.reason(), p);
    s.finish_request(p, now, cx);
}

/// The publish answer.
pub(super) fn published(
    out: &mut Vec<u8>,
    result: Result<MessageId, PublishError>,
    p: Persistence,
) {
    match result {
        Ok(id) => {
            let body = format!("{{\"mid\":\"{id}\"}}");
            respond::plain(out, 200, "application/json", body.as_bytes(), p);
        }
        Err(e) => respond::error(out, e.status(), e.status(), e.reason(), p),
    }
}

/// The channel info answer: `{"infos":[{"channel":"…","subscribers":N}]}`.
pub(super) fn channel_info(out: &mut Vec<u8>, infos: &[(ChannelId, u32)], p: Persistence) {
    let infos: Vec<_> = infos
        .iter()
        .map(|(id, n)| json!({"channel": id.to_hex(), "subscribers": n}))
        .collect();
    let body = json!({ "infos": infos }).to_string();
    respond::plain(out, 200, "application/json", body.as_bytes(), p);
}

/// `GET /server-stat/`: one object for this process, with per-core figures (spec/publishing.md §6).
fn server_stats(cx: &Cx<'_>) -> String {
    let shared = cx.shared;
    let cores: Vec<_> = shared
        .core_stats
        .iter()
        .enumerate()
        .map(|(i, c)| c.to_json(i))
        .collect();
    let sum = |f: fn(&crate::metrics::CoreStats) -> u64| -> u64 {
        shared.core_stats.iter().map(|c| f(c)).sum()
    };
    let mut process = serde_json::Map::new();
    process.insert("pid".into(), std::process::id().into());
    process.insert(
        "processUniqueId".into(),
        format!("pushpull-{}", std::process::id()).into(),
    );
    process.insert("started".into(), shared.started.into());
    process.insert("websockets".into(), sum(|c| c.websockets.get()).into());
    process.insert("pollings".into(), sum(|c| c.pollings.get()).into());
    process.insert("connections".into(), sum(|c| c.connections.get()).into());
    process.insert("delivered".into(), sum(|c| c.delivered.get()).into());
    shared.engine_stats.fill(&mut process);
    process.insert("cores".into(), cores.into());
    serde_json::Value::Array(vec![process.into()]).to_string()
}
