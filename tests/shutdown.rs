//! The `pushpull` binary: graceful stop on SIGTERM and `check-config` (spec/README.md §5).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_pushpull");

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// The binary with an empty environment (no stray `PUSHPULL_*`).
fn pushpull() -> Command {
    let mut c = Command::new(BIN);
    c.env_clear();
    c
}

/// Kills the child if a test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_exit(child: &mut Child, d: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// spec/README.md §5, spec/websocket.md §6, spec/longpoll.md §4: on SIGTERM WebSockets get close
/// 1001, held polls their 304, and the process exits 0 within 5 s.
#[test]
fn sigterm_closes_clients_and_exits_zero() {
    let (sub, publ) = (free_addr(), free_addr());
    let child = pushpull()
        .args([
            "--sub-listen",
            &sub.to_string(),
            "--pub-listen",
            &publ.to_string(),
        ])
        .args([
            "--threads",
            "2",
            "--longpoll-hold",
            "30s",
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pushpull");
    let mut guard = Guard(child);
    wait_until("the binary listens", WAIT, || {
        std::net::TcpStream::connect(publ).is_ok()
    });

    let ch = channel();
    let mut ws = Ws::connect(sub, &ch, None);
    let mut held = start_poll(sub, &ch, None);
    wait_until("2 subscribers", WAIT, || subscribers_at(publ, &ch) == 2);

    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &guard.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());

    let (code, _) = ws.expect_close(WAIT);
    assert_eq!(code, Some(1001));
    let r = held.response();
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Expires"), Some(EXPIRES_1973));
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "clients told after {:?}",
        signalled.elapsed()
    );

    let status = wait_exit(&mut guard.0, Duration::from_secs(5)).expect("exits within 5 s");
    assert!(status.success(), "exit status {status:?}");
    eprintln!(
        "exited {:?} after SIGTERM (clients kept their sockets open)",
        signalled.elapsed()
    );
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert!(
        std::net::TcpStream::connect(sub).is_err(),
        "no longer listening"
    );
}

/// spec/README.md §5: when the clients answer the close (WebSocket close echoed, poll socket
/// closed after its 304), the process does not wait for the grace time.
#[test]
fn sigterm_with_polite_clients_exits_quickly() {
    let (sub, publ) = (free_addr(), free_addr());
    let child = pushpull()
        .args([
            "--sub-listen",
            &sub.to_string(),
            "--pub-listen",
            &publ.to_string(),
        ])
        .args(["--threads", "2", "--longpoll-hold", "30s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pushpull");
    let mut guard = Guard(child);
    wait_until("the binary listens", WAIT, || {
        std::net::TcpStream::connect(publ).is_ok()
    });
    let ch = channel();
    let mut ws = Ws::connect(sub, &ch, None);
    let mut held = start_poll(sub, &ch, None);
    wait_until("2 subscribers", WAIT, || subscribers_at(publ, &ch) == 2);

    let signalled = Instant::now();
    Command::new("kill")
        .args(["-TERM", &guard.0.id().to_string()])
        .status()
        .expect("kill");
    let (code, _) = ws.expect_close(WAIT);
    assert_eq!(code, Some(1001));
    ws.send_frame(op::CLOSE, &1001u16.to_be_bytes(), true);
    assert_eq!(held.response().status, 304);
    drop(held);
    assert!(ws.conn.closed_within(WAIT));
    drop(ws);
    let status = wait_exit(&mut guard.0, Duration::from_secs(5)).expect("exits within 5 s");
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        signalled.elapsed()
    );
}

/// spec/README.md §5: an idle server stops at once on SIGTERM.
#[test]
fn sigterm_idle_server_exits_quickly() {
    let (sub, publ) = (free_addr(), free_addr());
    let child = pushpull()
        .args([
            "--sub-listen",
            &sub.to_string(),
            "--pub-listen",
            &publ.to_string(),
            "--threads",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pushpull");
    let mut guard = Guard(child);
    wait_until("the binary listens", WAIT, || {
        std::net::TcpStream::connect(sub).is_ok()
    });
    let signalled = Instant::now();
    Command::new("kill")
        .args(["-TERM", &guard.0.id().to_string()])
        .status()
        .expect("kill");
    let status = wait_exit(&mut guard.0, Duration::from_secs(5)).expect("exits within 5 s");
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "took {:?}",
        signalled.elapsed()
    );
}

/// spec/README.md: `check-config` prints the effective configuration and exits 0, with the key
/// redacted.
#[test]
fn check_config_prints_effective_config() {
    let out = pushpull()
        .args([
            "check-config",
            "--threads",
            "3",
            "--sub-listen",
            "127.0.0.1:18010",
        ])
        .args(["--longpoll-hold", "500ms", "--security-key", "s3cr3t-value"])
        .output()
        .expect("run check-config");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(text.contains("threads = 3"), "{text}");
    assert!(text.contains("127.0.0.1:18010"), "{text}");
    assert!(text.contains("500ms"), "{text}");
    assert!(!text.contains("s3cr3t-value"), "key printed: {text}");
    // The output is TOML.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("max_payload = ")),
        "{text}"
    );

    // The environment is a source too, below the flags.
    let out = pushpull()
        .env("PUSHPULL_THREADS", "5")
        .env("PUSHPULL_MAX_CONNECTIONS", "777")
        .args(["check-config", "--threads", "2"])
        .output()
        .expect("run check-config");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(text.contains("threads = 2"), "{text}");
    assert!(text.contains("max_connections = 777"), "{text}");
}

/// spec/README.md: a bad configuration file is refused with its line number and a non-zero exit.
#[test]
fn bad_config_file_names_the_line() {
    let dir = std::env::temp_dir().join(format!("pushpull-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "threads = 2\nlongpoll_hold = \"40s\"\nno_such_setting = 1\n",
    )
    .expect("write");
    let out = pushpull()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run check-config");
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":3:"), "line 3 named: {err}");
    assert!(err.contains("no_such_setting"), "{err}");

    std::fs::write(&path, "threads = 2\n\nlongpoll_hold = \"forty\"\n").expect("write");
    let out = pushpull()
        .args(["--config"])
        .arg(&path)
        .arg("check-config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":3:"), "line 3 named: {err}");

    // The server itself refuses to start with it.
    let out = pushpull()
        .args(["--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(!out.status.success());

    // A valid file is accepted.
    std::fs::write(&path, "threads = 2\nlongpoll_hold = \"25s\"\n").expect("write");
    let out = pushpull()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("longpoll_hold = 25"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh temporary directory for config files.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pushpull-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// spec/limits.md §2: configurations that break a rule are refused with exit status 2 and the
/// setting named.
#[test]
fn config_rules_refused_with_setting_named() {
    let dir = temp_dir("rules");
    let cases = [
        ("threads = 0\n", "threads"),
        ("threads = 257\n", "threads"),
        ("max_payload = 1000\n", "max_payload"),
        (
            "max_payload = 65536\nout_queue_bytes = 4096\n",
            "out_queue_bytes",
        ),
        (
            "max_payload = 65536\nhistory_max_bytes = 4096\n",
            "history_max_bytes",
        ),
        ("longpoll_hold = 0\n", "longpoll_hold"),
        ("ws_ping_interval = \"25h\"\n", "ws_ping_interval"),
        ("message_ttl = 0\n", "message_ttl"),
        ("channel_history = 0\n", "channel_history"),
        ("max_channels_per_request = 0\n", "max_channels_per_request"),
        ("log_level = \"loud\"\n", "log_level"),
        ("threads = 4\nmax_connections = 2\n", "max_connections"),
        (
            "[[listener]]\nkind = \"sub\"\naddr = \"127.0.0.1:18001\"\n[[listener]]\nkind = \"pub\"\naddr = \"127.0.0.1:18001\"\n",
            "listener",
        ),
        (
            "[[listener]]\nkind = \"pub\"\naddr = \"127.0.0.1:18002\"\n",
            "listener",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let path = dir.join(format!("c{i}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = pushpull()
            .arg("check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{text:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{text:?} should name {field}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// spec/limits.md §2: the redacted key printed by `check-config` is refused as a key, so a
/// printed configuration cannot be fed back with its secret lost.
#[test]
fn redacted_key_placeholder_refused() {
    let out = pushpull()
        .args(["check-config", "--security-key", "abc"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("UTF-8");
    let line = printed
        .lines()
        .find(|l| l.starts_with("security_key"))
        .expect("security_key line");
    let dir = temp_dir("redacted");
    let path = dir.join("c.toml");
    std::fs::write(&path, format!("{line}\n")).expect("write");
    let out = pushpull()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("security_key"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// spec/README.md, spec/limits.md: the output of `check-config` (without a key) is a valid
/// configuration file that prints the same again.
#[test]
fn check_config_output_round_trips() {
    let out = pushpull()
        .args([
            "check-config",
            "--threads",
            "3",
            "--longpoll-hold",
            "1500ms",
            "--sub-listen",
            "127.0.0.1:18005",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let first = String::from_utf8(out.stdout).expect("UTF-8");
    let dir = temp_dir("roundtrip");
    let path = dir.join("c.toml");
    std::fs::write(&path, &first).expect("write");
    let out = pushpull()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).expect("UTF-8"), first);
    let _ = std::fs::remove_dir_all(&dir);
}
