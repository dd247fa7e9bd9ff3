#!/usr/bin/env bash
# The measurements behind docs/tuning.md: what one connection and its socket
# buffers cost on a subsock node, and what the accept backlog, the local port
# range and conntrack do to a connect storm. Bounded and loopback only: each
# run opens CONNS connections (default 5,000; each process stays far below
# 20,000 open files) to a fresh node, measures, and stops the node with
# SIGTERM. About two minutes.
#
#   CONNS=5000                      connections per run
#   PARTS="memory backlog ports conntrack"   which parts to run
#
# Run as root, the whole thing happens in a network namespace of its own
# (ip netns), so its namespaced sysctls (somaxconn, tcp_max_syn_backlog,
# ip_local_port_range) and nft rules are set there and the host's are never
# touched. Without root only the memory part runs, on the host's loopback.
# Global settings (fs.nr_open, fs.file-max, net.ipv4.tcp_mem,
# nf_conntrack_max, the open-file limit) are read, never changed.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
CONNS=${CONNS:-5000}
PARTS=${PARTS:-memory backlog ports conntrack}

tmp=$(mktemp -d)
ns=""
cleanup() {
	if [[ -n $ns ]]; then ip netns del "$ns" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

"$GO" build -o "$tmp/subsock" ./cmd/subsock
"$GO" build -o "$tmp/measure" ./scripts/tuning-measure

if [[ $(id -u) == 0 ]] && ip netns add "subsock-tune-$$" 2>/dev/null; then
	ns="subsock-tune-$$"
	ip -n "$ns" link set lo up
fi
# inns CMD...: run CMD in the namespace when there is one.
inns() {
	if [[ -n $ns ]]; then ip netns exec "$ns" "$@"; else "$@"; fi
}
part() { [[ " $PARTS " == *" $1 "* ]]; }

echo "# $(uname -sr), $(nproc) CPUs, Go $("$GO" env GOVERSION), open files $(ulimit -Sn)/$(ulimit -Hn)"
for k in fs.nr_open fs.file-max net.ipv4.tcp_mem net.ipv4.tcp_rmem net.ipv4.tcp_wmem net.core.somaxconn \
	net.ipv4.tcp_max_syn_backlog net.ipv4.ip_local_port_range net.netfilter.nf_conntrack_max; do
	echo "# $k = $(sysctl -n "$k" 2>/dev/null | tr '\t' ' ' || echo '?')"
done
echo "# network namespace: ${ns:-none (host loopback)}"

# memory LABEL [ENV=VALUE...] -- NODE FLAGS...: one node, CONNS connections,
# the memory phases.
memory() {
	local label=$1
	shift
	local envs=()
	while [[ $1 != -- ]]; do
		envs+=("$1")
		shift
	done
	shift
	echo
	echo "## memory: $label ${envs[*]}"
	inns env "${envs[@]}" "$tmp/measure" -node "$tmp/subsock" -conns "$CONNS" -label "$label" -- "$@"
}

if part memory; then
	memory default -- -loops 2
	memory autotune -- -loops 2 -send-buffer -1 -recv-buffer -1
	memory small-buffers -- -loops 2 -send-buffer 4096 -recv-buffer 4096
	memory read-buffer-4k -- -loops 2 -read-buffer 4096
	# A limit the connect storm reaches: the node at rest (~10 MiB) plus ~3 KiB per connection.
	memory gomemlimit GOMEMLIMIT=$((10 + CONNS * 3 / 1024))MiB -- -loops 2
fi

if [[ -z $ns ]]; then
	echo
	echo "# no network namespace (not root, or ip netns failed): backlog, ports and conntrack not run"
	exit 0
fi

# burst LABEL WORKERS [measure flags...]: a connect storm of CONNS upgrades
# from WORKERS goroutines at once.
burst() {
	local label=$1 workers=$2
	shift 2
	echo
	echo "## $label"
	inns "$tmp/measure" -node "$tmp/subsock" -conns "$CONNS" -burst "$workers" -settle 1s -label "$label" "$@" -- -loops 2
}

if part backlog; then
	# Go's net.Listen takes its backlog from net.core.somaxconn; the SYN
	# queue from tcp_max_syn_backlog.
	for q in 128 4096; do
		inns sysctl -qw net.core.somaxconn=$q net.ipv4.tcp_max_syn_backlog=$q
		burst "backlog: somaxconn = tcp_max_syn_backlog = $q, 1000 dialers at once" 1000
	done
	inns sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096
fi

if part ports; then
	# 1,000 ephemeral ports: one source address runs out, four do not.
	inns sysctl -qw net.ipv4.ip_local_port_range="60000 60999"
	burst "ports: ip_local_port_range 60000-60999, 1 source address" 64 -sources 1 || true
	burst "ports: ip_local_port_range 60000-60999, 8 source addresses" 64 -sources 8
	inns sysctl -qw net.ipv4.ip_local_port_range="32768 60999"
fi

if part conntrack; then
	if ! command -v nft >/dev/null; then
		echo
		echo "# nft not installed (apt-get install nftables): conntrack not run"
	else
		# A stateful rule makes the kernel track every connection of the
		# namespace; a raw-priority notrack rule for the node's port
		# bypasses it.
		inns nft -f - <<-'EOF'
			table inet subsock_tune {
				chain in { type filter hook input priority 0; ct state established,related accept; }
			}
		EOF
		burst "conntrack: stateful rule, connections tracked" 64
		inns nft -f - <<-'EOF'
			table inet subsock_tune_raw {
				chain pre { type filter hook prerouting priority raw; tcp dport 18480 notrack; tcp sport 18480 notrack; }
				chain out { type filter hook output priority raw; tcp dport 18480 notrack; tcp sport 18480 notrack; }
			}
		EOF
		burst "conntrack: the same rule plus notrack for the node's port" 64
	fi
fi
