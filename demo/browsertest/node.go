package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/subsock/subsock/gateway"
)

// Node is a real subsock node serving on a loopback address for one test; it can be
// restarted on the same address, as an operator's restart would.
type Node struct {
	t      testing.TB
	cfg    gateway.Config
	mounts map[string]http.Handler
	addr   string
	g      *gateway.Gateway
	served chan error // Serve's result; the Serve goroutine's stop signal
	http   *http.Client
}

// StartNode builds a node from cfg (its Logger defaults to the test log at warn level),
// mounts each handler with gateway.Handle, serves it on 127.0.0.1 at a free port, and shuts
// it down when the test ends.
func StartNode(t testing.TB, cfg gateway.Config, mounts map[string]http.Handler) *Node {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 3 * time.Second
	}
	n := &Node{
		t:      t,
		cfg:    cfg,
		mounts: mounts,
		addr:   "127.0.0.1:0",
		// Keep-alive would reuse a connection a restart has closed; POST is not retried.
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	n.start()
	t.Cleanup(n.stop)
	return n
}

// Addr is the node's host:port; it stays the same across Restart.
func (n *Node) Addr() string { return n.addr }

// URL is the node's base URL, http://host:port.
func (n *Node) URL() string { return "http://" + n.addr }

// Gateway is the node currently serving.
func (n *Node) Gateway() *gateway.Gateway { return n.g }

// Restart shuts the node down gracefully (WebSockets get 1001) and starts a new one with the
// same configuration on the same address.
func (n *Node) Restart() {
	n.t.Helper()
	n.stop()
	n.start()
}

// Stop shuts the node down gracefully (WebSockets get 1001); Start brings it back on the
// same address. The node is down in between: its address refuses connections.
func (n *Node) Stop() {
	n.t.Helper()
	n.stop()
}

// Start starts a stopped node again, with the same configuration on the same address.
// Starting a running node does nothing.
func (n *Node) Start() {
	n.t.Helper()
	if n.g == nil {
		n.start()
	}
}

func (n *Node) start() {
	n.t.Helper()
	g, err := gateway.New(n.cfg)
	if err != nil {
		n.t.Fatalf("gateway.New: %v", err)
	}
	for pattern, h := range n.mounts {
		g.Handle(pattern, h)
	}
	ln, err := listen(n.addr)
	if err != nil {
		_ = g.Shutdown(context.Background())
		n.t.Fatalf("listen %s: %v", n.addr, err)
	}
	n.addr = ln.Addr().String()
	n.g = g
	n.served = make(chan error, 1)
	go func(served chan<- error) { served <- g.Serve(ln) }(n.served)
}

// listen binds addr. After a restart the old listener's port can stay busy for a moment
// while the poller lets go of it; no event announces that, so retry briefly.
func listen(addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *Node) stop() {
	n.t.Helper()
	if n.g == nil {
		return
	}
	err := n.g.Shutdown(context.Background())
	if err != nil && !errors.Is(err, gateway.ErrDrainTimeout) {
		n.t.Errorf("shutdown: %v", err)
	}
	if err := <-n.served; err != nil && !errors.Is(err, gateway.ErrShuttingDown) {
		n.t.Errorf("serve: %v", err)
	}
	n.g = nil
}

// Publish POSTs body to /publish?topic=topic as JSON and returns the subscriber count the
// node reports; anything but 200 fails the test.
func (n *Node) Publish(topic, body string) int {
	n.t.Helper()
	resp, err := n.http.Post(n.URL()+"/publish?topic="+topic, "application/json", strings.NewReader(body))
	if err != nil {
		n.t.Fatalf("publish to %s: %v", topic, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		n.t.Fatalf("publish to %s: %s: %s", topic, resp.Status, bytes.TrimSpace(b))
	}
	var r struct{ Subscribers int }
	if err := json.Unmarshal(b, &r); err != nil {
		n.t.Fatalf("publish to %s: reply %q: %v", topic, b, err)
	}
	return r.Subscribers
}
