//! From delivered bytes to recorded deliveries, for each framing: the `#!NGINXNMS!#` unit stream,
//! protobuf batches and nchan's plain bodies.
//!
//! Every delivery goes into its subscriber's [`SubTally`], the thread's latency histogram, the
//! time series and the per-message "last arrival" table.

use std::time::Instant;

use crate::config::Framing;
use crate::http::Resume;
use crate::nms::{DEFAULT_MAX_UNIT_BYTES, Delivery, decode_body, decode_unit, split_next};
use crate::pb::{Outgoing, outgoing_messages};
use crate::subscriber::WorkerReport;
use crate::tally::{Arrival, SubTally};

/// Most messages whose last arrival is tracked (sequence numbers `0..` this).
///
/// The table holds 4 bytes per message per thread: 4 Mi messages are 16 MiB, more than a
/// minute of the fastest fan-out measured here, while a runaway count cannot take all memory.
pub const DEFAULT_MAX_TRACKED_MESSAGES: usize = 4 << 20;

/// What every delivery of one read needs to know.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryCtx {
    /// Channels of the run.
    pub channels: u64,
    /// Highest sequence number issued so far.
    pub max_issued: Option<u64>,
    /// When the bytes were read.
    pub now: Instant,
    /// The same moment on the wall clock, µs.
    pub now_us: u64,
}

/// A payload that could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPayload;

/// One subscriber's receiving state, borrowed for a read.
pub struct Receiver<'a> {
    /// Its tally.
    pub tally: &'a mut SubTally,
    /// Where it resumes from (`mid` is updated by deliveries).
    pub resume: &'a mut Resume,
}

/// Records one decoded delivery.
pub fn record(del: Delivery, rx: &mut Receiver<'_>, st: &mut WorkerReport, d: &DeliveryCtx) {
    st.deliveries += 1;
    widen(&mut st.delivery_span, d.now);
    if let Some(b) = st.series.at(d.now) {
        b.deliveries += 1;
    }
    if del.mid.is_some() {
        rx.resume.mid = del.mid;
    }
    match rx.tally.record(del.seq, del.ch, d.channels, d.max_issued) {
        Arrival::New | Arrival::OutOfOrder => {
            let lat = d.now_us.saturating_sub(del.ts_us);
            st.latency.saturating_record(lat);
            if let Some(b) = st.series.at(d.now) {
                b.latency.saturating_record(lat);
            }
            note_arrival(&mut st.last_arrival, del.seq, lat);
        }
        Arrival::Duplicate | Arrival::Misrouted | Arrival::Bogus => {}
    }
}

/// Keeps the largest latency of message `seq` (stored as latency + 1, 0 = none yet).
pub fn note_arrival(table: &mut Vec<u32>, seq: u64, latency_us: u64) {
    let Ok(i) = usize::try_from(seq) else {
        return;
    };
    if i >= DEFAULT_MAX_TRACKED_MESSAGES {
        return;
    }
    if i >= table.len() {
        table.resize(i + 1, 0);
    }
    let v = u32::try_from(latency_us)
        .unwrap_or(u32::MAX - 1)
        .min(u32::MAX - 1)
        + 1;
    table[i] = table[i].max(v);
}

/// Widens a first/last span to include `now`.
pub fn widen(span: &mut Option<(Instant, Instant)>, now: Instant) {
    *span = Some(match *span {
        None => (now, now),
        Some((a, b)) => (a.min(now), b.max(now)),
    });
}

/// Splits whole `#!NGINXNMS!#` units off the front of `carry` and records them; a partial unit
/// stays for the next read.
pub fn take_units(
    carry: &mut Vec<u8>,
    rx: &mut Receiver<'_>,
    st: &mut WorkerReport,
    d: &DeliveryCtx,
) -> Result<(), BadPayload> {
    let mut at = 0;
    let result = loop {
        match split_next(&carry[at..], DEFAULT_MAX_UNIT_BYTES) {
            Err(_) => break Err(BadPayload),
            Ok(None) => break Ok(()),
            Ok(Some((n, json))) => {
                let unit = &carry[at + json.start..at + json.end];
                at += n;
                match decode_unit(unit) {
                    Ok(del) => record(del, rx, st, d),
                    Err(_) => st.undecodable += 1,
                }
            }
        }
    };
    carry.drain(..at);
    result
}

/// Records a whole WebSocket message or long-poll body in a per-message framing (protobuf or
/// plain). For [`Framing::Nms`] use [`take_units`].
pub fn take_whole(
    framing: Framing,
    payload: &[u8],
    rx: &mut Receiver<'_>,
    st: &mut WorkerReport,
    d: &DeliveryCtx,
) -> Result<(), BadPayload> {
    match framing {
        Framing::Plain => {
            match decode_body(payload) {
                Ok(del) => record(del, rx, st, d),
                Err(_) => st.undecodable += 1,
            }
            Ok(())
        }
        Framing::Protobuf => {
            let mut msgs: Vec<Outgoing<'_>> = Vec::new();
            let parsed = outgoing_messages(payload, &mut msgs);
            for m in &msgs {
                match decode_body(m.body) {
                    Ok(mut del) => {
                        del.mid = Some(m.mid());
                        record(del, rx, st, d);
                    }
                    Err(_) => st.undecodable += 1,
                }
            }
            parsed.map_err(|_| BadPayload)
        }
        Framing::Nms => {
            let mut carry = payload.to_vec();
            take_units(&mut carry, rx, st, d)?;
            if carry.is_empty() {
                Ok(())
            } else {
                Err(BadPayload)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_table_keeps_the_largest() {
        let mut t = Vec::new();
        note_arrival(&mut t, 3, 10);
        note_arrival(&mut t, 3, 7);
        note_arrival(&mut t, 1, 0);
        note_arrival(&mut t, u64::MAX, 5);
        note_arrival(&mut t, 2, u64::MAX);
        assert_eq!(t, vec![0, 1, u32::MAX, 11]);
    }
}
