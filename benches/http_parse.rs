//! Criterion: parsing request heads (`proto::http::parse_request_head`), the first thing done
//! with every subscriber connection, long poll and publish.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pushpull::proto::http::{HeadLimits, parse_request_head};

/// A browser's WebSocket subscription as it reaches pushpull through nginx.
const WS_UPGRADE: &[u8] = b"GET /bitrix/subws/?CHANNEL_ID=0123456789abcdef0123456789abcdef.2f1c8a7b6d5e4f30a1b2c3d4e5f60718293a4b5c/fedcba9876543210fedcba9876543210.0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3&revision=19 HTTP/1.1\r\n\
Host: portal.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Origin: https://portal.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
X-Real-IP: 203.0.113.7\r\n\
X-Forwarded-For: 203.0.113.7\r\n\r\n";

/// A long poll resuming from a message id.
const LONG_POLL: &[u8] = b"GET /bitrix/sub/?CHANNEL_ID=0123456789abcdef0123456789abcdef&mid=17958303150000000000000001&tag=775&time=Sat%2C%2028%20Nov%202026%2001%3A45%3A16%20GMT&revision=19 HTTP/1.1\r\n\
Host: 127.0.0.1:8010\r\n\
Accept: */*\r\n\
Connection: keep-alive\r\n\r\n";

/// The PHP module's publish (head only; the body follows it).
const PUBLISH: &[u8] =
    b"POST /bitrix/pub/?CHANNEL_ID=0123456789abcdef0123456789abcdef HTTP/1.1\r\n\
Host: 127.0.0.1:9010\r\n\
Content-Type: application/x-www-form-urlencoded\r\n\
Message-Expiry: 86400\r\n\
Content-Length: 200\r\n\r\n";

fn heads(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut g = c.benchmark_group("http_request_head");
    for (name, head) in [
        ("websocket_upgrade", WS_UPGRADE),
        ("long_poll", LONG_POLL),
        ("publish", PUBLISH),
    ] {
        // Every sample head parses completely; a bench of a failing parse would measure nothing.
        assert!(matches!(parse_request_head(head, &limits), Ok(Some(_))));
        g.throughput(Throughput::Bytes(head.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| parse_request_head(black_box(head), black_box(&limits)))
        });
    }
    // A head arriving in two reads: the first call sees a partial head.
    let half = &WS_UPGRADE[..WS_UPGRADE.len() / 2];
    g.bench_function("websocket_upgrade_partial", |b| {
        b.iter(|| parse_request_head(black_box(half), black_box(&limits)))
    });
    g.finish();
}

criterion_group!(benches, heads);
criterion_main!(benches);
