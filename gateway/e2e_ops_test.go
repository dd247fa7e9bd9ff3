package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/proto"
)

// decodeStrict decodes body into v, refusing fields v does not have: the
// body must match its documented schema exactly.
func decodeStrict(t testing.TB, body string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%q does not match its schema: %v", body, err)
	}
}

// TestOpsEndpoints: /livez, /readyz, /healthz and /stats answer the
// schemas docs/operations.md gives, with no counts on the health ones.
func TestOpsEndpoints(t *testing.T) {
	bus := broker.NewMemoryBus()
	n := startNode(t, gateway.Config{OpenBroker: func(h broker.Handler) (broker.Broker, error) { return bus.Attach(h), nil }})
	hc := newHTTPClient(t)
	c := dialWS(t, n, codecJSON)
	c.subscribe(t, 1, "ops.t")
	type health struct {
		Status string `json:"status"`
		Broker string `json:"broker"`
		Poller string `json:"poller"`
		Check  string `json:"check"`
	}
	for _, path := range []string{"/livez", "/readyz", "/healthz"} {
		status, body := get(t, hc, n, path)
		var h health
		decodeStrict(t, body, &h)
		if status != http.StatusOK || (h.Status != "ok" && h.Status != "alive") {
			t.Fatalf("%s: %d %s", path, status, body)
		}
		if strings.ContainsAny(body, "0123456789") {
			t.Fatalf("%s reveals counts: %s", path, body)
		}
	}
	status, body := get(t, hc, n, "/stats")
	var st struct {
		Connections        int64  `json:"connections"`
		SSEStreams         int64  `json:"sse_streams"`
		TCPConnections     int64  `json:"tcp_connections"`
		Subscriptions      int    `json:"subscriptions"`
		Topics             int    `json:"topics"`
		BrokerTopics       int    `json:"broker_topics"`
		MessagesIn         uint64 `json:"messages_in"`
		MessagesOut        uint64 `json:"messages_out"`
		SlowConsumerCloses uint64 `json:"slow_consumer_closes"`
		HeartbeatCloses    uint64 `json:"heartbeat_closes"`
		Draining           bool   `json:"draining"`
	}
	decodeStrict(t, body, &st)
	if status != http.StatusOK || st.Connections != 1 || st.Subscriptions != 1 {
		t.Fatalf("/stats: %d %s", status, body)
	}
	// Degraded: the backbone stopped; ready turns 503 and says why, live
	// stays 200.
	bus.Stop()
	status, body = get(t, hc, n, "/readyz")
	var h health
	decodeStrict(t, body, &h)
	if status != http.StatusServiceUnavailable || h.Status != "degraded" || h.Broker == "" {
		t.Fatalf("/readyz with the backbone down: %d %s", status, body)
	}
	if status, _ := get(t, hc, n, "/livez"); status != http.StatusOK {
		t.Fatalf("/livez with the backbone down: %d", status)
	}
	bus.Start()
	eventually(t, "/readyz ok again", func() bool { status, _ := get(t, hc, n, "/readyz"); return status == http.StatusOK })
	// What feeds the node from outside adds its own readiness.
	var srcErr atomic.Pointer[error]
	n.g.AddCheck("kafka", func() error {
		if e := srcErr.Load(); e != nil {
			return *e
		}
		return nil
	})
	down := errors.New("no broker reachable")
	srcErr.Store(&down)
	status, body = get(t, hc, n, "/readyz")
	h = health{}
	decodeStrict(t, body, &h)
	if status != http.StatusServiceUnavailable || h.Check != "kafka: no broker reachable" {
		t.Fatalf("/readyz with a failing check: %d %s", status, body)
	}
	srcErr.Store(nil)
	// Gateway.Publish takes the node's publish path.
	if _, err := n.g.Publish(t.Context(), "ops.t", proto.FormatJSON, []byte(`{"via":"Publish"}`)); err != nil {
		t.Fatal(err)
	}
	if r := c.next(t); r.op != "msg" || r.topic != "ops.t" {
		t.Fatalf("Gateway.Publish delivery: %v", r)
	}
	for _, bad := range []struct {
		topic string
		data  string
	}{{"a..b", "1"}, {"_subsock.ctl", "1"}, {"ops.t", "{"}} {
		if _, err := n.g.Publish(t.Context(), bad.topic, proto.FormatJSON, []byte(bad.data)); err == nil {
			t.Fatalf("Gateway.Publish(%q, %q) succeeded", bad.topic, bad.data)
		}
	}
}

// TestOpsHTTPErrors: errors are {"error":{"code","message"}} with the
// protocol's codes and no Go prefixes; curl -d publishes; a repeated topic
// is refused.
func TestOpsHTTPErrors(t *testing.T) {
	cfg := historyConfig(t, 5)
	n := startNode(t, cfg)
	hc := newHTTPClient(t)
	c := dialWS(t, n, codecJSON)
	c.subscribe(t, 1, "curl.t")
	// What curl -d sends.
	if status, body := publish(t, hc, n, "curl.t", "application/x-www-form-urlencoded", []byte(`{"x":1}`)); status != http.StatusOK {
		t.Fatalf("curl -d: %d %s", status, body)
	}
	if r := c.next(t); r.op != "msg" || r.topic != "curl.t" {
		t.Fatalf("curl -d delivery %v", r)
	}
	type apiErr struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	for _, tc := range []struct {
		method, path, ctype, body string
		status                    int
		code                      string
	}{
		{"POST", "/publish?topic=a..b", "application/json", "1", 400, "invalid_topic"},
		{"POST", "/publish?topic=a&topic=b", "application/json", "1", 400, "bad_request"},
		{"POST", "/publish", "application/json", "1", 400, "bad_request"},
		{"POST", "/publish?topic=a", "application/json", "{", 400, "bad_request"},
		{"POST", "/publish?topic=a", "image/png", "1", 415, "bad_request"},
		{"POST", "/publish?topic=_subsock.ctl", "application/json", "1", 400, "invalid_topic"},
		{"GET", "/history?topic=plain", "", "", 400, "not_enabled"},
		{"GET", "/history?topic=chat.a&limit=x", "", "", 400, "bad_request"},
		{"POST", "/api/broadcast", "application/json", `{"topics":["a b"],"data":1}`, 400, "invalid_topic"},
		{"POST", "/api/disconnect", "application/json", `{"nope":1}`, 400, "bad_request"},
	} {
		req, _ := http.NewRequest(tc.method, n.httpURL(tc.path), strings.NewReader(tc.body))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e apiErr
		dec := json.NewDecoder(resp.Body)
		dec.DisallowUnknownFields()
		derr := dec.Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.status || derr != nil || e.Error.Code != tc.code || e.Error.Message == "" ||
			strings.HasPrefix(e.Error.Message, "proto:") || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %+v (%v), want %d code %s", tc.method, tc.path, resp.StatusCode, e, derr, tc.status, tc.code)
		}
	}
}

// TestOpsRefusalsAsCloseCodes: a client that asks (refuse=close) learns
// why it was refused from a close code a browser can read.
func TestOpsRefusalsAsCloseCodes(t *testing.T) {
	cfg := gateway.Config{}
	cfg.Security.JWT.Secret = secSecret
	cfg.Security.AllowedOrigins = "good.example"
	cfg.Security.MaxConns = 1
	n := startNode(t, cfg)
	good := mustDial(t, n, bearerToken(userToken(t, "1"))) // takes the one admission slot
	_ = good
	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
		code   websocket.StatusCode
		reason string
	}{
		{"no token", "?refuse=close", nil, 4001, "token"},
		{"origin", "?refuse=close&token=" + userToken(t, "2"), http.Header{"Origin": {"http://evil.example"}}, 4003, "origin"},
		{"admission", "?refuse=close&token=" + userToken(t, "2"), nil, 4013, "retry in"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		conn, resp, err := websocket.Dial(ctx, n.wsURL()+tc.query, &websocket.DialOptions{HTTPHeader: tc.header})
		if err != nil {
			cancel()
			t.Fatalf("%s: the upgrade itself failed: %v (%v)", tc.name, err, resp)
		}
		_, _, err = conn.Read(ctx)
		cancel()
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != tc.code || !strings.Contains(ce.Reason, tc.reason) {
			t.Errorf("%s: %v, want close %d with %q in the reason", tc.name, err, tc.code, tc.reason)
		}
	}
	// Without the option the status stays an HTTP one.
	expectRefused(t, n, hello{}, http.StatusUnauthorized, "")
}
