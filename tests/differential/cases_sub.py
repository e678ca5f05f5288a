"""Long-poll subscribers (spec/longpoll.md, channels.md §2): errors, holds, 200, 304, resume."""

import time

from registry import case

HOLD = 50  # seconds to wait for the end of a hold (40 s on both servers)


def poll_then_publish(t, query, publish_to="{P1}", online=("P1",), headers=(), pb_public=None,
                      binary=False):
    """A long poll, then (once its channels are online) a publish that should end its hold.
    A poll refused at once is answered before the publish; its answer is read afterwards."""
    conn = t.request("sub", "GET", "/sub/?" + query, headers)
    time.sleep(0.2)
    if online:
        t.online(list(online), timeout=1.5)
    if pb_public:
        t.publish_pb([([pb_public], '{"n":"m1"}', 0, None)])
    else:
        t.publish(publish_to)
    return t.answer(conn, first_timeout=5)


def _refused(name, query, doc):
    @case(name)
    def run(t):
        poll_then_publish(t, query)
    run.__doc__ = doc


_refused("lp.no_channel_param", "x=1", "no CHANNEL_ID at all")
_refused("lp.empty_channel_param", "CHANNEL_ID=", "CHANNEL_ID empty")
_refused("lp.malformed_token", "CHANNEL_ID=xyz", "a token that is not 32 hex digits")
_refused("lp.unsigned_token_with_key", "CHANNEL_ID={P1}", "a bare id while a key is set")
_refused("lp.wrong_signature", "CHANNEL_ID={P1}.{S2}", "the signature of another channel")
_refused("lp.signature_uppercase", "CHANNEL_ID={P1}.{SX1}", "the signature in upper case")
_refused("lp.signature_sha256_length", "CHANNEL_ID={P1}.{S1}{S1}",
         "an 80-digit signature (two sigs)")
_refused("lp.public_part_unsigned", "CHANNEL_ID={P1}:{U1}", "priv:pub without signature")
_refused("lp.public_part_private_sig", "CHANNEL_ID={P1}:{U1}.{S1}",
         "priv:pub signed as the private id alone")
_refused("lp.one_bad_among_good", "CHANNEL_ID={T1}/{P2}", "a signed token and a bare one")
_refused("lp.empty_element", "CHANNEL_ID={T1}//{T2}", "an empty element between two tokens")
_refused("lp.trailing_slash", "CHANNEL_ID={T1}/", "a trailing '/'")
_refused("lp.percent_encoded_token", "CHANNEL_ID={T1}%2F{T2}", "tokens joined by %2F")
_refused("lp.binary_mode_other_value", "CHANNEL_ID={T1}&binaryMode=1",
         "binaryMode=1 means text")
_refused("lp.held_text", "CHANNEL_ID={T1}", "a held text poll ended by a publish")
_refused("lp.held_binary", "CHANNEL_ID={T1}&binaryMode=true",
         "a held binary poll ended by a publish")
_refused("lp.held_with_mid_ahead", "CHANNEL_ID={T1}&mid=99999999999999999999999999",
         "a mid above every id, then a live publish")
_refused("lp.held_bad_mid", "CHANNEL_ID={T1}&mid=1234", "a mid that is not 26 digits")




@case("lp.held_two_channels")
def _(t):
    """T1/T2 held, a publish to P2"""
    poll_then_publish(t, "CHANNEL_ID={T1}/{T2}", "{P2}", ("P1", "P2"))


@case("lp.held_public_receiver")
def _(t):
    """TU1 held, a trusted protobuf publish to the public id U1"""
    poll_then_publish(t, "CHANNEL_ID={TU1}", pb_public=__import__("pb").receiver(
        t.id("U1"), False))


@case("lp.held_public_receiver_binary")
def _(t):
    """TU1 held in binary mode, a trusted protobuf publish to U1"""
    poll_then_publish(t, "CHANNEL_ID={TU1}&binaryMode=true",
                      pb_public=__import__("pb").receiver(t.id("U1"), False))


@case("lp.100_tokens")
def _(t):
    """100 signed tokens (the limit), a publish to the last"""
    q = "/".join("{T%d}" % i for i in range(1, 101))
    poll_then_publish(t, "CHANNEL_ID=" + q, "{P100}", ("P100",))


@case("lp.101_tokens")
def _(t):
    """101 signed tokens, a publish to the first"""
    q = "/".join("{T%d}" % i for i in range(1, 102))
    poll_then_publish(t, "CHANNEL_ID=" + q, "{P1}", ("P1",))


@case("lp.101_tokens_first_bad")
def _(t):
    """101 tokens of which the first is malformed"""
    q = "/".join(["bad"] + ["{T%d}" % i for i in range(2, 102)])
    t.exchange("sub", "GET", "/sub/?CHANNEL_ID=" + q)


def _store(t, n=3, channel="{P1}", expiry=60, settle=0.3):
    """Stored publishes. The reference answers a publish before it stores the message
    (routing.js:89 then application.js:149), so a replay asked for at once can miss it; `settle`
    waits for that (lp.replay_right_after_publish shows the race itself)."""
    for _ in range(n):
        t.publish(channel, expiry=expiry)
    time.sleep(settle)


def _replay(name, binary, extra_headers=(), doc=""):
    @case(name)
    def run(t):
        _store(t)
        mode = "&binaryMode=true" if binary else ""
        t.exchange("sub", "GET", "/sub/?CHANNEL_ID={T1}&mid={Z26}" + mode, extra_headers)
        t.exchange("sub", "GET", "/sub/?CHANNEL_ID={T1}&mid={M}" + mode, extra_headers,
                   M=t.mid_of("m1"))
    run.__doc__ = doc


_replay("lp.replay_text", False, doc="3 stored messages: replay from 0, then from m1")
_replay("lp.replay_binary", True, doc="the same in binary mode")
_replay("lp.replay_if_modified_since", False,
        [("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT"), ("If-None-Match", "0")],
        "the same with If-Modified-Since / If-None-Match")


@case("lp.replay_right_after_publish")
def _(t):
    """3 stored publishes, then at once a replaying poll (no settling pause)"""
    _store(t, settle=0)
    t.exchange("sub", "GET", "/sub/?CHANNEL_ID={T1}&mid={Z26}")


@case("lp.replay_two_channels_order")
def _(t):
    """stored messages on P1 and P2 interleaved, replayed for T1/T2 in id order"""
    for ch in ("{P1}", "{P2}", "{P1}", "{P2}"):
        t.publish(ch, expiry=60)
    time.sleep(0.3)
    t.exchange("sub", "GET", "/sub/?CHANNEL_ID={T1}/{T2}&mid={Z26}")


@case("lp.replay_message_on_both_channels")
def _(t):
    """one stored message published to P1/P2, replayed for T1/T2: once or twice?"""
    t.publish("{P1}/{P2}", expiry=60)
    time.sleep(0.3)
    t.exchange("sub", "GET", "/sub/?CHANNEL_ID={T1}/{T2}&mid={Z26}")


@case("lp.keepalive_second_request")
def _(t):
    """a refused poll, then a replaying poll on the same connection"""
    _store(t, 1)
    conn = t.request("sub", "GET", "/sub/?CHANNEL_ID=bad")
    t.answer(conn, after=False)
    t.request("sub", "GET", "/sub/?CHANNEL_ID={T1}&mid={Z26}", conn=conn)
    t.answer(conn)


@case("lp.http10_replay")
def _(t):
    """an HTTP/1.0 replaying poll: answered, then closed"""
    _store(t, 1)
    t.exchange("sub", "GET", "/sub/?CHANNEL_ID={T1}&mid={Z26}", version="HTTP/1.0")


@case("lp.connection_close_replay")
def _(t):
    """a replaying poll with Connection: close"""
    _store(t, 1)
    t.exchange("sub", "GET", "/sub/?CHANNEL_ID={T1}&mid={Z26}", [("Connection", "close")])


# ----- 304 at the end of the hold (slow: 40 s) ---------------------------------------------------

def _hold(name, query, doc, before=None):
    @case(name, slow=True)
    def run(t):
        if before:
            before(t)
        q = query if "{M}" not in query else query.replace("{M}", t.mid_of("m1"))
        t.exchange("sub", "GET", "/sub/?" + q, first_timeout=HOLD)
    run.__doc__ = doc


def _stored_one(t):
    _store(t, 1)
    t.exchange("sub", "GET", "/sub/?CHANNEL_ID={T1}&mid={Z26}")


_hold("lp.304_no_mid", "CHANNEL_ID={T1}", "a hold that ends without messages, no mid")
_hold("lp.304_zero_mid", "CHANNEL_ID={T1}&mid={Z26}", "the same with mid = 26 zeros")
_hold("lp.304_bad_mid", "CHANNEL_ID={T1}&mid=abc", "the same with mid=abc")
_hold("lp.304_binary", "CHANNEL_ID={T1}&binaryMode=true&mid={Z26}", "a binary-mode 304")
_hold("lp.304_after_stored_no_mid", "CHANNEL_ID={T1}",
      "a stored message, then a poll without mid: Last-Message-Id", before=_stored_one)
_hold("lp.304_after_stored_with_mid", "CHANNEL_ID={T1}&mid={M}",
      "a stored message, then a poll from its id", before=_stored_one)
_hold("lp.304_unstored_publish", "CHANNEL_ID={T1}&mid={Z26}",
      "a message without expiry is not replayed",
      before=lambda t: t.publish("{P1}"))


@case("lp.304_connection_close", slow=True)
def _(t):
    """a hold that ends without messages, with Connection: close"""
    t.exchange("sub", "GET", "/sub/?CHANNEL_ID={T1}&mid={Z26}", [("Connection", "close")],
               first_timeout=HOLD)
