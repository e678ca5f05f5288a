//! Criterion: encoding a published message for subscribers, once per message: the text-mode unit
//! (`proto::text::encode`), the binary-mode protobuf batch (`proto::pb::encode_message`), both
//! together as the engine does (`message::Message::new`), and the WebSocket frame header written
//! per delivery (`proto::ws::frame_header`).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pushpull::message::{Channel, ChannelId, Message, MessageId, Sender};
use pushpull::proto::pb::encode_message;
use pushpull::proto::text::encode;
use pushpull::proto::ws::{Opcode, frame_header};

/// Wall clock of the examples, Unix milliseconds.
const NOW_MS: u64 = 1_795_830_315_123;

/// A typical Bitrix message body of about 200 bytes.
fn body() -> Bytes {
    let b = r#"{"module_id":"im","command":"messageChat","params":{"chatId":4711,"dialogId":"chat4711","message":{"id":982340,"senderId":17,"text":"The quarterly report is ready, see the shared folder","date":"2026-11-28T01:45:16+00:00"}}}"#;
    Bytes::from_static(b.as_bytes())
}

fn encodings(c: &mut Criterion) {
    let id = MessageId::new(1_795_830_315, 42);
    let body = body();
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("text_nginxnms", |b| {
        b.iter(|| encode(black_box(id), black_box(&body), black_box(NOW_MS)))
    });
    g.bench_function("protobuf_batch", |b| {
        b.iter(|| {
            encode_message(
                black_box(id),
                black_box(&body),
                3600,
                1_795_830_315,
                Sender::Backend,
            )
        })
    });
    let channel =
        ChannelId::from_hex(b"0123456789abcdef0123456789abcdef").expect("constant hex id");
    let receivers: Box<[Channel]> = vec![Channel::private(channel)].into_boxed_slice();
    g.bench_function("message_both_formats", |b| {
        b.iter(|| {
            Message::new(
                black_box(id),
                body.clone(),
                3600,
                Sender::Backend,
                receivers.clone(),
                NOW_MS,
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("ws_frame_header");
    for (name, len) in [
        ("short_100", 100usize),
        ("medium_300", 300),
        ("long_70000", 70_000),
    ] {
        g.bench_function(name, |b| {
            let mut out = [0u8; 10];
            b.iter(|| frame_header(Opcode::Text, black_box(len), &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, encodings);
criterion_main!(benches);
