//! Publishing: the text API (`POST /pub/`), the protobuf API (`POST /pub/?binaryMode=true`),
//! browser publishing (`POST /rest/`), channel queries and server statistics
//! (spec/publishing.md, spec/binary.md §3–§4).

use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use serde_json::{Value, json};

use super::http::{BodyRefusal, Framing, Reading, Then, refuse_body};
use super::{Cx, Session, Shared, State, lockdown, respond};
use crate::engine::{ChannelState, EngineCmd, PublishError};
use crate::message::{ChannelKind, MessageId, Sender};
use crate::proto::http::{BodyFraming, Persistence, RequestHead, query_param};
use crate::proto::pb;
use crate::proto::request::{
    self, ClientRequest, Label, Publication, RequestLimits, Trust, WireError,
};

/// Most bytes reserved up front for a publish body: `Content-Length` is the peer's word, so a
/// large body grows as it arrives instead of being allocated before a byte is sent.
const BODY_PREALLOC: usize = 64 * 1024;

/// Which publishing route a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// `/pub/`: the trusted back end.
    Backend,
    /// `/rest/`: a browser, untrusted.
    Browser,
}

/// How the engine's answer to a waiting request is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// Text publish: 200 `{"mid":"…"}`.
    Mid,
    /// Protobuf publish: 200 with an empty body, as the reference.
    Empty,
    /// `GET /pub/`: `{"infos":[…]}`.
    InfoJson,
    /// Protobuf `channelStats`: a `ResponseBatch`.
    StatsBinary,
}

/// A publish waiting for its body.
#[derive(Debug)]
pub(super) struct BodyRequest {
    route: Route,
    binary: bool,
    query: String,
    expiry: u32,
    persistence: Persistence,
    /// The body read so far (decoded, when chunked).
    pub(super) body: Vec<u8>,
}

/// `POST` on a publishing path: checks the head, then waits for the body.
pub(super) fn start(
    s: &mut Session,
    head: &RequestHead,
    route: Route,
    now: Instant,
    cx: &mut Cx<'_>,
) {
    let max = cx.shared.config.max_payload;
    let (framing, prealloc) = match head.body {
        BodyFraming::None | BodyFraming::Length(0) => (None, 0),
        BodyFraming::Length(n) if n > max as u64 => {
            refuse_body(s, BodyRefusal::TooLarge(max as u64), now, cx);
            return;
        }
        BodyFraming::Length(n) => (Some(Framing::Length(n as usize)), n as usize),
        // The size is known chunk by chunk: the buffer grows as the data arrives.
        BodyFraming::Chunked => (Some(Framing::chunked(max)), 0),
    };
    if head.expect_continue && framing.is_some() {
        respond::continue_100(&mut s.out);
    }
    let expiry = head
        .message_expiry
        .as_deref()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let binary = route == Route::Browser
        || query_param(&head.query, "binaryMode").as_deref() == Some(b"true");
    let request = BodyRequest {
        route,
        binary,
        query: head.query.clone(),
        expiry,
        persistence: head.persistence,
        body: Vec::with_capacity(prealloc.min(BODY_PREALLOC)),
    };
    match framing {
        None => body_complete(s, request, now, cx),
        Some(framing) => {
            s.state = State::Body(Box::new(Reading {
                framing,
                then: Then::Publish(request),
            }))
        }
    }
}

/// The whole body is here: validate and hand the request to the engine.
pub(super) fn body_complete(s: &mut Session, request: BodyRequest, now: Instant, cx: &mut Cx<'_>) {
    let p = request.persistence;
    if request.route == Route::Backend {
        if let Err(why) = lockdown::check_signature(&request.query, &request.body, cx) {
            return lockdown::forbid(s, why, p, now, cx);
        }
    }
    if !request.binary {
        return text_publish(s, request, now, cx);
    }
    let trust = match request.route {
        Route::Backend => Trust::Backend,
        Route::Browser => match own_public(&request.query, cx) {
            Ok(public) => Trust::Client(public),
            Err(e) => return wire_error(s, e, p, now, cx),
        },
    };
    let limits = request_limits(cx.shared);
    match request::parse(&request.body, trust, &cx.shared.signer, limits) {
        Ok(parsed) => run(s, parsed, p, now, cx),
        Err(e) => wire_error(s, e, p, now, cx),
    }
}

/// The limits of a protobuf request.
pub(super) fn request_limits(shared: &Shared) -> RequestLimits {
    RequestLimits {
        messages: shared.config.max_messages_per_request,
        channels: shared.config.max_channels_per_request,
    }
}

/// A browser's own public channel, from the tokens of its `CHANNEL_ID`: 4012 without one, also
/// when the list is refused (a token malformed, unsigned or badly signed, or no token), as the
/// reference answers (spec/binary.md §4); 4018 above `max_channels_per_request`.
fn own_public(query: &str, cx: &Cx<'_>) -> Result<crate::message::ChannelId, WireError> {
    let list = query_param(query, "CHANNEL_ID").unwrap_or_default();
    let max = cx.shared.config.max_channels_per_request;
    match cx
        .shared
        .signer
        .subscription(&list, max)
        .map_err(WireError::from)
    {
        Ok(sub) => sub.own_public.ok_or(WireError::PublicChannelRequired),
        Err(WireError::TooManyChannels) => Err(WireError::TooManyChannels),
        Err(_) => Err(WireError::PublicChannelRequired),
    }
}

/// Runs a validated protobuf request from HTTP.
fn run(s: &mut Session, request: ClientRequest, p: Persistence, now: Instant, cx: &mut Cx<'_>) {
    cx.shared.engine_stats.count_request(request.command());
    let (cmd, reply) = match request {
        // Nothing to publish: accepted, as the reference does.
        ClientRequest::Publish(messages) if messages.is_empty() => {
            respond::plain(&mut s.out, 200, "text/plain", b"", p);
            return s.finish_request(p, now, cx);
        }
        ClientRequest::Publish(messages) => (
            EngineCmd::Publish {
                from: cx.conn,
                messages,
            },
            Reply::Empty,
        ),
        ClientRequest::ChannelStats(channels) => (
            EngineCmd::ChannelInfo {
                from: cx.conn,
                channels,
            },
            Reply::StatsBinary,
        ),
        ClientRequest::ServerStats => {
            let body = server_stats_batch(cx.shared);
            respond::plain(&mut s.out, 200, "application/octet-stream", &body, p);
            return s.finish_request(p, now, cx);
        }
    };
    if cx.engine.try_send(cmd).is_err() {
        return busy(s, p, now, cx);
    }
    s.state = State::Awaiting(p, reply);
}

/// `POST /pub/` with a text body (spec/publishing.md §1).
fn text_publish(s: &mut Session, request: BodyRequest, now: Instant, cx: &mut Cx<'_>) {
    let p = request.persistence;
    let list = query_param(&request.query, "CHANNEL_ID").unwrap_or_default();
    let max = cx.shared.config.max_channels_per_request;
    let receivers = match cx.shared.signer.publish_targets(&list, max) {
        Ok(r) => r,
        Err(e) => return wire_error(s, e.into(), p, now, cx),
    };
    if request.body.iter().all(u8::is_ascii_whitespace) {
        let reason = "Wrong Request Data. The body is empty.";
        respond::error(&mut s.out, 400, 4013, reason, p);
        return s.finish_request(p, now, cx);
    }
    // Any text is a body, JSON or not, as in the reference; bytes that are not UTF-8 become
    // U+FFFD, as the reference's `toString()` makes them (spec/publishing.md §1).
    let body = match String::from_utf8(request.body) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    let publication = Publication {
        receivers,
        body: Bytes::from(body),
        expiry: request.expiry,
        sender: Sender::Backend,
        label: Label::new(""),
    };
    let cmd = EngineCmd::Publish {
        from: cx.conn,
        messages: vec![publication],
    };
    if cx.engine.try_send(cmd).is_err() {
        return busy(s, p, now, cx);
    }
    s.state = State::Awaiting(p, Reply::Mid);
}

/// `GET /pub/?CHANNEL_ID=…`: subscriber counts (spec/publishing.md §3).
pub(super) fn channel_info(s: &mut Session, head: &RequestHead, now: Instant, cx: &mut Cx<'_>) {
    let p = head.persistence;
    let list = query_param(&head.query, "CHANNEL_ID").unwrap_or_default();
    if let Err(why) = lockdown::check_signature(&head.query, &list, cx) {
        return lockdown::forbid(s, why, p, now, cx);
    }
    let max = cx.shared.config.max_channels_per_request;
    let channels = match cx.shared.signer.publish_targets(&list, max) {
        Ok(c) => c,
        Err(e) => return wire_error(s, e.into(), p, now, cx),
    };
    if cx
        .engine
        .try_send(EngineCmd::ChannelInfo {
            from: cx.conn,
            channels,
        })
        .is_err()
    {
        return busy(s, p, now, cx);
    }
    s.state = State::Awaiting(p, Reply::InfoJson);
}

/// A `<code>: <reason>` answer; the connection stays usable.
fn wire_error(s: &mut Session, e: WireError, p: Persistence, now: Instant, cx: &mut Cx<'_>) {
    respond::error(&mut s.out, e.status(), e.code(), e.reason(), p);
    s.finish_request(p, now, cx);
}

/// 503: the engine queue is full.
pub(super) fn busy(s: &mut Session, p: Persistence, now: Instant, cx: &mut Cx<'_>) {
    let e = PublishError::Busy;
    respond::error(&mut s.out, e.status(), e.status(), e.reason(), p);
    s.finish_request(p, now, cx);
}

/// Writes the answer to a publish.
pub(super) fn published(
    out: &mut Vec<u8>,
    reply: Reply,
    result: Result<MessageId, PublishError>,
    p: Persistence,
) {
    match (result, reply) {
        (Ok(id), Reply::Mid) => {
            let body = format!("{{\"mid\":\"{id}\"}}");
            respond::plain(out, 200, "application/json", body.as_bytes(), p);
        }
        (Ok(_), _) => respond::plain(out, 200, "text/plain", b"", p),
        (Err(e), _) => respond::error(out, e.status(), e.status(), e.reason(), p),
    }
}

/// Writes the answer to a channel query.
pub(super) fn channel_answer(
    out: &mut Vec<u8>,
    reply: Reply,
    infos: &[ChannelState],
    p: Persistence,
) {
    match reply {
        Reply::StatsBinary => {
            let body = channel_stats_batch(infos);
            respond::plain(out, 200, "application/octet-stream", &body, p);
        }
        _ => {
            let infos: Vec<Value> = infos
                .iter()
                .map(|i| {
                    // A channel seen within the online window counts as one subscriber, so
                    // the PHP module's "subscribers > 0" check reads it as online.
                    let n = if i.subscribers == 0 && i.online {
                        1
                    } else {
                        i.subscribers
                    };
                    json!({"channel": i.channel.id.to_hex(), "subscribers": n})
                })
                .collect();
            let body = json!({ "infos": infos }).to_string();
            respond::plain(out, 200, "application/json", body.as_bytes(), p);
        }
    }
}

/// A `ResponseBatch` with one `channelStats` response (spec/binary.md §3).
pub(super) fn channel_stats_batch(infos: &[ChannelState]) -> Vec<u8> {
    let channels = infos
        .iter()
        .map(|i| pb::ChannelStats {
            id: i.channel.id.0.to_vec(),
            is_private: i.channel.kind == ChannelKind::Private,
            is_online: i.online,
        })
        .collect();
    let response = pb::response::Command::ChannelStats(pb::ChannelStatsResponse { channels });
    pb::ResponseBatch {
        responses: vec![pb::Response {
            command: Some(response),
        }],
    }
    .encode_to_vec()
}

/// A `ResponseBatch` with one `serverStats` response holding the JSON statistics.
fn server_stats_batch(shared: &Shared) -> Vec<u8> {
    let json = server_stats(shared).to_string();
    let response = pb::response::Command::ServerStats(pb::JsonResponse { json });
    pb::ResponseBatch {
        responses: vec![pb::Response {
            command: Some(response),
        }],
    }
    .encode_to_vec()
}

/// The server statistics: an array with one object for this process, in the reference's shape
/// plus pushpull's own figures and per-core entries, followed by the other processes of the
/// cluster (spec/publishing.md §6, spec/cluster.md §7).
pub(super) fn server_stats(shared: &Shared) -> Value {
    let mut all = vec![Value::Object(shared.process_stats())];
    if let Ok(cluster) = shared.engine_stats.cluster.lock() {
        all.extend(cluster.others.iter().cloned());
    }
    Value::Array(all)
}
