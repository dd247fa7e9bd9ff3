package gateway_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subsock/subsock/gateway"
)

// presenceNodes starts three nodes on one backbone with presence and
// join/leave on room.>, tokens, and an API key.
func presenceNodes(t *testing.T, bb backbone, joinLeaveMax int) ([]*node, string) {
	t.Helper()
	cfg, _, _, _ := bb.start(t)
	const key = "presence-key-0123"
	var nodes []*node
	for range 3 {
		c := cfg()
		c.Security.JWT.Secret = secSecret
		c.Security.APIKey = key
		c.Presence = []string{"room.>"}
		c.JoinLeave = []string{"room.>"}
		c.JoinLeaveMax = joinLeaveMax
		nodes = append(nodes, startNode(t, c))
	}
	// Each node must know the others before a gather can wait for them.
	eventually(t, "every node knowing the other two", func() bool {
		for _, n := range nodes {
			_, body := apiCall(t, n, "GET", "/api/nodes", key, nil)
			var out struct{ Nodes []gateway.NodeInfo }
			if json.Unmarshal([]byte(body), &out) != nil || len(out.Nodes) != 3 {
				return false
			}
		}
		return true
	})
	return nodes, key
}

func memberToken(t testing.TB, user string) string {
	return mint(t, hs256, "", claims([]string{"room.>"}, []string{"room.>"}, time.Hour, jwt.MapClaims{"sub": user}))
}

// presenceOf asks n over the API and returns "user/client" entries, sorted.
func presenceOf(t testing.TB, n *node, key, topic string) []string {
	t.Helper()
	status, body := apiCall(t, n, "GET", "/api/presence?topic="+topic, key, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /api/presence: %d %s", status, body)
	}
	var out struct {
		Presence []struct{ Client, User string }
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	var l []string
	for _, m := range out.Presence {
		l = append(l, m.User+"/"+m.Client)
	}
	sort.Strings(l)
	return l
}

func clientOf(t testing.TB, c *wsClient) string {
	t.Helper()
	c.sendEnv(t, envelope{{"op", "info"}, {"id", 99}})
	r := c.next(t)
	id, _ := r.fields["client"].(string)
	if r.op != "ack" || id == "" {
		t.Fatalf("info: %v", r)
	}
	return id
}

func TestPresenceAndJoinLeaveAcrossNodes(t *testing.T) {
	for _, bb := range backbones {
		t.Run(bb.name, func(t *testing.T) {
			nodes, key := presenceNodes(t, bb, 1000)
			var members []*wsClient
			var want []string
			for i, n := range nodes {
				c := mustDial(t, n, bearerToken(memberToken(t, fmt.Sprint("u", i))))
				id := clientOf(t, c)
				c.subscribe(t, 1, "room.p")
				// Everyone already in sees exactly one join of the newcomer.
				for j, m := range members {
					r := m.next(t)
					if r.op != "join" || r.topic != "room.p" || r.fields["client"] != id || r.fields["user"] != fmt.Sprint("u", i) {
						t.Fatalf("member %d on the join of %s: %v %v", j, id, r, r.fields)
					}
				}
				members = append(members, c)
				want = append(want, fmt.Sprintf("u%d/%s", i, id))
			}
			sort.Strings(want)
			// Every node answers the same list, at once.
			for i, n := range nodes {
				if got := presenceOf(t, n, key, "room.p"); strings.Join(got, " ") != strings.Join(want, " ") {
					t.Fatalf("node %d presence %v, want %v", i, got, want)
				}
			}
			// The ops agree with the API.
			members[0].sendEnv(t, envelope{{"op", "presence_stats"}, {"id", 5}, {"topic", "room.p"}})
			if r := members[0].next(t); r.op != "ack" || r.fields["clients"] != int64(3) || r.fields["users"] != int64(3) {
				t.Fatalf("presence_stats: %v %v", r, r.fields)
			}
			members[1].sendEnv(t, envelope{{"op", "presence"}, {"id", 6}, {"topic", "room.p"}})
			if r := members[1].next(t); r.op != "ack" || len(r.fields["presence"].([]any)) != 3 {
				t.Fatalf("presence: %v %v", r, r.fields)
			}
			members[1].sendEnv(t, envelope{{"op", "presence"}, {"id", 7}, {"topic", "chat.none"}})
			if r := members[1].next(t); r.op != "err" || r.code != "forbidden" {
				t.Fatalf("presence on a topic the token does not grant: %v", r)
			}
			// A leave: the others see it once; presence drops it everywhere.
			leaver := clientOf(t, members[2])
			members[2].close()
			for j := 0; j < 2; j++ {
				if r := members[j].next(t); r.op != "leave" || r.fields["client"] != leaver {
					t.Fatalf("member %d on the leave: %v %v", j, r, r.fields)
				}
			}
			for i, n := range nodes {
				if got := presenceOf(t, n, key, "room.p"); len(got) != 2 {
					t.Fatalf("node %d after the leave: %v", i, got)
				}
			}
			// No event reaches anyone twice or late.
			for j := 0; j < 2; j++ {
				members[j].sendEnv(t, envelope{{"op", "ping"}, {"id", 8}})
				if r := members[j].next(t); r.op != "pong" {
					t.Fatalf("member %d: an extra message %v", j, r)
				}
			}
			// A topic without presence.
			members[0].sendEnv(t, envelope{{"op", "presence"}, {"id", 9}, {"topic", "plain"}})
			if r := members[0].next(t); r.op != "err" {
				t.Fatalf("presence on plain: %v", r)
			}
			status, body := apiCall(t, nodes[2], "GET", "/api/topics?pattern=room.*", key, nil)
			if status != http.StatusOK || !strings.Contains(body, `{"topic":"room.p","subscribers":2}`) {
				t.Fatalf("GET /api/topics: %d %s", status, body)
			}
		})
	}
}

// TestJoinLeaveAboveMax: past -join-leave-max members across the cluster,
// nobody gets join or leave events.
func TestJoinLeaveAboveMax(t *testing.T) {
	nodes, _ := presenceNodes(t, backbones[0], 3)
	var cs []*wsClient
	for i := range 6 {
		c := mustDial(t, nodes[i%3], bearerToken(memberToken(t, fmt.Sprint("m", i))))
		c.subscribe(t, 1, "room.big")
		cs = append(cs, c)
	}
	// Count what each member got, up to the pong of a ping sent now.
	for i, c := range cs {
		c.sendEnv(t, envelope{{"op", "ping"}, {"id", 77}})
		joins := 0
		for r := c.next(t); r.op != "pong"; r = c.next(t) {
			if r.op != "join" {
				t.Fatalf("member %d: %v", i, r)
			}
			joins++
		}
		// Member i joined as the (i+1)th: it saw the joins of those that
		// came after it while the group held at most 3.
		want := max(0, 2-i)
		if joins != want {
			t.Errorf("member %d got %d joins, want %d", i, joins, want)
		}
	}
}

// TestPresenceNodeKilled: a node killed with SIGKILL takes its members
// out of every other node's presence at once (it no longer answers), and
// out of GET /api/nodes within -node-ttl (30 s by default; 3 s here).
func TestPresenceNodeKilled(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build cmd/subsock: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "subsock")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command(goBin, append(args, "github.com/subsock/subsock/cmd/subsock")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg, _, _, _ := backbones[1].start(t) // redis
	const key = "kill-key-0123"
	c := cfg()
	c.Presence = []string{"room.>"}
	c.Security.APIKey = key
	c.NodeTTL = 3 * time.Second
	survivor := startNode(t, c)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := exec.Command(bin, "-addr", addr, "-broker", c.Broker, "-presence", "room.>", "-api-key", key, "-node-ttl", "3s", "-log-level", "warn")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = p.Wait(); close(exited) }()
	t.Cleanup(func() { _ = p.Process.Kill(); <-exited })
	victim := &node{addr: addr}
	eventually(t, "the spawned node serving", func() bool {
		resp, err := http.Get(victim.httpURL("/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	nodesOf := func(n *node) int {
		_, body := apiCall(t, n, "GET", "/api/nodes", key, nil)
		var out struct{ Nodes []gateway.NodeInfo }
		if json.Unmarshal([]byte(body), &out) != nil {
			return -1
		}
		return len(out.Nodes)
	}
	eventually(t, "the nodes knowing each other", func() bool { return nodesOf(survivor) == 2 })

	local := dialWS(t, survivor, codecJSON)
	local.subscribe(t, 1, "room.k")
	remote := dialWS(t, victim, codecJSON)
	remote.subscribe(t, 1, "room.k")
	if got := presenceOf(t, survivor, key, "room.k"); len(got) != 2 {
		t.Fatalf("presence before the kill: %v", got)
	}
	if err := p.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	if got := presenceOf(t, survivor, key, "room.k"); len(got) != 1 {
		t.Fatalf("presence right after the kill: %v, want the survivor's member only", got)
	}
	t.Logf("presence without the killed node's member %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	deadline := time.Now().Add(c.NodeTTL + 5*time.Second)
	for nodesOf(survivor) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the killed node still listed %v after SIGKILL", time.Since(killed))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("the killed node left GET /api/nodes %v after SIGKILL", time.Since(killed).Round(time.Second))
}
