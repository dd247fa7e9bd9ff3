#!/usr/bin/env bash
# Local scale-out demo: one redis-server and three subsock nodes relaying through it.
#   make cluster            # nodes on :8081 :8082 :8083, Redis on :6390
#   DURATION=30 make cluster  # stop by itself after 30 s (default: until Ctrl-C)
# Subscribe on one node, publish on another:
#   go run ./examples/go/sub -url ws://localhost:8082/ws t
#   curl -X POST 'localhost:8081/publish?topic=t' -H 'Content-Type: application/json' -d '{"x":1}'
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
REDIS_PORT=${REDIS_PORT:-6390}
BASE_PORT=${BASE_PORT:-8081}
workdir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$workdir"
  echo "cluster stopped"
}
trap cleanup EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$workdir" >"$workdir/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "redis on 127.0.0.1:$REDIS_PORT"
for i in 0 1 2; do
  port=$((BASE_PORT + i))
  ./bin/subsock -addr "127.0.0.1:$port" -broker "redis://127.0.0.1:$REDIS_PORT" -log-format console >"$workdir/node$i.log" 2>&1 &
  pids+=($!)
  echo "node $i on ws://127.0.0.1:$port/ws (log: $workdir/node$i.log)"
done
if [ -n "${DURATION:-}" ]; then
  sleep "$DURATION"
else
  echo "Ctrl-C stops everything"
  wait
fi
