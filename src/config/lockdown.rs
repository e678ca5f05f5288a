//! The publisher lock-down settings (spec/publishing.md §7): `publish_allow`, the networks whose
//! peers may use the publisher routes, and `publish_signature`, whether their requests must be
//! signed.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeSeq, Serializer};

/// Whether requests on the publisher routes must carry `?signature=`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum PublishSignature {
    /// No signature is asked for (personal mode of the PHP module).
    #[default]
    Off,
    /// Every publisher request carries the HMAC of its signed data (shared mode of the PHP
    /// module).
    Required,
}

impl PublishSignature {
    /// The name used in the file, the environment and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Required => "required",
        }
    }

    /// Parses the environment's spelling (case-insensitive).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "required" => Ok(Self::Required),
            _ => Err(format!("expected off or required, got {text:?}")),
        }
    }
}

/// Parses one `publish_allow` entry: a network in CIDR form (`10.0.0.0/8`, `::1/128`) or a bare
/// address, which names that one host. Host bits below the prefix are refused: `10.0.0.1/8` is
/// more likely a typo than a network.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = t.parse().map_err(|_| {
        format!(
            "publish_allow: bad network {text:?}: expected CIDR such as 10.0.0.0/8 or ::1/128, \
             or an address"
        )
    })?;
    if net.addr() != net.network() {
        return Err(format!(
            "publish_allow: bad network {text:?}: bits are set after the /{} prefix; \
             the network is {}",
            net.prefix_len(),
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses a comma-separated list of networks (environment); empty items are skipped.
pub(crate) fn parse_net_list(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(parse_net)
        .collect()
}

/// Whether a peer at `ip` may use the publisher routes: `allow` is empty (no restriction) or
/// holds a network containing it. An IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`, from a listener on
/// `[::]`) is compared as the IPv4 address it carries.
pub fn publish_allowed(allow: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    allow.is_empty() || allow.iter().any(|net| net.contains(&ip))
}

/// A `publish_allow` entry as read from the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Net(pub(crate) IpNet);

impl<'de> serde::Deserialize<'de> for Net {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(NetVisitor)
    }
}

struct NetVisitor;

impl Visitor<'_> for NetVisitor {
    type Value = Net;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a network such as "10.0.0.0/8" or "::1/128""#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Net, E> {
        parse_net(v).map(Net).map_err(E::custom)
    }
}

/// Serializes the networks as strings in CIDR form.
pub(crate) fn ser_nets<S: Serializer>(nets: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(nets.len()))?;
    for net in nets {
        seq.serialize_element(&net.to_string())?;
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Config, ConfigError};
    use super::*;

    fn net(text: &str) -> IpNet {
        parse_net(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn networks_parse() {
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net(" 127.0.0.1/32 ").to_string(), "127.0.0.1/32");
        assert_eq!(net("::1/128").to_string(), "::1/128");
        assert_eq!(net("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(net("192.168.1.7").to_string(), "192.168.1.7/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "localhost",
            "10.0.0.0/",
            "10.0.0.0/8/8",
        ] {
            let e = parse_net(bad).expect_err(bad);
            assert!(e.starts_with("publish_allow: bad network"), "{bad}: {e}");
        }
        let e = parse_net("10.1.2.3/8").expect_err("host bits");
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }

    #[test]
    fn lists_parse() {
        let list = parse_net_list(" 127.0.0.1/32, ,10.0.0.0/8,::1 ").unwrap_or_default();
        assert_eq!(list.len(), 3);
        assert!(parse_net_list("10.0.0.0/8,nope").is_err());
        assert_eq!(parse_net_list(""), Ok(Vec::new()));
    }

    #[test]
    fn matching() {
        let allow = [net("127.0.0.1/32"), net("10.0.0.0/8"), net("::1/128")];
        assert!(publish_allowed(&allow, ip("127.0.0.1")));
        assert!(!publish_allowed(&allow, ip("127.0.0.2")));
        assert!(publish_allowed(&allow, ip("10.255.0.1")));
        assert!(!publish_allowed(&allow, ip("11.0.0.1")));
        assert!(publish_allowed(&allow, ip("::1")));
        assert!(!publish_allowed(&allow, ip("::2")));
        // IPv4-mapped peers of a dual-stack listener are compared as IPv4.
        assert!(publish_allowed(&allow, ip("::ffff:10.1.2.3")));
        assert!(!publish_allowed(&allow, ip("::ffff:11.1.2.3")));
        // Empty: everyone who reaches the listener.
        assert!(publish_allowed(&[], ip("203.0.113.9")));
        assert!(publish_allowed(&[net("::/0")], ip("2001:db8::1")));
        assert!(!publish_allowed(&[net("::/0")], ip("192.0.2.1")));
    }

    fn load(args: &[&str], env: &[(&str, &str)], file: &str) -> Result<Config, ConfigError> {
        use clap::Parser;
        let cli = Cli::try_parse_from(std::iter::once("pushpull").chain(args.iter().copied()))
            .map_err(|e| ConfigError::Env {
                name: "argv".into(),
                message: e.to_string(),
            })?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::load_from(&cli, &env, |_| Ok(file.to_owned()))
    }

    fn ok(args: &[&str], env: &[(&str, &str)], file: &str) -> Config {
        load(args, env, file).unwrap_or_else(|e| panic!("{e}"))
    }

    fn shown(list: &[IpNet]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    /// spec/limits.md §2, spec/README.md §6: the settings come from the file, the
    /// environment and the flags, each overriding the one before; the defaults lock nothing.
    #[test]
    fn settings_sources_and_precedence() {
        let c = ok(&[], &[], "");
        assert!(c.publish_allow.is_empty());
        assert_eq!(c.publish_signature, PublishSignature::Off);
        let file = "security_key = \"k\"\npublish_allow = [\"127.0.0.1/32\", \"10.0.0.0/8\", \
                    \"::1/128\"]\npublish_signature = \"required\"\n";
        let c = ok(&["-c", "f"], &[], file);
        assert_eq!(
            shown(&c.publish_allow),
            ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
        );
        assert_eq!(c.publish_signature, PublishSignature::Required);
        let env = [
            ("PUSHPULL_PUBLISH_ALLOW", "192.168.0.0/16, fd00::/8"),
            ("PUSHPULL_PUBLISH_SIGNATURE", "OFF"),
        ];
        let c = ok(&["-c", "f"], &env, file);
        assert_eq!(shown(&c.publish_allow), ["192.168.0.0/16", "fd00::/8"]);
        assert_eq!(c.publish_signature, PublishSignature::Off);
        let flags = [
            "-c",
            "f",
            "--publish-allow",
            "172.16.0.0/12",
            "--publish-allow=127.0.0.1,::1",
            "--publish-signature",
            "required",
        ];
        let c = ok(&flags, &env, file);
        assert_eq!(
            shown(&c.publish_allow),
            ["172.16.0.0/12", "127.0.0.1/32", "::1/128"]
        );
        assert_eq!(c.publish_signature, PublishSignature::Required);
        // An empty variable is unset; an empty file list allows everyone.
        let c = ok(&["-c", "f"], &[("PUSHPULL_PUBLISH_ALLOW", "")], file);
        assert_eq!(c.publish_allow.len(), 3);
        let c = ok(&["-c", "f"], &[], "publish_allow = []\n");
        assert!(c.publish_allow.is_empty());
    }

    /// spec/limits.md §2: a bad network or a required signature without a key is refused at
    /// load, naming the setting.
    #[test]
    fn bad_values_name_the_setting() {
        match load(
            &["-c", "f"],
            &[],
            "threads = 1\npublish_allow = [\"10.0.0.0/8\", \"nope\"]\n",
        ) {
            Err(e @ ConfigError::Parse { line: 2, .. }) => {
                assert!(e.to_string().contains("publish_allow"), "{e}");
            }
            other => panic!("expected a parse error on line 2, got {other:?}"),
        }
        match load(&["-c", "f"], &[], "publish_signature = \"sometimes\"\n") {
            Err(ConfigError::Parse { line: 1, .. }) => {}
            other => panic!("expected a parse error, got {other:?}"),
        }
        for (name, value) in [
            ("PUSHPULL_PUBLISH_ALLOW", "10.0.0.0/8,10.0.0.1/8"),
            ("PUSHPULL_PUBLISH_SIGNATURE", "yes"),
        ] {
            match load(&[], &[(name, value)], "") {
                Err(ConfigError::Env { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: expected an Env error, got {other:?}"),
            }
        }
        assert!(load(&["--publish-allow", "10.0.0.0/33"], &[], "").is_err());
        assert!(load(&["--publish-signature", "maybe"], &[], "").is_err());
        for (args, env) in [
            (&["--publish-signature", "required"][..], &[][..]),
            (
                &["--publish-signature", "required"][..],
                &[("PUSHPULL_SECURITY_KEY", "")][..],
            ),
        ] {
            match load(args, env, "") {
                Err(
                    e @ ConfigError::Invalid {
                        field: "publish_signature",
                        ..
                    },
                ) => assert!(e.to_string().contains("security_key"), "{e}"),
                other => panic!("expected Invalid(publish_signature), got {other:?}"),
            }
        }
        let c = ok(
            &["--publish-signature", "required", "--security-key", "k"],
            &[],
            "",
        );
        assert_eq!(c.publish_signature, PublishSignature::Required);
    }

    /// spec/README.md §6: `check-config` prints both settings, and its output loads back.
    #[test]
    fn printed_and_read_back() {
        let c = ok(
            &[
                "--publish-allow=10.0.0.0/8,::1",
                "--publish-signature=required",
            ],
            &[("PUSHPULL_SECURITY_KEY", "k")],
            "",
        );
        let text = c.to_toml();
        assert!(
            text.contains("publish_allow = [\"10.0.0.0/8\", \"::1/128\"]"),
            "{text}"
        );
        assert!(text.contains("publish_signature = \"required\""), "{text}");
        let back = ok(&["-c", "printed"], &[("PUSHPULL_SECURITY_KEY", "k")], &text);
        assert_eq!(back, c);
        let plain = Config::default().to_toml();
        assert!(plain.contains("publish_allow = []"), "{plain}");
        assert!(plain.contains("publish_signature = \"off\""), "{plain}");
        assert!(format!("{c:?}").contains("publish_allow"));
    }

    #[test]
    fn signature_mode_spellings() {
        assert_eq!(PublishSignature::parse("OFF"), Ok(PublishSignature::Off));
        assert_eq!(
            PublishSignature::parse(" required "),
            Ok(PublishSignature::Required)
        );
        assert!(PublishSignature::parse("yes").is_err());
        assert_eq!(PublishSignature::default().as_str(), "off");
    }
}
