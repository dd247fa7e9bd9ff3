#!/usr/bin/env bash
# nginx-tls.sh runs deploy/nginx/subsock.conf for real: a subsock node
# behind nginx terminating TLS with a throwaway self-signed certificate,
# on free loopback ports, then checks through the proxy that
#   - https and the certificate verify, http redirects to https, HSTS is set;
#   - POST /publish needs the API key, /metrics is served, /stats is not;
#   - a WebSocket client connects over wss:// with a JWT in ?token=, gets
#     messages published over https and over the socket, in JSON and
#     MessagePack; bad tokens get 401 and foreign origins 403 through nginx;
#   - pings cross the proxy (an idle client outlives the ping timeout) and
#     a custom close code (4001, token expired) reaches the client;
#   - Server-Sent Events (curl -N, the token in ?token=): GET /sse streams
#     through nginx unbuffered (the head, then an event published after
#     curl connected, then heartbeat comments, all while the stream is
#     open), refuses a missing token with 401, and Last-Event-ID resumes a
#     history topic through the proxy;
#   - the connect token never lands in nginx's access log.
# Everything runs from a temp dir that is removed at the end.
#
# Usage: scripts/nginx-tls.sh   (installs nginx and openssl with apt-get
# when they are missing; needs go, curl)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
conf_src=$repo/deploy/nginx/subsock.conf

say() { printf '%s\n' "$*"; }
die() {
	say "FAIL: $*" >&2
	exit 1
}

# ------------------------------------------------------------ tools

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

need_pkgs=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	say "installing ${need_pkgs[*]} with apt-get"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for tool in go curl openssl "$NGINX"; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
say "using $("$NGINX" -v 2>&1), $(openssl version), $(go version | cut -d' ' -f3)"

# ------------------------------------------------------------ temp dir and cleanup

tmp=$(mktemp -d -t subsock-nginx-XXXXXX)
node_pid= nginx_pid= sse_pid=
cleanup() {
	local rc=$?
	if [ -n "$sse_pid" ] && kill -0 "$sse_pid" 2>/dev/null; then
		kill "$sse_pid" 2>/dev/null || true
		wait "$sse_pid" 2>/dev/null || true
	fi
	if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
		kill -QUIT "$nginx_pid" 2>/dev/null || true
		wait "$nginx_pid" 2>/dev/null || true
	fi
	if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
		kill -TERM "$node_pid" 2>/dev/null || true
		wait "$node_pid" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ]; then
		for f in node.log nginx-error.log subsock.error.log; do
			[ -s "$tmp/$f" ] && { say "--- $f (last lines)"; tail -n 20 "$tmp/$f"; }
		done
	fi
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# nginx's workers drop root for nobody; they only need to traverse the dir
# (the master reads the key and opens the logs).
chmod 755 "$tmp"

# free_port prints a loopback TCP port nothing listens on.
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# ------------------------------------------------------------ certificate

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj "/CN=subsock nginx-tls test" \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
chmod 600 "$tmp/key.pem"
say "ok   self-signed certificate: $(openssl x509 -in "$tmp/cert.pem" -noout -ext subjectAltName | tail -n 1 | tr -s ' ')"

# ------------------------------------------------------------ node

secret=$(openssl rand -hex 32)
api_key=$(openssl rand -hex 16)
(cd "$repo" && go build -o "$tmp/subsock" ./cmd/subsock)
# Secrets go through the environment, not argv (visible in ps).
SUBSOCK_JWT_SECRET=$secret SUBSOCK_API_KEY=$api_key \
	"$tmp/subsock" -addr 127.0.0.1:0 -log-format json -ping-interval 1s -ping-timeout 3s \
	-history 'tls.h.>=100,10m' \
	>"$tmp/node.log" 2>&1 &
node_pid=$!
node_addr=
for _ in $(seq 1 100); do
	node_addr=$(sed -n 's/.*"msg":"subsock listening".*"addr":"\([^"]*\)".*/\1/p' "$tmp/node.log")
	[ -n "$node_addr" ] && break
	kill -0 "$node_pid" 2>/dev/null || die "the node exited: $(cat "$tmp/node.log")"
	sleep 0.1
done
[ -n "$node_addr" ] || die "the node did not report its address"
say "ok   node listening on $node_addr (pid $node_pid)"

# ------------------------------------------------------------ nginx

tls_port=$(free_port) || die "no free port"
http_port=$(free_port) || die "no free port"
[ "$tls_port" != "$http_port" ] || http_port=$(free_port)

# The config under test, with only its deployment-specific values
# rewritten; each must be found, so the script breaks loudly if the
# config drifts.
conf=$(<"$conf_src")
subst() {
	[[ $conf == *"$1"* ]] || die "deploy/nginx/subsock.conf no longer contains '$1'"
	conf=${conf//"$1"/"$2"}
}
subst "listen 443 ssl;" "listen 127.0.0.1:$tls_port ssl;"
subst "listen [::]:443 ssl;" ""
subst "listen 80;" "listen 127.0.0.1:$http_port;"
subst "listen [::]:80;" ""
subst "server 127.0.0.1:8080 " "server $node_addr "
subst "/etc/ssl/subsock/fullchain.pem" "$tmp/cert.pem"
subst "/etc/ssl/subsock/privkey.pem" "$tmp/key.pem"
subst "/var/log/nginx/" "$tmp/"
printf '%s\n' "$conf" >"$tmp/subsock.conf"

cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log notice;
events { worker_connections 256; }
http {
    client_body_temp_path $tmp/body;
    proxy_temp_path       $tmp/proxy;
    fastcgi_temp_path     $tmp/fastcgi;
    uwsgi_temp_path       $tmp/uwsgi;
    scgi_temp_path        $tmp/scgi;
    access_log off;
    include $tmp/subsock.conf;
}
EOF
"$NGINX" -t -q -p "$tmp" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf" || die "nginx -t rejected the config"
"$NGINX" -p "$tmp" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf" -g 'daemon off;' &
nginx_pid=$!

base=https://127.0.0.1:$tls_port
curl_tls() { curl -sS --max-time 10 --cacert "$tmp/cert.pem" "$@"; }
for _ in $(seq 1 100); do
	curl_tls -o /dev/null "$base/healthz" 2>/dev/null && break
	kill -0 "$nginx_pid" 2>/dev/null || die "nginx exited"
	sleep 0.1
done
say "ok   nginx (pid $nginx_pid): https on 127.0.0.1:$tls_port, http on 127.0.0.1:$http_port"

# ------------------------------------------------------------ HTTP checks with curl

# expect_http WANT DESC CURL-ARGS...: the status must be WANT.
expect_http() {
	local want=$1 desc=$2 got
	shift 2
	got=$(curl -sS --max-time 10 -o "$tmp/resp.txt" -w '%{http_code}' "$@") || die "$desc: curl failed"
	[ "$got" = "$want" ] || die "$desc: HTTP $got, want $want ($(head -c 200 "$tmp/resp.txt"))"
	say "ok   $desc: $got"
}
ca=(--cacert "$tmp/cert.pem")

out=$(curl_tls -o /dev/null -w '%{http_code} %{ssl_verify_result} %{scheme}' "$base/healthz")
[ "$out" = "200 0 HTTPS" ] || die "GET /healthz over https: $out, want 200 with a verified certificate"
say "ok   GET /healthz over https with the certificate verified"
hdrs=$(curl_tls -D - -o /dev/null "$base/healthz")
grep -qi '^strict-transport-security: max-age=' <<<"$hdrs" || die "no Strict-Transport-Security header"
say "ok   Strict-Transport-Security set"
if curl -sS --max-time 10 -o /dev/null "$base/healthz" 2>/dev/null; then
	die "a client that does not trust the certificate got through"
fi
say "ok   an untrusting client is refused by certificate verification"
redirect=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$http_port/ws")
[[ $redirect == "301 https://"* ]] || die "plain http: $redirect, want a 301 to https"
say "ok   plain http redirects: $redirect"

expect_http 401 "POST /publish without the API key" "${ca[@]}" -X POST -H 'Content-Type: application/json' --data '"x"' "$base/publish?topic=tls.demo"
expect_http 401 "POST /publish with a wrong API key" "${ca[@]}" -X POST -H 'X-API-Key: wrong' -H 'Content-Type: application/json' --data '"x"' "$base/publish?topic=tls.demo"
expect_http 200 "POST /publish with X-API-Key" "${ca[@]}" -X POST -H "X-API-Key: $api_key" -H 'Content-Type: application/json' --data '"x"' "$base/publish?topic=tls.demo"
expect_http 200 "POST /publish with Authorization: Bearer" "${ca[@]}" -X POST -H "Authorization: Bearer $api_key" -H 'Content-Type: application/json' --data '"x"' "$base/publish?topic=tls.demo"
expect_http 413 "POST /publish over -max-message" "${ca[@]}" -X POST -H "X-API-Key: $api_key" -H 'Content-Type: application/json' --data "\"$(head -c 70000 /dev/zero | tr '\0' x)\"" "$base/publish?topic=tls.demo"
expect_http 200 "GET /metrics" "${ca[@]}" "$base/metrics"
grep -q '^subsock_connections ' "$tmp/resp.txt" || die "/metrics has no subsock_connections"
expect_http 404 "GET /stats (not exposed by the proxy)" "${ca[@]}" "$base/stats"

# ------------------------------------------------------------ WebSocket checks with a Go client

# The checker is its own module beside the temp files; the repository's
# go.sum pins the two libraries it needs, found in the module cache.
mkdir -p "$tmp/check"
cp "$repo/go.sum" "$tmp/check/go.sum"
ws_version=$(cd "$repo" && go list -m -f '{{.Version}}' github.com/coder/websocket)
jwt_version=$(cd "$repo" && go list -m -f '{{.Version}}' github.com/golang-jwt/jwt/v5)
cat >"$tmp/check/go.mod" <<EOF
module nginxtlscheck

go 1.26

require (
	github.com/coder/websocket $ws_version
	github.com/golang-jwt/jwt/v5 $jwt_version
)
EOF
cat >"$tmp/check/main.go" <<'EOF'
// Command nginxtlscheck drives a subsock node through a TLS proxy.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

var (
	base    = flag.String("base", "", "https://host:port of the proxy")
	caFile  = flag.String("ca", "", "PEM certificate to trust")
	secret  = flag.String("secret", "", "the node's HS256 secret")
	apiKey  = flag.String("api-key", "", "the node's API key")
	pingInt = flag.Duration("ping-interval", time.Second, "the node's -ping-interval")
	pingTO  = flag.Duration("ping-timeout", 3*time.Second, "the node's -ping-timeout")
)

var hc *http.Client

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

func ok(format string, args ...any) { fmt.Printf("ok   "+format+"\n", args...) }

func token(subs []string, ttl time.Duration, key string) string {
	c := jwt.MapClaims{"sub": "nginx-tls", "subs": subs, "pubs": subs, "exp": time.Now().Add(ttl).Unix()}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(key))
	if err != nil {
		panic(err)
	}
	return s
}

// client is one WebSocket connection with a reader, so pings are answered
// while the checker waits.
type client struct {
	conn *websocket.Conn
	in   chan []byte
	done chan error
}

func dial(ctx context.Context, tok, origin, proto string) (*client, *http.Response, error) {
	u := strings.Replace(*base, "https://", "wss://", 1) + "/ws"
	if tok != "" {
		u += "?token=" + url.QueryEscape(tok)
	}
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h, Subprotocols: []string{proto}})
	if err != nil {
		return nil, resp, err
	}
	c := &client{conn: conn, in: make(chan []byte, 64), done: make(chan error, 1)}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.done <- err
				return
			}
			c.in <- b
		}
	}()
	return c, resp, nil
}

func (c *client) send(ctx context.Context, typ websocket.MessageType, b []byte) error {
	return c.conn.Write(ctx, typ, b)
}

func (c *client) next(what string, within time.Duration) (map[string]any, error) {
	select {
	case b := <-c.in:
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s: %q: %v", what, b, err)
		}
		return m, nil
	case err := <-c.done:
		return nil, fmt.Errorf("%s: connection ended: %v", what, err)
	case <-time.After(within):
		return nil, fmt.Errorf("%s: nothing within %v", what, within)
	}
}

func publish(topic, body string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, *base+"/publish?topic="+topic, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", *apiKey)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

func run() error {
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return errors.New("no certificate in -ca")
	}
	hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const wait = 5 * time.Second

	// Same-host origin: the proxy passes Host with its port.
	origin := *base
	c, resp, err := dial(ctx, token([]string{"tls.>"}, time.Hour, *secret), origin, "subsock.v1.json")
	if err != nil {
		return fmt.Errorf("wss dial: %v", err)
	}
	st := resp.TLS
	if st == nil {
		return errors.New("the handshake did not run over TLS")
	}
	ok("wss:// connected through nginx: %s, %s, subprotocol %s, Origin %s",
		tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), c.conn.Subprotocol(), origin)

	if err := c.send(ctx, websocket.MessageText, []byte(`{"op":"sub","id":1,"topics":["tls.demo"]}`)); err != nil {
		return err
	}
	if m, err := c.next("sub", wait); err != nil || m["op"] != "ack" {
		return fmt.Errorf("sub: %v %v", m, err)
	}
	status, body, err := publish("tls.demo", `{"via":"https"}`)
	if err != nil || status != 200 || body != `{"subscribers":1}` {
		return fmt.Errorf("POST /publish over https: %d %q %v", status, body, err)
	}
	m, err := c.next("message published over https", wait)
	if err != nil {
		return err
	}
	if d, _ := m["data"].(map[string]any); m["op"] != "msg" || m["topic"] != "tls.demo" || d["via"] != "https" {
		return fmt.Errorf("got %v, want the https message", m)
	}
	ok("POST /publish over https (%s) delivered over wss: %v", body, m)

	if err := c.send(ctx, websocket.MessageText, []byte(`{"op":"pub","id":2,"topic":"tls.demo","data":{"via":"wss"}}`)); err != nil {
		return err
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		m, err := c.next("pub over wss", wait)
		if err != nil {
			return err
		}
		seen[fmt.Sprint(m["op"])] = true
	}
	if !seen["ack"] || !seen["msg"] {
		return fmt.Errorf("pub over wss: got %v, want ack and msg", seen)
	}
	ok("pub over wss acknowledged and delivered")

	// msgpack: a binary ping {"op":"ping","id":7} answered by a binary pong.
	mp, _, err := dial(ctx, token([]string{"tls.>"}, time.Hour, *secret), "", "subsock.v1.msgpack")
	if err != nil {
		return fmt.Errorf("msgpack dial: %v", err)
	}
	if mp.conn.Subprotocol() != "subsock.v1.msgpack" {
		return fmt.Errorf("msgpack subprotocol %q", mp.conn.Subprotocol())
	}
	ping := []byte{0x82, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0x07}
	if err := mp.send(ctx, websocket.MessageBinary, ping); err != nil {
		return err
	}
	select {
	case b := <-mp.in:
		if !bytes.Contains(b, []byte("pong")) {
			return fmt.Errorf("msgpack ping answered %x", b)
		}
		ok("subsock.v1.msgpack negotiated through nginx, binary ping answered (%d bytes)", len(b))
	case err := <-mp.done:
		return fmt.Errorf("msgpack connection ended: %v", err)
	case <-time.After(wait):
		return errors.New("no msgpack pong")
	}
	_ = mp.conn.Close(websocket.StatusNormalClosure, "")

	// Refusals cross the proxy with their status.
	for _, tc := range []struct {
		name, tok, origin string
		status            int
	}{
		{"token signed with another secret", token([]string{">"}, time.Hour, "not-the-secret"), "", 401},
		{"expired token", token([]string{">"}, -time.Minute, *secret), "", 401},
		{"no token", "", "", 401},
		{"foreign Origin", token([]string{">"}, time.Hour, *secret), "https://evil.example", 403},
	} {
		bad, resp, err := dial(ctx, tc.tok, tc.origin, "subsock.v1.json")
		if err == nil {
			_ = bad.conn.CloseNow()
			return fmt.Errorf("%s: connected, want %d", tc.name, tc.status)
		}
		if resp == nil || resp.StatusCode != tc.status {
			return fmt.Errorf("%s: %v, want HTTP %d", tc.name, err, tc.status)
		}
		ok("%s refused through nginx: %d", tc.name, resp.StatusCode)
	}

	// A token about to expire: close 4001 crosses the proxy. Meanwhile
	// the first client sends nothing; only the node's pings and its
	// client's pongs cross nginx, and they keep it open past the timeout.
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second)
	short := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"subs": []string{"tls.>"}, "exp": exp.Unix()})
	shortTok, _ := short.SignedString([]byte(*secret))
	lapsing, _, err := dial(ctx, shortTok, "", "subsock.v1.json")
	if err != nil {
		return fmt.Errorf("short-lived token: %v", err)
	}
	idleFrom := time.Now()
	select {
	case err := <-lapsing.done:
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 {
			return fmt.Errorf("expiring token: connection ended with %v, want close 4001", err)
		}
		ok("token expiry closed the connection with %d %q through nginx, %v after exp",
			ce.Code, ce.Reason, time.Since(exp).Round(time.Millisecond))
	case <-time.After(exp.Sub(time.Now()) + 3*(*pingInt)):
		return errors.New("the expired connection was not closed")
	}
	if rest := *pingTO + *pingInt - time.Since(idleFrom); rest > 0 {
		time.Sleep(rest) // let the idle client outlive the node's ping timeout
	}
	if err := c.send(ctx, websocket.MessageText, []byte(`{"op":"ping","id":9}`)); err != nil {
		return fmt.Errorf("idle client: %v", err)
	}
	if m, err := c.next("ping after idling", wait); err != nil || m["op"] != "pong" {
		return fmt.Errorf("idle client after %v: %v %v", time.Since(idleFrom), m, err)
	}
	ok("an idle client outlived the %v ping timeout through nginx (%v without a message of its own)",
		*pingTO, time.Since(idleFrom).Round(time.Millisecond))
	return c.conn.Close(websocket.StatusNormalClosure, "done")
}
EOF
(cd "$tmp/check" && GOFLAGS=-mod=mod GOPROXY=off go build -o "$tmp/nginxtlscheck" .) ||
	die "building the checker (are github.com/coder/websocket and golang-jwt in the module cache? run go mod download in $repo)"
"$tmp/nginxtlscheck" -base "$base" -ca "$tmp/cert.pem" -secret "$secret" -api-key "$api_key" \
	-ping-interval 1s -ping-timeout 3s || die "WebSocket checks failed"

# ------------------------------------------------------------ SSE checks with curl -N

# hs256_token SUBS prints a JWT for the node's secret granting SUBS (a JSON
# array) for an hour, as an application's backend would issue one.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
hs256_token() {
	local h p
	h=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)
	p=$(printf '{"sub":"nginx-tls-sse","subs":%s,"exp":%d}' "$1" $(($(date +%s) + 3600)) | b64url)
	printf '%s.%s.%s' "$h" "$p" "$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)"
}

# sse_open NAME URL [CURL-ARGS...] starts curl -N on URL in the background,
# as a browser's EventSource would connect: body in $tmp/NAME.body, headers
# in $tmp/NAME.headers. It sets sse_pid.
sse_open() {
	local name=$1 url=$2
	shift 2
	curl -N -sS --max-time 60 --cacert "$tmp/cert.pem" -H 'Accept: text/event-stream' "$@" \
		-D "$tmp/$name.headers" "$url" >"$tmp/$name.body" 2>"$tmp/$name.err" &
	sse_pid=$!
}

# sse_close ends the stream started last.
sse_close() {
	kill "$sse_pid" 2>/dev/null || true
	wait "$sse_pid" 2>/dev/null || true
	sse_pid=
}

# wait_line FILE DESC GREP-ARGS...: a line of FILE must match within 5 s,
# while the stream is still open (curl still running).
wait_line() {
	local file=$1 desc=$2
	shift 2
	for _ in $(seq 1 50); do
		grep -q "$@" "$file" 2>/dev/null && return 0
		kill -0 "$sse_pid" 2>/dev/null || die "$desc: the stream ended: $(cat "${file%.body}.err") $(head -c 300 "$file" | tr '\n' '|')"
		sleep 0.1
	done
	die "$desc: not seen within 5 s (got: $(head -c 300 "$file" | tr '\n' '|'))"
}

# sse_publish TOPIC JSON publishes over https and prints the node's answer.
sse_publish() {
	curl_tls -X POST -H "X-API-Key: $api_key" -H 'Content-Type: application/json' --data "$2" "$base/publish?topic=$1"
}

sse_tok=$(hs256_token '["tls.>"]')
expect_http 401 "GET /sse without a token" "${ca[@]}" "$base/sse?topics=tls.sse"

sse_open live "$base/sse?topics=tls.sse&token=$sse_tok"
wait_line "$tmp/live.body" "the event stream's retry hint through nginx" -E '^retry: [0-9]+$'
grep -qi '^HTTP/1.1 200' "$tmp/live.headers" || die "GET /sse: $(head -n 1 "$tmp/live.headers")"
grep -qi '^content-type: text/event-stream' "$tmp/live.headers" || die "GET /sse: no text/event-stream content type: $(tr '\r\n' ' ' <"$tmp/live.headers")"
if grep -qi '^content-length:' "$tmp/live.headers"; then
	die "GET /sse has a Content-Length through nginx: the stream was buffered"
fi
say "ok   GET /sse through nginx over TLS: 200 text/event-stream, the retry hint arrived while the stream is open"
# The 200 comes once the topic is live: an event published now reaches it.
out=$(sse_publish tls.sse '{"via":"sse"}')
[ "$out" = '{"subscribers":1}' ] || die "POST /publish to the stream's topic: $out, want 1 subscriber"
wait_line "$tmp/live.body" "the event published after curl connected" -xF 'data: {"topic":"tls.sse","data":{"via":"sse"}}'
say "ok   an event published after curl -N connected arrived through nginx: $(grep -m1 '^data: ' "$tmp/live.body")"
wait_line "$tmp/live.body" "a heartbeat comment" -xF ': ping'
say "ok   heartbeat comments (: ping) cross the proxy"
sse_close

# A browser's reconnect sends Last-Event-ID (EPOCH:OFFSET, the last id it
# got): the node must see it through nginx and resume right after it.
first=$(sse_publish tls.h.sse '"one"')
epoch=$(sed -n 's/.*"epoch":"\([^"]*\)".*/\1/p' <<<"$first")
[ -n "$epoch" ] || die "POST /publish to a history topic: $first, want an offset and an epoch"
sse_publish tls.h.sse '"two"' >/dev/null
sse_open resume "$base/sse?topics=tls.h.sse&token=$sse_tok" -H "Last-Event-ID: $epoch:1"
wait_line "$tmp/resume.body" "offset 2 replayed after Last-Event-ID $epoch:1" -xF 'data: {"topic":"tls.h.sse","offset":2,"data":"two"}'
grep -qxF "id: $epoch:2" "$tmp/resume.body" || die "no id: $epoch:2 before the replayed event"
if grep -q '"offset":1' "$tmp/resume.body"; then
	die "offset 1, which Last-Event-ID said the browser had, was replayed"
fi
say "ok   Last-Event-ID crosses the proxy: the stream resumed at offset 2 (id: $epoch:2)"
sse_close

# ------------------------------------------------------------ access log

log=$tmp/subsock.access.log
grep -q '"GET /ws HTTP/1.1" 101' "$log" || die "no upgraded /ws request in the access log"
grep -q '"GET /sse HTTP/1.1" 200' "$log" || die "no /sse stream in the access log"
if grep -q 'token=' "$log"; then
	die "a connect token reached the access log: $(grep -m1 'token=' "$log")"
fi
say "ok   access log: $(grep -c '"GET /ws ' "$log") /ws and $(grep -c '"GET /sse ' "$log") /sse requests logged, no token in it"
say "--- access log sample"
grep -m3 '/ws' "$log"
say "PASS: subsock behind nginx with TLS"
