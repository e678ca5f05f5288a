//! Suite "Last Messages": resuming from a message id over a WebSocket and a long-poll.

use super::*;

/// A user connected over a binary WebSocket gets the bodies A..F, published one by one by
/// trusted requests with expiry 120, alternately to its private channel (A, C, E) and its public
/// channel (B, D, F). Returns the user and the hex of the six ids, in order.
fn six_messages(srv: &TestServer) -> (User, Vec<String>) {
    let user = User::new();
    let mut ws = user.connect(srv, None);
    srv.wait_subscribers(&user.private, 1);
    for (i, body) in ["A", "B", "C", "D", "E", "F"].into_iter().enumerate() {
        let receiver = if i % 2 == 0 {
            pb_receiver(&user.private, true, vec![])
        } else {
            user.public_receiver()
        };
        let request = pb_publish(vec![pb_message(vec![receiver], body, 120, "unit_test")]);
        let r = trusted(srv, "?binaryMode=true", &request);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let got = receive(&mut ws, 6);
    let bodies: String = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, "ABCDEF");
    ws.send_frame(op::CLOSE, &1000u16.to_be_bytes(), true);
    ws.expect_close(WAIT);
    srv.wait_subscribers(&user.private, 0);
    (user, got.iter().map(|m| hex::encode(&m.id)).collect())
}

/// The bodies of every message of a `ResponseBatch`, joined.
fn joined(bytes: &[u8]) -> String {
    pb_messages(bytes).iter().map(|m| m.body.as_str()).collect()
}

/// spec/websocket.md §2, spec/history.md §3, spec/binary.md §1: a binary WebSocket on the same
/// token from `mid=<hex id of A>` gets, in its first frame, B..F from both channels merged in
/// order. Suite "Last Messages › Websocket › gets last messages".
#[test]
fn ws_resume_from_mid_replays_the_rest_in_one_frame() {
    let srv = keyed(|_| {});
    let (user, ids) = six_messages(&srv);
    let mut ws = user.connect(&srv, Some(&ids[0]));
    assert_eq!(joined(&ws.binary_frame(WAIT)), "BCDEF");
}

/// spec/longpoll.md §3, spec/history.md §3, spec/binary.md §1: a binary long-poll from
/// `mid=<hex id of A>` is answered `200` at once with B..F. Suite "Last Messages › Long Polling
/// › gets last messages".
#[test]
fn long_poll_resume_from_mid_replays_the_rest() {
    let srv = keyed(|_| {});
    let (user, ids) = six_messages(&srv);
    let path = format!(
        "/sub/?CHANNEL_ID={}&binaryMode=true&mid={}",
        user.token, ids[0]
    );
    let r = request(srv.sub, "GET", &path, &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(joined(&r.body), "BCDEF");
}

/// spec/longpoll.md §4: a binary long-poll without `mid` is not replayed anything; at the end
/// of the hold it is `304` with an empty body and `Last-Message-Id` naming F, the newest message
/// of its channels (F went to the public one). Suite "Last Messages › Long Polling › gets last
/// message on timeout".
#[test]
fn long_poll_timeout_names_the_newest_message() {
    let srv = keyed(|c| c.longpoll_hold = Duration::from_millis(300));
    let (user, ids) = six_messages(&srv);
    let path = format!("/sub/?CHANNEL_ID={}&binaryMode=true", user.token);
    let r = request(srv.sub, "GET", &path, &[], b"");
    assert_eq!(r.status, 304, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(r.header("Last-Message-Id"), Some(ids[5].as_str()));
}
