//! Protobuf requests of queue-server version 4: parsing and validating a `RequestBatch` from a
//! trusted back end or an untrusted browser (spec/binary.md §3, §4).

use bytes::Bytes;
use prost::Message as _;

use super::channel::{ChannelError, Signer};
use super::pb::{self, request};
use crate::message::{Channel, ChannelId, Sender};

/// The `<code>: <reason>` errors of the protobuf API (spec/errors.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// 4010.
    WrongChannelId,
    /// 4012: a browser request from a connection without a public channel.
    PublicChannelRequired,
    /// 4013: undecodable request, or an empty text body.
    WrongRequestData,
    /// 4014: a command browsers may not use.
    CommandNotAllowed,
    /// 4015: no command.
    WrongCommand,
    /// 4016: more messages than allowed.
    TooManyMessages,
    /// 4017: a message or query without channels.
    NoChannels,
    /// 4018: more channels than allowed.
    TooManyChannels,
    /// 4019: a channel id that is not 16 bytes.
    InvalidChannelId,
    /// 4020: a browser naming a private channel.
    PrivateNotAllowed,
    /// 4021: a public channel with a wrong signature.
    InvalidSignature,
    /// 4029: the oldest connection of a channel over its connection limit.
    TooManyConnections,
}

impl WireError {
    /// The numeric code (also the WebSocket close code).
    pub fn code(self) -> u16 {
        match self {
            Self::WrongChannelId => 4010,
            Self::PublicChannelRequired => 4012,
            Self::WrongRequestData => 4013,
            Self::CommandNotAllowed => 4014,
            Self::WrongCommand => 4015,
            Self::TooManyMessages => 4016,
            Self::NoChannels => 4017,
            Self::TooManyChannels => 4018,
            Self::InvalidChannelId => 4019,
            Self::PrivateNotAllowed => 4020,
            Self::InvalidSignature => 4021,
            Self::TooManyConnections => 4029,
        }
    }

    /// The reason text, as the reference words it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::WrongChannelId => "Wrong Channel Id.",
            Self::PublicChannelRequired => "Public Channel Id is Required.",
            Self::WrongRequestData => "Wrong Request Data.",
            Self::CommandNotAllowed => "Request command is not allowed.",
            Self::WrongCommand => "Wrong Request Command.",
            Self::TooManyMessages => "Request exceeded the maximum number of messages.",
            Self::NoChannels => "No channels found.",
            Self::TooManyChannels => "Request exceeded the maximum number of channels.",
            Self::InvalidChannelId => "Request has an invalid channel id.",
            Self::PrivateNotAllowed => "Private channel is not allowed.",
            Self::InvalidSignature => "Channel has an invalid signature.",
            Self::TooManyConnections => "Too many connections",
        }
    }

    /// The HTTP status of a long-poll or HTTP answer: 429 for 4029, 400 otherwise.
    pub fn status(self) -> u16 {
        match self {
            Self::TooManyConnections => 429,
            _ => 400,
        }
    }
}

impl From<ChannelError> for WireError {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::WrongChannelId => Self::WrongChannelId,
            ChannelError::NoChannels => Self::NoChannels,
            ChannelError::TooManyChannels => Self::TooManyChannels,
        }
    }
}

/// Who sends a request, which decides what it may do (spec/binary.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The publisher listener's `/pub/`: any command, private receivers, no signatures.
    Backend,
    /// A browser (`/rest/` or a WebSocket frame), identified by its own public channel.
    Client(ChannelId),
}

/// The bounds of one request.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// Messages per request (`max_messages_per_request`).
    pub messages: usize,
    /// Channels per message or query (`max_channels_per_request`).
    pub channels: usize,
}

/// One message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// Its receivers, deduplicated.
    pub receivers: Vec<Channel>,
    /// JSON body.
    pub body: Bytes,
    /// Seconds to keep it (0 = live only).
    pub expiry: u32,
    /// Who publishes.
    pub sender: Sender,
    /// The statistics label (`type`), or `unknown`.
    pub label: Label,
}

/// A statistics label: `[a-zA-Z0-9_*-]{1,32}`, anything else counts as `unknown`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Label(String);

impl Label {
    /// The label of a message type as the client gave it.
    pub fn new(kind: &str) -> Self {
        let valid = (1..=32).contains(&kind.len())
            && kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_*-".contains(&b));
        Self(if valid {
            kind.to_owned()
        } else {
            "unknown".to_owned()
        })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// Publish these messages.
    Publish(Vec<Publication>),
    /// Report whether these channels are online.
    ChannelStats(Vec<Channel>),
    /// Report the server statistics (back ends only).
    ServerStats,
}

impl ClientRequest {
    /// The command name, as counted in the daily statistics.
    pub fn command(&self) -> &'static str {
        match self {
            Self::Publish(_) => "incomingMessages",
            Self::ChannelStats(_) => "channelStats",
            Self::ServerStats => "serverStats",
        }
    }
}

/// Decodes and checks a `RequestBatch`. Only its first request is executed, as the reference
/// does (spec/binary.md §3).
pub fn parse(
    data: &[u8],
    trust: Trust,
    signer: &Signer,
    limits: RequestLimits,
) -> Result<ClientRequest, WireError> {
    let batch = pb::RequestBatch::decode(data).map_err(|_| WireError::WrongRequestData)?;
    let first = batch
        .requests
        .into_iter()
        .next()
        .ok_or(WireError::WrongRequestData)?;
    let command = first.command.ok_or(WireError::WrongRequestData)?;
    match (command, trust) {
        (request::Command::IncomingMessages(r), _) => {
            if r.messages.len() > limits.messages {
                return Err(WireError::TooManyMessages);
            }
            let sender = match trust {
                Trust::Backend => Sender::Backend,
                Trust::Client(public) => Sender::Client(public),
            };
            r.messages
                .into_iter()
                .map(|m| {
                    let receivers = m
                        .receivers
                        .iter()
                        .map(|r| (r.id.as_slice(), r.is_private, r.signature.as_slice()));
                    let receivers = channels(receivers, trust, signer, limits)?;
                    // Any text is a body, JSON or not, as in the reference (spec/binary.md §3).
                    let body = Bytes::from(m.body.into_bytes());
                    let label = Label::new(&m.r#type);
                    Ok(Publication {
                        receivers,
                        body,
                        expiry: m.expiry,
                        sender,
                        label,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(ClientRequest::Publish)
        }
        (request::Command::ChannelStats(r), _) => {
            let ids = r
                .channels
                .iter()
                .map(|c| (c.id.as_slice(), c.is_private, c.signature.as_slice()));
            channels(ids, trust, signer, limits).map(ClientRequest::ChannelStats)
        }
        (request::Command::ServerStats(_), Trust::Backend) => Ok(ClientRequest::ServerStats),
        (request::Command::ServerStats(_), Trust::Client(_)) => Err(WireError::CommandNotAllowed),
    }
}

/// Checks the channels of one message or query.
fn channels<'a>(
    list: impl ExactSizeIterator<Item = (&'a [u8], bool, &'a [u8])>,
    trust: Trust,
    signer: &Signer,
    limits: RequestLimits,
) -> Result<Vec<Channel>, WireError> {
    if list.len() == 0 {
        return Err(WireError::NoChannels);
    }
    if list.len() > limits.channels {
        return Err(WireError::TooManyChannels);
    }
    let mut out: Vec<Channel> = Vec::with_capacity(list.len());
    for (id, is_private, signature) in list {
        let id = <[u8; 16]>::try_from(id)
            .map(ChannelId)
            .map_err(|_| WireError::InvalidChannelId)?;
        let channel = match trust {
            Trust::Backend if is_private => Channel::private(id),
            Trust::Backend => Channel::public(id),
            Trust::Client(_) if is_private => return Err(WireError::PrivateNotAllowed),
            Trust::Client(_) => {
                if !signer.public_signature_valid(id, signature) {
                    return Err(WireError::InvalidSignature);
                }
                Channel::public(id)
            }
        };
        if !out.contains(&channel) {
            out.push(channel);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
