"""Raw-socket HTTP/1.1 client for the differential harness.

Nothing here interprets an answer beyond its framing: the harness wants the exact status line,
header lines and body bytes each server wrote. A response is read with the framing it declares
(Content-Length, chunked, none for 1xx/204/304, or until the peer closes) and keeps its raw bytes.
"""

import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# How long one read may wait for the next bytes of an answer that has begun.
DEFAULT_READ_TIMEOUT = 5.0
# The most a response head may take before it is reported as incomplete.
MAX_HEAD = 64 * 1024


def parse_base(url):
    """'http://127.0.0.1:28010' -> ('127.0.0.1', 28010)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"base URL must be http://host:port, got {url!r}")
    return parts.hostname, parts.port or 80


@dataclass
class Response:
    status_line: str = ""
    headers: list = field(default_factory=list)  # [(name, value)] in order, as sent
    body: bytes = b""
    framing: str = ""  # "length N", "chunked", "none", "until-close", "incomplete: ..."
    raw_head: bytes = b""

    @property
    def status(self):
        parts = self.status_line.split(" ", 2)
        try:
            return int(parts[1])
        except (IndexError, ValueError):
            return 0

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class Eof(Exception):
    """The peer closed before (or while) an answer arrived."""


class Timeout(Exception):
    """No (complete) answer within the allowed time."""


class Conn:
    """One TCP connection with a receive buffer that the HTTP and WebSocket readers share."""

    def __init__(self, addr, timeout=DEFAULT_READ_TIMEOUT):
        self.sock = socket.create_connection(addr, timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.reset = False
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def send_slowly(self, data, piece=1, pause=0.002):
        for i in range(0, len(data), piece):
            if not self.send(data[i:i + piece]):
                return False
            time.sleep(pause)
        return True

    def _fill(self, deadline):
        """Reads once into the buffer. False at end of stream; raises Timeout at the deadline."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise Timeout() from None
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        except OSError:
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def take(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise Eof()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def take_until(self, marker, deadline, limit=MAX_HEAD):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise Timeout()
            if not self._fill(deadline):
                raise Eof()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_response(self, first_timeout=None, method="GET"):
        """Reads one response. first_timeout bounds the wait for its first byte (a held long
        poll needs ~41 s); the rest must follow within self.timeout."""
        deadline = time.monotonic() + (first_timeout or self.timeout)
        while not self.buf:
            if not self._fill(deadline):
                raise Eof()
        deadline = max(deadline, time.monotonic() + self.timeout)
        # tolerate (and drop) blank lines before a status line
        while self.buf.startswith(b"\r\n"):
            self.buf = self.buf[2:]
        try:
            head = self.take_until(b"\r\n\r\n", deadline)
        except Eof:
            resp = Response(framing="incomplete: head cut off by end of stream")
            resp.raw_head, self.buf = self.buf, b""
            resp.status_line = resp.raw_head.split(b"\r\n", 1)[0].decode("latin-1")
            return resp
        resp = Response(raw_head=head)
        lines = head[:-4].split(b"\r\n")
        resp.status_line = lines[0].decode("latin-1")
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            resp.headers.append((name, value.strip(" \t")))
        status = resp.status
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        try:
            if status < 200 or status in (204, 304) or method == "HEAD":
                resp.framing = "none"
                if cl is not None:
                    resp.framing = f"none (Content-Length: {cl})"
            elif "chunked" in te:
                resp.framing = "chunked"
                resp.body = self._read_chunked(deadline)
            elif cl is not None:
                n = int(cl)
                resp.framing = f"length {n}"
                resp.body = self.take(n, deadline)
            else:
                resp.framing = "until-close"
                resp.body = self._read_to_eof(deadline)
        except Eof:
            resp.framing = f"incomplete: body cut off ({resp.framing})"
            resp.body, self.buf = self.buf, b""
        except Timeout:
            resp.framing = f"incomplete: body timed out ({resp.framing})"
            resp.body, self.buf = self.buf, b""
        return resp

    def _read_chunked(self, deadline):
        body = b""
        while True:
            line = self.take_until(b"\r\n", deadline)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.take_until(b"\r\n", deadline)  # no trailers expected
                return body
            body += self.take(size, deadline)
            self.take(2, deadline)

    def _read_to_eof(self, deadline):
        while self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def after_answer(self, wait=0.3):
        """What the connection does right after an answer: 'closed', 'reset', 'open', or
        'sent more: <n> bytes'."""
        if self.buf:
            return f"sent more: {len(self.buf)} bytes"
        deadline = time.monotonic() + wait
        try:
            got = self._fill(deadline)
        except Timeout:
            return "open"
        if not got:
            return "reset" if self.reset else "closed"
        return f"sent more: {len(self.buf)} bytes"


def request_bytes(method, target, headers=(), body=b"", version="HTTP/1.1", host="diff.test",
                  length=True):
    """An ordinary request. headers: [(name, value)]; Host first, Content-Length last when
    the body is non-empty (or always for POST) unless length is False."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for k, v in headers:
        lines.append(f"{k}: {v}")
    if length and (body or method == "POST"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
