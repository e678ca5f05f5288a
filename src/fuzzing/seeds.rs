//! The hand-made seed inputs committed under `fuzz/corpus/<target>/seed-<name>`: real
//! requests, frames, protobuf batches and configuration files, in each target's input layout.
//! `PUSHPULL_WRITE_FUZZ_SEEDS=1 cargo test --lib fuzzing` rewrites them (see fuzz/README.md).

use prost::Message as _;

use super::FUZZ_KEY;
use super::session::shared;
use crate::message::{ChannelId, MessageId};
use crate::proto::pb::{self, request};
use chunked::{chunked, chunked_body, post_chunked};

mod chunked;

const PRIV: &str = "0123456789abcdef0123456789abcdef";
const PRIV2: &str = "00112233445566778899aabbccddeeff";
const PUB: &str = "fedcba9876543210fedcba9876543210";
const PUB2: &str = "ffeeddccbbaa99887766554433221100";
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// `mid` of a client that has seen nothing yet (below every id the harness issues).
const MID0: &str = "17000000000000000000000000";

/// One seed: target, name, bytes.
pub(super) type Seed = (&'static str, &'static str, Vec<u8>);

/// Every seed of every target.
pub(super) fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    out.extend(http_head());
    out.extend(chunked_body());
    out.extend(ws_frames());
    out.extend(channel_tokens());
    out.extend(text_publish());
    out.extend(request_batch());
    out.extend(config());
    out.extend(session());
    out
}

/// `ids.signature` with the fuzzing key (SHA-1).
fn signed(ids: &str) -> String {
    format!("{ids}.{}", shared(0).signer.sign(ids.as_bytes()))
}

fn public_signature(public: &str) -> Vec<u8> {
    let sig = shared(0).signer.sign(format!("public:{public}").as_bytes());
    hex::decode(sig).unwrap_or_default()
}

fn raw_id(hex: &str) -> Vec<u8> {
    ChannelId::from_hex(hex.as_bytes()).map_or_else(Vec::new, |id| id.0.to_vec())
}

fn get(path_query: &str, extra: &str) -> String {
    format!("GET {path_query} HTTP/1.1\r\nHost: push.example.com\r\n{extra}\r\n")
}

fn upgrade(path_query: &str) -> String {
    let extra = format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\nOrigin: https://portal.example.com\r\n"
    );
    get(path_query, &extra)
}

fn post(path_query: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path_query} HTTP/1.1\r\nHost: 127.0.0.1:8895\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n <= 125 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

fn close(code: u16, reason: &str) -> Vec<u8> {
    frame(
        true,
        0x8,
        &[&code.to_be_bytes()[..], reason.as_bytes()].concat(),
    )
}

fn batch(command: request::Command) -> Vec<u8> {
    pb::RequestBatch {
        requests: vec![pb::Request {
            command: Some(command),
        }],
    }
    .encode_to_vec()
}

fn receiver(hex: &str, is_private: bool, signature: Vec<u8>) -> pb::Receiver {
    pb::Receiver {
        id: raw_id(hex),
        is_private,
        signature,
    }
}

fn publish_batch(receivers: Vec<pb::Receiver>, body: &str, expiry: u32) -> Vec<u8> {
    batch(request::Command::IncomingMessages(
        pb::IncomingMessagesRequest {
            messages: vec![pb::IncomingMessage {
                receivers,
                sender: None,
                body: body.to_owned(),
                expiry,
                r#type: "im_message".to_owned(),
            }],
        },
    ))
}

fn channel_stats_batch(public: bool) -> Vec<u8> {
    let channels = if public {
        vec![pb::ChannelIdPb {
            id: raw_id(PUB2),
            is_private: false,
            signature: public_signature(PUB2),
        }]
    } else {
        vec![
            pb::ChannelIdPb {
                id: raw_id(PRIV),
                is_private: true,
                signature: Vec::new(),
            },
            pb::ChannelIdPb {
                id: raw_id(PUB),
                is_private: false,
                signature: Vec::new(),
            },
        ]
    };
    batch(request::Command::ChannelStats(pb::ChannelStatsRequest {
        channels,
    }))
}

const IM_BODY: &str = r#"{"module_id":"im","command":"messageChat","params":{"chatId":12,"message":{"id":"1044","text":"Hello\u2028there"}},"extra":{"server_time":"2024-05-01T10:00:00+02:00","revision_im_web":127}}"#;

fn http_head() -> Vec<Seed> {
    let subscribe = format!("/bitrix/sub/?CHANNEL_ID={PRIV}/{PRIV2}&tag=1&time=Thu&mid={MID0}");
    let signed_list = format!("{}/{}", signed(PRIV), signed(&format!("{PRIV2}:{PUB}")));
    vec![
        ("http_head", "longpoll", get(&subscribe, "Accept: */*\r\n").into_bytes()),
        (
            "http_head",
            "longpoll-signed-http10",
            format!(
                "GET /sub/?CHANNEL_ID={signed_list}&revision=19 HTTP/1.0\r\n\
                 Connection: keep-alive\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "http_head",
            "websocket-binary",
            upgrade(&format!(
                "/bitrix/subws/?CHANNEL_ID={signed_list}&binaryMode=true"
            ))
            .into_bytes(),
        ),
        (
            "http_head",
            "absolute-form",
            get(
                &format!("http://push.example.com/subws/?CHANNEL_ID={PRIV}#frag"),
                "X-Real-IP: 192.0.2.7\r\n",
            )
            .into_bytes(),
        ),
        (
            "http_head",
            "channel-info",
            get(&format!("/bitrix/pub/?CHANNEL_ID={PRIV}%2F{PRIV2}"), "").into_bytes(),
        ),
        (
            "http_head",
            "publish-expect",
            post(
                &format!("/bitrix/pub/?CHANNEL_ID={PRIV}"),
                "Message-Expiry: 86400\r\nExpect: 100-continue\r\n",
                IM_BODY.as_bytes(),
            ),
        ),
        (
            "http_head",
            "chunked",
            b"POST /pub/?CHANNEL_ID=x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "http_head",
            "preflight",
            b"OPTIONS /bitrix/sub/ HTTP/1.1\r\nOrigin: https://portal.example.com\r\n\
              Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        ("http_head", "server-stat", get("/server-stat/", "").into_bytes()),
        (
            "http_head",
            "http2-version",
            b"\r\nGET /sub/ HTTP/2.0\r\n\r\n".to_vec(),
        ),
    ]
}

fn ws_frames() -> Vec<Seed> {
    let with = |setup: u8, frames: Vec<Vec<u8>>| [vec![setup], frames.concat()].concat();
    let publish = publish_batch(
        vec![receiver(PUB2, false, public_signature(PUB2))],
        IM_BODY,
        0,
    );
    vec![
        (
            "ws_frames",
            "ping-text-close",
            with(
                6,
                vec![
                    frame(true, 0x9, b"hi"),
                    frame(true, 0x1, "caf\u{e9}".as_bytes()),
                    close(1000, "bye"),
                ],
            ),
        ),
        (
            "ws_frames",
            "fragments-with-pong",
            with(
                0,
                vec![
                    frame(false, 0x1, b"frag"),
                    frame(true, 0xa, b"ws ping"),
                    frame(false, 0x0, b"men"),
                    frame(true, 0x0, b"ted"),
                    frame(true, 0x8, b""),
                ],
            ),
        ),
        (
            "ws_frames",
            "binary-batch",
            with(20, vec![frame(true, 0x2, &publish), frame(true, 0x2, &[])]),
        ),
        (
            "ws_frames",
            "length-16-and-64",
            with(
                1,
                vec![
                    frame(true, 0x2, &[0x5a; 300]),
                    frame(true, 0x2, &[0x5a; 70_000])[..14].to_vec(),
                ],
            ),
        ),
        (
            "ws_frames",
            "unmasked",
            with(3, vec![vec![0x81, 0x02, b'o', b'k']]),
        ),
    ]
}

fn channel_tokens() -> Vec<Seed> {
    let with = |setup: u8, list: String| [vec![setup], list.into_bytes()].concat();
    let sha256 =
        crate::proto::channel::Signer::new(Some(FUZZ_KEY), crate::config::SignatureAlgo::Sha256);
    let ids = format!("{PRIV}:{PUB}");
    vec![
        (
            "channel_tokens",
            "private",
            with(3, format!("{PRIV}/{PRIV2}/")),
        ),
        (
            "channel_tokens",
            "private-public",
            with(3, format!("{PRIV}:{PUB}/{PRIV2}:{PUB2}")),
        ),
        (
            "channel_tokens",
            "signed-sha1",
            with(3, format!("{}/{}", signed(PRIV), signed(&ids))),
        ),
        (
            "channel_tokens",
            "signed-sha256",
            with(7, format!("{ids}.{}", sha256.sign(ids.as_bytes()))),
        ),
        (
            "channel_tokens",
            "over-limit",
            with(0, format!("{PRIV}/{PRIV2}/{PUB}")),
        ),
        (
            "channel_tokens",
            "malformed",
            with(
                3,
                format!("{}/nothex/{PRIV}.{}/:", PRIV.to_uppercase(), "0".repeat(39)),
            ),
        ),
    ]
}

fn text_publish() -> Vec<Seed> {
    let with = |setup: u8, query: String, headers: &str, body: &[u8]| {
        [
            &[setup][..],
            query.as_bytes(),
            b"\n",
            headers.as_bytes(),
            b"\n",
            body,
        ]
        .concat()
    };
    vec![
        (
            "text_publish",
            "im-message",
            with(
                1,
                format!("CHANNEL_ID={PRIV}/{PRIV2}"),
                "Message-Expiry: 86400\n",
                IM_BODY.as_bytes(),
            ),
        ),
        (
            "text_publish",
            "line-breaks",
            with(
                2,
                format!("CHANNEL_ID={}", signed(PRIV)),
                "",
                "{\"a\":\r\n\"x\u{2028}y\u{2029}\"}\r\n".as_bytes(),
            ),
        ),
        (
            "text_publish",
            "expect-continue-close",
            with(
                0,
                format!("CHANNEL_ID={PRIV}:{PUB}"),
                "Expect: 100-continue\nConnection: close\n",
                b"[1,2.5e3,\"#!NGINXNME!#\",null]",
            ),
        ),
        (
            "text_publish",
            "not-json",
            with(2, format!("CHANNEL_ID={PRIV}"), "", b"{\"a\":"),
        ),
        (
            "text_publish",
            "no-channel",
            with(2, String::new(), "", b"{}"),
        ),
    ]
}

fn request_batch() -> Vec<Seed> {
    let with = |setup: u8, batch: Vec<u8>| [vec![setup], batch].concat();
    let backend = publish_batch(
        vec![
            receiver(PRIV, true, Vec::new()),
            receiver(PUB, false, Vec::new()),
        ],
        IM_BODY,
        86_400,
    );
    let browser = publish_batch(
        vec![receiver(PUB2, false, public_signature(PUB2))],
        r#"{"module_id":"ui","command":"typing","params":{}}"#,
        0,
    );
    let two = pb::RequestBatch {
        requests: vec![
            pb::Request {
                command: Some(request::Command::ServerStats(pb::ServerStatsRequest {})),
            },
            pb::Request { command: None },
        ],
    }
    .encode_to_vec();
    vec![
        ("request_batch", "backend-publish", with(3, backend)),
        ("request_batch", "browser-publish", with(7, browser)),
        (
            "request_batch",
            "channel-stats",
            with(3, channel_stats_batch(false)),
        ),
        (
            "request_batch",
            "browser-channel-stats",
            with(7, channel_stats_batch(true)),
        ),
        ("request_batch", "server-stats", with(3, two)),
        ("request_batch", "empty", vec![3]),
    ]
}

fn config() -> Vec<Seed> {
    let with = |which: u8, text: &str| [&[which][..], text.as_bytes()].concat();
    let toml = "threads = 2\nsecurity_key = \"k\"\nsignature_algo = \"sha256\"\n\
        longpoll_hold = \"40s\"\nws_ping_interval = 120\nhead_timeout = \"1.5s\"\n\
        keepalive_timeout = \"2m\"\nshutdown_grace = \"500ms\"\nmessage_ttl = 86400\n\
        channel_history = 1000\nhistory_max_bytes = 268435456\nreplay_max = 1000\n\
        max_payload = 1048576\nmax_channels_per_request = 100\nmax_connections = 100000\n\
        out_queue_bytes = 4194304\nlog_level = \"INFO\"\nonline_ttl = 120\nonline_delta = 10\n\
        max_conn_per_channel = 100\nmax_messages_per_request = 100\nstats_interval = 60\n\
        state_file = \"/var/lib/pushpull/state\"\n\n\
        [[listener]]\nkind = \"sub\"\naddr = \"127.0.0.1:8010\"\n\n\
        [[listener]]\nkind = \"pub\"\naddr = \"[::1]:9010\"\n\n\
        [storage]\ntype = \"redis\"\nhost = \"10.0.0.5\"\nport = 6380\ndatabase = 2\n";
    let toml_plain =
        "longpoll_hold = 30.5\nsub_listen = 1\n[storage]\nsocket = \"/run/redis.sock\"\n";
    let json = r#"{"servers":[{"name":"sub-8010","port":8010,"hostname":"127.0.0.1","backlog":1024,"routes":{"sub":"/bitrix/subws/"}}],"clusterMode":true,"processUniqueId":"sub-8010","storage":{"type":"redis","socket":"/var/run/redis/redis-server.sock","messageTLL":86400,"channelTLL":86400,"onlineTLL":120,"onlineDelta":10},"security":{"key":"0123456789abcdefXYZ","algo":"sha1"},"limits":{"maxPayload":1048576,"maxConnPerChannel":100,"maxMessagesPerRequest":100,"maxChannelsPerRequest":100},"debug":{"folderName":"/var/log/push-server","ip":["127.0.0.1"],"trustProxy":true}}"#;
    let json_pub = r#"{"servers":[{"port":9010,"hostname":"__WS_HOST__","routes":{"pub":"/bitrix/pub/","stat":"/server-stat/","rest":"/bitrix/rest/"}}],"publishMode":true,"storage":{"type":"memory","messageTTL":"3600","onlineTTL":__TTL__}}"#;
    let sysconfig = "HG_DIR=/opt/push-server\nBASE_SUB=801   # sub ports\nBASE_PUB=901\n\
        ID_SUB=5\nID_PUB=1\nIP_LIST='\"127.0.0.1\", \"10.0.0.0/24\"'\nWS_HOST=\"0.0.0.0\"\n\
        PUBPATH=/bitrix/pub/\nSUBPATH=/bitrix/sub/\nSUBWSPATH=/bitrix/subws/\n\
        RESTPATH=/bitrix/rest/\nSECURITY_KEY=\nexport SECURITY_KEY='0123456789abcdefXYZ'\n\
        REDIS_SOCK=/var/run/redis/redis-server.sock\n";
    let toml_keyless = "longpoll_hold = 30.5\nhead_timeout = \"250ms\"\nlog_level = \" Debug \"\n\
        state_file = \"\"\n[storage]\nsocket = \"/run/redis.sock\"\ndatabase = 3\n";
    let sysconfig_keyless = "BASE_SUB=\"802\"\nID_SUB=0\nID_PUB=0\nSECURITY_KEY=\n";
    let both = [json.as_bytes(), b"\0", b"BASE_SUB=802\nSECURITY_KEY=$KEY\n"].concat();
    vec![
        ("config", "toml-every-key", with(0, toml)),
        ("config", "toml-unknown-key", with(0, toml_plain)),
        ("config", "bitrix-sub-json", with(1, json)),
        ("config", "bitrix-pub-json-placeholders", with(1, json_pub)),
        ("config", "toml-keyless-redis-socket", with(0, toml_keyless)),
        ("config", "sysconfig", with(2, sysconfig)),
        ("config", "sysconfig-keyless", with(2, sysconfig_keyless)),
        ("config", "json-and-sysconfig", [&[3][..], &both].concat()),
    ]
}

/// Session script operations (see `session::session`).
fn op(kind: u8, arg: u8) -> u8 {
    kind | arg << 3
}

const READ: u8 = 0;
const ADVANCE: u8 = 1;
const ENGINE: u8 = 2;
const OTHER: u8 = 3;
const WRITES: u8 = 4;
const EOF: u8 = 5;
const SHUTDOWN: u8 = 6;
const READ_ALL: u8 = 7;

/// Read operations that take exactly `n` bytes of the stream.
fn reads(mut n: usize) -> Vec<u8> {
    let mut ops = Vec::new();
    while n > 0 {
        let a = (1..=31u8)
            .rev()
            .find(|&a| usize::from(a) * usize::from(a) < n)
            .unwrap_or(0);
        ops.push(op(READ, a));
        n -= 1 + usize::from(a) * usize::from(a);
    }
    ops
}

/// A session input: setup byte, script, stream. `steps` pairs stream parts with the script
/// that follows each part's reads.
fn script(setup: u8, steps: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<u8> {
    let mut ops = Vec::new();
    let mut stream = Vec::new();
    for (bytes, after) in steps {
        ops.extend(reads(bytes.len()));
        ops.extend(after);
        stream.extend(bytes);
    }
    let len = u8::try_from(ops.len()).unwrap_or(u8::MAX);
    [vec![setup, len], ops, stream].concat()
}

/// Setup byte: listener, configuration (0 keyed, 1 keyless), engine queue capacity.
fn setup(publisher: bool, keyless: bool, capacity: u8) -> u8 {
    u8::from(publisher) | u8::from(keyless) << 1 | (capacity - 1) << 2
}

/// A long-poll on [`PRIV`] from a client that has seen message `counter`.
fn poll_after(counter: u64) -> String {
    let mid = MessageId::new(1_700_000_000, counter);
    get(&format!("/sub/?CHANNEL_ID={PRIV}&mid={mid}"), "")
}

fn session() -> Vec<Seed> {
    let ws_tokens = format!("{}/{}", signed(PRIV), signed(&format!("{PRIV2}:{PUB}")));
    let ws_publish = publish_batch(
        vec![receiver(PUB2, false, public_signature(PUB2))],
        IM_BODY,
        60,
    );
    let poll = get(&format!("/sub/?CHANNEL_ID={PRIV}&mid={MID0}"), "");
    let binary_pub = post(
        "/bitrix/pub/?binaryMode=true",
        "",
        &publish_batch(vec![receiver(PRIV, true, Vec::new())], IM_BODY, 3600),
    );
    vec![
        (
            "session",
            "longpoll-message-then-304",
            script(
                setup(false, true, 4),
                vec![
                    (poll.clone().into_bytes(), vec![op(ENGINE, 0), op(OTHER, 0)]),
                    (
                        poll.clone().into_bytes(),
                        vec![op(ENGINE, 0), op(ADVANCE, 18)],
                    ),
                ],
            ),
        ),
        (
            "session",
            "longpoll-replay-pages-pipelined",
            script(
                setup(false, true, 2),
                vec![
                    (
                        poll.clone().into_bytes(),
                        vec![op(ENGINE, 0), op(OTHER, 16), op(OTHER, 17), op(OTHER, 19)],
                    ),
                    (
                        [poll_after(1), poll_after(2)].concat().into_bytes(),
                        vec![op(ENGINE, 1), op(ENGINE, 1), op(ADVANCE, 18)],
                    ),
                ],
            ),
        ),
        (
            "session",
            "websocket-text",
            script(
                setup(false, false, 8),
                vec![
                    (
                        upgrade(&format!("/bitrix/subws/?CHANNEL_ID={ws_tokens}")).into_bytes(),
                        vec![op(ENGINE, 0), op(OTHER, 0), op(OTHER, 5), op(ADVANCE, 25)],
                    ),
                    (frame(true, 0xa, b"ws ping"), vec![op(OTHER, 1)]),
                    (frame(true, 0x9, b"are you there"), vec![]),
                    (close(1000, "bye"), vec![op(EOF, 0)]),
                ],
            ),
        ),
        (
            "session",
            "websocket-binary-publish",
            script(
                setup(false, false, 8),
                vec![
                    (
                        upgrade(&format!(
                            "/bitrix/subws/?CHANNEL_ID={ws_tokens}&binaryMode=true&mid={MID0}"
                        ))
                        .into_bytes(),
                        vec![op(ENGINE, 0)],
                    ),
                    (frame(true, 0x2, &ws_publish), vec![op(ENGINE, 0)]),
                    (
                        frame(true, 0x2, &channel_stats_batch(true)),
                        vec![op(ENGINE, 8)],
                    ),
                    (frame(false, 0x2, &ws_publish[..4]), vec![]),
                    (frame(true, 0x0, &ws_publish[4..]), vec![op(ENGINE, 4)]),
                ],
            ),
        ),
        (
            "session",
            "websocket-slow-subscriber",
            script(
                setup(false, true, 4),
                vec![(
                    upgrade(&format!("/subws/?CHANNEL_ID={PRIV}/{PRIV2}")).into_bytes(),
                    [
                        vec![op(ENGINE, 0), op(WRITES, 0)],
                        vec![op(OTHER, 2); 6],
                        vec![op(WRITES, 31)],
                    ]
                    .concat(),
                )],
            ),
        ),
        (
            "session",
            "publisher-keepalive",
            script(
                setup(true, false, 4),
                vec![
                    (
                        post(
                            &format!("/bitrix/pub/?CHANNEL_ID={PRIV}/{}", signed(PRIV2)),
                            "Message-Expiry: 86400\r\nExpect: 100-continue\r\n",
                            IM_BODY.as_bytes(),
                        ),
                        vec![op(ENGINE, 0)],
                    ),
                    (
                        get(&format!("/bitrix/pub/?CHANNEL_ID={PRIV}"), "").into_bytes(),
                        vec![op(ENGINE, 8)],
                    ),
                    (binary_pub, vec![op(ENGINE, 2)]),
                    (
                        post(
                            "/bitrix/pub/?binaryMode=true",
                            "",
                            &channel_stats_batch(false),
                        ),
                        vec![op(ENGINE, 0)],
                    ),
                    (
                        get("/server-stat/", "Connection: close\r\n").into_bytes(),
                        vec![],
                    ),
                ],
            ),
        ),
        (
            "session",
            "publisher-pipeline",
            script(
                setup(true, false, 4),
                vec![
                    (
                        [
                            post(
                                &format!("/bitrix/pub/?CHANNEL_ID={PRIV}"),
                                "Message-Expiry: 60\r\n",
                                IM_BODY.as_bytes(),
                            ),
                            post(&format!("/bitrix/pub/?CHANNEL_ID={PRIV}"), "", b"  "),
                            post(
                                &format!("/bitrix/pub/?CHANNEL_ID={}", signed(PRIV2)),
                                "",
                                IM_BODY.as_bytes(),
                            ),
                            get(&format!("/bitrix/pub/?CHANNEL_ID={PRIV}"), "").into_bytes(),
                            post(
                                &format!("/bitrix/pub/?CHANNEL_ID={PRIV}"),
                                "",
                                IM_BODY.as_bytes(),
                            ),
                        ]
                        .concat(),
                        vec![op(ENGINE, 16), op(ENGINE, 2)],
                    ),
                    (
                        post(
                            &format!("/bitrix/pub/?CHANNEL_ID={PRIV}"),
                            "",
                            IM_BODY.as_bytes(),
                        ),
                        vec![op(EOF, 0), op(ENGINE, 0)],
                    ),
                ],
            ),
        ),
        (
            "session",
            "publisher-chunked",
            script(
                setup(true, false, 4),
                vec![
                    (
                        post_chunked(
                            &format!("/bitrix/pub/?CHANNEL_ID={PRIV}"),
                            "Expect: 100-continue\r\nMessage-Expiry: 60\r\n",
                            &chunked(IM_BODY.as_bytes(), 64, ";n=v", "X-Trailer: t\r\n"),
                        ),
                        vec![op(ENGINE, 0)],
                    ),
                    (
                        [
                            get(
                                &format!("/bitrix/pub/?CHANNEL_ID={PRIV}"),
                                "Transfer-Encoding: chunked\r\n",
                            )
                            .into_bytes(),
                            chunked(PRIV.as_bytes(), 7, "", ""),
                            post_chunked(
                                "/bitrix/pub/?binaryMode=true",
                                "",
                                &chunked(
                                    &publish_batch(
                                        vec![receiver(PRIV, true, Vec::new())],
                                        IM_BODY,
                                        0,
                                    ),
                                    1,
                                    "",
                                    "",
                                ),
                            ),
                        ]
                        .concat(),
                        vec![op(ENGINE, 8), op(ENGINE, 0)],
                    ),
                    (
                        post_chunked(&format!("/pub/?CHANNEL_ID={PRIV}"), "", b"5\r\nhello\n"),
                        vec![],
                    ),
                ],
            ),
        ),
        (
            "session",
            "browser-rest-publish",
            script(
                setup(true, false, 1),
                vec![(
                    post(
                        &format!(
                            "/bitrix/rest/?CHANNEL_ID={}",
                            signed(&format!("{PRIV}:{PUB}"))
                        ),
                        "Origin: https://portal.example.com\r\n",
                        &publish_batch(
                            vec![receiver(PUB2, false, public_signature(PUB2))],
                            IM_BODY,
                            0,
                        ),
                    ),
                    vec![op(ENGINE, 0)],
                )],
            ),
        ),
        (
            "session",
            "slow-head-408",
            script(
                setup(false, true, 4),
                vec![(
                    b"GET /sub/?CHANNEL_ID=".to_vec(),
                    vec![op(ADVANCE, 5), op(ADVANCE, 12)],
                )],
            ),
        ),
        (
            "session",
            "shutdown-while-polling",
            script(
                setup(false, true, 4),
                vec![(poll.into_bytes(), vec![op(ENGINE, 0), op(SHUTDOWN, 0)])],
            ),
        ),
        (
            "session",
            "read-all-garbage",
            [
                vec![setup(false, true, 1), 2, op(READ_ALL, 0), op(EOF, 0)],
                b"GET /sub/?CHANNEL_ID=zz HTTP/1.1\r\n\r\n\x16\x03\x01\x02\x00\x01".to_vec(),
            ]
            .concat(),
        ),
    ]
}

#[test]
fn reads_take_exact_lengths() {
    for n in [0, 1, 2, 961, 962, 963, 5000] {
        let total: usize = reads(n)
            .iter()
            .map(|&o| 1 + usize::from(o >> 3) * usize::from(o >> 3))
            .sum();
        assert_eq!(total, n);
    }
    assert_eq!(
        MessageId::parse(MID0.as_bytes()).map(|m| m.counter()),
        Some(0)
    );
}
