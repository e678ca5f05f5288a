//! The process's file-descriptor limit (spec/limits.md, `DEFAULT_MAX_CONNECTIONS`): when it runs
//! out of descriptors before `max_connections`, the server keeps running and serving the
//! connections it has, and takes the waiting ones once descriptors are free again.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// The binary's descriptor limit in this test: room for its own files and a few dozen
/// connections.
const FD_LIMIT: usize = 48;

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Kills the child if the test fails before it is stopped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// spec/limits.md (`DEFAULT_MAX_CONNECTIONS`): at the descriptor limit, accepting fails (logged)
/// but nothing crashes: open connections keep working, and once descriptors are free again the
/// next connection attempt is served, and with it those that waited in the kernel's queue.
#[test]
fn descriptor_limit_is_not_a_crash() {
    descriptor_limit(false);
}

/// Connections that waited in the kernel's queue while descriptors ran out are served once
/// descriptors are free, without another connection attempt to wake the listener
/// (`ACCEPT_RETRY`).
#[test]
fn descriptor_limit_waiting_connections_served_when_free() {
    descriptor_limit(true);
}

/// Fills the server's descriptors with WebSockets, frees five, and checks that the waiting
/// connection is served: by itself (`unprompted`) or after a new connection attempt.
fn descriptor_limit(unprompted: bool) {
    let sub = free_addr();
    let publ = free_addr();
    let script = format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\"");
    let child = Command::new("sh")
        .env_clear()
        .args(["-c", &script, env!("CARGO_BIN_EXE_pushpull")])
        .args(["--threads", "1", "--log-level", "warn"])
        .arg(format!("--sub-listen={sub}"))
        .arg(format!("--pub-listen={publ}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pushpull under a descriptor limit");
    let mut guard = Guard(child);
    wait_until("the server to listen", WAIT, || {
        std::net::TcpStream::connect(sub).is_ok()
    });

    let ch = channel();
    let mut open: Vec<Ws> = Vec::new();
    // Connect until the server stops answering: it has run out of descriptors.
    let mut waiting = loop {
        assert!(open.len() < FD_LIMIT, "no descriptor limit reached");
        let mut c = Conn::connect(sub);
        c.send(&upgrade_request(&ws_path(&ch, None), "13"));
        match c.try_response(deadline(Duration::from_millis(500))) {
            Ok(r) => {
                assert_eq!(r.status, 101);
                open.push(Ws {
                    conn: c,
                    backlog: Vec::new(),
                });
            }
            Err(ReadEnd::Timeout) => break c,
            Err(ReadEnd::Closed) => panic!("closed after {} connections", open.len()),
        }
    };
    let served = open.len();
    assert!(served >= 10, "only {served} connections before the limit");
    assert!(
        guard.0.try_wait().expect("try_wait").is_none(),
        "the server exited at the descriptor limit"
    );
    // The open connections are still served.
    for ws in open.iter_mut().step_by(7) {
        ws.send_frame(op::PING, b"alive", true);
        let f = ws.frame();
        assert_eq!((f.opcode, f.payload.as_slice()), (op::PONG, &b"alive"[..]));
    }
    // Free some descriptors: the waiting connection is taken and answered.
    open.truncate(served - 5);
    if !unprompted {
        let mut next = Conn::connect(sub);
        next.send(&upgrade_request(&ws_path(&ch, None), "13"));
        assert_eq!(
            next.response().status,
            101,
            "the next connection was not served"
        );
        open.push(Ws {
            conn: next,
            backlog: Vec::new(),
        });
    }
    let r = waiting.response();
    assert_eq!(r.status, 101, "the waiting connection was not served");
    open.push(Ws {
        conn: waiting,
        backlog: Vec::new(),
    });
    // Everything works again: a publish reaches every subscriber.
    let mid = mid_of(&publish_raw(publ, &ch, body(1).as_bytes(), None));
    for ws in &mut open {
        assert_eq!(ws.messages(1, WAIT)[0].mid, mid);
    }
    let _ = guard.0.kill();
    let out = guard.0.wait_with_output_stderr();
    assert!(out.contains("accept failed"), "no accept warning: {out}");
    eprintln!("{served} connections under a limit of {FD_LIMIT} descriptors");
}

/// Reading the child's standard error after it ended.
trait StderrText {
    fn wait_with_output_stderr(&mut self) -> String;
}

impl StderrText for Child {
    fn wait_with_output_stderr(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut text = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        text
    }
}
