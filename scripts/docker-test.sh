#!/usr/bin/env bash
# Builds the Dockerfile with podman, runs the image on a loopback port, checks
# /healthz, /readyz and a publish that reaches a subscriber (an SSE stream), then
# stops the container with SIGTERM and checks that it drained and exited 0.
#
#   GO_IMAGE=golang:1.26.8-bookworm   the build stage's toolchain image. By
#       default, when no such image is present locally, a stand-in is made from
#       this machine's Go (go env GOROOT) with busybox and the CA roots, since
#       image registries may be out of reach (they are on the project's
#       machines); set GO_IMAGE to an image podman can pull to use that instead.
#   PORT=18080                        host loopback port
#
# Needs podman (apt-get install podman; on a host whose cgroups are "hybrid",
# v1 controllers beside an empty v2 tree, also runc: crun refuses that layout),
# and busybox-static for the stand-in toolchain image.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-18080}
IMAGE=localhost/subsock:test
NAME=subsock-docker-test-$$
GO_IMAGE=${GO_IMAGE:-}

command -v podman >/dev/null || {
	echo "podman not installed (apt-get install podman)" >&2
	exit 1
}

# Podman's defaults ask for 1,048,576 open files and unlimited processes in
# the container; without CAP_SYS_RESOURCE (dropped in some sandboxes and CI
# runners) the runtime cannot raise a hard limit, so ask for what this
# process already has.
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
runtime=()
if [[ -d /sys/fs/cgroup/unified && -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]]; then
	command -v runc >/dev/null || {
		echo "hybrid cgroups: crun refuses them; apt-get install runc" >&2
		exit 1
	}
	runtime=(--runtime runc)
fi
pm() { podman "${runtime[@]}" "$@"; }

tmp=$(mktemp -d)
started=""
cleanup() {
	if [[ -n $started ]]; then pm rm -f "$NAME" >/dev/null 2>&1 || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

if [[ -z $GO_IMAGE ]]; then
	GO_IMAGE=localhost/subsock-go-standin:$(go env GOVERSION)
	if ! podman image exists "$GO_IMAGE"; then
		echo "== making $GO_IMAGE from $(go env GOROOT)"
		bb=$(command -v busybox) || {
			echo "busybox not found (apt-get install busybox-static)" >&2
			exit 1
		}
		root=$tmp/root
		mkdir -p "$root/bin" "$root/usr/local" "$root/etc/ssl/certs" "$root/tmp" "$root/root"
		cp "$bb" "$root/bin/busybox"
		for t in sh mkdir cp; do ln -s busybox "$root/bin/$t"; done
		cp -a "$(go env GOROOT)" "$root/usr/local/go"
		cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
		chmod 1777 "$root/tmp"
		tar -C "$root" -c . | podman import \
			-c 'ENV PATH=/usr/local/go/bin:/go/bin:/bin' -c 'ENV GOPATH=/go' -c 'ENV GOTOOLCHAIN=local' \
			-c 'ENV HOME=/root' - "$GO_IMAGE" >/dev/null 2>&1
		rm -rf "$root"
	fi
fi

echo "== build (toolchain image $GO_IMAGE)"
# Host network for the build: the go command fetches modules from the proxy
# the host reaches.
t0=$SECONDS
pm build "${limits[@]}" --network host --build-arg "GO_IMAGE=$GO_IMAGE" -t "$IMAGE" . >"$tmp/build.log" 2>&1 || {
	tail -30 "$tmp/build.log"
	exit 1
}
echo "built $IMAGE in $((SECONDS - t0)) s: $(podman image inspect -f '{{.Size}}' "$IMAGE") bytes," \
	"user $(podman image inspect -f '{{.Config.User}}' "$IMAGE"), entrypoint $(podman image inspect -f '{{.Config.Entrypoint}}' "$IMAGE")"

cid=$(podman create "$IMAGE")
podman cp "$cid:/subsock" "$tmp/subsock" && podman rm "$cid" >/dev/null
if command -v file >/dev/null; then
	kind=$(file -b "$tmp/subsock")
	[[ $kind == *'statically linked'* ]] || {
		echo "FAIL: /subsock is not static: $kind" >&2
		exit 1
	}
	echo "binary: /subsock, $(stat -c %s "$tmp/subsock") bytes, statically linked"
fi

echo "== run on 127.0.0.1:$PORT ($(podman --version), runtime ${runtime[1]:-default})"
started=1
pm run -d --name "$NAME" "${limits[@]}" -p "127.0.0.1:$PORT:8080" "$IMAGE" \
	-addr :8080 -log-format json -drain-timeout 5s >/dev/null
base=http://127.0.0.1:$PORT
for _ in $(seq 100); do
	if curl -fsS "$base/healthz" >/dev/null 2>&1; then break; fi
	sleep 0.1
done
echo "healthz: $(curl -fsS "$base/healthz")"
echo "readyz:  $(curl -fsS "$base/readyz")"
echo "process: $(pm top "$NAME" user pid args | tail -1)"

# A subscriber (a Server-Sent Events stream: curl speaks it, no client to
# build), then a publish it must receive.
curl -sSN "$base/sse?topics=docker.test" >"$tmp/sub.out" 2>&1 &
sub=$!
got=""
for _ in $(seq 100); do
	out=$(curl -fsS -X POST "$base/publish?topic=docker.test" -H 'Content-Type: application/json' -d '{"hello":"container"}')
	if [[ $out == *'"subscribers":1'* ]]; then
		for _ in $(seq 50); do
			if grep -q 'container' "$tmp/sub.out"; then got=1 && break; fi
			sleep 0.1
		done
		break
	fi
	sleep 0.2
done
kill "$sub" 2>/dev/null || true
wait "$sub" 2>/dev/null || true
if [[ -z $got ]]; then
	echo "FAIL: the subscriber did not get the publish (last answer: ${out:-none})" >&2
	cat "$tmp/sub.out" >&2
	exit 1
fi
echo "publish: $out; the stream got: $(grep container "$tmp/sub.out" | head -1)"

echo "== stop (SIGTERM, drain)"
t0=$SECONDS
pm stop -t 15 "$NAME" >/dev/null
code=$(podman inspect -f '{{.State.ExitCode}}' "$NAME")
echo "stopped in $((SECONDS - t0)) s, exit code $code; last log line: $(pm logs "$NAME" 2>&1 | tail -1)"
[[ $code == 0 ]] || {
	echo "FAIL: exit code $code" >&2
	exit 1
}
echo "docker-test: ok"
