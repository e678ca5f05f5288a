//! A subscription's replay and queue: the part of a long-poll or WebSocket session that takes
//! messages from the engine (replayed pages) and from the hub (live), drops duplicates and keeps
//! what waits to be written.

use std::sync::Arc;

use super::{Cx, Flow};
use crate::engine::EngineCmd;
use crate::message::{Channel, ChannelId, Format, MessageId, SharedMessage};

/// Where a subscription stands in its replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    // call: replayed
    // next: Live, PageWanted (WebSocket), Final (long-poll)
    /// A replay page is on its way from the engine: live messages are held back.
    Replaying,
    // call: next_page (when the output has drained)
    // next: Replaying
    /// A page was written and more are stored (WebSocket); live messages are still held back.
    PageWanted,
    // call: offer
    /// Replay done: live messages go straight out.
    Live,
    /// A long-poll answers with this replay page only; nothing more is taken.
    Final,
}

/// What a subscribe request asks for (spec/longpoll.md §1).
#[derive(Debug)]
pub(super) struct SubRequest {
    pub(super) channels: Vec<Channel>,
    pub(super) capped: Vec<Channel>,
    pub(super) own_public: Option<ChannelId>,
    pub(super) since: Option<MessageId>,
    pub(super) format: Format,
}

/// A live subscription: its channels, replay progress and messages waiting to be written.
#[derive(Debug)]
pub(super) struct Sub {
    pub(super) channels: Arc<[Channel]>,
    pub(super) capped: Arc<[Channel]>,
    pub(super) format: Format,
    pub(super) phase: Phase,
    /// Live messages that arrived while the replay was still running.
    pub(super) held: Vec<SharedMessage>,
    /// Messages ready to be written, in order.
    pub(super) pending: Vec<SharedMessage>,
    /// Bytes of `held` and `pending` together.
    pub(super) pending_bytes: usize,
    /// Newest id handed to the client: later duplicates (a message on two of the connection's
    /// channels, or one both replayed and delivered live) are skipped.
    pub(super) last_sent: Option<MessageId>,
    /// Newest stored id at subscription time (for the long-poll 304).
    pub(super) last_stored: Option<MessageId>,
    /// The request's `mid`, until the first replay answer says whether to trust it.
    pub(super) since: Option<MessageId>,
}

impl Sub {
    pub(super) fn start(request: SubRequest, cx: &mut Cx<'_>) -> Option<Self> {
        let SubRequest {
            channels,
            capped,
            since,
            format,
            ..
        } = request;
        let channels: Arc<[Channel]> = channels.into();
        let capped: Arc<[Channel]> = capped.into();
        let cmd = EngineCmd::Subscribe {
            conn: cx.conn,
            channels: channels.clone(),
            capped: capped.clone(),
            since,
        };
        cx.engine.send_reliable(cmd).ok()?;
        cx.hub.subscribe(cx.conn.slot, &channels);
        Some(Self {
            channels,
            capped,
            format,
            phase: Phase::Replaying,
            held: Vec::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            last_sent: None,
            last_stored: None,
            since,
        })
    }

    pub(super) fn stop(&self, cx: &mut Cx<'_>) {
        cx.hub.unsubscribe(cx.conn.slot, &self.channels);
        let cmd = EngineCmd::Unsubscribe {
            conn: cx.conn,
            channels: self.channels.clone(),
            capped: self.capped.clone(),
        };
        // A full overflow only loses a count decrement (the channel looks subscribed longer).
        let _ = cx.engine.send_reliable(cmd);
    }

    /// A live message. `Flow::Abort` when the output queue limit is passed.
    pub(super) fn offer(&mut self, msg: &SharedMessage, limit: usize) -> Flow {
        match self.phase {
            Phase::Replaying | Phase::PageWanted => {
                self.held.push(msg.clone());
                self.pending_bytes += msg.encoded(self.format).len();
            }
            Phase::Live if self.last_sent.is_none_or(|last| msg.id > last) => {
                self.push(msg.clone());
            }
            Phase::Live | Phase::Final => {}
        }
        if self.pending_bytes > limit {
            Flow::Abort
        } else {
            Flow::Continue
        }
    }

    pub(super) fn push(&mut self, msg: SharedMessage) {
        self.last_sent = Some(msg.id);
        self.pending_bytes += msg.encoded(self.format).len();
        self.pending.push(msg);
    }

    /// The first replay answer tells the newest id issued: a `mid` at or below it names a message
    /// the client has, so messages up to it are duplicates (a long-poll that moved to a node still
    /// behind on the stream). A `mid` above it (another server, a clock set back) is not trusted,
    /// so such a client is never deaf to live messages.
    pub(super) fn trust_since(&mut self, issued: Option<MessageId>) {
        if let Some(since) = self.since.take() {
            if issued.is_some_and(|issued| since <= issued) {
                self.last_sent = self.last_sent.max(Some(since));
            }
        }
    }

    /// A replay page; `paging` says how it ends the replay. Held live messages up to the page's
    /// last id are merged into it in id order (unstored ones are in no page), the rest stay held
    /// for the next page, or follow the last page.
    pub(super) fn replayed(
        &mut self,
        messages: Vec<SharedMessage>,
        paging: Paging,
        last: Option<MessageId>,
    ) {
        self.last_stored = self.last_stored.max(last);
        let page_last = messages.last().map(|m| m.id);
        let held = std::mem::take(&mut self.held);
        let (mut merged, keep): (Vec<_>, Vec<_>) = match paging {
            Paging::Done => (held, Vec::new()),
            Paging::Continue | Paging::Stop => held
                .into_iter()
                .partition(|h| page_last.is_some_and(|last| h.id <= last)),
        };
        merged.extend(messages);
        merged.sort_by_key(|m| m.id);
        merged.dedup_by_key(|m| m.id);
        for msg in merged {
            if self.last_sent.is_none_or(|l| msg.id > l) {
                self.push(msg);
            }
        }
        self.phase = match paging {
            Paging::Continue => {
                self.held = keep;
                Phase::PageWanted
            }
            Paging::Done => Phase::Live,
            // More stored messages follow this page: the newer live ones would move the
            // client's `mid` past them, so they are left to its next request.
            Paging::Stop => Phase::Final,
        };
        self.recount();
    }

    /// Asks the engine for the next replay page once the output has room for it.
    pub(super) fn next_page(&mut self, unsent: usize, limit: usize, cx: &mut Cx<'_>) -> Flow {
        if self.phase != Phase::PageWanted || unsent + self.pending_bytes > limit / 2 {
            return Flow::Continue;
        }
        let cmd = EngineCmd::ReplayMore {
            conn: cx.conn,
            channels: self.channels.clone(),
            since: self.last_sent.unwrap_or_default(),
        };
        if cx.engine.send_reliable(cmd).is_err() {
            return Flow::Abort;
        }
        self.phase = Phase::Replaying;
        Flow::Continue
    }

    /// Whether a long-poll may answer now.
    pub(super) fn ready(&self) -> bool {
        !self.pending.is_empty() && matches!(self.phase, Phase::Live | Phase::Final)
    }

    pub(super) fn recount(&mut self) {
        let format = self.format;
        let bytes =
            |v: &Vec<SharedMessage>| v.iter().map(|m| m.encoded(format).len()).sum::<usize>();
        self.pending_bytes = bytes(&self.pending) + bytes(&self.held);
    }

    pub(super) fn take_pending(&mut self) -> Vec<SharedMessage> {
        let taken = std::mem::take(&mut self.pending);
        self.recount();
        taken
    }
}

/// How a replay page ends the replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Paging {
    /// More pages follow (WebSocket): keep live messages held.
    Continue,
    /// Last page: release the held live messages after it.
    Done,
    /// Answer with this page only (long-poll with more pages left).
    Stop,
}
