//! Where messages and online state are kept: in this process ([`Storage::Memory`]) or in a Redis
//! server shared with other pushpull or reference processes ([`Storage::Redis`]).
//!
//! File form: a `[storage]` table with `type = "memory"` (the default) or `type = "redis"` plus
//! `host`, `port`, `socket` (one server) or `servers` (a list, for sharding: spec/cluster.md §9),
//! `database`, `password`, `tls`, `tls_ca_file`. Giving any Redis setting without a `type` in the
//! same source selects Redis; giving one with `type = "memory"` is an error.

use std::fmt;
use std::path::PathBuf;

use super::{ConfigError, file};

/// Default Redis host: the local machine, as in the reference's templates.
pub const DEFAULT_REDIS_HOST: &str = "127.0.0.1";
/// Default Redis TCP port: Redis's own default.
pub const DEFAULT_REDIS_PORT: u16 = 6379;
/// Default Redis database number: Redis's own default, and what the reference uses.
pub const DEFAULT_REDIS_DATABASE: u32 = 0;
/// Most Redis servers in `servers`: a sharded message id carries its server's index in two
/// decimal digits (spec/cluster.md §9).
pub const MAX_REDIS_SERVERS: usize = 100;

/// The message store.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Storage {
    /// In this process: messages live until they expire or the process exits (unless
    /// `state_file` saves them).
    #[default]
    Memory,
    /// A Redis server.
    Redis(RedisConfig),
}

/// How to reach the Redis server.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct RedisConfig {
    /// Host name or IP address (used when `socket` is not set).
    pub host: String,
    /// TCP port (used when `socket` is not set).
    pub port: u16,
    /// Unix socket path; when set, `host` and `port` are not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Several Redis servers, channels spread over them (spec/cluster.md §9); when not empty,
    /// `host`, `port` and `socket` are not used.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<RedisAddr>,
    /// Database number (`SELECT`).
    pub database: u32,
    /// `AUTH` password; redacted in `Debug` and `to_toml`.
    #[serde(
        serialize_with = "file::ser_secret",
        skip_serializing_if = "Option::is_none"
    )]
    pub password: Option<String>,
    /// TLS to every Redis server (TCP addresses only).
    pub tls: bool,
    /// PEM file of the certificate authorities that sign the Redis servers' certificates;
    /// the system's trusted roots when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
}

impl RedisConfig {
    /// The Redis servers: `servers`, or the one server of `host`/`port` or `socket`.
    pub fn addrs(&self) -> Vec<RedisAddr> {
        if !self.servers.is_empty() {
            return self.servers.clone();
        }
        match &self.socket {
            Some(path) => vec![RedisAddr::Socket(path.clone())],
            None => vec![RedisAddr::Tcp {
                host: self.host.clone(),
                port: self.port,
            }],
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            host: DEFAULT_REDIS_HOST.to_owned(),
            port: DEFAULT_REDIS_PORT,
            socket: None,
            servers: Vec::new(),
            database: DEFAULT_REDIS_DATABASE,
            password: None,
            tls: false,
            tls_ca_file: None,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("servers", &self.servers)
            .field("database", &self.database)
            .field("password", &self.password.as_deref().map(file::redact))
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// The kind of store, as named in the file, `PUSHPULL_STORAGE` and `--storage`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// [`Storage::Memory`].
    Memory,
    /// [`Storage::Redis`].
    Redis,
}

/// A Redis address as given to `--redis`: `host:port`, `host`, or a Unix socket path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisAddr {
    /// TCP host and port.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix socket path (starts with `/`).
    Socket(PathBuf),
}

impl fmt::Display for RedisAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
            Self::Socket(path) => write!(f, "{}", path.display()),
        }
    }
}

impl serde::Serialize for RedisAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses a comma-separated list of Redis addresses (`--redis`, `PUSHPULL_REDIS_SERVERS`).
pub fn parse_redis_list(text: &str) -> Result<Vec<RedisAddr>, String> {
    text.split(',').map(parse_redis_addr).collect()
}

/// Parses `--redis`: a path starting with `/` is a Unix socket; otherwise `host:port`,
/// `[v6]:port` or a bare host (port [`DEFAULT_REDIS_PORT`]).
pub fn parse_redis_addr(text: &str) -> Result<RedisAddr, String> {
    let t = text.trim();
    if t.starts_with('/') {
        return Ok(RedisAddr::Socket(PathBuf::from(t)));
    }
    let bad = || {
        format!(
            "bad Redis address {text:?}: expected HOST:PORT (e.g. 127.0.0.1:6379) \
             or a Unix socket path starting with '/'"
        )
    };
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else if t.matches(':').count() > 1 {
        // A bare IPv6 address.
        (t, None)
    } else {
        match t.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (t, None),
        }
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_REDIS_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad)?,
    };
    Ok(RedisAddr::Tcp {
        host: host.to_owned(),
        port,
    })
}

/// One source's storage settings; `None` means "not set by this source".
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StorageLayer {
    #[serde(rename = "type")]
    pub(crate) kind: Option<StorageType>,
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) socket: Option<PathBuf>,
    pub(crate) servers: Option<Vec<String>>,
    pub(crate) database: Option<u32>,
    pub(crate) password: Option<String>,
    pub(crate) tls: Option<bool>,
    pub(crate) tls_ca_file: Option<PathBuf>,
}

impl StorageLayer {
    /// Whether any Redis connection setting is given.
    fn has_redis_settings(&self) -> bool {
        self.host.is_some()
            || self.port.is_some()
            || self.socket.is_some()
            || self.servers.is_some()
            || self.database.is_some()
            || self.password.is_some()
            || self.tls.is_some()
            || self.tls_ca_file.is_some()
    }

    /// The parsed `servers` list, if given.
    fn server_list(&self) -> Result<Option<Vec<RedisAddr>>, ConfigError> {
        let Some(list) = &self.servers else {
            return Ok(None);
        };
        list.iter()
            .map(|text| parse_redis_addr(text))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|message| ConfigError::Invalid {
                field: "storage.servers",
                message,
            })
    }

    /// Sets the servers from `--redis`: one address sets host and port or the socket, several
    /// set `servers`.
    pub(crate) fn set_addrs(&mut self, mut addrs: Vec<RedisAddr>) {
        if addrs.len() == 1 {
            let addr = addrs.remove(0);
            self.set_addr(addr);
            self.servers = Some(Vec::new());
        } else {
            self.servers = Some(addrs.iter().map(ToString::to_string).collect());
        }
    }

    /// Sets host and port, or the socket, from one address.
    pub(crate) fn set_addr(&mut self, addr: RedisAddr) {
        match addr {
            RedisAddr::Tcp { host, port } => {
                self.host = Some(host);
                self.port = Some(port);
                self.socket = None;
            }
            RedisAddr::Socket(path) => self.socket = Some(path),
        }
    }

    /// Rejects Redis settings combined with `type = "memory"` in one source.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.kind == Some(StorageType::Memory) && self.has_redis_settings() {
            return Err(ConfigError::Invalid {
                field: "storage",
                message: "Redis settings (host, port, socket, servers, database, password, tls) \
                          were given with type \"memory\"; use type \"redis\" or remove them"
                    .to_owned(),
            });
        }
        self.server_list().map(drop)
    }

    /// Applies this layer over `storage`.
    pub(crate) fn apply_to(self, storage: &mut Storage) {
        let redis = match self.kind {
            Some(StorageType::Memory) => {
                *storage = Storage::Memory;
                return;
            }
            Some(StorageType::Redis) => true,
            None => self.has_redis_settings(),
        };
        if !redis {
            return;
        }
        if !matches!(storage, Storage::Redis(_)) {
            *storage = Storage::Redis(RedisConfig::default());
        }
        let Storage::Redis(r) = storage else {
            return;
        };
        // A TCP address given in this layer overrides an earlier socket; one address given in
        // this layer overrides an earlier list.
        if self.host.is_some() || self.port.is_some() {
            r.socket = None;
        }
        if self.host.is_some() || self.port.is_some() || self.socket.is_some() {
            r.servers.clear();
        }
        // Checked by `check` before layers are applied.
        if let Ok(Some(servers)) = self.server_list() {
            r.servers = servers;
        }
        if let Some(v) = self.host {
            r.host = v;
        }
        if let Some(v) = self.port {
            r.port = v;
        }
        if let Some(v) = self.socket {
            r.socket = Some(v);
        }
        if let Some(v) = self.database {
            r.database = v;
        }
        if let Some(v) = self.password {
            r.password = Some(v);
        }
        if let Some(v) = self.tls {
            r.tls = v;
        }
        if let Some(v) = self.tls_ca_file {
            r.tls_ca_file = Some(v);
        }
    }
}

/// Canonical form: an empty password or socket means none.
pub(crate) fn normalize(storage: &mut Storage) {
    if let Storage::Redis(r) = storage {
        if r.password.as_deref() == Some("") {
            r.password = None;
        }
        if r.socket.as_ref().is_some_and(|s| s.as_os_str().is_empty()) {
            r.socket = None;
        }
        if r.tls_ca_file
            .as_ref()
            .is_some_and(|s| s.as_os_str().is_empty())
        {
            r.tls_ca_file = None;
        }
        // A one-entry list is the one server.
        if r.servers.len() == 1 {
            match r.servers.remove(0) {
                RedisAddr::Tcp { host, port } => {
                    r.host = host;
                    r.port = port;
                    r.socket = None;
                }
                RedisAddr::Socket(path) => r.socket = Some(path),
            }
        }
        r.host = r.host.trim().to_owned();
    }
}

/// Checks the Redis settings.
pub(crate) fn validate(storage: &Storage) -> Result<(), ConfigError> {
    let Storage::Redis(r) = storage else {
        return Ok(());
    };
    let invalid =
        |field: &'static str, message: String| Err(ConfigError::Invalid { field, message });
    if r.servers.len() > MAX_REDIS_SERVERS {
        return invalid(
            "storage.servers",
            format!(
                "{} servers given, at most {MAX_REDIS_SERVERS} are supported",
                r.servers.len()
            ),
        );
    }
    for (i, addr) in r.servers.iter().enumerate() {
        if r.servers[..i].contains(addr) {
            return invalid("storage.servers", format!("{addr} is listed twice"));
        }
    }
    let addrs = r.addrs();
    if r.tls {
        if let Some(RedisAddr::Socket(path)) =
            addrs.iter().find(|a| matches!(a, RedisAddr::Socket(_)))
        {
            return invalid(
                "storage.tls",
                format!(
                    "TLS needs TCP addresses, but {} is a Unix socket",
                    path.display()
                ),
            );
        }
    } else if let Some(ca) = &r.tls_ca_file {
        return invalid(
            "storage.tls_ca_file",
            format!("{} is set but tls is off; set tls = true", ca.display()),
        );
    }
    if !r.servers.is_empty() {
        return check_password(r);
    }
    match &r.socket {
        Some(path) if !path.is_absolute() => invalid(
            "storage.socket",
            format!("must be an absolute path, got {}", path.display()),
        ),
        Some(_) => check_password(r),
        None if r.host.is_empty() => invalid(
            "storage.host",
            "must not be empty (or set storage.socket)".to_owned(),
        ),
        None if r.port == 0 => invalid("storage.port", "must not be 0".to_owned()),
        None => check_password(r),
    }
}

fn check_password(r: &RedisConfig) -> Result<(), ConfigError> {
    match &r.password {
        Some(p) if file::looks_redacted(p) => Err(ConfigError::Invalid {
            field: "storage.password",
            message: format!(
                "{p:?} is the placeholder printed by check-config, not a password; \
                 set the real password"
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_addresses() {
        let tcp = |h: &str, p| RedisAddr::Tcp {
            host: h.to_owned(),
            port: p,
        };
        assert_eq!(
            parse_redis_addr("127.0.0.1:6380"),
            Ok(tcp("127.0.0.1", 6380))
        );
        assert_eq!(parse_redis_addr("redis"), Ok(tcp("redis", 6379)));
        assert_eq!(parse_redis_addr("redis:7000"), Ok(tcp("redis", 7000)));
        assert_eq!(parse_redis_addr("[::1]:7000"), Ok(tcp("::1", 7000)));
        assert_eq!(parse_redis_addr("[::1]"), Ok(tcp("::1", 6379)));
        assert_eq!(parse_redis_addr("::1"), Ok(tcp("::1", 6379)));
        assert_eq!(
            parse_redis_addr("/var/run/redis/redis.sock"),
            Ok(RedisAddr::Socket(PathBuf::from(
                "/var/run/redis/redis.sock"
            )))
        );
        for bad in [
            "", ":6379", "h:", "h:0", "h:70000", "h:x", "[::1", "[::1]x", "a b:1",
        ] {
            assert!(parse_redis_addr(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn layers_merge() {
        let mut s = Storage::Memory;
        // Redis settings without a type select Redis.
        StorageLayer {
            socket: Some("/r.sock".into()),
            ..StorageLayer::default()
        }
        .apply_to(&mut s);
        let Storage::Redis(r) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(r.socket.as_deref(), Some(std::path::Path::new("/r.sock")));
        assert_eq!(r.port, DEFAULT_REDIS_PORT);
        // A later layer changes one field and keeps the rest; a TCP address drops the socket.
        StorageLayer {
            port: Some(7000),
            ..StorageLayer::default()
        }
        .apply_to(&mut s);
        assert_eq!(
            s,
            Storage::Redis(RedisConfig {
                port: 7000,
                ..RedisConfig::default()
            })
        );
        // An empty layer changes nothing; type memory resets.
        StorageLayer::default().apply_to(&mut s);
        assert!(matches!(s, Storage::Redis(_)));
        StorageLayer {
            kind: Some(StorageType::Memory),
            ..StorageLayer::default()
        }
        .apply_to(&mut s);
        assert_eq!(s, Storage::Memory);
        // Memory plus Redis settings in one source is an error.
        let bad = StorageLayer {
            kind: Some(StorageType::Memory),
            host: Some("h".into()),
            ..StorageLayer::default()
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn debug_redacts_the_password() {
        let r = RedisConfig {
            password: Some("hunter2".into()),
            ..RedisConfig::default()
        };
        let shown = format!("{:?}", Storage::Redis(r));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<set, 7 chars>"), "{shown}");
    }
}
