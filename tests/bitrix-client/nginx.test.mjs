// The real Bitrix pull client through nginx configured as on BitrixVM: the documented example
// nginx.bitrixvm.example.conf (repository root), with only its listen addresses and upstream
// servers replaced (as tests/nginx.rs does), in front of a pushpull process. The client's URLs
// and the back end's publishing go through nginx only. Needs /usr/sbin/nginx (Debian `nginx`):
// skipped without it, except under CI=true, where the file fails.

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { PushpullServer, freePort } from './lib/server.mjs';
import {
  TEST_KEY, TestClient, makeUser, pullConfig, publicChannel, publishText, publishProto, request,
  randomHex, sign, waitFor, armWatchdog,
} from './lib/harness.mjs';
import { wire } from './lib/node-shims.mjs';

armWatchdog('nginx.test.mjs');

const NGINX = '/usr/sbin/nginx';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const NGINX_START_MS = 5_000;
const SKIP = existsSync(NGINX) ? false : `${NGINX} is missing (Debian: apt-get install --no-install-recommends nginx)`;
if (SKIP && process.env.CI === 'true') throw new Error(`CI=true: ${SKIP}`);

/** Replaces the single occurrence of `from`: the example and this test must not drift apart. */
function replaceOnce(text, from, to) {
  assert.equal(text.split(from).length, 2, `nginx.bitrixvm.example.conf must contain ${JSON.stringify(from)} exactly once`);
  return text.replace(from, to);
}

/** A throw-away nginx (foreground, one process) in its own prefix; `stop()` kills it by pid. */
class Nginx {
  async start(srv) {
    [this.public, this.rtc] = [await freePort(), await freePort()];
    this.prefix = mkdtempSync(path.join(os.tmpdir(), 'pushpull-nginx-client-'));
    for (const d of ['conf', 'logs', 'tmp']) mkdirSync(path.join(this.prefix, d));
    let site = readFileSync(path.join(ROOT, 'nginx.bitrixvm.example.conf'), 'utf8');
    site = replaceOnce(site, 'listen 80;', `listen 127.0.0.1:${this.public};`);
    site = replaceOnce(site, 'listen 127.0.0.1:8895 ', `listen 127.0.0.1:${this.rtc} `);
    site = replaceOnce(site, 'server 127.0.0.1:8010;', `server 127.0.0.1:${srv.subPort};`);
    site = replaceOnce(site, 'server 127.0.0.1:9010;', `server 127.0.0.1:${srv.pubPort};`);
    writeFileSync(path.join(this.prefix, 'conf/pushpull.conf'), site);
    writeFileSync(path.join(this.prefix, 'conf/nginx.conf'), readFileSync(path.join(ROOT, 'tests/nginx/nginx.conf')));
    const err = openSync(path.join(this.prefix, 'logs/stderr.log'), 'w');
    this.child = spawn(NGINX, ['-p', `${this.prefix}/`, '-c', 'conf/nginx.conf', '-e', 'logs/error.log'], { stdio: ['ignore', 'ignore', err] });
    closeSync(err);
    this.exited = null;
    this.child.on('exit', (code, signal) => { this.exited = { code, signal }; });
    const killOnExit = () => this.stop();
    process.on('exit', killOnExit);
    const answers = async (port, p) => !this.exited && (await request(port, 'GET', p).then(() => true, () => false));
    await waitFor(`nginx to answer on ${this.public} and ${this.rtc}`, async () => {
      if (this.exited) throw new Error(`nginx exited at start (${JSON.stringify(this.exited)}):\n${this.logs()}`);
      return (await answers(this.public, '/')) && (await answers(this.rtc, '/nginx_status'));
    }, NGINX_START_MS);
  }

  logs() {
    const read = (f) => { try { return readFileSync(path.join(this.prefix, f), 'utf8'); } catch { return ''; } };
    return `--- ${this.prefix}/logs/error.log\n${read('logs/error.log')}--- stderr\n${read('logs/stderr.log')}`;
  }

  /** Kills nginx by its pid (never a group), waits for the exit, removes the prefix. */
  async stop() {
    if (!this.child || this.exited) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    try { process.kill(this.child.pid, 'SIGKILL'); } catch { /* already gone */ }
    await gone;
  }
}

const MATRIX = [
  { version: 3, transport: 'websocket' },
  { version: 3, transport: 'longpolling' },
  { version: 4, transport: 'websocket' },
  { version: 4, transport: 'longpolling' },
];

describe('the real pull client through the BitrixVM nginx example', { skip: SKIP }, () => {
  let srv;
  const front = new Nginx();
  let nextUserId = 500;
  const clients = [];

  before(async () => {
    srv = new PushpullServer({ key: TEST_KEY });
    await srv.start();
    await front.start(srv);
  });

  afterEach(() => { for (const c of clients.splice(0)) c.destroy(); });

  after(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await front.stop();
    if (front.prefix) rmSync(front.prefix, { recursive: true, force: true });
    if (srv) await srv.stop();
  });

  /** The back end publishes on nginx's localhost server (BitrixVM's 8895), as PHP does. */
  const backEnd = () => ({ pubPort: front.rtc });

  for (const { version, transport } of MATRIX) {
    const ws = transport === 'websocket';
    describe(`version ${version}, ${transport}`, () => {
      const sharedPriv = randomHex(16);
      // Every URL of the config is nginx's public server: /bitrix/subws/, /bitrix/sub/, /bitrix/rest/.
      const config = (user) => pullConfig({ version, transport, subPort: front.public, pubPort: front.public, sign, user, sharedPriv });

      async function connectedClient({ user = makeUser(nextUserId++, randomHex), publicList } = {}) {
        const c = new TestClient({ user, configFor: () => config(user), publicList });
        clients.push(c);
        c.start().catch((e) => c.logLines.push(`start failed: ${e && e.message}`));
        await waitFor(`${user.priv} to be online (asked through nginx)`, async () => {
          const res = await request(front.rtc, 'GET', `/bitrix/pub/?CHANNEL_ID=${user.priv}`);
          return res.status === 200 && JSON.parse(res.body).infos[0].subscribers >= 1;
        });
        const attempts = wire.about(user.priv).filter((e) => e.kind === (ws ? 'ws-connect' : 'xhr'));
        assert.ok(attempts.length > 0 && attempts.every((e) => e.url.startsWith(`${ws ? 'ws' : 'http'}://127.0.0.1:${front.public}/bitrix/sub${ws ? 'ws' : ''}/`)),
          `the client connects through nginx only: ${attempts.map((e) => e.url)}`);
        return c;
      }

      function check(c, n, api) {
        const m = c.server.find((x) => x.params.n === n);
        // The client hands a message to the callbacks of its module_id only: TestClient's is 'test'.
        assert.ok(m, `message ${n} missing from the module 'test' callback`);
        assert.equal(m.command, 'c');
        assert.deepEqual(m.params, { n, api });
      }

      it('a message published through the text API arrives', async () => {
        const c = await connectedClient();
        await publishText(backEnd(), c.user.priv, 'c', { n: 1, api: 'text' });
        await c.waitForNs([1], 'text publish through nginx');
        check(c, 1, 'text');
      });

      if (version === 4) {
        it('a message published through the protobuf API arrives', async () => {
          const c = await connectedClient();
          await publishProto(backEnd(), c.user.priv, 'c', { n: 1, api: 'proto' });
          await c.waitForNs([1], 'protobuf publish through nginx');
          check(c, 1, 'proto');
        });

        it(`client A publishes to user B's public channel (${ws ? 'WebSocket' : 'POST /bitrix/rest/'})`, async () => {
          const userA = makeUser(nextUserId++, randomHex);
          const userB = makeUser(nextUserId++, randomHex);
          const now = new Date();
          const publicList = { [userB.userId]: publicChannel(userB, sign, now.toISOString(), new Date(now.getTime() + 3600e3).toISOString()) };
          const b = await connectedClient({ user: userB });
          const a = await connectedClient({ user: userA, publicList });
          await a.pull.sendMessageToChannels([`${userB.pub}.${sign(`public:${userB.pub}`)}`], 'test', 'hello', { n: 1 }, 600);
          await waitFor('B to get message 1 from A', () => b.client.find((m) => m.params.n === 1));
          await a.pull.sendMessage([userB.userId], 'test', 'hello', { n: 2 });
          await waitFor('B to get message 2 from A', () => b.client.find((m) => m.params.n === 2));
          for (const m of b.client) {
            assert.equal(m.command, 'hello'); // delivered to the 'client' subscription of module 'test'
            assert.equal(m.extra.sender.type, 1, 'sender.type CLIENT (1)');
            assert.equal(m.extra.sender.id, userA.pub);
          }
          if (!ws) {
            const posts = wire.about(userA.priv).filter((e) => e.kind === 'xhr' && e.method === 'POST');
            assert.equal(posts.length, 2);
            for (const e of posts) assert.ok(e.url.startsWith(`http://127.0.0.1:${front.public}/bitrix/rest/`), e.url);
          }
        });
      }
    });
  }
});
