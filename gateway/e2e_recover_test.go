package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subsock/subsock/client"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
	"github.com/subsock/subsock/poller"
)

// The recovery contract, end to end: a Go client subscribed to a history
// topic at 1,000 msg/s, whose connection is cut over and over, ends with
// every offset 1..N exactly once and in order, and each reconnection
// reports a full recovery.

// cutKind is one way a subscriber loses its connection.
type cutKind int

const (
	cutAbrupt cutKind = iota // the client's TCP connection closed under it
	cutStall                 // the client stops reading; the node cuts it with 1013
	cutDrain                 // its node shuts down (1001); it reconnects to another
)

func (k cutKind) String() string {
	return [...]string{"abrupt", "stall", "drain"}[k]
}

// recoverBackbone is one backbone as the recovery test sees it: a node
// config on it, and whether a second node shares its streams.
type recoverBackbone struct {
	name  string
	start func(t *testing.T) (cfg func() gateway.Config, shared bool)
}

var recoverBackbones = []recoverBackbone{
	{"memory", func(t *testing.T) (func() gateway.Config, bool) {
		return func() gateway.Config { return gateway.Config{} }, false
	}},
	{"redis", func(t *testing.T) (func() gateway.Config, bool) {
		srv := testserver.Redis(t)
		return func() gateway.Config { return gateway.Config{Broker: srv.URL} }, true
	}},
	{"redis-cluster", func(t *testing.T) (func() gateway.Config, bool) {
		cl := testserver.RedisCluster(t)
		return func() gateway.Config { return gateway.Config{Broker: cl.URL} }, true
	}},
}

func TestRecoverUnderCuts(t *testing.T) {
	for _, bb := range recoverBackbones {
		t.Run(bb.name, func(t *testing.T) { testRecoverUnderCuts(t, bb) })
	}
}

const (
	recoverMin   = 8000 // publications at least; more if the cuts take longer
	recoverRate  = 1000 // per second
	recoverCuts  = 20
	recoverEvery = 380 // offsets delivered between cuts
	recoverPad   = 400 // bytes of padding per message, so a stalled reader overflows soon
	recoverLimit = 60 * time.Second
)

// recoverNode is a node holding recover.> topics' history, with a small
// outbound queue so that a reader that stops is cut quickly.
func recoverNode(t *testing.T, cfg gateway.Config) *node {
	t.Helper()
	r, err := gateway.ParseHistoryRule(fmt.Sprintf("recover.>=%d,10m", 20000))
	if err != nil {
		t.Fatal(err)
	}
	cfg.History = []gateway.HistoryRule{r}
	cfg.Poller = poller.Config{MaxPending: 256 << 10}
	cfg.DrainTimeout = 5 * time.Second
	return startNode(t, cfg)
}

func testRecoverUnderCuts(t *testing.T, bb recoverBackbone) {
	cfgFor, shared := bb.start(t)
	kinds := []cutKind{cutAbrupt, cutStall}
	var pubNode *node
	sub := recoverNode(t, cfgFor())
	spare := sub
	if shared {
		// The publisher's node is never cut; the subscriber moves
		// between two others as each is drained.
		kinds = append(kinds, cutDrain)
		pubNode = recoverNode(t, cfgFor())
		spare = recoverNode(t, cfgFor())
	} else {
		pubNode = sub
	}
	topic := "recover." + strings.ReplaceAll(bb.name, "-", "_")
	deadline := time.Now().Add(recoverLimit)
	hc := newHTTPClient(t)

	// The subscriber reaches whichever node target names, through
	// connections the test can stall or close.
	var target atomic.Pointer[node]
	target.Store(sub)
	var taps tapSet
	ready := make(chan struct{}, 64)
	var (
		mu          sync.Mutex
		recoveries  []client.Recovery
		disconnects []string
	)
	opts := client.Options{
		HTTPClient: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return taps.dial(ctx, network, target.Load().addr)
			},
		}},
		Backoff: client.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		// Room for a whole replay (the stall is the socket's, not the
		// handler's): a replay the buffer cannot hold is completed by
		// further recoveries, which client tests cover.
		Buffer:    1 << 14,
		OnConnect: func() { ready <- struct{}{} },
		OnDisconnect: func(err error) {
			mu.Lock()
			disconnects = append(disconnects, err.Error())
			mu.Unlock()
		},
		OnRecover: func(r client.Recovery) {
			mu.Lock()
			recoveries = append(recoveries, r)
			mu.Unlock()
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := client.Dial(ctx, sub.wsURL(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	awaitBefore(t, ready, deadline, "the first connection")

	// The handler checks each delivery against the next offset due.
	var (
		delivered atomic.Uint64 // the last offset delivered in order
		bad       atomic.Pointer[string]
	)
	handler := func(m client.Message) {
		var p struct{ N uint64 }
		want := delivered.Load() + 1
		switch err := m.Decode(&p); {
		case err != nil:
			fail(&bad, fmt.Sprintf("offset %d: %s: %v", m.Offset, m.Data, err))
		case m.Offset != want || p.N != want:
			fail(&bad, fmt.Sprintf("got offset %d carrying %d, want %d", m.Offset, p.N, want))
		default:
			delivered.Store(want)
		}
	}
	if err := c.Subscribe(ctx, topic, handler); err != nil {
		t.Fatal(err)
	}

	// The publisher runs until the cuts are over, so that a stalled
	// reader always has traffic to fall behind on.
	var (
		pubFailure atomic.Pointer[string]
		published  atomic.Uint64
	)
	pubDone, stopPub := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pubDone)
		if err := publishPaced(pubNode, topic, &published, stopPub); err != nil {
			fail(&pubFailure, err.Error())
		}
	}()
	var stopOnce sync.Once
	stopPublisher := func() uint64 {
		stopOnce.Do(func() { close(stopPub) })
		<-pubDone
		return published.Load()
	}
	t.Cleanup(func() { stopPublisher() })

	state := func() string {
		mu.Lock()
		defer mu.Unlock()
		last := disconnects
		if len(last) > 5 {
			last = last[len(last)-5:]
		}
		n := target.Load()
		hist := ""
		for _, m := range []string{"history_recovered_total", "history_replayed_total", "history_held_overflow_closes_total"} {
			hist += fmt.Sprintf(" %s %v;", m, scrape(t, hc, n, "subsock_"+m))
		}
		return fmt.Sprintf("delivered up to %d; its node: slow closes %d;%s %d recoveries %v; %d disconnects, the last %q",
			delivered.Load(), n.g.Stats().SlowCloses, hist, len(recoveries), recoveries, len(disconnects), last)
	}

	// progress waits for cond, polling: the handler's figures are the
	// signal, and a failure or the deadline ends the wait.
	progress := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if p := bad.Load(); p != nil {
				t.Fatalf("while waiting for %s: %s", what, *p)
			}
			if p := pubFailure.Load(); p != nil {
				t.Fatalf("while waiting for %s: publisher: %s", what, *p)
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %s", what, state())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	disconnected := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(disconnects)
	}
	// reconnected waits for the connection after a cut to be ready (every
	// subscription renewed). A node that cuts each new connection before
	// its resubscription is answered fails the test at once.
	reconnected := func(what string, before int) {
		t.Helper()
		for {
			select {
			case <-ready:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if n := disconnected() - before; n > 10 {
				t.Fatalf("%s: %d connections in a row ended before their resubscription was answered: %s", what, n, state())
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %s", what, state())
			}
		}
	}

	counts := map[cutKind]int{}
	for i := range recoverCuts {
		kind := kinds[i%len(kinds)]
		at := uint64(i+1) * recoverEvery
		progress(fmt.Sprintf("offset %d before cut %d", at, i+1), func() bool { return delivered.Load() >= at })
		before := disconnected()
		switch kind {
		case cutAbrupt:
			taps.closeAll()
		case cutStall:
			n := target.Load()
			slow := n.g.Stats().SlowCloses
			taps.stall()
			progress(fmt.Sprintf("the node to cut the stalled reader (cut %d)", i+1), func() bool { return n.g.Stats().SlowCloses > slow })
			taps.resume()
		case cutDrain:
			old := target.Load()
			target.Store(spare)
			if err := old.shutdown(); err != nil {
				t.Fatalf("drain: %v", err)
			}
			spare = recoverNode(t, cfgFor())
		}
		counts[kind]++
		reconnected(fmt.Sprintf("the reconnection after cut %d (%v)", i+1, kind), before)
	}
	last := published.Load()
	progress("the publications after the cuts", func() bool { return published.Load() >= max(recoverMin, last+200) })
	total := stopPublisher()
	progress(fmt.Sprintf("offset %d", total), func() bool { return delivered.Load() >= total })

	st := c.Stats()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d offsets in order; cuts %v; %d connections, %d recoveries, %d dropped by the client buffer",
		delivered.Load(), counts, st.Connects, len(recoveries), st.Dropped)
	if st.Connects != recoverCuts+1 {
		t.Errorf("%d connections, want %d (one per cut); disconnects %q", st.Connects, recoverCuts+1, disconnects)
	}
	if st.Dropped != 0 {
		t.Errorf("the client buffer dropped %d messages", st.Dropped)
	}
	if len(recoveries) != recoverCuts {
		t.Errorf("%d recoveries reported, want %d: %v", len(recoveries), recoverCuts, recoveries)
	}
	for _, r := range recoveries {
		if !r.Recovered || r.Topic != topic {
			t.Errorf("recovery %+v, want %s recovered", r, topic)
		}
	}
}

// fail keeps the first failure the handler found.
func fail(p *atomic.Pointer[string], msg string) { p.CompareAndSwap(nil, &msg) }

func awaitBefore(t *testing.T, ch <-chan struct{}, deadline time.Time, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Until(deadline)):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// publishPaced publishes to topic at recoverRate until stop, one message
// at a time so that offset i carries i, through n's HTTP API; published
// counts them.
func publishPaced(n *node, topic string, published *atomic.Uint64, stop <-chan struct{}) error {
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: waitFor}
	pad := strings.Repeat("x", recoverPad)
	start := time.Now()
	for i := 1; ; i++ {
		wait := time.After(time.Until(start.Add(time.Duration(i) * time.Second / recoverRate)))
		select {
		case <-stop:
			return nil
		case <-wait:
		}
		body, _ := json.Marshal(map[string]any{"n": i, "pad": pad})
		resp, err := hc.Post(n.httpURL("/publish?topic="+topic), "application/json", bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var a struct{ Offset uint64 }
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &a) != nil || a.Offset != uint64(i) {
			return fmt.Errorf("publish %d: %d %s, want offset %d", i, resp.StatusCode, b, i)
		}
		published.Store(uint64(i))
	}
}

// tapSet is the subscriber's TCP connections: the test closes them under
// the client, or stops its reads.
type tapSet struct {
	mu      sync.Mutex
	conns   []*tapConn
	stalled chan struct{} // non-nil while reads are stopped; closed to resume
}

func (ts *tapSet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	// A small receive buffer, so that a reader that stops backs up to
	// the node at once rather than into the kernel.
	_ = nc.(*net.TCPConn).SetReadBuffer(16 << 10)
	tc := &tapConn{Conn: nc, ts: ts, closed: make(chan struct{})}
	ts.mu.Lock()
	ts.conns = append(ts.conns, tc)
	ts.mu.Unlock()
	return tc, nil
}

// closeAll closes every connection from the client's side, abruptly.
func (ts *tapSet) closeAll() {
	ts.mu.Lock()
	conns := ts.conns
	ts.conns = nil
	ts.mu.Unlock()
	for _, tc := range conns {
		_ = tc.Close()
	}
}

// stall stops every read until resume.
func (ts *tapSet) stall() {
	ts.mu.Lock()
	ts.stalled = make(chan struct{})
	ts.mu.Unlock()
}

func (ts *tapSet) resume() {
	ts.mu.Lock()
	close(ts.stalled)
	ts.stalled = nil
	ts.mu.Unlock()
}

type tapConn struct {
	net.Conn
	ts        *tapSet
	closeOnce sync.Once
	closed    chan struct{}
}

func (tc *tapConn) Read(p []byte) (int, error) {
	tc.ts.mu.Lock()
	gate := tc.ts.stalled
	tc.ts.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-tc.closed:
			return 0, net.ErrClosed
		}
	}
	return tc.Conn.Read(p)
}

func (tc *tapConn) Close() error {
	tc.closeOnce.Do(func() { close(tc.closed) })
	return tc.Conn.Close()
}
