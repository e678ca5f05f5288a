//! Channel tokens and signatures, end to end (spec/channels.md).

mod common;

use std::time::Duration;

use common::*;
use pushpull::config::SignatureAlgo;

const HOLD: Duration = Duration::from_millis(200);
const PRIV: &str = "0123456789abcdef0123456789abcdef";
const PUB: &str = "fedcba9876543210fedcba9876543210";

/// A long-poll with a short hold: 304 when the list is accepted, else the 400 body.
fn check(srv: &TestServer, list: &str) -> Result<(), String> {
    let r = poll(srv.sub, list, None);
    match r.status {
        304 => Ok(()),
        400 => Err(r.text()),
        s => panic!("status {s} for {list}: {}", r.text()),
    }
}

/// spec/channels.md §2: the example tokens of the spec (key `secret`, SHA-1) are accepted, as the
/// PHP module signs them.
#[test]
fn spec_example_tokens_sha1() {
    let srv = start(|c| {
        c.security_key = Some("secret".into());
        c.longpoll_hold = HOLD;
    });
    assert_eq!(
        check(
            &srv,
            &format!("{PRIV}.491e10b57e6d7e4d2c5b52bf36b41ac7c9c9794d")
        ),
        Ok(())
    );
    assert_eq!(
        check(
            &srv,
            &format!("{PRIV}:{PUB}.883e209935036834ee11e9cc38a18c81fc5ee5aa")
        ),
        Ok(())
    );
    // One digit off, upper case, truncated, or the SHA-256 one: refused.
    let wrong = "4010: Wrong Channel Id.".to_owned();
    for sig in [
        "491e10b57e6d7e4d2c5b52bf36b41ac7c9c9794e",
        "491E10B57E6D7E4D2C5B52BF36B41AC7C9C9794D",
        "491e10b57e6d7e4d2c5b52bf36b41ac7c9c979",
        "4048002ec5ff2ec0ea0d5a8cc577d5542744d62cdfb71f677645c382ec3373f8",
    ] {
        assert_eq!(
            check(&srv, &format!("{PRIV}.{sig}")),
            Err(wrong.clone()),
            "{sig}"
        );
    }
}

/// spec/channels.md §2: with `signature_algo = sha256` the SHA-256 signature is the valid one.
#[test]
fn spec_example_token_sha256() {
    let srv = start(|c| {
        c.security_key = Some("secret".into());
        c.signature_algo = SignatureAlgo::Sha256;
        c.longpoll_hold = HOLD;
    });
    let sha256 = "4048002ec5ff2ec0ea0d5a8cc577d5542744d62cdfb71f677645c382ec3373f8";
    assert_eq!(check(&srv, &format!("{PRIV}.{sha256}")), Ok(()));
    assert!(
        check(
            &srv,
            &format!("{PRIV}.491e10b57e6d7e4d2c5b52bf36b41ac7c9c9794d")
        )
        .is_err()
    );
}

/// spec/channels.md §1, §2: the token grammar: lower-case hex ids only, a signature of 40 to 128
/// bytes (even); a malformed token is 4010 with or without a key.
#[test]
fn token_grammar() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let wrong = Err("4010: Wrong Channel Id.".to_owned());
    assert_eq!(check(&srv, &PRIV.to_uppercase()), wrong);
    assert_eq!(check(&srv, &PRIV[..31]), wrong);
    assert_eq!(check(&srv, &format!("{PRIV}0")), wrong);
    assert_eq!(
        check(&srv, &format!("{PRIV}.{}", "a".repeat(39))),
        wrong,
        "39-byte signature"
    );
    assert_eq!(
        check(&srv, &format!("{PRIV}.{}", "a".repeat(130))),
        wrong,
        "130-byte signature"
    );
    assert_eq!(
        check(&srv, &format!("{PRIV}.{}", "a".repeat(41))),
        wrong,
        "odd length"
    );
    // Without a key a private-only token's signature is not checked, whatever its bytes.
    assert_eq!(check(&srv, &format!("{PRIV}.{}", "z".repeat(40))), Ok(()));
    assert_eq!(check(&srv, &format!("{PRIV}.{}", "a".repeat(128))), Ok(()));
    // Without a key a public part is refused, signed or not.
    assert_eq!(check(&srv, &format!("{PRIV}:{PUB}")), wrong);
    assert_eq!(
        check(
            &srv,
            &format!("{PRIV}:{PUB}.883e209935036834ee11e9cc38a18c81fc5ee5aa")
        ),
        wrong
    );
    // Empty elements are skipped.
    assert_eq!(check(&srv, &format!("/{PRIV}//{PUB}/")), Ok(()));
}

/// spec/channels.md §2: checks run left to right: a bad token before the 101st gives 4010, the
/// 101st token gives 4018.
#[test]
fn list_checks_in_order() {
    let srv = start(|c| {
        c.security_key = Some(KEY.into());
        c.longpoll_hold = HOLD;
    });
    let mut list: Vec<String> = (0..101).map(|_| sign(KEY, &channel())).collect();
    assert!(
        check(&srv, &list.join("/"))
            .unwrap_err()
            .starts_with("4018:")
    );
    list[50] = channel();
    assert_eq!(
        check(&srv, &list.join("/")),
        Err("4010: Wrong Channel Id.".into())
    );
    // 100 `private:public` tokens are fine (200 channels).
    let pairs: Vec<String> = (0..100)
        .map(|_| sign(KEY, &format!("{}:{}", channel(), channel())))
        .collect();
    assert_eq!(check(&srv, &pairs.join("/")), Ok(()));
}

/// spec/channels.md §1: a subscriber with `private:public` listens on both ids, and the same
/// bytes as a private and as a public id are different channels.
#[test]
fn private_and_public_ids_are_distinct_channels() {
    let srv = start(|c| c.security_key = Some(KEY.into()));
    let (a, b) = (channel(), channel());
    // Subscriber 1 holds b as its public id; subscriber 2 holds b as a private id.
    let mut s1 = Ws::connect(srv.sub, &sign(KEY, &format!("{a}:{b}")), None);
    let mut s2 = Ws::connect(srv.sub, &sign(KEY, &b), None);
    srv.wait_subscribers(&a, 1);
    srv.wait_subscribers(&b, 1);
    // Publishing to b (always a private channel for the back end) reaches only subscriber 2.
    let mid = srv.publish(&b, &body(1), None);
    assert_eq!(s2.messages(1, WAIT)[0].mid, mid);
    s1.expect_no_message(Duration::from_millis(200));
}

/// spec/README.md §2, spec/channels.md §2: `CHANNEL_ID` is percent-decoded before it is split,
/// and the first occurrence of a parameter wins.
#[test]
fn channel_list_percent_decoded_first_wins() {
    let srv = start(|c| c.longpoll_hold = HOLD);
    let (a, b) = (channel(), channel());
    let mut held = start_poll(srv.sub, &format!("{a}%2F{b}&CHANNEL_ID=junk"), None);
    srv.wait_subscribers(&b, 1);
    assert_eq!(srv.subscribers(&[&a]), [1]);
    let mid = srv.publish(&b, &body(1), None);
    let r = held.response();
    assert_eq!(parse_messages(&r.body)[0].mid, mid);
    let r = poll(srv.sub, &format!("junk&CHANNEL_ID={a}"), None);
    assert_eq!(r.status, 400, "the first CHANNEL_ID counts");
}
