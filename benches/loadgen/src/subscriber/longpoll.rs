//! The long-poll side of a subscriber thread: response heads, bodies, polling again.

use std::time::Instant;

use super::{Flow, State, Worker};
use crate::config::{Framing, Target};
use crate::deliver::{DeliveryCtx, Receiver, take_units, take_whole};
use crate::http::{
    BodyDecoder, BodyProgress, DEFAULT_MAX_HEAD_BYTES, Persistence, parse_response_head,
};
use crate::net::unix_micros;

impl Worker {
    pub(super) fn lp_process(&mut self, i: usize, d: &DeliveryCtx) -> Flow {
        let nchan = self.plan.target == Target::Nchan;
        loop {
            let sub = &mut self.subs[i];
            match &mut sub.state {
                State::PollHead => match parse_response_head(&sub.inbuf, DEFAULT_MAX_HEAD_BYTES) {
                    Err(e) => return Flow::Fail(format!("poll: {}", e.reason())),
                    Ok(None) => return Flow::Continue,
                    Ok(Some((n, head))) => {
                        sub.inbuf.drain(..n);
                        self.st.polls += 1;
                        match head.status {
                            200 => {
                                self.st.data_polls += 1;
                                if let Some(b) = self.st.series.at(d.now) {
                                    b.polls += 1;
                                }
                                if nchan {
                                    sub.resume.last_modified = head.last_modified;
                                    sub.resume.etag = head.etag;
                                }
                            }
                            304 => {
                                if let Some(m) = head.last_message_id {
                                    sub.resume.mid = Some(m);
                                }
                            }
                            // nchan ends a long-poll that timed out with 408; poll again.
                            408 if nchan => {}
                            status => return Flow::Fail(format!("poll status {status}")),
                        }
                        sub.keep = head.persistence;
                        sub.state = State::PollBody(BodyDecoder::new(head.framing));
                    }
                },
                State::PollBody(dec) => {
                    let (n, progress) = match dec.feed(&sub.inbuf, &mut sub.carry) {
                        Ok(x) => x,
                        Err(e) => return Flow::Fail(format!("poll body: {}", e.reason())),
                    };
                    sub.inbuf.drain(..n);
                    self.body_units(i, progress == BodyProgress::Done, d);
                    if progress == BodyProgress::More {
                        return Flow::Continue;
                    }
                    if let flow @ Flow::Reconnect = self.finish_poll(i) {
                        return flow;
                    }
                }
                _ => return Flow::Continue,
            }
        }
    }

    /// Records what a long-poll body holds so far: whole units of a unit stream as they arrive,
    /// a per-message framing once the body is `complete`.
    fn body_units(&mut self, i: usize, complete: bool, d: &DeliveryCtx) {
        let sub = &mut self.subs[i];
        let mut rx = Receiver {
            tally: &mut sub.tally,
            resume: &mut sub.resume,
        };
        let result = match self.framing {
            Framing::Nms => take_units(&mut sub.carry, &mut rx, &mut self.st, d),
            _ if !complete || sub.carry.is_empty() => return,
            framing => {
                let r = take_whole(framing, &sub.carry, &mut rx, &mut self.st, d);
                sub.carry.clear();
                r
            }
        };
        if result.is_err() {
            self.st.protocol_errors += 1;
            sub.carry.clear();
        }
    }

    /// A long-poll response is complete: poll again on this connection or on a new one.
    pub(super) fn finish_poll(&mut self, i: usize) -> Flow {
        let req = self.poll_req(i);
        let sub = &mut self.subs[i];
        if !sub.carry.is_empty() {
            self.st.protocol_errors += 1;
            sub.carry.clear();
        }
        sub.retries = 0;
        match sub.keep {
            Persistence::KeepAlive => {
                sub.out.extend(req);
                sub.state = State::PollHead;
                Flow::Continue
            }
            Persistence::Close => Flow::Reconnect,
        }
    }

    pub(super) fn on_eof(&mut self, i: usize, now: Instant) {
        let sub = &mut self.subs[i];
        if let State::PollBody(dec) = &mut sub.state
            && dec.finish_on_eof().is_ok()
        {
            let d = DeliveryCtx {
                channels: self.plan.channels,
                max_issued: self.shared.max_issued(),
                now,
                now_us: unix_micros(),
            };
            self.body_units(i, true, &d);
            self.subs[i].keep = Persistence::Close;
            let _ = self.finish_poll(i);
            self.connect(i, now);
            return;
        }
        self.lose(i, "closed by server".to_owned(), now);
    }
}
