#!/usr/bin/env bash
# The standard benchmark set (make bench), under five minutes on a 2-core box.
#
# Builds the node and the harness, runs each scenario against a fresh node
# (so one run's memory never colours the next), writes JSON + HTML per
# scenario and summary.md under bench/results/, and prints the figures.
#
#   OUT=dir     where results go (default bench/results)
#   ONLY="a b"  run only these result names (e.g. ONLY="idle churn")
#   NODE_FLAGS  flags for every node (default: -loops 2 -pprof; -pprof lets the
#               harness force a GC before memory readings and take profiles)
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
OUT=${OUT:-bench/results}
ONLY=${ONLY:-}
read -r -a node_flags <<<"${NODE_FLAGS:--loops 2 -pprof}"

# wanted NAME: whether ONLY (if set) selects the run NAME.
wanted() {
	[[ -z $ONLY || " $ONLY " == *" $1 "* ]]
}

mkdir -p bin "$OUT"
"$GO" build -o bin/subsock ./cmd/subsock
"$GO" build -o bin/subsock-bench ./cmd/subsock-bench
if wanted kafka || wanted kafka-10k; then
	# The Kafka the kafka runs produce to: franz-go's kfake behind flags (a test helper, not released).
	"$GO" build -o bin/kfake ./internal/testserver/kfake
fi

failed=()
notok=()
start=$SECONDS

# run NAME [harness flags...] [-- node flags...]: one scenario on its own node, started with
# NODE_FLAGS, -log-level warn and the run's own node flags.
run() {
	local name=$1
	shift
	if ! wanted "$name"; then
		return
	fi
	local harness=() extra=()
	while (($#)); do
		if [[ $1 == -- ]]; then
			shift
			extra=("$@")
			break
		fi
		harness+=("$1")
		shift
	done
	echo
	echo "### $name: subsock-bench ${harness[*]}${extra[*]:+ -- ${extra[*]}}"
	local rc=0
	bin/subsock-bench -name "$name" -out "$OUT" -spawn bin/subsock "${harness[@]}" -- "${node_flags[@]}" -log-level warn "${extra[@]}" || rc=$?
	case $rc in
	0) ;;
	3) notok+=("$name") ;;
	*) failed+=("$name") ;;
	esac
}

# Memory: 15,000 idle connections × 10 topics.
run idle -scenario idle -conns 15000 -topics-per-conn 10 -heapprofile "$OUT/idle.heap.prof"
# The same over SSE: 15,000 streams, each one GET /sse?topics=… of 10 topics (target: RSS per
# stream within 10 % of idle's per connection).
run idle-sse -scenario idle -transport sse -conns 15000 -topics-per-conn 10 -heapprofile "$OUT/idle-sse.heap.prof"
# Upgrades per second: 15,000 connections, no subscriptions.
run connect -scenario connect -conns 15000
# Latency at a low rate: 10,000 subscribers of one topic, 1 msg/s for 10 s.
run latency -scenario latency -conns 10000 -rate 1 -duration 10s -heapprofile "$OUT/latency.heap.prof"
# The same on a node with presence on the topic (join/leave configured, for other topics): issue
# 13's "presence on a topic with 10,000 subscribers adds at most 10 % to the node's memory and
# nothing per message", against latency in summary.md. At the end one client asks presence_stats,
# which must count all 10,000.
run latency-presence -scenario latency -conns 10000 -rate 1 -duration 10s \
	-heapprofile "$OUT/latency-presence.heap.prof" -- -presence 'bench.>' -join-leave 'none.>'
# The same to 10,000 SSE streams (target: p99 within 20 % of latency's).
run latency-sse -scenario latency -transport sse -conns 10000 -rate 1 -duration 10s
# Sustained fan-out: 10,000 subscribers of one topic, 150 msg/s for 10 s.
run fanout -scenario fanout -conns 10000 -rate 150 -duration 10s -cpuprofile "$OUT/fanout.cpu.prof"
# Fan-out at 100 msg/s over each transport, like for like: 10,000 WebSocket subscribers, then
# 10,000 SSE streams (target: the same deliveries/s, p99 within 20 %).
run fanout100 -scenario fanout -conns 10000 -rate 100 -duration 10s -cpuprofile "$OUT/fanout100.cpu.prof"
run fanout-sse -scenario fanout -transport sse -conns 10000 -rate 100 -duration 10s -cpuprofile "$OUT/fanout-sse.cpu.prof"
# Rising rate to 5,000 subscribers until loss or p99 > 1 s.
run steps -scenario steps -conns 5000 -rate 50 -step-factor 1.5 -max-steps 8 -step-duration 3s
# Many topics: 15,000 connections × 100 subscriptions over 15,000 topics.
run topics -scenario topics -conns 15000 -topics-per-conn 100 -topics 15000 -rate 200 -duration 10s \
	-heapprofile "$OUT/topics.heap.prof"
# Per-topic cost: 1,000 connections × 1,000 topics drawn from 1M (per-user topics such as
# user.42.inbox: nearly every subscription on a topic of its own); RSS/conn ÷ 1,000 is the cost
# of one subscription.
run pertopic -scenario topics -conns 1000 -topics-per-conn 1000 -topics 1000000 -rate 10 -duration 3s
# Churn: 10 cycles of 3,000 connections × 10 topics; the registry must return.
run churn -scenario churn -conns 3000 -topics-per-conn 10 -topics 3000 -cycles 10
# Head-of-line on Redis (the harness starts a redis-server on a free loopback
# port): one topic × 10,000 subscribers at 100 msg/s (1M deliveries/s) beside
# 1,000 topics × 1 subscriber at 10 msg/s each; small topics' latency apart,
# and the node's pub/sub output buffer in Redis (CLIENT LIST omem).
run hol -scenario hol -conns 11000 -hot-subs 10000 -rate 100 -small-rate 10 -duration 10s
# The same load published over WebSockets (8 connections, a topic always on the same one): the
# harness's 128 HTTP publishers, closed-loop on two shared cores, cannot offer 10,000 publishes/s,
# and their queue would count as the node's latency.
run hol-ws -scenario hol -conns 11000 -hot-subs 10000 -rate 100 -small-rate 10 -duration 10s -publish-via ws
# The prompt lane (-small-group): the same node at 1 msg/s per small topic, so the small topics'
# latency is the node's and not the publishers' queue; then with the lane off (-small-group -1).
run hol-small -scenario hol -conns 11000 -hot-subs 10000 -rate 100 -small-rate 1 -duration 10s
run hol-small-nolane -scenario hol -conns 11000 -hot-subs 10000 -rate 100 -small-rate 1 -duration 10s -- -small-group -1
# Recovery: 10,000 subscribers of a history topic (the node gets -history 'bench.>=2000,10m') at
# 20 msg/s while 10 % of the connections are cut every second for 30 s (client side, no close
# frame); each reconnects at once and resubscribes with since. Must lose nothing, duplicate
# nothing and never answer recovered:false; reports cut → caught up p50/p99. Memory, then Redis
# (a redis-server the harness starts, as for hol).
run recover -scenario recover -conns 10000 -rate 20 -duration 30s -cut-fraction 0.1 -cut-every 1s
run recover-redis -scenario recover -backbone redis -conns 10000 -rate 20 -duration 30s -cut-fraction 0.1 -cut-every 1s
# Join storm (issue 13): a node with -presence and -join-leave 'storm.>'; a canary subscribes to
# storm.0, which gets 20 msg/s throughout; 1 s later 10,000 members subscribe to it, spread evenly
# over 5 s, then 2 s more. The canary gets the join events while the group is ≤ 1,000, none after.
# Target: the canary's p99 during the storm < 50 ms, nothing lost.
run joinstorm -scenario joinstorm -conns 10000 -rate 20 -duration 5s -p99-limit 50ms -cpuprofile "$OUT/joinstorm.cpu.prof"
# Its control: the same storm on a node given no presence or join-leave rule, so summary.md can
# tell what join/leave costs the canary from what the fan-out to a growing group does.
run joinstorm-plain -scenario joinstorm -no-presence -conns 10000 -rate 20 -duration 5s -p99-limit 50ms \
	-cpuprofile "$OUT/joinstorm-plain.cpu.prof"
# Kafka as an event source (issue 15): the harness starts bin/kfake (topic events, 6 partitions) and a
# redis-server, and the node gets -kafka-brokers … -kafka-topics events -kafka-topic-template
# 'events.{key}'. 1,000 subscribers over events.0 … events.99 (10 each), then 200,000 records keyed
# 0..99 produced as fast as the producer can: records/s consumed and published by the node (its
# /metrics every 100 ms), deliveries/s, produce → socket latency (mostly the wait behind the backlog
# in Kafka), loss (2,000,000 deliveries due) and the consumer lag back to 0. About 20 s.
run kafka -scenario kafka -conns 1000 -topics 100 -records 200000 -kafka-partitions 6 -kfake bin/kfake \
	-cpuprofile "$OUT/kafka.cpu.prof"
# The same path at a rate it sustains, 10,000 records/s for 5 s: produce → socket latency without a
# backlog (the producer's 10 ms linger included). About 10 s.
run kafka-10k -scenario kafka -conns 1000 -topics 100 -records 50000 -rate 10000 -kafka-partitions 6 -kfake bin/kfake

# Where the node's time and memory go (profiles are *.prof: not committed).
for prof in fanout.cpu fanout100.cpu fanout-sse.cpu joinstorm.cpu joinstorm-plain.cpu kafka.cpu idle.heap idle-sse.heap latency.heap latency-presence.heap topics.heap; do
	f="$OUT/$prof.prof"
	if [[ -s $f ]]; then
		echo
		echo "### top of $f"
		"$GO" tool pprof -top -nodecount=15 bin/subsock "$f" 2>/dev/null | sed -n '/flat%/,$p' || true
	fi
done

echo
bin/subsock-bench -summarize "$OUT"
echo "total $((SECONDS - start)) s"

if ((${#notok[@]})); then
	echo "judged NOT OK (see the notes in each report): ${notok[*]}"
fi
if ((${#failed[@]})); then
	echo "FAILED: ${failed[*]}" >&2
	exit 1
fi
