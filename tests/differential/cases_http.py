"""Routes, methods (spec/errors.md §2), CORS, malformed HTTP and large bodies (README.md §3)."""

import time

from registry import case
from trial import ws

BAD = "CHANNEL_ID=bad"  # a malformed token: answered at once (4010) by both servers


def _simple(name, listener, method, target, headers=(), body=b""):
    @case(name)
    def run(t):
        t.exchange(listener, method, target, headers, body)
    run.__doc__ = f"{method} {target} on the {listener} listener"


# ----- routes and methods (errors.md §2) -------------------------------------------------------

for _n, _l, _m, _t in [
    ("route.unknown_path_sub", "sub", "GET", "/nope/"),
    ("route.unknown_path_pub", "pub", "GET", "/nope/"),
    ("route.root_sub", "sub", "GET", "/"),
    ("route.sub_without_slash", "sub", "GET", f"/sub?{BAD}"),
    ("route.sub_with_suffix", "sub", "GET", f"/sub/anything?{BAD}"),
    ("route.subx", "sub", "GET", f"/subx?{BAD}"),
    ("route.percent_encoded_path", "sub", "GET", f"/%73ub/?{BAD}"),
    ("route.absolute_form_target", "sub", "GET", f"http://diff.test/sub/?{BAD}"),
    ("route.pub_without_slash", "pub", "GET", "/pub?CHANNEL_ID={P1}"),
    ("route.server_stat_without_slash", "pub", "GET", "/server-stat"),
    ("route.server_statistics", "pub", "GET", "/server-statistics"),
    ("method.sub_post", "sub", "POST", f"/sub/?{BAD}"),
    ("method.sub_put", "sub", "PUT", f"/sub/?{BAD}"),
    ("method.sub_delete", "sub", "DELETE", f"/sub/?{BAD}"),
    ("method.sub_patch", "sub", "PATCH", f"/sub/?{BAD}"),
    ("method.sub_head", "sub", "HEAD", f"/sub/?{BAD}"),
    ("method.pub_put", "pub", "PUT", "/pub/?CHANNEL_ID={P1}"),
    ("method.pub_delete", "pub", "DELETE", "/pub/?CHANNEL_ID={P1}"),
    ("method.pub_options", "pub", "OPTIONS", "/pub/?CHANNEL_ID={P1}"),
    ("method.pub_head", "pub", "HEAD", "/pub/?CHANNEL_ID={P1}"),
    ("method.rest_get", "pub", "GET", "/rest/?CHANNEL_ID={TU1}"),
    ("method.rest_put", "pub", "PUT", "/rest/?CHANNEL_ID={TU1}"),
    ("method.rest_delete", "pub", "DELETE", "/rest/?CHANNEL_ID={TU1}"),
    ("method.server_stat_post", "pub", "POST", "/server-stat/"),
    ("method.server_stat_put", "pub", "PUT", "/server-stat/"),
    ("method.server_stat_options", "pub", "OPTIONS", "/server-stat/"),
    ("method.server_stat_head", "pub", "HEAD", "/server-stat/"),
    ("cors.options_sub", "sub", "OPTIONS", "/sub/"),
    ("cors.options_sub_with_channel", "sub", "OPTIONS", "/sub/?CHANNEL_ID={T1}"),
    ("cors.options_rest", "pub", "OPTIONS", "/rest/?CHANNEL_ID={TU1}"),
]:
    _simple(_n, _l, _m, _t)

_simple("cors.options_sub_preflight_headers", "sub", "OPTIONS", "/sub/?CHANNEL_ID={T1}",
        [("Origin", "https://portal.example"), ("Access-Control-Request-Method", "GET"),
         ("Access-Control-Request-Headers", "if-modified-since")])
_simple("cors.error_with_origin", "sub", "GET", f"/sub/?{BAD}",
        [("Origin", "https://portal.example")])


# ----- malformed HTTP ------------------------------------------------------------------------

def _raw(name, listener, data, doc, slow_send=False, first_timeout=None, answers=1):
    @case(name, slow=bool(first_timeout and first_timeout > 8))
    def run(t):
        conn = t.send(listener, data, label=repr(data[:70]), slow=slow_send)
        for i in range(answers):
            r = t.answer(conn, first_timeout, after=(i == answers - 1))
            if r is None:
                break
    run.__doc__ = doc


GOOD_HEAD = f"GET /sub/?{BAD} HTTP/1.1\r\nHost: diff.test\r\n"
_raw("http.bad_request_line", "sub", b"GARBAGE\r\n\r\n", "not a request line")
_raw("http.request_line_without_version", "sub", b"GET /sub/\r\n\r\n", "HTTP/0.9 style")
_raw("http.version_2_0", "sub", f"GET /sub/?{BAD} HTTP/2.0\r\nHost: x\r\n\r\n".encode(),
     "HTTP/2.0 in an HTTP/1 request line")
_raw("http.version_1_2", "sub", f"GET /sub/?{BAD} HTTP/1.2\r\nHost: x\r\n\r\n".encode(),
     "unknown minor version")
_raw("http.unknown_method", "sub", f"FOO /sub/?{BAD} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
     "a method no server knows")
_raw("http.lowercase_method", "sub", f"get /sub/?{BAD} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
     "methods are case-sensitive")
_raw("http.no_host", "sub", f"GET /sub/?{BAD} HTTP/1.1\r\n\r\n".encode(),
     "HTTP/1.1 without Host")
_raw("http.http10_no_host", "sub", f"GET /sub/?{BAD} HTTP/1.0\r\n\r\n".encode(),
     "HTTP/1.0 without Host: closes after the answer")
_raw("http.http10_keepalive", "sub",
     f"GET /sub/?{BAD} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode(),
     "HTTP/1.0 asking for keep-alive")
_raw("http.connection_close", "sub", (GOOD_HEAD + "Connection: close\r\n\r\n").encode(),
     "HTTP/1.1 asking to close")
_raw("http.bare_lf", "sub", f"GET /sub/?{BAD} HTTP/1.1\nHost: x\n\n".encode(),
     "LF instead of CRLF line ends")
_raw("http.leading_empty_lines", "sub", ("\r\n\r\n" + GOOD_HEAD + "\r\n").encode(),
     "empty lines before the request line")
_raw("http.space_in_target", "sub", f"GET /sub/?{BAD} x HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
     "a space inside the target")
_raw("http.asterisk_target", "sub", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", "target '*'")
_raw("http.header_without_colon", "sub", (GOOD_HEAD + "Broken header line\r\n\r\n").encode(),
     "a header line without ':'")
_raw("http.obs_fold", "sub", (GOOD_HEAD + "X-A: 1\r\n  folded\r\n\r\n").encode(),
     "an obsolete folded header line")
_raw("http.head_over_16k", "sub", (GOOD_HEAD + "X-Big: " + "a" * 20000 + "\r\n\r\n").encode(),
     "a 20 KB header")
_raw("http.head_15k", "sub", (GOOD_HEAD + "X-Big: " + "a" * 15000 + "\r\n\r\n").encode(),
     "a 15 KB header (within both limits)")
_raw("http.head_100k", "sub", (GOOD_HEAD + "X-Big: " + "a" * 100000 + "\r\n\r\n").encode(),
     "a 100 KB header")
_raw("http.65_header_fields", "sub",
     (GOOD_HEAD + "".join(f"X-H{i}: {i}\r\n" for i in range(64)) + "\r\n").encode(),
     "65 header fields (with Host)")
_raw("http.content_length_not_a_number", "sub",
     (GOOD_HEAD + "Content-Length: abc\r\n\r\n").encode(), "Content-Length: abc")
_raw("http.content_length_negative", "sub",
     (GOOD_HEAD + "Content-Length: -1\r\n\r\n").encode(), "Content-Length: -1")
_raw("http.two_content_lengths", "pub",
     b"POST /pub/?CHANNEL_ID=00000000000000000000000000000000 HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x", "two different Content-Lengths")
_raw("http.content_length_and_chunked", "pub",
     b"POST /pub/?CHANNEL_ID=00000000000000000000000000000000 HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
     "both Content-Length and chunked")
_raw("http.transfer_encoding_gzip", "pub",
     b"POST /pub/?CHANNEL_ID=00000000000000000000000000000000 HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding other than chunked")
_raw("http.chunked_get_sub", "sub",
     (GOOD_HEAD + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").encode(),
     "a chunked body on a long-poll GET")
_raw("http.body_on_get_then_next", "sub",
     (GOOD_HEAD + "Content-Length: 5\r\n\r\nhello" + GOOD_HEAD + "\r\n").encode(),
     "a GET with a body, then a pipelined GET", answers=2)
_raw("http.pipelined_three", "sub", ((GOOD_HEAD + "\r\n") * 3).encode(),
     "three GETs in one write", answers=3)
_raw("http.byte_by_byte", "sub", (GOOD_HEAD + "\r\n").encode(), "the head in 1-byte pieces",
     slow_send=True)
_raw("http.content_length_longer_than_body", "pub",
     b"POST /pub/?CHANNEL_ID=00000000000000000000000000000000 HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 20\r\n\r\n{\"a\"", "body shorter than its Content-Length, then silence",
     first_timeout=25)
_raw("http.content_length_shorter_than_body", "pub",
     b"POST /pub/?CHANNEL_ID=00000000000000000000000000000000 HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 2\r\n\r\n{}GARBAGE\r\n\r\n",
     "body longer than its Content-Length: the rest is a bad next request", answers=2)
_raw("http.incomplete_head", "sub", GOOD_HEAD.encode(),
     "a head without its blank line, then silence", first_timeout=15)


@case("http.expect_100_continue_publish")
def _(t):
    """POST /pub/ with Expect: 100-continue: the interim 100, then the answer"""
    body = b'{"n":"m1"}'
    t.expect_body(body.decode())
    conn = t.send("pub", "POST /pub/?CHANNEL_ID={P1} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue"
                  f"\r\nContent-Length: {len(body)}\r\n\r\n")
    r = t.answer(conn, after=False)
    if r is not None and r.status == 100:
        conn.send(body)
        t.out("> (body)")
        t.answer(conn)


@case("http.expect_100_continue_get")
def _(t):
    """a long-poll GET with Expect: 100-continue"""
    r, conn = t.exchange("sub", "GET", f"/sub/?{BAD}", [("Expect", "100-continue")],
                         after=False)
    if r is not None and r.status == 100:
        r = t.answer(conn)
    else:
        t.out(f"< then: {conn.after_answer()}")


# ----- large bodies --------------------------------------------------------------------------

MIB = 1048576


def _json_of_size(n):
    return ('"' + "x" * (n - 2) + '"').encode()


@case("large.pub_text_1mib")
def _(t):
    """a text publish of exactly max_payload (1 MiB), delivered to a WebSocket"""
    conn, _ = t.ws_open("?CHANNEL_ID={T1}", record=False)
    t.online(["P1"])
    t.publish("{P1}", _json_of_size(MIB).decode())
    t.ws_read(conn, count=1, idle=3)


@case("large.pub_text_over_1mib", exclusive=True)
def _(t):
    """a text publish of max_payload + 1 bytes"""
    t.exchange("pub", "POST", "/pub/?CHANNEL_ID={P1}", (), _json_of_size(MIB + 1))


@case("large.pub_protobuf_1mib_garbage")
def _(t):
    """1 MiB of 'A' as a protobuf request"""
    t.exchange("pub", "POST", "/pub/?binaryMode=true", (), b"A" * MIB)


@case("large.get_sub_with_1mib_body")
def _(t):
    """a long-poll GET with a 1 MiB body (read and dropped)"""
    t.exchange("sub", "GET", f"/sub/?{BAD}", (), b"x" * MIB)


@case("large.get_sub_with_body_over_1mib")
def _(t):
    """a long-poll GET with a body of max_payload + 1 bytes"""
    t.exchange("sub", "GET", f"/sub/?{BAD}", (), b"x" * (MIB + 1))


@case("large.rest_1mib", exclusive=True)
def _(t):
    """POST /rest/ with a 1 MiB body (the reference's own suite crashes it with this)"""
    t.exchange("pub", "POST", "/rest/?CHANNEL_ID={TU1}", (), b"A" * MIB)


@case("large.rest_over_1mib", exclusive=True)
def _(t):
    """POST /rest/ with max_payload + 1 bytes"""
    t.exchange("pub", "POST", "/rest/?CHANNEL_ID={TU1}", (), b"A" * (MIB + 1))


@case("large.pub_over_1mib_keepalive_next", exclusive=True)
def _(t):
    """an oversized publish followed by a second request on the same connection"""
    conn = t.request("pub", "POST", "/pub/?CHANNEL_ID={P1}", (), _json_of_size(MIB + 1))
    time.sleep(0.2)
    t.request("pub", "GET", "/pub/?CHANNEL_ID={P1}", conn=conn)
    t.answer(conn, after=False)
    t.answer(conn)


@case("http.upgrade_header_on_pub")
def _(t):
    """a WebSocket upgrade on the publisher route (pub listener)"""
    conn = t.send("pub", ws.upgrade_request(t.fmt("/pub/?CHANNEL_ID={P1}")),
                  label="GET /pub/?CHANNEL_ID={P1} with Upgrade: websocket")
    t.answer(conn)
