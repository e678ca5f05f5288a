//! The `pushpull` binary as a child process on free loopback ports, for tests that need the
//! server in its own process: its own descriptor limit, its own memory figures. Killed and
//! reaped when dropped.
//!
//! Include it from a test file after `mod common;` with
//! `#[path = "common/binary.rs"] mod binary_support;`.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{WAIT, mid_of, publish_raw, request, wait_until};

/// A running `pushpull` binary.
pub struct Binary {
    child: Child,
    /// Subscriber listener.
    pub sub: SocketAddr,
    /// Publisher listener.
    pub publ: SocketAddr,
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// The binary's command line on `sub` and `publ`: [`crate::common::test_threads`] cores, quiet
/// logs, no online window after a channel's last connection left (so subscriber counts are
/// live, as in [`crate::common::test_config`]) and the `PUSHPULL_*` settings of `env` (and
/// nothing else from the environment).
pub fn command(sub: SocketAddr, publ: SocketAddr, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushpull"));
    command
        .env_clear()
        .env("PUSHPULL_ONLINE_TTL", "1ms")
        .env("PUSHPULL_ONLINE_DELTA", "0")
        .envs(env.iter().copied())
        .arg(format!("--threads={}", crate::common::test_threads()))
        .args(["--log-level", "warn"])
        .arg(format!("--sub-listen={sub}"))
        .arg(format!("--pub-listen={publ}"))
        .stdout(Stdio::null());
    command
}

/// Waits until `child` exits, at most `d`; `None` if it still runs.
pub fn wait_exit(child: &mut Child, d: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + d;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Binary {
    /// Starts the binary (see [`command`]) on free loopback ports.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_on(free_addr(), free_addr(), env)
    }

    /// Starts the binary (see [`command`]) on `sub` and `publ`; panics if it exits before both
    /// listen.
    pub fn start_on(sub: SocketAddr, publ: SocketAddr, env: &[(&str, &str)]) -> Self {
        let child = command(sub, publ, env).spawn().expect("start pushpull");
        let mut srv = Self { child, sub, publ };
        wait_until("the server to listen", WAIT, || {
            if let Some(status) = srv.child.try_wait().expect("try_wait") {
                panic!("pushpull exited before listening: {status}");
            }
            TcpStream::connect(srv.publ).is_ok() && TcpStream::connect(srv.sub).is_ok()
        });
        srv
    }

    /// Sends SIGTERM and waits for the exit (spec/README.md §5: within 5 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM: {sent}");
        wait_exit(&mut self.child, Duration::from_secs(6)).expect("exits within 5 s of SIGTERM")
    }

    /// The process object of `/server-stat/`.
    pub fn stats(&self) -> Value {
        let r = request(self.publ, "GET", "/server-stat/", &[], b"");
        assert_eq!(r.status, 200, "server-stat: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).expect("server-stat JSON");
        v[0].clone()
    }

    /// Open connections of the server.
    pub fn connections(&self) -> u64 {
        self.stats()["connections"].as_u64().expect("connections")
    }

    /// Sum of a per-core counter of `/server-stat/`.
    pub fn core_sum(&self, name: &str) -> u64 {
        self.stats()["cores"]
            .as_array()
            .expect("cores")
            .iter()
            .map(|c| c[name].as_u64().unwrap_or(0))
            .sum()
    }

    /// Waits until `channel` has `n` subscribers.
    pub fn wait_subscribers(&self, channel: &str, n: u64) {
        let path = format!("/bitrix/pub/?CHANNEL_ID={channel}");
        wait_until("the subscribers", WAIT, || {
            let r = request(self.publ, "GET", &path, &[], b"");
            let v: Value = serde_json::from_slice(&r.body).expect("channel info JSON");
            v["infos"][0]["subscribers"].as_u64() == Some(n)
        });
    }

    /// Publishes `body` to `channel`; returns the message id.
    pub fn publish(&self, channel: &str, body: &str) -> String {
        let r = publish_raw(self.publ, channel, body.as_bytes(), None);
        assert_eq!(r.status, 200, "publish: {}", r.text());
        mid_of(&r)
    }

    /// The server's resident memory in KiB (`VmRSS` of `/proc/<pid>/status`), on Linux.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// The server's peak resident memory since it started, in KiB (`VmHWM`), on Linux.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
