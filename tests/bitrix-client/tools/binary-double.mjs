#!/usr/bin/env node
// A stand-in server for queue-server version 4 (binary mode), written from
// shared/reference/bitrix-protocol.md (§1–§4), with pushpull's command line. It exists only to
// check that the gated version-4 scenarios of this harness are right before pushpull serves
// binary mode:
//
//   PUSHPULL_BIN=$PWD/tools/binary-double.mjs PUSHPULL_BINARY_MODE=1 node --test
//
// It is NOT run by the project's tests and is no model of pushpull's design: one process, an
// in-memory store, no limits.

import http from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { WebSocketServer } from 'ws';
import { describeRequestBatch, encodeResponseBatch } from '../lib/proto.mjs';

const args = process.argv.slice(2);
if (args.includes('--help')) {
  console.log('binary-double: --sub-listen ADDR --pub-listen ADDR --security-key KEY [--state-file FILE] [--threads N] [--log-level L]');
  process.exit(0);
}
const arg = (name) => args[args.indexOf(name) + 1];
const [subHost, subPort] = arg('--sub-listen').split(':');
const [pubHost, pubPort] = arg('--pub-listen').split(':');
const KEY = arg('--security-key');
const STATE = args.includes('--state-file') ? arg('--state-file') : null;

const hmacHex = (data) => createHmac('sha1', KEY).update(data).digest('hex');
const START = Math.floor(Date.now() / 1000);
let counter = BigInt(Date.now() % 1000) * 10n ** 12n;
const store = []; // {mid, body, expiry, created, sender, channels: Set<hex>}
const subs = new Map(); // channel hex -> Set<conn>
if (STATE && existsSync(STATE)) {
  for (const m of JSON.parse(readFileSync(STATE, 'utf8'))) store.push({ ...m, channels: new Set(m.channels) });
}

const CORS = { 'Access-Control-Allow-Origin': '*' };
const TOKEN = /^([a-f0-9]{32})(?::([a-f0-9]{32}))?(?:\.([a-f0-9]{40}))?$/;

/** CHANNEL_ID -> {channels: [hex], ownPublic} or null (4010). */
function parseSubscription(list) {
  const channels = [];
  let ownPublic = null;
  for (const token of (list || '').split('/').filter(Boolean)) {
    const m = TOKEN.exec(token);
    if (!m) return null;
    const signed = m[2] ? `${m[1]}:${m[2]}` : m[1];
    if (!m[3] || m[3] !== hmacHex(signed)) return null;
    channels.push(m[1]);
    if (m[2]) {
      channels.push(m[2]);
      ownPublic = ownPublic || m[2];
    }
  }
  return channels.length ? { channels, ownPublic } : null;
}

function publish({ channels, body, expiry, sender }) {
  counter += 1n;
  const mid = String(START).padStart(10, '0') + String(counter).padStart(16, '0');
  const msg = { mid, body, expiry, created: Math.floor(Date.now() / 1000), sender, channels: new Set(channels) };
  if (expiry > 0) store.push(msg);
  const conns = new Set();
  for (const ch of channels) for (const c of subs.get(ch) || []) conns.add(c);
  for (const c of conns) c.deliver([msg]);
  return mid;
}

function encode(messages, binary) {
  if (binary) {
    return encodeResponseBatch(messages.map((m) => ({ id: m.mid, body: m.body, expiry: m.expiry, created: m.created, sender: m.sender })));
  }
  const now = Date.now();
  return messages
    .map((m) => `#!NGINXNMS!#{"id":${parseInt(m.mid.slice(10), 10)},"mid":"${m.mid}","channel":"-","tag":"${String(now).slice(-3)}","time":"${new Date(now).toUTCString()}","text":${m.body}}#!NGINXNME!#`)
    .join('');
}

function missed(channels, mid) {
  if (!/^\d{26}$/.test(mid || '')) return [];
  return store.filter((m) => m.mid > mid && channels.some((c) => m.channels.has(c)));
}

function register(conn) {
  for (const ch of conn.channels) {
    if (!subs.has(ch)) subs.set(ch, new Set());
    subs.get(ch).add(conn);
  }
}

function unregister(conn) {
  for (const ch of conn.channels) subs.get(ch)?.delete(conn);
}

/** Untrusted publish (WS frame or POST /bitrix/rest/): public receivers with valid signatures. */
function clientPublish(ownPublic, bytes) {
  if (!ownPublic) return 4012;
  const batch = describeRequestBatch(bytes);
  const req = batch.requests[0];
  if (!req || !req.incomingMessages) return 4014;
  for (const m of req.incomingMessages.messages) {
    const receivers = [];
    for (const r of m.receivers) {
      if (r.isPrivate) return 4020;
      const want = createHmac('sha1', KEY).update(`public:${r.id}`).digest();
      const got = Buffer.from(r.signature || '', 'hex');
      if (got.length !== want.length || !timingSafeEqual(got, want)) return 4021;
      receivers.push(r.id);
    }
    publish({ channels: receivers, body: m.body, expiry: m.expiry, sender: { type: 1, id: ownPublic } });
  }
  return 0;
}

const lpHeld = new Set();
const sockets = new Set();

const sub = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method === 'OPTIONS') return res.writeHead(200, CORS).end();
  const s = parseSubscription(url.searchParams.get('CHANNEL_ID'));
  if (!s) return res.writeHead(400, { ...CORS, 'Content-Type': 'text/plain' }).end('4010: Wrong Channel Id.');
  const binary = url.searchParams.get('binaryMode') === 'true';
  const type = binary ? 'application/octet-stream' : 'text/plain';
  const head = { ...CORS, 'Content-Type': type, 'Access-Control-Expose-Headers': 'Last-Message-Id' };
  const old = missed(s.channels, url.searchParams.get('mid'));
  if (old.length) return res.writeHead(200, head).end(encode(old, binary));
  const conn = {
    channels: s.channels,
    deliver(msgs) {
      unregister(conn);
      lpHeld.delete(conn);
      clearTimeout(conn.timer);
      res.writeHead(200, head).end(encode(msgs, binary));
    },
    timeout() {
      unregister(conn);
      lpHeld.delete(conn);
      res.writeHead(304, { ...head, 'Last-Message-Id': url.searchParams.get('mid') || '', Expires: 'Thu, 01 Jan 1973 11:11:01 GMT' }).end();
    },
  };
  conn.timer = setTimeout(() => conn.timeout(), 40_000);
  register(conn);
  lpHeld.add(conn);
  req.on('close', () => {
    unregister(conn);
    lpHeld.delete(conn);
    clearTimeout(conn.timer);
  });
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
sub.on('upgrade', (req, socket, headBytes) => {
  wss.handleUpgrade(req, socket, headBytes, (ws) => {
    const url = new URL(req.url, 'http://x');
    const s = parseSubscription(url.searchParams.get('CHANNEL_ID'));
    if (!s) return ws.close(4010, '4010: Wrong Channel Id.');
    const binary = url.searchParams.get('binaryMode') === 'true';
    const conn = { channels: s.channels, deliver: (msgs) => ws.send(encode(msgs, binary), { binary }) };
    sockets.add(ws);
    const old = missed(s.channels, url.searchParams.get('mid'));
    if (old.length) conn.deliver(old);
    register(conn);
    ws.on('message', (data, isBinary) => {
      if (!binary || !isBinary) return;
      const code = clientPublish(s.ownPublic, data);
      if (code) ws.close(code, `${code}: refused`);
    });
    ws.on('close', () => {
      unregister(conn);
      sockets.delete(ws);
    });
  });
});

const pub = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (url.pathname.startsWith('/bitrix/rest/')) {
      const own = parseSubscription(url.searchParams.get('CHANNEL_ID'));
      const code = clientPublish(own && own.ownPublic, body);
      return res.writeHead(code ? 400 : 200, CORS).end(code ? `${code}: refused` : '');
    }
    if (!url.pathname.startsWith('/bitrix/pub/')) return res.writeHead(404, CORS).end();
    const ids = (url.searchParams.get('CHANNEL_ID') || '').split('/').map((t) => t.slice(0, 32)).filter((t) => /^[a-f0-9]{32}$/.test(t));
    if (req.method === 'GET') {
      const infos = ids.map((ch) => ({ channel: ch, subscribers: (subs.get(ch) || new Set()).size }));
      return res.writeHead(200, { ...CORS, 'Content-Type': 'application/json' }).end(JSON.stringify({ infos }));
    }
    if (url.searchParams.get('binaryMode') === 'true') {
      for (const m of describeRequestBatch(body).requests[0].incomingMessages.messages) {
        publish({ channels: m.receivers.map((r) => r.id), body: m.body, expiry: m.expiry, sender: { type: 2 } });
      }
      return res.writeHead(200, CORS).end();
    }
    const expiry = parseInt(req.headers['message-expiry'] || '0', 10) || 0;
    const mid = publish({ channels: ids, body: body.toString('utf8'), expiry, sender: { type: 2 } });
    return res.writeHead(200, { ...CORS, 'Content-Type': 'application/json' }).end(JSON.stringify({ mid }));
  });
});

sub.listen(Number(subPort), subHost);
pub.listen(Number(pubPort), pubHost);

process.on('SIGTERM', () => {
  for (const ws of sockets) ws.close(1001, 'Server shutdown.');
  for (const c of lpHeld) c.timeout();
  sub.close();
  pub.close();
  if (STATE) writeFileSync(STATE, JSON.stringify(store.map((m) => ({ ...m, channels: [...m.channels] }))));
  setTimeout(() => process.exit(0), 100);
});
