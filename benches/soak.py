#!/usr/bin/env python3
"""Soak test for pushpull: thousands of connections churning for a bounded time, RSS over time.

Starts a release pushpull (or uses --pid/--sub/--pub of a running one), then runs --clients
concurrent client loops for --duration seconds. Each loop repeatedly picks one of:

  * WebSocket subscriber: upgrade, wait for one message published on its channel, close
    (sometimes with a close frame, sometimes by dropping the socket);
  * long-poll subscriber: GET, wait for its message (200) or the hold (304), disconnect;
  * bad request: garbage bytes, an oversized head, a truncated head left hanging, a bad
    WebSocket frame after the upgrade, a publish with a bad body;

while publishers post to the channels the subscribers wait on. Every second the server's RSS
(VmRSS) and the live connection count are sampled. After --warmup seconds the RSS is the
baseline; the run fails (exit 1) if the RSS at the end exceeds the baseline by more than
--max-growth (default 10 %) plus 2 MiB, or if the server died, or if clients saw no messages.

Output: one line per sample, then a summary line and a JSON file (--out) with every sample.
Only the Python standard library is used. Targets loopback only; every wait is bounded.
"""

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Stats:
    def __init__(self):
        self.counts = {}

    def add(self, key, n=1):
        self.counts[key] = self.counts.get(key, 0) + n


def channel(rng):
    return "%032x" % rng.getrandbits(128)


async def read_until(reader, marker, limit, timeout):
    return await asyncio.wait_for(reader.readuntil(marker), timeout)


async def http_request(host, port, raw, timeout):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
        return status, body
    finally:
        writer.close()


def ws_frame(opcode, payload, fin=True):
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def ws_subscriber(args, rng, st, channels):
    ch = rng.choice(channels)
    key = base64.b64encode(os.urandom(16)).decode()
    req = (
        f"GET /bitrix/subws/?CHANNEL_ID={ch} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(args.host, args.sub), 5)
    try:
        writer.write(req)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if not head.startswith(b"HTTP/1.1 101"):
            st.add("ws_refused")
            return
        st.add("ws_open")
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            first = await asyncio.wait_for(reader.readexactly(2), deadline - time.monotonic())
            n = first[1] & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(n)
            opcode = first[0] & 0x0F
            if opcode == 9:
                writer.write(ws_frame(10, payload))
            elif opcode == 1 and b"#!NGINXNMS!#" in payload:
                st.add("ws_messages")
                break
            elif opcode == 8:
                st.add("ws_closed_by_server")
                return
        if rng.random() < 0.5:
            writer.write(ws_frame(8, (1000).to_bytes(2, "big")))
            await writer.drain()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError):
        st.add("ws_no_message")
    finally:
        writer.close()


async def poll_subscriber(args, rng, st, channels):
    ch = rng.choice(channels)
    raw = f"GET /bitrix/sub/?CHANNEL_ID={ch} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    try:
        status, body = await http_request(args.host, args.sub, raw, args.wait + 5)
        st.add(f"poll_{status}")
        if status == 200 and b"#!NGINXNMS!#" in body:
            st.add("poll_messages")
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        st.add("poll_error")


BAD = [
    b"\x00\x01\x02garbage\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /bitrix/sub/?CHANNEL_ID=zz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /bitrix/sub/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"GET /bitrix/sub/ HTTP/1.1\r\n" + b"X-A: b\r\n" * 300 + b"\r\n",
    b"GET /bitrix/sub/?CHANNEL_ID=",  # truncated, left hanging
]


async def bad_client(args, rng, st, channels):
    kind = rng.randrange(len(BAD) + 1)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(args.host, args.sub), 5
        )
    except (asyncio.TimeoutError, OSError):
        st.add("bad_connect_error")
        return
    try:
        if kind < len(BAD):
            writer.write(BAD[kind])
            await writer.drain()
            try:
                await asyncio.wait_for(reader.read(4096), 2 if kind == len(BAD) - 1 else 5)
            except asyncio.TimeoutError:
                pass
            st.add(f"bad_{kind}")
        else:
            # A WebSocket that sends an unmasked frame (a protocol error).
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                (
                    f"GET /bitrix/subws/?CHANNEL_ID={rng.choice(channels)} HTTP/1.1\r\nHost: x\r\n"
                    f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
                + b"\x81\x05hello"
            )
            await writer.drain()
            try:
                await asyncio.wait_for(reader.read(4096), 5)
            except asyncio.TimeoutError:
                pass
            st.add("bad_ws_frame")
    except (ConnectionError, OSError):
        st.add("bad_reset")
    finally:
        writer.close()


async def client_loop(args, seed, st, channels, stop):
    rng = random.Random(seed)
    while not stop.is_set():
        r = rng.random()
        try:
            if r < 0.5:
                await ws_subscriber(args, rng, st, channels)
            elif r < 0.8:
                await poll_subscriber(args, rng, st, channels)
            else:
                await bad_client(args, rng, st, channels)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            st.add("client_error_" + type(e).__name__)
            await asyncio.sleep(0.1)


async def publisher_loop(args, seed, st, channels, stop):
    rng = random.Random(seed)
    while not stop.is_set():
        ch = rng.choice(channels)
        body = json.dumps({"module_id": "soak", "command": "m", "params": {"t": time.time()}})
        raw = (
            f"POST /bitrix/pub/?CHANNEL_ID={ch} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(body)}\r\nMessage-Expiry: 30\r\n\r\n{body}"
        ).encode()
        try:
            status, _ = await http_request(args.host, args.pub, raw, 5)
            st.add(f"publish_{status}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            st.add("publish_error")
        await asyncio.sleep(1.0 / args.publish_rate)


async def sampler(args, pid, st, samples, stop, started):
    while not stop.is_set():
        now = time.monotonic() - started
        sample = {"t": round(now, 1), "rss_kib": rss_kib(pid), "fds": fds(pid)}
        sample.update({k: v for k, v in st.counts.items() if k in ("ws_messages", "poll_messages")})
        samples.append(sample)
        print(json.dumps(sample), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


async def run(args, pid):
    st = Stats()
    stop = asyncio.Event()
    rng = random.Random(args.seed)
    channels = [channel(rng) for _ in range(args.channels)]
    samples = []
    started = time.monotonic()
    tasks = [asyncio.create_task(sampler(args, pid, st, samples, stop, started))]
    for i in range(args.clients):
        tasks.append(asyncio.create_task(client_loop(args, args.seed + i, st, channels, stop)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    for i in range(args.publishers):
        tasks.append(
            asyncio.create_task(publisher_loop(args, args.seed * 7 + i, st, channels, stop))
        )
    await asyncio.sleep(args.duration)
    stop.set()
    await asyncio.wait(tasks, timeout=args.wait + 15)
    for t in tasks:
        t.cancel()
    return st, samples


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=2000, help="concurrent client loops")
    p.add_argument("--channels", type=int, default=200)
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--publish-rate", type=float, default=50.0, help="per publisher, per second")
    p.add_argument("--duration", type=float, default=120.0, help="seconds of churn")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds before the RSS baseline")
    p.add_argument("--wait", type=float, default=3.0, help="seconds a subscriber waits for a message")
    p.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth after warm-up")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--sub", type=int, default=0, help="sub port of a running server (else start one)")
    p.add_argument("--pub", type=int, default=0)
    p.add_argument("--pid", type=int, default=0)
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "pushpull"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="")
    args = p.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("soak.py targets loopback only")

    proc = None
    if not args.pid:
        if not os.path.exists(args.bin):
            subprocess.run(["cargo", "build", "--release", "-p", "pushpull"], cwd=ROOT, check=True)
        ports = []
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
            s.close()
        args.sub, args.pub = ports
        log = tempfile.NamedTemporaryFile(prefix="pushpull-soak-", suffix=".log", delete=False)
        proc = subprocess.Popen(
            [args.bin, "--sub-listen", f"127.0.0.1:{args.sub}", "--pub-listen",
             f"127.0.0.1:{args.pub}", "--longpoll-hold", f"{max(1, int(args.wait))}s",
             "--log-level", "warn"],
            stdout=log, stderr=log,
            env={k: v for k, v in os.environ.items() if not k.startswith("PUSHPULL_")},
        )
        args.pid = proc.pid
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", args.pub), 0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    proc.kill()
                    sys.exit("pushpull did not start")
                time.sleep(0.05)
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.clients * 2 + 100)), hard))
        st, samples = asyncio.run(run(args, args.pid))
    finally:
        alive = proc is None or proc.poll() is None
        end_rss = rss_kib(args.pid)
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    base = [s["rss_kib"] for s in samples if s["t"] >= args.warmup and s["rss_kib"]]
    baseline = base[0] if base else None
    final = [s["rss_kib"] for s in samples if s["rss_kib"]]
    end = final[-1] if final else end_rss
    peak = max(final) if final else None
    messages = st.counts.get("ws_messages", 0) + st.counts.get("poll_messages", 0)
    ok = alive and baseline is not None and end is not None and messages > 0
    if ok:
        ok = end <= baseline * (1 + args.max_growth) + 2048
    summary = {
        "clients": args.clients,
        "duration_s": args.duration,
        "rss_start_kib": final[0] if final else None,
        "rss_baseline_kib": baseline,
        "rss_end_kib": end,
        "rss_peak_kib": peak,
        "server_alive": alive,
        "counts": st.counts,
        "outcome": "OK" if ok else "FAIL",
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "samples": samples}, f, indent=1)
    print(
        f"soak: clients={args.clients} duration={args.duration}s rss_start={summary['rss_start_kib']}KiB "
        f"rss_after_warmup={baseline}KiB rss_end={end}KiB rss_peak={peak}KiB "
        f"ws_messages={st.counts.get('ws_messages', 0)} poll_messages={st.counts.get('poll_messages', 0)} "
        f"bad={sum(v for k, v in st.counts.items() if k.startswith('bad_'))} "
        f"alive={alive} outcome={summary['outcome']}"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
