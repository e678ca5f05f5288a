// The same real pull client bundled into a web page (esbuild) and run by Debian's Chromium,
// headless, driven by playwright-core. The page is served from its own port, so every request to
// pushpull is cross-origin.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { PushpullServer } from './lib/server.mjs';
import {
  TEST_KEY, BINARY_SKIP, WAIT_MS, makeUser, pullConfig, publicChannel, publishText, publishProto, request,
  randomHex, sign, waitFor, armWatchdog,
} from './lib/harness.mjs';
import { describeRequestBatch } from './lib/proto.mjs';

armWatchdog('browser.test.mjs');

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let NO_BROWSER = false;
if (!existsSync(CHROMIUM)) {
  NO_BROWSER = `${CHROMIUM} not found (apt-get install chromium, or set CHROMIUM_BIN)`;
}

if (NO_BROWSER && process.env.CI === 'true') {
  it('a browser is available', () => assert.fail(`CI=true and ${NO_BROWSER}`));
}

/** Bundles browser/page-entry.mjs (with the SDK) into `dir`; returns the bundle's text. */
async function bundle(dir) {
  const esbuild = await import('esbuild');
  const outfile = path.join(dir, 'bundle.js');
  await esbuild.build({
    entryPoints: [path.join(HERE, 'browser', 'page-entry.mjs')],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'chrome120',
    outfile,
    logLevel: 'error',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  return readFileSync(outfile);
}

/** Serves the page and the bundle on a free loopback port. */
function servePage(js) {
  const html = '<!doctype html><meta charset="utf-8"><title>pull client</title><script src="/bundle.js"></script>';
  const srv = http.createServer((req, res) => {
    if (req.url === '/' || req.url.startsWith('/?')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(html);
    } else if (req.url === '/bundle.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(js);
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

describe('headless Chromium', { skip: NO_BROWSER }, () => {
  let tmp;
  let pageServer;
  let pageUrl;
  let context;
  let srv;
  const sharedPriv = randomHex(16);
  let nextUserId = 500;

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'pushpull-browser-'));
    const js = await bundle(tmp);
    pageServer = await servePage(js);
    pageUrl = `http://127.0.0.1:${pageServer.address().port}/`;
    srv = new PushpullServer({ key: TEST_KEY });
    await srv.start();
    const { chromium } = await import('playwright-core');
    context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30_000,
    });
  });

  after(async () => {
    if (context) await context.close().catch(() => {});
    if (pageServer) await new Promise((r) => pageServer.close(r));
    if (srv) {
      await srv.stop();
      if (srv.log) console.log(srv.log);
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  async function subscribers(priv) {
    const res = await request(srv.pubPort, 'GET', `/bitrix/pub/?CHANNEL_ID=${priv}`);
    return JSON.parse(res.body).infos[0].subscribers;
  }

  /** A page running one client; records the page's traffic to pushpull. */
  async function openClient({ version, transport, user, publicList = {} }) {
    const page = await context.newPage();
    const traffic = { frames: [], responses: [], requests: [], console: [] };
    page.on('console', (m) => traffic.console.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => traffic.console.push(`pageerror: ${e.message}`));
    page.on('websocket', (socket) => {
      traffic.frames.push({ dir: 'open', url: socket.url() });
      socket.on('framereceived', (f) => traffic.frames.push({ dir: 'in', payload: f.payload }));
      socket.on('framesent', (f) => traffic.frames.push({ dir: 'out', payload: f.payload }));
      socket.on('close', () => traffic.frames.push({ dir: 'close' }));
    });
    page.on('request', (r) => traffic.requests.push({ method: r.method(), url: r.url(), body: r.postDataBuffer() }));
    page.on('response', async (r) => {
      if (!r.url().includes(`:${srv.subPort}/`) && !r.url().includes(`:${srv.pubPort}/`)) return;
      traffic.responses.push({ url: r.url(), status: r.status(), headers: await r.allHeaders().catch(() => ({})) });
    });
    await page.goto(pageUrl);
    const cfg = pullConfig({ version, transport, subPort: srv.subPort, pubPort: srv.pubPort, sign, user, sharedPriv });
    await page.evaluate((arg) => window.startPull(arg), { userId: user.userId, configs: [cfg], publicList });
    await waitFor(`the page's client (${transport}) to subscribe`, async () => (await subscribers(user.priv)) >= 1, WAIT_MS).catch((e) => {
      throw new Error(`${e.message}\npage console:\n${traffic.console.join('\n')}`);
    });
    const ns = () => page.evaluate(() => window.__pull.server.map((m) => m.params.n));
    const waitNs = async (want, what) => {
      await waitFor(`${what}: ${JSON.stringify(want)}`, async () => (await ns()).length >= want.length, WAIT_MS).catch(async (e) => {
        const logs = await page.evaluate(() => window.__pull.logs.concat(window.__pull.errors)).catch(() => []);
        throw new Error(`${e.message}; got ${JSON.stringify(await ns())}\nclient log:\n${logs.join('\n')}\nconsole:\n${traffic.console.join('\n')}`);
      });
      return ns();
    };
    return { page, traffic, user, ns, waitNs };
  }

  for (const version of [3, 4]) {
    const binary = version === 4;
    for (const transport of ['websocket', 'longpolling']) {
      const ws = transport === 'websocket';
      it(`version ${version} (${binary ? 'protobuf' : 'text'}) over ${transport}: receives, survives offline/online, resumes from its mid`, { skip: binary && BINARY_SKIP }, async (t) => {
        const user = makeUser(nextUserId++, randomHex);
        const c = await openClient({ version, transport, user });
        try {
          await publishText(srv, user.priv, 'c', { n: 1 });
          if (binary) await publishProto(srv, user.priv, 'c', { n: 2 });
          else await publishText(srv, user.priv, 'c', { n: 2 });
          assert.deepEqual(await c.waitNs([1, 2], 'live messages'), [1, 2]);
          const first = await c.page.evaluate(() => window.__pull.server[0]);
          assert.equal(first.command, 'c');
          assert.equal(first.extra.revision_web, 19);

          // The browser loses the network: it fires 'offline', the client disconnects.
          await context.setOffline(true);
          await waitFor('the server to drop the subscriber', async () => (await subscribers(user.priv)) === 0);
          await publishText(srv, user.priv, 'c', { n: 3 });
          await context.setOffline(false);
          assert.deepEqual(await c.waitNs([1, 2, 3], 'the message published while offline'), [1, 2, 3]);
          await publishText(srv, user.priv, 'c', { n: 4 });
          assert.deepEqual(await c.waitNs([1, 2, 3, 4], 'a live message after coming back'), [1, 2, 3, 4]);

          if (ws) {
            const opens = c.traffic.frames.filter((f) => f.dir === 'open');
            assert.ok(opens.length >= 2, 'reconnected after offline');
            assert.match(opens[1].url, /[?&]mid=\d{26}(&|$)/, 'the reconnect carries mid');
            const incoming = c.traffic.frames.filter((f) => f.dir === 'in');
            for (const f of incoming) assert.equal(typeof f.payload !== 'string', binary, 'frame type');
            t.diagnostic(`WebSocket URLs: ${opens.map((o) => o.url).join(' | ')}`);
          } else {
            assert.equal(c.traffic.frames.filter((f) => f.dir === 'open').length, 0, 'websocket_enabled=false: no WebSocket');
            const polls = c.traffic.responses.filter((r) => r.url.includes('/bitrix/sub/') && r.status === 200);
            assert.ok(polls.length >= 2, 'long-poll answers seen');
            for (const r of polls) {
              assert.equal(r.headers['access-control-allow-origin'], '*', 'cross-origin long poll needs ACAO *');
              assert.ok(String(r.headers['content-type']).startsWith(binary ? 'application/octet-stream' : 'text/plain'), r.headers['content-type']);
            }
            const gets = c.traffic.requests.filter((r) => r.url.includes('/bitrix/sub/'));
            assert.ok(gets.some((r) => /[?&]mid=\d{26}(&|$)/.test(r.url)), 'polls carry mid');
          }
          const dups = await c.page.evaluate(() => window.__pull.logs.filter((l) => l.includes('Duplicate message')));
          assert.deepEqual(dups, []);
        } finally {
          await context.setOffline(false);
          await c.page.close();
        }
      });
    }

    if (binary) {
      for (const transport of ['websocket', 'longpolling']) {
        it(`version 4 over ${transport}: page A publishes to user B's public channel, page B receives it as a CLIENT event`, { skip: BINARY_SKIP }, async (t) => {
          const userA = makeUser(nextUserId++, randomHex);
          const userB = makeUser(nextUserId++, randomHex);
          const now = new Date();
          const publicList = { [userB.userId]: publicChannel(userB, sign, now.toISOString(), new Date(now.getTime() + 3600e3).toISOString()) };
          const b = await openClient({ version, transport, user: userB });
          const a = await openClient({ version, transport, user: userA, publicList });
          try {
            // The server counts A at the upgrade; the client sends only once its socket is open
            // (it drops a message sent before, "WebSocket is not connected").
            if (transport === 'websocket') {
              await waitFor("A's client to see its WebSocket open", () => a.page.evaluate(() => window.__client.isConnected()));
            }
            await a.page.evaluate((uid) => window.__client.sendMessage([uid], 'test', 'hello', { n: 1 }, 600), userB.userId);
            const got = await waitFor('B to get the client message', () => b.page.evaluate(() => window.__pull.client[0]));
            assert.equal(got.command, 'hello');
            assert.equal(got.params.n, 1);
            assert.equal(got.extra.sender.type, 1);
            assert.equal(got.extra.sender.id, userA.pub);
            const sent = transport === 'websocket'
              ? a.traffic.frames.filter((f) => f.dir === 'out').map((f) => f.payload)
              : a.traffic.requests.filter((r) => r.method === 'POST').map((r) => r.body);
            for (const s of sent) t.diagnostic(`sent ${Buffer.from(s).toString('hex')} = ${JSON.stringify(describeRequestBatch(s))}`);
          } finally {
            await a.page.close();
            await b.page.close();
          }
        });
      }
    }
  }
});
