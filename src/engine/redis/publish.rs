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
        for (shard, route) in routes.iter().enumerate() {
            if route.is_empty() {
                continue;
            }
            let mut invocation = self.publish.key(scripts::COUNTER_KEY);
            invocation
                .key(scripts::START_KEY)
                .key(scripts::CLOCK_KEY)
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
                invocation
                    .arg(args.expiry)
                    .arg(args.receivers)
                    .arg(args.stored)
                    .arg(args.notification)
                    .arg(args.offsets.0)
                    .arg(args.offsets.1);
            }
            let link = &mut self.links[shard];
            let answer: Option<Vec<Vec<u8>>> = match link.get() {
                None => None,
                Some(conn) => invocation.invoke(conn).map_err(|e| link.failed(&e)).ok(),
            };
            for (&(p, m), id) in route.iter().zip(answer.into_iter().flatten()) {
                let id = MessageId::from_bytes(&id);
                ids[p][m] = id;
                newest_per_shard[shard] = newest_per_shard[shard].max(id);
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
        for &shard in shards {
            let mut invocation = self.tick.key(scripts::CLOCK_KEY);
            invocation.arg(shard).arg(&hint).arg(scripts::TICK_CHANNEL);
            let link = &mut self.links[shard];
            if let Some(conn) = link.get() {
                if let Err(e) = invocation.invoke::<Vec<u8>>(conn) {
                    link.failed(&e);
                }
            }
        }
    }
}
