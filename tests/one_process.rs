//! One process per address (spec/README.md §4, §6): a second start on addresses that another
//! process serves exits with status 3 and says why, before it serves anything; a start right
//! after a stop works.

#[path = "common/binary.rs"]
mod binary_support;
mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Output, Stdio};

use binary_support::{Binary, command, free_addr, wait_exit};
use common::*;

/// Exit status of a start on an address in use (spec/README.md §6).
const EXIT_ADDR_IN_USE: i32 = 3;

/// Runs the binary on `sub` and `publ` and waits for it to exit by itself, at most [`WAIT`].
fn run_expecting_exit(sub: SocketAddr, publ: SocketAddr) -> Output {
    let mut child = command(sub, publ, &[])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pushpull");
    let Some(status) = wait_exit(&mut child, WAIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the second pushpull on {sub} and {publ} kept running");
    };
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_end(&mut stderr).expect("read stderr");
    }
    Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

/// Asserts that `out` is the refusal of `addr` (`kind`) held by `holder`.
fn assert_refused(out: &Output, addr: SocketAddr, kind: &str, holder: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_ADDR_IN_USE), "{stderr}");
    let expected = format!(
        "pushpull: cannot listen on {addr} ({kind}): address already in use by {holder} \
         (is pushpull already running?)"
    );
    assert!(
        stderr.contains(&expected),
        "want {expected:?} in {stderr:?}"
    );
}

/// `n` WebSocket subscribers of `ch` on `srv`, registered with its engine.
fn subscribe(srv: &Binary, ch: &str, subs: &mut Vec<Ws>, n: usize) {
    let before = subs.len() as u64;
    subs.extend((0..n).map(|_| Ws::connect(srv.sub, ch, None)));
    srv.wait_subscribers(ch, before + n as u64);
}

/// Whether a TCP socket in `TIME_WAIT` has the local port `port` (`/proc/net/tcp`, Linux).
fn time_wait_on(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st …; state 06 is TIME_WAIT.
        fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == "06"
    })
}

/// spec/README.md §6: a second pushpull on the addresses of a running one exits with status 3
/// and names the address; the first keeps every subscriber, also those that connect after the
/// second start (they would have been split between the two processes), and gets every message.
#[test]
fn second_start_on_the_same_addresses_is_refused_and_the_first_serves_all() {
    let first = Binary::start(&[]);
    let ch = channel();
    let mut subs = Vec::new();
    subscribe(&first, &ch, &mut subs, 10);

    let out = run_expecting_exit(first.sub, first.publ);
    assert_refused(&out, first.sub, "sub", "another pushpull process");

    // New connections after the refused start all reach the first process.
    subscribe(&first, &ch, &mut subs, 10);
    let mids: Vec<String> = (0..10).map(|n| first.publish(&ch, &body(n))).collect();
    for (i, ws) in subs.iter_mut().enumerate() {
        let got: Vec<String> = ws.messages(10, WAIT).into_iter().map(|m| m.mid).collect();
        assert_eq!(got, mids, "subscriber {i}");
    }
}

/// spec/README.md §6: an address held by a plain listener of another program (here a std
/// `TcpListener` of the test) makes the start fail with status 3, also when it is not the first
/// listener.
#[test]
fn address_of_a_foreign_plain_listener_is_refused() {
    let foreign = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let publ = foreign.local_addr().expect("addr");
    let sub = free_addr();
    let out = run_expecting_exit(sub, publ);
    assert_refused(&out, publ, "pub", "another process");
    // The foreign listener still has its address.
    std::net::TcpStream::connect(publ).expect("the foreign listener accepts");
}

/// spec/README.md §6: a foreign listener with `SO_REUSEPORT` (another program, or an older
/// pushpull), which the kernel would let the server's own `SO_REUSEPORT` sockets join, is found
/// too.
#[test]
fn address_of_a_foreign_reuseport_listener_is_refused() {
    use socket2::{Domain, Socket, Type};
    let sub = free_addr();
    let foreign = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    foreign.set_reuse_address(true).expect("SO_REUSEADDR");
    foreign.set_reuse_port(true).expect("SO_REUSEPORT");
    foreign.bind(&sub.into()).expect("bind");
    foreign.listen(16).expect("listen");
    let out = run_expecting_exit(sub, free_addr());
    assert_refused(&out, sub, "sub", "another process");
}

/// spec/README.md §6: a start right after a stop on the same addresses works, also with
/// connections of the stopped server in `TIME_WAIT` on both ports.
#[test]
fn start_right_after_a_stop_on_the_same_addresses() {
    let mut first = Binary::start(&[]);
    let (sub, publ) = (first.sub, first.publ);
    // The server closes these connections first (the client waits for its end of stream), so
    // their server sides enter TIME_WAIT.
    for addr in [sub, publ] {
        let mut c = Conn::connect(addr);
        c.send(&format_request(
            "GET",
            "/nowhere",
            &[("Connection", "close")],
            b"",
        ));
        let r = c.response();
        assert!(r.closes(), "{r:?}");
        assert!(c.closed_within(WAIT), "the server closes after its answer");
    }
    wait_until("TIME_WAIT on both ports", WAIT, || {
        time_wait_on(sub.port()) && time_wait_on(publ.port())
    });
    let status = first.terminate();
    assert!(status.success(), "{status}");
    drop(first);

    let second = Binary::start_on(sub, publ, &[]);
    let ch = channel();
    let mut subs = Vec::new();
    subscribe(&second, &ch, &mut subs, 2);
    let mid = second.publish(&ch, &body(0));
    for ws in &mut subs {
        let got = ws.messages(1, WAIT);
        assert_eq!(got[0].mid, mid);
    }
}
