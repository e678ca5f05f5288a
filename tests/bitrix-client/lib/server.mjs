// Starts and stops a pushpull process for the tests: free loopback ports, wait until both
// listeners accept, stop by pid (SIGTERM, then SIGKILL), restart on the same ports.

import { spawn, execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** How long a started server may take to listen on both ports. */
export const START_TIMEOUT_MS = 10_000;
/** How long a SIGTERM'd server may take to exit before it gets SIGKILL (the spec says 4.8 s). */
export const STOP_TIMEOUT_MS = 6_000;

/** Every server process started by this module, so a crashing test run still stops them. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** The pushpull binary: $PUSHPULL_BIN, else ../../target/debug/pushpull from this folder. */
export function pushpullBin() {
  return process.env.PUSHPULL_BIN || path.resolve(HERE, '..', '..', '..', 'target', 'debug', 'pushpull');
}

let helpCache = null;

/** The output of `pushpull --help` (cached). */
export async function pushpullHelp() {
  if (helpCache === null) {
    helpCache = await new Promise((resolve, reject) => {
      execFile(pushpullBin(), ['--help'], { timeout: 10_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${pushpullBin()} --help failed: ${err.message}\n${stderr}`));
        else resolve(stdout);
      });
    });
  }
  return helpCache;
}

/** Whether the binary has `--state-file` (stored messages survive a restart). */
export async function supportsStateFile() {
  return (await pushpullHelp()).includes('--state-file');
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.setTimeout(500);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('timeout', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One pushpull process (re)started on fixed ports. */
export class PushpullServer {
  /**
   * @param {object} o
   * @param {string} o.key security key
   * @param {string|null} [o.stateFile] passed as --state-file when set
   */
  constructor({ key, stateFile = null }) {
    this.key = key;
    this.stateFile = stateFile;
    this.subPort = 0;
    this.pubPort = 0;
    this.child = null;
    this.log = '';
    this.starts = 0;
  }

  /** Starts the process (choosing ports the first time) and waits until both ports accept. */
  async start() {
    if (!existsSync(pushpullBin())) {
      throw new Error(`pushpull binary not found at ${pushpullBin()} (set PUSHPULL_BIN)`);
    }
    if (!this.subPort) this.subPort = await freePort();
    if (!this.pubPort) this.pubPort = await freePort();
    const args = [
      '--sub-listen', `127.0.0.1:${this.subPort}`,
      '--pub-listen', `127.0.0.1:${this.pubPort}`,
      '--security-key', this.key,
      '--threads', '2',
      '--log-level', 'warn',
    ];
    if (this.stateFile) args.push('--state-file', this.stateFile);
    // GET /pub/ counts a channel as online (subscribers 1) for online_ttl + online_delta after its
    // last connection left; the scenarios watch subscribers fall to 0, so the window is minimal.
    const env = { ...process.env, PUSHPULL_ONLINE_TTL: '1ms', PUSHPULL_ONLINE_DELTA: '0' };
    const child = spawn(pushpullBin(), args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.starts += 1;
    const tag = `[pushpull#${this.starts} pid ${child.pid}] `;
    const take = (chunk) => {
      this.log += chunk.toString().split('\n').filter(Boolean).map((l) => tag + l + '\n').join('');
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let exited = null;
    child.exitPromise = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        exited = { code, signal };
        live.delete(child);
        resolve(exited);
      });
    });
    live.add(child);
    this.child = child;
    const until = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (exited) {
        throw new Error(`pushpull exited during start (${JSON.stringify(exited)}):\n${this.log}`);
      }
      if ((await canConnect(this.subPort)) && (await canConnect(this.pubPort))) return;
      if (Date.now() > until) {
        await this.stop();
        throw new Error(`pushpull did not listen within ${START_TIMEOUT_MS} ms:\n${this.log}`);
      }
      await sleep(25);
    }
  }

  /** SIGTERM by pid, wait for the exit (SIGKILL after STOP_TIMEOUT_MS); returns the exit status. */
  async stop() {
    const child = this.child;
    if (!child) return null;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return child.exitPromise;
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, STOP_TIMEOUT_MS);
    const status = await child.exitPromise;
    clearTimeout(timer);
    return status;
  }

  /** Stops and starts again on the same ports; returns how long the ports were down (ms). */
  async restart() {
    const t0 = Date.now();
    await this.stop();
    await this.start();
    return Date.now() - t0;
  }
}
