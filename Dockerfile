# subsock: a static binary on an empty image.
#
#   docker build -t subsock .
#   docker run --rm -p 8080:8080 --ulimit nofile=1048576:1048576 subsock
#   docker run --rm -p 8080:8080 subsock -broker redis://redis:6379 -loops 4
#
# Arguments after the image name replace CMD and go to subsock as flags
# (`subsock -h` lists them); secrets come from the environment
# (SUBSOCK_API_KEY, SUBSOCK_JWT_SECRET) or a mounted -jwt-secret-file.
# scripts/docker-test.sh builds this file and runs it on a loopback port.
#
# No HEALTHCHECK: the final image is scratch, with no shell and no client to
# run one, and subsock has no self-probe mode. Let the orchestrator probe
# over HTTP instead: readiness GET /readyz (503 while the backbone is down or
# the node drains), liveness GET /livez (docs/operations.md). Under plain
# Docker, watch /readyz from the host or the load balancer.

# The toolchain image; the version matches go.mod. Override to build from a
# mirror or a local image (scripts/docker-test.sh does).
ARG GO_IMAGE=golang:1.26.8-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Pure Go, so the binary is static and runs on scratch; no VCS stamping
# (.git is not in the build context).
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY . .
# The cache mounts keep downloaded modules and compiled packages between
# builds (BuildKit, buildah); only what cmd/subsock imports is downloaded.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags='-s -w' -o /out/subsock ./cmd/subsock
# CA roots for outbound TLS (a -jwks-url on https); the runtime needs
# nothing else.
RUN mkdir -p /out/etc/ssl/certs && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/

FROM scratch
COPY --from=build /out/ /
# A fixed non-root uid/gid (distroless's "nonroot"); scratch has no
# /etc/passwd, so it is numeric. Port 8080 needs no capability.
USER 65532:65532
EXPOSE 8080
# subsock drains on SIGTERM (1001 to every client, exit 0 within
# -drain-timeout): give `docker stop -t` / terminationGracePeriodSeconds more.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/subsock"]
CMD ["-addr", ":8080", "-log-format", "json"]
