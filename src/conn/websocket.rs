//! WebSocket subscribers (spec/websocket.md): the upgrade, replay then live messages, pings,
//! and the closing handshake.

use std::time::Instant;

use super::{Cx, Flow, Session, State, Sub, http, publish, respond};
use crate::engine::{ChannelState, EngineCmd, PublishError};
use crate::message::{ChannelId, Format};
use crate::proto::http::{BodyFraming, Persistence, RequestHead};
use crate::proto::request::{self, ClientRequest, Trust, WireError};
use crate::proto::ws::{self, Incoming, Opcode, Reader};

/// Payload of the server's ping frames (as the reference sends).
const PING_PAYLOAD: &[u8] = b"ws ping";

/// A WebSocket subscriber.
#[derive(Debug)]
pub struct Ws {
    pub(super) sub: Sub,
    /// The connection's own public channel: its identity when it publishes.
    own_public: Option<ChannelId>,
    reader: Reader,
    pub(super) next_ping: Instant,
    awaiting_pong: bool,
    /// Our close frame is queued; the connection goes to `Closing`.
    pub(super) closing: bool,
}

/// `GET <sub path>` with `Upgrade: websocket` (spec/websocket.md §1).
pub(super) fn upgrade(s: &mut Session, head: &RequestHead, now: Instant, cx: &mut Cx<'_>) {
    let p = head.persistence;
    if s.skip > 0 || head.body == BodyFraming::Chunked {
        // After the upgrade the bytes would be read as frames. (A chunked body has been read
        // and dropped by now, but an upgrade with a body is refused whatever its framing.)
        let reason = b"400: A WebSocket upgrade request carries no body.";
        respond::plain(&mut s.out, 400, "text/plain", reason, Persistence::Close);
        s.close(now, cx);
        return;
    }
    if head.ws_version.as_deref().map(str::trim) != Some("13") {
        respond::upgrade_required(&mut s.out, p);
        s.finish_request(p, now, cx);
        return;
    }
    let Some(key) = head
        .ws_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
    else {
        let reason = "Bad WebSocket handshake: no Sec-WebSocket-Key.";
        respond::plain(
            &mut s.out,
            400,
            "text/plain",
            reason.as_bytes(),
            Persistence::Close,
        );
        s.close(now, cx);
        return;
    };
    respond::switching_protocols(&mut s.out, &ws::accept_key(key));
    let request = match http::subscription_request(head, cx) {
        Ok(request) => request,
        Err(e) => {
            // The newer reference accepts the upgrade and closes with the code: that is what
            // clients react to (spec/websocket.md §5).
            s.out
                .extend_from_slice(&ws::close_frame(e.code(), e.reason()));
            s.close(now, cx);
            return;
        }
    };
    let config = &cx.shared.config;
    let next_ping = now + config.ws_ping_interval;
    let max = config.max_payload;
    let own_public = request.own_public;
    let Some(sub) = Sub::start(request, cx) else {
        s.out
            .extend_from_slice(&ws::close_frame(1013, "Server busy, try again."));
        s.close(now, cx);
        return;
    };
    cx.stats.websockets.add(1);
    let reader = Reader::new(max, max);
    s.state = State::WebSocket(Box::new(Ws {
        sub,
        own_public,
        reader,
        next_ping,
        awaiting_pong: false,
        closing: false,
    }));
}

impl Ws {
    /// Reads client frames from `input`; returns the bytes consumed.
    pub(super) fn on_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        now: Instant,
        cx: &mut Cx<'_>,
    ) -> (usize, Flow) {
        let _ = now;
        let mut used = 0;
        while !self.closing {
            match self.reader.read(&input[used..]) {
                Ok(None) => break,
                Ok(Some((n, message))) => {
                    used += n;
                    match message {
                        None => {}
                        Some(Incoming::Ping(payload)) => {
                            // Pong in the order of reading; a pending batch is framed first.
                            cx.stats.delivered.add(self.frame_pending(out) as u64);
                            out.extend_from_slice(&ws::control_frame(Opcode::Pong, &payload));
                        }
                        Some(Incoming::Pong(_)) => self.awaiting_pong = false,
                        Some(Incoming::Close(code)) => {
                            // Echo the code (RFC 6455 §5.5.1); no code → no payload.
                            cx.stats.delivered.add(self.frame_pending(out) as u64);
                            match code {
                                Some((code, _)) => {
                                    out.extend_from_slice(&ws::close_frame(code, ""))
                                }
                                None => {
                                    out.extend_from_slice(&ws::control_frame(Opcode::Close, &[]))
                                }
                            }
                            self.closing = true;
                        }
                        // Binary-mode clients send protobuf requests (spec/binary.md §4).
                        Some(Incoming::Binary(data)) if self.sub.format == Format::Binary => {
                            self.client_request(&data, out, cx);
                        }
                        // Text-mode clients send nothing else; data frames are read and dropped.
                        Some(Incoming::Text(_) | Incoming::Binary(_)) => {}
                    }
                }
                Err(e) => {
                    used = input.len();
                    self.close(out, e.close_code(), e.reason());
                }
            }
        }
        if self.closing {
            used = input.len();
        }
        (used, Flow::Continue)
    }

    /// Ping time: a ping, or the end when the previous ping got no pong (spec/websocket.md §4).
    pub(super) fn on_timeout(&mut self, out: &mut Vec<u8>, now: Instant, cx: &mut Cx<'_>) -> Flow {
        if self.awaiting_pong {
            return Flow::Abort;
        }
        cx.stats.delivered.add(self.frame_pending(out) as u64);
        out.extend_from_slice(&ws::control_frame(Opcode::Ping, PING_PAYLOAD));
        self.awaiting_pong = true;
        self.next_ping = now + cx.shared.config.ws_ping_interval;
        Flow::Continue
    }

    /// Joins every message waiting into one text frame (spec/websocket.md §3); returns how many.
    pub(super) fn frame_pending(&mut self, out: &mut Vec<u8>) -> usize {
        if self.sub.pending.is_empty() || self.closing {
            return 0;
        }
        let messages = self.sub.take_pending();
        let format = self.sub.format;
        let len: usize = messages.iter().map(|m| m.encoded(format).len()).sum();
        let opcode = match format {
            Format::Text => Opcode::Text,
            Format::Binary => Opcode::Binary,
        };
        let mut header = [0u8; 10];
        let n = ws::frame_header(opcode, len, &mut header);
        out.reserve(n + len);
        out.extend_from_slice(&header[..n]);
        for m in &messages {
            out.extend_from_slice(m.encoded(format));
        }
        messages.len()
    }

    /// A browser's `RequestBatch` frame: publish to public channels or ask their state. A
    /// refused request closes the connection with its code, as the reference does.
    fn client_request(&mut self, data: &[u8], out: &mut Vec<u8>, cx: &mut Cx<'_>) {
        let Some(public) = self.own_public else {
            let e = WireError::PublicChannelRequired;
            return self.close(out, e.code(), e.reason());
        };
        let limits = publish::request_limits(cx.shared);
        let request = match request::parse(data, Trust::Client(public), &cx.shared.signer, limits) {
            Ok(request) => request,
            Err(e) => return self.close(out, e.code(), e.reason()),
        };
        cx.shared.engine_stats.count_request(request.command());
        let cmd = match request {
            ClientRequest::Publish(messages) if messages.is_empty() => return,
            ClientRequest::Publish(messages) => EngineCmd::Publish {
                from: cx.conn,
                messages,
            },
            ClientRequest::ChannelStats(channels) => EngineCmd::ChannelInfo {
                from: cx.conn,
                channels,
            },
            // Refused for clients by the parser.
            ClientRequest::ServerStats => return,
        };
        if cx.engine.try_send(cmd).is_err() {
            self.close(out, 1013, PublishError::Busy.reason());
        }
    }

    /// The answer to a `channelStats` request: one binary frame.
    pub(super) fn channel_stats(&mut self, out: &mut Vec<u8>, infos: &[ChannelState]) {
        if self.closing {
            return;
        }
        let body = publish::channel_stats_batch(infos);
        let mut header = [0u8; 10];
        let n = ws::frame_header(Opcode::Binary, body.len(), &mut header);
        out.extend_from_slice(&header[..n]);
        out.extend_from_slice(&body);
    }

    /// Queues our close frame.
    pub(super) fn close(&mut self, out: &mut Vec<u8>, code: u16, reason: &str) {
        if !self.closing {
            out.extend_from_slice(&ws::close_frame(code, reason));
            self.closing = true;
        }
    }
}
