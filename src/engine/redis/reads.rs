//! The Redis reads of the cluster engine: replay pages, the catch-up after a pub/sub gap, and
//! the newest id issued (spec/cluster.md §4, §8). Round trips are pipelined.

use std::collections::BTreeMap;
use std::sync::Arc;

use redis::Connection;

use super::{ReplayRequest, scripts};
use crate::message::{Channel, MessageId, SharedMessage};

/// A page of replay for each request: (messages, more, newest id).
pub(super) type Page = (Vec<SharedMessage>, bool, Option<MessageId>);

pub(super) fn replay_pages(
    conn: &mut Connection,
    replays: &[ReplayRequest],
    limit: usize,
) -> redis::RedisResult<(Vec<Page>, Option<MessageId>)> {
    // Round trip 1: ids after `since` and the newest id, per channel.
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
    pipe.get(scripts::START_KEY).get(scripts::COUNTER_KEY);
    let replies: Vec<redis::Value> = pipe.query(conn)?;
    let issued = issued_id(&replies[replies.len().saturating_sub(2)..]);
    let mut replies = replies.into_iter();
    let mut wanted: Vec<(Vec<MessageId>, bool, Option<MessageId>)> =
        Vec::with_capacity(replays.len());
    for r in replays {
        let mut ids: Vec<MessageId> = Vec::new();
        let mut newest = None;
        for _ in r.channels.iter() {
            ids.extend(ids_of(replies.next()));
            newest = newest.max(ids_of(replies.next()).into_iter().max());
        }
        ids.sort_unstable();
        ids.dedup();
        let more = ids.len() > limit;
        ids.truncate(limit);
        wanted.push((ids, more, newest));
    }
    // Round trip 2: the message values.
    let keys: Vec<Vec<u8>> = wanted
        .iter()
        .flat_map(|(ids, ..)| ids.iter().map(|id| scripts::message_key(&id.0)))
        .collect();
    let values: Vec<Option<Vec<u8>>> = if keys.is_empty() {
        Vec::new()
    } else {
        redis::cmd("MGET").arg(&keys).query(conn)?
    };
    let mut values = values.into_iter();
    let mut pages = Vec::with_capacity(replays.len());
    for (r, (ids, more, newest)) in replays.iter().zip(wanted) {
        let mut messages = Vec::with_capacity(ids.len());
        for _ in &ids {
            if let Some(msg) = values
                .next()
                .flatten()
                .and_then(|v| scripts::stored_message(&v, &r.channels))
            {
                messages.push(Arc::new(msg));
            }
        }
        pages.push((messages, more, newest));
    }
    Ok((pages, issued))
}

/// The newest id issued, from the `GET` answers of the start date and the counter.
pub(super) fn issued_id(answers: &[redis::Value]) -> Option<MessageId> {
    let number = |v: &redis::Value| -> Option<u64> {
        match v {
            redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            redis::Value::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    };
    match answers {
        [start, counter] => Some(MessageId::new(number(start)?, number(counter)?)),
        _ => None,
    }
}

/// Messages stored on `channels` after `since`, each with the channels it is stored on, in id
/// order (at most `limit` per channel).
pub(super) fn missed_messages(
    conn: &mut Connection,
    channels: &[Channel],
    since: MessageId,
    limit: usize,
) -> redis::RedisResult<Vec<SharedMessage>> {
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
    let replies: Vec<redis::Value> = pipe.query(conn)?;
    let mut receivers: BTreeMap<MessageId, Vec<Channel>> = Default::default();
    for (channel, reply) in channels.iter().zip(replies) {
        for id in ids_of(Some(reply)) {
            receivers.entry(id).or_default().push(*channel);
        }
    }
    if receivers.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<Vec<u8>> = receivers
        .keys()
        .map(|id| scripts::message_key(&id.0))
        .collect();
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query(conn)?;
    Ok(receivers
        .values()
        .zip(values)
        .filter_map(|(channels, value)| scripts::stored_message(&value?, channels))
        .map(Arc::new)
        .collect())
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
