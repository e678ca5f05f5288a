//! The Redis side of the cluster engine: key names, the publish script and its arguments, and
//! the decoding of what other nodes publish (spec/cluster.md §1–§3). Pure code: bytes in, bytes
//! out.

use bytes::Bytes;
use prost::Message as _;

use crate::engine::Publication;
use crate::message::{Channel, ChannelId, ChannelKind, Message, MessageId, Sender};
use crate::proto::pb;

/// Key of the message counter.
pub const COUNTER_KEY: &str = "server:messagecounter";
/// Key of the id source's start date (Unix seconds, set once).
pub const START_KEY: &str = "server:startdate";
/// Hash of per-process statistics.
pub const STATS_KEY: &str = "stats";
/// Pub/sub channel prefix; each process publishes on `pushserver:<uid>`.
pub const PUBSUB_PREFIX: &str = "pushserver:";

/// Key of a sharded server's clock: the newest id it issued, as 26 digits (spec/cluster.md §9).
pub const CLOCK_KEY: &str = "pushpull:clock";
/// Pub/sub channel of a sharded server's clock ticks (payload: a 13-byte id).
pub const TICK_CHANNEL: &str = "pushpull:clock";

/// The sharded id source, shared by [`publish_lua`] and [`TICK_LUA`]: `next_id(base)` is the
/// first id after `base` (26 digits, or false) and not before the server's `TIME`, as
/// `<seconds:10><microseconds:6><sequence:8><shard:2>`: ordered like time across servers, unique
/// by the shard digits, increasing on each server.
const HLC_LUA: &str = r#"
local function hlc_format(s, u, q, shard)
  return string.format('%010d%06d%08d%02d', s, u, q, shard)
end
local function next_id(base, time, shard)
  local now = hlc_format(tonumber(time[1]), tonumber(time[2]), 0, shard)
  if not base or now > base then return now end
  local s = tonumber(string.sub(base, 1, 10))
  local u = tonumber(string.sub(base, 11, 16))
  local q = tonumber(string.sub(base, 17, 24)) + 1
  if q > 99999999 then
    q = 0
    u = u + 1
    if u > 999999 then
      u = 0
      s = s + 1
    end
  end
  return hlc_format(s, u, q, shard)
end
local function later(a, b)
  if not a or a == '' then return b end
  if not b or b == '' then return a end
  if a > b then return a end
  return b
end
local function id_bytes(digits)
  local id = ''
  for i = 1, 26, 2 do
    id = id .. string.char(tonumber(string.sub(digits, i, i + 1), 16))
  end
  return id
end
"#;

/// The body of the publish script: one call per batch of messages. For each message it takes
/// the next id (the shared counter, or with `shard` ≥ 0 the server's clock), stores the message
/// and its channel sets when it has an expiry, and publishes it; Redis runs scripts one at a
/// time, so pub/sub order is id order.
///
/// KEYS: counter, start date, clock. ARGV: now (Unix s), set TTL (s), history cap, pub/sub
/// channel, message count, shard (-1: counter ids), hint (26 digits or empty: sharded ids come
/// after it), then per message: expiry, receivers (17 bytes each: `p`/`u` + 16-byte id), the
/// stored `OutgoingMessage` with a 13-byte id placeholder at offset 2, the published
/// `NotificationBatch` with placeholders at two offsets, and those offsets. Returns the 13-byte
/// ids.
const PUBLISH_BODY_LUA: &str = r#"
local shard = tonumber(ARGV[6])
local start, clock, time
if shard < 0 then
  start = redis.call('GET', KEYS[2])
  if not start then
    redis.call('SETNX', KEYS[2], ARGV[1])
    start = redis.call('GET', KEYS[2])
  end
  start = string.format('%010d', tonumber(start) % 10000000000)
else
  clock = later(redis.call('GET', KEYS[3]), ARGV[7])
  time = redis.call('TIME')
end
local ids = {}
local cap = tonumber(ARGV[3])
for m = 0, tonumber(ARGV[5]) - 1 do
  local b = 8 + m * 6
  local expiry = tonumber(ARGV[b])
  local receivers = ARGV[b + 1]
  local stored = ARGV[b + 2]
  local notif = ARGV[b + 3]
  local off1 = tonumber(ARGV[b + 4])
  local off2 = tonumber(ARGV[b + 5])
  local digits
  if shard < 0 then
    local counter = redis.call('INCR', KEYS[1])
    digits = start .. string.format('%016d', counter % 10000000000000000)
  else
    clock = next_id(clock, time, shard)
    digits = clock
  end
  local id = id_bytes(digits)
  if expiry > 0 then
    redis.call('SETEX', 'message:' .. id, expiry, string.sub(stored, 1, 2) .. id .. string.sub(stored, 16))
    for r = 1, #receivers, 17 do
      local prefix = 'pubchannel:messages:'
      if string.sub(receivers, r, r) == 'p' then prefix = 'channel:messages:' end
      local key = prefix .. string.sub(receivers, r + 1, r + 16)
      redis.call('ZADD', key, 0, id)
      redis.call('EXPIRE', key, ARGV[2])
      redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
    end
  end
  redis.call('PUBLISH', ARGV[4],
    string.sub(notif, 1, off1) .. id .. string.sub(notif, off1 + 14, off2) .. id .. string.sub(notif, off2 + 14))
  ids[#ids + 1] = id
end
if shard >= 0 and clock then
  redis.call('SET', KEYS[3], clock)
end
return ids
"#;

/// The publish script (see `PUBLISH_BODY_LUA`).
pub fn publish_lua() -> String {
    format!("{HLC_LUA}{PUBLISH_BODY_LUA}")
}

/// The clock tick of a sharded server: moves its clock past the hint (ARGV[2], 26 digits) and
/// the server's `TIME`, and publishes the new clock on [`TICK_CHANNEL`], so that every node's
/// merge knows this server's stream has passed it. KEYS: clock. ARGV: shard, hint, channel.
/// Returns the 13-byte id.
const TICK_BODY_LUA: &str = r#"
local clock = next_id(later(redis.call('GET', KEYS[1]), ARGV[2]), redis.call('TIME'), tonumber(ARGV[1]))
redis.call('SET', KEYS[1], clock)
local id = id_bytes(clock)
redis.call('PUBLISH', ARGV[3], id)
return id
"#;

/// The tick script (see `TICK_BODY_LUA`).
pub fn tick_lua() -> String {
    format!("{HLC_LUA}{TICK_BODY_LUA}")
}

/// The key of a stored message.
pub fn message_key(id: &[u8]) -> Vec<u8> {
    [b"message:".as_slice(), id].concat()
}

/// The sorted set of a channel's stored message ids.
pub fn messages_key(channel: &Channel) -> Vec<u8> {
    let prefix: &[u8] = match channel.kind {
        ChannelKind::Private => b"channel:messages:",
        ChannelKind::Public => b"pubchannel:messages:",
    };
    [prefix, &channel.id.0].concat()
}

/// The online mark of a channel.
pub fn online_key(channel: &Channel) -> Vec<u8> {
    let prefix: &[u8] = match channel.kind {
        ChannelKind::Private => b"channel:online:",
        ChannelKind::Public => b"pubchannel:online:",
    };
    [prefix, &channel.id.0].concat()
}

/// Offset of the id placeholder in a stored `OutgoingMessage` (after tag 0x0a and length 13).
const STORED_ID_OFFSET: usize = 2;
/// Length of a message id in bytes.
const ID_LEN: usize = 13;
/// Placeholder bytes for the id in templates.
const PLACEHOLDER: [u8; ID_LEN] = [0; ID_LEN];

/// The per-message arguments of [`PUBLISH_LUA`].
#[derive(Debug)]
pub struct PublishArgs {
    /// Seconds to store (0 = not stored).
    pub expiry: u32,
    /// 17 bytes per receiver.
    pub receivers: Vec<u8>,
    /// The stored `OutgoingMessage` with the id placeholder at offset 2.
    pub stored: Vec<u8>,
    /// The published `NotificationBatch` with the id placeholder at two offsets.
    pub notification: Vec<u8>,
    /// Offsets of the placeholders in `notification`.
    pub offsets: (usize, usize),
}

impl PublishArgs {
    /// Builds the arguments for one publication; `expiry` is already capped by the TTL.
    pub fn new(publication: &Publication, expiry: u32, created: u32) -> Self {
        let outgoing = pb::OutgoingMessage {
            id: PLACEHOLDER.to_vec(),
            body: String::from_utf8_lossy(&publication.body).into_owned(),
            expiry,
            created,
            sender: Some(pb::SenderPb::from(publication.sender)),
        };
        let stored = outgoing.encode_to_vec();
        debug_assert_eq!(&stored[..STORED_ID_OFFSET], &[0x0a, ID_LEN as u8]);
        let receivers_pb: Vec<pb::Receiver> = publication
            .receivers
            .iter()
            .map(|c| pb::Receiver {
                id: c.id.0.to_vec(),
                is_private: c.kind == ChannelKind::Private,
                signature: Vec::new(),
            })
            .collect();
        let ipc = pb::IpcMessage {
            receivers: receivers_pb,
            outgoing_message_id: PLACEHOLDER.to_vec(),
            outgoing_message: Some(outgoing),
        };
        let batch = pb::NotificationBatch {
            notifications: vec![pb::Notification {
                command: Some(pb::notification::Command::IpcMessages(pb::IpcMessages {
                    messages: vec![ipc],
                })),
            }],
        };
        let notification = batch.encode_to_vec();
        let offsets = placeholder_offsets(&notification);
        let mut receivers = Vec::with_capacity(publication.receivers.len() * 17);
        for c in &publication.receivers {
            receivers.push(match c.kind {
                ChannelKind::Private => b'p',
                ChannelKind::Public => b'u',
            });
            receivers.extend_from_slice(&c.id.0);
        }
        Self {
            expiry,
            receivers,
            stored,
            notification,
            offsets,
        }
    }
}

/// Finds the two id placeholders of an encoded notification: the `outgoingMessageId` field
/// (tag 0x12, length 13) and the `id` of the nested `OutgoingMessage` (tag 0x0a, length 13).
fn placeholder_offsets(bytes: &[u8]) -> (usize, usize) {
    let find = |tag: u8, from: usize| {
        (from..bytes.len().saturating_sub(ID_LEN + 1))
            .find(|&i| {
                bytes[i] == tag
                    && bytes[i + 1] == ID_LEN as u8
                    && bytes[i + 2..i + 2 + ID_LEN] == PLACEHOLDER
            })
            .map_or(0, |i| i + 2)
    };
    let first = find(0x12, 0);
    let second = find(0x0a, first + ID_LEN);
    (first, second)
}

/// Decodes a stored message (`message:<id>` value) into a message for `receivers`.
pub fn stored_message(value: &[u8], receivers: &[Channel]) -> Option<Message> {
    let outgoing = pb::OutgoingMessage::decode(value).ok()?;
    outgoing_to_message(outgoing, receivers.to_vec())
}

/// Decodes what a process published on `pushserver:<uid>` into messages with their receivers.
pub fn notification_messages(payload: &[u8]) -> Vec<Message> {
    let Ok(batch) = pb::NotificationBatch::decode(payload) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for notification in batch.notifications {
        let Some(pb::notification::Command::IpcMessages(ipc)) = notification.command else {
            continue;
        };
        for m in ipc.messages {
            let receivers = m
                .receivers
                .iter()
                .filter_map(|r| {
                    let id = ChannelId(<[u8; 16]>::try_from(r.id.as_slice()).ok()?);
                    Some(if r.is_private {
                        Channel::private(id)
                    } else {
                        Channel::public(id)
                    })
                })
                .collect();
            let Some(mut outgoing) = m.outgoing_message else {
                continue;
            };
            if outgoing.id.is_empty() {
                outgoing.id = m.outgoing_message_id;
            }
            out.extend(outgoing_to_message(outgoing, receivers));
        }
    }
    out
}

fn outgoing_to_message(outgoing: pb::OutgoingMessage, receivers: Vec<Channel>) -> Option<Message> {
    let id = MessageId::from_bytes(&outgoing.id)?;
    let sender = match outgoing.sender {
        Some(s) if s.r#type == pb::SenderType::Client as i32 => {
            Sender::Client(ChannelId(<[u8; 16]>::try_from(s.id.as_slice()).ok()?))
        }
        _ => Sender::Backend,
    };
    Some(Message::new(
        id,
        Bytes::from(outgoing.body.into_bytes()),
        outgoing.expiry,
        sender,
        receivers.into_boxed_slice(),
        u64::from(outgoing.created) * 1000,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::request::Label;

    fn publication() -> Publication {
        Publication {
            receivers: vec![
                Channel::private(ChannelId([1; 16])),
                Channel::public(ChannelId([2; 16])),
            ],
            body: Bytes::from_static(b"{\"a\":1}"),
            expiry: 60,
            sender: Sender::Client(ChannelId([3; 16])),
            label: Label::new("x"),
        }
    }

    /// spec/cluster.md §3: the templates, with the id spliced in as the script does, decode to
    /// the message.
    #[test]
    fn templates_splice_the_id() {
        let args = PublishArgs::new(&publication(), 60, 1_700_000_000);
        let id = MessageId::new(1_700_000_000, 42);
        let splice = |t: &[u8], at: usize| [&t[..at], &id.0[..], &t[at + ID_LEN..]].concat();
        let stored = splice(&args.stored, STORED_ID_OFFSET);
        let msg = stored_message(&stored, &[Channel::private(ChannelId([1; 16]))]).unwrap();
        assert_eq!((msg.id, msg.expiry, msg.created), (id, 60, 1_700_000_000));
        assert_eq!(msg.sender, Sender::Client(ChannelId([3; 16])));
        let (a, b) = args.offsets;
        assert!(a > 0 && b > a + ID_LEN, "{a} {b}");
        let notif = splice(&splice(&args.notification, a), b);
        let msgs = notification_messages(&notif);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].id, id);
        assert_eq!(msgs[0].receivers.len(), 2);
        assert_eq!(&msgs[0].body[..], b"{\"a\":1}");
        assert_eq!(args.receivers.len(), 34);
        assert_eq!(args.receivers[0], b'p');
    }

    #[test]
    fn keys() {
        let c = Channel::public(ChannelId([7; 16]));
        assert_eq!(&messages_key(&c)[..20], b"pubchannel:messages:");
        assert_eq!(
            online_key(&Channel::private(ChannelId([7; 16]))).len(),
            15 + 16
        );
        assert_eq!(message_key(&[1; 13]).len(), 8 + 13);
        assert!(notification_messages(b"\xff").is_empty());
    }
}
