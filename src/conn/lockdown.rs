//! Publisher lock-down (spec/publishing.md §7): the `publish_allow` check of the peer address,
//! the `publish_signature` check of `?signature=`, and their `403` answers. Both apply to the
//! publisher routes (`/pub/`, `/bitrix/pub/`, `/server-stat/`); the browser routes carry their
//! own signed tokens (spec/binary.md §4).

use std::net::IpAddr;
use std::time::Instant;

use super::{Cx, Session, respond};
use crate::config::{PublishSignature, publish_allowed};
use crate::proto::http::{Persistence, query_param};

/// Why a publisher request is refused with `403`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The peer is outside `publish_allow`.
    Address(IpAddr),
    /// Signatures are required and the query has no `signature`, or an empty one.
    NoSignature,
    /// `signature` is not the HMAC of the signed data.
    WrongSignature,
}

impl Refusal {
    /// The reason after `403: ` (spec/errors.md §1).
    fn reason(self) -> String {
        match self {
            Self::Address(ip) => {
                format!("Forbidden. {} is not in publish_allow.", ip.to_canonical())
            }
            Self::NoSignature => "Forbidden. The request has no signature.".to_owned(),
            Self::WrongSignature => "Forbidden. The request signature is wrong.".to_owned(),
        }
    }
}

/// Whether the session's peer may use the publisher routes.
pub(super) fn check_peer(s: &Session, cx: &Cx<'_>) -> Result<(), Refusal> {
    if publish_allowed(&cx.shared.config.publish_allow, s.peer) {
        Ok(())
    } else {
        Err(Refusal::Address(s.peer))
    }
}

/// Checks the `signature` query parameter of a publisher request against `data`, when
/// `publish_signature = "required"`.
pub(super) fn check_signature(query: &str, data: &[u8], cx: &Cx<'_>) -> Result<(), Refusal> {
    if cx.shared.config.publish_signature == PublishSignature::Off {
        return Ok(());
    }
    let signature = query_param(query, "signature").unwrap_or_default();
    if signature.is_empty() {
        return Err(Refusal::NoSignature);
    }
    if cx.shared.signer.request_signature_valid(data, &signature) {
        Ok(())
    } else {
        Err(Refusal::WrongSignature)
    }
}

/// The data a `GET` on a publisher route signs: the percent-decoded `CHANNEL_ID` value, as the
/// reference checks it for channel information, or the empty string without one.
pub(super) fn get_signed_data(query: &str) -> Vec<u8> {
    query_param(query, "CHANNEL_ID").unwrap_or_default()
}

/// Answers `403` and ends the request. An address refusal closes the connection: the peer has
/// no business here, and a publish body it announced is not read.
pub(super) fn forbid(s: &mut Session, why: Refusal, p: Persistence, now: Instant, cx: &mut Cx<'_>) {
    let p = match why {
        Refusal::Address(_) => Persistence::Close,
        Refusal::NoSignature | Refusal::WrongSignature => p,
    };
    respond::error(&mut s.out, 403, 403, &why.reason(), p);
    s.finish_request(p, now, cx);
}
