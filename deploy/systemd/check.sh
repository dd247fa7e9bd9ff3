#!/usr/bin/env bash
# Checks subsock.service without a running systemd (a container, CI):
#   1. systemd-analyze verify and security --offline on the unit, pointed at a fresh build;
#   2. the system calls a node started with subsock.env's settings makes (strace, under a loopback load with
#      connects, publishes, a stalled reader and the SIGTERM drain; on Redis when
#      redis-server is installed) all lie in SystemCallFilter=@system-service and
#      none in the ~@privileged @resources it removes;
#   3. the node runs the same load under the kernel's PR_SET_MDWE (Linux ≥ 6.3),
#      the rule MemoryDenyWriteExecute=yes enforces.
# Needs root for none of it but strace's ptrace; apt-get install systemd strace.
set -euo pipefail
cd "$(dirname "$0")/../.."

GO=${GO:-go}
tmp=$(mktemp -d)
redis_pid=""
cleanup() {
	if [[ -n $redis_pid ]]; then kill "$redis_pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

"$GO" build -o "$tmp/subsock" ./cmd/subsock
"$GO" build -o "$tmp/measure" ./scripts/tuning-measure

echo "== 1. systemd-analyze verify / security"
sed -e "s|/usr/local/bin/subsock|$tmp/subsock|" -e "s|/etc/subsock/subsock.env|$tmp/subsock.env|" \
	deploy/systemd/subsock.service >"$tmp/subsock.service"
cp deploy/systemd/subsock.env "$tmp/subsock.env"
systemd-analyze verify "$tmp/subsock.service"
echo "verify: ok"
systemd-analyze security --offline=true "$tmp/subsock.service" | tail -1

echo "== 2. system calls against SystemCallFilter"
broker=()
if command -v redis-server >/dev/null; then
	port=$((20000 + RANDOM % 10000))
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$tmp/redis.log" 2>&1 &
	redis_pid=$!
	for _ in $(seq 50); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
		sleep 0.1
	done
	broker=(-broker "redis://127.0.0.1:$port")
	echo "backbone: redis on 127.0.0.1:$port"
fi
# The wrapper hands the harness's SIGTERM to the node itself (strace's child),
# so strace follows the drain to the node's exit.
cat >"$tmp/strace-node" <<EOF
#!/usr/bin/env bash
strace -f -qq -o $tmp/trace.txt $tmp/subsock "\$@" &
tracer=\$!
trap 'kill -TERM \$(pgrep -P \$tracer)' TERM
wait \$tracer || wait \$tracer
EOF
chmod +x "$tmp/strace-node"
# The node also gets subsock.env's variables, as under the unit (it refuses an
# unknown SUBSOCK_ one); the harness's flags override the address.
mapfile -t settings < <(grep -v -e '^#' -e '^$' deploy/systemd/subsock.env)
env "${settings[@]}" \
	"$tmp/measure" -node "$tmp/strace-node" -port 18490 -conns 300 -stall-conns 50 -stall-msgs 8 -settle 1s \
	-label strace -- -loops 2 "${broker[@]}" >"$tmp/measure.log" 2>&1 || { cat "$tmp/measure.log"; exit 1; }
sleep 1
sed -E 's/^[0-9]+ +//' "$tmp/trace.txt" | grep -oE '^[a-z_0-9]+\(' | tr -d '(' | sort -u >"$tmp/used.txt"
systemd-analyze syscall-filter 2>/dev/null >"$tmp/groups.txt"
python3 - "$tmp/groups.txt" "$tmp/used.txt" <<'EOF'
import sys
groups, cur = {}, None
for line in open(sys.argv[1]):
    s = line.strip()
    if line.startswith("@"):
        cur = s.split()[0]
        groups[cur] = []
    elif s and not s.startswith("#") and cur:
        groups[cur].append(s)
def expand(g, seen):
    out = set()
    for m in groups.get(g, []):
        if m.startswith("@"):
            if m not in seen:
                seen.add(m)
                out |= expand(m, seen)
        else:
            out.add(m)
    return out
allowed = expand("@system-service", set())
denied = expand("@privileged", set()) | expand("@resources", set())
used = [l.strip() for l in open(sys.argv[2]) if l.strip()]
outside = [u for u in used if u not in allowed or u in denied]
print(f"{len(used)} distinct system calls: {' '.join(used)}")
if outside:
    sys.exit(f"FAIL: refused by the unit's filter: {outside}")
print("all allowed by SystemCallFilter=@system-service ~@privileged @resources")
EOF

echo "== 3. MemoryDenyWriteExecute (PR_SET_MDWE)"
cat >"$tmp/mdwe-node" <<EOF
#!/usr/bin/env python3
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit("PR_SET_MDWE: " + os.strerror(ctypes.get_errno()))
os.execv("$tmp/subsock", ["$tmp/subsock"] + sys.argv[1:])
EOF
chmod +x "$tmp/mdwe-node"
"$tmp/measure" -node "$tmp/mdwe-node" -port 18491 -conns 1000 -stall-conns 100 -stall-msgs 8 -settle 1s \
	-label mdwe -- -loops 2 >"$tmp/mdwe.log" 2>&1 || { cat "$tmp/mdwe.log"; exit 1; }
echo "1,000 connections, publishes, a stalled reader and the drain ran under PR_SET_MDWE: ok"
