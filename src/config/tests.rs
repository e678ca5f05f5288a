//! Loading tests: precedence, validation, listener rules, file reading and `to_toml`.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;

use super::*;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("pushpull").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Loads with `file` as the contents of any config file named.
fn load(args: &[&str], env_pairs: &[(&str, &str)], file: &str) -> Result<Config, ConfigError> {
    Config::load_from(&cli(args), &env(env_pairs), |_| Ok(file.to_owned()))
}

fn ok(args: &[&str], env_pairs: &[(&str, &str)], file: &str) -> Config {
    load(args, env_pairs, file).unwrap_or_else(|e| panic!("{e}"))
}

fn invalid_field(args: &[&str], env_pairs: &[(&str, &str)], file: &str) -> &'static str {
    match load(args, env_pairs, file) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn l(kind: ListenerKind, a: &str) -> ListenerConfig {
    ListenerConfig::plain(kind, addr(a))
}

#[test]
fn defaults() {
    let c = ok(&[], &[], "");
    assert_eq!(c, Config::default());
    assert!((1..=MAX_THREADS).contains(&c.threads));
    assert_eq!(
        c.listeners,
        vec![
            l(ListenerKind::Sub, DEFAULT_SUB_LISTEN),
            l(ListenerKind::Pub, DEFAULT_PUB_LISTEN)
        ]
    );
    assert_eq!(c.security_key, None);
    assert_eq!(c.signature_algo, SignatureAlgo::Sha1);
    assert_eq!(c.longpoll_hold, DEFAULT_LONGPOLL_HOLD);
    assert_eq!(c.channel_history, DEFAULT_CHANNEL_HISTORY);
    assert_eq!(c.history_max_bytes, DEFAULT_HISTORY_MAX_BYTES);
    assert_eq!(c.replay_max, DEFAULT_REPLAY_MAX);
    assert_eq!(c.log_level, "info");
    assert!(c.validate().is_ok());
}

#[test]
fn precedence_flags_over_env_over_file_over_defaults() {
    let file = "threads = 2\nlongpoll_hold = 30\nws_ping_interval = 50\nmessage_ttl = 100\n\
                log_level = \"warn\"\n";
    let env_all = [
        ("PUSHPULL_THREADS", "3"),
        ("PUSHPULL_LONGPOLL_HOLD", "20"),
        ("PUSHPULL_MESSAGE_TTL", "200"),
    ];
    // File only over defaults.
    let c = ok(&["-c", "f.toml"], &[], file);
    assert_eq!(c.threads, 2);
    assert_eq!(c.longpoll_hold, Duration::from_secs(30));
    assert_eq!(c.log_level, "warn");
    assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
    // Env over file; file keeps what env does not set.
    let c = ok(&["-c", "f.toml"], &env_all, file);
    assert_eq!(c.threads, 3);
    assert_eq!(c.longpoll_hold, Duration::from_secs(20));
    assert_eq!(c.message_ttl, 200);
    assert_eq!(c.ws_ping_interval, Duration::from_secs(50));
    // Flags over env; env keeps what flags do not set.
    let c = ok(
        &["-c", "f.toml", "--threads", "4", "--longpoll-hold", "10s"],
        &env_all,
        file,
    );
    assert_eq!(c.threads, 4);
    assert_eq!(c.longpoll_hold, Duration::from_secs(10));
    assert_eq!(c.message_ttl, 200);
    assert_eq!(c.ws_ping_interval, Duration::from_secs(50));
    assert_eq!(c.log_level, "warn");
    // Flags over env over defaults, no file.
    let c = ok(&["--message-ttl", "7"], &env_all, "");
    assert_eq!((c.threads, c.message_ttl), (3, 7));
}

#[test]
fn precedence_for_every_flag() {
    let file = "threads = 2\nsecurity_key = \"file\"\nsignature_algo = \"sha1\"\n\
                longpoll_hold = 30\nws_ping_interval = 30\nmessage_ttl = 30\n\
                max_connections = 30\nlog_level = \"warn\"\n";
    let envs = [
        ("PUSHPULL_THREADS", "3"),
        ("PUSHPULL_SECURITY_KEY", "env"),
        ("PUSHPULL_SIGNATURE_ALGO", "sha256"),
        ("PUSHPULL_LONGPOLL_HOLD", "20"),
        ("PUSHPULL_WS_PING_INTERVAL", "20"),
        ("PUSHPULL_MESSAGE_TTL", "20"),
        ("PUSHPULL_MAX_CONNECTIONS", "20"),
        ("PUSHPULL_LOG_LEVEL", "debug"),
    ];
    let c = ok(&["-c", "f"], &envs, file);
    assert_eq!(c.threads, 3);
    assert_eq!(c.security_key.as_deref(), Some("env"));
    assert_eq!(c.signature_algo, SignatureAlgo::Sha256);
    assert_eq!(c.ws_ping_interval, Duration::from_secs(20));
    assert_eq!(c.max_connections, 20);
    assert_eq!(c.log_level, "debug");
    let c = ok(
        &[
            "-c",
            "f",
            "--threads=1",
            "--security-key=flag",
            "--signature-algo=sha1",
            "--longpoll-hold=1",
            "--ws-ping-interval=1",
            "--message-ttl=1",
            "--max-connections=1",
            "--log-level=ERROR",
        ],
        &envs,
        file,
    );
    assert_eq!(c.threads, 1);
    assert_eq!(c.security_key.as_deref(), Some("flag"));
    assert_eq!(c.signature_algo, SignatureAlgo::Sha1);
    assert_eq!(c.longpoll_hold, Duration::from_secs(1));
    assert_eq!(c.ws_ping_interval, Duration::from_secs(1));
    assert_eq!(c.message_ttl, 1);
    assert_eq!(c.max_connections, 1);
    assert_eq!(c.log_level, "error");
}

#[test]
fn every_file_key_has_an_env_override() {
    let envs = [
        ("PUSHPULL_CHANNEL_HISTORY", "5"),
        ("PUSHPULL_HISTORY_MAX_BYTES", "2000000"),
        ("PUSHPULL_REPLAY_MAX", "6"),
        ("PUSHPULL_MAX_PAYLOAD", "2000"),
        ("PUSHPULL_MAX_CHANNELS_PER_REQUEST", "7"),
        ("PUSHPULL_HEAD_TIMEOUT", "500ms"),
        ("PUSHPULL_KEEPALIVE_TIMEOUT", "1m"),
        ("PUSHPULL_OUT_QUEUE_BYTES", "3000"),
        ("PUSHPULL_SHUTDOWN_GRACE", "2"),
    ];
    let c = ok(&[], &envs, "");
    assert_eq!(c.channel_history, 5);
    assert_eq!(c.history_max_bytes, 2_000_000);
    assert_eq!(c.replay_max, 6);
    assert_eq!(c.max_payload, 2000);
    assert_eq!(c.max_channels_per_request, 7);
    assert_eq!(c.head_timeout, Duration::from_millis(500));
    assert_eq!(c.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(c.out_queue_bytes, 3000);
    assert_eq!(c.shutdown_grace, Duration::from_secs(2));
}

#[test]
fn new_settings_defaults_and_sources() {
    let c = Config::default();
    assert_eq!(c.online_ttl, DEFAULT_ONLINE_TTL);
    assert_eq!(c.online_delta, DEFAULT_ONLINE_DELTA);
    assert_eq!(c.max_conn_per_channel, DEFAULT_MAX_CONN_PER_CHANNEL);
    assert_eq!(c.max_messages_per_request, DEFAULT_MAX_MESSAGES_PER_REQUEST);
    assert_eq!(c.stats_interval, DEFAULT_STATS_INTERVAL);
    assert_eq!(c.state_file, None);
    assert_eq!(c.storage, Storage::Memory);
    // Every key from the file.
    let file = "online_ttl = 60\nonline_delta = 0\nmax_conn_per_channel = 5\n\
                max_messages_per_request = 6\nstats_interval = \"2m\"\n\
                state_file = \"/tmp/s\"\n[storage]\ntype = \"redis\"\n\
                socket = \"/run/redis.sock\"\ndatabase = 2\npassword = \"pw\"\n";
    let c = ok(&["-c", "f"], &[], file);
    assert_eq!(c.online_ttl, Duration::from_secs(60));
    assert_eq!(c.online_delta, Duration::ZERO);
    assert_eq!((c.max_conn_per_channel, c.max_messages_per_request), (5, 6));
    assert_eq!(c.stats_interval, Duration::from_secs(120));
    assert_eq!(c.state_file, Some(PathBuf::from("/tmp/s")));
    let redis = RedisConfig {
        socket: Some(PathBuf::from("/run/redis.sock")),
        database: 2,
        password: Some("pw".to_owned()),
        ..RedisConfig::default()
    };
    assert_eq!(c.storage, Storage::Redis(redis.clone()));
    // Env over file: a TCP address replaces the socket, the rest is kept.
    let e = [
        ("PUSHPULL_REDIS_HOST", "10.0.0.5"),
        ("PUSHPULL_REDIS_PORT", "6380"),
        ("PUSHPULL_ONLINE_TTL", "30"),
        ("PUSHPULL_STATE_FILE", "/tmp/e"),
    ];
    let c = ok(&["-c", "f"], &e, file);
    let tcp = RedisConfig {
        host: "10.0.0.5".to_owned(),
        port: 6380,
        socket: None,
        ..redis.clone()
    };
    assert_eq!(c.storage, Storage::Redis(tcp.clone()));
    assert_eq!(c.online_ttl, Duration::from_secs(30));
    assert_eq!(c.state_file, Some(PathBuf::from("/tmp/e")));
    // Flags over env.
    let c = ok(
        &[
            "-c",
            "f",
            "--redis",
            "/var/run/r.sock",
            "--online-ttl",
            "1m",
            "--state-file",
            "/tmp/f",
        ],
        &e,
        file,
    );
    let Storage::Redis(r) = &c.storage else {
        panic!("{:?}", c.storage)
    };
    assert_eq!(r.socket, Some(PathBuf::from("/var/run/r.sock")));
    assert_eq!((r.host.as_str(), r.port, r.database), ("10.0.0.5", 6380, 2));
    assert_eq!(c.online_ttl, Duration::from_secs(60));
    assert_eq!(c.state_file, Some(PathBuf::from("/tmp/f")));
    // Storage type switches: env memory over file redis, flag redis over env memory.
    let c = ok(&["-c", "f"], &[("PUSHPULL_STORAGE", "memory")], file);
    assert_eq!(c.storage, Storage::Memory);
    let c = ok(
        &["--storage", "redis"],
        &[("PUSHPULL_STORAGE", "memory")],
        "",
    );
    assert_eq!(c.storage, Storage::Redis(RedisConfig::default()));
    let c = ok(&["--redis", "cache:7000"], &[], "");
    assert_eq!(
        c.storage,
        Storage::Redis(RedisConfig {
            host: "cache".to_owned(),
            port: 7000,
            ..RedisConfig::default()
        })
    );
    // Flags that contradict each other.
    assert_eq!(
        invalid_field(&["--storage", "memory", "--redis", "h:1"], &[], ""),
        "storage"
    );
    // An empty password clears the file's one.
    let c = ok(&["-c", "f"], &[("PUSHPULL_REDIS_PASSWORD", "")], file);
    let Storage::Redis(r) = &c.storage else {
        panic!("{:?}", c.storage)
    };
    assert_eq!(r.password, None);
    // Bad env values name the variable.
    for (name, value) in [
        ("PUSHPULL_STORAGE", "disk"),
        ("PUSHPULL_REDIS_PORT", "0"),
        ("PUSHPULL_REDIS_DATABASE", "x"),
        ("PUSHPULL_ONLINE_TTL", "soon"),
        ("PUSHPULL_MAX_CONN_PER_CHANNEL", "-3"),
    ] {
        match load(&[], &[(name, value)], "") {
            Err(ConfigError::Env { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}={value}: expected Env, got {other:?}"),
        }
    }
}

#[test]
fn config_file_from_env_and_flag() {
    let seen = std::cell::RefCell::new(Vec::new());
    let read = |p: &Path| {
        seen.borrow_mut().push(p.to_path_buf());
        Ok::<_, io::Error>("threads = 1\n".to_owned())
    };
    let e = env(&[("PUSHPULL_CONFIG", "env.toml")]);
    let c = Config::load_from(&cli(&[]), &e, read).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.threads, 1);
    let _ = Config::load_from(&cli(&["-c", "flag.toml"]), &e, read);
    assert_eq!(
        *seen.borrow(),
        vec![PathBuf::from("env.toml"), PathBuf::from("flag.toml")]
    );
}

#[test]
fn security_key_empty_means_unsigned() {
    let file = "security_key = \"secret\"\n";
    assert_eq!(
        ok(&["-c", "f"], &[], file).security_key.as_deref(),
        Some("secret")
    );
    // An explicitly empty env value overrides the file's key.
    let c = ok(&["-c", "f"], &[("PUSHPULL_SECURITY_KEY", "")], file);
    assert_eq!(c.security_key, None);
    let c = ok(
        &["--security-key", ""],
        &[("PUSHPULL_SECURITY_KEY", "x")],
        "",
    );
    assert_eq!(c.security_key, None);
    assert_eq!(
        ok(&["-c", "f"], &[], "security_key = \"\"").security_key,
        None
    );
}

#[test]
fn listener_replacement_rules() {
    let sub = |a: &str| l(ListenerKind::Sub, a);
    let publ = |a: &str| l(ListenerKind::Pub, a);
    // File listeners replace the defaults entirely (no pub listener left here).
    let file = "[[listener]]\nkind = \"sub\"\naddr = \"127.0.0.1:8011\"\n\
                [[listener]]\nkind = \"sub\"\naddr = \"[::1]:8012\"\n";
    let c = ok(&["-c", "f"], &[], file);
    assert_eq!(c.listeners, vec![sub("127.0.0.1:8011"), sub("[::1]:8012")]);
    // A file without [[listener]] keeps the defaults.
    let c = ok(&["-c", "f"], &[], "threads = 1\n");
    assert_eq!(c.listeners, Config::default().listeners);
    // Env sub list replaces only the sub listeners.
    let e = [("PUSHPULL_SUB_LISTEN", "127.0.0.1:1,127.0.0.1:2")];
    let c = ok(&[], &e, "");
    assert_eq!(
        c.listeners,
        vec![
            publ(DEFAULT_PUB_LISTEN),
            sub("127.0.0.1:1"),
            sub("127.0.0.1:2")
        ]
    );
    // Env pub list replaces only the pub listeners.
    let c = ok(&[], &[("PUSHPULL_PUB_LISTEN", "127.0.0.1:3")], "");
    assert_eq!(
        c.listeners,
        vec![sub(DEFAULT_SUB_LISTEN), publ("127.0.0.1:3")]
    );
    // Flags replace the env's sub list, keep the file's pub listener.
    let file = "[[listener]]\nkind = \"pub\"\naddr = \"127.0.0.1:9999\"\n\
                [[listener]]\nkind = \"sub\"\naddr = \"127.0.0.1:8888\"\n";
    let c = ok(
        &[
            "-c",
            "f",
            "--sub-listen",
            "127.0.0.1:5",
            "--sub-listen",
            "127.0.0.1:6",
        ],
        &e,
        file,
    );
    assert_eq!(
        c.listeners,
        vec![
            publ("127.0.0.1:9999"),
            sub("127.0.0.1:5"),
            sub("127.0.0.1:6")
        ]
    );
    // Flag pub list over env pub list.
    let c = ok(
        &["--pub-listen", "127.0.0.1:7"],
        &[("PUSHPULL_PUB_LISTEN", "127.0.0.1:3")],
        "",
    );
    assert_eq!(
        c.listeners_of(ListenerKind::Pub).collect::<Vec<_>>(),
        vec![addr("127.0.0.1:7")]
    );
    // Only pub listeners in the file: no sub listener, rejected.
    let file = "[[listener]]\nkind = \"pub\"\naddr = \"127.0.0.1:9999\"\n";
    assert_eq!(invalid_field(&["-c", "f"], &[], file), "listener");
    // ... unless the environment supplies one.
    let c = ok(
        &["-c", "f"],
        &[("PUSHPULL_SUB_LISTEN", "127.0.0.1:1")],
        file,
    );
    assert_eq!(c.listeners.len(), 2);
    // An env list of only commas is an empty list: no sub listener.
    assert_eq!(
        invalid_field(&[], &[("PUSHPULL_SUB_LISTEN", ",")], ""),
        "listener"
    );
    // The same address twice is rejected.
    assert_eq!(
        invalid_field(&["--sub-listen", "127.0.0.1:9010"], &[], ""),
        "listener"
    );
}

#[test]
fn each_validation_error_names_its_field() {
    let cases: &[(&str, &str)] = &[
        ("threads = 0", "threads"),
        ("threads = 257", "threads"),
        ("longpoll_hold = 0", "longpoll_hold"),
        ("longpoll_hold = \"0ms\"", "longpoll_hold"),
        ("longpoll_hold = \"25h\"", "longpoll_hold"),
        ("ws_ping_interval = 0", "ws_ping_interval"),
        ("head_timeout = 0", "head_timeout"),
        ("keepalive_timeout = 0.0", "keepalive_timeout"),
        ("shutdown_grace = \"0s\"", "shutdown_grace"),
        ("message_ttl = 0", "message_ttl"),
        ("channel_history = 0", "channel_history"),
        ("replay_max = 0", "replay_max"),
        ("max_payload = 1023", "max_payload"),
        ("history_max_bytes = 1000", "history_max_bytes"),
        ("out_queue_bytes = 1000", "out_queue_bytes"),
        ("max_channels_per_request = 0", "max_channels_per_request"),
        ("threads = 4\nmax_connections = 3", "max_connections"),
        ("log_level = \"verbose\"", "log_level"),
        ("online_ttl = 0", "online_ttl"),
        ("online_ttl = \"25h\"", "online_ttl"),
        ("online_delta = \"25h\"", "online_delta"),
        ("stats_interval = \"500ms\"", "stats_interval"),
        ("max_conn_per_channel = 0", "max_conn_per_channel"),
        ("max_messages_per_request = 0", "max_messages_per_request"),
        ("[storage]\ntype = \"memory\"\nhost = \"h\"", "storage"),
        ("[storage]\ntype = \"redis\"\nhost = \"\"", "storage.host"),
        ("[storage]\ntype = \"redis\"\nport = 0", "storage.port"),
        ("[storage]\nsocket = \"redis.sock\"", "storage.socket"),
        (
            "[storage]\ntype = \"redis\"\npassword = \"<set, 3 chars>\"",
            "storage.password",
        ),
        ("security_key = \"<set, 12 chars>\"", "security_key"),
        (
            "[[listener]]\nkind = \"pub\"\naddr = \"127.0.0.1:1\"",
            "listener",
        ),
        (
            "[[listener]]\nkind = \"sub\"\naddr = \"127.0.0.1:1\"\n\
             [[listener]]\nkind = \"pub\"\naddr = \"127.0.0.1:1\"",
            "listener",
        ),
    ];
    for (file, field) in cases {
        match load(&["-c", "f"], &[], file) {
            Err(ConfigError::Invalid { field: f, message }) => {
                assert_eq!(f, *field, "{file}: {message}");
                let shown = ConfigError::Invalid { field: f, message }.to_string();
                assert!(shown.contains(field), "{shown}");
            }
            other => panic!("{file}: expected Invalid({field}), got {other:?}"),
        }
    }
    // Boundaries that are accepted.
    let c = ok(
        &["-c", "f"],
        &[],
        "threads = 256\nmax_payload = 1024\nlongpoll_hold = \"24h\"\nlog_level = \"TRACE\"\n",
    );
    assert_eq!(
        (c.threads, c.max_payload, c.log_level.as_str()),
        (256, 1024, "trace")
    );
    // Flags and env values are validated too.
    assert_eq!(invalid_field(&["--threads", "0"], &[], ""), "threads");
    assert_eq!(
        invalid_field(&["--log-level", "loud"], &[], ""),
        "log_level"
    );
    assert_eq!(
        invalid_field(&[], &[("PUSHPULL_THREADS", "300")], ""),
        "threads"
    );
    assert_eq!(
        invalid_field(&[], &[("PUSHPULL_WS_PING_INTERVAL", "0")], ""),
        "ws_ping_interval"
    );
}

#[test]
fn parse_errors_carry_path_line_and_column() {
    let text = "threads = 2\n\n[[listener]]\nkind = \"sub\"\naddr = \"nope\"\n";
    match load(&["-c", "my.toml"], &[], text) {
        Err(e @ ConfigError::Parse { .. }) => {
            let ConfigError::Parse {
                path, line, column, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(path, Path::new("my.toml"));
            assert_eq!((*line, *column), (5, 8));
            assert!(e.to_string().starts_with("my.toml:5:8: "), "{e}");
        }
        other => panic!("expected Parse, got {other:?}"),
    }
    match load(&["-c", "f"], &[], "threads = 1\nwhatever = 2\n") {
        Err(ConfigError::Parse {
            line: 2,
            column: 1,
            message,
            ..
        }) => assert!(message.contains("whatever"), "{message}"),
        other => panic!("expected Parse at 2:1, got {other:?}"),
    }
}

#[test]
fn env_errors_and_read_errors() {
    match load(&[], &[("PUSHPULL_MAX_CONNECTIONS", "lots")], "") {
        Err(ConfigError::Env { name, .. }) => assert_eq!(name, "PUSHPULL_MAX_CONNECTIONS"),
        other => panic!("expected Env, got {other:?}"),
    }
    let missing =
        std::env::temp_dir().join(format!("pushpull-missing-{}.toml", std::process::id()));
    let c = cli(&["-c", &missing.to_string_lossy()]);
    match Config::load_with_env(&c, &[]) {
        Err(ConfigError::Read { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected Read, got {other:?}"),
    }
}

#[test]
fn reads_a_real_file() {
    let path = std::env::temp_dir().join(format!("pushpull-config-{}.toml", std::process::id()));
    std::fs::write(&path, "threads = 1\nmessage_ttl = 5\n").unwrap_or_else(|e| panic!("{e}"));
    let c = cli(&["--config", &path.to_string_lossy()]);
    let loaded = Config::load_with_env(&c, &env(&[("PUSHPULL_MESSAGE_TTL", "6")]));
    let _ = std::fs::remove_file(&path);
    let loaded = loaded.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((loaded.threads, loaded.message_ttl), (1, 6));
}

/// A configuration with every setting away from its default, sub-second durations included.
fn unusual() -> Config {
    ok(
        &[
            "--threads=3",
            "--sub-listen=0.0.0.0:1,[::1]:2",
            "--pub-listen=127.0.0.1:3",
            "--security-key=s3cr3t\"\\key",
            "--signature-algo=sha256",
            "--longpoll-hold=1500ms",
            "--ws-ping-interval=2m",
            "--message-ttl=60",
            "--max-connections=999",
            "--log-level=debug",
            "--online-ttl=90",
            "--redis=redis.local:6380",
            "--state-file=/var/lib/pushpull/state.bin",
        ],
        &[
            ("PUSHPULL_CHANNEL_HISTORY", "11"),
            ("PUSHPULL_HISTORY_MAX_BYTES", "2222222"),
            ("PUSHPULL_REPLAY_MAX", "7"),
            ("PUSHPULL_MAX_PAYLOAD", "4444"),
            ("PUSHPULL_MAX_CHANNELS_PER_REQUEST", "55"),
            ("PUSHPULL_HEAD_TIMEOUT", "250ms"),
            ("PUSHPULL_KEEPALIVE_TIMEOUT", "7"),
            ("PUSHPULL_OUT_QUEUE_BYTES", "88888"),
            ("PUSHPULL_SHUTDOWN_GRACE", "1.25s"),
            ("PUSHPULL_ONLINE_DELTA", "2500ms"),
            ("PUSHPULL_MAX_CONN_PER_CHANNEL", "12"),
            ("PUSHPULL_MAX_MESSAGES_PER_REQUEST", "13"),
            ("PUSHPULL_STATS_INTERVAL", "30"),
            ("PUSHPULL_REDIS_DATABASE", "3"),
            ("PUSHPULL_REDIS_PASSWORD", "pa55w0rd"),
        ],
        "",
    )
}

#[test]
fn to_toml_round_trips_except_the_key() {
    for original in [Config::default(), unusual()] {
        let text = original.to_toml();
        let password = match &original.storage {
            Storage::Redis(r) => r.password.clone(),
            Storage::Memory => None,
        };
        if let Some(p) = &password {
            assert!(!text.contains(p.as_str()), "password leaked:\n{text}");
        }
        let password_env: Vec<(&str, &str)> = password
            .as_deref()
            .map(|p| ("PUSHPULL_REDIS_PASSWORD", p))
            .into_iter()
            .collect();
        let back = match &original.security_key {
            None => ok(&["-c", "printed.toml"], &password_env, &text),
            Some(key) => {
                assert!(!text.contains(key.as_str()), "secret leaked:\n{text}");
                // The placeholders themselves are refused as secrets ...
                assert_eq!(
                    invalid_field(&["-c", "printed.toml"], &password_env, &text),
                    "security_key"
                );
                let mut envs = vec![("PUSHPULL_SECURITY_KEY", key.as_str())];
                if password.is_some() {
                    assert_eq!(
                        invalid_field(&["-c", "printed.toml"], &envs, &text),
                        "storage.password"
                    );
                }
                envs.extend(password_env.iter().copied());
                // ... and everything else loads back once the real ones are supplied.
                ok(&["-c", "printed.toml"], &envs, &text)
            }
        };
        assert_eq!(back, original, "printed:\n{text}");
    }
}

/// Counts a TOML file cannot hold (possible from a Bitrix file or the environment) are refused,
/// so `check-config` prints every valid configuration. Found by the config fuzz target:
/// fuzz/regressions/config/crash-682a0892-count-beyond-toml printed "cannot print the
/// configuration" for a Bitrix `maxChannelsPerRequest` of 15532559262904483840.
#[test]
fn counts_fit_the_file_format() {
    let above = (MAX_COUNT + 1).to_string();
    for (var, field) in [
        (
            "PUSHPULL_MAX_CHANNELS_PER_REQUEST",
            "max_channels_per_request",
        ),
        ("PUSHPULL_HISTORY_MAX_BYTES", "history_max_bytes"),
        ("PUSHPULL_OUT_QUEUE_BYTES", "out_queue_bytes"),
    ] {
        assert_eq!(invalid_field(&[], &[(var, &above)], ""), field);
    }
    let most = MAX_COUNT.to_string();
    let config = ok(&[], &[("PUSHPULL_MAX_CHANNELS_PER_REQUEST", &most)], "");
    let text = config.to_toml();
    assert!(
        text.contains(&format!("max_channels_per_request = {most}\n")),
        "{text}"
    );
    assert_eq!(ok(&["-c", "printed.toml"], &[], &text), config);
}

#[test]
fn to_toml_contains_every_key() {
    let text = unusual().to_toml();
    for line in [
        "threads = 3",
        "security_key = \"<set, 11 chars>\"",
        "signature_algo = \"sha256\"",
        "longpoll_hold = \"1500ms\"",
        "ws_ping_interval = 120",
        "message_ttl = 60",
        "channel_history = 11",
        "history_max_bytes = 2222222",
        "replay_max = 7",
        "max_payload = 4444",
        "max_channels_per_request = 55",
        "max_connections = 999",
        "head_timeout = \"250ms\"",
        "keepalive_timeout = 7",
        "out_queue_bytes = 88888",
        "shutdown_grace = \"1250ms\"",
        "log_level = \"debug\"",
        "online_ttl = 90",
        "online_delta = \"2500ms\"",
        "max_conn_per_channel = 12",
        "max_messages_per_request = 13",
        "stats_interval = 30",
        "state_file = \"/var/lib/pushpull/state.bin\"",
        "[storage]",
        "type = \"redis\"",
        "host = \"redis.local\"",
        "port = 6380",
        "database = 3",
        "password = \"<set, 8 chars>\"",
        "[[listener]]",
        "kind = \"sub\"",
        "addr = \"0.0.0.0:1\"",
        "addr = \"[::1]:2\"",
        "kind = \"pub\"",
        "addr = \"127.0.0.1:3\"",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert_eq!(text.matches("[[listener]]").count(), 3, "{text}");
    assert!(!text.contains("s3cr3t"));
    assert!(!text.contains("pa55w0rd"));
    // With no key, the output says so instead of printing a key line.
    let plain = Config::default().to_toml();
    assert!(!plain.contains("security_key ="), "{plain}");
    assert!(!plain.contains("state_file"), "{plain}");
    assert!(plain.contains("[storage]\ntype = \"memory\"\n"), "{plain}");
    assert!(plain.contains("security_key is not set"), "{plain}");
}

#[test]
fn debug_output_redacts_the_key() {
    let shown = format!("{:?}", unusual());
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("<set, 11 chars>"), "{shown}");
    assert!(!shown.contains("pa55w0rd"), "{shown}");
    assert!(shown.contains("<set, 8 chars>"), "{shown}");
    for field in [
        "online_ttl",
        "online_delta",
        "max_conn_per_channel",
        "max_messages_per_request",
        "stats_interval",
        "state_file",
        "storage",
    ] {
        assert!(shown.contains(field), "{field} missing: {shown}");
    }
}

/// spec/cluster.md §9 and §1: several servers (file list, `--redis a,b`, env), TLS settings, a
/// single address in a later source replacing a list, the checks, and the printed form loading
/// back.
#[test]
fn redis_servers_and_tls() {
    let tcp = |h: &str, p| RedisAddr::Tcp {
        host: h.to_owned(),
        port: p,
    };
    let redis = |c: &Config| match &c.storage {
        Storage::Redis(r) => r.clone(),
        Storage::Memory => panic!("memory"),
    };
    let file = "[storage]\nservers = [\"10.0.0.1:6379\", \"/run/r2.sock\", \"[::1]:7000\"]\n";
    let c = ok(&["-c", "f"], &[], file);
    assert_eq!(
        redis(&c).servers,
        vec![
            tcp("10.0.0.1", 6379),
            RedisAddr::Socket(PathBuf::from("/run/r2.sock")),
            tcp("::1", 7000)
        ]
    );
    assert_eq!(redis(&c).addrs(), redis(&c).servers);
    // One address later replaces the list; a one-entry list is that one server.
    let c = ok(&["-c", "f"], &[("PUSHPULL_REDIS_HOST", "solo")], file);
    assert!(redis(&c).servers.is_empty());
    assert_eq!(redis(&c).addrs(), vec![tcp("solo", DEFAULT_REDIS_PORT)]);
    let c = ok(&["-c", "f", "--redis", "one:1"], &[], file);
    assert_eq!(redis(&c).addrs(), vec![tcp("one", 1)]);
    let c = ok(&["-c", "f"], &[], "[storage]\nservers = [\"h:5\"]\n");
    assert!(redis(&c).servers.is_empty());
    assert_eq!((redis(&c).host.as_str(), redis(&c).port), ("h", 5));
    // Flags and environment.
    let c = ok(
        &["--redis", "a:1,b:2", "--redis-tls-ca-file", "/ca.pem"],
        &[],
        "",
    );
    let r = redis(&c);
    assert_eq!(r.servers, vec![tcp("a", 1), tcp("b", 2)]);
    assert!(r.tls, "a CA file implies TLS");
    assert_eq!(r.tls_ca_file, Some(PathBuf::from("/ca.pem")));
    let c = ok(
        &[],
        &[
            ("PUSHPULL_REDIS_SERVERS", "a:1,b:2,c:3"),
            ("PUSHPULL_REDIS_TLS", "true"),
        ],
        "",
    );
    assert_eq!(redis(&c).servers.len(), 3);
    assert!(redis(&c).tls);
    assert_eq!(redis(&c).tls_ca_file, None);
    for (name, value) in [
        ("PUSHPULL_REDIS_SERVERS", "a:1,,b:2"),
        ("PUSHPULL_REDIS_TLS", "maybe"),
    ] {
        match load(&[], &[(name, value)], "") {
            Err(ConfigError::Env { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}={value}: expected Env, got {other:?}"),
        }
    }
    // Checks.
    let many: Vec<String> = (1..=MAX_REDIS_SERVERS as u32 + 1)
        .map(|p| format!("\"h:{p}\""))
        .collect();
    let too_many = format!("[storage]\nservers = [{}]\n", many.join(","));
    for (file, field) in [
        ("[storage]\nservers = [\"a:1\", \"a:1\"]", "storage.servers"),
        ("[storage]\nservers = [\"a:1\", \"h:0\"]", "storage.servers"),
        (too_many.as_str(), "storage.servers"),
        ("[storage]\nsocket = \"/r.sock\"\ntls = true", "storage.tls"),
        (
            "[storage]\nservers = [\"a:1\", \"/r.sock\"]\ntls = true",
            "storage.tls",
        ),
        (
            "[storage]\ntype = \"redis\"\ntls_ca_file = \"/ca.pem\"",
            "storage.tls_ca_file",
        ),
        ("[storage]\ntype = \"memory\"\ntls = true", "storage"),
    ] {
        assert_eq!(invalid_field(&["-c", "f"], &[], file), field, "{file}");
    }
    // The printed form loads back.
    let original = ok(
        &[
            "--redis",
            "a:1,[::1]:2",
            "--redis-tls-ca-file",
            "/etc/ca.pem",
        ],
        &[],
        "",
    );
    let text = original.to_toml();
    assert!(text.contains("servers = [\"a:1\", \"[::1]:2\"]"), "{text}");
    assert!(text.contains("tls = true"), "{text}");
    assert_eq!(ok(&["-c", "printed.toml"], &[], &text), original, "{text}");
}
