// The config a Bitrix portal hands its pull client (REST `pull.config.get`, PHP
// Bitrix\Pull\Config::get), and a fake `b24` REST object that serves it and counts the calls.
// Pure data: no sockets. Used in Node and bundled into the browser page.

/** The security key of every test server (PHP option `signature_key`). */
export const TEST_KEY = 'pushpull-bitrix-client-test-key';
/** The client's REVISION; any other `revision_web` disables the client. */
export const REVISION_WEB = 19;
/** PHP's CPullChannel::CHANNEL_TTL: a channel is replaced after this many seconds. */
export const CHANNEL_TTL = 43205;

/**
 * A user as the PHP module knows it: a private channel id and its public twin (32 hex each).
 * @param {number} userId
 * @param {(n: number) => string} randomHex n random bytes as hex
 */
export function makeUser(userId, randomHex) {
  return { userId, priv: randomHex(16), pub: randomHex(16) };
}

/**
 * Builds the result of `pull.config.get` the way PHP's Config::get(['JSON' => true]) does.
 *
 * @param {object} o
 * @param {3|4} o.version queue-server version: 3 = text (NGINX) frames, 4 = protobuf (binaryMode)
 * @param {'websocket'|'longpolling'} o.transport websocket_enabled is true only for 'websocket'
 * @param {number} o.subPort port of the sub listener
 * @param {number} o.pubPort port of the pub listener
 * @param {(data: string) => string} o.sign hex HMAC with the security key
 * @param {{userId:number, priv:string, pub:string}} o.user the client's user
 * @param {string} o.sharedPriv the shared channel (user 0)
 * @param {Array<{userId:number, pub:string}>} [o.publicUsers] public channels to list
 * @param {boolean} [o.badSignature] corrupt the private channel's signature
 * @param {string} [o.host] host name in the URLs
 */
export function pullConfig(o) {
  const host = o.host || '127.0.0.1';
  const now = new Date();
  const start = isoDate(now);
  const end = isoDate(new Date(now.getTime() + CHANNEL_TTL * 1000));
  // Version > 3 signs "<private>:<public>", version 3 only "<private>" (Config::get, SignChannel).
  const signed = o.version > 3 ? `${o.user.priv}:${o.user.pub}` : o.user.priv;
  let sig = o.sign(signed);
  if (o.badSignature) sig = flipHex(sig);
  const privateChannel = { id: `${signed}.${sig}`, start, end, type: 'private' };
  if (o.version > 3) privateChannel.public_id = o.user.pub;
  const publicChannels = {};
  for (const u of o.publicUsers || [o.user]) {
    publicChannels[String(u.userId)] = publicChannel(u, o.sign, start, end);
  }
  const ws = `ws://${host}:${o.subPort}/bitrix/subws/`;
  const lp = `http://${host}:${o.subPort}/bitrix/sub/`;
  const publish = `http://${host}:${o.pubPort}/bitrix/rest/`;
  return {
    server: {
      version: o.version,
      server_enabled: true,
      mode: 'personal',
      long_polling: lp,
      long_pooling_secure: lp.replace('http:', 'https:'),
      websocket_enabled: o.transport === 'websocket',
      websocket: ws,
      websocket_secure: ws.replace('ws:', 'wss:'),
      publish_enabled: o.version > 3,
      publish,
      publish_secure: publish.replace('http:', 'https:'),
      config_timestamp: 0,
    },
    api: { revision_web: REVISION_WEB, revision_mobile: 3 },
    channels: {
      private: privateChannel,
      shared: { id: `${o.sharedPriv}.${o.sign(o.sharedPriv)}`, start, end, type: 'shared' },
    },
    publicChannels,
    clientId: null,
    jwt: null,
    exp: 0,
    serverTime: start,
  };
}

/** One entry of `publicChannels` / `pull.channel.public.list` (PHP Channel::getPublicIds). */
export function publicChannel(user, sign, start, end) {
  return {
    user_id: String(user.userId),
    public_id: user.pub,
    signature: sign(`public:${user.pub}`),
    start,
    end,
  };
}

/** PHP date('c'): ISO 8601 with seconds and offset. */
function isoDate(d) {
  return d.toISOString().replace(/\.\d{3}Z$/, '+00:00');
}

/** The same hex string with its first digit changed. */
export function flipHex(hex) {
  return (hex[0] === '0' ? '1' : '0') + hex.slice(1);
}

/**
 * A fake `b24` object: the only part of a portal the pull client talks to.
 * `configs` is called for every `pull.config.get` with the call number (1, 2, …).
 */
export class FakeB24 {
  constructor({ configFor, publicList = {} }) {
    this.configFor = configFor;
    this.publicList = publicList;
    this.calls = [];
    const self = this;
    this.actions = {
      v2: {
        call: {
          async make({ method, params }) {
            self.calls.push({ method, params, at: Date.now() });
            if (method === 'pull.config.get') {
              const n = self.calls.filter((c) => c.method === method).length;
              return answer(JSON.parse(JSON.stringify(self.configFor(n))));
            }
            throw new Error(`fake b24: unexpected REST call ${method}`);
          },
        },
      },
    };
  }

  /** The old-style call the client uses for `pull.channel.public.list`. */
  async callMethod(method, params) {
    this.calls.push({ method, params, at: Date.now() });
    if (method === 'pull.channel.public.list') {
      const result = {};
      for (const id of params.users || []) {
        if (this.publicList[id]) result[id] = this.publicList[id];
      }
      return answer(result);
    }
    throw new Error(`fake b24: unexpected REST call ${method}`);
  }

  /** How many times `method` was called. */
  count(method) {
    return this.calls.filter((c) => c.method === method).length;
  }
}

function answer(result) {
  return { getData: () => ({ result }), isSuccess: true };
}
