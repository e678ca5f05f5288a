//! Listening sockets, and one process per address.
//!
//! Every core binds each listener address itself with `SO_REUSEPORT`, so the kernel spreads new
//! connections over the cores by a hash of the connection. But `SO_REUSEPORT` lets any process
//! of the same user join the group: a second pushpull started on the same address (a double
//! start, a manual start beside the service) would start silently and take a share of the new
//! connections. So before binding, the server claims each address:
//!
//! ```text
//!   claim(addr) ─▶ lock: bind the abstract unix socket "\0pushpull:<addr>"   held: another pushpull
//!               ─▶ probe: bind a TCP socket WITHOUT SO_REUSEPORT to addr     EADDRINUSE: another process
//!               ─▶ Claim ─bind(cores)─▶ one SO_REUSEPORT listener per core, the lock kept with them
//! ```
//!
//! Port 0 skips both steps before binding: the kernel picks a port nobody uses; the lock is then
//! taken on the port it picked.
//!
//! Kernel rules this relies on (Linux, each checked on Linux 6.18 with small experiments):
//!
//! * A bind to an address that another process of the same user listens on with `SO_REUSEPORT`
//!   succeeds if the new socket has `SO_REUSEPORT` too (the silent double start), and fails
//!   with `EADDRINUSE` if it has only `SO_REUSEADDR` (the probe). The probe also fails against a
//!   plain listener (no `SO_REUSEPORT`), against a `SO_REUSEPORT` listener of another user, and
//!   against a listener on the wildcard address of the same port (`0.0.0.0:P` for a probe of
//!   `127.0.0.1:P`), which `SO_REUSEPORT` binds would also have joined.
//! * `SO_REUSEADDR` (set on the probe and on the listeners) lets both bind while connections of a
//!   stopped server on the port are in `TIME_WAIT`, or still open without their listener: a
//!   restart right after a stop works. Without it the bind fails with `EADDRINUSE`.
//! * Sockets that are bound but not listening do not exclude each other when all have
//!   `SO_REUSEADDR`: two processes starting at the same instant could both pass the probe.
//!   That is what the lock is for: a bind to a name in the abstract unix namespace fails with
//!   `EADDRINUSE` while any socket holds the name, and the name is free again as soon as that
//!   socket is closed, also when its process is killed (no file to clean up). The abstract
//!   namespace belongs to the network namespace, like the TCP ports it stands for.
//! * A bind to port 0 with `SO_REUSEPORT` never lands on a port that a `SO_REUSEPORT` listener
//!   already holds (checked with a two-port `ip_local_port_range` in a private network
//!   namespace): an ephemeral port needs no probe.
//!
//! What is left: a process that holds no lock (a foreign program, an older pushpull) and binds
//! with `SO_REUSEPORT` in the instant between the probe and the bind; and two pushpulls starting
//! at the same instant on overlapping but different addresses (`0.0.0.0:P` and `127.0.0.1:P`,
//! two lock names).

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Kernel accept queue length of each listener: absorbs connection bursts (the kernel caps it
/// at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: i32 = 4096;

/// Who else has an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A pushpull process holds the address's lock.
    Pushpull,
    /// Some process listens on it (found by the probe or by the bind itself).
    Other,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Holder::Pushpull => "another pushpull process",
            Holder::Other => "another process",
        })
    }
}

/// Why an address could not be listened on.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process serves the address.
    #[error("address already in use by {0} (is pushpull already running?)")]
    InUse(Holder),
    /// The address's lock could not be taken for another reason than another holder (no
    /// `AF_UNIX` sockets in a sandbox, for example).
    #[error("cannot take its lock, the abstract unix socket @pushpull:<address>: {0}")]
    Lock(io::Error),
    /// Any other failure of a socket call.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The lock on one address: a bound abstract unix socket, released when dropped or when the
/// process ends.
#[derive(Debug)]
pub struct AddrLock {
    _socket: Socket,
}

impl AddrLock {
    /// Takes the lock of `addr` (resolved, not port 0).
    fn take(addr: SocketAddr) -> Result<Self, ListenError> {
        let name = format!("\0pushpull:{addr}");
        let name = SockAddr::unix(OsStr::from_bytes(name.as_bytes())).map_err(ListenError::Lock)?;
        // A stream socket that never listens: nothing can connect to it or send to it.
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(ListenError::Lock)?;
        match socket.bind(&name) {
            Ok(()) => Ok(Self { _socket: socket }),
            Err(e) if e.kind() == ErrorKind::AddrInUse => Err(ListenError::InUse(Holder::Pushpull)),
            Err(e) => Err(ListenError::Lock(e)),
        }
    }
}

/// An address that no other process serves, with its lock (taken at bind for port 0).
#[derive(Debug)]
pub struct Claim {
    addr: SocketAddr,
    lock: Option<AddrLock>,
}

/// The listeners of one address, one per core, and the lock that keeps other pushpull
/// processes off it while they are open.
#[derive(Debug)]
pub struct Bound {
    /// The bound address (port 0 resolved).
    pub addr: SocketAddr,
    /// One listener per core.
    pub sockets: Vec<TcpListener>,
    /// The address's lock: keep it as long as the sockets.
    pub lock: AddrLock,
}

/// Makes sure that no other process serves `addr` and locks it against other pushpull
/// processes (module doc). Claim every address before binding any, so that a start that fails
/// has accepted nothing.
pub fn claim(addr: SocketAddr) -> Result<Claim, ListenError> {
    if addr.port() == 0 {
        return Ok(Claim { addr, lock: None });
    }
    let lock = AddrLock::take(addr)?;
    let probe = socket(addr)?;
    probe.bind(&addr.into()).map_err(in_use)?;
    drop(probe);
    Ok(Claim {
        addr,
        lock: Some(lock),
    })
}

impl Claim {
    /// Binds one non-blocking listener per core (at least one); the first resolves port 0 and
    /// the others bind the port it got.
    pub fn bind(self, cores: usize) -> Result<Bound, ListenError> {
        let first = listener(self.addr)?;
        let addr = first.local_addr()?;
        let lock = match self.lock {
            Some(lock) => lock,
            None => AddrLock::take(addr)?,
        };
        let mut sockets = Vec::with_capacity(cores.max(1));
        sockets.push(first);
        for _ in 1..cores {
            sockets.push(listener(addr)?);
        }
        Ok(Bound {
            addr,
            sockets,
            lock,
        })
    }
}

/// A TCP socket for `addr` with `SO_REUSEADDR` (binds despite `TIME_WAIT` connections).
fn socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// A non-blocking listener with `SO_REUSEADDR` and `SO_REUSEPORT`, so that every core binds the
/// same address and the kernel spreads connections over them.
fn listener(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let socket = socket(addr)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).map_err(in_use)?;
    socket.listen(DEFAULT_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// `EADDRINUSE` of a TCP bind: another process listens there.
fn in_use(e: io::Error) -> ListenError {
    if e.kind() == ErrorKind::AddrInUse {
        ListenError::InUse(Holder::Other)
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().expect("address")
    }

    /// A port that is free now (a plain listener bound to port 0 and closed).
    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind(loopback())
            .and_then(|l| l.local_addr())
            .expect("a free port")
    }

    #[test]
    fn cores_share_the_port_and_a_second_claim_is_refused() {
        let bound = claim(free_addr()).and_then(|c| c.bind(3)).expect("bound");
        assert_eq!(bound.sockets.len(), 3);
        for s in &bound.sockets {
            assert_eq!(s.local_addr().expect("addr"), bound.addr);
        }
        // The lock: another pushpull (here: another claim in this process) is refused.
        let again = claim(bound.addr).expect_err("claimed twice");
        assert!(
            matches!(again, ListenError::InUse(Holder::Pushpull)),
            "{again}"
        );
        // Released with the sockets: the address can be claimed again at once.
        let addr = bound.addr;
        drop(bound);
        claim(addr).and_then(|c| c.bind(2)).expect("claimed again");
    }

    #[test]
    fn port_zero_takes_the_lock_of_the_port_it_got() {
        let bound = claim(loopback()).and_then(|c| c.bind(2)).expect("bound");
        assert_ne!(bound.addr.port(), 0);
        let again = claim(bound.addr).expect_err("claimed twice");
        assert!(
            matches!(again, ListenError::InUse(Holder::Pushpull)),
            "{again}"
        );
    }

    #[test]
    fn a_foreign_reuseport_listener_is_found_by_the_probe() {
        // What an older pushpull or another program does: SO_REUSEPORT, and no lock.
        let addr = free_addr();
        let foreign = socket(addr).expect("socket");
        foreign.set_reuse_port(true).expect("reuseport");
        foreign.bind(&addr.into()).expect("bind");
        foreign.listen(16).expect("listen");
        let err = claim(addr).expect_err("probe passed");
        assert!(matches!(err, ListenError::InUse(Holder::Other)), "{err}");
        // Without the probe the kernel would have let us join its group.
        listener(addr).expect("SO_REUSEPORT joins a same-user group");
    }

    #[test]
    fn a_foreign_plain_listener_is_refused() {
        let foreign = std::net::TcpListener::bind(loopback()).expect("bind");
        let addr = foreign.local_addr().expect("addr");
        let err = claim(addr).expect_err("probe passed");
        assert!(matches!(err, ListenError::InUse(Holder::Other)), "{err}");
        assert_eq!(
            err.to_string(),
            "address already in use by another process (is pushpull already running?)"
        );
    }

    #[test]
    fn connections_in_time_wait_do_not_stop_a_restart() {
        let bound = claim(loopback()).and_then(|c| c.bind(1)).expect("bound");
        let addr = bound.addr;
        // The server side closes first, so it is the side that enters TIME_WAIT.
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let server = loop {
            match bound.sockets[0].accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        drop(server);
        let mut rest = Vec::new();
        io::Read::read_to_end(&mut &client, &mut rest).expect("end of stream");
        drop(client);
        drop(bound);
        // Without SO_REUSEADDR the address would be refused now.
        let plain = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let refused = plain
            .bind(&addr.into())
            .expect_err("TIME_WAIT left no trace");
        assert_eq!(refused.kind(), ErrorKind::AddrInUse);
        claim(addr).and_then(|c| c.bind(2)).expect("restarted");
    }

    #[test]
    fn a_wildcard_listener_on_the_port_is_found() {
        let any: SocketAddr = "0.0.0.0:0".parse().expect("address");
        let foreign = listener(any).expect("wildcard listener");
        let port = foreign.local_addr().expect("addr").port();
        let err = claim(SocketAddr::from(([127, 0, 0, 1], port))).expect_err("probe passed");
        assert!(matches!(err, ListenError::InUse(Holder::Other)), "{err}");
    }
}
