//! Socket helpers shared by the subscriber threads: non-blocking connect with an optional source
//! address, connect completion, buffered writes, and the wall clock used for latency stamps.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

/// Unix time in microseconds.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Opens a non-blocking TCP connection to `target`, bound to `source` first when given.
pub fn open_socket(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match sock.connect(&target.into()) {
        Ok(()) => {}
        // EINPROGRESS (115 on Linux) is the normal answer of a non-blocking connect.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(115) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(sock)))
}

/// Whether a non-blocking connect has completed (`Err` when it failed).
pub fn connected(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `out[pos..]` until done or `WouldBlock`; clears `out` when all is written.
pub fn flush(stream: &mut TcpStream, out: &mut Vec<u8>, pos: &mut usize) -> io::Result<()> {
    while *pos < out.len() {
        match stream.write(&out[*pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.clear();
    *pos = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    #[test]
    fn connects_from_a_source_address_and_writes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let source: IpAddr = "127.0.0.3".parse().expect("ip");
        let mut s = open_socket(addr, Some(source)).expect("open");
        let (mut peer, from) = listener.accept().expect("accept");
        assert_eq!(from.ip(), source);
        let end = Instant::now() + Duration::from_secs(5);
        while !connected(&s).expect("no error") {
            assert!(Instant::now() < end);
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut out = b"hello".to_vec();
        let mut pos = 0;
        flush(&mut s, &mut out, &mut pos).expect("flush");
        assert!(out.is_empty() && pos == 0);
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello");
        assert!(unix_micros() > 1_600_000_000_000_000);
    }
}
