package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
)

// node is a real gateway on a loopback port.
type node struct {
	g    *gateway.Gateway
	addr string
	done chan struct{} // Serve returned
	once sync.Once
}

// startNode runs a gateway on addr ("" picks a free port); it is shut
// down when the test ends unless stopped before.
func startNode(t testing.TB, addr string, cfg gateway.Config) *node {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	n := &node{g: g, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(n.done)
		_ = g.Serve(ln)
	}()
	t.Cleanup(n.stop)
	return n
}

func (n *node) url() string { return "ws://" + n.addr + "/ws" }

// stop shuts the node down (1001 to every client) and waits for Serve.
func (n *node) stop() {
	n.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = n.g.Shutdown(ctx)
		<-n.done
	})
}

// publish is a backend publish (POST /publish); it returns how many
// subscribers the node holds for topic.
func (n *node) publish(t testing.TB, topic string, v any) int {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+n.addr+"/publish?topic="+topic, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish %s: %d %s", topic, resp.StatusCode, b)
	}
	var out struct{ Subscribers int }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("publish %s: %s: %v", topic, b, err)
	}
	return out.Subscribers
}

// openConn opens a Conn closed at the end of the test.
func openConn(t testing.TB, url string, opts Options) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// payload is what the tests publish; Probe marks the messages sent to
// find out when a route is ready.
type payload struct {
	N     int    `json:"n" msgpack:"n"`
	Text  string `json:"text,omitempty" msgpack:"text,omitempty"`
	Probe bool   `json:"probe,omitempty" msgpack:"probe,omitempty"`
}

// inbox collects a topic's deliveries, probes included.
type inbox chan Message

func newInbox() inbox { return make(inbox, 4096) }

func (in inbox) handler(m Message) { in <- m }

// next returns the next non-probe payload.
func (in inbox) next(t testing.TB) (Message, payload) {
	t.Helper()
	for {
		m := await(t, (<-chan Message)(in), "a message")
		var p payload
		if err := m.Decode(&p); err != nil {
			t.Fatalf("decode %s: %v", m.Data, err)
		}
		if !p.Probe {
			return m, p
		}
	}
}

// waitRoute publishes probes to topic through pub until one reaches in,
// then a fence probe, and returns once the fence has been delivered, so no
// probe is left in flight or queued. A node acks a sub before its broker
// holds the topic (the router batches upstream subscriptions), so a
// publish right after the ack can miss; the probe is the signal that the
// path is complete. pub must return only after the node has fanned the
// message out (an acked publish, or a backend publish).
func waitRoute(t testing.TB, pub func(v any) error, in inbox, topic string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	probe := func(n int) {
		if err := pub(payload{N: n, Probe: true}); err != nil {
			t.Fatalf("probe %s: %v", topic, err)
		}
	}
	recv := func() (payload, bool) {
		select {
		case m := <-in:
			var p payload
			if err := m.Decode(&p); err != nil || !p.Probe {
				t.Fatalf("expected a probe on %s, got %s (%v)", topic, m.Data, err)
			}
			return p, true
		case <-time.After(5 * time.Millisecond):
			return payload{}, false
		case <-deadline:
			t.Fatalf("no route to %s", topic)
			return payload{}, false
		}
	}
	for i := 0; ; i++ {
		probe(i)
		if _, ok := recv(); ok {
			break
		}
	}
	const fence = -1
	probe(fence)
	for {
		if p, ok := recv(); ok && p.N == fence {
			return
		}
	}
}

// viaConn publishes through c with an ack.
func viaConn(c *Conn, topic string) func(v any) error {
	return func(v any) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.Publish(ctx, topic, v)
	}
}

// viaHTTP publishes through the node's backend API.
func viaHTTP(t testing.TB, n *node, topic string) func(v any) error {
	return func(v any) error {
		n.publish(t, topic, v)
		return nil
	}
}

func mustSubscribe(t testing.TB, c *Conn, topic string, h Handler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Subscribe(ctx, topic, h); err != nil {
		t.Fatalf("subscribe %s: %v", topic, err)
	}
}

func text(i int) string { return fmt.Sprintf("message %d", i) }
