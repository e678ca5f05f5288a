// Test plumbing around the real pull client in Node: signing, publishing as the PHP back end
// does, a wrapper that records what the client delivers, and bounded waits.

import http from 'node:http';
import { createHmac, randomBytes } from 'node:crypto';
import { TEST_KEY, REVISION_WEB, FakeB24, pullConfig, makeUser, publicChannel } from './config.mjs';
import { encodeRequestBatch } from './proto.mjs';
import { installNodeShims } from './node-shims.mjs';

export { TEST_KEY };

/** How long one expected event may take (the client's own delays are 0.5–0.6 s). */
export const WAIT_MS = 8_000;

/** Version-4 (binary) scenarios always run: pushpull serves queue-server version 4. */
export const BINARY_SKIP = false;

/**
 * Longest one test file may run. Past it the file prints why and exits; its exit handler
 * (server.mjs) kills the pushpull processes it started, by pid, and Chromium exits when its
 * pipe to playwright closes. The Rust wrapper's own bound (tests/bitrix_client.rs) is longer.
 */
export const FILE_DEADLINE_MS = 100_000;

/** Arms the per-file deadline (call once at the top of a test file). */
export function armWatchdog(file) {
  setTimeout(() => {
    console.error(`${file}: still running after ${FILE_DEADLINE_MS} ms: giving up`);
    process.exit(1);
  }, FILE_DEADLINE_MS).unref();
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** n random bytes as lower-case hex. */
export const randomHex = (n) => randomBytes(n).toString('hex');

/** Hex HMAC-SHA1 with the test key (PHP CPullChannel::GetSignature). */
export const sign = (data) => createHmac('sha1', TEST_KEY).update(data).digest('hex');

export { makeUser, pullConfig, publicChannel };

/** Polls `cond` every 20 ms until truthy; throws `what` after `ms`. */
export async function waitFor(what, cond, ms = WAIT_MS) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** The JSON body PHP's Bitrix\Pull\Event builds (module_id, command, params, extra). */
export function messageBody(command, params) {
  const now = Date.now();
  return JSON.stringify({
    module_id: 'test',
    command,
    params,
    extra: {
      server_time: new Date(now).toISOString(),
      server_time_unix: now / 1000,
      server_name: 'pushpull-test',
      revision_web: REVISION_WEB,
      revision_mobile: 3,
    },
  });
}

/** One HTTP request; resolves {status, headers, body} (body as a string). */
export function request(port, method, path, { headers = {}, body = null } = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === null ? null : Buffer.from(body);
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        headers: payload ? { ...headers, 'Content-Length': payload.length } : headers,
        agent: false,
        timeout: 5_000,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.on('error', reject);
    req.end(payload || undefined);
  });
}

/**
 * Publishes like PHP's text path (CPullChannel::Send): POST /bitrix/pub/?CHANNEL_ID=<ids> with
 * Message-Expiry. Throws unless 200.
 */
export async function publishText(server, privs, command, params, expiry = 600) {
  const ids = (Array.isArray(privs) ? privs : [privs]).join('/');
  const res = await request(server.pubPort, 'POST', `/bitrix/pub/?CHANNEL_ID=${ids}`, {
    headers: { 'Message-Expiry': String(expiry), 'Content-Type': 'text/plain' },
    body: messageBody(command, params),
  });
  if (res.status !== 200) throw new Error(`text publish answered ${res.status}: ${res.body}`);
  return res;
}

/**
 * Publishes like PHP's protobuf path (ProtobufTransport): POST /bitrix/pub/?binaryMode=true with
 * RequestBatch{requests:[{incomingMessages:{messages:[{receivers:[{id, isPrivate:true}], body,
 * expiry, type:"test_<command>"}]}}]}. Throws unless 200.
 */
export async function publishProto(server, privs, command, params, expiry = 600) {
  const receivers = (Array.isArray(privs) ? privs : [privs]).map((id) => ({ id, isPrivate: true }));
  const batch = encodeRequestBatch([
    { receivers, body: messageBody(command, params), expiry, type: `test_${command}`.replace(/\W/g, '') },
  ]);
  const res = await request(server.pubPort, 'POST', '/bitrix/pub/?binaryMode=true', {
    headers: { 'Content-Type': 'application/octet-stream' },
    body: batch,
  });
  if (res.status !== 200) throw new Error(`protobuf publish answered ${res.status}: ${res.body}`);
  return res;
}

/** The client's logger: keeps every line, prints them with PULL_DEBUG=1. */
function makeLogger(lines) {
  const log = (level) => (message, context) => {
    const line = `${level}: ${message}${context ? ' ' + safeJson(context) : ''}`;
    lines.push(line);
    if (process.env.PULL_DEBUG) console.log('[pull]', line);
    return Promise.resolve();
  };
  return {
    debug: log('debug'),
    info: log('info'),
    notice: log('notice'),
    warning: log('warning'),
    error: log('error'),
    critical: log('critical'),
    alert: log('alert'),
    emergency: log('emergency'),
    log: log('log'),
  };
}

function safeJson(v) {
  try {
    return JSON.stringify(v, (_k, x) => (x instanceof Error ? x.message : x));
  } catch {
    return String(v);
  }
}

let sdk = null;

/** Imports the SDK, then installs the Node shims (order matters, see node-shims.mjs). */
export async function loadPullClient() {
  if (!sdk) {
    sdk = await import('@bitrix24/b24jssdk');
    installNodeShims();
  }
  return sdk.B24PullClientManager;
}

/**
 * One real PullClient for `user`, with a fake portal. Records the messages its subscriptions
 * deliver: `server` (back-end events), `client` (events published by other clients), `status`.
 */
export class TestClient {
  /**
   * @param {object} o
   * @param {object} o.user {userId, priv, pub}
   * @param {(n: number) => object} o.configFor config of the n-th `pull.config.get`
   * @param {object} [o.publicList] answers of `pull.channel.public.list`, by user id
   */
  constructor({ user, configFor, publicList }) {
    this.user = user;
    this.b24 = new FakeB24({ configFor, publicList });
    this.server = [];
    this.client = [];
    this.statuses = [];
    this.logLines = [];
    this.pull = null;
  }

  async start() {
    const PullClient = await loadPullClient();
    this.pull = new PullClient({ b24: this.b24, userId: this.user.userId, siteId: 's1', skipStorageInit: true });
    this.pull.setLogger(makeLogger(this.logLines));
    this.pull.subscribe({ moduleId: 'test', callback: (data) => this.server.push(data) });
    this.pull.subscribe({ type: 'client', moduleId: 'test', callback: (data) => this.client.push(data) });
    this.pull.subscribe({ type: 'status', callback: (data) => this.statuses.push(data.status) });
    return this.pull.start();
  }

  /** The `params.n` of every delivered back-end message, in order. */
  ns() {
    return this.server.map((m) => m.params.n);
  }

  /** Waits until the back-end messages delivered so far carry exactly `ns` (in order). */
  async waitForNs(ns, what, ms = WAIT_MS) {
    await waitFor(`${what}: n = ${JSON.stringify(ns)} (got ${JSON.stringify(this.ns())})`, () => this.ns().length >= ns.length, ms);
    // A duplicate or an extra message would arrive right behind: give it a moment.
    await sleep(150);
    return this.ns();
  }

  /** Client log lines reporting a skipped duplicate mid. */
  duplicates() {
    return this.logLines.filter((l) => l.includes('Duplicate message'));
  }

  destroy() {
    if (this.pull) this.pull.destroy();
    this.pull = null;
  }
}
