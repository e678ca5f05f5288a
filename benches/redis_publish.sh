#!/usr/bin/env bash
# Publishes per second through Redis on one pushpull node, and Redis round trips per publish.
#
# Starts its own redis-server and one release pushpull (--threads 1, storage redis) on free
# loopback ports, then runs pushpull-loadgen twice without subscribers: one request in flight per
# publisher, and --pipeline 256. Redis round trips are the EVALSHA calls (one per engine batch,
# spec/cluster.md §3) counted by `INFO commandstats` after `CONFIG RESETSTAT`.
#
#   benches/redis_publish.sh [PUBLISHERS] [MESSAGES]     (defaults: 32 publishers, 30,000 messages)
#
# Needs redis-server and redis-cli, and the release binaries
# (cargo build --release -p pushpull -p pushpull-loadgen). Every process it starts is stopped by
# its pid on exit. KEEP=1 keeps the logs and the generator's JSON results (their folder is printed).
set -euo pipefail
cd "$(dirname "$0")/.."

publishers="${1:-32}"
messages="${2:-30000}"
bin=target/release

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

redis_port=$(free_port)
sub_port=$(free_port)
pub_port=$(free_port)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "logs in $work" || rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

"$bin/pushpull" --threads 1 --redis "127.0.0.1:$redis_port" \
  --sub-listen "127.0.0.1:$sub_port" --pub-listen "127.0.0.1:$pub_port" >"$work/pushpull.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$pub_port") 2>/dev/null && break
  sleep 0.1
done

for pipeline in 1 256; do
  redis-cli -p "$redis_port" config resetstat >/dev/null
  summary=$("$bin/pushpull-loadgen" --sub-addr "127.0.0.1:$sub_port" --pub-addr "127.0.0.1:$pub_port" \
    --subscribers 0 --channels 100 --messages "$messages" --publishers "$publishers" \
    --pipeline "$pipeline" --payload-bytes 200 --expiry 60 --server-pid "$server" \
    --out "$work/pipeline-$pipeline.json" | tail -1) || true
  calls=$(redis-cli -p "$redis_port" info commandstats |
    sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p')
  rate=$(sed -n 's/.* pub_rate=\([0-9]*\)\/s.*/\1/p' <<<"$summary")
  errors=$(sed -n 's/.* pub_err=\([0-9]*\) .*/\1/p' <<<"$summary")
  python3 - "$pipeline" "$publishers" "$messages" "${rate:-0}" "${calls:-0}" "${errors:-?}" <<'EOF'
import sys
pipeline, publishers, messages, rate, calls, errors = sys.argv[1:]
messages, calls = int(messages), int(calls)
per = calls / messages if messages else 0
print(f"pipeline {pipeline:>3}, {publishers} publishers: {int(rate):,} publishes/s, "
      f"{calls:,} Redis round trips for {messages:,} publishes = {per:.4f} per publish, "
      f"{errors} answered other than 200")
EOF
  redis-cli -p "$redis_port" info errorstats | sed -n 's/^errorstat_/  Redis error: /p'
done
