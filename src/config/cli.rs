//! The command line (`pushpull [OPTIONS] [COMMAND]`) and the `PUSHPULL_*` environment variables.
//!
//! The environment is read by [`env_layer`], not by clap, so that tests can pass it explicitly
//! and the precedence flags > environment > file > defaults holds by construction.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    ConfigError, DEFAULT_LOG_LEVEL, DEFAULT_LONGPOLL_HOLD, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MESSAGE_TTL, DEFAULT_PUB_LISTEN, DEFAULT_SUB_LISTEN, DEFAULT_WS_PING_INTERVAL,
    LOG_LEVELS, Layer, MAX_THREADS, file,
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

    /// What to do; `run` when absent.
    #[command(subcommand)]
    pub subcommand: Option<Command>,
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

/// The settings the environment sets, and the config file it names (`PUSHPULL_CONFIG`).
///
/// Empty values count as unset, except `PUSHPULL_SECURITY_KEY=`, which sets an empty key (no
/// signature checks). Variables with the prefix that pushpull does not know are ignored, so
/// other tools may share the prefix. When a name repeats, the last value wins.
pub(crate) fn env_layer(env: &[(String, String)]) -> Result<(Layer, Option<PathBuf>), ConfigError> {
    let mut layer = Layer::default();
    let mut config_path = None;
    for (name, value) in env {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if key == "SECURITY_KEY" {
            layer.security_key = Some(value.clone());
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
            "CONFIG" => config_path = Some(PathBuf::from(v)),
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
            _ => {}
        }
    }
    Ok((layer, config_path))
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
        assert_eq!(help.matches("[default:").count(), 11, "{help}");
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
        assert_eq!(path, Some(PathBuf::from("/etc/pp.toml")));
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
