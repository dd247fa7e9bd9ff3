package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/proto"
)

// historyNode starts a node whose hist.> topics keep a stream by rule
// ("hist.>=100,10m").
func historyNode(t testing.TB, addr, rule string) *node {
	t.Helper()
	r, err := gateway.ParseHistoryRule(rule)
	if err != nil {
		t.Fatal(err)
	}
	return startNode(t, addr, gateway.Config{History: []gateway.HistoryRule{r}})
}

// cutter is an HTTPClient whose connections the test can drop from the
// client's side, as a network failure would.
type cutter struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (ct *cutter) client() *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, addr)
			if err == nil {
				ct.mu.Lock()
				ct.conns = append(ct.conns, nc)
				ct.mu.Unlock()
			}
			return nc, err
		},
	}}
}

// cut closes every connection made so far; it returns how many.
func (ct *cutter) cut() int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	n := len(ct.conns)
	for _, nc := range ct.conns {
		_ = nc.Close()
	}
	ct.conns = nil
	return n
}

// expectOffsets reads in until it has seen offsets from..to, each once,
// in order, each carrying its offset as payload N.
func expectOffsets(t testing.TB, in inbox, from, to uint64) {
	t.Helper()
	for want := from; want <= to; want++ {
		m, p := in.next(t)
		if m.Offset != want || uint64(p.N) != want {
			t.Fatalf("got offset %d carrying %d, want offset %d", m.Offset, p.N, want)
		}
	}
}

func TestHistoryLastAndOffsets(t *testing.T) {
	n := historyNode(t, "", "hist.>=100,10m")
	for i := 1; i <= 5; i++ {
		n.publish(t, "hist.last", payload{N: i})
	}
	c := openConn(t, n.url(), Options{})
	in := newInbox()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.SubscribeWith(ctx, "hist.last", in.handler, SubscribeOptions{Last: 3}); err != nil {
		t.Fatal(err)
	}
	expectOffsets(t, in, 3, 5)
	// The ack came after the replay, and the stream is live upstream by
	// then: a publish now is delivered without probing the route.
	n.publish(t, "hist.last", payload{N: 6})
	expectOffsets(t, in, 6, 6)

	plain := newInbox()
	mustSubscribe(t, c, "plain", plain.handler)
	waitRoute(t, viaHTTP(t, n, "plain"), plain, "plain")
	n.publish(t, "plain", payload{N: 1})
	if m, _ := plain.next(t); m.Offset != 0 {
		t.Fatalf("a topic without history delivered offset %d", m.Offset)
	}
}

// TestHistoryRecoversAfterCuts drops the connection from the client's
// side while a publisher runs: every offset arrives once, in order, and
// each reconnection reports a full recovery.
func TestHistoryRecoversAfterCuts(t *testing.T) {
	n := historyNode(t, "", "hist.>=1000,10m")
	var ct cutter
	ready := make(chan struct{}, 16)
	recs := make(chan Recovery, 64)
	c := openConn(t, n.url(), Options{
		HTTPClient: ct.client(),
		Backoff:    Backoff{Min: time.Millisecond, Max: 20 * time.Millisecond},
		OnConnect:  func() { notify(ready, struct{}{}) },
		OnRecover:  func(r Recovery) { recs <- r },
	})
	await(t, ready, "the first connection")
	in := newInbox()
	mustSubscribe(t, c, "hist.cut", in.handler)

	const total, cuts = 400, 5
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 1; i <= total; i++ {
			n.publish(t, "hist.cut", payload{N: i})
			time.Sleep(time.Millisecond) // a pace, so that cuts land mid-stream
		}
	}()
	for want := uint64(1); want <= total; want++ {
		if want%(total/(cuts+1)) == 0 && want/(total/(cuts+1)) <= cuts {
			if ct.cut() != 1 {
				t.Fatal("no connection to cut")
			}
			await(t, ready, "the reconnection")
		}
		expectOffsets(t, in, want, want)
	}
	<-pubDone
	for range cuts {
		r := await(t, recs, "a recovery")
		if r.Topic != "hist.cut" || !r.Recovered || r.Epoch == "" {
			t.Fatalf("recovery %+v, want hist.cut recovered", r)
		}
	}
	if st := c.Stats(); st.Connects != cuts+1 || st.Dropped != 0 {
		t.Fatalf("stats %+v, want %d connects and nothing dropped", st, cuts+1)
	}
}

// TestHistoryRecoversOnAnotherNode: two nodes share one bus, so one
// stream; the subscriber's node drains (1001) and it resumes on the other.
func TestHistoryRecoversOnAnotherNode(t *testing.T) {
	r, err := gateway.ParseHistoryRule("hist.>=100,10m")
	if err != nil {
		t.Fatal(err)
	}
	bus := broker.NewMemoryBus()
	cfg := gateway.Config{
		History:    []gateway.HistoryRule{r},
		OpenBroker: func(h broker.Handler) (broker.Broker, error) { return bus.Attach(h), nil },
	}
	first, second := startNode(t, "", cfg), startNode(t, "", cfg)
	var target atomic.Pointer[node]
	target.Store(first)
	d := &net.Dialer{}
	ready := make(chan struct{}, 4)
	recs := make(chan Recovery, 4)
	c := openConn(t, first.url(), Options{
		HTTPClient: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, target.Load().addr)
			},
		}},
		Backoff:   Backoff{Min: time.Millisecond, Max: 20 * time.Millisecond},
		OnConnect: func() { notify(ready, struct{}{}) },
		OnRecover: func(r Recovery) { recs <- r },
	})
	await(t, ready, "the first connection")
	in := newInbox()
	mustSubscribe(t, c, "hist.move", in.handler)
	for i := 1; i <= 3; i++ {
		second.publish(t, "hist.move", payload{N: i})
	}
	expectOffsets(t, in, 1, 3)
	target.Store(second)
	first.stop()
	for i := 4; i <= 6; i++ {
		second.publish(t, "hist.move", payload{N: i}) // while the subscriber moves
	}
	await(t, ready, "the reconnection")
	second.publish(t, "hist.move", payload{N: 7})
	expectOffsets(t, in, 4, 7)
	if r := await(t, recs, "the recovery"); !r.Recovered || r.Offset < 3 {
		t.Fatalf("recovery %+v, want recovered from 3", r)
	}
}

// TestHistoryNotRecoveredAfterRestart: a memory node that restarts loses
// its streams; the Conn says so and goes on from the new epoch's offsets.
func TestHistoryNotRecoveredAfterRestart(t *testing.T) {
	n := historyNode(t, "", "hist.>=100,10m")
	ready := make(chan struct{}, 4)
	recs := make(chan Recovery, 4)
	c := openConn(t, n.url(), Options{
		Backoff:   Backoff{Min: time.Millisecond, Max: 20 * time.Millisecond},
		OnConnect: func() { notify(ready, struct{}{}) },
		OnRecover: func(r Recovery) { recs <- r },
	})
	await(t, ready, "the first connection")
	in := newInbox()
	mustSubscribe(t, c, "hist.restart", in.handler)
	for i := 1; i <= 3; i++ {
		n.publish(t, "hist.restart", payload{N: i})
	}
	expectOffsets(t, in, 1, 3)
	n.stop()
	n2 := historyNode(t, n.addr, "hist.>=100,10m")
	await(t, ready, "the reconnection")
	if r := await(t, recs, "the recovery"); r.Recovered || r.Offset != 0 || r.Epoch == "" {
		t.Fatalf("recovery %+v, want not recovered, at offset 0 of a new epoch", r)
	}
	// Offset 1 again, in the new epoch: not taken for a duplicate.
	n2.publish(t, "hist.restart", payload{N: 1})
	expectOffsets(t, in, 1, 1)
}

// TestHistoryEpochOnMessage: a stream that expires starts again at a new
// epoch; the first message after it tells the Conn, which reports it.
func TestHistoryEpochOnMessage(t *testing.T) {
	n := historyNode(t, "", "hist.>=100,100ms")
	recs := make(chan Recovery, 4)
	c := openConn(t, n.url(), Options{OnRecover: func(r Recovery) { recs <- r }})
	in := newInbox()
	mustSubscribe(t, c, "hist.exp", in.handler)
	n.publish(t, "hist.exp", payload{N: 1})
	expectOffsets(t, in, 1, 1)
	first := historyEpoch(t, n, "hist.exp")
	// Reading an expired stream starts it again: wait for that.
	deadline := time.Now().Add(10 * time.Second)
	for historyEpoch(t, n, "hist.exp") == first {
		if time.Now().After(deadline) {
			t.Fatal("the stream did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.publish(t, "hist.exp", payload{N: 1})
	expectOffsets(t, in, 1, 1)
	if r := await(t, recs, "the report"); r.Recovered || r.Offset != 1 || r.Epoch == first {
		t.Fatalf("recovery %+v, want not recovered at offset 1 of a new epoch (old %q)", r, first)
	}
}

func historyEpoch(t testing.TB, n *node, topic string) string {
	t.Helper()
	resp, err := http.Get("http://" + n.addr + "/history?limit=0&topic=" + topic)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct{ Epoch string }
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || a.Epoch == "" {
		t.Fatalf("GET /history: %d %v %+v", resp.StatusCode, err, a)
	}
	return a.Epoch
}

// TestHistoryRecoversFullBuffer: messages the All policy drops for a full
// buffer come back through a recovery on the same connection, once the
// handler has caught up.
func TestHistoryRecoversFullBuffer(t *testing.T) {
	n := historyNode(t, "", "hist.>=1000,10m")
	full := make(chan error, 1)
	recs := make(chan Recovery, 64)
	c := openConn(t, n.url(), Options{
		Buffer:    4,
		OnError:   func(err error) { notify(full, err) },
		OnRecover: func(r Recovery) { recs <- r },
	})
	gate := make(chan struct{})
	in := newInbox()
	mustSubscribe(t, c, "hist.full", func(m Message) {
		if m.Offset == 1 {
			<-gate
		}
		in.handler(m)
	})
	const total = 200
	for i := 1; i <= total; i++ {
		n.publish(t, "hist.full", payload{N: i})
	}
	if err := await(t, full, "a drop"); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("OnError got %v, want ErrBufferFull", err)
	}
	close(gate)
	expectOffsets(t, in, 1, total)
	if r := await(t, recs, "a recovery"); !r.Recovered {
		t.Fatalf("recovery %+v", r)
	}
	if st := c.Stats(); st.Connects != 1 || st.Dropped == 0 {
		t.Fatalf("stats %+v, want one connection and drops", st)
	}
}

// TestHistoryDuplicatesAndGapOnTheWire runs against a scripted server: a
// duplicate is dropped, and a gap is recovered on the same connection by
// an unsub and a sub with since, whose replay fills it.
func TestHistoryDuplicatesAndGapOnTheWire(t *testing.T) {
	reqs := make(chan proto.Request, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{proto.SubprotocolJSON}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := context.Background()
		send := func(b []byte) { _ = ws.Write(ctx, websocket.MessageText, b) }
		var top uint64 // the last offset sent
		msg := func(off uint64) {
			send(proto.JSON.AppendStreamMessage(nil, "h", off, "", fmt.Appendf(nil, `{"n":%d}`, off)))
			top = max(top, off)
		}
		ack := func(id uint64, asked, recovered bool) {
			send(proto.JSON.AppendAckPositions(nil, id, []proto.TopicPosition{{Topic: "h", Offset: top, Epoch: "e1", Asked: asked, Recovered: recovered}}))
		}
		subs := 0
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				return
			}
			var req proto.Request
			if proto.JSON.DecodeRequest(b, &req) != nil || req.Op == proto.OpPing {
				continue
			}
			reqs <- req
			switch {
			case req.Op == proto.OpSub && req.Since == nil:
				// Subscribe's sub, and the supervisor's resubscription
				// of the first connection: held already, as a node
				// answers it.
				if subs++; subs > 1 {
					ack(req.ID, false, false)
					continue
				}
				ack(req.ID, false, false)
				for _, off := range []uint64{1, 2, 2, 3, 5, 6} {
					msg(off)
				}
			case req.Op == proto.OpSub:
				for _, off := range []uint64{4, 5, 6} {
					msg(off)
				}
				ack(req.ID, true, true)
				msg(7)
			}
		}
	}))
	t.Cleanup(srv.Close)
	recs := make(chan Recovery, 4)
	c := openConn(t, wsURL(srv), Options{PingInterval: -1, OnRecover: func(r Recovery) { recs <- r }})
	in := newInbox()
	mustSubscribe(t, c, "h", in.handler)
	expectOffsets(t, in, 1, 7)
	if r := await(t, recs, "the recovery"); r != (Recovery{Topic: "h", Recovered: true, Offset: 6, Epoch: "e1"}) {
		t.Fatalf("recovery %+v", r)
	}
	// Plain subs aside, the recovery is an unsub and a sub since 3.
	var ops []string
	for len(ops) < 2 {
		r := await(t, reqs, "a request")
		switch {
		case r.Op == proto.OpSub && r.Since == nil:
		case r.Since != nil:
			ops = append(ops, fmt.Sprintf("sub %v", r.Since))
		default:
			ops = append(ops, r.Op.String()+fmt.Sprint(r.Topics))
		}
	}
	if got := fmt.Sprint(ops); got != "[unsub[h] sub map[h:{3 e1}]]" {
		t.Fatalf("requests %s, want an unsub and a sub since 3", got)
	}
}
