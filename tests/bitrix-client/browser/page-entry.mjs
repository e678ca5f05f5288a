// The browser page's script, bundled by esbuild at test time: the real PullClient with a fake
// portal whose `pull.config.get` answers the config the test driver passes to startPull().

import { B24PullClientManager as PullClient } from '@bitrix24/b24jssdk';
import { FakeB24 } from '../lib/config.mjs';

const state = { server: [], client: [], statuses: [], logs: [], errors: [] };
window.__pull = state;

function logger() {
  const log = (level) => (message, context) => {
    let ctx = '';
    try {
      ctx = context ? ' ' + JSON.stringify(context, (_k, v) => (v instanceof Error ? v.message : v)) : '';
    } catch {
      ctx = ' <context>';
    }
    state.logs.push(`${level}: ${message}${ctx}`);
    return Promise.resolve();
  };
  const o = {};
  for (const l of ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency', 'log']) o[l] = log(l);
  return o;
}

/**
 * Starts a client for `userId`: `configs` is the list of configs the n-th `pull.config.get`
 * returns (the last one repeats); `publicList` answers `pull.channel.public.list`.
 */
window.startPull = ({ userId, configs, publicList = {} }) => {
  const b24 = new FakeB24({ configFor: (n) => configs[Math.min(n, configs.length) - 1], publicList });
  const client = new PullClient({ b24, userId, siteId: 's1', skipStorageInit: true });
  client.setLogger(logger());
  client.subscribe({ moduleId: 'test', callback: (data) => state.server.push(data) });
  client.subscribe({ type: 'client', moduleId: 'test', callback: (data) => state.client.push(data) });
  client.subscribe({ type: 'status', callback: (data) => state.statuses.push(data.status) });
  window.__client = client;
  window.__b24 = b24;
  client.start().catch((e) => state.errors.push(String((e && e.message) || JSON.stringify(e))));
  return true;
};
