package gateway_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/subsock/subsock/gateway"
)

// apiCall sends a JSON body to a server API endpoint.
func apiCall(t testing.TB, n *node, method, path, key string, body any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.httpURL(path), rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := newHTTPClient(t).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// apiNodes is two nodes on one backbone (Redis unless bb is given),
// tokens signed with secSecret, an API key.
func apiNodes(t *testing.T, bb ...backbone) (a, b *node, key string) {
	t.Helper()
	which := backbones[1] // redis
	if len(bb) > 0 {
		which = bb[0]
	}
	cfg, _, _, _ := which.start(t)
	key = "api-key-0123456789"
	mk := func() gateway.Config {
		c := cfg()
		c.Security.JWT.Secret = secSecret
		c.Security.APIKey = key
		return c
	}
	return startNode(t, mk()), startNode(t, mk()), key
}

func userToken(t testing.TB, user string) string {
	return mint(t, hs256, "", claims([]string{"user.{user}.>", "room.>"}, []string{"room.>"}, time.Hour, jwt.MapClaims{"sub": user}))
}

func TestServerAPIIdentityAndUserGrants(t *testing.T) {
	a, _, _ := apiNodes(t)
	c := mustDial(t, a, bearerToken(userToken(t, "42")))
	c.sendEnv(t, envelope{{"op", "info"}, {"id", 1}})
	r := c.next(t)
	client, _ := r.fields["client"].(string)
	node, _ := r.fields["node"].(string)
	if r.op != "ack" || r.fields["user"] != "42" || node == "" || !strings.HasPrefix(client, node+"-") {
		t.Fatalf("info: %v %v", r, r.fields)
	}
	c2 := mustDial(t, a, bearerToken(userToken(t, "42")))
	c2.sendEnv(t, envelope{{"op", "info"}, {"id", 1}})
	if r2 := c2.next(t); r2.fields["client"] == client {
		t.Fatalf("two connections share the client id %v", client)
	}
	c.subscribe(t, 2, "user.42.inbox")
	c.sendEnv(t, envelope{{"op", "sub"}, {"id", 3}, {"topics", []string{"user.43.inbox"}}})
	if r := c.next(t); r.op != "err" || r.code != "forbidden" {
		t.Fatalf("user 42 on user.43.inbox: %v", r)
	}
	// A subject that is not one segment grants nothing through {user}.
	bad := mustDial(t, a, bearerToken(userToken(t, "42.inbox")))
	bad.sendEnv(t, envelope{{"op", "sub"}, {"id", 1}, {"topics", []string{"user.42.inbox.x"}}})
	if r := bad.next(t); r.op != "err" || r.code != "forbidden" {
		t.Fatalf(`subject "42.inbox" on user.42.inbox.x: %v`, r)
	}
	// Reserved topics are the nodes' own.
	c.sendEnv(t, envelope{{"op", "pub"}, {"id", 4}, {"topic", "_subsock.ctl"}, {"data", map[string]string{"cmd": "disconnect", "user": "42"}}})
	if r := c.next(t); r.op != "err" || r.code != "invalid_topic" {
		t.Fatalf("pub on the control topic: %v", r)
	}
	// Anonymous patterns cannot name {user}.
	if _, err := gateway.New(gateway.Config{Security: gateway.SecurityConfig{AnonymousSubs: []string{"user.{user}.>"}}}); err == nil {
		t.Fatal("New accepted {user} in -anonymous-subs")
	}
}

func TestServerAPIClusterWide(t *testing.T) {
	for _, bb := range backbones {
		t.Run(bb.name, func(t *testing.T) { testServerAPIClusterWide(t, bb) })
	}
}

func testServerAPIClusterWide(t *testing.T, bb backbone) {
	a, b, key := apiNodes(t, bb)
	// User 42 on both nodes, user 7 on a; all in room.1.
	a42 := mustDial(t, a, bearerToken(userToken(t, "42")))
	b42 := mustDial(t, b, bearerToken(userToken(t, "42")))
	a7 := mustDial(t, a, bearerToken(userToken(t, "7")))
	for _, c := range []*wsClient{a42, b42, a7} {
		c.subscribe(t, 1, "room.1")
	}
	for _, ep := range []struct{ method, path string }{
		{"POST", "/api/disconnect"}, {"POST", "/api/unsubscribe"}, {"POST", "/api/broadcast"}, {"GET", "/api/nodes"},
	} {
		if status, _ := apiCall(t, a, ep.method, ep.path, "", map[string]string{"user": "42"}); status != http.StatusUnauthorized {
			t.Errorf("%s %s without the key: %d, want 401", ep.method, ep.path, status)
		}
	}
	// Both nodes know each other.
	eventually(t, "each node listing both", func() bool {
		for _, n := range []*node{a, b} {
			_, body := apiCall(t, n, "GET", "/api/nodes", key, nil)
			var out struct{ Nodes []gateway.NodeInfo }
			if json.Unmarshal([]byte(body), &out) != nil || len(out.Nodes) != 2 {
				return false
			}
		}
		return true
	})

	// unsubscribe: user 42 leaves room.1 on both nodes and is told.
	if status, body := apiCall(t, b, "POST", "/api/unsubscribe", key, map[string]string{"user": "42", "topic": "room.1"}); status != http.StatusAccepted {
		t.Fatalf("unsubscribe: %d %s", status, body)
	}
	for _, c := range []*wsClient{a42, b42} {
		if r := c.next(t); r.op != "unsubscribed" || r.topic != "room.1" {
			t.Fatalf("after /api/unsubscribe: %v", r)
		}
	}
	// broadcast: one payload to two topics; only user 7 is still in room.1.
	a7.subscribe(t, 2, "room.2")
	status, body := apiCall(t, a, "POST", "/api/broadcast", key, map[string]any{"topics": []string{"room.1", "room.2"}, "data": map[string]int{"x": 1}})
	if status != http.StatusOK || !strings.Contains(body, `"room.1":{"subscribers":1}`) {
		t.Fatalf("broadcast: %d %s", status, body)
	}
	got := map[string]bool{}
	for range 2 {
		r := a7.next(t)
		if r.op != "msg" || r.data.(map[string]any)["x"] != int64(1) {
			t.Fatalf("broadcast delivery %v", r)
		}
		got[r.topic] = true
	}
	if !got["room.1"] || !got["room.2"] {
		t.Fatalf("broadcast reached %v", got)
	}
	// disconnect: both of user 42's connections close with 4003, user 7 stays.
	if status, body := apiCall(t, a, "POST", "/api/disconnect", key, map[string]string{"user": "42"}); status != http.StatusAccepted {
		t.Fatalf("disconnect: %d %s", status, body)
	}
	for _, c := range []*wsClient{a42, b42} {
		if code := c.closeStatus(t); code != websocket.StatusCode(4003) {
			t.Fatalf("disconnected with %v, want 4003", code)
		}
	}
	a7.sendEnv(t, envelope{{"op", "ping"}, {"id", 9}})
	if r := a7.next(t); r.op != "pong" {
		t.Fatalf("user 7 after user 42's disconnect: %v", r)
	}
	for _, bad := range []map[string]string{{}, {"user": "1", "client": "x"}, {"topic": "t"}} {
		if status, _ := apiCall(t, a, "POST", "/api/disconnect", key, bad); status != http.StatusBadRequest {
			t.Errorf("disconnect %v: %d, want 400", bad, status)
		}
	}
	// A node that shuts down says goodbye: the other forgets it at once.
	if err := b.shutdown(); err != nil && !errors.Is(err, gateway.ErrShuttingDown) {
		t.Fatal(err)
	}
	eventually(t, "node a forgetting node b", func() bool {
		_, body := apiCall(t, a, "GET", "/api/nodes", key, nil)
		var out struct{ Nodes []gateway.NodeInfo }
		return json.Unmarshal([]byte(body), &out) == nil && len(out.Nodes) == 1
	})
}

// TestServerAPIEchoFalse: a pub with "echo":false reaches everyone but
// its own connection, on every node.
func TestServerAPIEchoFalse(t *testing.T) {
	a, b, _ := apiNodes(t)
	pubr := mustDial(t, a, bearerToken(userToken(t, "1")))
	same := mustDial(t, a, bearerToken(userToken(t, "1")))
	other := mustDial(t, b, bearerToken(userToken(t, "2")))
	for _, c := range []*wsClient{pubr, same, other} {
		c.subscribe(t, 1, "room.e")
	}
	pubr.sendEnv(t, envelope{{"op", "pub"}, {"id", 2}, {"topic", "room.e"}, {"echo", false}, {"data", "typing"}})
	if r := pubr.next(t); r.op != "ack" || r.id != 2 {
		t.Fatalf("pub reply %v", r)
	}
	for _, c := range []*wsClient{same, other} {
		if r := c.next(t); r.op != "msg" || r.data != "typing" {
			t.Fatalf("echo:false delivery %v", r)
		}
	}
	pubr.sendEnv(t, envelope{{"op", "pub"}, {"id", 3}, {"topic", "room.e"}, {"data", "hello"}})
	for i := 0; i < 2; i++ { // the ack and, this time, its own message
		if r := pubr.next(t); r.op == "msg" && r.data != "hello" {
			t.Fatalf("after echo:false the publisher got %v", r)
		}
	}
}
