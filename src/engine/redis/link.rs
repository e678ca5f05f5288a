//! Connections to the Redis servers: the client of a configured address (TLS when asked), a
//! connection re-established with backoff after a failure (an engine connection notes the
//! server's id state on its first contact: the origin of the first catch-up), and the
//! subscriber thread of one server's pub/sub stream (spec/cluster.md §5, §8, §9).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender as ChanSender;
use log::{info, warn};
use redis::{Client, Connection, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::{reads, scripts};
use crate::config::{RedisAddr, RedisConfig};
use crate::engine::{StreamEvent, StreamMsg};
use crate::message::{MessageId, SharedMessage};

/// Time allowed to connect to Redis, and to any one round trip: a stalled Redis (not closed,
/// just silent) is detected after this long and treated as lost.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before the first reconnection attempt; doubled after each failure.
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest blocking read of the subscriber thread, so that it notices a shutdown.
const SUBSCRIBER_POLL: Duration = Duration::from_millis(500);

/// The server's id state at this node's first contact with it: where the first catch-up of
/// its stream starts (spec/cluster.md §8).
///
/// ```text
///   Unwanted                          (subscriber thread: its stream starts at its SUBSCRIBE)
///   Unread ──first connection, read before any other command──▶ Read(id)   (kept for good)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// Not noted.
    Unwanted,
    /// To be read on the first connection; `call:` [`Link::get`], `next:` `Read`.
    Unread { sharded: bool },
    /// Every message the server stores later has a greater id.
    Read(MessageId),
}

/// A Redis connection that is re-established with backoff after a failure.
pub(super) struct Link {
    client: Client,
    conn: Option<Connection>,
    next_attempt: Instant,
    backoff: Duration,
    what: String,
    origin: Origin,
}

impl Link {
    pub(super) fn new(client: Client, what: String, origin: Origin) -> Self {
        Self {
            client,
            conn: None,
            next_attempt: Instant::now(),
            backoff: BACKOFF_MIN,
            what,
            origin,
        }
    }

    /// The connection, connecting if the backoff allows; `None` while Redis is unreachable. The
    /// first connection of a link that wants its [`Origin`] reads it before it is handed out,
    /// so no publish of this node, and no message another node publishes later, comes before
    /// it.
    pub(super) fn get(&mut self) -> Option<&mut Connection> {
        if self.conn.is_none() && Instant::now() >= self.next_attempt {
            match self.connect() {
                Ok(conn) => {
                    info!("redis {}: connected", self.what);
                    self.backoff = BACKOFF_MIN;
                    self.conn = Some(conn);
                }
                Err(e) => {
                    warn!(
                        "redis {}: cannot connect ({e}); retrying in {:?}",
                        self.what, self.backoff
                    );
                    self.next_attempt = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.conn.as_mut()
    }

    /// A new connection with the timeouts set, the origin read if still unread.
    fn connect(&mut self) -> redis::RedisResult<Connection> {
        let mut conn = self
            .client
            .get_connection_with_timeout(DEFAULT_REDIS_TIMEOUT)?;
        conn.set_read_timeout(Some(DEFAULT_REDIS_TIMEOUT))?;
        conn.set_write_timeout(Some(DEFAULT_REDIS_TIMEOUT))?;
        if let Origin::Unread { sharded } = self.origin {
            let origin = reads::origin(&mut conn, sharded)?;
            info!("redis {}: first contact, id state {origin}", self.what);
            self.origin = Origin::Read(origin);
        }
        Ok(conn)
    }

    /// The server's id state at the first contact, once read.
    pub(super) fn origin(&self) -> Option<MessageId> {
        match self.origin {
            Origin::Read(id) => Some(id),
            Origin::Unwanted | Origin::Unread { .. } => None,
        }
    }

    /// The connection, connecting at once whatever the backoff.
    pub(super) fn get_now(&mut self) -> Option<&mut Connection> {
        self.next_attempt = Instant::now();
        self.get()
    }

    /// Drops the connection after an error.
    pub(super) fn failed(&mut self, e: &redis::RedisError) {
        if self.conn.take().is_some() {
            warn!("redis {}: lost ({e}); reconnecting", self.what);
        }
        self.next_attempt = Instant::now() + self.backoff;
    }
}

/// Installs the process's TLS crypto provider (ring) if none is installed yet.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may have installed one meanwhile: either way one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The Redis client for one server of a configuration (TLS when `config.tls`).
pub fn client(config: &RedisConfig, addr: &RedisAddr) -> redis::RedisResult<Client> {
    let addr = match addr {
        RedisAddr::Socket(path) => ConnectionAddr::Unix(path.clone()),
        RedisAddr::Tcp { host, port } if config.tls => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: false,
            tls_params: None,
        },
        RedisAddr::Tcp { host, port } => ConnectionAddr::Tcp(host.clone(), *port),
    };
    let mut redis = RedisConnectionInfo::default().set_db(i64::from(config.database));
    if let Some(password) = &config.password {
        redis = redis.set_password(password.clone());
    }
    let info = addr.into_connection_info()?.set_redis_settings(redis);
    if !config.tls {
        return Client::open(info);
    }
    install_crypto_provider();
    match &config.tls_ca_file {
        None => Client::open(info),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                redis::RedisError::from(std::io::Error::new(
                    e.kind(),
                    format!("cannot read the Redis CA file {}: {e}", path.display()),
                ))
            })?;
            Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
    }
}

/// The subscriber thread of server `shard`: every message published on `pushserver:*` (and,
/// when sharded, every clock tick) goes to the engine, in the server's order.
pub(super) fn subscriber(
    shard: usize,
    sharded: bool,
    mut link: Link,
    tx: ChanSender<StreamMsg>,
    stop: Arc<AtomicBool>,
) {
    let pattern = format!("{}*", scripts::PUBSUB_PREFIX);
    // Blocks while the stream queue is full: Redis buffers meanwhile, and a subscriber that falls
    // too far behind is disconnected by Redis and catches up from storage (spec/cluster.md §8).
    let send = |event| tx.send(StreamMsg { shard, event }).is_ok();
    while !stop.load(Ordering::Acquire) {
        let Some(conn) = link.get() else {
            std::thread::sleep(BACKOFF_MIN);
            continue;
        };
        let _ = conn.set_read_timeout(Some(SUBSCRIBER_POLL));
        let mut pubsub = conn.as_pubsub();
        let subscribed = pubsub.psubscribe(&pattern).and_then(|()| {
            if sharded {
                pubsub.subscribe(scripts::TICK_CHANNEL)
            } else {
                Ok(())
            }
        });
        if let Err(e) = subscribed {
            drop(pubsub);
            link.failed(&e);
            continue;
        }
        // Before any message of the new stream: the starting point, or what was stored during
        // the gap.
        if !send(StreamEvent::Resync) {
            return;
        }
        let failure = loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            match pubsub.get_message() {
                Ok(msg) if sharded && msg.get_channel_name() == scripts::TICK_CHANNEL => {
                    if let Some(id) = MessageId::from_bytes(msg.get_payload_bytes()) {
                        if !send(StreamEvent::Tick(id)) {
                            return;
                        }
                    }
                }
                Ok(msg) => {
                    let messages: Vec<SharedMessage> =
                        scripts::notification_messages(msg.get_payload_bytes())
                            .into_iter()
                            .map(Arc::new)
                            .collect();
                    if !messages.is_empty() && !send(StreamEvent::Messages(messages)) {
                        return;
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => break e,
            }
        };
        drop(pubsub);
        link.failed(&failure);
        if !send(StreamEvent::Lost) {
            return;
        }
    }
}

/// Eight random base-36 characters, as the reference's process uid.
pub(super) fn process_uid() -> String {
    let mut x = ahash::RandomState::new().hash_one((std::process::id(), super::unix_ms()));
    (0..8)
        .map(|_| {
            let d = (x % 36) as u32;
            x /= 36;
            char::from_digit(d, 36).unwrap_or('0')
        })
        .collect()
}
