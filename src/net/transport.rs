//! A connection's byte stream: plain TCP, or TLS over TCP (rustls). The reactor reads and writes
//! plaintext through it the same way either way; with TLS, ciphertext the TLS layer still has
//! to send (handshake records, encrypted output) is flushed by [`Transport::flush`] whenever the
//! socket is writable.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

/// Plain or TLS.
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream>),
}

/// A TCP socket with its server-side TLS state.
pub struct TlsStream {
    socket: TcpStream,
    tls: rustls::ServerConnection,
}

impl Transport {
    /// TLS over `socket`.
    pub fn tls(socket: TcpStream, tls: rustls::ServerConnection) -> Self {
        Self::Tls(Box::new(TlsStream { socket, tls }))
    }

    /// Reads plaintext. `Ok(0)` is the end of the stream; `WouldBlock` means wait for the
    /// socket. A TLS protocol error is `InvalidData` (the alert is sent first, best effort).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }

    /// Whether this is a plain socket (a short read empties it; a TLS stream may hold
    /// decrypted bytes after one).
    pub fn is_plain(&self) -> bool {
        matches!(self, Self::Plain(_))
    }

    /// Writes plaintext; `WouldBlock` when nothing could be taken now.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    /// Whether TLS records wait to be sent.
    pub fn wants_write(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(s) => s.tls.wants_write(),
        }
    }

    /// Sends waiting TLS records until done (`Ok`) or the socket would block (`WouldBlock`).
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(_) => Ok(()),
            Self::Tls(s) => s.flush(),
        }
    }

    /// Ends the sending side: TLS `close_notify` (best effort), then a TCP half-close.
    pub fn shutdown_write(&mut self) {
        let socket = match self {
            Self::Plain(socket) => socket,
            Self::Tls(s) => {
                s.tls.send_close_notify();
                let _ = s.flush();
                &mut s.socket
            }
        };
        let _ = socket.shutdown(Shutdown::Write);
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                // No plaintext buffered: read more records.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The peer closed TCP without close_notify: an end of stream all the same.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.socket) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    if let Err(e) = self.tls.process_new_packets() {
                        // Tell the peer why (an alert), then give up on the connection.
                        let _ = self.flush();
                        return Err(io::Error::new(ErrorKind::InvalidData, e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flush()?;
        let n = self.tls.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        // Push what can go now; the rest waits in the TLS layer for the next writable event.
        match self.flush() {
            Err(e) if e.kind() != ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
