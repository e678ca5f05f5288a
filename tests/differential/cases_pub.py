"""Publishing (spec/publishing.md), channel info, /server-stat/, the trusted protobuf API and
browser publishing on /rest/ (binary.md §3, §4)."""


import pb
from registry import case


def watch(t, query="CHANNEL_ID={T1}", online=("P1",)):
    """An unrecorded WebSocket subscriber, online before the case publishes."""
    conn, _ = t.ws_open("?" + query, record=False)
    t.online(list(online))
    return conn


# ----- text publishing -----------------------------------------------------------------------

def _text(name, channels, body=None, doc="", expiry=None, query="CHANNEL_ID={T1}",
          online=("P1",), raw_body=None):
    @case(name)
    def run(t):
        conn = watch(t, query, online)
        if raw_body is not None:
            t.expect_body(raw_body.decode("utf-8", "replace"))
            t.exchange("pub", "POST", f"/pub/?CHANNEL_ID={channels}", (), raw_body, after=False)
        else:
            t.publish(channels, body, expiry, detail=True)
        t.ws_read(conn, count=1)
    run.__doc__ = doc


_text("pub.text_private", "{P1}", doc="a JSON body to a bare private id")
_text("pub.text_signed_token", "{T1}", doc="to a signed token")
_text("pub.text_token_with_public", "{TU1}", query="CHANNEL_ID={TU1}",
      doc="to P1:U1.sig (the private id only)")
_text("pub.text_wrong_signature", "{P1}.{S2}", doc="to P1 with the signature of P2")
_text("pub.text_duplicate_channels", "{P1}/{P1}", doc="the same channel twice")
_text("pub.text_two_channels", "{P1}/{P2}", query="CHANNEL_ID={T1}/{T2}",
      online=("P1", "P2"), doc="to P1/P2, one subscriber on both")
_text("pub.text_bad_and_good", "bad/{P1}", doc="a malformed token and a good one")
_text("pub.text_no_channel", "", doc="an empty CHANNEL_ID")
_text("pub.text_malformed_only", "xyz", doc="only a malformed token")
_text("pub.text_101_channels", "/".join("{P%d}" % i for i in range(1, 102)),
      doc="101 channels")
_text("pub.text_100_channels", "/".join("{P%d}" % i for i in range(1, 101)),
      doc="100 channels")
_text("pub.body_empty", "{P1}", raw_body=b"", doc="an empty body")
_text("pub.body_whitespace", "{P1}", raw_body=b" \r\n\t", doc="a body of whitespace")
_text("pub.body_A", "{P1}", raw_body=b"A", doc="the body A (not JSON)")
_text("pub.body_message", "{P1}", raw_body=b"message", doc="the body message")
_text("pub.body_md5", "{P1}", raw_body=b"0cc175b9c0f1b6a831c399e269772661",
      doc="an md5 hex string")
_text("pub.body_number", "{P1}", raw_body=b"42", doc="a JSON number")
_text("pub.body_json_string", "{P1}", raw_body=b'"hi"', doc="a JSON string")
_text("pub.body_invalid_utf8", "{P1}", raw_body=b'{"a":"\xff\xfe"}', doc="invalid UTF-8")
_text("pub.body_unicode", "{P1}", raw_body='{"a":"жёлтый ☃"}'.encode(), doc="UTF-8 text")
_text("pub.body_with_markers", "{P1}", raw_body=b'{"a":"#!NGINXNME!#"}',
      doc="a body holding the end marker")


def _expiry(name, value, doc):
    @case(name)
    def run(t):
        t.publish("{P1}", expiry=value)
        conn, _ = t.ws_open("?CHANNEL_ID={T1}&mid={Z26}&binaryMode=true")
        t.ws_read(conn, count=1)
    run.__doc__ = doc


for _v in ["60", "0", "-5", "abc", "+30", "1e3", "60abc", " 60 ", "99999999", "4294967296"]:
    _expiry("pub.expiry_" + _v.replace(" ", "_").replace("+", "plus").replace("-", "minus"), _v,
            f"Message-Expiry: {_v!r}, then a binary replay shows whether and how it was stored")


@case("pub.pipelined_two")
def _(t):
    """two publishes in one write"""
    conn = watch(t)
    b1, b2 = b'{"n":"m1"}', b'{"n":"m2"}'
    t.expect_body(b1.decode()), t.expect_body(b2.decode())
    req = "POST /pub/?CHANNEL_ID={P1} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    c = t.send("pub", t.fmt(req).encode() + b1 + t.fmt(req).encode() + b2,
               label="2 x POST /pub/?CHANNEL_ID={P1}")
    t.answer(c, after=False)
    t.answer(c)
    t.ws_read(conn, count=2)


@case("pub.chunked_body")
def _(t):
    """a chunked text publish (the PHP module never sends one)"""
    conn = watch(t)
    t.expect_body('{"n":"m1"}')
    t.send("pub", "POST /pub/?CHANNEL_ID={P1} HTTP/1.1\r\nHost: x\r\n"
           "Transfer-Encoding: chunked\r\n\r\na\r\n{\"n\":\"m1\"}\r\n0\r\n\r\n")
    t.answer(t.conns[-1])
    t.ws_read(conn, count=1)


# ----- channel info ----------------------------------------------------------------------------

@case("info.offline")
def _(t):
    """GET /pub/ for a channel nobody listens on"""
    t.exchange("pub", "GET", "/pub/?CHANNEL_ID={P1}")


@case("info.online_and_offline")
def _(t):
    """P1 online (a WebSocket), P2 offline"""
    watch(t)
    t.exchange("pub", "GET", "/pub/?CHANNEL_ID={P1}/{P2}")


@case("info.two_subscribers")
def _(t):
    """two WebSockets on P1"""
    watch(t)
    watch(t)
    t.online(["P1"], want=2)
    t.exchange("pub", "GET", "/pub/?CHANNEL_ID={P1}")


@case("info.signed_and_public_tokens")
def _(t):
    """online TU1 asked as T1, as TU1, and U1 as a private id"""
    watch(t, "CHANNEL_ID={TU1}")
    t.exchange("pub", "GET", "/pub/?CHANNEL_ID={T1}/{TU1}/{U1}")


@case("info.php_style_body")
def _(t):
    """the PHP module's request: the list in the query and as the body"""
    watch(t)
    t.exchange("pub", "GET", "/pub/?CHANNEL_ID={P1}", (), t.fmt("{P1}").encode())


for _n, _q in [("info.no_channel", ""), ("info.malformed", "xyz"),
               ("info.101_channels", "/".join("{P%d}" % i for i in range(1, 102)))]:
    case(_n)(lambda t, q=_q: t.exchange("pub", "GET", "/pub/?CHANNEL_ID=" + q))


@case("stat.get")
def _(t):
    """GET /server-stat/"""
    t.exchange("pub", "GET", "/server-stat/")


@case("stat.get_with_query")
def _(t):
    """GET /server-stat/?x=1"""
    t.exchange("pub", "GET", "/server-stat/?x=1")


# ----- the trusted protobuf API --------------------------------------------------------------

def _pb(name, make, doc, query="CHANNEL_ID={T1}", online=("P1",), read=1, binary_watch=True):
    @case(name)
    def run(t):
        conn = None
        if read:
            q = query + ("&binaryMode=true" if binary_watch else "")
            conn = watch(t, q, online)
        body, bodies = make(t)
        for b in bodies:
            t.expect_body(b)
        t.exchange("pub", "POST", "/pub/?binaryMode=true", (), body)
        if conn:
            t.ws_read(conn, count=read)
    run.__doc__ = doc


def _msg(t, receivers=None, body='{"n":"m1"}', expiry=0, mtype=None, sender=None):
    if receivers is None:
        receivers = [pb.receiver(t.id("P1"), True)]
    return pb.message(receivers, body, expiry, mtype, sender)


def _im(*messages):
    return pb.incoming_messages(*messages)


_pb("pb.publish_private", lambda t: (_im(_msg(t, expiry=60, mtype="im_x")), ['{"n":"m1"}']),
    "incomingMessages to P1, seen by a binary WebSocket")
_pb("pb.publish_private_text_watcher", lambda t: (_im(_msg(t)), ['{"n":"m1"}']),
    "incomingMessages to P1, seen by a text WebSocket", binary_watch=False)
_pb("pb.publish_public", lambda t: (_im(_msg(t, [pb.receiver(t.id("U1"), False)])),
                                    ['{"n":"m1"}']),
    "incomingMessages to the public id U1", query="CHANNEL_ID={TU1}")
_pb("pb.publish_two_messages", lambda t: (_im(_msg(t), _msg(t, body='{"n":"m2"}')),
                                          ['{"n":"m1"}', '{"n":"m2"}']),
    "two messages in one request", read=2)
_pb("pb.publish_duplicate_receivers",
    lambda t: (_im(_msg(t, [pb.receiver(t.id("P1"), True)] * 2)), ['{"n":"m1"}']),
    "P1 named twice")
_pb("pb.sender_in_request_ignored",
    lambda t: (_im(_msg(t, sender=pb.fld(1, 1) + pb.fld(2, t.id("U9")))), ['{"n":"m1"}']),
    "a request claiming sender CLIENT")
_pb("pb.expiry_capped", lambda t: (_im(_msg(t, expiry=999999)), ['{"n":"m1"}']),
    "expiry 999999 (above messageTTL 86400)")
_pb("pb.body_not_json", lambda t: (_im(_msg(t, body="A")), ["A"]),
    "a message body that is not JSON")
_pb("pb.second_request_ignored",
    lambda t: (_im(_msg(t)) + pb.incoming_messages(_msg(t, body='{"n":"m2"}')),
               ['{"n":"m1"}', '{"n":"m2"}']),
    "two requests in one batch (only the first runs)")
for _n, _mk, _d in [
    ("pb.empty_body", lambda t: (b"", []), "an empty body"),
    ("pb.garbage_A", lambda t: (b"A", []), "the body A"),
    ("pb.garbage_message", lambda t: (b"message", []), "the body message"),
    ("pb.request_without_command", lambda t: (pb.fld(1, b""), []), "a request with no command"),
    ("pb.unknown_command", lambda t: (pb.fld(1, pb.fld(4, b"")), []),
     "a request whose command is field 4"),
    ("pb.zero_messages", lambda t: (pb.fld(1, pb.fld(1, b"")), []),
     "incomingMessages without messages"),
    ("pb.101_messages", lambda t: (_im(*[_msg(t)] * 101), []), "101 messages"),
    ("pb.no_receivers", lambda t: (_im(_msg(t, [])), []), "a message without receivers"),
    ("pb.101_receivers",
     lambda t: (_im(_msg(t, [pb.receiver(t.id(f"P{i}"), True) for i in range(101)])), []),
     "101 receivers"),
    ("pb.receiver_15_bytes", lambda t: (_im(_msg(t, [pb.receiver(b"x" * 15, True)])), []),
     "a receiver id of 15 bytes"),
    ("pb.server_stats", lambda t: (pb.server_stats(), []), "serverStats"),
    ("pb.channel_stats_offline",
     lambda t: (pb.channel_stats(pb.receiver(t.id("P1"), True)), []), "channelStats, offline"),
    ("pb.channel_stats_empty", lambda t: (pb.fld(1, pb.fld(2, b"")), []),
     "channelStats without channels"),
    ("pb.channel_stats_bad_id", lambda t: (pb.channel_stats(pb.receiver(b"x" * 15, True)), []),
     "channelStats, an id of 15 bytes"),
]:
    _pb(_n, _mk, _d, read=0)


@case("pb.channel_stats_online")
def _(t):
    """channelStats for online P1 (private), U1 (public) and offline P2"""
    watch(t, "CHANNEL_ID={TU1}")
    body = pb.channel_stats(pb.receiver(t.id("P1"), True), pb.receiver(t.id("U1"), False),
                            pb.receiver(t.id("P2"), True))
    t.exchange("pub", "POST", "/pub/?binaryMode=true", (), body)


# ----- browser publishing on /rest/ ------------------------------------------------------------

def _to_u2(t, private=False, sig=True, body='{"n":"m1"}'):
    sigb = t.psig("U2") if sig is True else sig
    return _im(pb.message([pb.receiver(t.id("U2"), private, sigb if sigb else None)], body))


def _rest(name, query, make, doc, read=False):
    @case(name)
    def run(t):
        conn = watch(t, "CHANNEL_ID={TU2}&binaryMode=true", ("P2",)) if read else None
        body = make(t)
        t.expect_body('{"n":"m1"}')
        t.exchange("pub", "POST", "/rest/?" + query, (), body)
        if conn:
            t.ws_read(conn, count=1)
    run.__doc__ = doc


_rest("rest.publish_public", "CHANNEL_ID={TU1}", _to_u2,
      "a browser (TU1) publishes to U2: sender CLIENT U1", read=True)
_rest("rest.channel_stats", "CHANNEL_ID={TU1}",
      lambda t: pb.channel_stats(pb.receiver(t.id("U2"), False, t.psig("U2"))),
      "channelStats of U2 (online)", read=True)
for _n, _q, _mk, _d in [
    ("rest.no_channel", "", _to_u2, "no CHANNEL_ID"),
    ("rest.private_token_only", "CHANNEL_ID={T1}", _to_u2, "a token without public part"),
    ("rest.public_part_unsigned", "CHANNEL_ID={P1}:{U1}", _to_u2, "priv:pub unsigned"),
    ("rest.public_part_wrong_sig", "CHANNEL_ID={P1}:{U1}.{S1}", _to_u2, "priv:pub, wrong sig"),
    ("rest.malformed_token", "CHANNEL_ID=xyz", _to_u2, "a malformed token"),
    ("rest.101_tokens", "CHANNEL_ID=" + "/".join("{TU%d}" % i for i in range(1, 102)), _to_u2,
     "101 tokens"),
    ("rest.private_receiver", "CHANNEL_ID={TU1}", lambda t: _to_u2(t, private=True),
     "a private receiver"),
    ("rest.receiver_without_signature", "CHANNEL_ID={TU1}", lambda t: _to_u2(t, sig=None),
     "a public receiver without signature"),
    ("rest.receiver_wrong_signature", "CHANNEL_ID={TU1}",
     lambda t: _to_u2(t, sig=b"\x00" * 20), "a public receiver with a wrong signature"),
    ("rest.private_before_bad_sig", "CHANNEL_ID={TU1}",
     lambda t: _im(pb.message([pb.receiver(t.id("U3"), True),
                               pb.receiver(t.id("U2"), False, b"x" * 20)], "{}")),
     "a private receiver before a badly signed one"),
    ("rest.server_stats", "CHANNEL_ID={TU1}", lambda t: pb.server_stats(),
     "serverStats from a browser"),
    ("rest.garbage", "CHANNEL_ID={TU1}", lambda t: b"A", "the body A"),
    ("rest.empty_body", "CHANNEL_ID={TU1}", lambda t: b"", "an empty body"),
    ("rest.101_messages", "CHANNEL_ID={TU1}",
     lambda t: _im(*[pb.message([pb.receiver(t.id("U2"), False, t.psig("U2"))], "{}")] * 101),
     "101 messages"),
    ("rest.body_not_json", "CHANNEL_ID={TU1}", lambda t: _to_u2(t, body="A"),
     "a message body that is not JSON"),
]:
    _rest(_n, _q, _mk, _d)

