//! The TOML file format: reading (with 1-based line/column errors), durations, and printing the
//! effective configuration back in the same format.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

use super::{Config, ConfigError, Layer};

/// A duration setting as read from the file: whole seconds, fractional seconds, or a string
/// accepted by [`parse_duration`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dur(pub(crate) Duration);

impl<'de> serde::Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurVisitor)
    }
}

struct DurVisitor;

impl Visitor<'_> for DurVisitor {
    type Value = Dur;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"seconds, or a string such as "500ms", "40s", "2m""#)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
        u64::try_from(v)
            .map(|s| Dur(Duration::from_secs(s)))
            .map_err(|_| E::custom(format!("a duration cannot be negative, got {v}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
        Ok(Dur(Duration::from_secs(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
        if !v.is_finite() || v < 0.0 {
            return Err(E::custom(format!(
                "a duration must be a non-negative number of seconds, got {v}"
            )));
        }
        // Rounded to the millisecond, the resolution of every duration setting.
        Duration::try_from_secs_f64((v * 1000.0).round() / 1000.0)
            .map(Dur)
            .map_err(|_| E::custom(format!("duration {v} s is too large")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
        parse_duration(v).map(Dur).map_err(E::custom)
    }
}

/// Parses a duration: a number with an optional unit `ms`, `s` (the default), `m` or `h`, e.g.
/// `"40"`, `"40s"`, `"500ms"`, `"2m"`, `"1.5s"`. The resolution is one millisecond; finer values
/// are rejected rather than silently rounded.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "bad duration {text:?}: unknown unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(format!(
            r#"bad duration {text:?}: expected a number with an optional unit, e.g. "500ms", "40s", "2m""#
        ));
    }
    let too_large = || format!("bad duration {text:?}: too large");
    let digits = |s: &str| -> Result<u64, String> {
        if s.is_empty() {
            return Ok(0);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad duration {text:?}: not a number"));
        }
        s.parse::<u64>().map_err(|_| too_large())
    };
    let mut ms = digits(whole)?.checked_mul(unit_ms).ok_or_else(too_large)?;
    if !frac.is_empty() {
        // Exact decimal arithmetic: frac / 10^len of the unit, which must be whole milliseconds.
        let frac = frac.trim_end_matches('0');
        let scale = u32::try_from(frac.len())
            .ok()
            .and_then(|n| 10u64.checked_pow(n))
            .ok_or_else(|| format!("bad duration {text:?}: finer than 1ms"))?;
        let part = digits(frac)?
            .checked_mul(unit_ms)
            .ok_or_else(|| format!("bad duration {text:?}: finer than 1ms"))?;
        if part % scale != 0 {
            return Err(format!("bad duration {text:?}: finer than 1ms"));
        }
        ms = ms.checked_add(part / scale).ok_or_else(too_large)?;
    }
    Ok(Duration::from_millis(ms))
}

/// Formats a duration the way the file writes it: `"40s"` for whole seconds, otherwise
/// milliseconds (`"250ms"`, rounded up so a non-zero duration never prints as zero).
pub fn format_duration(d: Duration) -> String {
    match DurOut::from(d) {
        DurOut::Secs(s) => format!("{s}s"),
        DurOut::Text(t) => t,
    }
}

/// A duration in the file's format: an integer of seconds, or a `"250ms"` string.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum DurOut {
    Secs(u64),
    Text(String),
}

impl From<Duration> for DurOut {
    fn from(d: Duration) -> Self {
        if d.subsec_nanos() == 0 {
            DurOut::Secs(d.as_secs())
        } else {
            let ms = d.as_nanos().div_ceil(1_000_000);
            DurOut::Text(format!("{ms}ms"))
        }
    }
}

/// Deserializes a listener address with an error message that shows the expected form.
pub(crate) fn de_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    parse_addr(&text).map_err(de::Error::custom)
}

/// Parses `IP:PORT` (IPv6 in brackets).
pub(crate) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("bad address {text:?}: expected IP:PORT, e.g. 127.0.0.1:8010 or [::1]:8010")
    })
}

/// Serializes a duration setting in the file's format.
pub(crate) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&DurOut::from(*d), s)
}

/// Serializes the security key as `"<set, N chars>"`, never the secret.
pub(crate) fn ser_secret<S: Serializer>(key: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(k) => s.serialize_str(&redact(k)),
        None => s.serialize_none(),
    }
}

/// The printable stand-in for a secret: `<set, N chars>`.
pub(crate) fn redact(key: &str) -> String {
    format!("<set, {} chars>", key.chars().count())
}

/// Whether `key` is a [`redact`] placeholder (someone fed check-config's output back in).
pub(crate) fn looks_redacted(key: &str) -> bool {
    key.strip_prefix("<set, ")
        .and_then(|rest| rest.strip_suffix(" chars>"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses the file's text into a layer; errors carry the 1-based line and column.
pub(crate) fn parse_file(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    toml::from_str::<Layer>(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map_or((1, 1), |span| line_column(text, span.start));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim_end().replace('\n', "; "),
        }
    })
}

/// `text` made safe inside one TOML comment: line breaks become spaces, other control
/// characters (which TOML forbids in comments, tab aside) become `\u{…}` escapes.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The effective configuration as a TOML document in the file's format.
pub(crate) fn to_toml(config: &Config) -> String {
    let mut out = String::from(
        "# pushpull effective configuration (`pushpull check-config`).\n\
         # Durations are seconds, or strings such as \"500ms\", \"40s\", \"2m\".\n",
    );
    if config.security_key.is_none() {
        out.push_str("# security_key is not set: unsigned channel ids are accepted.\n");
    }
    if !config.bitrix_sources.is_empty() {
        out.push_str("# Read from the Bitrix push server's configuration:\n");
        for path in &config.bitrix_sources {
            out.push_str(&format!("#   {}\n", one_line(&path.display().to_string())));
        }
    }
    for warning in &config.warnings {
        out.push_str(&format!("# warning: {}\n", one_line(warning)));
    }
    match toml::to_string(config) {
        Ok(body) => {
            out.push_str(&body);
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        Err(e) => out.push_str(&format!("# cannot print the configuration: {e}\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn duration_strings() {
        assert_eq!(parse_duration("40"), Ok(ms(40_000)));
        assert_eq!(parse_duration("40s"), Ok(ms(40_000)));
        assert_eq!(parse_duration(" 40 s "), Ok(ms(40_000)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("0.25"), Ok(ms(250)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("2.500s"), Ok(ms(2500)));
        assert_eq!(parse_duration("0.5m"), Ok(ms(30_000)));
        assert_eq!(parse_duration("0"), Ok(ms(0)));
        for bad in [
            "",
            "s",
            "ms",
            ".",
            "abc",
            "40x",
            "-1",
            "-1s",
            "1.2.3s",
            "1.0005s",
            "0.5ms",
            "1e3",
            "40 sec",
            "99999999999999999999",
            "18446744073709551615h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    /// `check-config` output stays valid TOML whatever the warnings and file names hold. Found
    /// by the `config` fuzz target (fuzz/regressions/config/crash-18619ff8-control-in-warning):
    /// an unknown key with a DEL character in a Bitrix file was printed raw in a comment.
    #[test]
    fn comments_hold_no_control_characters() {
        let config = Config {
            warnings: vec!["unknown key a\u{7f}b\u{0}c\r\nd\te\u{85} ignored".to_owned()],
            bitrix_sources: vec![std::path::PathBuf::from("/etc/p\u{1b}s.json")],
            ..Config::default()
        };
        let text = to_toml(&config);
        assert!(
            text.contains("# warning: unknown key a\\u{7f}b\\u{0}c  d\te\\u{85} ignored\n"),
            "{text}"
        );
        assert!(text.contains("#   /etc/p\\u{1b}s.json\n"), "{text}");
        if let Err(e) = toml::from_str::<toml::Table>(&text) {
            panic!("not TOML ({e}):\n{text}");
        }
    }

    #[test]
    fn duration_format() {
        assert_eq!(format_duration(ms(40_000)), "40s");
        assert_eq!(format_duration(ms(250)), "250ms");
        assert_eq!(format_duration(ms(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_nanos(1)), "1ms");
        for d in [ms(1), ms(250), ms(1500), ms(40_000), ms(86_400_000)] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn file_durations_accept_numbers_and_strings() {
        let layer = parse_file(
            Path::new("t.toml"),
            "longpoll_hold = 40\nws_ping_interval = \"500ms\"\nhead_timeout = 2.5\n\
             keepalive_timeout = \"2m\"\nshutdown_grace = \"1.5s\"\n",
        )
        .map_err(|e| e.to_string());
        let layer = layer.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(layer.longpoll_hold, Some(Dur(ms(40_000))));
        assert_eq!(layer.ws_ping_interval, Some(Dur(ms(500))));
        assert_eq!(layer.head_timeout, Some(Dur(ms(2500))));
        assert_eq!(layer.keepalive_timeout, Some(Dur(ms(120_000))));
        assert_eq!(layer.shutdown_grace, Some(Dur(ms(1500))));
    }

    fn parse_err(text: &str) -> (usize, usize, String) {
        match parse_file(Path::new("f.toml"), text) {
            Err(ConfigError::Parse {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("expected a parse error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn bad_duration_values_are_parse_errors_with_position() {
        let (line, column, msg) = parse_err("threads = 2\nlongpoll_hold = \"40x\"\n");
        assert_eq!((line, column), (2, 17));
        assert!(msg.contains("unknown unit"), "{msg}");
        let (line, _, msg) = parse_err("\n\nlongpoll_hold = -5\n");
        assert_eq!(line, 3);
        assert!(msg.contains("negative"), "{msg}");
        let (line, _, _) = parse_err("longpoll_hold = true\n");
        assert_eq!(line, 1);
    }

    #[test]
    fn syntax_error_line_and_column() {
        let (line, column, _) = parse_err("threads = 2\nlog_level = \"info\"\nmax_payload = = 3\n");
        assert_eq!(line, 3);
        assert!(column >= 14, "column {column}");
        let (line, _, _) = parse_err("threads = 2\n\n\nsecurity_key = \"unterminated\n");
        assert_eq!(line, 4);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let (line, column, msg) = parse_err("threads = 2\n# comment\nthreds = 3\n");
        assert_eq!((line, column), (3, 1));
        assert!(msg.contains("threds"), "{msg}");
        let (line, _, msg) =
            parse_err("[[listener]]\nkind = \"sub\"\naddr = \"127.0.0.1:1\"\nport = 5\n");
        assert_eq!(line, 4);
        assert!(msg.contains("port"), "{msg}");
        let (line, _, msg) = parse_err("threads = 1\n[server]\nx = 1\n");
        assert_eq!(line, 2);
        assert!(msg.contains("server"), "{msg}");
    }

    #[test]
    fn wrong_types_are_parse_errors() {
        let (line, _, _) = parse_err("threads = 1\nthreads_ = 2\n");
        assert_eq!(line, 2);
        let (line, _, _) = parse_err("max_payload = \"big\"\n");
        assert_eq!(line, 1);
        let (line, _, _) = parse_err("channel_history = -1\n");
        assert_eq!(line, 1);
        let (line, _, msg) = parse_err("signature_algo = \"md5\"\n");
        assert_eq!(line, 1);
        assert!(msg.contains("md5"), "{msg}");
        let (line, _, _) = parse_err("[[listener]]\nkind = \"both\"\naddr = \"127.0.0.1:1\"\n");
        assert_eq!(line, 2);
        let (line, _, _) = parse_err("[[listener]]\nkind = \"sub\"\naddr = \"localhost:port\"\n");
        assert_eq!(line, 3);
        let (line, _, msg) = parse_err("[[listener]]\nkind = \"sub\"\n");
        assert_eq!(line, 1);
        assert!(msg.contains("addr"), "{msg}");
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("abc\ndef", 4), (2, 1));
        assert_eq!(line_column("abc\ndef", 6), (2, 3));
        assert_eq!(line_column("é = 1\nx", 2), (1, 2));
        assert_eq!(line_column("é = 1\nx", 3), (1, 3));
        // Offsets inside a character or past the end do not panic.
        assert_eq!(line_column("é", 1), (1, 1));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    #[test]
    fn redaction_placeholder() {
        assert_eq!(redact("sécret"), "<set, 6 chars>");
        assert!(looks_redacted("<set, 6 chars>"));
        assert!(!looks_redacted("<set,  chars>"));
        assert!(!looks_redacted("<set, x chars>"));
        assert!(!looks_redacted("secret"));
    }
}
