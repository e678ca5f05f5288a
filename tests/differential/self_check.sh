#!/usr/bin/env bash
# self_check.sh BINARY [HARNESS OPTIONS...]
#
# CI self-check: the same pushpull BINARY with in-memory storage (A) and with Redis storage (B),
# each on free ports, B with its own redis-server on a free port, must answer the harness's
# cases identically. Extra options go to diffharness.py (e.g. --only 'lp.*', --jobs 4).
# allow-self.txt lists the differences that are expected between the two (with reasons).
# Without redis-server the check fails under CI=true, and is skipped (exit 0, saying so) otherwise.
set -euo pipefail
bin=${1:?usage: self_check.sh BINARY [diffharness options]}
shift
here=$(cd "$(dirname "$0")" && pwd)
key=selfcheck-key-0123456789

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "self_check: FAILED: redis-server is not installed, and CI=true requires it" >&2
    exit 1
  fi
  echo "self_check: SKIPPED: redis-server is not installed (under CI=true this is a failure)" >&2
  exit 0
fi
[ -x "$bin" ] || { echo "self_check: $bin is not an executable" >&2; exit 2; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_http PORT PATH: until the port answers an HTTP request (10 s)
wait_http() {
  python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
deadline = time.time() + 10
while time.time() < deadline:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        if s.recv(12).startswith(b"HTTP/1.1"):
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
}

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
  >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  redis-cli -p "$rport" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$rport" ping >/dev/null 2>&1 || { echo "self_check: redis-server did not start:" >&2; cat "$tmp/redis.log" >&2; exit 1; }

start() {  # start NAME SUBPORT PUBPORT [extra flags]
  local name=$1 sub=$2 pub=$3
  shift 3
  "$bin" --sub-listen "127.0.0.1:$sub" --pub-listen "127.0.0.1:$pub" --security-key "$key" "$@" \
    >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  if ! wait_http "$pub" /server-stat/ || ! wait_http "$sub" /sub/; then
    echo "self_check: pushpull ($name) did not start:" >&2
    cat "$tmp/$name.log" >&2
    exit 1
  fi
}
ms=$(free_port); mp=$(free_port); rs=$(free_port); rp=$(free_port)
start memory "$ms" "$mp"
start redis "$rs" "$rp" --storage redis --redis "127.0.0.1:$rport"

echo "self_check: A = memory (sub $ms, pub $mp), B = redis (sub $rs, pub $rp, redis $rport)"
status=0
python3 "$here/diffharness.py" --a-sub "http://127.0.0.1:$ms" --a-pub "http://127.0.0.1:$mp" \
  --b-sub "http://127.0.0.1:$rs" --b-pub "http://127.0.0.1:$rp" --a-name memory --b-name redis \
  --key "$key" --allow "$here/allow-self.txt" "$@" || status=$?
if [ "$status" != 0 ]; then
  echo "self_check: FAILED (the logs of both servers follow)" >&2
  tail -n 20 "$tmp/memory.log" "$tmp/redis.log" >&2
fi
exit "$status"
