package gateway_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subsock/subsock/gateway"
)

// TestE2EPublishAPI drives POST /publish with every kind of body and
// checks the status, the answer and what subscribers of both codecs get.
func TestE2EPublishAPI(t *testing.T) {
	const maxMessage = 4096
	n := startNode(t, gateway.Config{MaxMessage: maxMessage})
	hc := newHTTPClient(t)
	const topic = "api.news"
	subs := []*wsClient{dialWS(t, n, codecJSON), dialWS(t, n, codecMsgpack)}
	for _, s := range subs {
		s.subscribe(t, 1, topic)
	}
	mp := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	js := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name        string
		topic       string
		contentType string
		body        []byte
		status      int
		subscribers int // for 200
		delivered   any // value the subscribers must get, for 200 with subscribers
		reason      string
	}{
		{name: "json", topic: topic, contentType: "application/json", body: js(sample), status: 200, subscribers: 2, delivered: sample},
		{name: "json_charset", topic: topic, contentType: "application/json; charset=utf-8", body: []byte(` [1, 2.5, "x"] `), status: 200, subscribers: 2, delivered: []any{1, 2.5, "x"}},
		{name: "json_scalar", topic: topic, contentType: "application/json", body: []byte(`"just a string"`), status: 200, subscribers: 2, delivered: "just a string"},
		{name: "msgpack", topic: topic, contentType: "application/msgpack", body: mp(sample), status: 200, subscribers: 2, delivered: sample},
		{name: "msgpack_scalar", topic: topic, contentType: "application/msgpack", body: mp(-12345), status: 200, subscribers: 2, delivered: -12345},
		{name: "no_subscribers", topic: "api.nobody", contentType: "application/json", body: []byte(`{}`), status: 200},
		{name: "largest_body", topic: "api.nobody", contentType: "application/json", body: js(strings.Repeat("x", maxMessage-2)), status: 200},
		{name: "bad_topic", topic: "a..b", contentType: "application/json", body: []byte(`1`), status: 400, reason: "a..b"},
		{name: "topic_with_wildcard", topic: "a.*", contentType: "application/json", body: []byte(`1`), status: 400, reason: "a.*"},
		{name: "missing_topic", topic: "", contentType: "application/json", body: []byte(`1`), status: 400},
		{name: "bad_json", topic: topic, contentType: "application/json", body: []byte(`{"a":`), status: 400, reason: "JSON"},
		{name: "two_json_values", topic: topic, contentType: "application/json", body: []byte(`1 2`), status: 400, reason: "JSON"},
		{name: "empty_json", topic: topic, contentType: "application/json", body: nil, status: 400},
		{name: "bad_msgpack", topic: topic, contentType: "application/msgpack", body: []byte{0xc1}, status: 400, reason: "MessagePack"},
		{name: "truncated_msgpack", topic: topic, contentType: "application/msgpack", body: mp(sample)[:10], status: 400, reason: "MessagePack"},
		{name: "too_large", topic: topic, contentType: "application/json", body: js(strings.Repeat("x", maxMessage)), status: 413},
		// curl -d sends a form type, and people leave text/plain: read as JSON.
		{name: "text_plain", topic: topic, contentType: "text/plain", body: []byte(`1`), status: 200, subscribers: 2, delivered: 1},
		{name: "form_json", topic: topic, contentType: "application/x-www-form-urlencoded", body: []byte(`{"x":1}`), status: 200, subscribers: 2, delivered: map[string]any{"x": 1}},
		{name: "form_not_json", topic: topic, contentType: "application/x-www-form-urlencoded", body: []byte(`a=1`), status: 400, reason: "JSON"},
		{name: "image", topic: topic, contentType: "image/png", body: []byte(`1`), status: 415},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			status, body := publish(t, hc, n, tt.topic, tt.contentType, tt.body)
			if status != tt.status {
				t.Fatalf("status %d (%q), want %d", status, body, tt.status)
			}
			if status != http.StatusOK {
				if strings.TrimSpace(body) == "" || !strings.Contains(body, tt.reason) {
					t.Fatalf("%d answer %q: want a reason mentioning %q", status, body, tt.reason)
				}
				return
			}
			var out struct{ Subscribers *int }
			if err := json.Unmarshal([]byte(body), &out); err != nil || out.Subscribers == nil {
				t.Fatalf(`answer %q, want {"subscribers":N}`, body)
			}
			if *out.Subscribers != tt.subscribers {
				t.Fatalf("subscribers %d, want %d", *out.Subscribers, tt.subscribers)
			}
			if tt.subscribers == 0 {
				return
			}
			for _, s := range subs {
				r := s.next(t)
				if r.op != "msg" || r.topic != tt.topic || !reflect.DeepEqual(r.data, norm(tt.delivered)) {
					t.Fatalf("%s subscriber got %v, want msg on %s with %v", s.codec.name, r, tt.topic, norm(tt.delivered))
				}
			}
		})
	}
	// Nothing else was delivered: the next message is a fresh pong.
	for _, s := range subs {
		s.sendEnv(t, envelope{{"op", "ping"}, {"id", 99}})
		if r := s.next(t); r.op != "pong" || r.id != 99 {
			t.Fatalf("%s subscriber: %v, want pong 99 (a rejected publish was delivered?)", s.codec.name, r)
		}
	}
}

// TestE2EHealthAndMetrics checks GET /healthz and the metric names.
func TestE2EHealthAndMetrics(t *testing.T) {
	n := startNode(t, gateway.Config{})
	hc := newHTTPClient(t)
	s := dialWS(t, n, codecJSON)
	s.subscribe(t, 1, "m.a", "m.b")
	if got := publishOK(t, hc, n, "m.a", "application/json", []byte(`"hello"`)); got != 1 {
		t.Fatalf("publish reached %d, want 1", got)
	}
	if r := s.next(t); r.op != "msg" {
		t.Fatalf("got %v, want the msg", r)
	}

	status, body := get(t, hc, n, "/healthz")
	if status != http.StatusOK {
		t.Fatalf("GET /healthz: %d %q", status, body)
	}
	var health map[string]any
	if err := json.Unmarshal([]byte(body), &health); err != nil || health["status"] != "ok" {
		t.Fatalf("GET /healthz body %q, want JSON with status ok", body)
	}

	// Count from here: the metrics must move by exactly one publish.
	status, body = get(t, hc, n, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	base := map[string]float64{}
	for _, name := range []string{"subsock_messages_in_total", "subsock_messages_out_total", "subsock_bytes_out_total", "subsock_fanout_duration_seconds_count"} {
		base[name], _ = metric(body, name)
	}
	if got := publishOK(t, hc, n, "m.a", "application/json", []byte(`"hello again"`)); got != 1 {
		t.Fatalf("publish reached %d, want 1", got)
	}
	if r := s.next(t); r.op != "msg" || r.data != "hello again" {
		t.Fatalf("got %v, want the msg", r)
	}
	status, body = get(t, hc, n, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	for _, tt := range []struct {
		name string
		min  float64 // the sample, less its base, must be at least this
		max  float64 // and at most this (-1: no bound)
	}{
		{"subsock_connections", 1, 1},
		{"subsock_subscriptions", 2, 2},
		{"subsock_topics", 2, 2},
		{"subsock_messages_in_total", 1, 1},
		{"subsock_messages_out_total", 1, 1},
		{"subsock_bytes_out_total", 1, -1},
		{"subsock_slow_consumer_closes_total", 0, 0},
		{"subsock_heartbeat_closes_total", 0, 0},
		{"subsock_fanout_duration_seconds_count", 1, 1},
		{"subsock_fanout_duration_seconds_sum", 0, -1},
	} {
		v, ok := metric(body, tt.name)
		if !ok {
			t.Errorf("/metrics lacks %s", tt.name)
			continue
		}
		v -= base[tt.name]
		if v < tt.min || (tt.max >= 0 && v > tt.max) {
			t.Errorf("%s grew by %v, want in [%v, %v]", tt.name, v, tt.min, tt.max)
		}
	}
	if !strings.Contains(body, "# TYPE subsock_fanout_duration_seconds histogram") {
		t.Errorf("/metrics: subsock_fanout_duration_seconds is not a histogram")
	}
}

// TestE2EBadUpgrade sends requests the node must refuse, each with its
// status, over raw connections so the headers are exactly as written.
func TestE2EBadUpgrade(t *testing.T) {
	const maxHeader = 2048
	n := startNode(t, gateway.Config{MaxHeaderBytes: maxHeader})
	host := "Host: " + n.addr + "\r\n"
	upgrade := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	pad := "X-Pad: " + strings.Repeat("p", maxHeader) + "\r\n"
	cases := []struct {
		name    string
		req     string
		status  int
		reason  bool   // the body must explain
		header  string // a header the answer must carry, "Name: value"
		upgrade bool   // for 101 controls
	}{
		{name: "no_upgrade_headers", req: "GET /ws HTTP/1.1\r\n" + host + "\r\n", status: 400, reason: true},
		{name: "no_key", req: "GET /ws HTTP/1.1\r\n" + host + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", status: 400, reason: true},
		{name: "post", req: "POST /ws HTTP/1.1\r\n" + host + upgrade + "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n", status: 405},
		{name: "version_8", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + "Sec-WebSocket-Version: 8\r\n\r\n", status: 426, header: "Sec-Websocket-Version: 13"},
		{name: "header_too_large_ws", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + "Sec-WebSocket-Version: 13\r\n" + pad + "\r\n", status: 431},
		{name: "header_too_large_api", req: "GET /healthz HTTP/1.1\r\n" + host + pad + "\r\n", status: 431},
		{name: "unknown_path", req: "GET /nope HTTP/1.1\r\n" + host + "\r\n", status: 404},
		{name: "ws_subpath", req: "GET /ws/x HTTP/1.1\r\n" + host + upgrade + "Sec-WebSocket-Version: 13\r\n\r\n", status: 404},
		{name: "control_upgrade", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + "Sec-WebSocket-Version: 13\r\n\r\n", status: 101},
		{name: "control_upgrade_query", req: "GET /ws?x=1 HTTP/1.1\r\n" + host + upgrade + "Sec-WebSocket-Version: 13\r\n\r\n", status: 101},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.DialTimeout("tcp", n.addr, waitFor)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(waitFor))
			if _, err := io.WriteString(nc, tt.req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tt.status)
			}
			if tt.reason && strings.TrimSpace(string(body)) == "" {
				t.Fatalf("%d without a reason in the body", resp.StatusCode)
			}
			if tt.header != "" {
				k, v, _ := strings.Cut(tt.header, ": ")
				if got := resp.Header.Get(k); got != v {
					t.Fatalf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
	// Refused upgrades never counted as WebSocket connections, and the
	// accepted ones are gone once their clients hung up.
	eventually(t, "no WebSocket connections left", func() bool {
		st := n.g.Stats()
		return st.Connections == 0 && st.TCPConns == 0
	})
}
