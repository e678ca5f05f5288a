//! Publishing through Redis: one script call per server for all publications of a batch
//! (spec/cluster.md §3), and, sharded, the clock ticks that let every node's merge release them
//! (§9).

use super::scripts::{self, PublishArgs};
use super::shard::shard_of;
use super::{ConnRef, CoreMsg, Publication, RedisEngine, unix_ms};
use crate::engine::PublishError;
use crate::message::MessageId;

impl RedisEngine {
    /// Stores and publishes a batch. A publication goes to the server of its first receiver
    /// (the only server unless sharded); each server gets one script call. Messages are
    /// delivered when they come back through pub/sub; the publishers are answered now: the id
    /// of their last message, or `503` when any of their messages could not be stored.
    pub(super) fn publish_batch(&mut self, publishes: Vec<(ConnRef, Vec<Publication>)>) {
        let shards = self.links.len();
        let sharded = self.sharded();
        let now_ms = unix_ms();
        let created = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        let ttl = self.settings.message_ttl;
        // Per server: (publisher, publication) indexes, in batch order.
        let mut routes: Vec<Vec<(usize, usize)>> = vec![Vec::new(); shards];
        for (p, (_, messages)) in publishes.iter().enumerate() {
            for (m, publication) in messages.iter().enumerate() {
                let shard = publication
                    .receivers
                    .first()
                    .map_or(0, |c| shard_of(c, shards));
                routes[shard].push((p, m));
            }
        }
        let mut ids: Vec<Vec<Option<MessageId>>> = publishes
            .iter()
            .map(|(_, messages)| vec![None; messages.len()])
            .collect();
        // Sharded ids come after everything this node has seen, so that the servers' clocks
        // stay close and the merge holds little.
        let hint = if sharded {
            self.merge
                .newest()
                .max(self.issued)
                .map(|id| id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut newest_per_shard: Vec<Option<MessageId>> = vec![None; shards];
        let mut calls = Vec::new();
        for (shard, route) in routes.iter().enumerate() {
            if route.is_empty() {
                continue;
            }
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.publish.get_hash())
                .arg(3)
                .arg(scripts::COUNTER_KEY)
                .arg(scripts::START_KEY)
                .arg(scripts::CLOCK_KEY)
                .arg(now_ms / 1000)
                .arg(ttl)
                .arg(self.settings.channel_history)
                .arg(&self.channel)
                .arg(route.len())
                .arg(if sharded { shard as i64 } else { -1 })
                .arg(&hint);
            for &(p, m) in route {
                let publication = &publishes[p].1[m];
                let args = PublishArgs::new(publication, publication.expiry.min(ttl), created);
                cmd.arg(args.expiry)
                    .arg(args.receivers)
                    .arg(args.stored)
                    .arg(args.notification)
                    .arg(args.offsets.0)
                    .arg(args.offsets.1);
            }
            calls.push((shard, cmd.get_packed_command()));
        }
        let answers = self.call_all(&calls, Which::Publish);
        for ((shard, _), answer) in calls.iter().zip(answers) {
            let answer: Option<Vec<Vec<u8>>> = answer.and_then(|v| redis::from_redis_value(v).ok());
            for (&(p, m), id) in routes[*shard].iter().zip(answer.into_iter().flatten()) {
                let id = MessageId::from_bytes(&id);
                ids[p][m] = id;
                newest_per_shard[*shard] = newest_per_shard[*shard].max(id);
            }
        }
        for ((from, messages), ids) in publishes.into_iter().zip(ids) {
            let result = if ids.iter().all(Option::is_some) {
                for publication in &messages {
                    self.stats.published.add(1);
                    self.stats.count_message(publication.label.as_str());
                }
                ids.last()
                    .copied()
                    .flatten()
                    .ok_or(PublishError::Unavailable)
            } else {
                Err(PublishError::Unavailable)
            };
            self.cores
                .answer(from, CoreMsg::Published { conn: from, result });
        }
        let newest = newest_per_shard.iter().copied().max().flatten();
        self.issued = self.issued.max(newest);
        if let (true, Some(newest)) = (sharded, newest) {
            // Every other server's stream must pass the newest id for the nodes to release it.
            let behind: Vec<usize> = (0..shards)
                .filter(|&s| newest_per_shard[s] < Some(newest))
                .collect();
            self.tick_shards(&behind, newest);
        }
    }

    /// Asks each of `shards` to move its clock past `hint` and publish it (spec/cluster.md §9).
    pub(super) fn tick_shards(&mut self, shards: &[usize], hint: MessageId) {
        let hint = hint.to_string();
        let calls: Vec<(usize, Vec<u8>)> = shards
            .iter()
            .map(|&shard| {
                let packed = redis::cmd("EVALSHA")
                    .arg(self.tick.get_hash())
                    .arg(1)
                    .arg(scripts::CLOCK_KEY)
                    .arg(shard)
                    .arg(&hint)
                    .arg(scripts::TICK_CHANNEL)
                    .get_packed_command();
                (shard, packed)
            })
            .collect();
        self.call_all(&calls, Which::Tick);
    }

    /// Sends each script call to its server, then reads every answer: the servers work at the
    /// same time, one round trip for all. A server that does not know the script (restarted)
    /// gets it loaded and the call again. `None` for a server that could not be reached or
    /// failed.
    fn call_all(&mut self, calls: &[(usize, Vec<u8>)], which: Which) -> Vec<Option<redis::Value>> {
        let mut sent = vec![false; calls.len()];
        for (i, (shard, packed)) in calls.iter().enumerate() {
            let link = &mut self.links[*shard];
            if let Some(conn) = link.get() {
                match conn.send_packed_command(packed) {
                    Ok(()) => sent[i] = true,
                    Err(e) => link.failed(&e),
                }
            }
        }
        let script = match which {
            Which::Publish => &self.publish,
            Which::Tick => &self.tick,
        };
        let mut answers = Vec::with_capacity(calls.len());
        for (i, (shard, packed)) in calls.iter().enumerate() {
            let link = &mut self.links[*shard];
            let answer = match (sent[i], link.get()) {
                (true, Some(conn)) => match conn.recv_response().and_then(|v| v.extract_error()) {
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        load_and_retry(conn, script, packed)
                    }
                    other => other,
                },
                _ => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "not connected",
                ))),
            };
            answers.push(match answer {
                Ok(value) => Some(value),
                Err(e) => {
                    if sent[i] {
                        link.failed(&e);
                    }
                    None
                }
            });
        }
        answers
    }
}

/// Which script a call runs.
#[derive(Clone, Copy)]
enum Which {
    Publish,
    Tick,
}

/// Loads `script` and sends the call again (after `NOSCRIPT`: a restarted or flushed Redis).
fn load_and_retry(
    conn: &mut redis::Connection,
    script: &redis::Script,
    packed: &[u8],
) -> redis::RedisResult<redis::Value> {
    script.prepare_invoke().load(conn)?;
    conn.send_packed_command(packed)?;
    conn.recv_response()?.extract_error()
}
