//! Drop-in reading of the Node.js Bitrix push server's configuration, so that
//! `pushpull --bitrix-config /etc/push-server` serves every port the Node processes served.
//!
//! * [`load_dir`] reads the `push-server-sub-<port>.json` / `push-server-pub-<port>.json` files
//!   (and `config.json`) of a folder, skipping the `__PORT__` templates that live beside them.
//!   Every `servers[]` entry of every file becomes a listener; the other settings must agree
//!   between files (a difference is a [`ConfigError::BitrixConflict`] naming both files).
//! * [`load_sysconfig`] reads the BitrixVM shell-style `push-server-multi` file (`KEY=value`)
//!   and generates the listeners the init script would have started from `BASE_*` / `ID_*`.
//! * [`load`] combines both: the JSON files win, the sysconfig fills what they leave unset.
//!
//! Keys pushpull has no use for are not errors: they come back as human-readable warnings.
//! A value that is still a template placeholder (`__SECURITY_KEY__`) is an error naming the
//! file and the key, and so is a route pushpull cannot serve.

mod json;
mod sysconfig;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::storage::{StorageLayer, StorageType};
use super::{Config, ConfigError, Layer, ListenerConfig, SignatureAlgo, Storage, file};

/// Routes (path prefixes) every pushpull sub listener serves: the reference's `routes.sub`
/// values in BitrixVM (`/bitrix/subws/`), its nginx long-poll path and the bare forms.
pub const SUB_ROUTES: [&str; 4] = ["/bitrix/sub/", "/bitrix/subws/", "/sub/", "/subws/"];
/// Publish routes (`routes.pub`) every pushpull pub listener serves.
pub const PUB_ROUTES: [&str; 2] = ["/bitrix/pub/", "/pub/"];
/// Browser publish routes (`routes.rest`) every pushpull pub listener serves.
pub const REST_ROUTES: [&str; 2] = ["/bitrix/rest/", "/rest/"];
/// Statistics routes (`routes.stat`) every pushpull pub listener serves.
pub const STAT_ROUTES: [&str; 1] = ["/server-stat/"];
/// Address bound when a server entry has no `hostname`: loopback, because the Node processes
/// sit behind nginx and publishing must never be exposed by accident.
pub const DEFAULT_HOSTNAME: &str = "127.0.0.1";
/// The init script's `REDIS_SOCK` fallback, used when the sysconfig file does not set it.
pub const DEFAULT_REDIS_SOCK: &str = "/var/run/redis/redis-server.sock";
/// The init script's `BASE_SUB` fallback: sub ports 801*0*, 801*1*, …
pub const DEFAULT_BASE_SUB: &str = "801";
/// The init script's `BASE_PUB` fallback: pub ports 901*0*, 901*1*, …
pub const DEFAULT_BASE_PUB: &str = "901";
/// The init script's `ID_SUB` fallback: sub processes 0..=2.
pub const DEFAULT_ID_SUB: u32 = 2;
/// The init script's `ID_PUB` fallback: pub processes 0..=1.
pub const DEFAULT_ID_PUB: u32 = 1;
/// The init script's `WS_HOST` fallback.
pub const DEFAULT_WS_HOST: &str = "127.0.0.1";
/// Files of a folder whose names list more than this many are summarised in warnings.
const WARN_FILES_SHOWN: usize = 2;

/// Settings read from the Node push server's configuration: `None` (or an empty list) means
/// "not set there", so pushpull's own default applies.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BitrixConfig {
    /// One listener per `servers[]` entry (or per generated port).
    pub listeners: Vec<ListenerConfig>,
    /// `security.key`; `Some("")` means explicitly no key.
    pub security_key: Option<String>,
    /// `security.algo`.
    pub signature_algo: Option<SignatureAlgo>,
    /// `storage` when its `type` is `"redis"`.
    pub storage: Option<Storage>,
    /// `storage.messageTTL` (or the misspelled `messageTLL`), seconds.
    pub message_ttl: Option<u32>,
    /// `storage.onlineTTL` (or `onlineTLL`).
    pub online_ttl: Option<Duration>,
    /// `storage.onlineDelta`.
    pub online_delta: Option<Duration>,
    /// `storage.statTLLMsec`.
    pub stats_interval: Option<Duration>,
    /// `limits.maxPayload`.
    pub max_payload: Option<usize>,
    /// `limits.maxConnPerChannel`.
    pub max_conn_per_channel: Option<usize>,
    /// `limits.maxMessagesPerRequest`.
    pub max_messages_per_request: Option<usize>,
    /// `limits.maxChannelsPerRequest`.
    pub max_channels_per_request: Option<usize>,
    /// The files the settings were read from, in reading order.
    pub files: Vec<PathBuf>,
}

impl fmt::Debug for BitrixConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitrixConfig")
            .field("listeners", &self.listeners)
            .field(
                "security_key",
                &self.security_key.as_deref().map(file::redact),
            )
            .field("signature_algo", &self.signature_algo)
            .field("storage", &self.storage)
            .field("message_ttl", &self.message_ttl)
            .field("online_ttl", &self.online_ttl)
            .field("online_delta", &self.online_delta)
            .field("stats_interval", &self.stats_interval)
            .field("max_payload", &self.max_payload)
            .field("max_conn_per_channel", &self.max_conn_per_channel)
            .field("max_messages_per_request", &self.max_messages_per_request)
            .field("max_channels_per_request", &self.max_channels_per_request)
            .field("files", &self.files)
            .finish()
    }
}

impl BitrixConfig {
    /// The settings as a layer under pushpull's own file, environment and flags.
    pub(crate) fn into_layer(self) -> Layer {
        let storage = self.storage.map(|s| match s {
            Storage::Memory => StorageLayer {
                kind: Some(StorageType::Memory),
                ..StorageLayer::default()
            },
            Storage::Redis(r) => StorageLayer {
                kind: Some(StorageType::Redis),
                host: Some(r.host),
                port: Some(r.port),
                socket: r.socket,
                database: Some(r.database),
                password: r.password,
                ..StorageLayer::default()
            },
        });
        Layer {
            listeners: (!self.listeners.is_empty()).then_some(self.listeners),
            security_key: self.security_key,
            signature_algo: self.signature_algo,
            message_ttl: self.message_ttl,
            online_ttl: self.online_ttl.map(file::Dur),
            online_delta: self.online_delta.map(file::Dur),
            stats_interval: self.stats_interval.map(file::Dur),
            max_payload: self.max_payload,
            max_conn_per_channel: self.max_conn_per_channel,
            max_messages_per_request: self.max_messages_per_request,
            max_channels_per_request: self.max_channels_per_request,
            storage,
            ..Layer::default()
        }
    }
}

/// Reads the push server's JSON files in `dir` (or the one file `dir` names).
///
/// Returns the merged settings and the warnings about what was ignored. An error names the
/// file and the key: unreadable or invalid JSON, a placeholder left in a needed value, a route
/// pushpull cannot serve, TLS, or settings that differ between files.
pub fn load_dir(dir: &Path) -> Result<(BitrixConfig, Vec<String>), ConfigError> {
    let mut warnings = Warnings::default();
    let files = json_files(dir, &mut warnings)?;
    if files.is_empty() {
        return Err(ConfigError::Bitrix {
            path: dir.to_path_buf(),
            key: "servers".to_owned(),
            message: "no push-server-sub-<port>.json, push-server-pub-<port>.json or \
                      config.json file found"
                .to_owned(),
        });
    }
    let config = read_json_files(&files, &mut warnings)?;
    Ok((config, warnings.into_list()))
}

/// Reads a BitrixVM `push-server-multi` sysconfig file and generates the listeners, key and
/// Redis socket the init script would have written into the JSON files.
pub fn load_sysconfig(path: &Path) -> Result<(BitrixConfig, Vec<String>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut warnings = Warnings::default();
    let config = sysconfig::parse(path, &text, &mut warnings)?;
    Ok((config, warnings.into_list()))
}

/// Reads the JSON files of `dir` and/or the sysconfig file. When both are given the JSON
/// files win and the sysconfig only fills settings they leave unset; a folder without JSON
/// files then takes its listeners from the sysconfig.
pub fn load(
    dir: Option<&Path>,
    sysconfig_path: Option<&Path>,
) -> Result<(BitrixConfig, Vec<String>), ConfigError> {
    let mut warnings = Warnings::default();
    let from_sys = match sysconfig_path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            Some(sysconfig::parse(path, &text, &mut warnings)?)
        }
        None => None,
    };
    let from_json = match dir {
        Some(dir) => {
            let files = json_files(dir, &mut warnings)?;
            if files.is_empty() {
                if from_sys.is_none() {
                    return load_dir(dir);
                }
                warnings.add(
                    dir,
                    "no push-server-*.json files: the listeners come from the sysconfig file",
                );
                None
            } else {
                Some(read_json_files(&files, &mut warnings)?)
            }
        }
        None => None,
    };
    let config = match (from_json, from_sys) {
        (Some(json), Some(sys)) => overlay(json, sys, &mut warnings),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => BitrixConfig::default(),
    };
    Ok((config, warnings.into_list()))
}

/// The configuration `Config::load` makes from Bitrix files given as text: one
/// `push-server-*.json` file and/or the sysconfig file, with pushpull's defaults for the rest.
/// The same steps as [`load`] and `Config::load_from` without the file system, for the fuzz
/// targets (`crate::fuzzing`).
pub(crate) fn config_from_texts(
    json: Option<(&Path, &str)>,
    sysconfig: Option<(&Path, &str)>,
) -> Result<Config, ConfigError> {
    let mut warnings = Warnings::default();
    let from_sys = match sysconfig {
        Some((path, text)) => Some(sysconfig::parse(path, text, &mut warnings)?),
        None => None,
    };
    let from_json = match json {
        Some((path, text)) => {
            let mut merged = Merge::default();
            merged.add(path, json::parse(path, text, &mut warnings)?)?;
            Some(merged.finish())
        }
        None => None,
    };
    let bx = match (from_json, from_sys) {
        (Some(json), Some(sys)) => overlay(json, sys, &mut warnings),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => BitrixConfig::default(),
    };
    let mut config = Config {
        bitrix_sources: bx.files.clone(),
        warnings: warnings.into_list(),
        ..Config::default()
    };
    config.apply(bx.into_layer().checked()?);
    config.normalize();
    config.validate()?;
    Ok(config)
}

/// The JSON files of `dir` in serving order (`config.json`, sub files, pub files, each by
/// port), or `dir` itself when it is a file. Templates and other files are skipped.
fn json_files(dir: &Path, warnings: &mut Warnings) -> Result<Vec<PathBuf>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: dir.to_path_buf(),
        source,
    };
    if std::fs::metadata(dir).map_err(read_err)?.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut found: Vec<((u8, u32, String), PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !name.ends_with(".json") {
            continue;
        }
        if name.contains("__") {
            warnings.add(
                &path,
                "template file skipped (it is not a generated configuration)",
            );
            continue;
        }
        let rank = if name == "config.json" {
            Some((0, 0))
        } else if let Some(port) = port_in_name(&name, "push-server-sub-") {
            Some((1, port))
        } else {
            port_in_name(&name, "push-server-pub-").map(|port| (2, port))
        };
        match rank {
            Some((group, port)) => found.push(((group, port, name), path)),
            None => warnings.add(
                &path,
                "file skipped: not a push-server-sub/pub-<port>.json file",
            ),
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

/// The port in `push-server-sub-8010.json` for prefix `push-server-sub-`.
fn port_in_name(name: &str, prefix: &str) -> Option<u32> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(".json")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads and merges `files`; settings that differ between files are errors.
fn read_json_files(
    files: &[PathBuf],
    warnings: &mut Warnings,
) -> Result<BitrixConfig, ConfigError> {
    let mut merged = Merge::default();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let one = json::parse(path, &text, warnings)?;
        merged.add(path, one)?;
    }
    Ok(merged.finish())
}

/// The sysconfig's settings under the JSON files': JSON wins; differences are warned about.
fn overlay(json: BitrixConfig, sys: BitrixConfig, warnings: &mut Warnings) -> BitrixConfig {
    let sys_file = sys.files.first().cloned().unwrap_or_default();
    let mut json_ports: Vec<_> = json.listeners.iter().map(|l| (l.kind, l.addr)).collect();
    let mut sys_ports: Vec<_> = sys.listeners.iter().map(|l| (l.kind, l.addr)).collect();
    json_ports.sort_by_key(|(kind, addr)| (*kind == super::ListenerKind::Pub, *addr));
    sys_ports.sort_by_key(|(kind, addr)| (*kind == super::ListenerKind::Pub, *addr));
    if json_ports != sys_ports {
        warnings.add(
            &sys_file,
            "the ports it generates differ from the JSON files'; the JSON files are used \
             (re-run `push-server-multi update_configs` to bring them in line)",
        );
    }
    if json.security_key.is_some()
        && sys.security_key.is_some()
        && json.security_key != sys.security_key
    {
        warnings.add(
            &sys_file,
            "SECURITY_KEY differs from the JSON files' security.key; the JSON files' key is used",
        );
    }
    let mut files = sys.files;
    files.extend(json.files);
    BitrixConfig {
        listeners: if json.listeners.is_empty() {
            sys.listeners
        } else {
            json.listeners
        },
        security_key: json.security_key.or(sys.security_key),
        signature_algo: json.signature_algo.or(sys.signature_algo),
        storage: json.storage.or(sys.storage),
        message_ttl: json.message_ttl.or(sys.message_ttl),
        online_ttl: json.online_ttl.or(sys.online_ttl),
        online_delta: json.online_delta.or(sys.online_delta),
        stats_interval: json.stats_interval.or(sys.stats_interval),
        max_payload: json.max_payload.or(sys.max_payload),
        max_conn_per_channel: json.max_conn_per_channel.or(sys.max_conn_per_channel),
        max_messages_per_request: json
            .max_messages_per_request
            .or(sys.max_messages_per_request),
        max_channels_per_request: json
            .max_channels_per_request
            .or(sys.max_channels_per_request),
        files,
    }
}

/// A value with the file it came from.
type Origin<T> = Option<(T, PathBuf)>;

/// Merges the files' settings, remembering where each came from to name both files of a
/// conflict.
#[derive(Default)]
struct Merge {
    listeners: Vec<(ListenerConfig, PathBuf)>,
    security_key: Origin<String>,
    signature_algo: Origin<SignatureAlgo>,
    storage: Origin<Storage>,
    message_ttl: Origin<u32>,
    online_ttl: Origin<Duration>,
    online_delta: Origin<Duration>,
    stats_interval: Origin<Duration>,
    max_payload: Origin<usize>,
    max_conn_per_channel: Origin<usize>,
    max_messages_per_request: Origin<usize>,
    max_channels_per_request: Origin<usize>,
    files: Vec<PathBuf>,
}

/// Whether a conflict message may show the two values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shown {
    Values,
    Hidden,
}

fn merge_one<T: PartialEq + fmt::Debug>(
    slot: &mut Origin<T>,
    key: &str,
    value: Option<T>,
    path: &Path,
    shown: Shown,
) -> Result<(), ConfigError> {
    let Some(value) = value else { return Ok(()) };
    match slot {
        Some((old, first)) if *old != value => Err(ConfigError::BitrixConflict {
            key: key.to_owned(),
            first: first.clone(),
            second: path.to_path_buf(),
            detail: match shown {
                Shown::Values => format!(": {old:?} vs {value:?}"),
                Shown::Hidden => String::new(),
            },
        }),
        Some(_) => Ok(()),
        None => {
            *slot = Some((value, path.to_path_buf()));
            Ok(())
        }
    }
}

impl Merge {
    fn add(&mut self, path: &Path, one: BitrixConfig) -> Result<(), ConfigError> {
        use Shown::{Hidden, Values};
        for l in one.listeners {
            if let Some((_, first)) = self.listeners.iter().find(|(o, _)| o.addr == l.addr) {
                return Err(ConfigError::BitrixConflict {
                    key: "servers[].port".to_owned(),
                    first: first.clone(),
                    second: path.to_path_buf(),
                    detail: format!(": both listen on {}", l.addr),
                });
            }
            self.listeners.push((l, path.to_path_buf()));
        }
        merge_one(
            &mut self.security_key,
            "security.key",
            one.security_key,
            path,
            Hidden,
        )?;
        let algo = one.signature_algo;
        merge_one(
            &mut self.signature_algo,
            "security.algo",
            algo,
            path,
            Values,
        )?;
        merge_one(&mut self.storage, "storage", one.storage, path, Values)?;
        let ttl = one.message_ttl;
        merge_one(
            &mut self.message_ttl,
            "storage.messageTTL",
            ttl,
            path,
            Values,
        )?;
        let ttl = one.online_ttl;
        merge_one(&mut self.online_ttl, "storage.onlineTTL", ttl, path, Values)?;
        let delta = one.online_delta;
        merge_one(
            &mut self.online_delta,
            "storage.onlineDelta",
            delta,
            path,
            Values,
        )?;
        let stats = one.stats_interval;
        merge_one(
            &mut self.stats_interval,
            "storage.statTLLMsec",
            stats,
            path,
            Values,
        )?;
        let max = one.max_payload;
        merge_one(
            &mut self.max_payload,
            "limits.maxPayload",
            max,
            path,
            Values,
        )?;
        merge_one(
            &mut self.max_conn_per_channel,
            "limits.maxConnPerChannel",
            one.max_conn_per_channel,
            path,
            Values,
        )?;
        merge_one(
            &mut self.max_messages_per_request,
            "limits.maxMessagesPerRequest",
            one.max_messages_per_request,
            path,
            Values,
        )?;
        merge_one(
            &mut self.max_channels_per_request,
            "limits.maxChannelsPerRequest",
            one.max_channels_per_request,
            path,
            Values,
        )?;
        self.files.push(path.to_path_buf());
        Ok(())
    }

    fn finish(self) -> BitrixConfig {
        fn v<T>(slot: Origin<T>) -> Option<T> {
            slot.map(|(value, _)| value)
        }
        BitrixConfig {
            listeners: self.listeners.into_iter().map(|(l, _)| l).collect(),
            security_key: v(self.security_key),
            signature_algo: v(self.signature_algo),
            storage: v(self.storage),
            message_ttl: v(self.message_ttl),
            online_ttl: v(self.online_ttl),
            online_delta: v(self.online_delta),
            stats_interval: v(self.stats_interval),
            max_payload: v(self.max_payload),
            max_conn_per_channel: v(self.max_conn_per_channel),
            max_messages_per_request: v(self.max_messages_per_request),
            max_channels_per_request: v(self.max_channels_per_request),
            files: self.files,
        }
    }
}

/// Warnings grouped by message, each with the files it concerns, in first-seen order.
#[derive(Default)]
pub(super) struct Warnings {
    by_message: indexmap::IndexMap<String, Vec<PathBuf>>,
}

impl Warnings {
    /// Records `message` about `path`.
    pub(super) fn add(&mut self, path: &Path, message: impl Into<String>) {
        let files = self.by_message.entry(message.into()).or_default();
        if !files.iter().any(|f| f == path) {
            files.push(path.to_path_buf());
        }
    }

    /// One line per message: `file[, file and N more files]: message`.
    fn into_list(self) -> Vec<String> {
        self.by_message
            .into_iter()
            .map(|(message, files)| {
                let name = |p: &PathBuf| {
                    p.file_name()
                        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
                };
                let shown: Vec<String> = files.iter().take(WARN_FILES_SHOWN).map(name).collect();
                let rest = files.len().saturating_sub(WARN_FILES_SHOWN);
                let who = match rest {
                    0 => shown.join(", "),
                    n => format!("{} and {n} more file{}", shown.join(", "), plural(n)),
                };
                format!("{who}: {message}")
            })
            .collect()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The first template placeholder (`__NAME__`, upper case) in `text`, if any.
pub(super) fn placeholder(text: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(off) = text[from..].find("__") {
        let start = from + off;
        let run_len = text[start + 2..]
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        let run = &text[start + 2..start + 2 + run_len];
        if let Some(inner) = run.strip_suffix("__") {
            if inner.bytes().next().is_some_and(|b| b.is_ascii_uppercase()) {
                return Some(&text[start..start + 2 + run_len]);
            }
        }
        from = start + 1;
    }
    None
}

/// The error for a needed value still holding a template placeholder.
pub(super) fn placeholder_error(path: &Path, key: &str, found: &str) -> ConfigError {
    ConfigError::Bitrix {
        path: path.to_path_buf(),
        key: key.to_owned(),
        message: format!(
            "still holds the template placeholder {found}; generate the file \
             (`push-server-multi update_configs`) or fill the value in"
        ),
    }
}

/// Checks a route value of kind `kind` (`sub`, `pub`, `rest`, `stat`); returns nothing but an
/// error naming the route when pushpull cannot serve it.
pub(super) fn check_route(
    path: &Path,
    key: &str,
    kind: &str,
    value: &str,
) -> Result<(), ConfigError> {
    if let Some(found) = placeholder(value) {
        return Err(placeholder_error(path, key, found));
    }
    let served: &[&str] = match kind {
        "sub" => &SUB_ROUTES,
        "pub" => &PUB_ROUTES,
        "rest" => &REST_ROUTES,
        "stat" => &STAT_ROUTES,
        other => {
            return Err(ConfigError::Bitrix {
                path: path.to_path_buf(),
                key: key.to_owned(),
                message: format!(
                    "route kind {other:?} ({value:?}) is not served by pushpull; it serves \
                     sub, pub, rest and stat routes and cannot serve custom routes yet"
                ),
            });
        }
    };
    let with_slash = if value.ends_with('/') {
        value.to_owned()
    } else {
        format!("{value}/")
    };
    if served.contains(&with_slash.as_str()) {
        return Ok(());
    }
    Err(ConfigError::Bitrix {
        path: path.to_path_buf(),
        key: key.to_owned(),
        message: format!(
            "route {value:?} cannot be served: pushpull serves {kind} requests on {} and cannot \
             serve custom routes yet",
            served.join(", ")
        ),
    })
}

/// Parses a `hostname`: an IP address, `localhost` (→ 127.0.0.1) or empty (→
/// [`DEFAULT_HOSTNAME`]).
pub(super) fn listen_addr(
    path: &Path,
    key: &str,
    hostname: &str,
    port: u16,
) -> Result<SocketAddr, ConfigError> {
    if let Some(found) = placeholder(hostname) {
        return Err(placeholder_error(path, key, found));
    }
    let host = match hostname.trim() {
        "" => DEFAULT_HOSTNAME,
        h if h.eq_ignore_ascii_case("localhost") => "127.0.0.1",
        h => h.trim_start_matches('[').trim_end_matches(']'),
    };
    let ip: std::net::IpAddr = host.parse().map_err(|_| ConfigError::Bitrix {
        path: path.to_path_buf(),
        key: key.to_owned(),
        message: format!(
            "{hostname:?} is not an IP address; pushpull binds IP addresses \
             (e.g. 0.0.0.0, 127.0.0.1, ::) or localhost"
        ),
    })?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests;
