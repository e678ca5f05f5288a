//! The embedded engine's state file: stored messages and the newest id, saved at shutdown and
//! reloaded at start, so a restart loses no message that is still within its expiry
//! (spec/history.md §5).
//!
//! The file is JSON lines: a header `{"version":1,"last_id":"…"}` and one line per message
//! `{"id":"…","receivers":["p:<hex>","u:<hex>"],"body":"…","expiry":N,"created":N,
//! "expires_at_ms":N,"sender":null|"<hex>"}`. It is written to a temporary file and renamed, so
//! a crash during the save leaves the previous file.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::message::{Channel, ChannelId, ChannelKind, Message, MessageId, Sender};

/// Format version written in the header.
const VERSION: u32 = 1;

/// One saved message.
#[derive(Serialize, Deserialize)]
struct Line {
    id: String,
    receivers: Vec<String>,
    body: String,
    expiry: u32,
    created: u32,
    expires_at_ms: u64,
    sender: Option<String>,
}

/// The header line.
#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    last_id: Option<String>,
}

/// What a state file held.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The newest id the saving engine had issued or stored.
    pub last_id: Option<MessageId>,
    /// Messages with their expiry time (Unix milliseconds), oldest first.
    pub messages: Vec<(Message, u64)>,
    /// Lines that could not be read (skipped).
    pub skipped: usize,
}

/// Writes the state file atomically; returns how many messages it holds.
pub fn save<'a>(
    path: &Path,
    last_id: Option<MessageId>,
    messages: impl Iterator<Item = (&'a Message, u64)>,
) -> io::Result<usize> {
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::new(std::fs::File::create(&tmp)?);
    let header = Header {
        version: VERSION,
        last_id: last_id.map(|id| id.to_string()),
    };
    serde_json::to_writer(&mut out, &header)?;
    out.write_all(b"\n")?;
    let mut count = 0;
    for (msg, expires_at_ms) in messages {
        serde_json::to_writer(&mut out, &line(msg, expires_at_ms))?;
        out.write_all(b"\n")?;
        count += 1;
    }
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(count)
}

/// Reads a state file; messages expired at `now_ms` are left out. A missing file is an empty
/// snapshot.
pub fn load(path: &Path, now_ms: u64) -> io::Result<Snapshot> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Snapshot::default()),
        Err(e) => return Err(e),
    };
    let mut lines = io::BufReader::new(file).lines();
    let mut snapshot = Snapshot::default();
    let Some(header) = lines.next() else {
        return Ok(snapshot);
    };
    let header: Header = serde_json::from_str(&header?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if header.version != VERSION {
        let msg = format!("state file version {} is not {VERSION}", header.version);
        return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
    }
    snapshot.last_id = header
        .last_id
        .and_then(|id| MessageId::parse(id.as_bytes()));
    for text in lines {
        match serde_json::from_str::<Line>(&text?).ok().and_then(message) {
            Some((msg, at)) if at > now_ms => snapshot.messages.push((msg, at)),
            Some(_) => {}
            None => snapshot.skipped += 1,
        }
    }
    Ok(snapshot)
}

fn line(msg: &Message, expires_at_ms: u64) -> Line {
    Line {
        id: msg.id.to_string(),
        receivers: msg
            .receivers
            .iter()
            .map(|c| match c.kind {
                ChannelKind::Private => format!("p:{}", c.id),
                ChannelKind::Public => format!("u:{}", c.id),
            })
            .collect(),
        body: String::from_utf8_lossy(&msg.body).into_owned(),
        expiry: msg.expiry,
        created: msg.created,
        expires_at_ms,
        sender: match msg.sender {
            Sender::Backend => None,
            Sender::Client(id) => Some(id.to_hex()),
        },
    }
}

fn message(line: Line) -> Option<(Message, u64)> {
    let id = MessageId::parse(line.id.as_bytes())?;
    let receivers = line
        .receivers
        .iter()
        .map(|r| {
            let (kind, hex) = r.split_once(':')?;
            let id = ChannelId::from_hex(hex.as_bytes())?;
            match kind {
                "p" => Some(Channel::private(id)),
                "u" => Some(Channel::public(id)),
                _ => None,
            }
        })
        .collect::<Option<Vec<_>>>()?;
    let sender = match line.sender {
        None => Sender::Backend,
        Some(hex) => Sender::Client(ChannelId::from_hex(hex.as_bytes())?),
    };
    let created_ms = u64::from(line.created) * 1000;
    let msg = Message::new(
        id,
        Bytes::from(line.body.into_bytes()),
        line.expiry,
        sender,
        receivers.into_boxed_slice(),
        created_ms,
    );
    Some((msg, line.expires_at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u64, sender: Sender) -> Message {
        let receivers = vec![
            Channel::private(ChannelId([1; 16])),
            Channel::public(ChannelId([2; 16])),
        ];
        Message::new(
            MessageId::new(1_700_000_000, n),
            Bytes::from_static(b"{\"a\":\"x\\ny\"}"),
            60,
            sender,
            receivers.into_boxed_slice(),
            1_700_000_000_000,
        )
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("pushpull-{name}-{}.jsonl", std::process::id()))
    }

    /// spec/history.md §5: what is saved comes back, expired messages do not.
    #[test]
    fn round_trip_skips_expired() {
        let path = temp("snapshot");
        let a = msg(1, Sender::Backend);
        let b = msg(2, Sender::Client(ChannelId([3; 16])));
        let last = MessageId::new(1_700_000_000, 5);
        let n = save(&path, Some(last), [(&a, 5_000), (&b, 20_000)].into_iter()).unwrap();
        assert_eq!(n, 2);
        let snap = load(&path, 10_000).unwrap();
        assert_eq!(snap.last_id, Some(last));
        assert_eq!(snap.messages.len(), 1);
        let (got, at) = &snap.messages[0];
        assert_eq!((got.id, got.sender, *at), (b.id, b.sender, 20_000));
        assert_eq!(got.receivers, b.receivers);
        assert_eq!(got.body, b.body);
        assert_eq!(got.binary, b.binary);
        std::fs::remove_file(&path).unwrap();
        assert!(load(&path, 0).unwrap().messages.is_empty());
    }

    #[test]
    fn bad_lines_are_skipped() {
        let path = temp("snapshot-bad");
        std::fs::write(
            &path,
            "{\"version\":1,\"last_id\":null}\nnot json\n{\"id\":\"1\"}\n",
        )
        .unwrap();
        let snap = load(&path, 0).unwrap();
        assert_eq!((snap.messages.len(), snap.skipped), (0, 2));
        std::fs::write(&path, "{\"version\":9,\"last_id\":null}\n").unwrap();
        assert!(load(&path, 0).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
