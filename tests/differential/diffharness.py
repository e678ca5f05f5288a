#!/usr/bin/env python3
"""Differential harness: sends the same requests to two push servers and prints what differs.

    diffharness.py --a-sub URL --a-pub URL --b-sub URL --b-pub URL --key KEY [--allow FILE]
                   [--only GLOB ...] [--jobs N] [--show-allowed] [--list]

Each case runs on server A and on server B at the same time, with its own fresh channel ids.
Both transcripts are normalized (trial.py lists the normalizers) and compared line by line.
Output: one line per case, OK / DIFF / ALLOWED / ERROR, with a unified diff (A = '-', B = '+')
for each DIFF; then a summary. Exit status 1 when a DIFF or ERROR is not covered by the
allowlist, 0 otherwise. Python 3.11 standard library only.

Cases marked slow (held long polls, timeouts) run first, all in parallel. Cases marked
exclusive (inputs known to crash the reference) run last, one at a time, with the servers'
pids read from /server-stat/ before and after: a pid change or a server that stops answering
is reported in the case's transcript as a crash.
"""

import argparse
import difflib
import fnmatch
import json
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases_http  # noqa: E402,F401  (registers cases)
import cases_pub  # noqa: E402,F401
import cases_sub  # noqa: E402,F401
import cases_ws  # noqa: E402,F401
from registry import CASES  # noqa: E402
from trial import Target, Trial  # noqa: E402
from wire import Conn, parse_base, request_bytes  # noqa: E402


def load_allow(path):
    """Lines `<case name or glob>  <reason>`; '#' starts a comment line."""
    allow = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, reason = line.partition(" ")
            if not reason.strip():
                raise SystemExit(f"{path}:{n}: an allowed difference needs a reason")
            allow.append((name, reason.strip()))
    return allow


def allowed(allow, name, exact=False):
    """The reason a difference of case `name` is expected; exact: only a line naming it alone
    (not a glob), for the 'now identical' hint."""
    for pattern, reason in allow:
        if exact and any(ch in pattern for ch in "*?["):
            continue
        if fnmatch.fnmatchcase(name, pattern):
            return reason
    return None


def server_pid(target):
    """The pid /server-stat/ reports, or None when the server does not answer."""
    try:
        c = Conn(target.pub, timeout=3)
        c.send(request_bytes("GET", "/server-stat/"))
        r = c.read_response()
        c.close()
        return json.loads(r.body)[0]["pid"]
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return None


def wait_pid(target, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = server_pid(target)
        if pid is not None:
            return pid
        time.sleep(0.2)
    return None


def run_trial(case, target, exclusive):
    trial = Trial(target)
    before = server_pid(target) if exclusive else None
    try:
        case.fn(trial)
    except Exception:  # noqa: BLE001 - reported as ERROR with its traceback
        trial.out("! harness error: " + traceback.format_exc().strip().splitlines()[-1])
        trial.note(traceback.format_exc())
        lines = trial.finish()
        return lines, True
    lines = trial.finish()
    if exclusive:
        time.sleep(0.3)
        after = server_pid(target)
        if after is None:
            after = wait_pid(target)
            lines.append(f"! server stopped answering after this case; back: "
                         f"{'yes' if after else 'no'}")
        if before is not None and after is not None and after != before:
            lines.append("! server process changed (crashed and was restarted)")
    return lines, False


def run_case(case, a, b):
    results = {}

    def one(key, target):
        results[key] = run_trial(case, target, case.exclusive)
    threads = [threading.Thread(target=one, args=(k, t)) for k, t in (("a", a), ("b", b))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results["a"], results["b"]


def compared(lines):
    return [x for x in lines if not x.startswith("~")]


def report(case, ra, rb, allow, args, lock, totals):
    (la, erra), (lb, errb) = ra, rb
    same = compared(la) == compared(lb)
    status = "ERROR" if erra or errb else ("OK" if same else "DIFF")
    reason = allowed(allow, case.name) if status != "OK" else None
    shown = status if not reason else "ALLOWED"
    with lock:
        totals[shown] = totals.get(shown, 0) + 1
        line = f"{shown:7} {case.name}"
        if reason:
            line += f"  ({reason})"
        elif status == "OK" and allowed(allow, case.name, exact=True):
            line += "  (allowlisted but now identical: remove it from the allowlist)"
        print(line, flush=True)
        if status == "OK" and args.verbose:
            for x in la:
                print("        " + x)
            print()
        if status != "OK" and (not reason or args.show_allowed):
            if case.doc:
                print(f"        # {case.doc}")
            diff = difflib.unified_diff(la, lb, f"A {args.a_name}", f"B {args.b_name}",
                                        n=max(len(la), len(lb)), lineterm="")
            for d in list(diff)[2:]:
                print("        " + d)
            print(flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a-sub"), p.add_argument("--a-pub")
    p.add_argument("--b-sub"), p.add_argument("--b-pub")
    p.add_argument("--a-name", default="a"), p.add_argument("--b-name", default="b")
    p.add_argument("--key", default="testkey-0123456789", help="the servers' security key")
    p.add_argument("--allow", help="allowlist file: <case glob> <reason> per line")
    p.add_argument("--only", action="append", help="run only cases matching this glob")
    p.add_argument("--skip", action="append", help="skip cases matching this glob")
    p.add_argument("--jobs", type=int, default=8, help="cases run in parallel (default 8)")
    p.add_argument("--show-allowed", action="store_true", help="print diffs of allowed cases")
    p.add_argument("--verbose", action="store_true", help="print transcripts of OK cases too")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args()

    cases = [c for c in CASES.values()
             if (not args.only or any(fnmatch.fnmatchcase(c.name, g) for g in args.only))
             and not (args.skip and any(fnmatch.fnmatchcase(c.name, g) for g in args.skip))]
    if args.list:
        for c in cases:
            flag = " [slow]" if c.slow else " [exclusive]" if c.exclusive else ""
            print(f"{c.name}{flag}  {c.doc}")
        return 0
    for opt in ("a_sub", "a_pub", "b_sub", "b_pub"):
        if not getattr(args, opt):
            p.error(f"--{opt.replace('_', '-')} is required")
    a = Target("A", parse_base(args.a_sub), parse_base(args.a_pub), args.key)
    b = Target("B", parse_base(args.b_sub), parse_base(args.b_pub), args.key)
    allow = load_allow(args.allow) if args.allow else []

    pids = {}
    for t in (a, b):
        pids[t.name] = server_pid(t)
        if pids[t.name] is None:
            print(f"server {t.name} ({args.a_name if t is a else args.b_name}) does not answer "
                  f"GET /server-stat/", file=sys.stderr)
            return 2
    lock, totals = threading.Lock(), {}
    started = time.monotonic()
    slow = [c for c in cases if c.slow]
    normal = [c for c in cases if not c.slow and not c.exclusive]
    exclusive = [c for c in cases if c.exclusive]
    with ThreadPoolExecutor(max_workers=max(args.jobs, len(slow))) as pool:
        futures = [pool.submit(lambda c=c: (c, run_case(c, a, b))) for c in slow]
        with ThreadPoolExecutor(max_workers=args.jobs) as fast:
            for c, (ra, rb) in fast.map(lambda c: (c, run_case(c, a, b)), normal):
                report(c, ra, rb, allow, args, lock, totals)
        for f in futures:
            c, (ra, rb) = f.result()
            report(c, ra, rb, allow, args, lock, totals)
    for t in (a, b):
        if server_pid(t) != pids[t.name]:
            print(f"note: server {t.name} changed pid during the parallel cases "
                  f"(it restarted: results of that time may be wrong)")
    for c in exclusive:
        ra, rb = run_case(c, a, b)
        report(c, ra, rb, allow, args, lock, totals)

    failed = totals.get("DIFF", 0) + totals.get("ERROR", 0)
    print(f"\nSummary: {len(cases)} cases in {time.monotonic() - started:.0f} s: "
          + ", ".join(f"{totals.get(k, 0)} {k}" for k in ("OK", "DIFF", "ALLOWED", "ERROR")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
