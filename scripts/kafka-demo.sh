#!/usr/bin/env bash
# Kafka as an event source, end to end on this machine, in about 15 s:
#   a test Kafka (franz-go's kfake) with topics prices (3 partitions) and
#   prices-dlq, one subsock node consuming prices in group "demo" with
#   -kafka-topic-template 'prices.{key}', a subscriber to prices.eur and
#   prices.usd, and a producer of 20 records keyed eur/usd plus one record
#   that is not JSON (it lands in prices-dlq). Prints what the subscriber got
#   and the node's subsock_kafka_* metrics, then stops everything.
#
#   bash scripts/kafka-demo.sh
#   KAFKA_PORT=19092 NODE_PORT=18080 bash scripts/kafka-demo.sh
#   SUBSOCK=path/to/subsock bash scripts/kafka-demo.sh   # a node binary built elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
KAFKA_PORT=${KAFKA_PORT:-19092}
NODE_PORT=${NODE_PORT:-18080}
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Binaries rather than go run: go run's child would outlive a kill of its PID.
go build -o "$work/kfake" ./internal/testserver/kfake
if [ -n "${SUBSOCK:-}" ]; then
	cp "$SUBSOCK" "$work/subsock"
else
	go build -o "$work/subsock" ./cmd/subsock
fi
go build -o "$work/sub" ./examples/go/sub
help=$("$work/subsock" -h 2>&1 || true)
if ! grep -q -- '-kafka-brokers' <<<"$help"; then
	echo "kafka-demo: this subsock has no -kafka-* flags yet (see docs/kafka.md)" >&2
	exit 1
fi

"$work/kfake" -port "$KAFKA_PORT" -topic prices=3 -topic prices-dlq=1 >"$work/kfake.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "127.0.0.1:$KAFKA_PORT" "$work/kfake.log" && break; sleep 0.1; done
echo "kafka (kfake) on 127.0.0.1:$KAFKA_PORT"

"$work/subsock" -addr "127.0.0.1:$NODE_PORT" \
	-kafka-brokers "127.0.0.1:$KAFKA_PORT" -kafka-topics prices -kafka-group demo \
	-kafka-topic-template 'prices.{key}' -kafka-dead-letter prices-dlq \
	>"$work/node.log" 2>&1 &
pids+=($!)
ready=
for _ in $(seq 100); do
	if curl -fsS "http://127.0.0.1:$NODE_PORT/readyz" >/dev/null 2>&1; then ready=1; break; fi
	sleep 0.1
done
if [ -z "$ready" ]; then
	echo "kafka-demo: the node did not become ready; its log:" >&2
	cat "$work/node.log" >&2
	exit 1
fi
echo "node on ws://127.0.0.1:$NODE_PORT/ws, ready (Kafka reachable, partitions owned)"

"$work/sub" -url "ws://127.0.0.1:$NODE_PORT/ws" prices.eur prices.usd >"$work/sub.out" 2>"$work/sub.err" &
sub=$!
pids+=("$sub")
for _ in $(seq 50); do grep -q subscribed "$work/sub.err" 2>/dev/null && break; sleep 0.1; done

"$work/kfake" produce -brokers "127.0.0.1:$KAFKA_PORT" -topic prices -keys eur,usd -n 20 -every 200ms
"$work/kfake" produce -brokers "127.0.0.1:$KAFKA_PORT" -topic prices -keys eur -n 1 -value 'not json'

# Wait (bounded) for the 20 good records to reach the subscriber.
for _ in $(seq 100); do
	[ "$(wc -l <"$work/sub.out")" -ge 20 ] && break
	sleep 0.1
done
echo "--- the subscriber received ($(wc -l <"$work/sub.out") messages):"
cat "$work/sub.out"
echo "--- the node's Kafka metrics:"
curl -fsS "http://127.0.0.1:$NODE_PORT/metrics" | grep '^subsock_kafka_' || echo "(none: register Consumer.Collectors, see docs/kafka.md)"
got=$(wc -l <"$work/sub.out")
if [ "$got" -lt 20 ]; then
	echo "kafka-demo: the subscriber got $got of 20 messages; node log:" >&2
	cat "$work/node.log" >&2
	exit 1
fi
echo "kafka-demo: ok"
