//! pushpull's configuration: defaults, the Node push server's files (optional), a TOML file,
//! `PUSHPULL_*` environment variables and command-line flags, merged in that order (each later
//! source wins) and validated into one concrete [`Config`].
//!
//! * [`bitrix`] reads the Node push server's `push-server-{sub,pub}-<port>.json` files
//!   ([`Cli::bitrix_config`], `PUSHPULL_BITRIX_CONFIG`) and/or the BitrixVM `push-server-multi`
//!   sysconfig file ([`Cli::bitrix_sysconfig`], `PUSHPULL_BITRIX_SYSCONFIG`): their servers
//!   become listeners, their key, storage, TTLs and limits become settings; what pushpull
//!   ignores ends up in [`Config::warnings`].
//! * The file ([`Cli::config`] or `PUSHPULL_CONFIG`) uses the keys of [`Config`]; every key is
//!   optional, unknown keys are an error. Durations are whole seconds or strings such as
//!   `"500ms"`, `"40s"`, `"2m"` (see [`parse_duration`]). Any `[[listener]]` entries replace
//!   the listeners entirely. The `[storage]` table has `type = "memory"` (default) or
//!   `type = "redis"` with `host`, `port`, `socket` or `servers` (a list: sharding),
//!   `database`, `password`, `tls`, `tls_ca_file`; Redis settings without a `type` select Redis.
//! * Every file key can be overridden by `PUSHPULL_<KEY>` (upper case), plus the list-valued
//!   `PUSHPULL_SUB_LISTEN` / `PUSHPULL_PUB_LISTEN` (comma-separated), each replacing the
//!   listeners of its kind, and `PUSHPULL_STORAGE`, `PUSHPULL_REDIS_{HOST,PORT,SOCKET,SERVERS,
//!   DATABASE,PASSWORD,TLS,TLS_CA_FILE}` for `[storage]`. An empty variable counts as unset, except
//!   `PUSHPULL_SECURITY_KEY=` which explicitly turns signature checking off and
//!   `PUSHPULL_REDIS_PASSWORD=` which removes the password. `PUSHPULL_PUBLISH_ALLOW` takes
//!   comma-separated networks.
//! * Flags override everything; `--sub-listen` / `--pub-listen` replace the listeners of their
//!   kind; `--redis ADDR[,ADDR…]` selects Redis at `HOST:PORT` or a Unix socket path (several:
//!   sharded); `--redis-tls` and `--redis-tls-ca-file FILE` turn on TLS.
//!
//! [`Config::to_toml`] prints the effective configuration in the file's own format, with the
//! security key and the Redis password redacted, and the Bitrix files read and the warnings
//! as comments: that is the output of `pushpull check-config`.

pub mod bitrix;
mod cli;
mod file;
mod lockdown;
mod reload;
mod storage;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cli::{Cli, Command, ENV_PREFIX};
pub use file::{format_duration, parse_duration};
pub use lockdown::{PublishSignature, parse_net, publish_allowed};
pub use storage::{
    DEFAULT_REDIS_DATABASE, DEFAULT_REDIS_HOST, DEFAULT_REDIS_PORT, MAX_REDIS_SERVERS, RedisAddr,
    RedisConfig, Storage, StorageType, parse_redis_addr, parse_redis_list,
};

/// Default subscriber listener: the first BitrixVM "sub" port, so nginx upstreams written for the
/// reference server (`push:8010`) work unchanged.
pub const DEFAULT_SUB_LISTEN: &str = "127.0.0.1:8010";
/// Default publisher listener: the first BitrixVM "pub" port; localhost only, because publishing
/// is unauthenticated in personal mode and must only be reachable by the PHP back end.
pub const DEFAULT_PUB_LISTEN: &str = "127.0.0.1:9010";
/// How long a long-poll request is held open without messages before it is answered with `304`:
/// the reference server's (and its nginx module's) 40 s, which clients are tuned for.
pub const DEFAULT_LONGPOLL_HOLD: Duration = Duration::from_secs(40);
/// Interval between server pings on every WebSocket (the reference's 120 s); keeps NAT and proxy
/// state alive and detects dead peers: no pong by the next ping closes the connection.
pub const DEFAULT_WS_PING_INTERVAL: Duration = Duration::from_secs(120);
/// Upper bound, in seconds, on a publication's `Message-Expiry` (the reference `messageTTL`,
/// one day); messages are never kept longer than this.
pub const DEFAULT_MESSAGE_TTL: u32 = 86_400;
/// Largest publish body and largest WebSocket message accepted, in bytes: the PHP side's
/// `limit_max_payload` (1 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 1_048_576;
/// Most channel ids one publish or subscribe request may name: the PHP side's
/// `limit_max_channels_per_request` / `nginx_command_per_hit` (100).
pub const DEFAULT_MAX_CHANNELS_PER_REQUEST: usize = 100;
/// Most open client connections for the whole process, split evenly between the cores; bounds
/// memory and file descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Time a request head may take to arrive completely; closes slowloris-style connections.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time an idle keep-alive HTTP connection is kept open; 75 s outlives nginx's default upstream
/// keep-alive (60 s), so nginx closes first and never reuses a socket we are closing.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// Unsent output a connection may accumulate before it is closed as a slow subscriber (4 MiB):
/// room for several maximum-size messages, while bounding memory per connection.
pub const DEFAULT_OUT_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// On SIGTERM, time given to close sockets cleanly; short enough that the process exits within
/// 5 s, which service managers expect.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Default log level: startup, shutdown and errors, without per-request noise.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Messages kept per channel for replay: the reference nginx module's
/// `push_stream_max_messages_stored_per_channel 1000`.
pub const DEFAULT_CHANNEL_HISTORY: usize = 1000;
/// Total bytes of stored history for the whole process (256 MiB); bounds memory however many
/// channels exist.
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 256 * 1024 * 1024;
/// Most messages replayed to one reconnecting subscriber (equal to a full channel history).
pub const DEFAULT_REPLAY_MAX: usize = 1000;

/// How long a channel stays online after its last connection left (a long-poll answered, a
/// WebSocket closed): the reference's `onlineTTL` (120 s), so a long-poll client between two
/// requests or a WebSocket client reconnecting never looks offline.
pub const DEFAULT_ONLINE_TTL: Duration = Duration::from_secs(120);
/// Slack added to [`DEFAULT_ONLINE_TTL`]: the reference's `onlineDelta` (10 s), covering the
/// round trip of a ping and a long-poll client's reconnect gap.
pub const DEFAULT_ONLINE_DELTA: Duration = Duration::from_secs(10);
/// Most connections on the private channel of a `private:public` token (a user's channel);
/// when a new one arrives the oldest is closed with 4029: the reference's `maxConnPerChannel`
/// (100), which bounds the connections one user can hold.
pub const DEFAULT_MAX_CONN_PER_CHANNEL: usize = 100;
/// Most messages in one protobuf publish request: the reference's `maxMessagesPerRequest` (100).
pub const DEFAULT_MAX_MESSAGES_PER_REQUEST: usize = 100;
/// How often a one-line statistics summary is logged (the reference's `statTLLMsec`, 60 000 ms,
/// is how often it stored its statistics): frequent enough to follow a busy day in the log.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(60);

/// Most worker threads accepted: far above any useful core count, low enough to catch typos.
pub const MAX_THREADS: usize = 256;
/// Smallest `max_payload` accepted: below 1 KiB ordinary Bitrix messages would be refused.
pub const MIN_MAX_PAYLOAD: usize = 1024;
/// Longest duration accepted for any duration setting (one day): longer values are mistakes,
/// and the bound keeps every deadline computed from them far from `Instant` overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);
/// Shortest `stats_interval` accepted: refreshing more than once a second only costs CPU.
pub const MIN_STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Largest value of a count or byte-size setting: the largest integer a TOML file can hold
/// (`i64::MAX`), so that `check-config` can print every valid configuration. A Bitrix file or
/// the environment could give more, which would mean nothing more.
pub const MAX_COUNT: u64 = i64::MAX as u64;
/// The log levels `log_level` accepts.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Which side of the server a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Subscribers: long-poll and WebSocket clients.
    Sub,
    /// Publishers: the PHP back end; keep it off public interfaces.
    Pub,
}

impl fmt::Display for ListenerKind {
    /// The configuration's spelling: `sub` or `pub`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenerKind::Sub => "sub",
            ListenerKind::Pub => "pub",
        })
    }
}

/// One listening socket.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// What the listener serves.
    pub kind: ListenerKind,
    /// Address to bind.
    #[serde(deserialize_with = "file::de_addr")]
    pub addr: SocketAddr,
    /// PEM certificate chain: the listener speaks TLS (https, wss); reloaded on SIGHUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl ListenerConfig {
    /// A listener without TLS.
    pub fn plain(kind: ListenerKind, addr: SocketAddr) -> Self {
        Self {
            kind,
            addr,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls_cert.is_some()
    }
}

/// HMAC hash used for channel id signatures (the PHP option `signature_algo`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SignatureAlgo {
    /// HMAC-SHA1 (40 hex digits), the Bitrix default.
    Sha1,
    /// HMAC-SHA256 (64 hex digits).
    Sha256,
}

impl SignatureAlgo {
    /// The name used in the file, the environment and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }
}

/// The validated, effective configuration.
///
/// Serializing it (as [`Config::to_toml`] does) produces the file format, with the security key
/// replaced by `"<set, N chars>"`; its `Debug` output redacts the key the same way.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// Worker threads, one reactor each.
    pub threads: usize,
    /// Listening sockets (file key `[[listener]]`).
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// Shared secret for channel id signatures; `None` (or empty) accepts unsigned ids.
    #[serde(
        serialize_with = "file::ser_secret",
        skip_serializing_if = "Option::is_none"
    )]
    pub security_key: Option<String>,
    /// HMAC hash for signatures.
    pub signature_algo: SignatureAlgo,
    /// Long-poll hold time.
    #[serde(serialize_with = "file::ser_duration")]
    pub longpoll_hold: Duration,
    /// WebSocket ping interval.
    #[serde(serialize_with = "file::ser_duration")]
    pub ws_ping_interval: Duration,
    /// Cap on `Message-Expiry`, seconds.
    pub message_ttl: u32,
    /// Messages kept per channel.
    pub channel_history: usize,
    /// Total history bytes for the process.
    pub history_max_bytes: usize,
    /// Most messages replayed to one subscriber.
    pub replay_max: usize,
    /// Largest publish body / WebSocket message, bytes.
    pub max_payload: usize,
    /// Most channel ids per request.
    pub max_channels_per_request: usize,
    /// Most connections for the whole process.
    pub max_connections: usize,
    /// Deadline for a complete request head.
    #[serde(serialize_with = "file::ser_duration")]
    pub head_timeout: Duration,
    /// Idle keep-alive timeout.
    #[serde(serialize_with = "file::ser_duration")]
    pub keepalive_timeout: Duration,
    /// Unsent output per connection before it is closed as slow.
    pub out_queue_bytes: usize,
    /// Time given to close sockets on SIGTERM.
    #[serde(serialize_with = "file::ser_duration")]
    pub shutdown_grace: Duration,
    /// Log level: one of [`LOG_LEVELS`].
    pub log_level: String,
    /// A channel counts as online while it has a connection and for `online_ttl +
    /// online_delta` after its last connection left.
    #[serde(serialize_with = "file::ser_duration")]
    pub online_ttl: Duration,
    /// Slack added to `online_ttl`.
    #[serde(serialize_with = "file::ser_duration")]
    pub online_delta: Duration,
    /// Most connections per user channel (tokens with a public part); the oldest is closed with
    /// 4029 beyond it.
    pub max_conn_per_channel: usize,
    /// Most messages in one protobuf publish request.
    pub max_messages_per_request: usize,
    /// How often per-process statistics are refreshed and stored.
    #[serde(serialize_with = "file::ser_duration")]
    pub stats_interval: Duration,
    /// Networks whose peers may use the publisher routes; empty: every peer that reaches a pub
    /// listener (spec/publishing.md §7).
    #[serde(serialize_with = "lockdown::ser_nets")]
    pub publish_allow: Vec<ipnet::IpNet>,
    /// Whether publisher requests must carry `?signature=` (spec/publishing.md §7).
    pub publish_signature: PublishSignature,
    /// Where the embedded engine saves its stored messages and id counter at shutdown and
    /// reloads them at start; `None` keeps nothing across restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
    /// The message store (file table `[storage]`).
    pub storage: Storage,
    /// The Bitrix push-server files the settings were partly read from (not a setting;
    /// printed as a comment by [`Config::to_toml`]).
    #[serde(skip)]
    pub bitrix_sources: Vec<PathBuf>,
    /// What loading ignored (keys of the Bitrix files pushpull has no use for); not a setting.
    /// [`Config::to_toml`] prints them as comments; the server should log them at start.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            listeners: default_listeners(),
            security_key: None,
            signature_algo: SignatureAlgo::Sha1,
            longpoll_hold: DEFAULT_LONGPOLL_HOLD,
            ws_ping_interval: DEFAULT_WS_PING_INTERVAL,
            message_ttl: DEFAULT_MESSAGE_TTL,
            channel_history: DEFAULT_CHANNEL_HISTORY,
            history_max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            replay_max: DEFAULT_REPLAY_MAX,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_channels_per_request: DEFAULT_MAX_CHANNELS_PER_REQUEST,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            out_queue_bytes: DEFAULT_OUT_QUEUE_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            online_ttl: DEFAULT_ONLINE_TTL,
            online_delta: DEFAULT_ONLINE_DELTA,
            max_conn_per_channel: DEFAULT_MAX_CONN_PER_CHANNEL,
            max_messages_per_request: DEFAULT_MAX_MESSAGES_PER_REQUEST,
            stats_interval: DEFAULT_STATS_INTERVAL,
            publish_allow: Vec::new(),
            publish_signature: PublishSignature::Off,
            state_file: None,
            storage: Storage::Memory,
            bitrix_sources: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("threads", &self.threads)
            .field("listeners", &self.listeners)
            .field(
                "security_key",
                &self.security_key.as_deref().map(file::redact),
            )
            .field("signature_algo", &self.signature_algo)
            .field("longpoll_hold", &self.longpoll_hold)
            .field("ws_ping_interval", &self.ws_ping_interval)
            .field("message_ttl", &self.message_ttl)
            .field("channel_history", &self.channel_history)
            .field("history_max_bytes", &self.history_max_bytes)
            .field("replay_max", &self.replay_max)
            .field("max_payload", &self.max_payload)
            .field("max_channels_per_request", &self.max_channels_per_request)
            .field("max_connections", &self.max_connections)
            .field("head_timeout", &self.head_timeout)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("out_queue_bytes", &self.out_queue_bytes)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("log_level", &self.log_level)
            .field("online_ttl", &self.online_ttl)
            .field("online_delta", &self.online_delta)
            .field("max_conn_per_channel", &self.max_conn_per_channel)
            .field("max_messages_per_request", &self.max_messages_per_request)
            .field("stats_interval", &self.stats_interval)
            .field("publish_allow", &self.publish_allow)
            .field("publish_signature", &self.publish_signature)
            .field("state_file", &self.state_file)
            .field("storage", &self.storage)
            .field("bitrix_sources", &self.bitrix_sources)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid (TOML syntax, unknown key, wrong type or bad value).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A setting is out of range or inconsistent (after merging all sources).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The setting, named as in the file.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A file of the Bitrix push server's configuration holds a value pushpull cannot use: a
    /// template placeholder, a route it cannot serve, a wrong type.
    #[error("{}: {key}: {message}", path.display())]
    Bitrix {
        /// The file.
        path: PathBuf,
        /// The key (JSON path such as `servers[0].routes.sub`, or the sysconfig variable).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Two files of the Bitrix push server's configuration disagree on a setting that is
    /// one for the whole pushpull process.
    #[error("{key} differs between {} and {}{detail}", first.display(), second.display())]
    BitrixConflict {
        /// The key, as named in the files.
        key: String,
        /// The file read first.
        first: PathBuf,
        /// The file that disagrees with it.
        second: PathBuf,
        /// The two values when they are not secret (`": 100 vs 200"`), else empty.
        detail: String,
    },
    /// An environment variable could not be understood.
    #[error("invalid environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// One source's settings: `None` means "this source does not set it".
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Layer {
    pub(crate) threads: Option<usize>,
    /// File only: replaces every listener.
    #[serde(rename = "listener")]
    pub(crate) listeners: Option<Vec<ListenerConfig>>,
    /// Environment and flags: replace the sub listeners.
    #[serde(skip)]
    pub(crate) sub_listen: Option<Vec<SocketAddr>>,
    /// Environment and flags: replace the pub listeners.
    #[serde(skip)]
    pub(crate) pub_listen: Option<Vec<SocketAddr>>,
    pub(crate) security_key: Option<String>,
    pub(crate) signature_algo: Option<SignatureAlgo>,
    pub(crate) longpoll_hold: Option<file::Dur>,
    pub(crate) ws_ping_interval: Option<file::Dur>,
    pub(crate) message_ttl: Option<u32>,
    pub(crate) channel_history: Option<usize>,
    pub(crate) history_max_bytes: Option<usize>,
    pub(crate) replay_max: Option<usize>,
    pub(crate) max_payload: Option<usize>,
    pub(crate) max_channels_per_request: Option<usize>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) head_timeout: Option<file::Dur>,
    pub(crate) keepalive_timeout: Option<file::Dur>,
    pub(crate) out_queue_bytes: Option<usize>,
    pub(crate) shutdown_grace: Option<file::Dur>,
    pub(crate) log_level: Option<String>,
    pub(crate) online_ttl: Option<file::Dur>,
    pub(crate) online_delta: Option<file::Dur>,
    pub(crate) max_conn_per_channel: Option<usize>,
    pub(crate) max_messages_per_request: Option<usize>,
    pub(crate) stats_interval: Option<file::Dur>,
    pub(crate) publish_allow: Option<Vec<lockdown::Net>>,
    pub(crate) publish_signature: Option<PublishSignature>,
    pub(crate) state_file: Option<PathBuf>,
    pub(crate) storage: Option<storage::StorageLayer>,
}

impl Layer {
    /// Rejects settings that contradict each other within this one source.
    fn checked(self) -> Result<Self, ConfigError> {
        if let Some(storage) = &self.storage {
            storage.check()?;
        }
        Ok(self)
    }
}

impl Config {
    /// Loads defaults ← Bitrix push-server files (cli.bitrix_config, cli.bitrix_sysconfig) ←
    /// file (cli.config) ← environment ← flags, then validates.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let env = cli::process_env()?;
        Self::load_with_env(cli, &env)
    }

    /// Same, with the environment given explicitly (for tests): iterator of (name, value).
    pub fn load_with_env(cli: &Cli, env: &[(String, String)]) -> Result<Config, ConfigError> {
        Self::load_from(cli, env, |path| std::fs::read_to_string(path))
    }

    /// The loading steps, with file reading given explicitly.
    pub(crate) fn load_from(
        cli: &Cli,
        env: &[(String, String)],
        read: impl Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Config, ConfigError> {
        let (env_layer, sources) = cli::env_layer(env)?;
        let mut config = Config::default();
        let bitrix_dir = cli.bitrix_config.clone().or(sources.bitrix_config);
        let bitrix_sysconfig = cli.bitrix_sysconfig.clone().or(sources.bitrix_sysconfig);
        if bitrix_dir.is_some() || bitrix_sysconfig.is_some() {
            let (bx, warnings) = bitrix::load(bitrix_dir.as_deref(), bitrix_sysconfig.as_deref())?;
            config.bitrix_sources = bx.files.clone();
            config.warnings = warnings;
            config.apply(bx.into_layer().checked()?);
        }
        if let Some(path) = cli.config.clone().or(sources.config) {
            let text = read(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            config.apply(file::parse_file(&path, &text)?.checked()?);
        }
        config.apply(env_layer.checked()?);
        config.apply(cli.layer().checked()?);
        config.normalize();
        config.validate()?;
        Ok(config)
    }

    /// The effective config as TOML in the file's own format (durations in seconds or
    /// "250ms"-style strings, the key shown as "<set, N chars>" not the secret itself) — this is
    /// what `pushpull check-config` prints.
    pub fn to_toml(&self) -> String {
        file::to_toml(self)
    }

    /// The listeners of one kind, in configuration order.
    pub fn listeners_of(&self, kind: ListenerKind) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listeners
            .iter()
            .filter(move |l| l.kind == kind)
            .map(|l| l.addr)
    }

    /// Overwrites every setting `layer` sets.
    fn apply(&mut self, layer: Layer) {
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *slot = v;
            }
        }
        fn set_dur(slot: &mut Duration, value: Option<file::Dur>) {
            if let Some(v) = value {
                *slot = v.0;
            }
        }
        set(&mut self.threads, layer.threads);
        if let Some(listeners) = layer.listeners.filter(|l| !l.is_empty()) {
            self.listeners = listeners;
        }
        if let Some(addrs) = layer.sub_listen {
            self.replace_listeners(ListenerKind::Sub, addrs);
        }
        if let Some(addrs) = layer.pub_listen {
            self.replace_listeners(ListenerKind::Pub, addrs);
        }
        if let Some(key) = layer.security_key {
            self.security_key = Some(key);
        }
        set(&mut self.signature_algo, layer.signature_algo);
        set_dur(&mut self.longpoll_hold, layer.longpoll_hold);
        set_dur(&mut self.ws_ping_interval, layer.ws_ping_interval);
        set(&mut self.message_ttl, layer.message_ttl);
        set(&mut self.channel_history, layer.channel_history);
        set(&mut self.history_max_bytes, layer.history_max_bytes);
        set(&mut self.replay_max, layer.replay_max);
        set(&mut self.max_payload, layer.max_payload);
        set(
            &mut self.max_channels_per_request,
            layer.max_channels_per_request,
        );
        set(&mut self.max_connections, layer.max_connections);
        set_dur(&mut self.head_timeout, layer.head_timeout);
        set_dur(&mut self.keepalive_timeout, layer.keepalive_timeout);
        set(&mut self.out_queue_bytes, layer.out_queue_bytes);
        set_dur(&mut self.shutdown_grace, layer.shutdown_grace);
        set(&mut self.log_level, layer.log_level);
        set_dur(&mut self.online_ttl, layer.online_ttl);
        set_dur(&mut self.online_delta, layer.online_delta);
        set(&mut self.max_conn_per_channel, layer.max_conn_per_channel);
        set(
            &mut self.max_messages_per_request,
            layer.max_messages_per_request,
        );
        set_dur(&mut self.stats_interval, layer.stats_interval);
        if let Some(nets) = layer.publish_allow {
            self.publish_allow = nets.into_iter().map(|n| n.0).collect();
        }
        set(&mut self.publish_signature, layer.publish_signature);
        if let Some(path) = layer.state_file {
            self.state_file = Some(path);
        }
        if let Some(storage) = layer.storage {
            storage.apply_to(&mut self.storage);
        }
    }

    /// Replaces the listeners of `kind` by `addrs` (appended after the other kind's).
    fn replace_listeners(&mut self, kind: ListenerKind, addrs: Vec<SocketAddr>) {
        self.listeners.retain(|l| l.kind != kind);
        self.listeners.extend(
            addrs
                .into_iter()
                .map(|addr| ListenerConfig::plain(kind, addr)),
        );
    }

    /// Canonical forms: an empty key means no key; log levels are lower case.
    fn normalize(&mut self) {
        if self.security_key.as_deref() == Some("") {
            self.security_key = None;
        }
        self.log_level = self.log_level.trim().to_ascii_lowercase();
        if self
            .state_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            self.state_file = None;
        }
        storage::normalize(&mut self.storage);
    }

    /// Checks ranges and cross-field rules; the error names the offending setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(field: &'static str, message: String) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid { field, message })
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return invalid(
                "threads",
                format!("must be between 1 and {MAX_THREADS}, got {}", self.threads),
            );
        }
        self.validate_listeners()?;
        for (field, value) in [
            ("channel_history", self.channel_history),
            ("history_max_bytes", self.history_max_bytes),
            ("replay_max", self.replay_max),
            ("max_payload", self.max_payload),
            ("max_channels_per_request", self.max_channels_per_request),
            ("max_connections", self.max_connections),
            ("out_queue_bytes", self.out_queue_bytes),
            ("max_conn_per_channel", self.max_conn_per_channel),
            ("max_messages_per_request", self.max_messages_per_request),
        ] {
            if !u64::try_from(value).is_ok_and(|v| v <= MAX_COUNT) {
                return invalid(field, format!("must be at most {MAX_COUNT}, got {value}"));
            }
        }
        if let Some(key) = &self.security_key {
            if file::looks_redacted(key) {
                return invalid(
                    "security_key",
                    format!(
                        "{key:?} is the placeholder printed by check-config, not a key; \
                         set the real key"
                    ),
                );
            }
        }
        for (field, value) in [
            ("longpoll_hold", self.longpoll_hold),
            ("ws_ping_interval", self.ws_ping_interval),
            ("head_timeout", self.head_timeout),
            ("keepalive_timeout", self.keepalive_timeout),
            ("shutdown_grace", self.shutdown_grace),
            ("online_ttl", self.online_ttl),
            ("stats_interval", self.stats_interval),
        ] {
            if value.is_zero() || value > MAX_DURATION {
                return invalid(
                    field,
                    format!(
                        "must be more than 0 and at most {}, got {}",
                        format_duration(MAX_DURATION),
                        format_duration(value)
                    ),
                );
            }
        }
        if self.online_delta > MAX_DURATION {
            return invalid(
                "online_delta",
                format!(
                    "must be at most {}, got {}",
                    format_duration(MAX_DURATION),
                    format_duration(self.online_delta)
                ),
            );
        }
        if self.stats_interval < MIN_STATS_INTERVAL {
            return invalid(
                "stats_interval",
                format!(
                    "must be at least {}, got {}",
                    format_duration(MIN_STATS_INTERVAL),
                    format_duration(self.stats_interval)
                ),
            );
        }
        if self.max_conn_per_channel == 0 {
            return invalid("max_conn_per_channel", "must be at least 1".to_owned());
        }
        if self.max_messages_per_request == 0 {
            return invalid("max_messages_per_request", "must be at least 1".to_owned());
        }
        storage::validate(&self.storage)?;
        if self.message_ttl == 0 {
            return invalid("message_ttl", "must be at least 1 second".to_owned());
        }
        if self.channel_history == 0 {
            return invalid("channel_history", "must be at least 1".to_owned());
        }
        if self.replay_max == 0 {
            return invalid("replay_max", "must be at least 1".to_owned());
        }
        if self.max_payload < MIN_MAX_PAYLOAD {
            return invalid(
                "max_payload",
                format!(
                    "must be at least {MIN_MAX_PAYLOAD} bytes, got {}",
                    self.max_payload
                ),
            );
        }
        if self.history_max_bytes < self.max_payload {
            return invalid(
                "history_max_bytes",
                format!(
                    "must be at least max_payload ({}) so a largest message can be stored, got {}",
                    self.max_payload, self.history_max_bytes
                ),
            );
        }
        if self.out_queue_bytes < self.max_payload {
            return invalid(
                "out_queue_bytes",
                format!(
                    "must be at least max_payload ({}) so a largest message can be queued, got {}",
                    self.max_payload, self.out_queue_bytes
                ),
            );
        }
        if self.max_channels_per_request == 0 {
            return invalid("max_channels_per_request", "must be at least 1".to_owned());
        }
        if self.max_connections < self.threads {
            return invalid(
                "max_connections",
                format!(
                    "must be at least threads ({}) since it is split evenly per thread, got {}",
                    self.threads, self.max_connections
                ),
            );
        }
        if self.publish_signature == PublishSignature::Required
            && self.security_key.as_deref().is_none_or(str::is_empty)
        {
            return invalid(
                "publish_signature",
                "\"required\" needs security_key: publish requests are signed with it".to_owned(),
            );
        }
        if !LOG_LEVELS.contains(&self.log_level.as_str()) {
            return invalid(
                "log_level",
                format!(
                    "unknown level {:?}; expected one of {}",
                    self.log_level,
                    LOG_LEVELS.join(", ")
                ),
            );
        }
        Ok(())
    }

    fn validate_listeners(&self) -> Result<(), ConfigError> {
        if self.listeners_of(ListenerKind::Sub).next().is_none() {
            return Err(ConfigError::Invalid {
                field: "listener",
                message: "at least one sub listener is required".to_owned(),
            });
        }
        for (i, l) in self.listeners.iter().enumerate() {
            // Port 0 asks the system for a free port: every such listener gets its own.
            if l.addr.port() != 0 && self.listeners[..i].iter().any(|prev| prev.addr == l.addr) {
                return Err(ConfigError::Invalid {
                    field: "listener",
                    message: format!("address {} is listed more than once", l.addr),
                });
            }
            if l.tls_cert.is_some() != l.tls_key.is_some() {
                return Err(ConfigError::Invalid {
                    field: "listener",
                    message: format!(
                        "listener {}: tls_cert and tls_key must be given together",
                        l.addr
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The default worker count: the available cores, within `1..=MAX_THREADS`.
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
}

/// One sub listener on [`DEFAULT_SUB_LISTEN`] and one pub listener on [`DEFAULT_PUB_LISTEN`].
fn default_listeners() -> Vec<ListenerConfig> {
    let mut out = Vec::with_capacity(2);
    for (kind, addr) in [
        (ListenerKind::Sub, DEFAULT_SUB_LISTEN),
        (ListenerKind::Pub, DEFAULT_PUB_LISTEN),
    ] {
        if let Ok(addr) = addr.parse() {
            out.push(ListenerConfig::plain(kind, addr));
        }
    }
    out
}

#[cfg(test)]
mod tests;
