// The browser globals the Bitrix pull client needs under Node 20 (tooling-notes.md §1):
// `window` (with WebSocket and event listeners), `WebSocket` (the `ws` package), `document`
// (location, no `attachEvent`) and an `XMLHttpRequest` over node:http. Every socket and request
// is recorded in `wire` so tests can check what the real client put on and took off the wire.
//
// Install them AFTER importing the SDK: its bundled axios sniffs window/document at import time.

import http from 'node:http';
import { setMaxListeners } from 'node:events';
import { WebSocket as WsWebSocket } from 'ws';
import { payloadMids } from './proto.mjs';

/** Everything the client sent and received, in order. */
export const wire = {
  entries: [],
  record(kind, fields) {
    const e = { t: Date.now(), kind, ...fields };
    this.entries.push(e);
    if (process.env.PULL_WIRE_LOG) console.log('[wire]', JSON.stringify(e, wireJson));
    return e;
  },
  /** Entries whose URL contains `needle` (a channel id, say). */
  about(needle) {
    return this.entries.filter((e) => (e.url || '').includes(needle));
  },
};

function wireJson(_k, v) {
  if (v && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString('hex');
  return v;
}

/** Open WebSocket objects created by the client. */
export const liveSockets = new Set();

/** `ws`'s WebSocket, recording URL, frames both ways and the close. */
class TapWebSocket extends WsWebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    this.tapUrl = String(url);
    liveSockets.add(this);
    wire.record('ws-connect', { url: this.tapUrl });
    // A browser never throws on an unhandled socket error; an EventEmitter would.
    this.on('error', (err) => wire.record('ws-error', { url: this.tapUrl, error: String(err && err.message) }));
    this.on('upgrade', (res) => wire.record('ws-upgrade', { url: this.tapUrl, status: res.statusCode, headers: res.headers }));
    this.on('unexpected-response', (_req, res) => {
      wire.record('ws-unexpected-response', { url: this.tapUrl, status: res.statusCode });
    });
    this.on('message', (data, isBinary) => {
      const payload = isBinary ? Buffer.from(data) : data.toString('utf8');
      wire.record('ws-recv', { url: this.tapUrl, binary: isBinary, mids: payloadMids(payload), bytes: isBinary ? payload : undefined, text: isBinary ? undefined : payload });
    });
    this.on('close', (code, reason) => {
      liveSockets.delete(this);
      wire.record('ws-close', { url: this.tapUrl, code, reason: reason.toString() });
    });
  }

  send(data, ...rest) {
    const binary = typeof data !== 'string';
    wire.record('ws-send', { url: this.tapUrl, binary, bytes: binary ? Buffer.from(data) : undefined, text: binary ? undefined : data });
    return super.send(data, ...rest);
  }
}

/** Browser-like connection pool for the XHR shim. */
const agent = new http.Agent({ keepAlive: true, maxSockets: 6 });

/** Requests in flight, so a test can cut them like a network failure would. */
const inFlight = new Set();

/** A minimal XMLHttpRequest over node:http: what the long-poll connector and publishing use. */
class NodeXhr {
  static UNSENT = 0;
  static OPENED = 1;
  static HEADERS_RECEIVED = 2;
  static LOADING = 3;
  static DONE = 4;

  constructor() {
    this.readyState = 0;
    this.status = 0;
    this.statusText = '';
    this.response = null;
    this.responseText = '';
    this.responseType = '';
    this.withCredentials = false;
    this._listeners = new Map();
    this._req = null;
    this._gen = 0;
    this._reqHeaders = {};
    this._resHeaders = {};
  }

  addEventListener(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
  }

  removeEventListener(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  _fire(type) {
    const ev = { type, target: this, currentTarget: this };
    for (const fn of [...(this._listeners.get(type) || [])]) fn.call(this, ev);
    const prop = this[`on${type}`];
    if (typeof prop === 'function') prop.call(this, ev);
  }

  _state(n) {
    this.readyState = n;
    this._fire('readystatechange');
  }

  open(method, url) {
    this._cancel();
    this._method = String(method).toUpperCase();
    this._url = String(url);
    this._reqHeaders = {};
    this._resHeaders = {};
    this.status = 0;
    this.statusText = '';
    this.response = null;
    this.responseText = '';
    this._state(1);
  }

  setRequestHeader(name, value) {
    this._reqHeaders[name] = value;
  }

  getResponseHeader(name) {
    const v = this._resHeaders[String(name).toLowerCase()];
    if (v === undefined) return null;
    return Array.isArray(v) ? v.join(', ') : String(v);
  }

  getAllResponseHeaders() {
    return Object.entries(this._resHeaders)
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : v}\r\n`)
      .join('');
  }

  send(body = null) {
    if (this.readyState !== 1) throw new Error('InvalidStateError: send() before open()');
    const gen = ++this._gen;
    const u = new URL(this._url);
    let payload = null;
    if (body !== null && body !== undefined) {
      payload = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body.buffer ? new Uint8Array(body.buffer, body.byteOffset, body.byteLength) : body);
    }
    const headers = { ...this._reqHeaders };
    if (payload) headers['Content-Length'] = String(payload.length);
    const entry = wire.record('xhr', { method: this._method, url: this._url, sentBytes: payload && this._method !== 'GET' ? payload : undefined });
    const req = http.request({ hostname: u.hostname, port: u.port, path: u.pathname + u.search, method: this._method, headers, agent });
    this._req = req;
    inFlight.add(this);
    req.on('response', (res) => {
      if (gen !== this._gen) return res.resume();
      this.status = res.statusCode;
      this.statusText = res.statusMessage || '';
      this._resHeaders = res.headers;
      this._state(2);
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', () => gen === this._gen && this._fail(entry, 'response error'));
      res.on('end', () => {
        if (gen !== this._gen) return;
        const buf = Buffer.concat(chunks);
        if (this.responseType === 'arraybuffer') {
          this.response = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
        } else {
          this.responseText = buf.toString('utf8');
          this.response = this.responseText;
        }
        entry.status = this.status;
        entry.headers = res.headers;
        entry.mids = buf.length ? payloadMids(this.responseType === 'arraybuffer' ? buf : buf.toString('utf8')) : [];
        if (this.status >= 400 || this._method !== 'GET' || this.responseType !== 'arraybuffer') entry.body = buf.toString('utf8');
        else entry.bodyBytes = buf;
        this._done();
        this._state(4);
        this._fire('load');
        this._fire('loadend');
      });
    });
    req.on('error', (err) => gen === this._gen && this._fail(entry, err.message));
    req.end(payload || undefined);
  }

  _done() {
    inFlight.delete(this);
    this._req = null;
  }

  _fail(entry, why) {
    entry.status = 0;
    entry.error = why;
    this._done();
    this.status = 0;
    this.response = this.responseType === 'arraybuffer' ? null : '';
    this._state(4);
    this._fire('error');
    this._fire('loadend');
  }

  /** Drops an in-flight request without events (what open() does). */
  _cancel() {
    if (this._req) {
      this._gen++;
      this._req.destroy();
      this._done();
    }
  }

  abort() {
    if (this._req) {
      this._gen++;
      this._req.destroy();
      this._done();
      this.status = 0;
      this._state(4);
      this._fire('abort');
      this._fire('loadend');
    }
    this.readyState = 0;
  }

  /** Test hook: fail the in-flight request as a lost network connection would. */
  _kill() {
    if (this._req) this._req.destroy(new Error('connection killed by the test'));
  }
}

/** Cuts every in-flight XHR (long polls) as a network failure would. */
export function killXhrs(filter = () => true) {
  let n = 0;
  for (const x of [...inFlight]) {
    if (filter(x._url || '')) {
      x._kill();
      n++;
    }
  }
  return n;
}

/** Drops every open client WebSocket's TCP connection at once (no close handshake). */
export function killSockets(filter = () => true) {
  let n = 0;
  for (const s of [...liveSockets]) {
    if (filter(s.tapUrl)) {
      s.terminate();
      n++;
    }
  }
  return n;
}

let installed = false;

/** Installs the globals once. Call after `await import('@bitrix24/b24jssdk')`. */
export function installNodeShims() {
  if (installed) return;
  installed = true;
  const win = new EventTarget();
  // Every PullClient's SharedConfig adds a 'storage' listener it never removes; a browser
  // window has no listener limit, so none here either (silences MaxListenersExceededWarning).
  setMaxListeners(0, win);
  win.WebSocket = TapWebSocket;
  win.location = { href: 'http://127.0.0.1/', protocol: 'http:' };
  win.XMLHttpRequest = NodeXhr;
  globalThis.window = win;
  globalThis.WebSocket = TapWebSocket;
  globalThis.XMLHttpRequest = NodeXhr;
  globalThis.document = { location: win.location };
}
