#!/usr/bin/env bash
# Installs the servers and browser the test suite runs against, from Debian's
# packages, when they are missing. Idempotent: with everything present it only
# checks for the binaries and exits, so CI can call it on every run.
#
#   redis-server, redis-cli   broker tests (Redis Pub/Sub and a 3-node cluster)
#   nats-server               broker tests (NATS core)
#   chromium, chromedriver    browser tests
#   promtool                  alert rule checks and unit tests (deploy/prometheus)
#
# Must run as root (or with sudo available); never prompts.
set -euo pipefail

# binary:package pairs; a package is installed when its binary is missing.
wanted=(
	redis-server:redis-server
	redis-cli:redis-server
	nats-server:nats-server
	chromium:chromium
	chromedriver:chromium-driver
	promtool:prometheus
)

missing=()
for pair in "${wanted[@]}"; do
	bin=${pair%%:*}
	pkg=${pair##*:}
	if ! command -v "$bin" >/dev/null 2>&1; then
		case " ${missing[*]-} " in
		*" $pkg "*) ;;
		*) missing+=("$pkg") ;;
		esac
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all present"
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-deps: need root to install: ${missing[*]}" >&2
		exit 1
	fi
	sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The Debian packages start their services on install where an init system
# runs; tests start their own servers on free ports, so stop those to free
# the default ports and the CPU. Absent init systems make this a no-op.
for svc in redis-server nats-server prometheus; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
		"${sudo[@]}" systemctl stop "$svc" || true
	fi
done

for pair in "${wanted[@]}"; do
	bin=${pair%%:*}
	if ! command -v "$bin" >/dev/null 2>&1; then
		echo "install-deps: $bin still missing after install" >&2
		exit 1
	fi
done
echo "install-deps: done"
