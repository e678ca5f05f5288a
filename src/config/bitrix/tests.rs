//! Fixture folders in the shape of the shipped push-server files (BitrixVM templates with the
//! placeholders filled, the docker defaults, the sysconfig file).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::json::quote_placeholders;
use super::*;
use crate::config::{Cli, Config, ListenerKind, RedisConfig};

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("pushpull-bitrix-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sub template of BitrixVM (ramdaron etc/push-server/push-server-sub-__PORT__.json).
const SUB_TEMPLATE: &str = "{\n\t\"servers\": [\n\t\t{\n\t\t\t\"name\": \"sub-__PORT__\",\n\
\t\t\t\"port\": __PORT__,\n\t\t\t\"hostname\": \"__WS_HOST__\",\n\t\t\t\"backlog\": 1024,\n\
\t\t\t\"routes\": {\n\t\t\t\t\"sub\": \"__SUBWSPATH__\"\n\t\t\t}\n\t\t}\n\t],\n\
\t\"clusterMode\": true,\n\t\"processUniqueId\": \"sub-__PORT__\",\n\t\"storage\": {\n\
\t\t\"type\": \"redis\",\n\t\t\"socket\": \"__REDIS_SOCK__\",\n\t\t\"messageTLL\": 86400,\n\
\t\t\"channelTLL\": 86400,\n\t\t\"onlineTLL\": 120,\n\t\t\"onlineDelta\": 10\n\t},\n\
\t\"security\": {\n\t\t\"key\": \"__SECURITY_KEY__\"\n\t},\n    \"debug\": {\n\
        \"folderName\": \"/var/log/push-server\",\n        \"ip\": [__IP_LIST__],\n\
        \"trustProxy\": true\n    }\n}\n";

/// The pub template of BitrixVM (ramdaron etc/push-server/push-server-pub-__PORT__.json).
const PUB_TEMPLATE: &str = "{\n\t\"servers\": [\n\t\t{\n\t\t\t\"name\": \"pub-__PORT__\",\n\
\t\t\t\"port\": __PORT__,\n\t\t\t\"hostname\": \"__WS_HOST__\",\n\t\t\t\"backlog\": 1024,\n\
\t\t\t\"routes\": {\n\t\t\t\t\"pub\": \"__PUBPATH__\",\n\t\t\t\t\"stat\": \"/server-stat/\",\n\
                \"rest\": \"__RESTPATH__\"\n\t\t\t}\n\t\t}\n\t],\n\t\"publishMode\": true,\n\
\t\"processUniqueId\": \"pub-__PORT__\",\n\t\"clusterMode\": true,\n\t\"storage\": {\n\
\t\t\"type\": \"redis\",\n\t\t\"socket\": \"__REDIS_SOCK__\",\n\t\t\"messageTLL\": 86400,\n\
\t\t\"channelTLL\": 86400,\n\t\t\"onlineTLL\": 120,\n\t\t\"onlineDelta\": 10\n\t},\n\
\t\"security\": {\n\t\t\"key\": \"__SECURITY_KEY__\"\n\t},\n    \"limits\": {\n\
        \"maxPayload\": 1048576,\n        \"maxConnPerChannel\": 100,\n\
        \"maxMessagesPerRequest\": 100,\n        \"maxChannelsPerRequest\": 100,\n\
        \"maxRequestsPerSecond\": 50\n    },\n    \"debug\": {\n\
        \"folderName\": \"/var/log/push-server\",\n        \"ip\": [__IP_LIST__],\n\
        \"trustProxy\": true\n    }\n}\n";

const KEY: &str = "0123456789abcdefXYZ";
const SOCK: &str = "/var/run/redis/redis-server.sock";

/// What `push-server-multi update_configs` does to a template.
fn fill(template: &str, port: u16, key: &str, host: &str) -> String {
    template
        .replace("__PORT__", &port.to_string())
        .replace("__SECURITY_KEY__", key)
        .replace("__WS_HOST__", host)
        .replace("__PUBPATH__", "/bitrix/pub/")
        .replace("__SUBWSPATH__", "/bitrix/subws/")
        .replace("__RESTPATH__", "/bitrix/rest/")
        .replace("__REDIS_SOCK__", SOCK)
        .replace("__IP_LIST__", "\"127.0.0.1\", \"10.0.0.0/24\"")
}

/// A BitrixVM folder: the two templates plus sub 8010..8015 and pub 9010..9011.
fn bitrixvm(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    dir.write("push-server-sub-__PORT__.json", SUB_TEMPLATE);
    dir.write("push-server-pub-__PORT__.json", PUB_TEMPLATE);
    for port in 8010..=8015 {
        let text = fill(SUB_TEMPLATE, port, KEY, "0.0.0.0");
        dir.write(&format!("push-server-sub-{port}.json"), &text);
    }
    for port in 9010..=9011 {
        let text = fill(PUB_TEMPLATE, port, KEY, "127.0.0.1");
        dir.write(&format!("push-server-pub-{port}.json"), &text);
    }
    dir
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn ok<T>(r: Result<T, ConfigError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// The (file, key) of a [`ConfigError::Bitrix`].
fn bitrix_err<T: fmt::Debug>(r: Result<T, ConfigError>) -> (PathBuf, String, String) {
    match r {
        Err(ConfigError::Bitrix { path, key, message }) => (path, key, message),
        other => panic!("expected a Bitrix error, got {other:?}"),
    }
}

fn has_warning(warnings: &[String], needle: &str) -> bool {
    warnings.iter().any(|w| w.contains(needle))
}

#[test]
fn bitrixvm_folder_becomes_one_process() {
    let dir = bitrixvm("vm");
    let (bx, warnings) = ok(load_dir(&dir.0));
    let subs: Vec<_> = (8010..=8015)
        .map(|p| ListenerConfig::plain(ListenerKind::Sub, addr(&format!("0.0.0.0:{p}"))))
        .collect();
    let pubs: Vec<_> = (9010..=9011)
        .map(|p| ListenerConfig::plain(ListenerKind::Pub, addr(&format!("127.0.0.1:{p}"))))
        .collect();
    assert_eq!(bx.listeners, [subs, pubs].concat());
    assert_eq!(bx.security_key.as_deref(), Some(KEY));
    assert_eq!(bx.signature_algo, None);
    assert_eq!(
        bx.storage,
        Some(Storage::Redis(RedisConfig {
            socket: Some(SOCK.into()),
            ..RedisConfig::default()
        }))
    );
    // The misspelled keys are read.
    assert_eq!(bx.message_ttl, Some(86_400));
    assert_eq!(bx.online_ttl, Some(Duration::from_secs(120)));
    assert_eq!(bx.online_delta, Some(Duration::from_secs(10)));
    // Limits come from the pub files only; the sub files do not contradict them.
    assert_eq!(bx.max_payload, Some(1_048_576));
    assert_eq!(bx.max_conn_per_channel, Some(100));
    assert_eq!(bx.max_messages_per_request, Some(100));
    assert_eq!(bx.max_channels_per_request, Some(100));
    assert_eq!(bx.files.len(), 8);
    for needle in [
        "template file skipped",
        "clusterMode is ignored",
        "processUniqueId is ignored",
        "debug is ignored",
        "backlog is ignored",
        "maxRequestsPerSecond is ignored",
        "storage.channelTLL is ignored",
        "push-server-sub-8010.json, push-server-sub-8011.json and 6 more files: clusterMode",
    ] {
        assert!(
            has_warning(&warnings, needle),
            "{needle:?} in {warnings:#?}"
        );
    }
    // The key never shows in Debug output.
    assert!(!format!("{bx:?}").contains(KEY));
}

#[test]
fn ttl_spelling_wins_over_tll() {
    let dir = TempDir::new("ttl");
    dir.write(
        "push-server-sub-8010.json",
        r#"{"servers":[{"port":8010,"routes":{"sub":"/bitrix/subws/"}}],
            "storage":{"messageTLL":100,"messageTTL":200,"onlineTLL":60,
                       "onlineDelta":0,"statTLLMsec":30000}}"#,
    );
    let (bx, warnings) = ok(load_dir(&dir.0));
    assert_eq!(bx.message_ttl, Some(200));
    assert_eq!(bx.online_ttl, Some(Duration::from_secs(60)));
    // 0 means "the reference's default" there: left to pushpull's default, with a warning.
    assert_eq!(bx.online_delta, None);
    assert!(
        has_warning(&warnings, "storage.onlineDelta is 0"),
        "{warnings:?}"
    );
    assert_eq!(bx.stats_interval, Some(Duration::from_secs(30)));
    // No hostname: loopback; no storage type: memory (nothing set).
    assert_eq!(bx.listeners[0].addr, addr("127.0.0.1:8010"));
    assert_eq!(bx.storage, None);
}

#[test]
fn settings_that_differ_between_files_name_both_files() {
    let dir = bitrixvm("conflict");
    let other = fill(PUB_TEMPLATE, 9011, "another-key", "127.0.0.1");
    let second = dir.write("push-server-pub-9011.json", &other);
    match load_dir(&dir.0) {
        Err(e @ ConfigError::BitrixConflict { .. }) => {
            let shown = e.to_string();
            let ConfigError::BitrixConflict {
                key,
                first,
                second: s,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(key, "security.key");
            assert_eq!(first, dir.0.join("push-server-sub-8010.json"));
            assert_eq!(s, second);
            assert!(
                !shown.contains(KEY) && !shown.contains("another-key"),
                "{shown}"
            );
            assert!(shown.contains("push-server-pub-9011.json"), "{shown}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Non-secret settings show both values.
    let dir = bitrixvm("conflict2");
    let other = fill(PUB_TEMPLATE, 9011, KEY, "127.0.0.1")
        .replace("\"maxConnPerChannel\": 100", "\"maxConnPerChannel\": 50");
    dir.write("push-server-pub-9011.json", &other);
    let e = load_dir(&dir.0).map(|_| ()).err().map(|e| e.to_string());
    let e = e.unwrap_or_default();
    assert!(
        e.contains("limits.maxConnPerChannel") && e.contains("100 vs 50"),
        "{e}"
    );
    // The same port in two files.
    let dir = bitrixvm("conflict3");
    dir.write("config.json", &fill(SUB_TEMPLATE, 8012, KEY, "0.0.0.0"));
    let e = load_dir(&dir.0).map(|_| ()).err().map(|e| e.to_string());
    assert!(
        e.unwrap_or_default()
            .contains("both listen on 0.0.0.0:8012")
    );
}

#[test]
fn placeholders_left_in_needed_values_are_errors() {
    let filled = fill(SUB_TEMPLATE, 8010, KEY, "0.0.0.0");
    for (from, to, key, name) in [
        (KEY, "__SECURITY_KEY__", "security.key", "__SECURITY_KEY__"),
        (
            "\"port\": 8010",
            "\"port\": __PORT__",
            "servers[0].port",
            "__PORT__",
        ),
        (
            "\"0.0.0.0\"",
            "\"__WS_HOST__\"",
            "servers[0].hostname",
            "__WS_HOST__",
        ),
        (SOCK, "__REDIS_SOCK__", "storage.socket", "__REDIS_SOCK__"),
        (
            "/bitrix/subws/",
            "__SUBWSPATH__",
            "servers[0].routes.sub",
            "__SUBWSPATH__",
        ),
    ] {
        let dir = TempDir::new("placeholder");
        let path = dir.write("push-server-sub-8010.json", &filled.replacen(from, to, 1));
        let (file, k, message) = bitrix_err(load_dir(&dir.0));
        assert_eq!((file, k.as_str()), (path, key), "{message}");
        assert!(message.contains(name), "{message}");
    }
    // Placeholders in keys pushpull ignores do no harm.
    let dir = TempDir::new("placeholder-ignored");
    let text = filled.replace("\"sub-8010\"", "\"sub-__PORT__\"");
    let text = text.replace("\"127.0.0.1\", \"10.0.0.0/24\"", "__IP_LIST__");
    dir.write("push-server-sub-8010.json", &text);
    ok(load_dir(&dir.0));
}

#[test]
fn routes_pushpull_cannot_serve_are_errors() {
    let base = fill(SUB_TEMPLATE, 8010, KEY, "0.0.0.0");
    for (from, to, key) in [
        (
            "\"sub\": \"/bitrix/subws/\"",
            "\"sub\": \"/custom/\"",
            "servers[0].routes.sub",
        ),
        (
            "\"sub\": \"/bitrix/subws/\"",
            "\"sub\": \"/bitrix/pub/\"",
            "servers[0].routes.sub",
        ),
        (
            "\"sub\": \"/bitrix/subws/\"",
            "\"register\": \"/register-client/\"",
            "servers[0].routes.register",
        ),
    ] {
        let dir = TempDir::new("route");
        dir.write("push-server-sub-8010.json", &base.replace(from, to));
        let (_, k, message) = bitrix_err(load_dir(&dir.0));
        assert_eq!(k, key, "{message}");
        assert!(message.contains("custom routes"), "{message}");
    }
    // Without the trailing slash, the same route.
    let dir = TempDir::new("route-slash");
    dir.write(
        "push-server-sub-8010.json",
        &base.replace("/bitrix/subws/", "/bitrix/subws"),
    );
    ok(load_dir(&dir.0));
}

#[test]
fn servers_with_both_kinds_tls_and_hostnames() {
    // The development config.json: sub and pub routes on one port.
    let dir = TempDir::new("mixed");
    dir.write(
        "config.json",
        r#"{"servers":[{"name":"Http Server","port":1337,"backlog":20000,
            "routes":{"pub":"/pub/","sub":"/sub/","stat":"/server-stat/","rest":"/rest/"}}],
            "security":{"key":"k"}}"#,
    );
    let (_, key, message) = bitrix_err(load_dir(&dir.0));
    assert_eq!(key, "servers[0].routes", "{message}");
    // With publishMode it is a pub listener and the sub route is reported.
    dir.write(
        "config.json",
        r#"{"publishMode":true,"servers":[{"port":1340,"hostname":"localhost",
            "routes":{"pub":"/pub/","sub":"/sub/"}}]}"#,
    );
    let (bx, warnings) = ok(load_dir(&dir.0));
    assert_eq!(
        bx.listeners,
        vec![ListenerConfig::plain(
            ListenerKind::Pub,
            addr("127.0.0.1:1340")
        )]
    );
    assert!(
        has_warning(&warnings, "routes.sub is not served"),
        "{warnings:?}"
    );
    // TLS is an error.
    dir.write(
        "config.json",
        r#"{"servers":[{"port":1339,"ssl":{"key":"k"},"routes":{"sub":"/sub/"}}]}"#,
    );
    assert_eq!(bitrix_err(load_dir(&dir.0)).1, "servers[0].ssl");
    // Host names other than localhost are errors; IPv6 is fine.
    dir.write(
        "config.json",
        r#"{"servers":[{"port":1,"hostname":"push.example.com","routes":{"sub":"/sub/"}}]}"#,
    );
    assert_eq!(bitrix_err(load_dir(&dir.0)).1, "servers[0].hostname");
    dir.write(
        "config.json",
        r#"{"servers":[{"port":1,"hostname":"::","routes":{"sub":"/sub/"}}],"extra":1}"#,
    );
    let (bx, warnings) = ok(load_dir(&dir.0));
    assert_eq!(bx.listeners[0].addr, addr("[::]:1"));
    assert!(has_warning(&warnings, "unknown key extra ignored"));
    // Cloud mode is refused; bad JSON is a parse error with its line.
    dir.write("config.json", r#"{"cloudMode":true,"servers":[]}"#);
    assert_eq!(bitrix_err(load_dir(&dir.0)).1, "cloudMode");
    dir.write("config.json", "{\n\"servers\": [\n}\n");
    match load_dir(&dir.0) {
        Err(ConfigError::Parse { line: 3, .. }) => {}
        other => panic!("expected a parse error on line 3, got {other:?}"),
    }
    // A single file may be named instead of the folder.
    let one = dir.write(
        "config.json",
        r#"{"servers":[{"port":8010,"routes":{"sub":"/sub/"}}]}"#,
    );
    assert_eq!(ok(load_dir(&one)).0.files, vec![one]);
}

#[test]
fn missing_and_empty_folders() {
    let dir = TempDir::new("empty");
    dir.write("README", "not a config");
    assert_eq!(bitrix_err(load_dir(&dir.0)).1, "servers");
    let missing = dir.0.join("nope");
    assert!(matches!(load_dir(&missing), Err(ConfigError::Read { .. })));
}

/// The sysconfig shipped with PS-2.0-late (ramdaron etc/sysconfig/push-server-multi) plus the
/// key and socket the init script appends or falls back to.
const SYSCONFIG: &str = "HG_DIR=/opt/push-server\nCFG_DIR=/etc/push-server\n\
VAR_DIR=/var/log/push-server\n\
BASE_SUB=801            # base for port number where sub services lives\n\
BASE_PUB=901            # base for port number where pub services lives\n\
TMPL_SUB=push-server-sub-__PORT__.json\nTMPL_PUB=push-server-pub-__PORT__.json\nUSER=bitrix\n\
ID_SUB=5              # max ID for sub service\nID_PUB=1              # max ID for pub service\n\
IP_LIST='\"127.0.0.1\", \"10.0.0.0/24\"'\nPID_SUB=push-server-sub-__PORT__.pid\n\
PID_PUB=push-server-pub-__PORT__.pid\nWS_PORT=1337\nPUBPATH=/bitrix/pub/\n\
SUBPATH=/bitrix/sub/\nSUBWSPATH=/bitrix/subws/\nRESTPATH=/bitrix/rest/\nSECURITY_KEY=\n\
SECURITY_KEY=0123456789abcdefXYZ\n";

#[test]
fn sysconfig_generates_the_ports() {
    let dir = TempDir::new("sys");
    let path = dir.write("push-server-multi", SYSCONFIG);
    let (bx, warnings) = ok(load_sysconfig(&path));
    let ports: Vec<_> = bx.listeners.iter().map(|l| (l.kind, l.addr)).collect();
    let mut want: Vec<_> = (8010..=8015)
        .map(|p| (ListenerKind::Sub, addr(&format!("127.0.0.1:{p}"))))
        .collect();
    want.extend((9010..=9011).map(|p| (ListenerKind::Pub, addr(&format!("127.0.0.1:{p}")))));
    assert_eq!(ports, want);
    assert_eq!(bx.security_key.as_deref(), Some(KEY));
    assert_eq!(
        bx.storage,
        Some(Storage::Redis(RedisConfig {
            socket: Some(DEFAULT_REDIS_SOCK.into()),
            ..RedisConfig::default()
        }))
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    // The init script's fallbacks: 3 sub and 2 pub ports; an empty key is reported.
    let path = dir.write(
        "empty",
        "# nothing\nWS_HOST=0.0.0.0\nexport REDIS_SOCK=\"/run/r.sock\"\n",
    );
    let (bx, warnings) = ok(load_sysconfig(&path));
    let ports: Vec<u16> = bx.listeners.iter().map(|l| l.addr.port()).collect();
    assert_eq!(ports, [8010, 8011, 8012, 9010, 9011]);
    assert_eq!(bx.listeners[0].addr, addr("0.0.0.0:8010"));
    assert_eq!(bx.security_key, None);
    assert!(
        has_warning(&warnings, "SECURITY_KEY is empty"),
        "{warnings:?}"
    );
    let Some(Storage::Redis(r)) = &bx.storage else {
        panic!("{:?}", bx.storage)
    };
    assert_eq!(r.socket.as_deref(), Some(Path::new("/run/r.sock")));
    // Errors name the variable.
    for (text, key) in [
        ("ID_SUB=99999\n", "ID_SUB"),
        ("ID_SUB=x\n", "ID_SUB"),
        ("BASE_SUB=80a\n", "BASE_SUB"),
        ("BASE_PUB=801\n", "BASE_PUB"),
        ("PUBPATH=/custom/\n", "PUBPATH"),
        ("SUBWSPATH=/bitrix/pub/\n", "SUBWSPATH"),
        ("SECURITY_KEY=$(cat /etc/key)\n", "SECURITY_KEY"),
        ("SECURITY_KEY=__SECURITY_KEY__\n", "SECURITY_KEY"),
        ("WS_HOST=push.local\n", "WS_HOST"),
        ("SECURITY_KEY='open\n", "SECURITY_KEY"),
    ] {
        let path = dir.write("bad", text);
        let (file, k, message) = bitrix_err(load_sysconfig(&path));
        assert_eq!((file, k.as_str()), (path, key), "{text}: {message}");
    }
    let path = dir.write("odd", "[[ -z $X ]] && X=1\nFOO=bar\n");
    let (_, warnings) = ok(load_sysconfig(&path));
    assert!(
        has_warning(&warnings, "line 1 is not KEY=value"),
        "{warnings:?}"
    );
    assert!(
        has_warning(&warnings, "unknown variable FOO"),
        "{warnings:?}"
    );
}

#[test]
fn json_files_win_over_the_sysconfig() {
    let dir = bitrixvm("both");
    let sys = TempDir::new("both-sys");
    let text = SYSCONFIG
        .replace("ID_SUB=5", "ID_SUB=2")
        .replace(KEY, "old-key");
    let sys_path = sys.write("push-server-multi", &text);
    let (bx, warnings) = ok(load(Some(&dir.0), Some(&sys_path)));
    assert_eq!(bx.listeners.len(), 8);
    assert_eq!(bx.listeners[0].addr, addr("0.0.0.0:8010"));
    assert_eq!(bx.security_key.as_deref(), Some(KEY));
    assert!(
        has_warning(&warnings, "ports it generates differ"),
        "{warnings:?}"
    );
    assert!(
        has_warning(&warnings, "SECURITY_KEY differs"),
        "{warnings:?}"
    );
    assert_eq!(bx.files.len(), 9);
    // A folder with only templates: the sysconfig's listeners.
    let templates = TempDir::new("templates-only");
    templates.write("push-server-sub-__PORT__.json", SUB_TEMPLATE);
    let (bx, warnings) = ok(load(Some(&templates.0), Some(&sys_path)));
    assert_eq!(bx.listeners.len(), 5);
    assert_eq!(bx.security_key.as_deref(), Some("old-key"));
    assert!(
        has_warning(&warnings, "listeners come from the sysconfig"),
        "{warnings:?}"
    );
}

fn cli(args: &[&str]) -> Cli {
    <Cli as clap::Parser>::try_parse_from(std::iter::once("pushpull").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn precedence_defaults_bitrix_file_env_flags() {
    let dir = bitrixvm("precedence");
    let d = dir.0.to_string_lossy().into_owned();
    let load = |args: &[&str], e: &[(&str, &str)], toml: &str| {
        Config::load_from(&cli(args), &env(e), |_| Ok(toml.to_owned()))
    };
    // Bitrix over defaults.
    let c = ok(load(&["--bitrix-config", &d], &[], ""));
    assert_eq!(c.listeners.len(), 8);
    assert_eq!(c.security_key.as_deref(), Some(KEY));
    assert!(matches!(c.storage, Storage::Redis(_)));
    assert_eq!(c.max_conn_per_channel, 100);
    assert_eq!(c.bitrix_sources.len(), 8);
    assert!(!c.warnings.is_empty());
    // The TOML file over Bitrix; env over the file; flags over env.
    let toml = "message_ttl = 600\nmax_conn_per_channel = 7\nonline_ttl = 30\n\
                [storage]\ntype = \"memory\"\n";
    let c = ok(load(&["--bitrix-config", &d, "-c", "f.toml"], &[], toml));
    assert_eq!((c.message_ttl, c.max_conn_per_channel), (600, 7));
    assert_eq!(c.storage, Storage::Memory);
    assert_eq!(c.security_key.as_deref(), Some(KEY));
    let e = [
        ("PUSHPULL_BITRIX_CONFIG", d.as_str()),
        ("PUSHPULL_MESSAGE_TTL", "500"),
        ("PUSHPULL_SUB_LISTEN", "127.0.0.1:7000"),
    ];
    let c = ok(load(&["-c", "f.toml", "--online-ttl", "5"], &e, toml));
    assert_eq!((c.message_ttl, c.max_conn_per_channel), (500, 7));
    assert_eq!(c.online_ttl, Duration::from_secs(5));
    // The env's sub list replaced the six sub ports; the two pub ports stay.
    let subs: Vec<_> = c.listeners_of(ListenerKind::Sub).collect();
    assert_eq!(subs, vec![addr("127.0.0.1:7000")]);
    assert_eq!(c.listeners_of(ListenerKind::Pub).count(), 2);
    // A [[listener]] list in the file replaces the Bitrix listeners entirely.
    let toml = "[[listener]]\nkind = \"sub\"\naddr = \"127.0.0.1:1\"\n";
    let c = ok(load(&["--bitrix-config", &d, "-c", "f"], &[], toml));
    assert_eq!(c.listeners.len(), 1);
    // Sysconfig through the flag, also under the file.
    let sys = TempDir::new("precedence-sys");
    let sys_path = sys.write("push-server-multi", SYSCONFIG);
    let s = sys_path.to_string_lossy().into_owned();
    let c = ok(load(
        &["--bitrix-sysconfig", &s, "-c", "f"],
        &[],
        "security_key = \"own\"\n",
    ));
    assert_eq!(c.listeners.len(), 8);
    assert_eq!(c.security_key.as_deref(), Some("own"));
    // Errors from the Bitrix files stop loading.
    let bad = TempDir::new("precedence-bad");
    bad.write(
        "push-server-sub-8010.json",
        SUB_TEMPLATE.replace("__PORT__", "8010").as_str(),
    );
    let b = bad.0.to_string_lossy().into_owned();
    assert!(matches!(
        load(&["--bitrix-config", &b], &[], ""),
        Err(ConfigError::Bitrix { .. })
    ));
}

#[test]
fn check_config_output_lists_sources_and_warnings() {
    let dir = bitrixvm("print");
    let d = dir.0.to_string_lossy().into_owned();
    let c = ok(Config::load_from(
        &cli(&["--bitrix-config", &d]),
        &[],
        |_| Ok(String::new()),
    ));
    let text = c.to_toml();
    assert!(
        text.contains("# Read from the Bitrix push server's configuration:"),
        "{text}"
    );
    assert!(text.contains("push-server-pub-9011.json"), "{text}");
    assert!(text.contains("# warning: "), "{text}");
    assert!(!text.contains(KEY), "{text}");
    assert!(text.contains("addr = \"0.0.0.0:8015\""), "{text}");
    // The printed file loads back (with the key supplied) to the same settings.
    let back = ok(Config::load_from(
        &cli(&["-c", "printed.toml"]),
        &env(&[("PUSHPULL_SECURITY_KEY", KEY)]),
        |_| Ok(text.clone()),
    ));
    assert_eq!(back.listeners, c.listeners);
    assert_eq!(back.storage, c.storage);
    assert_eq!(back.message_ttl, c.message_ttl);
}

#[test]
fn placeholder_scanning() {
    assert_eq!(placeholder("sub-__PORT__"), Some("__PORT__"));
    assert_eq!(placeholder("__SECURITY_KEY__"), Some("__SECURITY_KEY__"));
    assert_eq!(placeholder("___WS_HOST__x"), Some("__WS_HOST__"));
    assert_eq!(placeholder("/bitrix/subws/"), None);
    assert_eq!(placeholder("a__b__"), None);
    assert_eq!(placeholder("____"), None);
    assert_eq!(placeholder("__1__"), None);
    assert_eq!(
        quote_placeholders("{\"port\": __PORT__, \"x\": \"__A__\", \"ip\": [__IP_LIST__]}"),
        "{\"port\": \"__PORT__\", \"x\": \"__A__\", \"ip\": [\"__IP_LIST__\"]}"
    );
    assert_eq!(
        quote_placeholders("{\"a\\\"__B__\": true}"),
        "{\"a\\\"__B__\": true}"
    );
}
