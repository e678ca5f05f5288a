//! Channel tokens and their signatures (spec/channels.md).
//!
//! A subscriber names its channels as `CHANNEL_ID=<token>/<token>/…`; a token is
//! `<private hex>[:<public hex>][.<hex signature>]`. The signature is the hex HMAC (SHA-1 by
//! default, SHA-256 selectable) of the text before the dot, keyed with the security key shared with
//! the Bitrix PHP module. Public receivers are signed over `public:<public hex>`.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use crate::config::SignatureAlgo;
use crate::message::{Channel, ChannelId};

/// Why a channel list was refused. Maps to the reference's `<code>: <reason>` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// A token is malformed or its signature is missing or wrong (4010).
    WrongChannelId,
    /// The list is empty (4017).
    NoChannels,
    /// More channels than the configured maximum (4018).
    TooManyChannels,
}

impl ChannelError {
    /// The reference's numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::WrongChannelId => 4010,
            Self::NoChannels => 4017,
            Self::TooManyChannels => 4018,
        }
    }

    /// The reference's reason text.
    pub fn reason(self) -> &'static str {
        match self {
            Self::WrongChannelId => "Wrong Channel Id.",
            Self::NoChannels => "No channels found.",
            Self::TooManyChannels => "Request exceeded the maximum number of channels.",
        }
    }
}

/// A subscriber's validated channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// Every receiver the connection listens on: each private id and each public id, deduplicated.
    pub channels: Vec<Channel>,
    /// The public id of the first token that carries one: the connection's identity when it
    /// publishes to other public channels.
    pub own_public: Option<ChannelId>,
    /// The private channels of the tokens that carry a public part: they count against
    /// `max_conn_per_channel` (spec/binary.md §5).
    pub capped: Vec<Channel>,
}

/// Checks tokens against the configured security key.
#[derive(Clone)]
pub struct Signer {
    key: Option<Vec<u8>>,
    algo: SignatureAlgo,
}

impl Signer {
    /// A signer for `key` (`None` or empty: signatures are neither required nor checked on
    /// private-only tokens, and tokens with a public part are refused).
    pub fn new(key: Option<&str>, algo: SignatureAlgo) -> Self {
        let key = key.filter(|k| !k.is_empty()).map(|k| k.as_bytes().to_vec());
        Self { key, algo }
    }

    /// Whether a key is configured.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Hex signature of `data` (used by tests and tools; empty without a key).
    pub fn sign(&self, data: &[u8]) -> String {
        match &self.key {
            Some(key) => hex::encode(mac(self.algo, key, data)),
            None => String::new(),
        }
    }

    /// Parses a subscriber's `CHANNEL_ID` value (spec/channels.md §2). Any bad token refuses the
    /// whole list.
    pub fn subscription(&self, list: &[u8], max: usize) -> Result<Subscription, ChannelError> {
        let mut channels = Vec::new();
        let mut own_public = None;
        let mut capped = Vec::new();
        let mut tokens = 0usize;
        for token in list.split(|&b| b == b'/').filter(|t| !t.is_empty()) {
            tokens += 1;
            if tokens > max {
                return Err(ChannelError::TooManyChannels);
            }
            let parsed = parse_token(token).ok_or(ChannelError::WrongChannelId)?;
            self.check_subscriber(&parsed, token)?;
            push_unique(&mut channels, Channel::private(parsed.private));
            if let Some(public) = parsed.public {
                push_unique(&mut channels, Channel::public(public));
                push_unique(&mut capped, Channel::private(parsed.private));
                own_public.get_or_insert(public);
            }
        }
        // No token at all is a wrong channel list, as in the reference (spec/channels.md §2):
        // clients reload their configuration on 4010.
        if channels.is_empty() {
            return Err(ChannelError::WrongChannelId);
        }
        Ok(Subscription {
            channels,
            own_public,
            capped,
        })
    }

    /// Parses a publisher's `CHANNEL_ID` value (spec/publishing.md §2): bare private ids are
    /// accepted; a signed token must carry a valid signature; a `private:public` token names its
    /// private channel. Invalid tokens are skipped, as the reference does; the caller answers
    /// 4017 when nothing valid remains.
    pub fn publish_targets(&self, list: &[u8], max: usize) -> Result<Vec<Channel>, ChannelError> {
        let mut channels = Vec::new();
        for token in list.split(|&b| b == b'/').filter(|t| !t.is_empty()) {
            let Some(parsed) = parse_token(token) else {
                continue;
            };
            if parsed.signature.is_some() && self.check_subscriber(&parsed, token).is_err() {
                continue;
            }
            push_unique(&mut channels, Channel::private(parsed.private));
            if channels.len() > max {
                return Err(ChannelError::TooManyChannels);
            }
        }
        if channels.is_empty() {
            return Err(ChannelError::NoChannels);
        }
        Ok(channels)
    }

    /// Whether `signature` (raw bytes) is the signature of public channel `id`
    /// (HMAC of `public:<hex id>`, spec/channels.md §3).
    pub fn public_signature_valid(&self, id: ChannelId, signature: &[u8]) -> bool {
        let Some(key) = &self.key else {
            return false;
        };
        let data = format!("public:{}", id.to_hex());
        verify(self.algo, key, data.as_bytes(), signature)
    }

    /// Whether `signature` (lower-case hex, as the PHP module writes it) is the HMAC of `data`,
    /// compared in constant time: the request signature of a publisher (spec/publishing.md §7).
    /// Always false without a key.
    pub fn request_signature_valid(&self, data: &[u8], signature: &[u8]) -> bool {
        let Some(key) = &self.key else {
            return false;
        };
        match decode_hex(signature) {
            Some(raw) => verify(self.algo, key, data, &raw),
            None => false,
        }
    }

    fn check_subscriber(&self, parsed: &Token<'_>, token: &[u8]) -> Result<(), ChannelError> {
        let Some(key) = &self.key else {
            // No key: unsigned private ids are accepted; public parts cannot be trusted.
            return match parsed.public {
                Some(_) => Err(ChannelError::WrongChannelId),
                None => Ok(()),
            };
        };
        let signature = parsed.signature.ok_or(ChannelError::WrongChannelId)?;
        let signed = &token[..parsed.signed_len];
        let raw = decode_hex(signature).ok_or(ChannelError::WrongChannelId)?;
        if verify(self.algo, key, signed, &raw) {
            Ok(())
        } else {
            Err(ChannelError::WrongChannelId)
        }
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .field("algo", &self.algo)
            .finish()
    }
}

/// One parsed token.
struct Token<'a> {
    private: ChannelId,
    public: Option<ChannelId>,
    /// Hex signature, when present.
    signature: Option<&'a [u8]>,
    /// Length of the signed prefix (`private` or `private:public`).
    signed_len: usize,
}

/// `<32 hex>[:<32 hex>][.<hex>]`, lower-case hex only.
fn parse_token(token: &[u8]) -> Option<Token<'_>> {
    let (ids, signature) = match token.iter().position(|&b| b == b'.') {
        Some(dot) => (&token[..dot], Some(&token[dot + 1..])),
        None => (token, None),
    };
    if let Some(sig) = signature {
        // Between a SHA-1 (40) and a SHA-512 (128) hex digest, as the newer reference accepts.
        if !(40..=128).contains(&sig.len()) || sig.len() % 2 != 0 {
            return None;
        }
    }
    let (private, public) = match ids.len() {
        32 => (ChannelId::from_hex(ids)?, None),
        65 if ids[32] == b':' => (
            ChannelId::from_hex(&ids[..32])?,
            Some(ChannelId::from_hex(&ids[33..])?),
        ),
        _ => return None,
    };
    Some(Token {
        private,
        public,
        signature,
        signed_len: ids.len(),
    })
}

fn push_unique(channels: &mut Vec<Channel>, channel: Channel) {
    if !channels.contains(&channel) {
        channels.push(channel);
    }
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.iter().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(hex).ok()
}

fn mac(algo: SignatureAlgo, key: &[u8], data: &[u8]) -> Vec<u8> {
    match algo {
        SignatureAlgo::Sha1 => {
            let mut m =
                <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        SignatureAlgo::Sha256 => {
            let mut m =
                <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// Constant-time comparison of `signature` with the MAC of `data`.
fn verify(algo: SignatureAlgo, key: &[u8], data: &[u8], signature: &[u8]) -> bool {
    match algo {
        SignatureAlgo::Sha1 => match <Hmac<Sha1> as Mac>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.verify_slice(signature).is_ok()
            }
            Err(_) => false,
        },
        SignatureAlgo::Sha256 => match <Hmac<Sha256> as Mac>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.verify_slice(signature).is_ok()
            }
            Err(_) => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIV: &str = "0123456789abcdef0123456789abcdef";
    const PUB: &str = "fedcba9876543210fedcba9876543210";

    fn signer() -> Signer {
        Signer::new(Some("secret"), SignatureAlgo::Sha1)
    }

    /// spec/publishing.md §7: a request signature is the lower-case hex HMAC of the data.
    #[test]
    fn request_signatures() {
        let s = signer();
        let body = br#"{"module_id":"im"}"#;
        let sig = s.sign(body);
        assert!(s.request_signature_valid(body, sig.as_bytes()));
        assert!(!s.request_signature_valid(b"other", sig.as_bytes()));
        assert!(!s.request_signature_valid(body, sig.to_uppercase().as_bytes()));
        assert!(!s.request_signature_valid(body, &sig.as_bytes()[..38]));
        assert!(!s.request_signature_valid(body, b""));
        assert!(!s.request_signature_valid(body, b"zz"));
        let unkeyed = Signer::new(None, SignatureAlgo::Sha1);
        assert!(!unkeyed.request_signature_valid(body, sig.as_bytes()));
        // The empty string has a signature too (a GET without CHANNEL_ID).
        assert!(s.request_signature_valid(b"", s.sign(b"").as_bytes()));
    }

    /// spec/channels.md §2: a known HMAC-SHA1 value.
    #[test]
    fn sha1_signature_known_value() {
        // hash_hmac('sha1', '0123456789abcdef0123456789abcdef', 'secret') in PHP.
        let sig = signer().sign(PRIV.as_bytes());
        assert_eq!(sig, "491e10b57e6d7e4d2c5b52bf36b41ac7c9c9794d");
        let token = format!("{PRIV}.{sig}");
        let sub = signer().subscription(token.as_bytes(), 100).unwrap();
        assert_eq!(
            sub.channels,
            vec![Channel::private(
                ChannelId::from_hex(PRIV.as_bytes()).unwrap()
            )]
        );
    }

    #[test]
    fn sha256_is_selectable() {
        let s = Signer::new(Some("k"), SignatureAlgo::Sha256);
        let token = format!("{PRIV}.{}", s.sign(PRIV.as_bytes()));
        assert!(s.subscription(token.as_bytes(), 100).is_ok());
        assert_eq!(
            signer().subscription(token.as_bytes(), 100),
            Err(ChannelError::WrongChannelId)
        );
    }

    /// spec/channels.md §2: with a key, missing or wrong signatures are refused (4010).
    #[test]
    fn key_requires_signatures() {
        let s = signer();
        assert_eq!(
            s.subscription(PRIV.as_bytes(), 100),
            Err(ChannelError::WrongChannelId)
        );
        let bad = format!("{PRIV}.{}", "0".repeat(40));
        assert_eq!(
            s.subscription(bad.as_bytes(), 100),
            Err(ChannelError::WrongChannelId)
        );
        let good = format!("{PRIV}.{}", s.sign(PRIV.as_bytes()));
        let list = format!("{good}/{bad}");
        assert_eq!(
            s.subscription(list.as_bytes(), 100),
            Err(ChannelError::WrongChannelId)
        );
    }

    /// spec/channels.md §2: without a key unsigned private ids pass, public parts do not.
    #[test]
    fn no_key_accepts_unsigned_private() {
        let s = Signer::new(None, SignatureAlgo::Sha1);
        assert!(s.subscription(PRIV.as_bytes(), 100).is_ok());
        let with_public = format!("{PRIV}:{PUB}");
        assert_eq!(
            s.subscription(with_public.as_bytes(), 100),
            Err(ChannelError::WrongChannelId)
        );
    }

    #[test]
    fn public_part_registers_both() {
        let s = signer();
        let signed = format!("{PRIV}:{PUB}");
        let token = format!("{signed}.{}", s.sign(signed.as_bytes()));
        let sub = s.subscription(token.as_bytes(), 100).unwrap();
        let public = ChannelId::from_hex(PUB.as_bytes()).unwrap();
        assert_eq!(sub.channels.len(), 2);
        assert_eq!(sub.own_public, Some(public));
        let sig = hex::decode(s.sign(format!("public:{PUB}").as_bytes())).unwrap();
        assert!(s.public_signature_valid(public, &sig));
        assert!(!s.public_signature_valid(public, &sig[1..]));
    }

    #[test]
    fn list_limits_and_empty() {
        let s = Signer::new(None, SignatureAlgo::Sha1);
        assert_eq!(s.subscription(b"", 100), Err(ChannelError::WrongChannelId));
        assert_eq!(
            s.subscription(b"//", 100),
            Err(ChannelError::WrongChannelId)
        );
        let three = format!("{PRIV}/{PUB}/{}", "a".repeat(32));
        assert_eq!(
            s.subscription(three.as_bytes(), 2),
            Err(ChannelError::TooManyChannels)
        );
        assert_eq!(
            s.subscription(three.as_bytes(), 3).unwrap().channels.len(),
            3
        );
        let upper = PRIV.to_uppercase();
        assert_eq!(
            s.subscription(upper.as_bytes(), 3),
            Err(ChannelError::WrongChannelId)
        );
    }

    /// spec/publishing.md §2: publishers may name bare ids; invalid tokens are skipped.
    #[test]
    fn publish_targets_skip_invalid() {
        let s = signer();
        let list = format!("{PRIV}/nothex/{PUB}/{PRIV}");
        let targets = s.publish_targets(list.as_bytes(), 100).unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(s.publish_targets(b"zz", 100), Err(ChannelError::NoChannels));
        let bad_sig = format!("{PRIV}.{}", "0".repeat(40));
        assert_eq!(
            s.publish_targets(bad_sig.as_bytes(), 100),
            Err(ChannelError::NoChannels)
        );
    }
}
