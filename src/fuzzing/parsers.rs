//! The parser targets: each calls one parser as the server does and checks what it returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::session::{Harness, shared};
use super::{FUZZ_KEY, Input, check};
use crate::config::{Cli, Config, ConfigError, ListenerKind, SignatureAlgo, Storage, bitrix};
use crate::message::{Channel, ChannelId, ChannelKind, Message, MessageId, Sender};
use crate::proto::channel::{ChannelError, Signer, Subscription};
use crate::proto::http::{HeadLimits, parse_request_head, percent_decode, query_param};
use crate::proto::request::{self, ClientRequest, RequestLimits, Trust};
use crate::proto::ws::{self, Incoming, Reader, WsError};

/// The browser's own public channel in the `request_batch` and `text_publish` targets.
const OWN_PUBLIC: ChannelId = ChannelId([0xab; 16]);
/// A private channel of the same user.
const OWN_PRIVATE: ChannelId = ChannelId([0xcd; 16]);
/// Paths served by a pub listener (the rest goes to a sub listener).
const PUB_SIDE: [&str; 5] = [
    "/pub",
    "/bitrix/pub",
    "/rest",
    "/bitrix/rest",
    "/server-stat",
];

/// A request head, whole and cut short, its query parameters as the subscribe and publish
/// handlers read them, then the request itself on the listener that serves its path.
pub fn http_head(data: &[u8]) {
    let limits = HeadLimits::default();
    let whole = parse_request_head(data, &limits);
    // The reactor hands the parser a growing buffer: a prefix must ask for more bytes or give
    // the whole input's answer, else a request would be judged by how it was cut into reads.
    let cut = data
        .first()
        .map_or(0, |&b| data.len() * usize::from(b) / 256);
    for cut in [cut, data.len() / 2, data.len().saturating_sub(1)] {
        if cut < data.len() {
            let prefix = parse_request_head(&data[..cut], &limits);
            if prefix != Ok(None) {
                assert_eq!(prefix, whole, "a prefix of {cut} bytes is judged otherwise");
            }
        }
    }
    let Ok(Some((n, head))) = &whole else {
        return;
    };
    assert!(*n <= data.len() && *n <= limits.max_bytes);
    assert!(head.path.starts_with('/'));
    assert_eq!(parse_request_head(&data[..*n], &limits), whole);

    let decoded = percent_decode(&head.query);
    assert!(decoded.len() <= head.query.len());
    if let Some(mid) = query_param(&head.query, "mid") {
        if let Some(id) = MessageId::parse(&mid) {
            assert_eq!(&id.digits()[..], &mid[..]);
        }
    }
    let list = query_param(&head.query, "CHANNEL_ID").unwrap_or_default();
    let signed = list.contains(&b'.');
    // Signed tokens are checked under the keyed configuration, unsigned under the keyless one.
    let variant = u8::from(!signed);
    let config = &shared(variant).config;
    channel_list(
        &list,
        &shared(variant).signer,
        config.max_channels_per_request,
    );

    let kind = if PUB_SIDE.iter().any(|p| head.path.starts_with(p)) {
        ListenerKind::Pub
    } else {
        ListenerKind::Sub
    };
    let mut h = Harness::new(kind, variant, 4);
    h.arrive(data);
    h.engine_step(0);
    h.finish();
}

/// Client frames read in one go and re-fed in small reads (as the session re-feeds its
/// buffer) give the same messages and the same error.
///
/// Byte 0: bit 0 small limits; bits 1–7 the read size − 1. The rest: the frames.
pub fn ws_frames(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.byte();
    let limits = if setup & 1 == 0 {
        (ws::DEFAULT_MAX_FRAME_PAYLOAD, ws::DEFAULT_MAX_MESSAGE)
    } else {
        (125 + usize::from(setup), 300)
    };
    let read = usize::from(setup >> 1) + 1;
    let stream = input.rest();
    let whole = read_frames(stream, stream.len().max(1), limits);
    let chunked = read_frames(stream, read, limits);
    assert_eq!(
        whole, chunked,
        "frames read in reads of {read} bytes differ"
    );
}

/// What a [`Reader`] makes of `stream` fed `read` bytes at a time: the messages (`None` for
/// an absorbed fragment), the error that ended it, and the bytes left unread (without an
/// error).
type Frames = (Vec<Option<Incoming>>, Option<WsError>, usize);

fn read_frames(stream: &[u8], read: usize, (max_frame, max_message): (usize, usize)) -> Frames {
    let mut reader = Reader::new(max_frame, max_message);
    let mut buffer = Vec::new();
    let mut out = Vec::new();
    for chunk in stream.chunks(read) {
        buffer.extend_from_slice(chunk);
        loop {
            match reader.read(&buffer) {
                Ok(None) => break,
                Ok(Some((n, message))) => {
                    assert!(
                        n > 0 && n <= buffer.len(),
                        "consumed {n} of {}",
                        buffer.len()
                    );
                    buffer.drain(..n);
                    if let Some(m) = &message {
                        incoming(m, max_message);
                    }
                    out.push(message);
                }
                // The connection closes: what is left unread no longer matters.
                Err(e) => return (out, Some(e), 0),
            }
        }
    }
    (out, None, buffer.len())
}

fn incoming(message: &Incoming, max_message: usize) {
    match message {
        Incoming::Text(t) => {
            assert!(t.len() <= max_message);
            assert!(std::str::from_utf8(t).is_ok());
        }
        Incoming::Binary(b) => assert!(b.len() <= max_message),
        Incoming::Ping(p) | Incoming::Pong(p) => assert!(p.len() <= ws::MAX_CONTROL_PAYLOAD),
        Incoming::Close(Some((code, reason))) => {
            assert!(ws::is_valid_close_code(*code));
            assert!(reason.len() <= ws::MAX_CLOSE_REASON);
        }
        Incoming::Close(None) => {}
    }
}

/// A `CHANNEL_ID` list under each signature algorithm, with and without a key; a list of
/// unsigned tokens, signed with the key, gives the channels an independent reading predicts.
///
/// Byte 0: bits 0–1 the channel limit (1, 2, 4, 100), bit 2 SHA-256. The rest: the list.
pub fn channel_tokens(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.byte();
    let max = [1, 2, 4, 100][usize::from(setup & 3)];
    let algo = if setup & 4 == 0 {
        SignatureAlgo::Sha1
    } else {
        SignatureAlgo::Sha256
    };
    let list = input.rest();
    let keyless = Signer::new(None, algo);
    let keyed = Signer::new(Some(FUZZ_KEY), algo);
    channel_list(list, &keyless, max);
    channel_list(list, &keyed, max);
    if list.contains(&b'.') {
        return;
    }
    let expected = model_subscription(list, max);
    let tokens = list.split(|&b| b == b'/').filter(|t| !t.is_empty());
    let signed: Vec<Vec<u8>> = tokens
        .map(|t| [t, b".", keyed.sign(t).as_bytes()].concat())
        .collect();
    let got = keyed.subscription(&signed.join(&b'/'), max);
    assert_eq!(got, expected, "signed list {list:?}");
    if let Ok(sub) = got {
        for c in sub
            .channels
            .iter()
            .filter(|c| c.kind == ChannelKind::Public)
        {
            let data = format!("public:{}", c.id.to_hex());
            let signature = hex::decode(keyed.sign(data.as_bytes())).unwrap_or_default();
            assert!(keyed.public_signature_valid(c.id, &signature));
        }
    }
}

/// spec/channels.md §2, read independently of `Signer`, for a list of valid signatures.
fn model_subscription(list: &[u8], max: usize) -> Result<Subscription, ChannelError> {
    let id = |hex: &[u8]| ChannelId::from_hex(hex).ok_or(ChannelError::WrongChannelId);
    let mut sub = Subscription {
        channels: Vec::new(),
        own_public: None,
        capped: Vec::new(),
    };
    let add = |set: &mut Vec<Channel>, c: Channel| {
        if !set.contains(&c) {
            set.push(c);
        }
    };
    for (i, token) in list
        .split(|&b| b == b'/')
        .filter(|t| !t.is_empty())
        .enumerate()
    {
        if i >= max {
            return Err(ChannelError::TooManyChannels);
        }
        let (private, public) = match token.len() {
            32 => (id(token)?, None),
            65 if token[32] == b':' => (id(&token[..32])?, Some(id(&token[33..])?)),
            _ => return Err(ChannelError::WrongChannelId),
        };
        add(&mut sub.channels, Channel::private(private));
        if let Some(public) = public {
            add(&mut sub.channels, Channel::public(public));
            add(&mut sub.capped, Channel::private(private));
            sub.own_public.get_or_insert(public);
        }
    }
    // No token at all is a wrong list (4010), as in the reference.
    if sub.channels.is_empty() {
        return Err(ChannelError::WrongChannelId);
    }
    Ok(sub)
}

/// What a subscriber's and a publisher's reading of a list may give.
fn channel_list(list: &[u8], signer: &Signer, max: usize) {
    if let Ok(sub) = signer.subscription(list, max) {
        assert!(!sub.channels.is_empty() && sub.channels.len() <= 2 * max);
        assert_unique(&sub.channels);
        if let Some(public) = sub.own_public {
            assert!(sub.channels.contains(&Channel::public(public)));
        }
        for c in &sub.capped {
            assert!(c.kind == ChannelKind::Private && sub.channels.contains(c));
        }
    }
    if let Ok(targets) = signer.publish_targets(list, max) {
        assert!(!targets.is_empty() && targets.len() <= max);
        assert_unique(&targets);
        assert!(targets.iter().all(|c| c.kind == ChannelKind::Private));
    }
}

fn assert_unique(channels: &[Channel]) {
    for (i, c) in channels.iter().enumerate() {
        assert!(!channels[..i].contains(c), "{c:?} twice");
    }
}

/// `POST /pub/` with a text body: the query, header lines and body come from the input, the
/// engine accepts what reaches it; an accepted body must come back unchanged, and its text
/// frame must hold it (spec/publishing.md §1, spec/text-format.md). A query with
/// `binaryMode=true` makes it a protobuf publish, checked by the session only.
///
/// Byte 0: bit 0 `/bitrix/pub/` instead of `/pub/`, bit 1 the keyless configuration. Then
/// the query up to `\n`, header lines up to an empty line, and the body.
pub fn text_publish(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.byte();
    let path: &[u8] = if setup & 1 == 0 {
        b"/pub/"
    } else {
        b"/bitrix/pub/"
    };
    let query = input.until(b'\n');
    let mut request = [
        b"POST ",
        path,
        b"?",
        query,
        b" HTTP/1.1\r\nHost: pushpull\r\n",
    ]
    .concat();
    loop {
        let line = input.until(b'\n');
        if line.is_empty() {
            break;
        }
        request.extend_from_slice(line);
        request.extend_from_slice(b"\r\n");
    }
    let body = input.rest();
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);

    let mut h = Harness::new(ListenerKind::Pub, setup >> 1, 4);
    h.arrive(&request);
    h.engine_step(0);
    h.finish();
    // With `binaryMode=true` in the query the body is a protobuf request (`request_batch`).
    // The query as the server reads it (without a `#fragment`).
    let binary = match parse_request_head(&request, &HeadLimits::default()) {
        Ok(Some((_, head))) => query_param(&head.query, "binaryMode").is_some_and(|v| v == b"true"),
        _ => false,
    };
    let published = &h.scripted.published;
    let Some((status, answer)) = first_answer(&h.written).filter(|_| !binary) else {
        return;
    };
    match status {
        200 => {
            let [msg] = &published[..] else {
                panic!("200 for {} publications", published.len());
            };
            // The body as UTF-8, invalid sequences as U+FFFD (spec/publishing.md §1).
            let text = String::from_utf8_lossy(body);
            assert_eq!(&msg.body[..], text.as_bytes(), "the published body changed");
            let mid: Value = serde_json::from_slice(answer).unwrap_or_default();
            assert_eq!(mid["mid"], Value::from(msg.id.to_string()));
        }
        _ => assert!(published.is_empty(), "{status} for an accepted publication"),
    }
}

/// Status and body of the first final answer in `out`.
fn first_answer(mut out: &[u8]) -> Option<(u16, &[u8])> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut head = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = head.parse(out).ok()? else {
            return None;
        };
        let status = head.code?;
        let length = head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("Content-Length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        out = &out[n..];
        if status != 100 {
            return Some((status, out.get(..length)?));
        }
    }
}

/// A protobuf `RequestBatch` from the back end and from a browser (spec/binary.md §3–§4);
/// then the same bytes as the body of `POST /pub/?binaryMode=true` or `POST /rest/`.
///
/// Byte 0: bits 0–1 the limits (1, 2, 4, 100 messages and channels), bit 2 `/rest/`. The
/// rest: the batch.
pub fn request_batch(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.byte();
    let n = [1, 2, 4, 100][usize::from(setup & 3)];
    let limits = RequestLimits {
        messages: n,
        channels: n,
    };
    let batch = input.rest();
    let signer = Signer::new(Some(FUZZ_KEY), SignatureAlgo::Sha1);
    for trust in [Trust::Backend, Trust::Client(OWN_PUBLIC)] {
        if let Ok(parsed) = request::parse(batch, trust, &signer, limits) {
            client_request(&parsed, trust, limits);
        }
    }

    let shared = shared(0);
    let target = if setup & 4 == 0 {
        "/pub/?binaryMode=true".to_owned()
    } else {
        let ids = format!("{}:{}", OWN_PRIVATE.to_hex(), OWN_PUBLIC.to_hex());
        let token = format!("{ids}.{}", shared.signer.sign(ids.as_bytes()));
        format!("/rest/?CHANNEL_ID={token}")
    };
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: pushpull\r\nContent-Length: {}\r\n\r\n",
        batch.len()
    );
    let request = [head.as_bytes(), batch].concat();
    let mut h = Harness::new(ListenerKind::Pub, 0, 4);
    h.arrive(&request);
    h.engine_step(0);
    h.finish();
}

fn client_request(parsed: &ClientRequest, trust: Trust, limits: RequestLimits) {
    let channels = |list: &[Channel]| {
        assert!(!list.is_empty() && list.len() <= limits.channels);
        assert_unique(list);
        if let Trust::Client(_) = trust {
            assert!(list.iter().all(|c| c.kind == ChannelKind::Public));
        }
    };
    match parsed {
        ClientRequest::Publish(messages) => {
            assert!(messages.len() <= limits.messages);
            for (i, p) in messages.iter().enumerate() {
                channels(&p.receivers);
                let sender = match trust {
                    Trust::Backend => Sender::Backend,
                    Trust::Client(public) => Sender::Client(public),
                };
                assert_eq!(p.sender, sender);
                let id = MessageId::new(1_700_000_000, i as u64 + 1);
                let receivers = p.receivers.clone().into_boxed_slice();
                let msg = Message::new(id, p.body.clone(), p.expiry, p.sender, receivers, 0);
                check::message(&Arc::new(msg));
            }
        }
        ClientRequest::ChannelStats(list) => channels(list),
        ClientRequest::ServerStats => assert_eq!(trust, Trust::Backend),
    }
}

/// A configuration file: pushpull's TOML, a Bitrix `push-server-*.json` or the BitrixVM
/// sysconfig file, loaded as the server loads it. A loaded configuration printed by
/// `check-config` loads back to the same settings (when it has no secret, which is redacted).
///
/// Byte 0 (mod 4): 0 TOML, 1 JSON, 2 sysconfig, 3 JSON and sysconfig (split at the first
/// NUL byte). The rest: UTF-8 text.
pub fn config(data: &[u8]) {
    let mut input = Input::new(data);
    let which = input.byte() % 4;
    let json_path = Path::new("push-server-sub-8010.json");
    let sys_path = Path::new("push-server-multi");
    let loaded = match which {
        0 => text(input.rest()).map(load_toml),
        1 => text(input.rest()).map(|t| bitrix::config_from_texts(Some((json_path, t)), None)),
        2 => text(input.rest()).map(|t| bitrix::config_from_texts(None, Some((sys_path, t)))),
        _ => {
            let json = input.until(0);
            text(json)
                .zip(text(input.rest()))
                .map(|(j, s)| bitrix::config_from_texts(Some((json_path, j)), Some((sys_path, s))))
        }
    };
    let Some(Ok(config)) = loaded else {
        return;
    };
    let printed = config.to_toml();
    let secret = config.security_key.is_some()
        || matches!(&config.storage, Storage::Redis(r) if r.password.is_some());
    if secret {
        return;
    }
    match load_toml(&printed) {
        Ok(again) => {
            let expected = Config {
                bitrix_sources: Vec::new(),
                warnings: Vec::new(),
                ..config
            };
            assert_eq!(
                again, expected,
                "check-config output loads otherwise:\n{printed}"
            );
        }
        Err(e) => panic!("check-config output does not load ({e}):\n{printed}"),
    }
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// pushpull's own file with `text` as its content.
fn load_toml(text: &str) -> Result<Config, ConfigError> {
    let cli = Cli {
        config: Some(PathBuf::from("pushpull.toml")),
        ..Cli::default()
    };
    Config::load_from(&cli, &[], |_| Ok(text.to_owned()))
}
