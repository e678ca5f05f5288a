// The real Bitrix pull client (@bitrix24/b24jssdk 2.2.0, PullClient) against a pushpull process,
// in Node: every scenario for WebSocket and long polling, queue-server version 3 (text) and 4
// (protobuf).

import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';

import { PushpullServer, supportsStateFile } from './lib/server.mjs';
import {
  TEST_KEY, BINARY_SKIP, WAIT_MS, TestClient, makeUser, pullConfig, publicChannel, publishText,
  publishProto, request, randomHex, sign, sleep, waitFor, armWatchdog,
} from './lib/harness.mjs';
import { wire, killSockets, killXhrs } from './lib/node-shims.mjs';
import { describeRequestBatch } from './lib/proto.mjs';

armWatchdog('client.test.mjs');

const STATE_FILE = await supportsStateFile();
const STATE_SKIP = STATE_FILE ? false : 'pushpull --help has no --state-file: stored messages cannot survive a restart in this build';
/** A client whose first retry hit the restart window waits 15–18 s (client backoff, attempt 1). */
const RECONNECT_AFTER_RESTART_MS = 25_000;

const MATRIX = [
  { version: 3, transport: 'websocket' },
  { version: 3, transport: 'longpolling' },
  { version: 4, transport: 'websocket' },
  { version: 4, transport: 'longpolling' },
];

let nextUserId = 100;

for (const { version, transport } of MATRIX) {
  const ws = transport === 'websocket';
  const binary = version === 4;
  describe(`queue-server version ${version} (${binary ? 'protobuf' : 'text'}), ${transport}`, { skip: binary && BINARY_SKIP }, () => {
    let srv;
    let tmp;
    const sharedPriv = randomHex(16);
    const clients = [];

    before(async () => {
      tmp = mkdtempSync(path.join(os.tmpdir(), 'pushpull-client-'));
      srv = new PushpullServer({ key: TEST_KEY, stateFile: STATE_FILE ? path.join(tmp, 'state') : null });
      await srv.start();
    });

    afterEach(() => {
      for (const c of clients.splice(0)) c.destroy();
    });

    after(async () => {
      for (const c of clients.splice(0)) c.destroy();
      const status = srv ? await srv.stop() : null;
      if (srv && srv.log) console.log(srv.log);
      if (status && status.code !== 0) console.log(`pushpull exit status: ${JSON.stringify(status)}`);
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    function config(user, extra = {}) {
      return pullConfig({ version, transport, subPort: srv.subPort, pubPort: srv.pubPort, sign, user, sharedPriv, ...extra });
    }

    /** A started client; resolves once the server has it registered as a subscriber. */
    async function connectedClient({ user = makeUser(nextUserId++, randomHex), configFor, publicList } = {}) {
      const c = new TestClient({ user, configFor: configFor || (() => config(user)), publicList });
      clients.push(c);
      // A long-poll client's start() resolves only after 5 s of hanging poll: do not wait for it.
      const started = c.start();
      started.catch((e) => c.logLines.push(`start failed: ${e && e.message}`));
      await waitSubscribed(user.priv, 1);
      return c;
    }

    async function subscribers(priv) {
      const res = await request(srv.pubPort, 'GET', `/bitrix/pub/?CHANNEL_ID=${priv}`);
      assert.equal(res.status, 200, res.body);
      return JSON.parse(res.body).infos[0].subscribers;
    }

    async function waitSubscribed(priv, n, ms = WAIT_MS) {
      await waitFor(`the server to count ${n} subscriber(s) of ${priv}`, async () => (await subscribers(priv)) >= n, ms);
    }

    const publish = (priv, n, api = 'text') =>
      (api === 'text' ? publishText : publishProto)(srv, priv, 'c', { n, api }, 600).then((r) => JSON.parse(r.body || '{}').mid);

    /** The client's connection attempts (WS upgrade URLs or long-poll GETs), in order. */
    const attempts = (c) =>
      wire.about(c.user.priv).filter((e) => (ws ? e.kind === 'ws-connect' : e.kind === 'xhr' && e.method === 'GET'));

    /** Every mid the server put on the wire to this client; each must appear once. */
    function assertNoWireDuplicates(c) {
      const mids = wire.about(c.user.priv).flatMap((e) => e.mids || []);
      const seen = new Set();
      const dups = mids.filter((m) => (seen.has(m) ? true : (seen.add(m), false)));
      assert.deepEqual(dups, [], `the server sent these mids twice: ${dups}`);
      assert.deepEqual(c.duplicates(), [], 'the client skipped duplicates');
    }

    /** Version 3 gets text frames/bodies, version 4 binary ResponseBatch ones. */
    function assertWireFormat(c) {
      const got = wire.about(c.user.priv).filter((e) => (e.kind === 'ws-recv' || (e.kind === 'xhr' && e.method === 'GET' && e.status === 200)) && (e.mids || []).length);
      assert.ok(got.length > 0, 'no payload seen on the wire');
      for (const e of got) {
        if (e.kind === 'ws-recv') assert.equal(e.binary, binary, `WebSocket frame should be ${binary ? 'binary' : 'text'}`);
        else assert.equal(String(e.headers['content-type']).startsWith(binary ? 'application/octet-stream' : 'text/plain'), true, `long-poll content-type ${e.headers['content-type']}`);
      }
    }

    function check(received, api, n) {
      const m = received.find((x) => x.params.n === n);
      assert.ok(m, `message ${n} missing`);
      assert.equal(m.command, 'c');
      assert.deepEqual({ n: m.params.n, api: m.params.api }, { n, api });
      assert.equal(m.extra.revision_web, 19);
      assert.equal(m.extra.server_name, 'pushpull-test');
      if (binary) assert.equal(m.extra.sender.type, 2, 'a back-end message has sender.type BACKEND (2)');
    }

    it('1a: a message published through the text API reaches the subscription callback', async () => {
      const c = await connectedClient();
      await publish(c.user.priv, 1, 'text');
      assert.deepEqual(await c.waitForNs([1], 'text publish'), [1]);
      check(c.server, 'text', 1);
      assertWireFormat(c);
      assertNoWireDuplicates(c);
    });

    it('1b: a message published through the protobuf API reaches the subscription callback', { skip: BINARY_SKIP }, async () => {
      const c = await connectedClient();
      await publish(c.user.priv, 1, 'proto');
      await publish(c.user.priv, 2, 'text');
      assert.deepEqual(await c.waitForNs([1, 2], 'protobuf then text publish'), [1, 2]);
      check(c.server, 'proto', 1);
      check(c.server, 'text', 2);
      assertWireFormat(c);
      assertNoWireDuplicates(c);
    });

    it('2a: the connection is cut while messages are published: the client resumes from its last mid, no loss, no duplicate', async (t) => {
      const c = await connectedClient();
      const mid1 = await publish(c.user.priv, 1);
      await c.waitForNs([1], 'first message');
      await waitSubscribed(c.user.priv, 1);
      const before = attempts(c).length;
      const killed = ws ? killSockets((u) => u.includes(c.user.priv)) : killXhrs((u) => u.includes(c.user.priv));
      assert.equal(killed, 1, 'one live connection to cut');
      const tCut = Date.now();
      await publish(c.user.priv, 2, binary ? 'proto' : 'text');
      await publish(c.user.priv, 3);
      await publish(c.user.priv, 4);
      const tPublished = Date.now();
      await c.waitForNs([1, 2, 3, 4], 'messages published while cut off');
      await publish(c.user.priv, 5);
      assert.deepEqual(await c.waitForNs([1, 2, 3, 4, 5], 'live message after the resume'), [1, 2, 3, 4, 5]);
      const again = attempts(c).slice(before);
      assert.ok(again.length >= 1, 'the client reconnected');
      assert.ok(again[0].t >= tPublished, `the client reconnected ${again[0].t - tCut} ms after the cut, before the 3 publishes were done (${tPublished - tCut} ms): nothing was published while it was away`);
      assert.match(again[0].url, new RegExp(`[?&]mid=${mid1}(&|$)`), 'the reconnect carries the last mid');
      t.diagnostic(`reconnected ${again[0].t - tCut} ms after the cut; URL ${again[0].url}`);
      assertNoWireDuplicates(c);
    });

    it('2b: the browser goes offline and online again (window events): the client resumes from its last mid', async () => {
      const c = await connectedClient();
      const mid1 = await publish(c.user.priv, 1);
      await c.waitForNs([1], 'first message');
      const before = attempts(c).length;
      window.dispatchEvent(new Event('offline'));
      await waitFor('the server to drop the subscriber', async () => (await subscribers(c.user.priv)) === 0);
      await publish(c.user.priv, 2);
      await publish(c.user.priv, 3, binary ? 'proto' : 'text');
      await sleep(300);
      assert.deepEqual(c.ns(), [1], 'nothing arrives while offline');
      window.dispatchEvent(new Event('online'));
      assert.deepEqual(await c.waitForNs([1, 2, 3], 'messages published while offline'), [1, 2, 3]);
      await publish(c.user.priv, 4);
      assert.deepEqual(await c.waitForNs([1, 2, 3, 4], 'live message after coming back'), [1, 2, 3, 4]);
      assert.match(attempts(c)[before].url, new RegExp(`[?&]mid=${mid1}(&|$)`), 'the reconnect carries the last mid');
      assertNoWireDuplicates(c);
    });

    it('3a: the server restarts (SIGTERM, start on the same ports): the client reconnects by itself and gets new messages', async (t) => {
      const c = await connectedClient();
      await publish(c.user.priv, 1);
      await c.waitForNs([1], 'first message');
      const before = attempts(c).length;
      const t0 = Date.now();
      const downMs = await srv.restart();
      await waitSubscribed(c.user.priv, 1, RECONNECT_AFTER_RESTART_MS);
      const back = Date.now() - t0;
      await publish(c.user.priv, 2);
      assert.deepEqual(await c.waitForNs([1, 2], 'a message after the restart'), [1, 2]);
      const tries = attempts(c).slice(before);
      t.diagnostic(`server down ${downMs} ms; client subscribed again after ${back} ms, ${tries.length} attempt(s): ` +
        tries.map((e) => `+${e.t - t0} ms ${e.kind === 'xhr' ? e.status : ''}`).join(', '));
      const closes = wire.about(c.user.priv).filter((e) => e.kind === 'ws-close').map((e) => `${e.code} ${e.reason}`);
      if (ws) assert.ok(closes.includes('1001 1001: Server shutdown.'), `close frames seen: ${closes}`);
      assertNoWireDuplicates(c);
    });

    it('3b: the server restarts with --state-file: messages stored before the restart are caught up', { skip: STATE_SKIP }, async () => {
      const c = await connectedClient();
      const mid1 = await publish(c.user.priv, 1);
      await c.waitForNs([1], 'first message');
      window.dispatchEvent(new Event('offline'));
      await waitFor('the server to drop the subscriber', async () => (await subscribers(c.user.priv)) === 0);
      await publish(c.user.priv, 2);
      await publish(c.user.priv, 3, binary ? 'proto' : 'text');
      const before = attempts(c).length;
      await srv.restart();
      window.dispatchEvent(new Event('online'));
      assert.deepEqual(await c.waitForNs([1, 2, 3], 'messages stored before the restart'), [1, 2, 3]);
      await publish(c.user.priv, 4);
      assert.deepEqual(await c.waitForNs([1, 2, 3, 4], 'a live message after the restart'), [1, 2, 3, 4]);
      assert.match(attempts(c)[before].url, new RegExp(`[?&]mid=${mid1}(&|$)`));
      assertNoWireDuplicates(c);
    });

    it(`4: a bad channel signature is refused (${ws ? 'close 4010' : 'HTTP 400'}) and the client reacts`, async (t) => {
      const user = makeUser(nextUserId++, randomHex);
      const c = new TestClient({ user, configFor: (n) => config(user, { badSignature: n === 1 }) });
      clients.push(c);
      const random = Math.random;
      // The client waits ceil(random·30)+5 s before reloading its config after 4010; pin the
      // draw to its lowest value (5 s) so the test is quick. Nothing else in the client changes.
      if (ws) Math.random = () => 0;
      try {
        c.start().catch(() => {});
        if (ws) {
          const close = await waitFor('the 4010 close', () => wire.about(user.priv).find((e) => e.kind === 'ws-close'));
          assert.equal(close.code, 4010);
          assert.equal(close.reason, '4010: Wrong Channel Id.');
          assert.equal(c.b24.count('pull.config.get'), 1);
          await waitFor('the client to call pull.config.get again', () => c.b24.count('pull.config.get') === 2, 10_000);
          const reload = c.b24.calls.filter((x) => x.method === 'pull.config.get');
          t.diagnostic(`config reloaded ${reload[1].at - close.t} ms after the 4010 close`);
          await waitSubscribed(user.priv, 1);
          await publish(user.priv, 1);
          assert.deepEqual(await c.waitForNs([1], 'a message with the reloaded config'), [1]);
        } else {
          const poll = await waitFor('the refused poll', () => wire.about(user.priv).find((e) => e.kind === 'xhr' && e.status !== undefined));
          assert.equal(poll.status, 400);
          assert.equal(poll.body, '4010: Wrong Channel Id.');
          // Long polling: LongPollingConnector treats any status but 200/304 as an error, and the
          // client only schedules a reconnect with its backoff (15–18 s for the first retry); it
          // does not reload the config for a 400 (only the WebSocket close code 4010 does).
          await waitFor('the client to schedule a retry', () => c.pull._reconnectTimeout);
          t.diagnostic(`long poll answered ${poll.status} "${poll.body}"; client scheduled a reconnect; pull.config.get calls: ${c.b24.count('pull.config.get')}`);
        }
      } finally {
        Math.random = random;
      }
    });

    if (version === 3) {
      it('5 (version 3): the client refuses to publish (publishing needs version > 3)', async () => {
        const a = await connectedClient();
        const b = makeUser(nextUserId++, randomHex);
        await assert.rejects(
          a.pull.sendMessageToChannels([`${b.pub}.${sign(`public:${b.pub}`)}`], 'test', 'hello', { n: 1 }, 600),
          /Client publishing is not supported or is disabled/,
        );
      });
    } else {
      it('5: client A publishes to user B\'s public channel; B receives it from sender CLIENT with A\'s public id', { skip: BINARY_SKIP }, async (t) => {
        const userA = makeUser(nextUserId++, randomHex);
        const userB = makeUser(nextUserId++, randomHex);
        const now = new Date();
        const later = new Date(now.getTime() + 3600e3);
        const publicList = { [userB.userId]: publicChannel(userB, sign, now.toISOString(), later.toISOString()) };
        const b = await connectedClient({ user: userB });
        const a = await connectedClient({ user: userA, publicList });
        // The server counts A at the upgrade; the client sends only once its socket is open (it
        // drops a message sent before, "WebSocket is not connected").
        if (ws) await waitFor("A's client to see its WebSocket open", () => a.pull.isConnected());
        // Through sendMessageToChannels with "<public id>.<signature>".
        await a.pull.sendMessageToChannels([`${userB.pub}.${sign(`public:${userB.pub}`)}`], 'test', 'hello', { n: 1 }, 600);
        await waitFor('B to get message 1 from A', () => b.client.find((m) => m.params.n === 1));
        // Through sendMessage with B's user id: the client asks pull.channel.public.list.
        await a.pull.sendMessage([userB.userId], 'test', 'hello', { n: 2 });
        await waitFor('B to get message 2 from A', () => b.client.find((m) => m.params.n === 2));
        for (const m of b.client) {
          assert.equal(m.command, 'hello');
          assert.equal(m.extra.sender.type, 1, 'sender.type CLIENT (1)');
          assert.equal(m.extra.sender.id, userA.pub, 'sender.id = A\'s public id');
        }
        assert.equal(a.b24.count('pull.channel.public.list'), 1);
        assert.deepEqual(a.client, [], 'A is not a receiver');
        const sent = wire.about(userA.priv).filter((e) => (ws ? e.kind === 'ws-send' : e.kind === 'xhr' && e.method === 'POST'));
        assert.equal(sent.length, 2);
        for (const e of sent) {
          t.diagnostic(`${ws ? 'WS binary frame' : `POST ${e.url} -> ${e.status}`}: ${(ws ? e.bytes : e.sentBytes).toString('hex')}`);
          t.diagnostic(`  = ${JSON.stringify(describeRequestBatch(ws ? e.bytes : e.sentBytes))}`);
        }
      });
    }
  });
}
