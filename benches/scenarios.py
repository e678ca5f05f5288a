#!/usr/bin/env python3
"""Side-by-side benchmark of pushpull and nchan (Debian nginx + libnginx-mod-nchan).

Builds the release binaries, installs nginx and the nchan module when missing (apt-get), then
for R rounds runs the scenarios below against a freshly started pushpull and a freshly started
nchan, alternating which goes first, with the same load from pushpull-loadgen. Raw loadgen JSON
goes to benches/results/<date>/round-<r>/; the summary (medians with min-max over the rounds and
the pushpull/nchan ratios) is printed as a text table and as a markdown table for
benches/README.md, and written to summary.json and summary.md beside the raw files.

  a idle       WebSocket subscribers connected and idle: server RSS per connection
  b fanout     WebSocket subscribers on 100 channels, 200-byte messages as fast as accepted
  c broadcast  subscribers on one channel, 10 messages/s: time until the last one has each
  d steady     1,000 publishes/s spread over the channels: latency
  e longpoll   long-poll subscribers under continuous publishing: completed polls/s
  f publish    publishes/s over keep-alive, without and with subscribers

Every process it starts (servers, generators) is stopped by its pid at the end, also on errors
and on Ctrl-C. Only loopback addresses are used. Python 3.9+, standard library only.

  benches/scenarios.py                      # full size, 3 rounds (about 10 minutes)
  benches/scenarios.py --quick --only pushpull --rounds 1   # seconds: the CI smoke run
"""

import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NCHAN_CONF = ROOT / "benches" / "nchan" / "nginx.conf.in"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
NGINX = Path("/usr/sbin/nginx")

# Most subscribers one generator process is given; more are spread over several processes
# (the open-files limit here is 20,000 per process and cannot be raised).
DEFAULT_MAX_SUBS_PER_PROCESS = 10_000
# Source addresses per generator process (each gives ~28,000 ephemeral ports); every run gets a
# fresh 127.x.y.0/24 block so sockets in TIME_WAIT from earlier runs never collide.
DEFAULT_SOURCES_PER_PROCESS = 8
# Longest wait for a server to accept connections after it was started, seconds.
DEFAULT_START_TIMEOUT = 15.0
# Longest wait for a server to exit after SIGTERM before SIGKILL, seconds.
DEFAULT_STOP_TIMEOUT = 10.0
# Total connections per second of all generator processes of a run.
DEFAULT_CONNECT_RATE = 5_000
# Publish requests in flight per publisher connection in the delivery scenarios (HTTP/1.1
# pipelining): a fixed rate holds while answers are slow, and "as fast as accepted" keeps the
# server busy instead of waiting for each answer; a server that takes pipelined publishes in
# batches then writes several messages per subscriber at once (benches/README.md, the fan-out
# pipeline sweep). The publish-API scenario also runs one request at a time (informative).
DEFAULT_PIPELINE = 256

# Scenario sizes: full (the numbers) and quick (a smoke run of seconds).
SIZES = {
    "full": {
        "idle_subs": 19_000,
        "fanout_subs": 10_000, "fanout_channels": 100, "fanout_messages": 20_000,
        "broadcast_subs": 10_000, "broadcast_secs": 10,
        "steady_subs": 10_000, "steady_channels": 1_000, "steady_rate": 1_000, "steady_secs": 10,
        "lp_subs": 5_000, "lp_channels": 500, "lp_rate": 10_000, "lp_secs": 10, "lp_drain": 40,
        "pub_messages": 200_000, "pub_messages_1": 50_000, "pub_subs": 1_000,
    },
    "quick": {
        "idle_subs": 1_000,
        "fanout_subs": 1_000, "fanout_channels": 20, "fanout_messages": 2_000,
        "broadcast_subs": 1_000, "broadcast_secs": 2,
        "steady_subs": 1_000, "steady_channels": 100, "steady_rate": 500, "steady_secs": 2,
        "lp_subs": 500, "lp_channels": 50, "lp_rate": 2_000, "lp_secs": 2, "lp_drain": 15,
        "pub_messages": 5_000, "pub_messages_1": 5_000, "pub_subs": 200,
    },
}

SCENARIOS = ["idle", "fanout", "broadcast", "steady", "longpoll", "publish"]
LETTERS = dict(zip(SCENARIOS, "abcdef"))

# (scenario, metric key, label, unit, higher is better, target for pushpull)
# A target is ("max", limit) for an absolute bound or ("ratio", factor) for "factor x nchan".
METRICS = [
    ("idle", "rss_per_sub", "server RSS per idle WebSocket", "B", False, ("max", 2048)),
    ("fanout", "deliveries_per_sec", "deliveries/s", "/s", True, ("ratio", 3.0)),
    ("fanout", "cpu_us_per_delivery", "server CPU per delivery", "µs", False, ("max", 1.5)),
    ("fanout", "p50_ms", "latency p50", "ms", False, None),
    ("fanout", "p99_ms", "latency p99", "ms", False, None),
    ("fanout", "p999_ms", "latency p99.9", "ms", False, None),
    ("broadcast", "last_p50_ms", "last subscriber has it, p50", "ms", False, None),
    ("broadcast", "last_p99_ms", "last subscriber has it, p99", "ms", False, ("max", 20.0)),
    ("steady", "p50_ms", "latency p50", "ms", False, None),
    ("steady", "p99_ms", "latency p99", "ms", False, ("max", 2.0)),
    ("steady", "p999_ms", "latency p99.9", "ms", False, None),
    ("longpoll", "polls_per_sec", "completed polls/s while publishing", "/s", True, ("ratio", 2.0)),
    ("longpoll", "deliveries_per_sec", "deliveries/s while publishing", "/s", True, None),
    ("publish", "pub_none_per_sec", "publishes/s, no subscribers, pipelined", "/s", True,
     ("ratio", 2.0)),
    ("publish", "pub_subs_per_sec", "publishes/s, with subscribers, pipelined", "/s", True,
     ("ratio", 2.0)),
    ("publish", "pub_none_1_per_sec", "publishes/s, no subscribers, one at a time", "/s", True,
     None),
    ("publish", "pub_subs_1_per_sec", "publishes/s, with subscribers, one at a time", "/s", True,
     None),
]


class Failure(Exception):
    """A run that could not be carried out."""


class Procs:
    """Every process the script starts, so that all of them are stopped by pid at the end."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, **kw):
        p = subprocess.Popen(cmd, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=DEFAULT_STOP_TIMEOUT, extra_pids=()):
        """Stops `p` (and `extra_pids`, its children, if they outlive it) by pid."""
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for pid in extra_pids:
            if Path(f"/proc/{pid}").exists():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p, timeout=3)


PROCS = Procs()


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=DEFAULT_START_TIMEOUT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise Failure(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise Failure(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def children(pid):
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def sample(pids):
    """Summed VmRSS and RssAnon (kB) of `pids`, as the generator samples them."""
    rss = anon = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError as e:
            raise Failure(f"server process {pid} is gone ({e})") from e
        for line in text.splitlines():
            parts = line.split()
            if parts[:1] == ["VmRSS:"]:
                rss += int(parts[1])
            elif parts[:1] == ["RssAnon:"]:
                anon += int(parts[1])
    return rss, anon


class Pushpull:
    name = "pushpull"

    def __init__(self, bins, workers, logdir):
        self.sub_port, self.pub_port = free_port(), free_port()
        self.log = open(logdir / "pushpull.log", "ab")
        self.proc = PROCS.start(
            [str(bins / "pushpull"), "--threads", str(workers),
             "--sub-listen", f"127.0.0.1:{self.sub_port}",
             "--pub-listen", f"127.0.0.1:{self.pub_port}", "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_port(self.sub_port, self.proc)
            wait_port(self.pub_port, self.proc)
        except BaseException:
            self.stop()
            raise
        self.pids = [self.proc.pid]

    def loadgen_args(self):
        return ["--target", "pushpull", "--sub-addr", f"127.0.0.1:{self.sub_port}",
                "--pub-addr", f"127.0.0.1:{self.pub_port}"]

    def stop(self):
        PROCS.stop(self.proc)
        self.log.close()


class Nchan:
    name = "nchan"

    def __init__(self, _bins, workers, logdir):
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="nchan-bench-"))
        for d in ("conf", "logs", "tmp"):
            (self.prefix / d).mkdir()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        conf = (NCHAN_CONF.read_text().replace("@PORT@", str(self.port))
                .replace("@WORKERS@", str(workers)).replace("@NOFILE@", str(nofile))
                .replace("@CONNECTIONS@", str(2 * nofile)))
        (self.prefix / "conf" / "nginx.conf").write_text(conf)
        self.logdir = logdir
        self.proc = PROCS.start(
            [str(NGINX), "-p", str(self.prefix), "-c", "conf/nginx.conf", "-e", "logs/error.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.workers = []
        try:
            wait_port(self.port, self.proc)
            end = time.monotonic() + DEFAULT_START_TIMEOUT
            while len(self.workers) < workers and time.monotonic() < end:
                self.workers = children(self.proc.pid)
                time.sleep(0.05)
            if len(self.workers) < workers:
                raise Failure(f"nginx started {len(self.workers)} of {workers} workers")
        except BaseException:
            self.stop()
            raise
        self.pids = [self.proc.pid] + self.workers

    def loadgen_args(self):
        return ["--target", "nchan", "--sub-addr", f"127.0.0.1:{self.port}",
                "--pub-addr", f"127.0.0.1:{self.port}"]

    def stop(self):
        # SIGTERM is nginx's fast shutdown; workers still alive afterwards are killed by pid.
        PROCS.stop(self.proc, extra_pids=self.workers)
        log = self.prefix / "logs" / "error.log"
        if log.exists():
            with open(self.logdir / "nchan-error.log", "ab") as out:
                out.write(log.read_bytes())
        shutil.rmtree(self.prefix, ignore_errors=True)


class Bench:
    def __init__(self, opts, bins, outdir):
        self.opts = opts
        self.bins = bins
        self.outdir = outdir
        self.size = SIZES["quick" if opts.quick else "full"]
        self.block = 0  # source-address block of the next generator process

    def sources(self):
        """A fresh range of source addresses for one generator process."""
        self.block += 1
        b = self.block % (256 * 255)
        hi, lo = 1 + b // 256, b % 256
        return f"127.{hi}.{lo}.1-127.{hi}.{lo}.{DEFAULT_SOURCES_PER_PROCESS}"

    def loadgen(self, server, args, out, timeout, ready_file=None, wait=True):
        cmd = [str(self.bins / "pushpull-loadgen"), *server.loadgen_args(),
               "--server-pid", ",".join(map(str, server.pids)),
               "--source-range", self.sources(), "--timeout", str(timeout), "--out", str(out),
               "--expiry", "60", *args]
        if ready_file:
            cmd += ["--ready-file", str(ready_file)]
        if self.opts.plot:
            cmd += ["--plot", str(out.with_suffix(".svg"))]
        p = PROCS.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        stdin=subprocess.DEVNULL)
        return self.finish(p, out, timeout) if wait else p

    def finish(self, p, out, timeout):
        try:
            text, _ = p.communicate(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            PROCS.stop(p)
            raise Failure(f"generator did not end within {timeout + 30} s")
        PROCS.procs.remove(p)
        line = text.strip().splitlines()[-1] if text.strip() else ""
        print(f"      {out.name}: {line}", flush=True)
        if p.returncode == 2 or not out.exists():
            raise Failure(f"generator could not run (exit {p.returncode}): {text.strip()}")
        report = json.loads(out.read_text())
        return p.returncode, report

    # -- scenarios: each returns ({metric: value}, [problems]) -------------------------------

    def idle(self, server, rdir):
        n = self.size["idle_subs"]
        procs = -(-n // DEFAULT_MAX_SUBS_PER_PROCESS)
        rate = DEFAULT_CONNECT_RATE // procs
        hold = 4 + 2 * n / DEFAULT_CONNECT_RATE
        timeout = int(hold + n / DEFAULT_CONNECT_RATE + 30)
        base_rss, base_anon = sample(server.pids)
        running = []
        for i in range(procs):
            share = n // procs + (1 if i < n % procs else 0)
            out = rdir / f"idle-{server.name}-{i}.json"
            ready = rdir / f"idle-{server.name}-{i}.ready"
            p = self.loadgen(server, ["--mode", "connect", "--subscribers", str(share),
                                      "--connect-rate", str(rate), "--hold", f"{hold:.1f}"],
                             out, timeout, ready_file=ready, wait=False)
            running.append((p, out, ready))
        end = time.monotonic() + timeout
        while not all(r.exists() for _, _, r in running):
            if time.monotonic() > end or any(p.poll() is not None for p, _, _ in running):
                break
            time.sleep(0.05)
        problems = []
        ready_total = 0
        if all(r.exists() for _, _, r in running):
            time.sleep(1.0)
            rss, anon = sample(server.pids)
            for _, _, r in running:
                ready_total += json.loads(r.read_text())["ready"]
        else:
            rss, anon = base_rss, base_anon
            problems.append("not every generator got its subscribers connected")
        try:
            for p, out, _ in running:
                rc, rep = self.finish(p, out, timeout)
                if rc != 0:
                    problems.append(f"{out.name}: exit {rc}, {rep['connect']['failures']} "
                                    f"connect failures, {rep['connect']['disconnects']} "
                                    "disconnects")
        finally:
            # A generator that could not be read is not left running against the next server.
            for p, _, _ in running:
                if p in PROCS.procs:
                    PROCS.stop(p)
        if ready_total < n:
            problems.append(f"{ready_total} of {n} subscribers connected")
        per_sub = (rss - base_rss) * 1024 / ready_total if ready_total else None
        anon_per_sub = (anon - base_anon) * 1024 / ready_total if ready_total else None
        return {"rss_per_sub": per_sub, "anon_per_sub": anon_per_sub,
                "subscribers": ready_total}, problems

    def delivery(self, server, rdir, name, args, timeout):
        out = rdir / f"{name}-{server.name}.json"
        rc, rep = self.loadgen(server, args, out, timeout)
        problems = [] if rc == 0 else [f"{out.name}: {rep['outcome']}, lost "
                                       f"{rep['delivery']['lost']}, dup "
                                       f"{rep['delivery']['duplicates']}, connect failures "
                                       f"{rep['connect']['failures']}, publish errors "
                                       f"{rep['publish']['errors']}"]
        return rep, problems

    @staticmethod
    def latency(rep, prefix=""):
        lat = rep["last_delivery_us" if prefix else "latency_us"]
        return {f"{prefix}p50_ms": lat["p50"] / 1000, f"{prefix}p99_ms": lat["p99"] / 1000,
                f"{prefix}p999_ms": lat["p999"] / 1000}

    def fanout(self, server, rdir):
        s = self.size
        rep, problems = self.delivery(server, rdir, "fanout", [
            "--subscribers", str(s["fanout_subs"]), "--channels", str(s["fanout_channels"]),
            "--messages", str(s["fanout_messages"]), "--payload-bytes", "200",
            "--publishers", "4", "--pipeline", str(DEFAULT_PIPELINE), "--drain-timeout", "30"],
            180)
        m = {"deliveries_per_sec": rep["delivery"]["rate_per_sec"],
             "cpu_us_per_delivery": (rep.get("server") or {}).get("cpu_us_per_delivery")}
        m.update(self.latency(rep))
        return m, problems

    def broadcast(self, server, rdir):
        s = self.size
        rep, problems = self.delivery(server, rdir, "broadcast", [
            "--subscribers", str(s["broadcast_subs"]), "--channels", "1", "--rate", "10",
            "--duration", str(s["broadcast_secs"]), "--payload-bytes", "200",
            "--publishers", "1", "--pipeline", str(DEFAULT_PIPELINE)], 120)
        m = self.latency(rep, "last_")
        m["complete_messages"] = rep["delivery"]["complete_messages"]
        return m, problems

    def steady(self, server, rdir):
        s = self.size
        rep, problems = self.delivery(server, rdir, "steady", [
            "--subscribers", str(s["steady_subs"]), "--channels", str(s["steady_channels"]),
            "--rate", str(s["steady_rate"]), "--duration", str(s["steady_secs"]),
            "--payload-bytes", "200", "--publishers", "4", "--pipeline", str(DEFAULT_PIPELINE)],
            120)
        return self.latency(rep), problems

    def longpoll(self, server, rdir):
        s = self.size
        rep, problems = self.delivery(server, rdir, "longpoll", [
            "--transport", "longpoll", "--subscribers", str(s["lp_subs"]),
            "--channels", str(s["lp_channels"]), "--rate", str(s["lp_rate"]),
            "--duration", str(s["lp_secs"]), "--payload-bytes", "200", "--publishers", "4",
            "--pipeline", str(DEFAULT_PIPELINE), "--drain-timeout", str(s["lp_drain"])], 180)
        # Rates while publishing went on: the intervals with publishes, without the first and
        # the last (partial) one.
        busy = [p for p in rep["series"] if p["publishes"] > 0][1:-1]
        if not busy:
            busy = [p for p in rep["series"] if p["publishes"] > 0]
        m = {"polls_per_sec": statistics.median(p["polls_per_sec"] for p in busy) if busy else 0,
             "deliveries_per_sec":
                 statistics.median(p["deliveries_per_sec"] for p in busy) if busy else 0,
             "polls_per_sec_overall": rep["delivery"]["polls_per_sec"]}
        return m, problems

    def publish(self, server, rdir):
        s = self.size
        m, problems = {}, []
        # Pipelined as in the other scenarios (the target's figures), and one request in flight
        # per publisher (each publish then costs a wake-up of the publisher; benches/README.md).
        for pipeline, suffix, messages in ((DEFAULT_PIPELINE, "", s["pub_messages"]),
                                           (1, "_1", s["pub_messages_1"])):
            common = ["--channels", "100", "--messages", str(messages), "--payload-bytes", "200",
                      "--publishers", "4", "--pipeline", str(pipeline)]
            for subs, key in ((0, "none"), (s["pub_subs"], "subs")):
                name = f"publish-{key}" + ("" if pipeline == 1 else "-pipelined")
                rep, p = self.delivery(server, rdir, name, [
                    "--subscribers", str(subs), *common], 120)
                m[f"pub_{key}{suffix}_per_sec"] = rep["publish"]["rate_per_sec"]
                problems += p
        return m, problems


def fmt(v, unit):
    if v is None:
        return "–"
    if unit == "B":
        return f"{v:,.0f} B"
    if unit == "/s":
        return f"{v:,.0f}/s"
    if unit == "ms":
        return f"{v:.2f} ms"
    return f"{v:.2f} {unit}"


def summarize(results, targets, scenarios):
    """Rows of (scenario, label, unit, {target: (median, lo, hi, n)}, ratio, target text, met)."""
    rows = []
    for scen, key, label, unit, higher, target in METRICS:
        if scen not in scenarios:
            continue
        cell = {}
        for t in targets:
            vals = [r["metrics"][key] for r in results
                    if r["scenario"] == scen and r["target"] == t
                    and r["metrics"].get(key) is not None]
            if vals:
                cell[t] = (statistics.median(vals), min(vals), max(vals), len(vals))
        ratio = None
        if "pushpull" in cell and "nchan" in cell and cell["nchan"][0]:
            ratio = cell["pushpull"][0] / cell["nchan"][0]
        text, met = "", None
        if target and target[0] == "max":
            text = f"≤ {fmt(target[1], unit)}"
            if "pushpull" in cell:
                met = cell["pushpull"][0] <= target[1]
        elif target and target[0] == "ratio":
            text = f"≥ {target[1]:g}× nchan"
            if ratio is not None:
                met = ratio >= target[1]
        rows.append((scen, label, unit, higher, cell, ratio, text, met))
    return rows


def render(rows, targets, markdown):
    head = ["scenario", "metric"] + [f"{t} median (min–max)" for t in targets]
    if len(targets) == 2:
        head += ["pushpull / nchan"]
    head += ["target", "met"]
    lines = []
    for scen, label, unit, higher, cell, ratio, text, met in rows:
        row = [f"{LETTERS[scen]} {scen}", label]
        for t in targets:
            if t in cell:
                med, lo, hi, n = cell[t]
                row.append(f"{fmt(med, unit)} ({fmt(lo, unit)}–{fmt(hi, unit)})" if n > 1
                           else fmt(med, unit))
            else:
                row.append("–")
        if len(targets) == 2:
            row.append("–" if ratio is None else
                       f"{ratio:.2f}× ({'higher' if higher else 'lower'} is better)")
        row += [text or "–", {True: "yes", False: "NO", None: "–"}[met]]
        lines.append(row)
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in lines]
        return "\n".join(out)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]

    def fmt_row(r):
        return "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()

    table = [head, ["-" * w for w in widths]] + lines
    return "\n".join(fmt_row(r) for r in table)


def ensure_nchan(allow_install):
    if NGINX.exists() and NCHAN_MODULE.exists():
        return
    if not allow_install:
        raise Failure("nginx or the nchan module is missing (run without --no-install)")
    print("== installing nginx and libnginx-mod-nchan", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx",
                    "libnginx-mod-nchan"], check=True, env=env)


def machine():
    info = {"cpus": os.cpu_count(), "kernel": os.uname().release}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_kb"] = int(line.split()[1])
    except OSError:
        pass
    try:
        info["nginx"] = subprocess.run([str(NGINX), "-v"], capture_output=True,
                                       text=True).stderr.strip()
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every scenario (default 3)")
    ap.add_argument("--quick", action="store_true", help="smoke sizes: seconds, not minutes")
    ap.add_argument("--only", choices=["pushpull", "nchan"], help="run one server only")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated subset of: " + ",".join(SCENARIOS))
    ap.add_argument("--workers", type=int, default=1,
                    help="pushpull --threads and nginx worker_processes (default 1: the "
                         "generator gets the other core of a 2-core machine)")
    ap.add_argument("--out", type=Path, help="result folder (default benches/results/<date>; "
                    "with --quick a temporary folder, removed after a run without failures)")
    ap.add_argument("--plot", action="store_true", help="an SVG chart beside every result")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--no-install", action="store_true", help="never run apt-get")
    opts = ap.parse_args()
    scenarios = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad or opts.rounds < 1 or opts.workers < 1:
        ap.error(f"unknown scenarios {bad}" if bad else "--rounds and --workers must be ≥ 1")
    targets = [opts.only] if opts.only else ["pushpull", "nchan"]

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target_dir.is_absolute():
        target_dir = ROOT / target_dir
    bins = target_dir / "release"
    if not opts.no_build:
        print("== building release binaries", flush=True)
        subprocess.run(["cargo", "build", "--release", "-p", "pushpull", "-p",
                        "pushpull-loadgen"], cwd=ROOT, check=True)
    if "nchan" in targets:
        ensure_nchan(not opts.no_install)

    stamp = datetime.datetime.now().strftime("%Y-%m-%d")
    scratch = opts.quick and not opts.out
    if opts.out:
        outdir = opts.out
    elif opts.quick:
        outdir = Path(tempfile.mkdtemp(prefix=f"pushpull-bench-{stamp}-"))
    else:
        outdir = ROOT / "benches" / "results" / stamp
        n = 2
        while outdir.exists():
            outdir = ROOT / "benches" / "results" / f"{stamp}-{n}"
            n += 1
    outdir.mkdir(parents=True, exist_ok=True)
    print(f"== results in {outdir}", flush=True)

    bench = Bench(opts, bins, outdir)
    results, failures = [], []
    servers = {"pushpull": Pushpull, "nchan": Nchan}
    started = time.monotonic()
    try:
        for r in range(1, opts.rounds + 1):
            rdir = outdir / f"round-{r}"
            rdir.mkdir(exist_ok=True)
            order = targets if r % 2 == 1 else targets[::-1]
            for scen in scenarios:
                for t in order:
                    print(f"== round {r}/{opts.rounds}: {LETTERS[scen]} {scen}, {t}", flush=True)
                    server = None
                    try:
                        server = servers[t](bins, opts.workers, rdir)
                        metrics, problems = getattr(bench, scen)(server, rdir)
                    except Failure as e:
                        metrics, problems = {}, [str(e)]
                    finally:
                        if server is not None:
                            server.stop()
                    results.append({"round": r, "scenario": scen, "target": t,
                                    "metrics": metrics, "problems": problems})
                    failures += [f"round {r} {scen} {t}: {p}" for p in problems]
    finally:
        PROCS.stop_all()

    rows = summarize(results, targets, scenarios)
    text, md = render(rows, targets, False), render(rows, targets, True)
    summary = {
        "date": stamp, "quick": opts.quick, "rounds": opts.rounds, "workers": opts.workers,
        "scenarios": scenarios, "sizes": bench.size, "machine": machine(),
        "seconds": round(time.monotonic() - started, 1), "runs": results, "failures": failures,
    }
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (outdir / "summary.md").write_text(md + "\n")
    print()
    if opts.quick:
        print("Quick sizes: a smoke check of the tools, not figures to hold against the targets.\n")
    print(text)
    print()
    print(md)
    if failures:
        print("\nFAILED runs:")
        for f in failures:
            print("  " + f)
    if scratch and not failures:
        shutil.rmtree(outdir, ignore_errors=True)
        print(f"\n{len(results)} runs in {summary['seconds']} s, all OK (smoke results removed)")
        return 0
    print(f"\n{len(results)} runs in {summary['seconds']} s; results in {outdir}")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        PROCS.stop_all()
