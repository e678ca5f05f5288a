//! Sockets below the protocol: the listening sockets (one process per address), the plain or
//! TLS byte stream of a connection and the TLS configuration of listeners. With the reactor, the
//! only code that makes syscalls.

pub mod listen;
pub mod tls;
pub mod transport;
