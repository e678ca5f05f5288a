//! A private `redis-server` for the Redis-engine tests (spec/cluster.md): started as a child
//! process on a free loopback port with persistence off and its own temporary directory, so
//! tests running in parallel never share a Redis. Stopped (killed and reaped) and its directory
//! removed when dropped.
//!
//! Below the server: helpers for the Node push-server's key layout and pub/sub messages.
//!
//! Include it from a test file with `#[path = "common/redis.rs"] mod redis_support;`.
//! Without a `redis-server` binary, [`RedisServer::start`] prints why and returns `None` so the
//! tests skip, except under `CI=true`, where a missing binary is a failure.
#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use pushpull::config::{RedisConfig, Storage};
use pushpull::message::MessageId;
use pushpull::proto::pb;

/// How long a started `redis-server` may take to answer `PING`.
pub const REDIS_START_WAIT: Duration = Duration::from_secs(10);
/// Connect and read timeout of the clients handed out by [`RedisServer::client`]: a stuck Redis
/// fails a test instead of hanging it.
pub const REDIS_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at finding a free port: the port is probed by binding it, then released for
/// `redis-server`, so another process may take it in between.
const PORT_ATTEMPTS: usize = 5;
/// Environment variable naming the `redis-server` binary to use instead of a search.
pub const REDIS_SERVER_ENV: &str = "PUSHPULL_REDIS_SERVER";

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A `redis-server` child process owned by one test.
pub struct RedisServer {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    durability: Durability,
    /// TLS port and PEM files (certificate, key, CA) when started with [`Self::start_tls`].
    tls: Option<(u16, [PathBuf; 3])>,
}

/// Whether the test Redis keeps its data across a restart.
#[derive(Clone, Copy, Debug)]
enum Durability {
    /// No persistence: a restart starts empty.
    Volatile,
    /// Append-only file, fsync on every write.
    Aof,
}

/// Each channel signed with the tests' [`crate::common::KEY`], joined with `/`.
pub fn token(channels: &[&str]) -> String {
    channels
        .iter()
        .map(|c| crate::common::sign(crate::common::KEY, c))
        .collect::<Vec<_>>()
        .join("/")
}

/// A text WebSocket on `srv` listening on `channels`, registered with the node's engine: it
/// also listens on a marker channel no other connection uses, and the node reporting the marker
/// as listened on proves the subscription was processed.
pub fn ws_on(srv: &crate::common::TestServer, channels: &[&str]) -> crate::common::Ws {
    let marker = crate::common::channel();
    let mut all = channels.to_vec();
    all.push(&marker);
    let ws = crate::common::Ws::connect(srv.sub, &token(&all), None);
    srv.wait_subscribers(&marker, 1);
    ws
}

/// The `redis-server` binary: `$PUSHPULL_REDIS_SERVER`, the first on `PATH`, or
/// `/usr/bin/redis-server`.
pub fn find_redis_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(REDIS_SERVER_ENV) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from("/usr/bin/redis-server");
        p.is_file().then_some(p)
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
    l.local_addr().expect("probe address").port()
}

impl RedisServer {
    /// Starts a fresh `redis-server` on a free port and waits until it answers `PING`.
    /// `None` (with the reason printed) when there is no `redis-server`, unless `CI=true`.
    pub fn start() -> Option<Self> {
        Self::start_with(Durability::Volatile)
    }

    /// Like [`Self::start`], with an append-only file synced on every write, so a restart
    /// (even after a kill) keeps every acknowledged write, as a production Redis with AOF does.
    pub fn start_durable() -> Option<Self> {
        Self::start_with(Durability::Aof)
    }

    /// Like [`Self::start`], also listening with TLS on [`Self::tls_port`] with the given PEM
    /// certificate chain and key (client certificates not required); the plain port stays open
    /// for the test's own checks.
    pub fn start_tls(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Option<Self> {
        Self::start_inner(Durability::Volatile, Some([cert_pem, key_pem, ca_pem]))
    }

    /// The TLS port (after [`Self::start_tls`]).
    pub fn tls_port(&self) -> u16 {
        self.tls
            .as_ref()
            .map(|(port, _)| *port)
            .expect("started with TLS")
    }

    fn start_with(durability: Durability) -> Option<Self> {
        Self::start_inner(durability, None)
    }

    fn start_inner(durability: Durability, tls: Option<[&str; 3]>) -> Option<Self> {
        let Some(bin) = find_redis_server() else {
            let why = format!(
                "redis-server not found (searched ${REDIS_SERVER_ENV}, PATH, \
                 /usr/bin/redis-server): install Redis (e.g. apt-get install redis-server)"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}; the Redis tests cannot be skipped under CI=true");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        };
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("pushpull-redis-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the Redis directory");
        let tls = tls.map(|pems| {
            let files = ["server.crt", "server.key", "ca.crt"].map(|name| dir.join(name));
            for (file, pem) in files.iter().zip(pems) {
                fs::write(file, pem).expect("write a TLS file");
            }
            (0, files)
        });
        let mut server = Self {
            port: 0,
            bin,
            dir,
            child: None,
            durability,
            tls,
        };
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port();
            if let Some((port, _)) = &mut server.tls {
                *port = free_port();
            }
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// Starts the child on `self.port` and waits for `PING`; on failure the child is reaped.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join("redis.log");
        let out = fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.bin);
        if let Some((port, [cert, key, ca])) = &self.tls {
            command
                .arg("--tls-port")
                .arg(port.to_string())
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"]);
        }
        let child = command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--save", "", "--daemonize", "no"])
            .args(match self.durability {
                Durability::Volatile => &["--appendonly", "no"][..],
                Durability::Aof => &["--appendonly", "yes", "--appendfsync", "always"][..],
            })
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let end = Instant::now() + REDIS_START_WAIT;
        loop {
            if self.ping().is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= end {
                self.kill();
                return Err(format!(
                    "port {} ({}): {}",
                    self.port,
                    exited.map_or("no PING answer in time".to_owned(), |s| s.to_string()),
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> redis::RedisResult<()> {
        let mut c = self.try_client()?;
        let pong: String = redis::cmd("PING").query(&mut c)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "unexpected PING answer",
                pong,
            )))
        }
    }

    fn try_client(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        let c = client.get_connection_with_timeout(REDIS_CLIENT_TIMEOUT)?;
        c.set_read_timeout(Some(REDIS_CLIENT_TIMEOUT))?;
        c.set_write_timeout(Some(REDIS_CLIENT_TIMEOUT))?;
        Ok(c)
    }

    /// A new connection to this Redis (database 0) with [`REDIS_CLIENT_TIMEOUT`] on reads and
    /// writes.
    pub fn client(&self) -> redis::Connection {
        self.try_client()
            .unwrap_or_else(|e| panic!("connect to the test Redis on port {}: {e}", self.port))
    }

    /// The pushpull settings that reach this Redis.
    pub fn config(&self) -> RedisConfig {
        loopback_redis(self.port)
    }

    /// `Storage::Redis` with [`Self::config`].
    pub fn storage(&self) -> Storage {
        Storage::Redis(self.config())
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether the child process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server (as a crash would: no shutdown, no save) and waits until it has exited
    /// and its port refuses connections. Its data is lost (persistence is off).
    pub fn stop(&mut self) {
        self.kill();
        let end = Instant::now() + REDIS_START_WAIT;
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(100)).is_ok() {
            assert!(
                Instant::now() < end,
                "port {} still accepts after redis-server was killed",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port (empty unless started durable) after
    /// [`Self::stop`]; a running server is stopped first. Panics if it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        let end = Instant::now() + REDIS_START_WAIT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The port may linger briefly after the kill; retry until the deadline.
                Err(e) => assert!(Instant::now() < end, "redis-server did not restart: {e}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes Redis hold every client's commands for `d` (`CLIENT PAUSE <ms> ALL`), as a stalled
    /// server would; returns at once.
    pub fn pause(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut c = self.client();
        let () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("ALL")
            .query(&mut c)
            .expect("CLIENT PAUSE");
    }

    /// Its temporary directory (`--dir`), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log so far (its stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

// ---------------------------------------------------------------------------------------------
// The Node push-server's layout (spec/cluster.md §1): binary-safe keys and small commands

/// A channel only the tests publish on, to count the pattern subscribers of `pushserver:*`.
pub const PROBE_CHANNEL: &str = "pushserver:test-probe";

/// Clients subscribed to a pattern matching `pushserver:*`: the receiver count of an empty
/// `NotificationBatch` published to [`PROBE_CHANNEL`] (nodes must ignore it).
pub fn pattern_subscribers(redis: &RedisServer) -> i64 {
    let empty = pb::NotificationBatch::default().encode_to_vec();
    redis::cmd("PUBLISH")
        .arg(PROBE_CHANNEL)
        .arg(empty)
        .query(&mut redis.client())
        .expect("PUBLISH probe")
}

/// The 13 raw bytes of a 26-digit `mid`.
pub fn id_bytes(mid: &str) -> Vec<u8> {
    MessageId::parse(mid.as_bytes())
        .unwrap_or_else(|| panic!("bad mid {mid}"))
        .0
        .to_vec()
}

/// `prefix` followed by raw bytes.
pub fn key(prefix: &str, raw: &[u8]) -> Vec<u8> {
    [prefix.as_bytes(), raw].concat()
}

/// `prefix` followed by the 16 raw bytes of a 32-digit hex channel id.
pub fn channel_key(prefix: &str, hex_id: &str) -> Vec<u8> {
    key(prefix, &hex::decode(hex_id).expect("channel id is hex"))
}

/// `message:<13 id bytes>` of a 26-digit `mid`.
pub fn message_key(mid: &str) -> Vec<u8> {
    key("message:", &id_bytes(mid))
}

/// `channel:messages:<16 bytes>`: the stored ids of a private channel.
pub fn private_set(ch: &str) -> Vec<u8> {
    channel_key("channel:messages:", ch)
}

/// `pubchannel:messages:<16 bytes>`: the stored ids of a public channel.
pub fn public_set(ch: &str) -> Vec<u8> {
    channel_key("pubchannel:messages:", ch)
}

/// `GET`.
pub fn get(c: &mut redis::Connection, k: &[u8]) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(k).query(c).expect("GET")
}

/// `TTL` in seconds (-2: no key, -1: no expiry).
pub fn ttl(c: &mut redis::Connection, k: &[u8]) -> i64 {
    redis::cmd("TTL").arg(k).query(c).expect("TTL")
}

/// `EXISTS`.
pub fn exists(c: &mut redis::Connection, k: &[u8]) -> bool {
    redis::cmd("EXISTS").arg(k).query::<i64>(c).expect("EXISTS") == 1
}

/// `TYPE`.
pub fn key_type(c: &mut redis::Connection, k: &[u8]) -> String {
    redis::cmd("TYPE").arg(k).query(c).expect("TYPE")
}

/// Members of a sorted set, in order.
pub fn members(c: &mut redis::Connection, k: &[u8]) -> Vec<Vec<u8>> {
    redis::cmd("ZRANGE")
        .arg(k)
        .arg(0)
        .arg(-1)
        .query(c)
        .expect("ZRANGE")
}

/// `ZSCORE`.
pub fn score(c: &mut redis::Connection, k: &[u8], member: &[u8]) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg(k)
        .arg(member)
        .query(c)
        .expect("ZSCORE")
}

/// An `OutgoingMessage` from the back end, as the Node push-server stores and announces it.
pub fn node_message(id: MessageId, body: &str, expiry: u32) -> pb::OutgoingMessage {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    pb::OutgoingMessage {
        id: id.0.to_vec(),
        body: body.to_owned(),
        expiry,
        created: u32::try_from(now).unwrap_or(u32::MAX),
        sender: Some(pb::SenderPb {
            r#type: pb::SenderType::Backend as i32,
            id: Vec::new(),
        }),
    }
}

/// Writes a message as the Node push-server does: `message:<id>` = `value` for 60 s (skipped
/// when `None`, as an expired message) and the id (score 0) in the sorted set `set`.
pub fn write_node_message(
    c: &mut redis::Connection,
    set: &[u8],
    id: MessageId,
    value: Option<Vec<u8>>,
) {
    if let Some(value) = value {
        let () = redis::cmd("SET")
            .arg(key("message:", &id.0))
            .arg(value)
            .arg("EX")
            .arg(60)
            .query(c)
            .expect("SET message");
    }
    let _: i64 = redis::cmd("ZADD")
        .arg(set)
        .arg(0)
        .arg(&id.0[..])
        .query(c)
        .expect("ZADD");
}

/// Reads the next announcement on a `pushserver:*` subscription, skipping [`PROBE_CHANNEL`]:
/// its channel name and decoded `NotificationBatch`.
pub fn next_announcement(ps: &mut redis::PubSub<'_>) -> (String, pb::NotificationBatch) {
    loop {
        let msg = ps.get_message().expect("an announcement on pushserver:*");
        let name = msg.get_channel_name().to_owned();
        if name == PROBE_CHANNEL {
            continue;
        }
        let batch = pb::NotificationBatch::decode(msg.get_payload_bytes())
            .expect("the payload is a protobuf NotificationBatch");
        return (name, batch);
    }
}

/// The `IPCMessage`s of a batch.
pub fn ipc_messages(batch: pb::NotificationBatch) -> Vec<pb::IpcMessage> {
    batch
        .notifications
        .into_iter()
        .flat_map(|n| match n.command {
            Some(pb::notification::Command::IpcMessages(m)) => m.messages,
            None => panic!("a notification without ipcMessages"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A relay in front of a Redis that can hold back subscriptions

/// How long the relay's upstream connect may take.
const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A TCP relay on its own loopback port in front of a Redis: it forwards every connection's
/// bytes both ways, and while [`Self::hold_subscribes`] is on it stalls each connection at the
/// first bytes that name a `SUBSCRIBE` command (`SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE`),
/// forwarding nothing of that connection until [`Self::release_subscribes`]. Other connections
/// (a node's engine connection) flow on, so a test can make a node's publishes succeed while
/// its pub/sub stream is not yet subscribed, with the real Redis, and no sleep. A connection
/// whose upstream connect fails (Redis down) is closed at once. Stopped when dropped.
pub struct RedisRelay {
    /// The relay's port on 127.0.0.1.
    pub port: u16,
    gate: std::sync::Arc<RelayGate>,
}

/// The relay's shared state.
#[derive(Default)]
struct RelayGate {
    state: std::sync::Mutex<GateState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct GateState {
    holding: bool,
    stopped: bool,
    /// Connections stalled at a subscription so far.
    held: usize,
    /// Every socket of the relay (to shut them down on drop).
    sockets: Vec<TcpStream>,
}

impl RelayGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RedisRelay {
    /// A relay to `upstream`, forwarding everything.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let gate = std::sync::Arc::new(RelayGate::default());
        let g = gate.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if g.lock().stopped {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect_timeout(&upstream, RELAY_CONNECT_TIMEOUT)
                else {
                    continue; // Redis down: the client's connection is closed
                };
                relay_pair(&g, client, server);
            }
        });
        Self { port, gate }
    }

    /// From now on, stall every connection at its subscription.
    pub fn hold_subscribes(&self) {
        self.gate.lock().holding = true;
    }

    /// Lets the stalled subscriptions, and every later one, through.
    pub fn release_subscribes(&self) {
        self.gate.lock().holding = false;
        self.gate.changed.notify_all();
    }

    /// Connections stalled at a subscription so far.
    pub fn held(&self) -> usize {
        self.gate.lock().held
    }

    /// The pushpull settings that reach the Redis through this relay.
    pub fn config(&self) -> RedisConfig {
        loopback_redis(self.port)
    }

    /// `Storage::Redis` with [`Self::config`].
    pub fn storage(&self) -> Storage {
        Storage::Redis(self.config())
    }
}

impl Drop for RedisRelay {
    fn drop(&mut self) {
        let sockets = {
            let mut state = self.gate.lock();
            state.stopped = true;
            state.holding = false;
            std::mem::take(&mut state.sockets)
        };
        self.gate.changed.notify_all();
        for socket in sockets {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        // Wakes the accept loop, which then sees `stopped`.
        let _ = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port)));
    }
}

/// Whether `bytes` contain `SUBSCRIBE` in any case (also the tail of `PSUBSCRIBE`).
fn names_subscribe(bytes: &[u8]) -> bool {
    bytes
        .windows(9)
        .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
}

/// Starts the two pumps of one relayed connection.
fn relay_pair(gate: &std::sync::Arc<RelayGate>, client: TcpStream, server: TcpStream) {
    let clones = (client.try_clone(), server.try_clone());
    let (Ok(client_out), Ok(server_in)) = clones else {
        return;
    };
    {
        let mut state = gate.lock();
        if state.stopped {
            return;
        }
        for s in [&client, &server] {
            if let Ok(s) = s.try_clone() {
                state.sockets.push(s);
            }
        }
    }
    // Server to client: plain copy.
    std::thread::spawn(move || {
        let (mut from, mut to) = (server_in, client_out);
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
    // Client to server: stalls at a subscription while the gate holds.
    let gate = gate.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut from, mut to) = (client, server);
        let mut buf = vec![0u8; 16 * 1024];
        // The last bytes forwarded, so a command name split between two reads is seen.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut seen = std::mem::take(&mut tail);
            seen.extend_from_slice(&buf[..n]);
            if names_subscribe(&seen) {
                let mut state = gate.lock();
                if state.holding {
                    state.held += 1;
                }
                while state.holding && !state.stopped {
                    state = gate.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                if state.stopped {
                    break;
                }
            }
            tail = seen[seen.len().saturating_sub(8)..].to_vec();
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// pushpull's settings for a Redis on `127.0.0.1:port`.
fn loopback_redis(port: u16) -> RedisConfig {
    RedisConfig {
        host: "127.0.0.1".to_owned(),
        port,
        ..RedisConfig::default()
    }
}
