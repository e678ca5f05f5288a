"""WebSocket subscribers (spec/websocket.md, binary.md §4): the upgrade answer, frames in text and
binary mode, replay, control frames, close codes and reasons, broken frames, client requests."""

import time

import pb
import ws
from registry import case
from ws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, close_payload, frame

MIB = 1048576


def opened(t, query="?CHANNEL_ID={T1}", online=("P1",), **kw):
    conn, resp = t.ws_open(query, **kw)
    if resp is not None and resp.status == 101 and online:
        t.online(list(online), timeout=1.5)
    return conn, resp


# ----- the upgrade -------------------------------------------------------------------------------

def _upgrade(name, query, doc, path="/sub/", **kw):
    @case(name)
    def run(t):
        conn, resp = t.ws_open(query, path=path, **kw)
        if resp is not None and resp.status == 101:
            t.ws_read(conn, idle=1.0)
    run.__doc__ = doc


_upgrade("ws.upgrade_ok", "?CHANNEL_ID={T1}", "a valid upgrade, then no frames")
_upgrade("ws.bad_channel", "?CHANNEL_ID=bad", "a malformed token")
_upgrade("ws.wrong_signature", "?CHANNEL_ID={P1}.{S2}", "a wrong signature")
_upgrade("ws.no_channel", "", "no CHANNEL_ID")
_upgrade("ws.101_tokens", "?CHANNEL_ID=" + "/".join("{T%d}" % i for i in range(1, 102)),
         "101 tokens")
_upgrade("ws.empty_element", "?CHANNEL_ID={T1}//{T2}", "an empty list element")
_upgrade("ws.version_8", "?CHANNEL_ID={T1}", "Sec-WebSocket-Version: 8", version="8")
_upgrade("ws.version_14", "?CHANNEL_ID={T1}", "Sec-WebSocket-Version: 14", version="14")
_upgrade("ws.no_version", "?CHANNEL_ID={T1}", "no Sec-WebSocket-Version", version=None)
_upgrade("ws.no_key", "?CHANNEL_ID={T1}", "no Sec-WebSocket-Key", key=None)
_upgrade("ws.short_key", "?CHANNEL_ID={T1}", "a key that is not 16 bytes of base64", key="abc")
_upgrade("ws.subprotocol", "?CHANNEL_ID={T1}", "Sec-WebSocket-Protocol offered",
         extra=[("Sec-WebSocket-Protocol", "chat, superchat")])
_upgrade("ws.permessage_deflate", "?CHANNEL_ID={T1}", "permessage-deflate offered",
         extra=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")])
_upgrade("ws.path_suffix", "?CHANNEL_ID={T1}", "upgrade on /sub/x", path="/sub/x")
_upgrade("ws.path_without_slash", "?CHANNEL_ID={T1}", "upgrade on /sub", path="/sub")
_upgrade("ws.unknown_path", "?CHANNEL_ID={T1}", "upgrade on /nope/", path="/nope/")


@case("ws.upgrade_with_body")
def _(t):
    """an upgrade request with Content-Length: 5 and a body"""
    data = ws.upgrade_request(t.fmt("/sub/?CHANNEL_ID={T1}"))[:-2] + \
        b"Content-Length: 5\r\n\r\nhello"
    conn = t.send("sub", data, label="WS upgrade /sub/?CHANNEL_ID={T1} + 5-byte body")
    r = t.answer(conn)
    if r is not None and r.status == 101:
        t.ws_read(conn)


@case("ws.upgrade_firefox_connection")
def _(t):
    """Connection: keep-alive, Upgrade (Firefox) and Upgrade: WebSocket"""
    data = (t.fmt("GET /sub/?CHANNEL_ID={T1} HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n"
                  "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: ") + ws.SAMPLE_KEY +
            "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    conn = t.send("sub", data, label="WS upgrade, Connection: keep-alive, Upgrade")
    t.answer(conn)


# ----- messages ------------------------------------------------------------------------------

@case("ws.text_live")
def _(t):
    """a text WebSocket, two live publishes"""
    conn, _ = opened(t)
    t.publish("{P1}")
    t.publish("{P1}")
    t.ws_read(conn, count=2)


@case("ws.binary_live")
def _(t):
    """a binary WebSocket, two live publishes"""
    conn, _ = opened(t, "?CHANNEL_ID={T1}&binaryMode=true")
    t.publish("{P1}", expiry=30)
    t.publish("{P1}")
    t.ws_read(conn, count=2)


@case("ws.two_channels_once")
def _(t):
    """a WebSocket on T1/T2, one publish to P1/P2: delivered once?"""
    conn, _ = opened(t, "?CHANNEL_ID={T1}/{T2}", ("P1", "P2"))
    t.publish("{P1}/{P2}")
    t.ws_read(conn, count=2, idle=1.5)


def _replay(name, mode, doc):
    @case(name)
    def run(t):
        for _ in range(3):
            t.publish("{P1}", expiry=60)
        time.sleep(0.3)  # the reference stores after it answers (cases_sub._store)
        conn, _ = opened(t, "?CHANNEL_ID={T1}&mid={Z26}" + mode)
        t.ws_read(conn, count=3)
        t.publish("{P1}")
        t.ws_read(conn, count=1)
    run.__doc__ = doc


_replay("ws.replay_text", "", "3 stored messages replayed, then a live one")
_replay("ws.replay_binary", "&binaryMode=true", "the same in binary mode")


@case("ws.replay_from_mid")
def _(t):
    """stored m1..m3, a WebSocket from the id of m2"""
    for _ in range(3):
        t.publish("{P1}", expiry=60)
    time.sleep(0.3)
    conn, _ = opened(t, "?CHANNEL_ID={T1}&mid={Z26}", record=False)
    keep = len(t.lines)
    t.ws_read(conn, count=3)  # learns the ids; not part of the transcript
    del t.lines[keep:]
    conn, _ = opened(t, "?CHANNEL_ID={T1}&mid=" + t.mid_of("m2"))
    t.ws_read(conn, count=1)


# ----- control frames and closing -----------------------------------------------------------

def _frames(name, frames, doc, query="?CHANNEL_ID={T1}", publish_after=False):
    @case(name)
    def run(t):
        conn, resp = opened(t, query)
        if resp is None or resp.status != 101:
            return
        for label, data in frames(t):
            t.ws_send(conn, data, label)
        if publish_after:
            t.publish("{P1}")
        t.ws_read(conn, idle=1.0, count=1 if publish_after else None)
    run.__doc__ = doc


_frames("ws.client_ping", lambda t: [("ping 'hello'", frame(OP_PING, b"hello"))],
        "a ping with payload")
_frames("ws.client_ping_empty", lambda t: [("ping", frame(OP_PING))], "an empty ping")
_frames("ws.unsolicited_pong", lambda t: [("pong 'x'", frame(OP_PONG, b"x"))],
        "an unsolicited pong", publish_after=True)
_frames("ws.close_1000", lambda t: [("close 1000", frame(OP_CLOSE, close_payload(1000)))],
        "a client close 1000")
_frames("ws.close_empty", lambda t: [("close (no payload)", frame(OP_CLOSE))],
        "a client close without payload")
_frames("ws.close_with_reason",
        lambda t: [("close 1000 'bye'", frame(OP_CLOSE, close_payload(1000, b"bye")))],
        "a client close with a reason")
_frames("ws.close_4000", lambda t: [("close 4000", frame(OP_CLOSE, close_payload(4000)))],
        "a client close 4000")
_frames("ws.close_1_byte", lambda t: [("close, 1-byte payload", frame(OP_CLOSE, b"\x03"))],
        "a close frame with a 1-byte payload")
for _code in (999, 1004, 1005, 1006, 1016, 2999, 5000):
    _frames(f"ws.close_code_{_code}",
            lambda t, c=_code: [(f"close {c}", frame(OP_CLOSE, close_payload(c)))],
            f"a client close with code {_code}")
_frames("ws.close_reason_invalid_utf8",
        lambda t: [("close 1000 + \\xff", frame(OP_CLOSE, close_payload(1000, b"\xff")))],
        "a close reason that is not UTF-8")
_frames("ws.unmasked_frame", lambda t: [("unmasked text", frame(OP_TEXT, b"hi", mask=False))],
        "an unmasked client frame")
_frames("ws.rsv1", lambda t: [("text RSV1", frame(OP_TEXT, b"hi", rsv=4))], "RSV1 set")
_frames("ws.opcode_3", lambda t: [("opcode 3", frame(3, b"hi"))], "a reserved data opcode")
_frames("ws.opcode_11", lambda t: [("opcode 11", frame(11, b"hi"))],
        "a reserved control opcode")
_frames("ws.fragmented_ping", lambda t: [("ping FIN=0", frame(OP_PING, b"x", fin=False))],
        "a fragmented control frame")
_frames("ws.ping_126_bytes", lambda t: [("ping 126 bytes", frame(OP_PING, b"p" * 126))],
        "a control frame longer than 125")
_frames("ws.unexpected_continuation", lambda t: [("cont", frame(OP_CONT, b"x"))],
        "a continuation without a message")
_frames("ws.expected_continuation",
        lambda t: [("text FIN=0", frame(OP_TEXT, b"a", fin=False)),
                   ("text", frame(OP_TEXT, b"b"))], "a new data frame inside a message")
_frames("ws.fragmented_text_ok",
        lambda t: [("text FIN=0", frame(OP_TEXT, b"a", fin=False)),
                   ("ping", frame(OP_PING, b"mid")), ("cont", frame(OP_CONT, b"b"))],
        "a fragmented text message with a ping inside, then a publish", publish_after=True)
_frames("ws.text_invalid_utf8", lambda t: [("text \\xff", frame(OP_TEXT, b"\xff\xfe"))],
        "a text frame that is not UTF-8")
_frames("ws.text_frame_text_mode", lambda t: [("text 'hello'", frame(OP_TEXT, b"hello"))],
        "a text frame on a text-mode WebSocket, then a publish", publish_after=True)
_frames("ws.binary_frame_text_mode",
        lambda t: [("binary serverStats", frame(OP_BINARY, pb.server_stats()))],
        "a binary request on a text-mode WebSocket, then a publish", publish_after=True)
_frames("ws.frame_over_max_payload",
        lambda t: [("binary header announcing 1 MiB + 1",
                    frame(OP_BINARY, b"", length_override=MIB + 1))],
        "a frame header announcing max_payload + 1 bytes")
_frames("ws.frame_1mib", lambda t: [("binary 1 MiB", frame(OP_BINARY, b"x" * MIB))],
        "a 1 MiB binary frame on a text-mode WebSocket, then a publish", publish_after=True)


# ----- binary-mode client requests (binary.md §4) ------------------------------------------------

BIN = "?CHANNEL_ID={TU1}&binaryMode=true"


@case("ws.bin_publish_public")
def _(t):
    """TU1 publishes to U2 over its WebSocket; a binary and a text subscriber of TU2 read it"""
    rb, _ = opened(t, "?CHANNEL_ID={TU2}&binaryMode=true", ("P2",), record=False)
    rt, _ = opened(t, "?CHANNEL_ID={TU2}", ("P2",), record=False)
    conn, _ = opened(t, BIN)
    t.expect_body('{"n":"m1"}')
    req = pb.incoming_messages(pb.message([pb.receiver(t.id("U2"), False, t.psig("U2"))],
                                          '{"n":"m1"}', 0, "im_x"))
    t.ws_send(conn, frame(OP_BINARY, req), "binary incomingMessages to U2")
    t.out("publisher:")
    t.ws_read(conn, idle=0.7)
    t.out("binary subscriber:")
    t.ws_read(rb, count=1)
    t.out("text subscriber:")
    t.ws_read(rt, count=1)


@case("ws.bin_publish_fragmented")
def _(t):
    """the same request in two fragments"""
    rb, _ = opened(t, "?CHANNEL_ID={TU2}&binaryMode=true", ("P2",), record=False)
    conn, _ = opened(t, BIN)
    t.expect_body('{"n":"m1"}')
    req = pb.incoming_messages(pb.message([pb.receiver(t.id("U2"), False, t.psig("U2"))],
                                          '{"n":"m1"}'))
    t.ws_send(conn, frame(OP_BINARY, req[:10], fin=False), "binary FIN=0 (10 bytes)")
    t.ws_send(conn, frame(OP_CONT, req[10:]), "cont (rest)")
    t.ws_read(rb, count=1)


@case("ws.bin_channel_stats")
def _(t):
    """channelStats of U2 (online) and U3 (offline) over the WebSocket"""
    opened(t, "?CHANNEL_ID={TU2}", ("P2",), record=False)
    conn, _ = opened(t, BIN)
    req = pb.channel_stats(pb.receiver(t.id("U2"), False, t.psig("U2")),
                           pb.receiver(t.id("U3"), False, t.psig("U3")))
    t.ws_send(conn, frame(OP_BINARY, req), "binary channelStats U2, U3")
    t.ws_read(conn, count=1)


def _bin(name, make, doc, query=BIN, opcode=OP_BINARY):
    @case(name)
    def run(t):
        conn, _ = opened(t, query)
        t.ws_send(conn, frame(opcode, make(t)), doc)
        t.ws_read(conn, idle=1.0)
    run.__doc__ = doc


def _to_u2(t, private=False, sig=True, body="{}"):
    s = t.psig("U2") if sig is True else sig
    return pb.incoming_messages(pb.message([pb.receiver(t.id("U2"), private, s)], body))


_bin("ws.bin_server_stats", lambda t: pb.server_stats(), "serverStats from a browser")
_bin("ws.bin_private_receiver", lambda t: _to_u2(t, private=True), "a private receiver")
_bin("ws.bin_wrong_signature", lambda t: _to_u2(t, sig=b"\x01" * 20), "a wrong public signature")
_bin("ws.bin_garbage", lambda t: b"A", "a binary frame 'A'")
_bin("ws.bin_empty_frame", lambda t: b"", "an empty binary frame")
_bin("ws.bin_no_public_part", lambda t: _to_u2(t), "a request from a T1-only connection",
     query="?CHANNEL_ID={T1}&binaryMode=true")
_bin("ws.bin_text_frame", lambda t: b"hello", "a text frame on a binary-mode WebSocket",
     opcode=OP_TEXT)
_bin("ws.bin_101_messages",
     lambda t: pb.incoming_messages(*[pb.message([pb.receiver(t.id("U2"), False,
                                                              t.psig("U2"))], "{}")] * 101),
     "101 messages")
_bin("ws.bin_no_receivers", lambda t: pb.incoming_messages(pb.message([], "{}")),
     "a message without receivers")
_bin("ws.bin_zero_messages", lambda t: pb.fld(1, pb.fld(1, b"")),
     "incomingMessages without messages")
_bin("ws.bin_channel_stats_empty", lambda t: pb.fld(1, pb.fld(2, b"")),
     "channelStats without channels")
_bin("ws.bin_unknown_command", lambda t: pb.fld(1, pb.fld(4, b"")), "a command in field 4")
_bin("ws.bin_body_not_json", lambda t: _to_u2(t, body="A"), "a message body that is not JSON")
