"""A minimal WebSocket (RFC 6455) client over wire.Conn.

It builds frames with any flags (so the harness can also send broken ones: unmasked, RSV bits,
reserved opcodes, fragmented control frames, bad close payloads) and reads the server's frames
exactly as sent (FIN, RSV, opcode, mask bit, payload).
"""

import base64
import os
import struct
import time
from dataclasses import dataclass

from wire import Eof, Timeout

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
OP_NAMES = {0: "cont", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}

SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(target, key=SAMPLE_KEY, version="13", extra=(), host="diff.test"):
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length_override=None):
    """One client frame. length_override writes a different length in the header (to announce
    an oversized frame without sending it)."""
    n = len(payload) if length_override is None else length_override
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(c ^ key[i & 3] for i, c in enumerate(payload))
    return head + key + masked


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    return struct.pack(">H", code) + reason


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack(">H", self.payload[:2])[0]


def read_frame(conn, timeout):
    """Reads one server frame; raises wire.Timeout or wire.Eof."""
    deadline = time.monotonic() + timeout
    b0, b1 = conn.take(2, deadline)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", conn.take(2, deadline))[0]
    elif n == 127:
        n = struct.unpack(">Q", conn.take(8, deadline))[0]
    key = conn.take(4, deadline) if b1 & 0x80 else None
    deadline = max(deadline, time.monotonic() + 5)
    payload = conn.take(n, deadline)
    if key:
        payload = bytes(c ^ key[i & 3] for i, c in enumerate(payload))
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, bool(b1 & 0x80), payload)


def read_frames(conn, idle=1.0, until=None, total=10.0):
    """Reads frames until the stream ends, a close frame arrives, `until(frames)` is true, no
    frame comes for `idle` seconds, or `total` seconds pass. Returns (frames, end) where end is
    'close frame', 'eof', 'reset', 'idle' or 'stopped'."""
    frames = []
    stop = time.monotonic() + total
    while True:
        left = min(idle, stop - time.monotonic())
        if left <= 0:
            return frames, "idle"
        try:
            f = read_frame(conn, left)
        except Timeout:
            return frames, "idle"
        except Eof:
            return frames, "reset" if conn.reset else "eof"
        frames.append(f)
        if f.opcode == OP_CLOSE:
            return frames, "close frame"
        if until and until(frames):
            return frames, "stopped"


def accept_value(key):
    import hashlib
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()
