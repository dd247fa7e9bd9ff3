package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
)

// backbone is one broker implementation as the cluster test sees it.
type backbone struct {
	name string
	// start brings the backbone up and returns how to configure a node,
	// how many nodes hold interest in a topic, and the outage controls.
	start func(t *testing.T) (cfg func() gateway.Config, interest func(topic string) int, stop, restart func())
}

var backbones = []backbone{
	{"memory", func(t *testing.T) (func() gateway.Config, func(string) int, func(), func()) {
		bus := broker.NewMemoryBus()
		cfg := func() gateway.Config {
			return gateway.Config{OpenBroker: func(h broker.Handler) (broker.Broker, error) { return bus.Attach(h), nil }}
		}
		return cfg, bus.Subscribers, bus.Stop, bus.Start
	}},
	{"redis", func(t *testing.T) (func() gateway.Config, func(string) int, func(), func()) {
		srv := testserver.Redis(t)
		cfg := func() gateway.Config { return gateway.Config{Broker: srv.URL} }
		interest := func(topic string) int { return redisCount(t, srv.Addr, "PUBSUB", "NUMSUB", topic) }
		return cfg, interest, srv.Stop, srv.Start
	}},
	{"redis-cluster", func(t *testing.T) (func() gateway.Config, func(string) int, func(), func()) {
		cl := testserver.RedisCluster(t)
		cfg := func() gateway.Config { return gateway.Config{Broker: cl.URL} }
		interest := func(topic string) int {
			n := 0
			for _, a := range cl.Addrs {
				n += redisCount(t, a, "PUBSUB", "SHARDNUMSUB", topic)
			}
			return n
		}
		return cfg, interest, cl.Stop, cl.Start
	}},
	{"nats", func(t *testing.T) (func() gateway.Config, func(string) int, func(), func()) {
		srv := testserver.NATS(t)
		cfg := func() gateway.Config { return gateway.Config{Broker: srv.URL} }
		interest := func(topic string) int { return natsInterest(t, srv.MonitorAddr, topic) }
		return cfg, interest, srv.Stop, srv.Start
	}},
}

// redisCount runs a PUBSUB NUMSUB-style command and returns the count
// reported for its last argument.
func redisCount(t *testing.T, addr string, args ...string) int {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).Output()
	if err != nil {
		return -1 // down; callers wait for a value
	}
	lines := strings.Fields(string(out))
	if len(lines) < 2 {
		return -1
	}
	n, err := strconv.Atoi(lines[len(lines)-1])
	if err != nil {
		return -1
	}
	return n
}

// natsInterest counts connections subscribed to topic, from monitoring.
func natsInterest(t *testing.T, monitor, topic string) int {
	t.Helper()
	resp, err := http.Get("http://" + monitor + "/connz?subs=1")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var connz struct {
		Connections []struct {
			Subs []string `json:"subscriptions_list"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&connz); err != nil {
		return -1
	}
	n := 0
	for _, c := range connz.Connections {
		for _, s := range c.Subs {
			if s == topic {
				n++
				break
			}
		}
	}
	return n
}

// TestClusterBackbones runs the scale-out contract against every broker:
// three nodes, delivery exactly once across nodes, interest that follows
// local subscribers, and an outage the nodes recover from by themselves.
func TestClusterBackbones(t *testing.T) {
	for _, bb := range backbones {
		t.Run(bb.name, func(t *testing.T) { testCluster(t, bb) })
	}
}

func testCluster(t *testing.T, bb backbone) {
	cfgFor, interest, stop, restart := bb.start(t)
	var nodes []*node
	for i := 0; i < 3; i++ {
		cfg := cfgFor()
		cfg.Router = broker.RouterConfig{Linger: 100 * time.Millisecond, BatchDelay: time.Millisecond}
		nodes = append(nodes, startNode(t, cfg))
	}
	hc := newHTTPClient(t)
	const topic = "cluster.t"

	// One subscriber per node, the last one in MessagePack.
	codecs := []wireCodec{codecJSON, codecJSON, codecMsgpack}
	var subs []*wsClient
	for i, n := range nodes {
		c := dialWS(t, n, codecs[i])
		c.expectAck(t, 1, envelope{{"op", "sub"}, {"id", uint64(1)}, {"topics", []string{topic}}})
		subs = append(subs, c)
	}
	eventually(t, "interest from 3 nodes on the backbone", func() bool { return interest(topic) == 3 })

	// 20 publishes on node 0 reach every node exactly once, in order; the
	// fence published last proves nothing else is on its way.
	const n = 20
	for i := 0; i < n; i++ {
		publishOK(t, hc, nodes[0], topic, "application/json", []byte(fmt.Sprintf(`{"seq":%d}`, i)))
	}
	publishOK(t, hc, nodes[0], topic, "application/json", []byte(`{"fence":true}`))
	for i, c := range subs {
		for want := 0; ; want++ {
			r := c.next(t)
			if r.op != "msg" || r.topic != topic {
				t.Fatalf("node %d: unexpected %v", i, r)
			}
			m, _ := r.data.(map[string]any)
			if m["fence"] == true {
				if want != n {
					t.Fatalf("node %d: %d messages before the fence, want %d", i, want, n)
				}
				break
			}
			if fmt.Sprint(m["seq"]) != strconv.Itoa(want) {
				t.Fatalf("node %d: message %d is %v (duplicate, loss or reorder)", i, want, r)
			}
		}
	}

	// A WebSocket publish on node 1 reaches the others too.
	// The publisher subscribes too: its copy may come before or after its ack.
	subs[1].sendEnv(t, envelope{{"op", "pub"}, {"id", uint64(2)}, {"topic", topic}, {"data", map[string]any{"from": "ws"}}})
	for i, c := range subs {
		acked, got := i != 1, false
		for !acked || !got {
			switch r := c.next(t); {
			case r.op == "ack" && r.id == 2 && !acked:
				acked = true
			case r.op == "msg" && fmt.Sprint(r.data) == "map[from:ws]" && !got:
				got = true
			default:
				t.Fatalf("node %d: got %v, want the WebSocket publish once (and its ack)", i, r)
			}
		}
	}

	// Interest follows local subscribers: node 2's last subscriber leaves.
	subs[2].close()
	eventually(t, "interest dropping to 2 nodes", func() bool { return interest(topic) == 2 })
	eventually(t, "node 2 releasing the topic", func() bool { return nodes[2].g.Stats().BrokerTopics == 0 })

	// Outage: publishing fails loudly, health degrades, and after the
	// restart delivery resumes with no action from anyone.
	stop()
	eventually(t, "publish failing with 503 while the backbone is down", func() bool {
		status, _ := publish(t, hc, nodes[0], topic, "application/json", []byte(`{"down":true}`))
		return status == http.StatusServiceUnavailable
	})
	eventually(t, "healthz degraded", func() bool {
		status, body := get(t, hc, nodes[0], "/healthz")
		return status == http.StatusServiceUnavailable && strings.Contains(body, "degraded")
	})
	// A WebSocket publisher gets an err, not silence.
	subs[0].sendEnv(t, envelope{{"op", "pub"}, {"id", uint64(3)}, {"topic", topic}, {"data", 1}})
	if r := subs[0].next(t); r.op != "err" || r.code != "unavailable" {
		t.Fatalf("publish while down: %v, want err unavailable", r)
	}
	restart()
	eventually(t, "healthz ok after the restart", func() bool {
		status, _ := get(t, hc, nodes[0], "/healthz")
		return status == http.StatusOK
	})
	eventually(t, "interest restored on the backbone", func() bool { return interest(topic) == 2 })
	publishOK(t, hc, nodes[0], topic, "application/json", []byte(`{"after":"restart"}`))
	for i, c := range subs[:2] {
		for {
			r := c.next(t)
			if r.op == "msg" && fmt.Sprint(r.data) == "map[after:restart]" {
				break
			}
			if r.op != "msg" {
				t.Fatalf("node %d: unexpected %v while waiting for the post-restart message", i, r)
			}
		}
	}
	if bb.name != "memory" {
		if got := scrape(t, hc, nodes[0], "subsock_broker_reconnects_total"); got < 1 {
			t.Fatalf("subsock_broker_reconnects_total = %v after an outage, want >= 1", got)
		}
	}
}
