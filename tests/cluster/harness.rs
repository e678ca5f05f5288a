//! Processes of the cluster tests: a `redis-server` (tests/common/redis.rs), pushpull node
//! processes (the built binary) and an haproxy in front, each a child of the test, stopped by
//! its own pid only. Their logs go to files in one temporary directory, printed when the test
//! fails.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{self, HttpError};
use crate::common::KEY;
use crate::redis_support::{RedisServer, pattern_subscribers};

/// The documented configuration; the test configuration is derived from it.
const EXAMPLE: &str = include_str!("../../haproxy.cluster.example.cfg");
/// Where Debian installs haproxy.
const HAPROXY_PATHS: [&str; 2] = ["/usr/sbin/haproxy", "/usr/bin/haproxy"];
/// How long a node or haproxy may take to come up.
pub const START_WAIT: Duration = Duration::from_secs(10);
/// How long a node may take to exit after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Attempts at starting a node on free ports (a probed port may be taken in between).
const PORT_ATTEMPTS: usize = 5;
/// Worker threads per node: three nodes share a small machine with the test.
const NODE_THREADS: &str = "1";
/// Health-check pace of the test haproxy, replacing the example's: a dead node is marked down
/// within about a second.
const TEST_CHECKS: &str = "default-server inter 300ms fall 2 rise 1";

/// Set (to anything) to keep the logs of passing tests too; their directory is printed.
pub const KEEP_LOGS_ENV: &str = "PUSHPULL_CLUSTER_KEEP_LOGS";

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// Whether a missing tool must fail the test.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The haproxy binary, or `None` (with the reason printed) outside CI.
pub fn find_haproxy() -> Option<PathBuf> {
    if let Some(p) = HAPROXY_PATHS.iter().map(Path::new).find(|p| p.is_file()) {
        return Some(p.to_path_buf());
    }
    let why = format!(
        "haproxy not found at {HAPROXY_PATHS:?} (Debian: apt-get install -y \
         --no-install-recommends haproxy)"
    );
    assert!(
        !under_ci(),
        "{why}: the cluster tests cannot be skipped under CI=true"
    );
    eprintln!("SKIPPED: {why}");
    None
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
    l.local_addr().expect("probe address").port()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Sends `signal` to `pid` with kill(1): only ever a pid this test started.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Reaps `child` within `d`; `false` if it still runs.
fn wait_exit(child: &mut Child, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if !matches!(child.try_wait(), Ok(None)) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM, then SIGKILL if the child has not exited within [`STOP_WAIT`]; always reaped.
fn terminate(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        signal(child.id(), "TERM");
        if !wait_exit(child, STOP_WAIT) {
            signal(child.id(), "KILL");
        }
    }
    let _ = child.wait();
}

/// A pushpull node process on the shared Redis.
pub struct Node {
    /// Its name in reports and logs.
    pub name: String,
    child: Child,
    /// Subscriber listener.
    pub sub: SocketAddr,
    /// Publisher listener.
    pub publ: SocketAddr,
    log: PathBuf,
}

impl Node {
    /// Starts a node with `--storage redis` on `redis` (sharded over `redis` and `shards` when
    /// there are any); returns once it listens and has subscribed to `pushserver:*`.
    fn start(
        name: &str,
        redis: &RedisServer,
        shards: &[RedisServer],
        dir: &Path,
        hold: Duration,
    ) -> Self {
        let bin = env!("CARGO_BIN_EXE_pushpull");
        let mut last = String::new();
        for attempt in 0..PORT_ATTEMPTS {
            let (sub, publ) = (loopback(free_port()), loopback(free_port()));
            let log = dir.join(format!("{name}-{attempt}.log"));
            let out = fs::File::create(&log).expect("create the node log");
            let before = pattern_subscribers(redis);
            let mut cmd = Command::new(bin);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("PUSHPULL_") {
                    cmd.env_remove(k);
                }
            }
            let hold_ms = format!("{}ms", hold.as_millis());
            let child = cmd
                .args(["run", "--storage", "redis", "--redis"])
                .arg(
                    std::iter::once(redis)
                        .chain(shards)
                        .map(|r| r.addr().to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                )
                .arg("--sub-listen")
                .arg(sub.to_string())
                .arg("--pub-listen")
                .arg(publ.to_string())
                .args(["--threads", NODE_THREADS, "--security-key", KEY])
                .args(["--longpoll-hold", &hold_ms, "--log-level", "info"])
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone the log file"))
                .stderr(out)
                .spawn()
                .expect("spawn pushpull");
            let mut node = Self {
                name: name.to_owned(),
                child,
                sub,
                publ,
                log,
            };
            match node.wait_ready(redis, before) {
                Ok(()) => return node,
                Err(e) => {
                    last = format!("{e}\n{}", node.log());
                    terminate(&mut node.child);
                }
            }
        }
        panic!("node {name} did not start: {last}");
    }

    /// Waits until both listeners answer and a new `pushserver:*` subscriber appeared.
    fn wait_ready(&mut self, redis: &RedisServer, before: i64) -> Result<(), String> {
        let end = Instant::now() + START_WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited at start: {status}"));
            }
            let listening = TcpStream::connect_timeout(&self.sub, Duration::from_millis(200))
                .is_ok()
                && self.try_stats().is_ok();
            if listening && pattern_subscribers(redis) > before {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(format!("not ready within {START_WAIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it as a crash would (SIGKILL to its pid) and reaps it.
    pub fn kill_hard(&mut self) {
        signal(self.child.id(), "KILL");
        let _ = self.child.wait();
    }

    fn try_stats(&self) -> Result<Value, HttpError> {
        let r = client::request(self.publ, "GET", "/server-stat/", &[], b"")?;
        if r.status != 200 {
            return Err(HttpError::Status(r.status));
        }
        let v: Value = serde_json::from_slice(&r.body).map_err(|_| HttpError::Malformed)?;
        v.as_array()
            .and_then(|a| a.first())
            .cloned()
            .ok_or(HttpError::Malformed)
    }

    /// This node's own `/server-stat/` object.
    pub fn stats(&self) -> Value {
        self.try_stats()
            .unwrap_or_else(|e| panic!("{}: /server-stat/: {e:?}", self.name))
    }

    /// A number of its own `/server-stat/` object.
    pub fn stat(&self, key: &str) -> u64 {
        self.stats()[key].as_u64().unwrap_or(0)
    }

    /// Connections of this node registered on `channel` (`GET /bitrix/pub/?CHANNEL_ID=`).
    pub fn subscribers(&self, channel: &str) -> u64 {
        let path = format!("/bitrix/pub/?CHANNEL_ID={channel}");
        let r = client::request(self.publ, "GET", &path, &[], b"")
            .unwrap_or_else(|e| panic!("{}: channel info: {e:?}", self.name));
        assert_eq!(r.status, 200, "{}: channel info {}", self.name, r.text());
        let v: Value = serde_json::from_slice(&r.body).expect("channel info is JSON");
        v["infos"]
            .as_array()
            .and_then(|infos| infos.iter().find(|i| i["channel"] == channel))
            .and_then(|i| i["subscribers"].as_u64())
            .unwrap_or(0)
    }

    /// Its log (stderr and stdout).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Replaces the single occurrence of `from`: the example and the test must not drift apart.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "haproxy.cluster.example.cfg must contain {from:?} exactly once"
    );
    text.replacen(from, to, 1)
}

/// The example with the nodes' addresses, the frontends on `sub` and `publ`, logs on stderr,
/// lower connection limits and a faster health-check pace.
pub fn derived_config(nodes: &[Node], sub: SocketAddr, publ: SocketAddr) -> String {
    let mut text = replace_once(
        EXAMPLE,
        "log /dev/log local0",
        "log stderr format raw local0",
    );
    // A test needs a few hundred connections; the example's limits may exceed the open-file
    // limit of the machine running the tests.
    text = replace_once(&text, "maxconn 20000", "maxconn 2000");
    text = replace_once(&text, "maxconn 10000", "maxconn 1000");
    text = replace_once(&text, "bind :8010", &format!("bind {sub}"));
    text = replace_once(&text, "bind 10.0.0.10:9010", &format!("bind {publ}"));
    text = replace_once(&text, "default-server inter 2s fall 3 rise 2", TEST_CHECKS);
    for (i, node) in nodes.iter().enumerate() {
        let host = format!("10.0.0.1{}", i + 1);
        text = replace_once(&text, &format!(" {host}:8010 "), &format!(" {} ", node.sub));
        text = replace_once(
            &text,
            &format!(" {host}:9010 "),
            &format!(" {} ", node.publ),
        );
    }
    text
}

/// haproxy running the derived configuration in the foreground (`-db`).
pub struct Haproxy {
    child: Child,
    /// The subscribers' frontend.
    pub sub: SocketAddr,
    /// The publishers' frontend.
    pub publ: SocketAddr,
    log: PathBuf,
}

impl Haproxy {
    fn start(bin: &Path, nodes: &[Node], dir: &Path) -> Self {
        let mut last = String::new();
        for attempt in 0..PORT_ATTEMPTS {
            let (sub, publ) = (loopback(free_port()), loopback(free_port()));
            let cfg = dir.join(format!("haproxy-{attempt}.cfg"));
            fs::write(&cfg, derived_config(nodes, sub, publ)).expect("write haproxy.cfg");
            let check = Command::new(bin)
                .arg("-c")
                .arg("-f")
                .arg(&cfg)
                .output()
                .expect("run haproxy -c");
            assert!(
                check.status.success(),
                "haproxy -c rejects the derived configuration:\n{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
            let log = dir.join(format!("haproxy-{attempt}.log"));
            let out = fs::File::create(&log).expect("create the haproxy log");
            let child = Command::new(bin)
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone the log file"))
                .stderr(out)
                .spawn()
                .expect("spawn haproxy");
            let mut h = Self {
                child,
                sub,
                publ,
                log,
            };
            let end = Instant::now() + START_WAIT;
            let connects = |a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok();
            loop {
                if let Ok(Some(status)) = h.child.try_wait() {
                    last = format!("exited at start ({status}): {}", h.log());
                    break;
                }
                if connects(sub) && connects(publ) {
                    return h;
                }
                if Instant::now() >= end {
                    last = format!("not listening within {START_WAIT:?}: {}", h.log());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            terminate(&mut h.child);
        }
        panic!("haproxy did not start: {last}");
    }

    /// Its log: its own warnings (server state changes) and the request log.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Redis, three nodes and haproxy; everything stopped when dropped, and every log printed if
/// the test is failing.
pub struct Cluster {
    /// haproxy in front (dropped first).
    pub haproxy: Haproxy,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The shared Redis (dropped last).
    pub redis: RedisServer,
    /// Further Redis servers when sharded (spec/cluster.md §9).
    pub shards: Vec<RedisServer>,
    dir: PathBuf,
}

impl Cluster {
    /// Starts Redis, `n` nodes with long-poll hold `hold`, and haproxy; `None` (skipped) when
    /// redis-server or haproxy is missing outside CI.
    /// With `servers` > 1, the channels are sharded over that many Redis servers.
    pub fn start_sharded(n: usize, hold: Duration, servers: usize) -> Option<Self> {
        let haproxy_bin = find_haproxy()?;
        // Durable, as a production Redis: a restart keeps what was acknowledged.
        let redis = RedisServer::start_durable()?;
        let shards = (1..servers)
            .map(|_| RedisServer::start_durable())
            .collect::<Option<Vec<_>>>()?;
        let k = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pushpull-cluster-{}-{k}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the log directory");
        let nodes: Vec<Node> = (1..=n)
            .map(|i| Node::start(&format!("node{i}"), &redis, &shards, &dir, hold))
            .collect();
        let haproxy = Haproxy::start(&haproxy_bin, &nodes, &dir);
        Some(Self {
            haproxy,
            nodes,
            redis,
            shards,
            dir,
        })
    }

    /// Every log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = format!("logs in {}\n", self.dir.display());
        for node in &self.nodes {
            out += &format!(
                "----- {} (pid {}, sub {}, pub {})\n{}",
                node.name,
                node.pid(),
                node.sub,
                node.publ,
                node.log()
            );
        }
        out += &format!("----- haproxy\n{}", self.haproxy.log());
        out += &format!("----- redis\n{}", self.redis.log());
        for (i, shard) in self.shards.iter().enumerate() {
            out += &format!("----- redis shard {}\n{}", i + 1, shard.log());
        }
        out
    }

    /// Waits until every channel of `markers` is online: each is listened on by one subscriber
    /// only, and a node marks a channel online in Redis after registering its subscriber, so
    /// the subscriber then gets every message published (spec/cluster.md §6). Any node answers
    /// from the marks; `node` is the one asked.
    pub fn wait_registered(&self, node: usize, markers: &[String]) {
        let end = Instant::now() + START_WAIT;
        for m in markers {
            while self.nodes[node].subscribers(m) == 0 {
                assert!(
                    Instant::now() < end,
                    "subscriber with marker {m} never registered"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== cluster test failed; {}", self.logs());
        } else if std::env::var_os(KEEP_LOGS_ENV).is_some() {
            eprintln!("{KEEP_LOGS_ENV}: logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
