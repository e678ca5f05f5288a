//! The command line (`pushpull [OPTIONS] [COMMAND]`) and the `PUSHPULL_*` environment variables.
//!
//! The environment is read by [`env_layer`], not by clap, so that tests can pass it explicitly
//! and the precedence flags > environment > file > defaults holds by construction.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::storage::{RedisAddr, StorageLayer, StorageType, parse_redis_list};
use super::{
    ConfigError, DEFAULT_LOG_LEVEL, DEFAULT_LONGPOLL_HOLD, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MESSAGE_TTL, DEFAULT_ONLINE_TTL, DEFAULT_PUB_LISTEN, DEFAULT_SUB_LISTEN,
    DEFAULT_WS_PING_INTERVAL, LOG_LEVELS, Layer, MAX_THREADS, file,
};

/// Prefix of every environment variable pushpull reads.
pub const ENV_PREFIX: &str = "PUSHPULL_";

/// `pushpull [OPTIONS] [COMMAND]`: the real-time push server.
///
/// Settings come from defaults, then the config file, then `PUSHPULL_*` environment variables,
/// then these flags; each later source wins.
#[derive(Debug, Default, clap::Parser)]
#[command(name = "pushpull", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short = 'c',
        long,
        global = true,
        value_name = "FILE",
        help = "TOML configuration file [env: PUSHPULL_CONFIG] [default: none]"
    )]
    pub config: Option<PathBuf>,

    /// The Node push server's configuration folder (or one of its files).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help = "Read the Node push server's push-server-sub/pub-<port>.json files in DIR \
                  (e.g. /etc/push-server) under the TOML file, env and flags \
                  [env: PUSHPULL_BITRIX_CONFIG] [default: none]"
    )]
    pub bitrix_config: Option<PathBuf>,

    /// The BitrixVM push-server-multi sysconfig file.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help = "Read the BitrixVM push-server-multi file (e.g. /etc/sysconfig/push-server-multi): \
                  ports from BASE_*/ID_*, SECURITY_KEY, REDIS_SOCK; the JSON files win \
                  [env: PUSHPULL_BITRIX_SYSCONFIG] [default: none]"
    )]
    pub bitrix_sysconfig: Option<PathBuf>,

    /// Worker threads.
    #[arg(long, global = true, value_name = "N",
          help = format!("Worker threads, one reactor each, 1..={MAX_THREADS} \
                          [env: PUSHPULL_THREADS] [default: number of CPUs]"))]
    pub threads: Option<usize>,

    /// Subscriber listen addresses; replace the configured sub listeners.
    #[arg(long, global = true, value_name = "ADDR", value_delimiter = ',',
          help = format!("Subscriber (long-poll, WebSocket) listen address; repeatable or \
                          comma-separated, replaces the sub listeners \
                          [env: PUSHPULL_SUB_LISTEN] [default: {DEFAULT_SUB_LISTEN}]"))]
    pub sub_listen: Vec<SocketAddr>,

    /// Publisher listen addresses; replace the configured pub listeners.
    #[arg(long, global = true, value_name = "ADDR", value_delimiter = ',',
          help = format!("Publisher listen address, keep it private; repeatable or \
                          comma-separated, replaces the pub listeners \
                          [env: PUSHPULL_PUB_LISTEN] [default: {DEFAULT_PUB_LISTEN}]"))]
    pub pub_listen: Vec<SocketAddr>,

    /// Channel signature key.
    #[arg(
        long,
        global = true,
        value_name = "KEY",
        help = "Channel signature key, the PHP signature_key; empty accepts unsigned ids. \
                  Command lines are visible to other users: prefer the file or the env \
                  [env: PUSHPULL_SECURITY_KEY] [default: none]"
    )]
    pub security_key: Option<String>,

    /// Signature HMAC hash.
    #[arg(
        long,
        global = true,
        value_name = "ALGO",
        value_enum,
        help = "HMAC hash for channel signatures [env: PUSHPULL_SIGNATURE_ALGO] \
                  [default: sha1]"
    )]
    pub signature_algo: Option<super::SignatureAlgo>,

    /// Long-poll hold time.
    #[arg(long, global = true, value_name = "DUR", value_parser = file::parse_duration,
          help = format!("How long a long-poll request waits for messages, e.g. 40, 40s, \
                          500ms, 2m [env: PUSHPULL_LONGPOLL_HOLD] [default: {}]",
                         file::format_duration(DEFAULT_LONGPOLL_HOLD)))]
    pub longpoll_hold: Option<Duration>,

    /// WebSocket ping interval.
    #[arg(long, global = true, value_name = "DUR", value_parser = file::parse_duration,
          help = format!("Ping interval on idle WebSockets [env: PUSHPULL_WS_PING_INTERVAL] \
                          [default: {}]", file::format_duration(DEFAULT_WS_PING_INTERVAL)))]
    pub ws_ping_interval: Option<Duration>,

    /// Cap on Message-Expiry, seconds.
    #[arg(long, global = true, value_name = "SECS",
          help = format!("Longest time a message is kept, in seconds; caps Message-Expiry \
                          [env: PUSHPULL_MESSAGE_TTL] [default: {DEFAULT_MESSAGE_TTL}]"))]
    pub message_ttl: Option<u32>,

    /// Connection limit for the process.
    #[arg(long, global = true, value_name = "N",
          help = format!("Most client connections for the whole process, split evenly per \
                          thread [env: PUSHPULL_MAX_CONNECTIONS] \
                          [default: {DEFAULT_MAX_CONNECTIONS}]"))]
    pub max_connections: Option<usize>,

    /// Log level.
    #[arg(long, global = true, value_name = "LEVEL",
          help = format!("Log level: {} [env: PUSHPULL_LOG_LEVEL] [default: {DEFAULT_LOG_LEVEL}]",
                         LOG_LEVELS.join("|")))]
    pub log_level: Option<String>,

    /// Online TTL.
    #[arg(long, global = true, value_name = "DUR", value_parser = file::parse_duration,
          help = format!("A channel stays online this long (plus online_delta) after its last \
                          connection left [env: PUSHPULL_ONLINE_TTL] \
                          [default: {}]", file::format_duration(DEFAULT_ONLINE_TTL)))]
    pub online_ttl: Option<Duration>,

    /// Message store kind.
    #[arg(
        long,
        global = true,
        value_name = "TYPE",
        value_enum,
        help = "Message store: memory (this process) or redis [env: PUSHPULL_STORAGE] \
                  [default: memory]"
    )]
    pub storage: Option<StorageType>,

    /// Redis address(es); implies `--storage redis`.
    #[arg(
        long,
        global = true,
        value_name = "ADDR[,ADDR...]",
        value_parser = parse_redis_servers,
        help = "Redis server, HOST:PORT or a Unix socket path starting with '/'; several \
                  separated by commas shard the channels over them; implies --storage redis \
                  [env: PUSHPULL_REDIS_HOST, PUSHPULL_REDIS_PORT, PUSHPULL_REDIS_SOCKET, \
                  PUSHPULL_REDIS_SERVERS] [default: 127.0.0.1:6379]"
    )]
    pub redis: Option<RedisServers>,

    /// TLS to Redis.
    #[arg(
        long,
        global = true,
        help = "Connect to Redis over TLS (TCP addresses only) [env: PUSHPULL_REDIS_TLS] \
                  [default: off]"
    )]
    pub redis_tls: bool,

    /// CA file for Redis TLS.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help = "PEM file of the CAs that sign the Redis servers' certificates; implies \
                  --redis-tls [env: PUSHPULL_REDIS_TLS_CA_FILE] [default: the system's roots]"
    )]
    pub redis_tls_ca_file: Option<PathBuf>,

    /// Networks that may publish.
    #[arg(
        long,
        global = true,
        value_name = "NET",
        value_delimiter = ',',
        value_parser = super::parse_net,
        help = "Networks whose peers may use the publisher routes, CIDR (10.0.0.0/8, ::1/128) \
                  or an address; repeatable or comma-separated [env: PUSHPULL_PUBLISH_ALLOW] \
                  [default: none, every peer that reaches the pub listener]"
    )]
    pub publish_allow: Vec<ipnet::IpNet>,

    /// Whether publisher requests must be signed.
    #[arg(
        long,
        global = true,
        value_name = "MODE",
        value_enum,
        help = "required: publisher requests must carry ?signature=, the HMAC of the request \
                  body with the security key [env: PUSHPULL_PUBLISH_SIGNATURE] [default: off]"
    )]
    pub publish_signature: Option<super::PublishSignature>,

    /// State file of the embedded engine.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help = "Where stored messages and the id counter are saved at shutdown and reloaded \
                  at start (memory storage) [env: PUSHPULL_STATE_FILE] [default: none]"
    )]
    pub state_file: Option<PathBuf>,

    /// What to do; `run` when absent.
    #[command(subcommand)]
    pub subcommand: Option<Command>,
}

/// The Redis servers given to `--redis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisServers(pub Vec<RedisAddr>);

fn parse_redis_servers(text: &str) -> Result<RedisServers, String> {
    parse_redis_list(text).map(RedisServers)
}

/// The subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Run,
    /// Validate the configuration, print the effective settings as TOML and exit.
    CheckConfig,
}

impl Cli {
    /// The subcommand, [`Command::Run`] when none was given.
    pub fn command(&self) -> Command {
        self.subcommand.unwrap_or(Command::Run)
    }

    /// The settings the flags set.
    pub(crate) fn layer(&self) -> Layer {
        fn list(addrs: &[SocketAddr]) -> Option<Vec<SocketAddr>> {
            (!addrs.is_empty()).then(|| addrs.to_vec())
        }
        let redis_tls = self.redis_tls || self.redis_tls_ca_file.is_some();
        let storage = (self.storage.is_some() || self.redis.is_some() || redis_tls).then(|| {
            let mut s = StorageLayer {
                kind: self.storage,
                tls: redis_tls.then_some(true),
                tls_ca_file: self.redis_tls_ca_file.clone(),
                ..StorageLayer::default()
            };
            if let Some(RedisServers(addrs)) = self.redis.clone() {
                s.set_addrs(addrs);
            }
            s
        });
        Layer {
            threads: self.threads,
            sub_listen: list(&self.sub_listen),
            pub_listen: list(&self.pub_listen),
            security_key: self.security_key.clone(),
            signature_algo: self.signature_algo,
            longpoll_hold: self.longpoll_hold.map(file::Dur),
            ws_ping_interval: self.ws_ping_interval.map(file::Dur),
            message_ttl: self.message_ttl,
            max_connections: self.max_connections,
            log_level: self.log_level.clone(),
            online_ttl: self.online_ttl.map(file::Dur),
            state_file: self.state_file.clone(),
            publish_allow: (!self.publish_allow.is_empty()).then(|| {
                self.publish_allow
                    .iter()
                    .map(|n| super::lockdown::Net(*n))
                    .collect()
            }),
            publish_signature: self.publish_signature,
            storage,
            ..Layer::default()
        }
    }
}

/// The process's `PUSHPULL_*` variables; a non-UTF-8 value is an error naming the variable.
pub(crate) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        let value = value.into_string().map_err(|_| ConfigError::Env {
            name: name.to_owned(),
            message: "value is not valid UTF-8".to_owned(),
        })?;
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

/// The files the environment names.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct EnvSources {
    /// `PUSHPULL_CONFIG`.
    pub(crate) config: Option<PathBuf>,
    /// `PUSHPULL_BITRIX_CONFIG`.
    pub(crate) bitrix_config: Option<PathBuf>,
    /// `PUSHPULL_BITRIX_SYSCONFIG`.
    pub(crate) bitrix_sysconfig: Option<PathBuf>,
}

/// The settings the environment sets, and the files it names (`PUSHPULL_CONFIG`,
/// `PUSHPULL_BITRIX_CONFIG`, `PUSHPULL_BITRIX_SYSCONFIG`).
///
/// Empty values count as unset, except `PUSHPULL_SECURITY_KEY=`, which sets an empty key (no
/// signature checks). Variables with the prefix that pushpull does not know are ignored, so
/// other tools may share the prefix. When a name repeats, the last value wins.
pub(crate) fn env_layer(env: &[(String, String)]) -> Result<(Layer, EnvSources), ConfigError> {
    let mut layer = Layer::default();
    let mut sources = EnvSources::default();
    for (name, value) in env {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if key == "SECURITY_KEY" {
            layer.security_key = Some(value.clone());
            continue;
        }
        if key == "REDIS_PASSWORD" {
            layer.storage.get_or_insert_default().password = Some(value.clone());
            continue;
        }
        let v = value.trim();
        if v.is_empty() {
            continue;
        }
        let err = |message: String| ConfigError::Env {
            name: name.clone(),
            message,
        };
        let int = |what: &str| -> Result<usize, ConfigError> {
            v.parse()
                .map_err(|_| err(format!("expected {what}, got {v:?}")))
        };
        let dur = || -> Result<Option<file::Dur>, ConfigError> {
            file::parse_duration(v)
                .map(|d| Some(file::Dur(d)))
                .map_err(err)
        };
        let addrs = || -> Result<Option<Vec<SocketAddr>>, ConfigError> {
            let mut out = Vec::new();
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                out.push(file::parse_addr(part).map_err(err)?);
            }
            Ok(Some(out))
        };
        match key {
            "CONFIG" => sources.config = Some(PathBuf::from(v)),
            "BITRIX_CONFIG" => sources.bitrix_config = Some(PathBuf::from(v)),
            "BITRIX_SYSCONFIG" => sources.bitrix_sysconfig = Some(PathBuf::from(v)),
            "THREADS" => layer.threads = Some(int("a number of threads")?),
            "SUB_LISTEN" => layer.sub_listen = addrs()?,
            "PUB_LISTEN" => layer.pub_listen = addrs()?,
            "SIGNATURE_ALGO" => {
                layer.signature_algo = Some(match v.to_ascii_lowercase().as_str() {
                    "sha1" => super::SignatureAlgo::Sha1,
                    "sha256" => super::SignatureAlgo::Sha256,
                    _ => return Err(err(format!("expected sha1 or sha256, got {v:?}"))),
                })
            }
            "LONGPOLL_HOLD" => layer.longpoll_hold = dur()?,
            "WS_PING_INTERVAL" => layer.ws_ping_interval = dur()?,
            "MESSAGE_TTL" => {
                layer.message_ttl = Some(
                    v.parse()
                        .map_err(|_| err(format!("expected seconds, got {v:?}")))?,
                )
            }
            "CHANNEL_HISTORY" => layer.channel_history = Some(int("a message count")?),
            "HISTORY_MAX_BYTES" => layer.history_max_bytes = Some(int("a byte count")?),
            "REPLAY_MAX" => layer.replay_max = Some(int("a message count")?),
            "MAX_PAYLOAD" => layer.max_payload = Some(int("a byte count")?),
            "MAX_CHANNELS_PER_REQUEST" => {
                layer.max_channels_per_request = Some(int("a channel count")?)
            }
            "MAX_CONNECTIONS" => layer.max_connections = Some(int("a connection count")?),
            "HEAD_TIMEOUT" => layer.head_timeout = dur()?,
            "KEEPALIVE_TIMEOUT" => layer.keepalive_timeout = dur()?,
            "OUT_QUEUE_BYTES" => layer.out_queue_bytes = Some(int("a byte count")?),
            "SHUTDOWN_GRACE" => layer.shutdown_grace = dur()?,
            "LOG_LEVEL" => layer.log_level = Some(v.to_owned()),
            "ONLINE_TTL" => layer.online_ttl = dur()?,
            "ONLINE_DELTA" => layer.online_delta = dur()?,
            "MAX_CONN_PER_CHANNEL" => layer.max_conn_per_channel = Some(int("a connection count")?),
            "MAX_MESSAGES_PER_REQUEST" => {
                layer.max_messages_per_request = Some(int("a message count")?)
            }
            "STATS_INTERVAL" => layer.stats_interval = dur()?,
            "STATE_FILE" => layer.state_file = Some(PathBuf::from(v)),
            "PUBLISH_ALLOW" => {
                let nets = super::lockdown::parse_net_list(v).map_err(err)?;
                layer.publish_allow = Some(nets.into_iter().map(super::lockdown::Net).collect());
            }
            "PUBLISH_SIGNATURE" => {
                layer.publish_signature = Some(super::PublishSignature::parse(v).map_err(err)?);
            }
            "STORAGE" => {
                layer.storage.get_or_insert_default().kind =
                    Some(match v.to_ascii_lowercase().as_str() {
                        "memory" => StorageType::Memory,
                        "redis" => StorageType::Redis,
                        _ => return Err(err(format!("expected memory or redis, got {v:?}"))),
                    })
            }
            "REDIS_HOST" => layer.storage.get_or_insert_default().host = Some(v.to_owned()),
            "REDIS_PORT" => {
                let port = v
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| err(format!("expected a port 1..=65535, got {v:?}")))?;
                layer.storage.get_or_insert_default().port = Some(port);
            }
            "REDIS_SOCKET" => layer.storage.get_or_insert_default().socket = Some(PathBuf::from(v)),
            "REDIS_SERVERS" => {
                let list = parse_redis_list(v).map_err(err)?;
                layer.storage.get_or_insert_default().servers =
                    Some(list.iter().map(ToString::to_string).collect());
            }
            "REDIS_TLS" => {
                let on = match v.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" => false,
                    _ => return Err(err(format!("expected true or false, got {v:?}"))),
                };
                layer.storage.get_or_insert_default().tls = Some(on);
            }
            "REDIS_TLS_CA_FILE" => {
                layer.storage.get_or_insert_default().tls_ca_file = Some(PathBuf::from(v))
            }
            "REDIS_DATABASE" => {
                let db = v
                    .parse::<u32>()
                    .map_err(|_| err(format!("expected a database number, got {v:?}")))?;
                layer.storage.get_or_insert_default().database = Some(db);
            }
            _ => {}
        }
    }
    Ok((layer, sources))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("pushpull").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn clap_definition_is_consistent() {
        <Cli as CommandFactory>::command().debug_assert();
    }

    #[test]
    fn options_may_follow_the_subcommand() {
        let cli = parse(&["check-config", "--threads", "2", "-c", "f.toml"]);
        assert_eq!(cli.command(), Command::CheckConfig);
        assert_eq!(cli.threads, Some(2));
        assert_eq!(cli.config, Some(PathBuf::from("f.toml")));
    }

    #[test]
    fn subcommands() {
        assert_eq!(parse(&[]).command(), Command::Run);
        assert_eq!(parse(&["run"]).command(), Command::Run);
        assert_eq!(parse(&["check-config"]).command(), Command::CheckConfig);
        assert_eq!(
            parse(&["-c", "x.toml", "check-config"]).config,
            Some(PathBuf::from("x.toml"))
        );
        assert!(Cli::try_parse_from(["pushpull", "serve"]).is_err());
    }

    #[test]
    fn flags_parse() {
        let cli = parse(&[
            "--config=/etc/pp.toml",
            "--threads",
            "3",
            "--sub-listen",
            "127.0.0.1:1",
            "--sub-listen",
            "127.0.0.1:2,[::1]:3",
            "--pub-listen",
            "0.0.0.0:4",
            "--security-key",
            "k",
            "--signature-algo",
            "sha256",
            "--longpoll-hold",
            "500ms",
            "--ws-ping-interval",
            "2m",
            "--message-ttl",
            "60",
            "--max-connections",
            "10",
            "--log-level",
            "debug",
            "--online-ttl",
            "90s",
            "--storage",
            "redis",
            "--redis",
            "/run/redis.sock",
            "--state-file",
            "/var/lib/pp.state",
            "--bitrix-config",
            "/etc/push-server",
            "--bitrix-sysconfig=/etc/sysconfig/push-server-multi",
        ]);
        assert_eq!(cli.config, Some(PathBuf::from("/etc/pp.toml")));
        assert_eq!(cli.threads, Some(3));
        assert_eq!(cli.sub_listen.len(), 3);
        assert_eq!(cli.pub_listen.len(), 1);
        assert_eq!(
            cli.signature_algo,
            Some(super::super::SignatureAlgo::Sha256)
        );
        assert_eq!(cli.longpoll_hold, Some(Duration::from_millis(500)));
        assert_eq!(cli.ws_ping_interval, Some(Duration::from_secs(120)));
        assert_eq!(cli.message_ttl, Some(60));
        assert_eq!(cli.max_connections, Some(10));
        assert_eq!(cli.log_level.as_deref(), Some("debug"));
        assert_eq!(cli.online_ttl, Some(Duration::from_secs(90)));
        assert_eq!(cli.storage, Some(StorageType::Redis));
        assert_eq!(
            cli.redis,
            Some(RedisServers(vec![RedisAddr::Socket(PathBuf::from(
                "/run/redis.sock"
            ))]))
        );
        assert_eq!(cli.state_file, Some(PathBuf::from("/var/lib/pp.state")));
        assert_eq!(cli.bitrix_config, Some(PathBuf::from("/etc/push-server")));
        assert_eq!(
            cli.bitrix_sysconfig,
            Some(PathBuf::from("/etc/sysconfig/push-server-multi"))
        );
    }

    #[test]
    fn bad_flag_values_are_rejected_by_clap() {
        for args in [
            &["--threads", "x"][..],
            &["--sub-listen", "localhost"],
            &["--pub-listen", "1.2.3.4"],
            &["--signature-algo", "md5"],
            &["--longpoll-hold", "40x"],
            &["--message-ttl", "-1"],
            &["--online-ttl", "x"],
            &["--storage", "disk"],
            &["--redis", "h:0"],
            &["--redis", "a:1,"],
            &["--redis", "a:1,b:x"],
            &["--bogus"],
        ] {
            let argv = std::iter::once("pushpull").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn help_describes_every_option_with_its_default() {
        let help = <Cli as CommandFactory>::command().render_help().to_string();
        for needle in [
            "--config",
            "--threads",
            "--sub-listen",
            "--pub-listen",
            "--security-key",
            "--signature-algo",
            "--longpoll-hold",
            "--ws-ping-interval",
            "--message-ttl",
            "--max-connections",
            "--log-level",
            "--online-ttl",
            "--storage",
            "--redis",
            "--redis-tls",
            "--redis-tls-ca-file",
            "PUSHPULL_REDIS_SERVERS",
            "--state-file",
            "--bitrix-config",
            "--bitrix-sysconfig",
            "[env: PUSHPULL_BITRIX_CONFIG]",
            "check-config",
            "[default: number of CPUs]",
            "[default: 127.0.0.1:8010]",
            "[default: 127.0.0.1:9010]",
            "[default: sha1]",
            "[default: 40s]",
            "[default: 120s]",
            "[default: 86400]",
            "[default: 100000]",
            "[default: info]",
            "[env: PUSHPULL_SUB_LISTEN]",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
        // Every option line carries a default.
        assert_eq!(help.matches("[default:").count(), 21, "{help}");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_values() {
        let (layer, path) = env_layer(&env(&[
            ("PUSHPULL_CONFIG", "/etc/pp.toml"),
            ("PUSHPULL_BITRIX_CONFIG", "/etc/push-server"),
            (
                "PUSHPULL_BITRIX_SYSCONFIG",
                "/etc/sysconfig/push-server-multi",
            ),
            ("PUSHPULL_SUB_LISTEN", " 127.0.0.1:1, 127.0.0.1:2 ,"),
            ("PUSHPULL_THREADS", ""),
            ("PUSHPULL_SIGNATURE_ALGO", "SHA256"),
            ("PUSHPULL_HEAD_TIMEOUT", "1.5s"),
            ("PUSHPULL_SOMETHING_ELSE", "ignored"),
            ("OTHER_THREADS", "9"),
            ("PUSHPULL_REPLAY_MAX", "5"),
            ("PUSHPULL_REPLAY_MAX", "6"),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path.config, Some(PathBuf::from("/etc/pp.toml")));
        assert_eq!(layer.sub_listen.map(|l| l.len()), Some(2));
        assert_eq!(layer.threads, None);
        assert_eq!(
            layer.signature_algo,
            Some(super::super::SignatureAlgo::Sha256)
        );
        assert_eq!(
            layer.head_timeout,
            Some(file::Dur(Duration::from_millis(1500)))
        );
        assert_eq!(layer.replay_max, Some(6));
        assert_eq!(path.bitrix_config, Some(PathBuf::from("/etc/push-server")));
        assert_eq!(
            path.bitrix_sysconfig,
            Some(PathBuf::from("/etc/sysconfig/push-server-multi"))
        );
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        for (name, value) in [
            ("PUSHPULL_THREADS", "two"),
            ("PUSHPULL_SUB_LISTEN", "127.0.0.1:1,nope"),
            ("PUSHPULL_PUB_LISTEN", "127.0.0.1"),
            ("PUSHPULL_SIGNATURE_ALGO", "md5"),
            ("PUSHPULL_LONGPOLL_HOLD", "forever"),
            ("PUSHPULL_MESSAGE_TTL", "99999999999"),
            ("PUSHPULL_MAX_PAYLOAD", "-1"),
        ] {
            match env_layer(&env(&[(name, value)])) {
                Err(ConfigError::Env { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}={value}: expected an Env error, got {other:?}"),
            }
        }
    }
}
