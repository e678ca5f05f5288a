//! The protobuf messages of queue-server version 4 ("Bitrix Push server 2.0"), written by hand
//! with `prost` derives (no code generation step). Field numbers and types follow the reference
//! schema exactly (spec/binary.md §1), so the bytes are what the Bitrix JS client and PHP module
//! expect.

use bytes::Bytes;
use prost::{Enumeration, Message, Oneof};

use crate::message::{MessageId, Sender};

/// Encodes one published message as subscribers receive it: a `ResponseBatch` with one
/// `outgoingMessages` response holding one `OutgoingMessage` (spec/binary.md §2). `sender` is
/// always present, since clients dereference it.
pub fn encode_message(
    id: MessageId,
    body: &[u8],
    expiry: u32,
    created: u32,
    sender: Sender,
) -> Bytes {
    let batch = ResponseBatch {
        responses: vec![Response {
            command: Some(response::Command::OutgoingMessages(
                OutgoingMessagesResponse {
                    messages: vec![OutgoingMessage {
                        id: id.0.to_vec(),
                        body: String::from_utf8_lossy(body).into_owned(),
                        expiry,
                        created,
                        sender: Some(SenderPb::from(sender)),
                    }],
                },
            )),
        }],
    };
    Bytes::from(batch.encode_to_vec())
}

impl From<Sender> for SenderPb {
    fn from(sender: Sender) -> Self {
        match sender {
            Sender::Backend => Self {
                r#type: SenderType::Backend as i32,
                id: Vec::new(),
            },
            Sender::Client(id) => Self {
                r#type: SenderType::Client as i32,
                id: id.0.to_vec(),
            },
        }
    }
}

/// A batch of requests from a publisher or a browser.
#[derive(Clone, PartialEq, Message)]
pub struct RequestBatch {
    /// The requests; the reference executes only the first.
    #[prost(message, repeated, tag = "1")]
    pub requests: Vec<Request>,
}

/// One request.
#[derive(Clone, PartialEq, Message)]
pub struct Request {
    /// The command.
    #[prost(oneof = "request::Command", tags = "1, 2, 3")]
    pub command: Option<request::Command>,
}

/// The commands of [`Request`].
pub mod request {
    use super::*;

    /// What a request asks.
    #[derive(Clone, PartialEq, Oneof)]
    pub enum Command {
        /// Publish messages.
        #[prost(message, tag = "1")]
        IncomingMessages(IncomingMessagesRequest),
        /// Ask whether channels are online.
        #[prost(message, tag = "2")]
        ChannelStats(ChannelStatsRequest),
        /// Ask for the server statistics.
        #[prost(message, tag = "3")]
        ServerStats(ServerStatsRequest),
    }
}

/// Messages to publish.
#[derive(Clone, PartialEq, Message)]
pub struct IncomingMessagesRequest {
    /// The messages.
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<IncomingMessage>,
}

/// One message to publish.
#[derive(Clone, PartialEq, Message)]
pub struct IncomingMessage {
    /// Its receivers.
    #[prost(message, repeated, tag = "1")]
    pub receivers: Vec<Receiver>,
    /// Who sends it (ignored: the server decides).
    #[prost(message, optional, tag = "2")]
    pub sender: Option<SenderPb>,
    /// JSON body.
    #[prost(string, tag = "3")]
    pub body: String,
    /// Seconds to keep it; 0 = not stored.
    #[prost(uint32, tag = "4")]
    pub expiry: u32,
    /// Statistics label.
    #[prost(string, tag = "5")]
    pub r#type: String,
}

/// Channels whose online state is asked.
#[derive(Clone, PartialEq, Message)]
pub struct ChannelStatsRequest {
    /// The channels.
    #[prost(message, repeated, tag = "1")]
    pub channels: Vec<ChannelIdPb>,
}

/// A channel named in a request.
#[derive(Clone, PartialEq, Message)]
pub struct ChannelIdPb {
    /// 16 raw bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    /// Private (true) or public id.
    #[prost(bool, tag = "2")]
    pub is_private: bool,
    /// Raw signature bytes (public channels from browsers).
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
}

/// Asks for the server statistics.
#[derive(Clone, PartialEq, Message)]
pub struct ServerStatsRequest {}

/// A receiver of a published message.
#[derive(Clone, PartialEq, Message)]
pub struct Receiver {
    /// 16 raw bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    /// Private (true) or public id.
    #[prost(bool, tag = "2")]
    pub is_private: bool,
    /// Raw signature bytes (public receivers from browsers).
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
}

/// Kinds of senders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum SenderType {
    /// Not set.
    Unknown = 0,
    /// A browser.
    Client = 1,
    /// A trusted back end.
    Backend = 2,
}

/// The sender of a message.
#[derive(Clone, PartialEq, Message)]
pub struct SenderPb {
    /// Its kind.
    #[prost(enumeration = "SenderType", tag = "1")]
    pub r#type: i32,
    /// Its public channel id (clients), 16 bytes, or empty.
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
}

/// A batch of responses.
#[derive(Clone, PartialEq, Message)]
pub struct ResponseBatch {
    /// The responses.
    #[prost(message, repeated, tag = "1")]
    pub responses: Vec<Response>,
}

/// One response.
#[derive(Clone, PartialEq, Message)]
pub struct Response {
    /// Its content.
    #[prost(oneof = "response::Command", tags = "1, 2, 3")]
    pub command: Option<response::Command>,
}

/// The contents of [`Response`].
pub mod response {
    use super::*;

    /// What a response carries.
    #[derive(Clone, PartialEq, Oneof)]
    pub enum Command {
        /// Messages for a subscriber.
        #[prost(message, tag = "1")]
        OutgoingMessages(OutgoingMessagesResponse),
        /// Online state of channels.
        #[prost(message, tag = "2")]
        ChannelStats(ChannelStatsResponse),
        /// Server statistics as JSON.
        #[prost(message, tag = "3")]
        ServerStats(JsonResponse),
    }
}

/// Messages for a subscriber.
#[derive(Clone, PartialEq, Message)]
pub struct OutgoingMessagesResponse {
    /// The messages.
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<OutgoingMessage>,
}

/// One message as subscribers receive it.
#[derive(Clone, PartialEq, Message)]
pub struct OutgoingMessage {
    /// 13-byte message id.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    /// JSON body.
    #[prost(string, tag = "2")]
    pub body: String,
    /// Seconds it is kept.
    #[prost(uint32, tag = "3")]
    pub expiry: u32,
    /// Unix seconds of acceptance.
    #[prost(fixed32, tag = "4")]
    pub created: u32,
    /// Who sent it (always present: clients dereference it).
    #[prost(message, optional, tag = "5")]
    pub sender: Option<SenderPb>,
}

/// Online state of channels.
#[derive(Clone, PartialEq, Message)]
pub struct ChannelStatsResponse {
    /// One entry per asked channel.
    #[prost(message, repeated, tag = "1")]
    pub channels: Vec<ChannelStats>,
}

/// Online state of one channel.
#[derive(Clone, PartialEq, Message)]
pub struct ChannelStats {
    /// 16 raw bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    /// Private (true) or public id.
    #[prost(bool, tag = "2")]
    pub is_private: bool,
    /// Whether a subscriber is connected or was seen within the online TTL.
    #[prost(bool, tag = "3")]
    pub is_online: bool,
}

/// A JSON document.
#[derive(Clone, PartialEq, Message)]
pub struct JsonResponse {
    /// The JSON text.
    #[prost(string, tag = "1")]
    pub json: String,
}

/// Inter-process notification (Redis pub/sub between nodes).
#[derive(Clone, PartialEq, Message)]
pub struct NotificationBatch {
    /// The notifications.
    #[prost(message, repeated, tag = "1")]
    pub notifications: Vec<Notification>,
}

/// One notification.
#[derive(Clone, PartialEq, Message)]
pub struct Notification {
    /// Its content.
    #[prost(oneof = "notification::Command", tags = "1")]
    pub command: Option<notification::Command>,
}

/// The contents of [`Notification`].
pub mod notification {
    use super::*;

    /// What a notification carries.
    #[derive(Clone, PartialEq, Oneof)]
    pub enum Command {
        /// Messages to deliver.
        #[prost(message, tag = "1")]
        IpcMessages(IpcMessages),
    }
}

/// Messages to deliver on other nodes.
#[derive(Clone, PartialEq, Message)]
pub struct IpcMessages {
    /// The messages.
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<IpcMessage>,
}

/// One message with its receivers.
#[derive(Clone, PartialEq, Message)]
pub struct IpcMessage {
    /// Its receivers.
    #[prost(message, repeated, tag = "1")]
    pub receivers: Vec<Receiver>,
    /// Its id (13 bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub outgoing_message_id: Vec<u8>,
    /// The message.
    #[prost(message, optional, tag = "3")]
    pub outgoing_message: Option<OutgoingMessage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// spec/binary.md §1: field numbers and wire types, checked against hand-encoded bytes.
    #[test]
    fn outgoing_message_bytes() {
        let msg = OutgoingMessage {
            id: vec![0x17; 13],
            body: "{}".into(),
            expiry: 60,
            created: 0x0102_0304,
            sender: Some(SenderPb {
                r#type: SenderType::Backend as i32,
                id: Vec::new(),
            }),
        };
        let mut want = vec![0x0a, 13];
        want.extend_from_slice(&[0x17; 13]);
        want.extend_from_slice(&[0x12, 2, b'{', b'}']); // body
        want.extend_from_slice(&[0x18, 60]); // expiry varint
        want.extend_from_slice(&[0x25, 0x04, 0x03, 0x02, 0x01]); // created fixed32, little endian
        want.extend_from_slice(&[0x2a, 2, 0x08, 2]); // sender { type: BACKEND }
        assert_eq!(msg.encode_to_vec(), want);
    }

    /// Concatenated batches decode as one batch: the basis of joining messages into one frame.
    #[test]
    fn concatenated_batches_merge() {
        let one = |n: u8| ResponseBatch {
            responses: vec![Response {
                command: Some(response::Command::OutgoingMessages(
                    OutgoingMessagesResponse {
                        messages: vec![OutgoingMessage {
                            id: vec![n; 13],
                            ..Default::default()
                        }],
                    },
                )),
            }],
        };
        let mut bytes = one(1).encode_to_vec();
        bytes.extend_from_slice(&one(2).encode_to_vec());
        let merged = ResponseBatch::decode(bytes.as_slice()).unwrap();
        assert_eq!(merged.responses.len(), 2);
    }

    #[test]
    fn request_batch_round_trip() {
        let batch = RequestBatch {
            requests: vec![Request {
                command: Some(request::Command::IncomingMessages(
                    IncomingMessagesRequest {
                        messages: vec![IncomingMessage {
                            receivers: vec![Receiver {
                                id: vec![1; 16],
                                is_private: true,
                                signature: vec![],
                            }],
                            sender: None,
                            body: "{\"a\":1}".into(),
                            expiry: 5,
                            r#type: "im_message".into(),
                        }],
                    },
                )),
            }],
        };
        let bytes = batch.encode_to_vec();
        assert_eq!(RequestBatch::decode(bytes.as_slice()).unwrap(), batch);
        assert!(RequestBatch::decode(&[0xff, 0xff][..]).is_err());
    }
}
