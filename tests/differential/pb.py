"""A small protobuf (proto3) encoder and schema-driven decoder for the Bitrix push messages.

Only the messages of the reference's lib/models/*.proto that cross the wire are known (the field
numbers are also in spec/binary.md §7). The decoder keeps every field as it appears, in wire
order, with its wire type, so an explicitly encoded default value or an unknown field shows in
the dump: comparing dumps compares the bytes, except for values normalized later (ids, times).
"""

import json
import struct
import time

# name -> {field number: (field name, kind, message type)}; kind: msg, bytes, string, uint, bool,
# enum, fixed32
SCHEMA = {
    "RequestBatch": {1: ("requests", "msg", "Request")},
    "Request": {1: ("incomingMessages", "msg", "IncomingMessagesRequest"),
                2: ("channelStats", "msg", "ChannelStatsRequest"),
                3: ("serverStats", "msg", "ServerStatsRequest")},
    "IncomingMessagesRequest": {1: ("messages", "msg", "IncomingMessage")},
    "IncomingMessage": {1: ("receivers", "msg", "Receiver"), 2: ("sender", "msg", "Sender"),
                        3: ("body", "string", None), 4: ("expiry", "uint", None),
                        5: ("type", "string", None)},
    "Receiver": {1: ("id", "bytes", None), 2: ("isPrivate", "bool", None),
                 3: ("signature", "bytes", None)},
    "ChannelStatsRequest": {1: ("channels", "msg", "ChannelId")},
    "ChannelId": {1: ("id", "bytes", None), 2: ("isPrivate", "bool", None),
                  3: ("signature", "bytes", None)},
    "ServerStatsRequest": {},
    "ResponseBatch": {1: ("responses", "msg", "Response")},
    "Response": {1: ("outgoingMessages", "msg", "OutgoingMessagesResponse"),
                 2: ("channelStats", "msg", "ChannelStatsResponse"),
                 3: ("serverStats", "msg", "JsonResponse")},
    "OutgoingMessagesResponse": {1: ("messages", "msg", "OutgoingMessage")},
    "OutgoingMessage": {1: ("id", "bytes", None), 2: ("body", "string", None),
                        3: ("expiry", "uint", None), 4: ("created", "fixed32", None),
                        5: ("sender", "msg", "Sender")},
    "ChannelStatsResponse": {1: ("channels", "msg", "ChannelStats")},
    "ChannelStats": {1: ("id", "bytes", None), 2: ("isPrivate", "bool", None),
                     3: ("isOnline", "bool", None)},
    "JsonResponse": {1: ("json", "string", None)},
    "Sender": {1: ("type", "enum", None), 2: ("id", "bytes", None)},
}
SENDER_TYPES = {0: "UNKNOWN", 1: "CLIENT", 2: "BACKEND"}

# ---------------------------------------------------------------------------------------------
# encoding


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fld(num, value):
    """A field: bytes/str -> length-delimited, bool/int -> varint."""
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray)):
        return varint(num << 3 | 2) + varint(len(value)) + bytes(value)
    return varint(num << 3 | 0) + varint(int(value))


def receiver(cid, private, signature=None):
    out = fld(1, cid)
    if private:
        out += fld(2, True)
    if signature:
        out += fld(3, signature)
    return out


def message(receivers, body, expiry=0, mtype=None, sender=None):
    out = b"".join(fld(1, r) for r in receivers)
    if sender is not None:
        out += fld(2, sender)
    out += fld(3, body)
    if expiry:
        out += fld(4, expiry)
    if mtype:
        out += fld(5, mtype)
    return out


def incoming_messages(*messages):
    return fld(1, fld(1, b"".join(fld(1, m) for m in messages)))


def channel_stats(*channels):
    return fld(1, fld(2, b"".join(fld(1, c) for c in channels)))


def server_stats():
    return fld(1, fld(3, b""))


# ---------------------------------------------------------------------------------------------
# decoding


class DecodeError(Exception):
    pass


def _read_varint(buf, i):
    shift = n = 0
    while True:
        if i >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def decode(buf, mtype):
    """-> [(name, kind, value)] in wire order; value is a list for sub-messages."""
    schema = SCHEMA.get(mtype, {})
    out, i = [], 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        name, kind, sub = schema.get(num, (f"#{num}", None, None))
        if wt == 0:
            v, i = _read_varint(buf, i)
        elif wt == 1:
            if i + 8 > len(buf):
                raise DecodeError("truncated fixed64")
            v, i = struct.unpack("<Q", buf[i:i + 8])[0], i + 8
        elif wt == 5:
            if i + 4 > len(buf):
                raise DecodeError("truncated fixed32")
            v, i = struct.unpack("<I", buf[i:i + 4])[0], i + 4
        elif wt == 2:
            n, i = _read_varint(buf, i)
            if i + n > len(buf):
                raise DecodeError("truncated length-delimited field")
            v, i = bytes(buf[i:i + n]), i + n
            if kind == "msg":
                v = decode(v, sub)
        else:
            raise DecodeError(f"wire type {wt}")
        expected = {"msg": 2, "bytes": 2, "string": 2, "uint": 0, "bool": 0, "enum": 0,
                    "fixed32": 5}.get(kind)
        if kind is not None and expected != wt:
            name = f"{name}(wire type {wt}!)"
            kind = None
        out.append((name, kind, v))
    return out


def _scalar(name, kind, v, hook):
    if kind == "bytes":
        return f"bytes({len(v)}) {v.hex()}"
    if kind == "string":
        try:
            s = v.decode("utf-8")
        except UnicodeDecodeError:
            return f"invalid-utf8 {v.hex()}"
        return json.dumps(hook(name, s), ensure_ascii=False)
    if kind == "enum" and name == "type":
        return f"{SENDER_TYPES.get(v, '?')}({v})"
    if kind == "fixed32" and name == "created":
        return "<now>" if abs(v - time.time()) < 600 else f"{v} (not now!)"
    if isinstance(v, bytes):
        return f"raw({len(v)}) {v.hex()}"
    return str(v)


def render(tree, prefix, hook, lines):
    counts = {}
    for name, kind, v in tree:
        idx = counts.get(name, 0)
        counts[name] = idx + 1
        path = f"{prefix}{name}[{idx}]" if kind == "msg" and name.endswith("s") else \
            f"{prefix}{name}"
        if kind == "msg":
            if not v:
                lines.append(f"{path} = {{}}")
            render(v, path + ".", hook, lines)
        else:
            lines.append(f"{path} = {_scalar(name, kind, v, hook)}")


def dump_response_batch(data, hook=lambda name, s: s):
    """Lines describing a ResponseBatch. The messages of all outgoingMessages responses are
    listed as one sequence `msg[k]` (how they are grouped into responses is returned apart)."""
    try:
        tree = decode(data, "ResponseBatch")
    except DecodeError as e:
        return [f"undecodable ResponseBatch ({e}): {data[:64].hex()}"], "", []
    lines, grouping, messages, k = [], [], [], 0
    for r, (name, kind, resp) in enumerate(tree):
        if name != "responses":
            render([(name, kind, resp)], "", hook, lines)
            continue
        if len(resp) == 1 and resp[0][0] == "outgoingMessages":
            n = 0
            for mname, mkind, msg in resp[0][2]:
                if mname != "messages":
                    render([(mname, mkind, msg)], f"responses[{r}].outgoingMessages.", hook,
                           lines)
                    continue
                messages.append(msg)
                render(msg, f"msg[{k}].", hook, lines)
                k += 1
                n += 1
            grouping.append(str(n))
        else:
            render(resp, f"responses[{r}].", hook, lines)
            grouping.append("-")
    return lines, "responses holding messages: " + ",".join(grouping), messages


def field_of(tree, name):
    for n, _, v in tree:
        if n == name:
            return v
    return None
