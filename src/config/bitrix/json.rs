//! One `push-server-*.json` file of the Node push server.
//!
//! Keys read: `servers[]` (`port`, `hostname`, `routes.{sub,pub,rest,stat}`), `publishMode`,
//! `storage` (`type`, `socket`, `host`, `port`, `messageTTL`/`messageTLL`,
//! `onlineTTL`/`onlineTLL`, `onlineDelta`, `statTLLMsec`), `security` (`key`, `algo`) and
//! `limits` (`maxPayload`, `maxConnPerChannel`, `maxMessagesPerRequest`,
//! `maxChannelsPerRequest`). Everything else is reported as a warning.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{BitrixConfig, Warnings, check_route, listen_addr, placeholder, placeholder_error};
use crate::config::{
    ConfigError, ListenerConfig, ListenerKind, RedisConfig, SignatureAlgo, Storage,
};

/// Why a known key of the reference is ignored (top level).
const IGNORED_TOP: [(&str, &str); 7] = [
    (
        "clusterMode",
        "clusterMode is ignored: one pushpull process serves every listener",
    ),
    (
        "processUniqueId",
        "processUniqueId is ignored: pushpull names its statistics itself",
    ),
    (
        "debug",
        "debug is ignored: pushpull logs to stderr (set log_level)",
    ),
    (
        "dataDir",
        "dataDir is ignored: pushpull keeps no license data",
    ),
    (
        "licenseServer",
        "licenseServer is ignored: pushpull does not check licenses",
    ),
    (
        "licenseStorage",
        "licenseStorage is ignored: pushpull does not check licenses",
    ),
    (
        "trustClients",
        "trustClients is ignored: pushpull always trusts clients (personal mode)",
    ),
];

/// Parses one file; `warnings` collects what is ignored.
pub(super) fn parse(
    path: &Path,
    text: &str,
    warnings: &mut Warnings,
) -> Result<BitrixConfig, ConfigError> {
    let prepared = quote_placeholders(text);
    let root: Value = serde_json::from_str(&prepared).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: {
            let text = e.to_string();
            // serde_json appends " at line L column C", which the error shows already.
            match text.rfind(" at line ") {
                Some(at) => text[..at].to_owned(),
                None => text,
            }
        },
    })?;
    let f = FileCx { path };
    let root = f.object("(top level)", &root)?;
    let mut out = BitrixConfig::default();
    let publish_mode = match root.get("publishMode") {
        Some(v) => f.flag("publishMode", v)?,
        None => false,
    };
    for (key, value) in root {
        match key.as_str() {
            "servers" | "publishMode" => {}
            "storage" => f.storage(f.object("storage", value)?, &mut out, warnings)?,
            "security" => f.security(f.object("security", value)?, &mut out, warnings)?,
            "limits" => f.limits(f.object("limits", value)?, &mut out, warnings)?,
            "cloudMode" => {
                if f.flag("cloudMode", value)? {
                    return Err(f.err(
                        "cloudMode",
                        "cloud mode (client licenses, untrusted clients) is not supported by \
                         pushpull",
                    ));
                }
            }
            other => match IGNORED_TOP.iter().find(|(k, _)| *k == other) {
                Some((_, why)) => warnings.add(path, *why),
                None => warnings.add(path, format!("unknown key {other} ignored")),
            },
        }
    }
    let servers = root
        .get("servers")
        .ok_or_else(|| f.err("servers", "missing: the file defines no server"))?;
    let Value::Array(servers) = servers else {
        return Err(f.err("servers", "expected a list of servers"));
    };
    for (i, server) in servers.iter().enumerate() {
        let key = format!("servers[{i}]");
        if let Some(l) = f.server(&key, f.object(&key, server)?, publish_mode, warnings)? {
            out.listeners.push(l);
        }
    }
    out.files.push(path.to_path_buf());
    Ok(out)
}

/// Wraps bare placeholders (`"port": __PORT__`) in quotes, so that a file generated with a
/// missing substitution still parses and the error can name the key.
pub(super) fn quote_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_ascii_alphanumeric() || d == '_') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            let word = &text[i..end];
            if placeholder(word) == Some(word) {
                out.push('"');
                out.push_str(word);
                out.push('"');
            } else {
                out.push_str(word);
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Reading values of one file, with errors naming the file and the key.
struct FileCx<'a> {
    path: &'a Path,
}

impl FileCx<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Bitrix {
            path: self.path.to_path_buf(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn object<'v>(&self, key: &str, v: &'v Value) -> Result<&'v Map<String, Value>, ConfigError> {
        match v {
            Value::Object(map) => Ok(map),
            _ => Err(self.err(key, "expected an object")),
        }
    }

    fn text<'v>(&self, key: &str, v: &'v Value) -> Result<&'v str, ConfigError> {
        match v {
            Value::String(s) => match placeholder(s) {
                Some(found) => Err(placeholder_error(self.path, key, found)),
                None => Ok(s),
            },
            _ => Err(self.err(key, "expected a string")),
        }
    }

    /// A non-negative integer: a JSON number or a string of digits.
    fn uint(&self, key: &str, v: &Value) -> Result<u64, ConfigError> {
        let bad = || self.err(key, format!("expected a non-negative integer, got {v}"));
        match v {
            Value::Number(n) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                        .map(|f| f as u64)
                })
                .ok_or_else(bad),
            Value::String(s) => {
                if let Some(found) = placeholder(s) {
                    return Err(placeholder_error(self.path, key, found));
                }
                s.trim().parse().map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }

    fn size(&self, key: &str, v: &Value) -> Result<usize, ConfigError> {
        let n = self.uint(key, v)?;
        usize::try_from(n).map_err(|_| self.err(key, format!("{n} is too large")))
    }

    /// `true` / `false` (or null for false).
    fn flag(&self, key: &str, v: &Value) -> Result<bool, ConfigError> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::Null => Ok(false),
            _ => Err(self.err(key, format!("expected true or false, got {v}"))),
        }
    }

    /// A duration the reference reads with `value || default`: 0 means its default.
    fn seconds_or_default(
        &self,
        key: &str,
        v: &Value,
        unit_ms: u64,
        warnings: &mut Warnings,
    ) -> Result<Option<Duration>, ConfigError> {
        let n = self.uint(key, v)?;
        if n == 0 {
            warnings.add(
                self.path,
                format!("{key} is 0, which the reference server reads as its default"),
            );
            return Ok(None);
        }
        n.checked_mul(unit_ms)
            .map(|ms| Some(Duration::from_millis(ms)))
            .ok_or_else(|| self.err(key, format!("{n} is too large")))
    }

    fn server(
        &self,
        key: &str,
        server: &Map<String, Value>,
        publish_mode: bool,
        warnings: &mut Warnings,
    ) -> Result<Option<ListenerConfig>, ConfigError> {
        let mut has_sub = false;
        let mut has_pub = false;
        for (k, v) in server {
            let here = format!("{key}.{k}");
            match k.as_str() {
                "port" | "hostname" | "name" => {}
                "routes" => {
                    for (kind, route) in self.object(&here, v)? {
                        let route_key = format!("{here}.{kind}");
                        let route = self.text(&route_key, route)?;
                        check_route(self.path, &route_key, kind, route)?;
                        match kind.as_str() {
                            "sub" => has_sub = true,
                            _ => has_pub = true,
                        }
                    }
                }
                "ssl" => {
                    return Err(self.err(
                        &here,
                        "pushpull does not terminate TLS; let nginx (or another proxy) \
                         terminate it and forward plain HTTP to pushpull",
                    ));
                }
                "backlog" => warnings.add(
                    self.path,
                    "servers[].backlog is ignored: pushpull uses the system's listen backlog",
                ),
                "maxPayload" => warnings.add(
                    self.path,
                    "servers[].maxPayload is ignored (as by the reference server): \
                     limits.maxPayload applies",
                ),
                other => warnings.add(self.path, format!("unknown key servers[].{other} ignored")),
            }
        }
        let port_key = format!("{key}.port");
        let port = server
            .get("port")
            .ok_or_else(|| self.err(&port_key, "missing"))?;
        let port = self.uint(&port_key, port)?;
        let port = u16::try_from(port)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| self.err(&port_key, format!("{port} is not a port (1..=65535)")))?;
        let host_key = format!("{key}.hostname");
        let hostname = match server.get("hostname") {
            Some(Value::Null) | None => "",
            Some(v) => self.text(&host_key, v)?,
        };
        let addr = listen_addr(self.path, &host_key, hostname, port)?;
        let kind = if publish_mode || has_pub {
            ListenerKind::Pub
        } else if has_sub {
            ListenerKind::Sub
        } else {
            warnings.add(
                self.path,
                format!("{key} (port {port}) has no routes and serves nothing: skipped"),
            );
            return Ok(None);
        };
        if kind == ListenerKind::Pub && has_sub {
            if !publish_mode {
                return Err(self.err(
                    &format!("{key}.routes"),
                    "one server has both sub and pub/rest/stat routes; pushpull serves \
                     subscribers and publishers on separate ports: split it into two servers",
                ));
            }
            warnings.add(
                self.path,
                format!(
                    "{key}.routes.sub is not served: with publishMode the port is a pub \
                     listener (the reference's publishMode processes deliver nothing either)"
                ),
            );
        }
        Ok(Some(ListenerConfig::plain(kind, addr)))
    }

    fn storage(
        &self,
        storage: &Map<String, Value>,
        out: &mut BitrixConfig,
        warnings: &mut Warnings,
    ) -> Result<(), ConfigError> {
        // The code reads the TTL spelling; the shipped templates write TLL: both are accepted,
        // the TTL spelling wins.
        let pick = |ttl: &'static str, tll: &'static str| match storage.get(ttl) {
            Some(v) => Some((ttl, v)),
            None => storage.get(tll).map(|v| (tll, v)),
        };
        if let Some((key, v)) = pick("messageTTL", "messageTLL") {
            let key = format!("storage.{key}");
            let n = self.uint(&key, v)?;
            out.message_ttl = Some(
                u32::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| self.err(&key, format!("must be 1..={}, got {n}", u32::MAX)))?,
            );
        }
        if let Some((key, v)) = pick("onlineTTL", "onlineTLL") {
            out.online_ttl =
                self.seconds_or_default(&format!("storage.{key}"), v, 1000, warnings)?;
        }
        if let Some(v) = storage.get("onlineDelta") {
            out.online_delta = self.seconds_or_default("storage.onlineDelta", v, 1000, warnings)?;
        }
        if let Some((key, v)) = pick("statTTLMsec", "statTLLMsec") {
            out.stats_interval =
                self.seconds_or_default(&format!("storage.{key}"), v, 1, warnings)?;
        }
        let kind = match storage.get("type") {
            Some(v) => Some(self.text("storage.type", v)?),
            None => None,
        };
        for key in storage.keys() {
            match key.as_str() {
                "type" | "socket" | "host" | "port" | "messageTTL" | "onlineTTL"
                | "onlineDelta" | "statTLLMsec" | "statTTLMsec" => {}
                "messageTLL" | "onlineTLL" => {}
                "channelTTL" | "channelTLL" => warnings.add(
                    self.path,
                    format!(
                        "storage.{key} is ignored: pushpull bounds channel history by \
                         channel_history and message_ttl"
                    ),
                ),
                "statDeltaMsec" => warnings.add(
                    self.path,
                    "storage.statDeltaMsec is ignored: pushpull's statistics are never stale",
                ),
                other => warnings.add(self.path, format!("unknown key storage.{other} ignored")),
            }
        }
        match kind {
            Some(k) if k.eq_ignore_ascii_case("redis") => {
                let mut redis = RedisConfig::default();
                if let Some(v) = storage.get("socket") {
                    let socket = self.text("storage.socket", v)?;
                    if !socket.is_empty() {
                        redis.socket = Some(socket.into());
                    }
                }
                if let Some(v) = storage.get("host") {
                    redis.host = self.text("storage.host", v)?.to_owned();
                }
                if let Some(v) = storage.get("port") {
                    let port = self.uint("storage.port", v)?;
                    redis.port = u16::try_from(port)
                        .ok()
                        .filter(|&p| p != 0)
                        .ok_or_else(|| self.err("storage.port", format!("{port} is not a port")))?;
                }
                out.storage = Some(Storage::Redis(redis));
            }
            Some(other) => warnings.add(
                self.path,
                format!("storage.type {other:?} is not known: memory storage is used"),
            ),
            None => {}
        }
        Ok(())
    }

    fn security(
        &self,
        security: &Map<String, Value>,
        out: &mut BitrixConfig,
        warnings: &mut Warnings,
    ) -> Result<(), ConfigError> {
        for (key, v) in security {
            match key.as_str() {
                "key" => out.security_key = Some(self.text("security.key", v)?.to_owned()),
                "algo" => {
                    let algo = self.text("security.algo", v)?;
                    out.signature_algo = Some(match algo.to_ascii_lowercase().as_str() {
                        "sha1" => SignatureAlgo::Sha1,
                        "sha256" => SignatureAlgo::Sha256,
                        _ => {
                            return Err(self.err(
                                "security.algo",
                                format!("{algo:?} is not supported; use sha1 or sha256"),
                            ));
                        }
                    });
                }
                other => warnings.add(self.path, format!("unknown key security.{other} ignored")),
            }
        }
        Ok(())
    }

    fn limits(
        &self,
        limits: &Map<String, Value>,
        out: &mut BitrixConfig,
        warnings: &mut Warnings,
    ) -> Result<(), ConfigError> {
        for (key, v) in limits {
            let here = format!("limits.{key}");
            match key.as_str() {
                "maxPayload" => out.max_payload = Some(self.size(&here, v)?),
                "maxConnPerChannel" => out.max_conn_per_channel = Some(self.size(&here, v)?),
                "maxMessagesPerRequest" => {
                    out.max_messages_per_request = Some(self.size(&here, v)?)
                }
                "maxChannelsPerRequest" => {
                    out.max_channels_per_request = Some(self.size(&here, v)?)
                }
                "maxRequestsPerSecond" => warnings.add(
                    self.path,
                    "limits.maxRequestsPerSecond is ignored (the reference server never used it)",
                ),
                other => warnings.add(self.path, format!("unknown key limits.{other} ignored")),
            }
        }
        Ok(())
    }
}
