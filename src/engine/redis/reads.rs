//! The Redis reads of the cluster engine: replay pages, the catch-up after a (re)subscription,
//! the newest id issued and the id state at the first contact (spec/cluster.md §4, §8). Round
//! trips are pipelined.

use std::collections::BTreeMap;
use std::sync::Arc;

use redis::Connection;

use super::link::Link;
use super::shard::shard_of_id;
use super::{ReplayRequest, scripts};
use crate::message::{Channel, MessageId, SharedMessage};

/// A page of replay for each request: (messages, more, newest id).
pub(super) type Page = (Vec<SharedMessage>, bool, Option<MessageId>);

/// Ids after `since` (at most `limit + 1`) and the newest id, per request, from one server.
type Ranges = Vec<(Vec<MessageId>, Option<MessageId>)>;

/// Round trip 1 of a replay on one server: for each channel of each request the ids after its
/// `since` and the newest id; also the newest id issued (the shared counter, or with `sharded`
/// the server's clock).
fn ranges(
    conn: &mut Connection,
    replays: &[ReplayRequest],
    limit: usize,
    sharded: bool,
) -> redis::RedisResult<(Ranges, Option<MessageId>)> {
    let mut pipe = redis::pipe();
    for r in replays {
        for channel in r.channels.iter() {
            let key = scripts::messages_key(channel);
            match r.since {
                Some(since) => {
                    let from = [b"(".as_slice(), &since.0].concat();
                    pipe.cmd("ZRANGEBYLEX")
                        .arg(&key)
                        .arg(from)
                        .arg("+")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit + 1);
                }
                None => {
                    pipe.cmd("ECHO").arg(Vec::<u8>::new());
                }
            }
            pipe.cmd("ZREVRANGE").arg(&key).arg(0).arg(0);
        }
    }
    ask_issued(&mut pipe, sharded);
    let replies: Vec<redis::Value> = pipe.query(conn)?;
    let issued = issued_of(&replies, sharded);
    let mut replies = replies.into_iter();
    let mut out = Vec::with_capacity(replays.len());
    for r in replays {
        let mut ids: Vec<MessageId> = Vec::new();
        let mut newest = None;
        for _ in r.channels.iter() {
            ids.extend(ids_of(replies.next()));
            newest = newest.max(ids_of(replies.next()).into_iter().max());
        }
        out.push((ids, newest));
    }
    Ok((out, issued))
}

/// Round trip 2 of a replay: the stored values of `ids` (`None` when expired).
fn values(conn: &mut Connection, ids: &[MessageId]) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<Vec<u8>> = ids.iter().map(|id| scripts::message_key(&id.0)).collect();
    redis::cmd("MGET").arg(&keys).query(conn)
}

/// Sorts and deduplicates ids, drops those above `upto`, cuts at `limit`; returns whether more
/// remained.
fn cut(ids: &mut Vec<MessageId>, upto: Option<MessageId>, limit: usize) -> bool {
    ids.sort_unstable();
    ids.dedup();
    if let Some(upto) = upto {
        ids.retain(|id| *id <= upto);
    }
    let more = ids.len() > limit;
    ids.truncate(limit);
    more
}

/// Decodes a request's page from the values of its ids.
fn page(r: &ReplayRequest, values: impl Iterator<Item = Option<Vec<u8>>>) -> Vec<SharedMessage> {
    values
        .filter_map(|v| scripts::stored_message(&v?, &r.channels))
        .map(Arc::new)
        .collect()
}

/// Replay pages from one Redis (spec/cluster.md §4), two round trips for all requests, and the
/// newest id issued.
pub(super) fn replay_pages(
    conn: &mut Connection,
    replays: &[ReplayRequest],
    limit: usize,
) -> redis::RedisResult<(Vec<Page>, Option<MessageId>)> {
    let (ranges, issued) = ranges(conn, replays, limit, false)?;
    let mut wanted = Vec::with_capacity(replays.len());
    let mut all = Vec::new();
    for (mut ids, newest) in ranges {
        let more = cut(&mut ids, None, limit);
        all.extend_from_slice(&ids);
        wanted.push((ids.len(), more, newest));
    }
    let mut values = values(conn, &all)?.into_iter();
    let pages = replays
        .iter()
        .zip(wanted)
        .map(|(r, (count, more, newest))| (page(r, values.by_ref().take(count)), more, newest))
        .collect();
    Ok((pages, issued))
}

/// Replay pages from sharded servers (spec/cluster.md §9): every server's ids, merged per
/// request and cut at `upto` (what this node's merge has released: later messages reach the
/// subscriber live, and every released message is stored), then each id's value from the server
/// that issued it; and the newest id issued by any server. A server that cannot be reached
/// contributes nothing.
pub(super) fn sharded_pages(
    links: &mut [Link],
    replays: &[ReplayRequest],
    limit: usize,
    upto: Option<MessageId>,
) -> (Vec<Page>, Option<MessageId>) {
    let mut merged: Ranges = vec![(Vec::new(), None); replays.len()];
    let mut issued = None;
    for link in links.iter_mut() {
        let Some(conn) = link.get() else {
            continue;
        };
        match ranges(conn, replays, limit, true) {
            Ok((ranges, clock)) => {
                issued = issued.max(clock);
                for ((ids, newest), (more_ids, more_newest)) in merged.iter_mut().zip(ranges) {
                    ids.extend(more_ids);
                    *newest = (*newest).max(more_newest);
                }
            }
            Err(e) => link.failed(&e),
        }
    }
    let mut wanted = Vec::with_capacity(replays.len());
    let mut by_shard: Vec<Vec<MessageId>> = vec![Vec::new(); links.len()];
    for (mut ids, newest) in merged {
        let more = cut(&mut ids, upto, limit);
        // The newest stored id the subscriber can have been given (the long-poll 304).
        let newest = match upto {
            Some(upto) => newest.map(|n| n.min(upto)),
            None => newest,
        };
        for id in &ids {
            if let Some(s) = shard_of_id(id, links.len()) {
                by_shard[s].push(*id);
            }
        }
        wanted.push((ids, more, newest));
    }
    let mut found: BTreeMap<MessageId, Vec<u8>> = BTreeMap::new();
    for (link, ids) in links.iter_mut().zip(by_shard) {
        if ids.is_empty() {
            continue;
        }
        let Some(conn) = link.get() else {
            continue;
        };
        match values(conn, &ids) {
            Ok(vals) => found.extend(
                ids.into_iter()
                    .zip(vals)
                    .filter_map(|(id, v)| Some((id, v?))),
            ),
            Err(e) => link.failed(&e),
        }
    }
    let pages = replays
        .iter()
        .zip(wanted)
        .map(|(r, (ids, more, newest))| {
            let vals = ids.iter().map(|id| found.get(id).cloned());
            (page(r, vals), more, newest)
        })
        .collect();
    (pages, issued.max(upto))
}

/// An integer answer (a `GET` of a number, or an integer reply).
fn number(v: &redis::Value) -> Option<u64> {
    match v {
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        redis::Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// Appends the reads of the newest id issued to `pipe`: the start date and the shared counter,
/// or with `sharded` the server's clock.
fn ask_issued(pipe: &mut redis::Pipeline, sharded: bool) {
    if sharded {
        pipe.get(scripts::CLOCK_KEY);
    } else {
        pipe.get(scripts::START_KEY).get(scripts::COUNTER_KEY);
    }
}

/// The newest id issued, from the answers of a pipeline that ends with [`ask_issued`]'s reads;
/// `None` before the first id.
fn issued_of(answers: &[redis::Value], sharded: bool) -> Option<MessageId> {
    if sharded {
        return match answers.last() {
            Some(redis::Value::BulkString(digits)) => MessageId::parse(digits),
            _ => None,
        };
    }
    match &answers[answers.len().saturating_sub(2)..] {
        [start, counter] => Some(MessageId::new(number(start)?, number(counter)?)),
        _ => None,
    }
}

/// The caught-up messages after a (re)subscription of a server's stream (spec/cluster.md §8):
/// those stored on `channels` after `since`, each with the channels it is stored on, in id
/// order (at most `limit` per channel), and the newest id issued, read in the same round trip
/// (with `sharded`, the server's clock). A second round trip fetches the messages found.
pub(super) fn caught_up(
    conn: &mut Connection,
    channels: &[Channel],
    since: MessageId,
    limit: usize,
    sharded: bool,
) -> redis::RedisResult<(Vec<SharedMessage>, Option<MessageId>)> {
    let from = [b"(".as_slice(), &since.0].concat();
    let mut pipe = redis::pipe();
    for channel in channels {
        pipe.cmd("ZRANGEBYLEX")
            .arg(scripts::messages_key(channel))
            .arg(&from)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
    }
    ask_issued(&mut pipe, sharded);
    let replies: Vec<redis::Value> = pipe.query(conn)?;
    let issued = issued_of(&replies, sharded);
    let mut receivers: BTreeMap<MessageId, Vec<Channel>> = Default::default();
    for (channel, reply) in channels.iter().zip(replies) {
        for id in ids_of(Some(reply)) {
            receivers.entry(id).or_default().push(*channel);
        }
    }
    if receivers.is_empty() {
        return Ok((Vec::new(), issued));
    }
    let ids: Vec<MessageId> = receivers.keys().copied().collect();
    let values = values(conn, &ids)?;
    let messages = receivers
        .values()
        .zip(values)
        .filter_map(|(channels, value)| scripts::stored_message(&value?, channels))
        .map(Arc::new)
        .collect();
    Ok((messages, issued))
}

fn ids_of(value: Option<redis::Value>) -> Vec<MessageId> {
    let Some(redis::Value::Array(items)) = value else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|v| match v {
            redis::Value::BulkString(bytes) => MessageId::from_bytes(&bytes),
            _ => None,
        })
        .collect()
}

/// A server's id state at this node's first contact (spec/cluster.md §8): an id below every id
/// the server issues later. The newest id issued (the start date and the shared counter, a
/// missing one read as 0; or with `sharded` the server's clock), or for a sharded server that
/// has not issued any the second before its `TIME` (its ids are never before its `TIME`).
pub(super) fn origin(conn: &mut Connection, sharded: bool) -> redis::RedisResult<MessageId> {
    let mut pipe = redis::pipe();
    ask_issued(&mut pipe, sharded);
    if sharded {
        pipe.cmd("TIME");
    }
    let answers: Vec<redis::Value> = pipe.query(conn)?;
    if !sharded {
        let read = |i: usize| answers.get(i).and_then(number).unwrap_or(0);
        return Ok(MessageId::new(read(0), read(1)));
    }
    if let Some(clock) = issued_of(&answers[..answers.len().saturating_sub(1)], true) {
        return Ok(clock);
    }
    let seconds = match answers.last() {
        Some(redis::Value::Array(time)) => time.first().and_then(number),
        _ => None,
    };
    match seconds {
        Some(s) => Ok(MessageId::new(s.saturating_sub(1), 0)),
        None => Err(redis::RedisError::from((
            redis::ErrorKind::Parse,
            "unexpected TIME answer",
        ))),
    }
}
