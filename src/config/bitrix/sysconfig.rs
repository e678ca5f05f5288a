//! The BitrixVM `push-server-multi` sysconfig file (`/etc/sysconfig/push-server-multi`, or
//! `/etc/default/push-server`): shell `KEY=value` lines sourced by the init script, which
//! starts sub processes on ports `BASE_SUB` + `0..=ID_SUB` (string concatenation: 801 + 0 =
//! 8010) and pub processes on `BASE_PUB` + `0..=ID_PUB`.
//!
//! Variables read: `BASE_SUB`, `BASE_PUB`, `ID_SUB`, `ID_PUB`, `WS_HOST`, `SECURITY_KEY`,
//! `REDIS_SOCK`, `SUBPATH`, `SUBWSPATH`, `PUBPATH`, `RESTPATH`; unset ones take the init
//! script's fallbacks. Only literal values are understood: no `$VAR` expansion.

use std::collections::HashMap;
use std::path::Path;

use super::{
    BitrixConfig, DEFAULT_BASE_PUB, DEFAULT_BASE_SUB, DEFAULT_ID_PUB, DEFAULT_ID_SUB,
    DEFAULT_REDIS_SOCK, DEFAULT_WS_HOST, Warnings, check_route, listen_addr, placeholder,
    placeholder_error,
};
use crate::config::{ConfigError, ListenerConfig, ListenerKind, RedisConfig, Storage};

/// Variables of the file that only concern the Node processes: silently ignored.
const NODE_ONLY: [&str; 10] = [
    "HG_DIR", "CFG_DIR", "VAR_DIR", "TMPL_SUB", "TMPL_PUB", "USER", "IP_LIST", "PID_SUB",
    "PID_PUB", "WS_PORT",
];

/// Variables pushpull reads.
const READ: [&str; 11] = [
    "BASE_SUB",
    "BASE_PUB",
    "ID_SUB",
    "ID_PUB",
    "WS_HOST",
    "SECURITY_KEY",
    "REDIS_SOCK",
    "SUBPATH",
    "SUBWSPATH",
    "PUBPATH",
    "RESTPATH",
];

/// Parses the file and generates the settings.
pub(super) fn parse(
    path: &Path,
    text: &str,
    warnings: &mut Warnings,
) -> Result<BitrixConfig, ConfigError> {
    let vars = assignments(path, text, warnings)?;
    let err = |key: &str, message: String| ConfigError::Bitrix {
        path: path.to_path_buf(),
        key: key.to_owned(),
        message,
    };
    let get = |key: &str| -> Result<Option<&str>, ConfigError> {
        match vars.get(key).map(String::as_str) {
            Some(v) if v.contains('$') || v.contains('`') => Err(err(
                key,
                format!("{v:?} needs shell expansion, which pushpull does not do; write the value"),
            )),
            Some(v) => match placeholder(v) {
                Some(found) => Err(placeholder_error(path, key, found)),
                None => Ok(Some(v).filter(|v| !v.is_empty())),
            },
            None => Ok(None),
        }
    };
    let mut out = BitrixConfig::default();
    let host = get("WS_HOST")?.unwrap_or(DEFAULT_WS_HOST);
    for (kind, base_key, id_key, base_default, id_default) in [
        (
            ListenerKind::Sub,
            "BASE_SUB",
            "ID_SUB",
            DEFAULT_BASE_SUB,
            DEFAULT_ID_SUB,
        ),
        (
            ListenerKind::Pub,
            "BASE_PUB",
            "ID_PUB",
            DEFAULT_BASE_PUB,
            DEFAULT_ID_PUB,
        ),
    ] {
        let base = get(base_key)?.unwrap_or(base_default);
        if !base.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(base_key, format!("expected digits, got {base:?}")));
        }
        let id = match get(id_key)? {
            None => id_default,
            Some(v) => v
                .parse::<u32>()
                .map_err(|_| err(id_key, format!("expected a number, got {v:?}")))?,
        };
        for i in 0..=id {
            let text = format!("{base}{i}");
            let port = text
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| {
                    err(
                        id_key,
                        format!(
                            "{base_key}={base} with index {i} gives port {text}, which is not a \
                         port (1..=65535)"
                        ),
                    )
                })?;
            let addr = listen_addr(path, "WS_HOST", host, port)?;
            if out.listeners.iter().any(|l| l.addr == addr) {
                return Err(err(
                    base_key,
                    format!("port {port} is generated twice (BASE_SUB and BASE_PUB overlap)"),
                ));
            }
            out.listeners.push(ListenerConfig::plain(kind, addr));
        }
    }
    match get("SECURITY_KEY")? {
        Some(key) => out.security_key = Some(key.to_owned()),
        None => warnings.add(
            path,
            "SECURITY_KEY is empty: the init script would generate one; set security_key \
             to the key the Bitrix pull module uses",
        ),
    }
    let socket = get("REDIS_SOCK")?.unwrap_or(DEFAULT_REDIS_SOCK);
    out.storage = Some(Storage::Redis(RedisConfig {
        socket: Some(socket.into()),
        ..RedisConfig::default()
    }));
    for (key, kind) in [
        ("SUBPATH", "sub"),
        ("SUBWSPATH", "sub"),
        ("PUBPATH", "pub"),
        ("RESTPATH", "rest"),
    ] {
        if let Some(route) = get(key)? {
            check_route(path, key, kind, route)?;
        }
    }
    for name in vars.keys() {
        if !READ.contains(&name.as_str()) && !NODE_ONLY.contains(&name.as_str()) {
            warnings.add(path, format!("unknown variable {name} ignored"));
        }
    }
    out.files.push(path.to_path_buf());
    Ok(out)
}

/// The `KEY=value` assignments, the last one of a name winning (as the shell would).
fn assignments(
    path: &Path,
    text: &str,
    warnings: &mut Warnings,
) -> Result<HashMap<String, String>, ConfigError> {
    let mut vars = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((name, rest)) = line.split_once('=').filter(|(name, _)| is_name(name)) else {
            warnings.add(path, format!("line {} is not KEY=value: ignored", n + 1));
            continue;
        };
        let (value, after) = shell_word(rest).map_err(|message| ConfigError::Bitrix {
            path: path.to_path_buf(),
            key: name.to_owned(),
            message: format!("line {}: {message}", n + 1),
        })?;
        let after = after.trim();
        if !after.is_empty() && !after.starts_with('#') {
            warnings.add(
                path,
                format!("line {}: text after the value of {name} ignored", n + 1),
            );
        }
        vars.insert(name.to_owned(), value);
    }
    Ok(vars)
}

fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One shell word: unquoted text up to whitespace, `'literal'` and `"quoted"` parts (with
/// `\"`, `\\`, `\$` escapes) joined. Returns the word and the rest of the line.
fn shell_word(text: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => return Ok((out, &text[i..])),
            '\'' => loop {
                match chars.next() {
                    Some((_, '\'')) => break,
                    Some((_, c)) => out.push(c),
                    None => return Err("unterminated single quote".to_owned()),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c @ ('"' | '\\' | '$' | '`'))) => out.push(c),
                        Some((_, c)) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err("unterminated double quote".to_owned()),
                    },
                    Some((_, c)) => out.push(c),
                    None => return Err("unterminated double quote".to_owned()),
                }
            },
            '\\' => {
                if let Some((_, c)) = chars.next() {
                    out.push(c);
                }
            }
            c => out.push(c),
        }
    }
    Ok((out, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_word("801   # base"),
            Ok(("801".to_owned(), "   # base"))
        );
        assert_eq!(
            shell_word(r#"'"127.0.0.1", "10.0.0.0/8"'"#),
            Ok((r#""127.0.0.1", "10.0.0.0/8""#.to_owned(), ""))
        );
        assert_eq!(
            shell_word(r#""a b\"c\\"d"#),
            Ok((r#"a b"c\d"#.to_owned(), ""))
        );
        assert_eq!(shell_word(""), Ok((String::new(), "")));
        assert_eq!(shell_word(r"a\ b"), Ok(("a b".to_owned(), "")));
        assert!(shell_word("'open").is_err());
        assert!(shell_word("\"open").is_err());
    }

    #[test]
    fn names() {
        assert!(is_name("BASE_SUB"));
        assert!(is_name("_x1"));
        assert!(!is_name(""));
        assert!(!is_name("1X"));
        assert!(!is_name("[[ -z $X ]] && X"));
    }
}
