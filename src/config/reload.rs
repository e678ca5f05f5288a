//! What SIGHUP can change in a running server (spec/README.md §6): everything a connection reads
//! when it needs it (the security key and signature algorithm, timeouts, size and count limits,
//! the log level, listeners' TLS certificates) takes effect at once; the settings fixed when the
//! server started (threads, listener addresses, storage, the engine's history and online
//! settings) keep their running values until a restart, and are named in a warning.

use super::Config;

impl Config {
    /// The configuration a running server adopts from `new`: `new`, except that every setting
    /// that needs a restart keeps its value from `self`. Also returns the names of those that
    /// `new` would change.
    pub fn reloaded(&self, new: Config) -> (Config, Vec<&'static str>) {
        let mut out = new;
        let mut kept = Vec::new();
        macro_rules! keep {
            ($($field:ident),* $(,)?) => {$(
                if out.$field != self.$field {
                    kept.push(stringify!($field));
                    out.$field = self.$field.clone();
                }
            )*};
        }
        keep!(
            threads,
            message_ttl,
            channel_history,
            history_max_bytes,
            replay_max,
            online_ttl,
            online_delta,
            max_conn_per_channel,
            stats_interval,
            state_file,
            storage,
        );
        // Listener addresses are bound at start; their TLS files are read again on reload.
        let addrs =
            |c: &Config| -> Vec<_> { c.listeners.iter().map(|l| (l.kind, l.addr)).collect() };
        if addrs(&out) != addrs(self) {
            kept.push("listener");
            out.listeners = self.listeners.clone();
        } else {
            let tls_changed = out
                .listeners
                .iter()
                .zip(&self.listeners)
                .any(|(new, old)| new.is_tls() != old.is_tls());
            if tls_changed {
                kept.push("listener TLS on/off");
                out.listeners = self.listeners.clone();
            }
        }
        (out, kept)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{ListenerConfig, ListenerKind, Storage};

    #[test]
    fn live_settings_change_and_restart_settings_stay() {
        let old = Config::default();
        let new = Config {
            security_key: Some("k2".into()),
            max_payload: 77,
            head_timeout: Duration::from_secs(3),
            log_level: "debug".into(),
            threads: old.threads + 1,
            message_ttl: 5,
            storage: Storage::Redis(Default::default()),
            ..Config::default()
        };
        let (got, kept) = old.reloaded(new);
        assert_eq!(got.security_key.as_deref(), Some("k2"));
        assert_eq!(got.max_payload, 77);
        assert_eq!(got.head_timeout, Duration::from_secs(3));
        assert_eq!(got.log_level, "debug");
        assert_eq!(got.threads, old.threads);
        assert_eq!(got.message_ttl, old.message_ttl);
        assert_eq!(got.storage, old.storage);
        assert_eq!(kept, ["threads", "message_ttl", "storage"]);
    }

    #[test]
    fn listeners_keep_their_addresses_but_take_new_tls_files() {
        let addr = "127.0.0.1:8443".parse().expect("address");
        let tls = |cert: &str| ListenerConfig {
            tls_cert: Some(cert.into()),
            tls_key: Some("/k.pem".into()),
            ..ListenerConfig::plain(ListenerKind::Sub, addr)
        };
        let old = Config {
            listeners: vec![tls("/a.pem")],
            ..Config::default()
        };
        let (got, kept) = old.reloaded(Config {
            listeners: vec![tls("/b.pem")],
            ..Config::default()
        });
        assert!(kept.is_empty(), "{kept:?}");
        assert_eq!(
            got.listeners[0].tls_cert.as_deref(),
            Some("/b.pem".as_ref())
        );
        let (got, kept) = old.reloaded(Config {
            listeners: vec![ListenerConfig::plain(ListenerKind::Sub, addr)],
            ..Config::default()
        });
        assert_eq!(kept, ["listener TLS on/off"]);
        assert_eq!(got.listeners, old.listeners);
        let (got, kept) = old.reloaded(Config::default());
        assert_eq!(kept, ["listener"]);
        assert_eq!(got.listeners, old.listeners);
    }
}
