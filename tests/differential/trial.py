"""One run of one case against one server: request helpers, and the transcript they record.

A transcript is a list of lines. Lines starting with "~" are notes: shown, never compared.
Every other line is compared with the other server's transcript after normalization.

Normalizers (each is applied to both servers alike, so what remains different is real):
  N1 channel ids, signatures: the per-run random ids and their HMACs are written as the
     placeholder of the case's template (<P1>, <U1>, <T1> = P1.sig, <TU1> = P1:U1.sig,
     <sig(P1)>, <psig(U1)>). Fresh ids are made for every case and every server.
  N2 message ids: a 26-digit id becomes mid(<label>), where the label is the one of the message
     the harness published with that body (m1, m2, ... in publish order); an id never seen with
     a known body is mid?1, mid?2... in order of appearance. The text format's "id" field must
     equal the mid's last 16 digits and is written <id> (or <id≠mid: N>).
  N3 time fields: text-format "tag" (3 digits) -> <tag>, "time" (an HTTP date) -> <date>;
     protobuf `created` -> <now> when within 10 minutes of the harness clock.
  N4 headers: only COMPARED_HEADERS are compared, sorted by name (their order is a note); a
     helper publish inside a case about something else compares only its status line; in
     `Connection` the token keep-alive (the HTTP/1.1 default) is dropped. Every other header
     (Date, Keep-Alive,
     Content-Length, Transfer-Encoding, Cache-Control, ...) and the body framing (length N /
     chunked / until-close) are notes.
  N5 /server-stat/ JSON: compared as structure with sorted keys; pid, date, processUniqueId and
     counters become <pid>, <ms-now>, <str>, <int>; `limits` and `clusterMode` are kept;
     `daily` keeps its two map keys only (its counts are global to the server).
  N6 WebSocket data frames: consecutive data frames of one opcode are compared as one message
     sequence (the reference joins output for 400 ms; how many frames carry the messages is a
     note). Protobuf messages of several outgoingMessages responses are listed as one
     sequence msg[0..]; the grouping into responses is a note.
  N7 long bodies (over 400 bytes, not messages) are shown as length + SHA-1 + first bytes.
"""

import hashlib
import hmac
import json
import os
import re
import time

import pb
import ws
from wire import Conn, Eof, Timeout, request_bytes

COMPARED_HEADERS = [
    "content-type", "access-control-allow-origin", "access-control-allow-methods",
    "access-control-allow-headers", "access-control-expose-headers",
    "access-control-allow-credentials", "access-control-max-age", "allow", "connection",
    "expires", "last-message-id", "etag", "last-modified", "location", "upgrade",
    "sec-websocket-accept", "sec-websocket-version", "sec-websocket-protocol",
    "sec-websocket-extensions", "retry-after", "www-authenticate", "vary",
]
ZERO_MID = "0" * 26
LONG_BODY = 400

_TEXT_MSG = re.compile(r"#!NGINXNMS!#(.*?)#!NGINXNME!#", re.S)
_HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
_MID = re.compile(r"(?<!\d)\d{26}(?!\d)")


class Target:
    def __init__(self, name, sub, pub, key):
        self.name, self.sub, self.pub, self.key = name, sub, pub, key

    def addr(self, listener):
        return self.sub if listener == "sub" else self.pub


class Trial:
    def __init__(self, target):
        self.target = target
        self.key = target.key.encode()
        self.lines = []
        self.hexes = {}  # placeholder name -> hex id
        self.subst = {}  # raw text -> placeholder (N1)
        self.body_label = {}  # published body -> label (N2)
        self.mid_label = {}  # mid -> label
        self.conns = []
        self.published = 0

    # ----- channels (N1) ----------------------------------------------------------------------

    def sign(self, text):
        return hmac.new(self.key, text.encode(), hashlib.sha1).hexdigest()

    def hex(self, name):
        """P<n>: a private id, U<n>: a public id, generated on first use."""
        if name not in self.hexes:
            h = os.urandom(16).hex()
            self.hexes[name] = h
            self.subst[h] = f"<{name}>"
        return self.hexes[name]

    def token(self, name):
        """T<n>: P<n>.sig;  TU<n>: P<n>:U<n>.sig"""
        if name.startswith("TU"):
            n = name[2:]
            ids = f"{self.hex('P' + n)}:{self.hex('U' + n)}"
        else:
            ids = self.hex("P" + name[1:])
        sig = self.sign(ids)
        self.subst[sig] = f"<sig({name})>"
        return f"{ids}.{sig}"

    def psig(self, name):
        """The raw public signature of U<n> (HMAC of 'public:<hex>')."""
        raw = hmac.new(self.key, f"public:{self.hex(name)}".encode(), hashlib.sha1).digest()
        self.subst[raw.hex()] = f"<psig({name})>"
        return raw

    def id(self, name):
        return bytes.fromhex(self.hex(name))

    def fmt(self, template, **extra):
        """Fills {P1} {U1} {T1} {TU1} {S1} (sig of P1 alone) {SX1} (upper case) {Z26} and extras."""
        def repl(m):
            k = m.group(1)
            if k in extra:
                return str(extra[k])
            if k == "Z26":
                return ZERO_MID
            if k[0] in "PU" and k[1:].isdigit():
                return self.hex(k)
            if k[0] == "T":
                return self.token(k)
            if k.startswith("SX"):  # the signature of P<n> in upper case
                return self.sign(self.hex("P" + k[2:])).upper()
            if k[0] == "S":
                return self.sign(self.hex("P" + k[1:]))
            raise KeyError(k)
        return re.sub(r"\{([A-Za-z0-9]+)\}", repl, template)

    # ----- recording --------------------------------------------------------------------------

    def out(self, line):
        self.lines.append(line)

    def note(self, line):
        self.lines.append("~ " + line)

    def norm(self, s):
        for raw, ph in self.subst.items():
            if raw in s:
                s = s.replace(raw, ph)
        return s

    def expect_body(self, body, label=None):
        self.published += 1
        label = label or f"m{self.published}"
        self.body_label.setdefault(body, label)
        return label

    def learn_mid(self, mid, body):
        label = self.body_label.get(body)
        if label and mid not in self.mid_label:
            self.mid_label[mid] = label

    def mid_of(self, label):
        """The raw id a message was seen with (for a later `mid=`); Z26 when never seen."""
        for mid, lab in self.mid_label.items():
            if lab == label:
                return mid
        self.note(f"(the id of {label} was never seen)")
        return ZERO_MID

    def finish(self):
        """Applies N2 over the whole transcript and returns it."""
        unknown = {}

        def repl(m):
            mid = m.group(0)
            if mid == ZERO_MID:
                return "<Z26>"
            if mid in self.mid_label:
                return f"mid({self.mid_label[mid]})"
            unknown.setdefault(mid, f"mid?{len(unknown) + 1}")
            return unknown[mid]
        for c in self.conns:
            c.close()
        return [_MID.sub(repl, line) for line in self.lines]

    # ----- bodies -----------------------------------------------------------------------------

    def text_messages(self, text):
        """Normalized lines of a text-format payload (N2, N3)."""
        lines, pos = [], 0
        for m in _TEXT_MSG.finditer(text):
            if m.start() > pos:
                lines.append("  text outside messages: " + json.dumps(text[pos:m.start()]))
            pos = m.end()
            lines.append("  msg " + self.one_text_message(m.group(1)))
        if pos < len(text):
            lines.append("  text outside messages: " + json.dumps(text[pos:][:200]))
        return lines

    def one_text_message(self, js):
        mm = re.search(r'"mid":"(\d{26})"', js)
        tm = re.search(r'"text":(.*)\}$', js, re.S)
        if mm and tm:
            self.learn_mid(mm.group(1), tm.group(1))
            if mm.group(1) in self.mid_label:  # N2 now, so that N7's digest is comparable
                js = js.replace(f'"mid":"{mm.group(1)}"',
                                f'"mid":"mid({self.mid_label[mm.group(1)]})"', 1)
        if mm:
            want = int(mm.group(1)[10:])  # (mm was matched before the replacement)

            def idrepl(x):
                return '"id":<id>' if int(x.group(1)) == want else f'"id":<id≠mid: {x.group(1)}>'
            js = re.sub(r'"id":(\d+)', idrepl, js, count=1)
        js = re.sub(r'"tag":"\d{3}"', '"tag":"<tag>"', js, count=1)
        js = re.sub(r'"time":"([^"]*)"', lambda x: '"time":"<date>"' if _HTTP_DATE.fullmatch(
            x.group(1)) else x.group(0), js, count=1)
        js = self.norm(js)
        if len(js) > LONG_BODY:  # N7
            digest = hashlib.sha1(js.encode()).hexdigest()[:12]
            return f"({len(js)} chars, sha1 {digest}) {js[:120]}…{js[-40:]}"
        return js

    def pb_lines(self, data):
        lines, grouping, messages = pb.dump_response_batch(data, self.stats_hook)
        for msg in messages:
            mid, body = pb.field_of(msg, "id"), pb.field_of(msg, "body")
            if isinstance(mid, bytes) and isinstance(body, bytes):
                self.learn_mid(mid.hex(), body.decode("utf-8", "replace"))
        return ["  " + self.norm(x) for x in lines], grouping

    def stats_hook(self, name, s):
        return normalize_stats(s) if name == "json" else s

    def body_lines(self, body, ctype):
        """Lines for an HTTP body or a WebSocket payload."""
        if not body:
            return ["  body: (empty)"], None
        if ctype == "binary":
            lines, grouping = self.pb_lines(body)
            if _has_msg(lines):  # N6: the length depends on the grouping
                return ["  protobuf:"] + lines, f"{len(body)} bytes; {grouping}"
            return [f"  protobuf ({len(body)} bytes):"] + lines, None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and "#!NGINXNMS!#" in text:
            return ["  text messages:"] + self.text_messages(text), None
        if text is not None and text.lstrip().startswith("[") and '"pid"' in text:
            return ["  server-stat: " + normalize_stats(text)], None
        if text is None or len(body) > LONG_BODY:
            return [f"  body({len(body)} bytes, sha1 {hashlib.sha1(body).hexdigest()[:12]}): "
                    + self.norm(repr(body[:80]))], None
        return [f"  body({len(body)}): " + self.norm(json.dumps(text, ensure_ascii=False))], None

    # ----- HTTP -------------------------------------------------------------------------------

    def connect(self, listener):
        c = Conn(self.target.addr(listener))
        self.conns.append(c)
        return c

    def send(self, listener, template, body=b"", conn=None, label=None, slow=False, **extra):
        """Sends a request made from a template (its first line is recorded with placeholders)."""
        conn = conn or self.connect(listener)
        head = self.fmt(template, **extra).encode("latin-1") if isinstance(template, str) \
            else template
        first = (label or (template if isinstance(template, str) else repr(template[:60])))
        first = first.split("\r\n", 1)[0] if isinstance(first, str) else first
        size = f" +body {len(body)} bytes" if body else ""
        self.out(f"> [{listener}] {first}{size}")
        data = head + body
        ok = conn.send_slowly(data) if slow else conn.send(data)
        if not ok:
            self.out("  (send failed: connection closed by server)")
        return conn

    def request(self, listener, method, target, headers=(), body=b"", conn=None, version="HTTP/1.1",
                **extra):
        filled = [(k, self.fmt(v, **extra)) for k, v in headers]
        head = request_bytes(method, self.fmt(target, **extra), filled, b"", version,
                             length=False)
        head = head[:-2]
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n".encode()
        head += b"\r\n"
        hdrs = "".join(f" [{k}: {v}]" for k, v in headers)
        return self.send(listener, head, body, conn, label=f"{method} {target} {version}{hdrs}")

    def answer(self, conn, first_timeout=None, after=True, method="GET", mute=False,
               quiet=False):
        """Reads and records one answer; `after` also records whether the connection stays open."""
        try:
            resp = conn.read_response(first_timeout, method)
        except Eof:
            self.out("< (connection closed without an answer)" if not conn.reset else
                     "< (connection reset without an answer)")
            return None
        except Timeout:
            self.out(f"< (no answer within {first_timeout or conn.timeout:.0f} s)")
            return None
        if mute:
            return resp
        self.record(resp, quiet)
        if after and resp.status != 101:
            self.out(f"< then: {conn.after_answer()}")
        return resp

    def exchange(self, listener, method, target, headers=(), body=b"", first_timeout=None,
                 after=True, quiet=False, **extra):
        conn = self.request(listener, method, target, headers, body, **extra)
        return self.answer(conn, first_timeout, after, method, quiet=quiet), conn

    def record(self, resp, quiet=False):
        """quiet: only the status line is compared (a helper publish of a case about
        something else); the rest of the answer becomes notes."""
        self.out("< " + resp.status_line)
        if quiet:
            self.note(f"answer: {resp.framing}; {resp.headers}; {resp.body[:80]!r}")
            return
        other, shown = [], []
        for k, v in resp.headers:
            lk = k.lower()
            if lk == "connection":
                toks = [x.strip() for x in v.lower().split(",") if x.strip() != "keep-alive"]
                if toks:
                    shown.append((lk, f"< {k}: {', '.join(toks)}"))
                else:
                    other.append(f"{k}: {v}")
            elif lk in COMPARED_HEADERS:
                shown.append((lk, self.norm(f"< {k}: {v}")))
            else:
                other.append(f"{k}: {v}" if lk not in ("date",) else "Date")
        for _, line in sorted(shown, key=lambda x: x[0]):  # N4: order is not compared
            self.out(line)
        order = [k for k, _ in resp.headers if k.lower() in COMPARED_HEADERS]
        self.note("header order: " + ", ".join(order))
        self.note("framing: " + resp.framing + ("; other headers: " + ", ".join(other)
                                               if other else ""))
        ctype = (resp.header("content-type") or "").lower()
        kind = "binary" if "octet-stream" in ctype else "text"
        lines, grouping = self.body_lines(resp.body, kind)
        for x in lines:
            self.out(x)
        if grouping:
            self.note(grouping)

    # ----- publishing helpers -----------------------------------------------------------------

    def publish(self, channels, body=None, expiry=None, label=None, headers=(), detail=False):
        """Text publish on /pub/. Unless `detail`, only its status line is compared (the
        answer's form is the subject of the pub.* cases; elsewhere it would repeat)."""
        label = label or f"m{self.published + 1}"
        if body is None:
            body = json.dumps({"n": label})
        self.expect_body(body, label)
        hdrs = list(headers) + ([("Message-Expiry", str(expiry))] if expiry is not None else [])
        resp, conn = self.exchange("pub", "POST", f"/pub/?CHANNEL_ID={channels}", hdrs,
                                   body.encode() if isinstance(body, str) else body, after=False,
                                   quiet=not detail)
        if resp is not None and resp.status == 200 and resp.body.startswith(b'{"mid":"'):
            self.mid_label.setdefault(resp.body[8:34].decode(), label)
        return resp

    def publish_pb(self, messages, listener="pub", path="/pub/?binaryMode=true", record=True):
        """Protobuf publish: messages = [(receivers, body, expiry, type)]."""
        encoded = []
        for receivers, body, expiry, mtype in messages:
            self.expect_body(body)
            encoded.append(pb.message(receivers, body, expiry, mtype))
        resp, _ = self.exchange(listener, "POST", path, (), pb.incoming_messages(*encoded),
                                after=False)
        return resp

    def online(self, channel_names, want=1, timeout=3.0):
        """Waits (unrecorded) until GET /pub/ reports every channel online; a helper, not a
        check: the reference answers this from the same map that delivers."""
        ids = "/".join(self.hex(n) for n in channel_names)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = Conn(self.target.pub)
            try:
                c.send(request_bytes("GET", f"/pub/?CHANNEL_ID={ids}"))
                r = c.read_response()
                infos = json.loads(r.body or b"{}").get("infos", [])
                seen = {i["channel"]: i["subscribers"] for i in infos}
                if all(seen.get(self.hex(n), 0) >= want for n in channel_names):
                    return True
            except (Eof, Timeout, ValueError, OSError):
                pass
            finally:
                c.close()
            time.sleep(0.05)
        self.note("(channels did not come online in time)")
        return False

    # ----- WebSocket --------------------------------------------------------------------------

    def ws_open(self, query, path="/sub/", key=ws.SAMPLE_KEY, version="13", extra=(),
                record=True):
        conn = self.connect("sub")
        target = path + self.fmt(query)
        data = ws.upgrade_request(target, key, version, extra)
        hdrs = "".join(f" [{k}: {v}]" for k, v in extra)
        self.out(f"> [sub] WS upgrade {path}{query} key={key} version={version}{hdrs}")
        conn.send(data)
        resp = self.answer(conn, mute=not record)
        if resp is not None and resp.status == 101 and key and record:
            ok = resp.header("sec-websocket-accept") == ws.accept_value(key)
            self.out(f"< accept value {'correct' if ok else 'WRONG'}")
        return conn, resp

    def ws_send(self, conn, data, label):
        self.out(f"> ws {label}")
        if not conn.send(data):
            self.out("  (send failed)")

    def ws_read(self, conn, idle=1.0, total=10.0, count=None, binary=False):
        """Reads and records frames (N6). count: stop after this many messages arrived."""
        def enough(frames):
            if count is None:
                return False
            n = 0
            for f in frames:
                if f.opcode == ws.OP_TEXT:
                    n += f.payload.count(b"#!NGINXNMS!#")
                elif f.opcode == ws.OP_BINARY:
                    n += len(pb.dump_response_batch(f.payload)[2]) or 1
            return n >= count
        frames, end = ws.read_frames(conn, idle, enough, total)
        run = None
        for f in frames:
            flags = f"{'' if f.fin else ' FIN=0'}{f' RSV={f.rsv}' if f.rsv else ''}" \
                    f"{' MASKED' if f.masked else ''}"
            if f.opcode in (ws.OP_TEXT, ws.OP_BINARY) and not flags:
                if run and run[0] == f.opcode:
                    run[1].append(f.payload)
                    continue
                self._flush_run(run)
                run = (f.opcode, [f.payload])
                continue
            self._flush_run(run)
            run = None
            name = ws.OP_NAMES.get(f.opcode, f"opcode {f.opcode}")
            if f.opcode == ws.OP_CLOSE:
                code = f.close_code()
                reason = f.payload[2:]
                self.out(f"< ws close{flags} code={code} reason={reason!r}"
                         if code is not None else f"< ws close{flags} payload={f.payload!r}")
            else:
                self.out(f"< ws {name}{flags} payload={self.norm(repr(f.payload[:200]))}")
        self._flush_run(run)
        if end == "stopped":
            end = "idle"
        self.out(f"< ws end: {end}")
        return frames, end

    def _flush_run(self, run):
        if not run:
            return
        opcode, payloads = run
        name = ws.OP_NAMES[opcode]
        self.out(f"< ws {name} data:")
        if opcode == ws.OP_TEXT:
            try:
                text = b"".join(payloads).decode("utf-8")
                lines = self.text_messages(text) if "#!NGINXNMS" in text else \
                    ["  " + self.norm(json.dumps(text[:300]))]
            except UnicodeDecodeError:
                lines = ["  invalid UTF-8 text payload"]
            grouping = None
        else:
            lines, grouping = self.pb_lines(b"".join(payloads))
        for x in lines:
            self.out(x)
        self.note(f"{len(payloads)} {name} frame(s)" + (f"; {grouping}" if grouping else ""))


def _has_msg(lines):
    return any(x.lstrip().startswith("msg[") for x in lines)


def normalize_stats(text):
    """N5."""
    try:
        data = json.loads(text)
    except ValueError:
        return "unparsable JSON: " + text[:200]
    now_ms = time.time() * 1000

    def entry(d):
        if not isinstance(d, dict):
            return f"<not an object: {type(d).__name__}>"
        out = {}
        for k, v in d.items():
            if k == "pid":
                out[k] = "<pid>" if isinstance(v, int) else f"<pid not int: {v!r}>"
            elif k == "date":
                out[k] = "<ms-now>" if isinstance(v, (int, float)) and abs(v - now_ms) < 6e5 \
                    else f"<date not ms-now: {v!r}>"
            elif k in ("limits", "clusterMode"):
                out[k] = v
            elif k == "daily":
                out[k] = {kk: "<counts>" for kk in v} if isinstance(v, dict) else repr(v)
            elif isinstance(v, bool):
                out[k] = v
            elif isinstance(v, (int, float)):
                out[k] = "<int>"
            elif isinstance(v, str):
                out[k] = "<str>"
            elif isinstance(v, list):
                out[k] = "<list>"
            else:
                out[k] = "<object>"
        return out
    if isinstance(data, list):
        norm = [entry(d) for d in data]
    else:
        norm = {"<not an array>": entry(data)}
    return json.dumps(norm, sort_keys=True, separators=(",", ":"))
