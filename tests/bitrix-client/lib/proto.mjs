// A tiny protobuf (proto3) encoder for the back end's RequestBatch and a schema-less decoder used
// to show and check what travels on the wire (field numbers: bitrix-protocol.md §3.2).

function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

function key(field, wire) {
  return varint((field << 3) | wire);
}

/** Length-delimited field (wire type 2). */
export function bytesField(field, bytes) {
  return [...key(field, 2), ...varint(bytes.length), ...bytes];
}

export function varintField(field, n) {
  return [...key(field, 0), ...varint(n)];
}

/** Fixed32 field (wire type 5), little-endian. */
export function fixed32Field(field, n) {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return [...key(field, 5), ...b];
}

/**
 * ResponseBatch{responses:[{outgoingMessages:{messages:[OutgoingMessage…]}}]}; each message:
 * {id: hex (13 bytes), body: string, expiry, created (unix s), sender: {type, id?: hex}}.
 */
export function encodeResponseBatch(messages) {
  const msgs = messages.flatMap((m) => {
    const f = [...bytesField(1, hexBytes(m.id)), ...bytesField(2, Buffer.from(m.body, 'utf8'))];
    if (m.expiry) f.push(...varintField(3, m.expiry));
    f.push(...fixed32Field(4, m.created));
    const sf = m.sender.type ? [...varintField(1, m.sender.type)] : [];
    if (m.sender.id) sf.push(...bytesField(2, hexBytes(m.sender.id)));
    f.push(...bytesField(5, sf));
    return bytesField(1, f);
  });
  return Buffer.from(bytesField(1, bytesField(1, msgs)));
}

/** Hex string to bytes. */
export function hexBytes(hex) {
  return Buffer.from(hex, 'hex');
}

/**
 * RequestBatch{requests:[{incomingMessages:{messages:[IncomingMessage…]}}]}, as the PHP module's
 * ProtobufTransport sends it. Each message: {receivers:[{id: hex, isPrivate, signature?: hex}],
 * sender?: {type, id?: hex}, body: string, expiry: number, type: string}.
 */
export function encodeRequestBatch(messages) {
  const msgs = messages.map((m) => {
    const fields = [];
    for (const r of m.receivers) {
      const rf = [...bytesField(1, hexBytes(r.id))];
      if (r.isPrivate) rf.push(...varintField(2, 1));
      if (r.signature) rf.push(...bytesField(3, hexBytes(r.signature)));
      fields.push(...bytesField(1, rf));
    }
    if (m.sender) {
      const sf = [...varintField(1, m.sender.type)];
      if (m.sender.id) sf.push(...bytesField(2, hexBytes(m.sender.id)));
      fields.push(...bytesField(2, sf));
    }
    fields.push(...bytesField(3, Buffer.from(m.body, 'utf8')));
    if (m.expiry) fields.push(...varintField(4, m.expiry));
    if (m.type) fields.push(...bytesField(5, Buffer.from(m.type, 'utf8')));
    return bytesField(1, fields);
  });
  const incoming = msgs.flat();
  const request = bytesField(1, incoming); // Request.incomingMessages = 1
  return Buffer.from(bytesField(1, request)); // RequestBatch.requests = 1
}

/**
 * Decodes one protobuf message without a schema: [{field, wire, value}], value = bigint (varint),
 * Buffer (length-delimited, fixed32/64). Throws on malformed input.
 */
export function decodeRaw(buf) {
  buf = Buffer.from(buf);
  const out = [];
  let i = 0;
  const readVarint = () => {
    let shift = 0n;
    let v = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
  };
  while (i < buf.length) {
    const k = Number(readVarint());
    const field = k >> 3;
    const wire = k & 7;
    let value;
    if (wire === 0) value = readVarint();
    else if (wire === 2) {
      const n = Number(readVarint());
      if (i + n > buf.length) throw new Error('truncated bytes');
      value = buf.subarray(i, i + n);
      i += n;
    } else if (wire === 5) {
      value = buf.subarray(i, i + 4);
      i += 4;
    } else if (wire === 1) {
      value = buf.subarray(i, i + 8);
      i += 8;
    } else throw new Error(`unsupported wire type ${wire}`);
    out.push({ field, wire, value });
  }
  return out;
}

const all = (fields, n) => fields.filter((f) => f.field === n).map((f) => f.value);
const one = (fields, n) => all(fields, n).at(-1);

function decodeSenderOrReceiver(buf, names) {
  const f = decodeRaw(buf);
  const o = {};
  for (const [n, name, kind] of names) {
    const v = one(f, n);
    if (v === undefined) continue;
    o[name] = kind === 'hex' ? Buffer.from(v).toString('hex') : Number(v);
  }
  return o;
}

/** RequestBatch bytes to a plain object (for logs and checks of what a client sent). */
export function describeRequestBatch(buf) {
  return {
    requests: all(decodeRaw(buf), 1).map((req) => {
      const rf = decodeRaw(req);
      const im = one(rf, 1);
      if (im !== undefined) {
        return {
          incomingMessages: {
            messages: all(decodeRaw(im), 1).map((m) => {
              const mf = decodeRaw(m);
              const o = {
                receivers: all(mf, 1).map((r) =>
                  decodeSenderOrReceiver(r, [[1, 'id', 'hex'], [2, 'isPrivate', 'n'], [3, 'signature', 'hex']]),
                ),
                body: one(mf, 3) !== undefined ? Buffer.from(one(mf, 3)).toString('utf8') : '',
                expiry: Number(one(mf, 4) ?? 0),
              };
              if (one(mf, 2) !== undefined) o.sender = decodeSenderOrReceiver(one(mf, 2), [[1, 'type', 'n'], [2, 'id', 'hex']]);
              if (one(mf, 5) !== undefined) o.type = Buffer.from(one(mf, 5)).toString('utf8');
              return o;
            }),
          },
        };
      }
      return { otherCommand: rf.map((f) => f.field) };
    }),
  };
}

/** ResponseBatch bytes to [{id: hex, body, expiry, created, sender}] of its outgoingMessages. */
export function describeResponseBatch(buf) {
  const out = [];
  for (const resp of all(decodeRaw(buf), 1)) {
    const om = one(decodeRaw(resp), 1);
    if (om === undefined) continue;
    for (const m of all(decodeRaw(om), 1)) {
      const mf = decodeRaw(m);
      const created = one(mf, 4);
      out.push({
        id: Buffer.from(one(mf, 1) ?? []).toString('hex'),
        body: Buffer.from(one(mf, 2) ?? []).toString('utf8'),
        expiry: Number(one(mf, 3) ?? 0),
        created: created ? Buffer.from(created).readUInt32LE(0) : 0,
        sender: one(mf, 5) !== undefined ? decodeSenderOrReceiver(one(mf, 5), [[1, 'type', 'n'], [2, 'id', 'hex']]) : null,
      });
    }
  }
  return out;
}

/** The `mid`s of a text-mode payload (`#!NGINXNMS!#{…}#!NGINXNME!#…`). */
export function textMids(text) {
  const out = [];
  for (const m of text.matchAll(/#!NGINXNMS!#(.*?)#!NGINXNME!#/g)) {
    try {
      out.push(JSON.parse(m[1]).mid);
    } catch {
      out.push('<unparsable>');
    }
  }
  return out;
}

/** The `mid`s of any subscriber payload: text, or a binary ResponseBatch. */
export function payloadMids(payload) {
  if (typeof payload === 'string') return textMids(payload);
  try {
    return describeResponseBatch(payload).map((m) => m.id);
  } catch {
    return ['<undecodable>'];
  }
}
