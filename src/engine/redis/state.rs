//! Online marks, channel state and shared statistics in Redis (spec/cluster.md §6, §7); sharded,
//! a channel's online mark lives on the channel's server and the statistics on the first (§9).

use super::scripts;
use super::shard::shard_of;
use super::{ChannelState, ConnRef, CoreMsg, RedisEngine, STATS_SLACK, unix_ms};
use crate::message::Channel;

impl RedisEngine {
    /// Refreshes the online marks of `channels` (spec/cluster.md §6): one pipeline per server.
    pub(super) fn mark_online(&mut self, channels: &mut Vec<Channel>) {
        channels.sort_unstable();
        channels.dedup();
        let window = self.settings.online_window.as_secs().max(1);
        let shards = self.links.len();
        for (shard, link) in self.links.iter_mut().enumerate() {
            let mut pipe = redis::pipe();
            let mut any = false;
            for channel in channels.iter().filter(|c| shard_of(c, shards) == shard) {
                pipe.set_ex(scripts::online_key(channel), 1, window)
                    .ignore();
                any = true;
            }
            if !any {
                continue;
            }
            let Some(conn) = link.get() else {
                continue;
            };
            if let Err(e) = pipe.query::<()>(conn) {
                link.failed(&e);
            }
        }
    }

    /// Online state of channels: connected here, or marked online in Redis by any node (one
    /// `MGET` per server).
    pub(super) fn channel_infos(&mut self, infos: Vec<(ConnRef, Vec<Channel>)>) {
        let shards = self.links.len();
        let asked: Vec<Channel> = infos
            .iter()
            .flat_map(|(_, channels)| channels.iter().copied())
            .collect();
        let mut marked = vec![false; asked.len()];
        for (shard, link) in self.links.iter_mut().enumerate() {
            let mine: Vec<usize> = (0..asked.len())
                .filter(|&i| shard_of(&asked[i], shards) == shard)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let Some(conn) = link.get() else {
                continue;
            };
            let keys: Vec<Vec<u8>> = mine
                .iter()
                .map(|&i| scripts::online_key(&asked[i]))
                .collect();
            match redis::cmd("MGET")
                .arg(&keys)
                .query::<Vec<Option<Vec<u8>>>>(conn)
            {
                Ok(values) => {
                    for (&i, value) in mine.iter().zip(values) {
                        marked[i] = value.is_some();
                    }
                }
                Err(e) => link.failed(&e),
            }
        }
        let mut marked = marked.into_iter();
        for (from, channels) in infos {
            let states = channels
                .iter()
                .map(|channel| {
                    let subscribers = self.interest.count(channel);
                    let marked = marked.next().unwrap_or(false);
                    ChannelState {
                        channel: *channel,
                        subscribers,
                        online: subscribers > 0 || marked,
                    }
                })
                .collect();
            self.cores.answer(
                from,
                CoreMsg::ChannelInfo {
                    conn: from,
                    infos: states,
                },
            );
        }
    }

    /// Stores this process's statistics in the `stats` hash and reads the other live processes'
    /// (spec/cluster.md §7); entries older than two intervals plus `STATS_SLACK` are removed.
    pub(super) fn exchange_stats(&mut self) {
        let own = serde_json::Value::Object(self.shared.process_stats()).to_string();
        let link = &mut self.links[0];
        let Some(conn) = link.get() else {
            return;
        };
        let result: redis::RedisResult<Vec<(String, String)>> = redis::pipe()
            .hset(scripts::STATS_KEY, &self.uid, own)
            .ignore()
            .hgetall(scripts::STATS_KEY)
            .query::<(Vec<(String, String)>,)>(conn)
            .map(|(all,)| all);
        let all = match result {
            Ok(all) => all,
            Err(e) => return link.failed(&e),
        };
        let now_ms = unix_ms();
        let horizon = (self.settings.stats_interval * 2 + STATS_SLACK).as_millis() as u64;
        let mut others = Vec::new();
        let mut stale = Vec::new();
        for (uid, json) in all {
            if uid == self.uid {
                continue;
            }
            let value: Option<serde_json::Value> = serde_json::from_str(&json).ok();
            let date = value.as_ref().and_then(|v| v["date"].as_u64()).unwrap_or(0);
            match value {
                Some(v) if now_ms.saturating_sub(date) <= horizon => others.push(v),
                _ => stale.push(uid),
            }
        }
        if !stale.is_empty() {
            if let Err(e) = redis::cmd("HDEL")
                .arg(scripts::STATS_KEY)
                .arg(&stale)
                .query::<()>(conn)
            {
                link.failed(&e);
            }
        }
        if let Ok(mut cluster) = self.stats.cluster.lock() {
            cluster.others = others;
        }
    }
}
