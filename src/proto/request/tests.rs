//! Unit tests of the protobuf request checks (spec/binary.md §3, §4).

use prost::Message as _;

use super::*;
use crate::config::SignatureAlgo;
use crate::proto::pb::{
    ChannelIdPb, ChannelStatsRequest, IncomingMessage, IncomingMessagesRequest, Receiver, Request,
    RequestBatch, ServerStatsRequest,
};

const LIMITS: RequestLimits = RequestLimits {
    messages: 2,
    channels: 2,
};

fn signer() -> Signer {
    Signer::new(Some("key"), SignatureAlgo::Sha1)
}

fn batch(command: request::Command) -> Vec<u8> {
    RequestBatch {
        requests: vec![Request {
            command: Some(command),
        }],
    }
    .encode_to_vec()
}

fn receiver(id: u8, is_private: bool, signature: Vec<u8>) -> Receiver {
    Receiver {
        id: vec![id; 16],
        is_private,
        signature,
    }
}

fn publish(receivers: Vec<Receiver>, body: &str) -> Vec<u8> {
    batch(request::Command::IncomingMessages(
        IncomingMessagesRequest {
            messages: vec![IncomingMessage {
                receivers,
                sender: None,
                body: body.into(),
                expiry: 30,
                r#type: "im_message".into(),
            }],
        },
    ))
}

fn public_sig(id: u8) -> Vec<u8> {
    let hex = ChannelId([id; 16]).to_hex();
    hex::decode(signer().sign(format!("public:{hex}").as_bytes())).unwrap()
}

/// spec/binary.md §3: a back end publishes to private and public receivers without signatures.
#[test]
fn backend_publish() {
    let data = publish(
        vec![receiver(1, true, vec![]), receiver(2, false, vec![])],
        "{}",
    );
    let Ok(ClientRequest::Publish(messages)) = parse(&data, Trust::Backend, &signer(), LIMITS)
    else {
        panic!("not a publish");
    };
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(
        m.receivers,
        vec![
            Channel::private(ChannelId([1; 16])),
            Channel::public(ChannelId([2; 16]))
        ]
    );
    assert_eq!(
        (m.expiry, m.sender, m.label.as_str()),
        (30, Sender::Backend, "im_message")
    );
}

/// spec/binary.md §4: browsers publish only to signed public channels, as CLIENT.
#[test]
fn client_rules() {
    let me = Trust::Client(ChannelId([9; 16]));
    let s = signer();
    let ok = publish(vec![receiver(2, false, public_sig(2))], "{}");
    let Ok(ClientRequest::Publish(m)) = parse(&ok, me, &s, LIMITS) else {
        panic!("refused");
    };
    assert_eq!(m[0].sender, Sender::Client(ChannelId([9; 16])));
    let private = publish(vec![receiver(2, true, public_sig(2))], "{}");
    assert_eq!(
        parse(&private, me, &s, LIMITS),
        Err(WireError::PrivateNotAllowed)
    );
    let bad = publish(vec![receiver(2, false, public_sig(3))], "{}");
    assert_eq!(
        parse(&bad, me, &s, LIMITS),
        Err(WireError::InvalidSignature)
    );
    let stats = batch(request::Command::ServerStats(ServerStatsRequest {}));
    assert_eq!(
        parse(&stats, me, &s, LIMITS),
        Err(WireError::CommandNotAllowed)
    );
    assert_eq!(
        parse(&stats, Trust::Backend, &s, LIMITS),
        Ok(ClientRequest::ServerStats)
    );
}

/// spec/errors.md §1: each bound and malformation has its code.
#[test]
fn errors() {
    let s = signer();
    let b = Trust::Backend;
    assert_eq!(
        parse(b"\xff\xff", b, &s, LIMITS),
        Err(WireError::WrongRequestData)
    );
    assert_eq!(parse(b"", b, &s, LIMITS), Err(WireError::WrongRequestData));
    let empty = RequestBatch {
        requests: vec![Request { command: None }],
    }
    .encode_to_vec();
    assert_eq!(
        parse(&empty, b, &s, LIMITS),
        Err(WireError::WrongRequestData)
    );
    assert_eq!(
        parse(&publish(vec![], "{}"), b, &s, LIMITS),
        Err(WireError::NoChannels)
    );
    let three = (1..=3).map(|i| receiver(i, true, vec![])).collect();
    assert_eq!(
        parse(&publish(three, "{}"), b, &s, LIMITS),
        Err(WireError::TooManyChannels)
    );
    let short = vec![Receiver {
        id: vec![1; 15],
        is_private: true,
        signature: vec![],
    }];
    assert_eq!(
        parse(&publish(short, "{}"), b, &s, LIMITS),
        Err(WireError::InvalidChannelId)
    );
    // A body that is not JSON is a body (spec/binary.md §3).
    let not_json = publish(vec![receiver(1, true, vec![])], "{oops");
    let Ok(ClientRequest::Publish(messages)) = parse(&not_json, b, &s, LIMITS) else {
        panic!("a non-JSON body is published");
    };
    assert_eq!(&messages[0].body[..], b"{oops");
    let many = batch(request::Command::IncomingMessages(
        IncomingMessagesRequest {
            messages: vec![IncomingMessage::default(); 3],
        },
    ));
    assert_eq!(parse(&many, b, &s, LIMITS), Err(WireError::TooManyMessages));
    assert_eq!(WireError::TooManyConnections.status(), 429);
    assert_eq!(WireError::InvalidSignature.code(), 4021);
}

/// spec/binary.md §3: channel stats name their channels; labels outside the pattern are `unknown`.
#[test]
fn channel_stats_and_labels() {
    let data = batch(request::Command::ChannelStats(ChannelStatsRequest {
        channels: vec![ChannelIdPb {
            id: vec![4; 16],
            is_private: true,
            signature: vec![],
        }],
    }));
    assert_eq!(
        parse(&data, Trust::Backend, &signer(), LIMITS),
        Ok(ClientRequest::ChannelStats(vec![Channel::private(
            ChannelId([4; 16])
        )]))
    );
    assert_eq!(Label::new("a b").as_str(), "unknown");
    assert_eq!(Label::new("").as_str(), "unknown");
    assert_eq!(Label::new(&"x".repeat(33)).as_str(), "unknown");
    assert_eq!(Label::new("im_*-1").as_str(), "im_*-1");
}

/// Random bytes never panic.
#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..2000 {
        let data: Vec<u8> = (0..len % 97)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = parse(&data, Trust::Client(ChannelId([1; 16])), &signer(), LIMITS);
        let _ = parse(&data, Trust::Backend, &signer(), LIMITS);
    }
}
