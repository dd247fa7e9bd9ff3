package broker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/subsock/subsock/internal/shrink"
)

// countingBroker passes calls to a real broker and records the
// (un)subscribe calls the Router makes.
type countingBroker struct {
	Broker
	mu    sync.Mutex
	calls []call
	note  chan struct{} // cap 1: a call was made
}

type call struct {
	sub    bool
	topics []string
}

func (c call) String() string {
	op := "unsub"
	if c.sub {
		op = "sub"
	}
	if len(c.topics) > 4 {
		return fmt.Sprintf("%s(%d topics)", op, len(c.topics))
	}
	return fmt.Sprintf("%s%v", op, c.topics)
}

func counting(b Broker) *countingBroker {
	return &countingBroker{Broker: b, note: make(chan struct{}, 1)}
}

func (c *countingBroker) record(sub bool, topics []string) {
	c.mu.Lock()
	c.calls = append(c.calls, call{sub, slices.Clone(topics)})
	c.mu.Unlock()
	select {
	case c.note <- struct{}{}:
	default:
	}
}

func (c *countingBroker) Subscribe(ctx context.Context, topics ...string) error {
	err := c.Broker.Subscribe(ctx, topics...)
	c.record(true, topics)
	return err
}

func (c *countingBroker) Unsubscribe(ctx context.Context, topics ...string) error {
	err := c.Broker.Unsubscribe(ctx, topics...)
	c.record(false, topics)
	return err
}

func (c *countingBroker) snapshot() []call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// topics counts the topics passed in calls of one kind, and the calls.
func (c *countingBroker) count(sub bool) (topics, calls int) {
	for _, cl := range c.snapshot() {
		if cl.sub == sub {
			topics += len(cl.topics)
			calls++
		}
	}
	return topics, calls
}

// waitFor blocks until cond holds over the calls made, woken by each call.
func (c *countingBroker) waitFor(t *testing.T, what string, cond func([]call) bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		calls := c.snapshot()
		if cond(calls) {
			return
		}
		select {
		case <-c.note:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; calls: %v", what, calls)
		}
	}
}

func hasCall(sub bool, topic string) func([]call) bool {
	return func(calls []call) bool {
		for _, c := range calls {
			if c.sub == sub && slices.Contains(c.topics, topic) {
				return true
			}
		}
		return false
	}
}

func newRouter(t *testing.T, b Broker, cfg RouterConfig) *Router {
	t.Helper()
	r := NewRouter(b, cfg)
	t.Cleanup(func() { r.Close() })
	return r
}

// testRouterBatching: 10,000 topics acquired at once from several
// goroutines reach the backbone in a few calls of at most BatchSize, and
// leave it the same way.
func testRouterBatching(t *testing.T, bb *backbone) {
	const n, batch = 10000, 512
	const prefix = "rb."
	in := newInbox()
	cb := counting(bb.open(t, in.handle))
	r := newRouter(t, cb, RouterConfig{Linger: 20 * time.Millisecond, BatchDelay: 20 * time.Millisecond, BatchSize: batch})
	topics := make([]string, n)
	for i := range topics {
		topics[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	const workers = 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				r.Acquire(topics[i])
			}
		})
	}
	wg.Wait()
	cb.waitFor(t, "every topic subscribed", func([]call) bool { got, _ := cb.count(true); return got == n })
	if got := r.Held(); got != n {
		t.Fatalf("Held = %d, want %d", got, n)
	}
	// A full batch goes out at once; the rest waits at most BatchDelay. How
	// many partial batches there are depends on how fast the goroutines run;
	// a call per topic, or per few, would be far above this bound.
	_, subCalls := cb.count(true)
	if limit := 2 * (n/batch + 1); subCalls > limit {
		t.Errorf("%d Subscribe calls for %d topics, want at most %d", subCalls, n, limit)
	}
	for _, c := range cb.snapshot() {
		if len(c.topics) > batch {
			t.Fatalf("a call of %d topics exceeds BatchSize %d", len(c.topics), batch)
		}
	}
	t.Logf("%s: %d topics subscribed in %d calls", bb.name, n, subCalls)
	want := make(map[string]int, n)
	for _, tp := range topics {
		want[tp] = 1
	}
	expectUpstream(t, bb, prefix, want)
	mustPublish(t, cb, topics[n-1], "x")
	in.waitFor(t, "delivery through the router's subscription", func(m []message) bool { return len(m) == 1 })

	for _, tp := range topics {
		r.Release(tp)
	}
	cb.waitFor(t, "every topic unsubscribed", func([]call) bool { got, _ := cb.count(false); return got == n })
	_, unsubCalls := cb.count(false)
	if limit := 2 * (n/batch + 1); unsubCalls > limit {
		t.Errorf("%d Unsubscribe calls for %d topics, want at most %d", unsubCalls, n, limit)
	}
	t.Logf("%s: %d topics unsubscribed in %d calls", bb.name, n, unsubCalls)
	if got := r.Held(); got != 0 {
		t.Fatalf("Held = %d after releasing all, want 0", got)
	}
	expectUpstream(t, bb, prefix, ones())
}

// testRouterDebounce: a release followed by an acquire within Linger
// makes no upstream call at all.
func testRouterDebounce(t *testing.T, bb *backbone) {
	in := newInbox()
	cb := counting(bb.open(t, in.handle))
	r := newRouter(t, cb, RouterConfig{Linger: 100 * time.Millisecond})
	r.Acquire("db.t")
	cb.waitFor(t, "db.t subscribed", hasCall(true, "db.t"))
	r.Release("db.t")
	r.Acquire("db.t") // flaps back within Linger

	// db.u's release lingers behind db.t's: once db.u is unsubscribed,
	// db.t's linger has run out too, and its fate is known.
	r.Acquire("db.u")
	cb.waitFor(t, "db.u subscribed", hasCall(true, "db.u"))
	r.Release("db.u")
	cb.waitFor(t, "db.u unsubscribed", hasCall(false, "db.u"))

	want := []call{{true, []string{"db.t"}}, {true, []string{"db.u"}}, {false, []string{"db.u"}}}
	if got := cb.snapshot(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	if got := r.Held(); got != 1 {
		t.Fatalf("Held = %d, want 1", got)
	}
	expectUpstream(t, bb, "db.", ones("db.t"))
	mustPublish(t, cb, "db.t", "still here")
	in.waitFor(t, "delivery on the debounced topic", func(m []message) bool { return len(m) == 1 })
}

// The cases below need no server: they check the Router's bookkeeping on
// the memory broker, with a BatchDelay so long that only a full batch
// (BatchSize) triggers a call, which makes every call deterministic.
func TestRouterBookkeeping(t *testing.T) {
	const never = time.Hour
	tests := []struct {
		name string
		cfg  RouterConfig
		// run drives the router; it ends once the calls it expects are made.
		run       func(t *testing.T, r *Router, cb *countingBroker)
		wantCalls []call
		wantHeld  int
	}{
		{
			name: "acquired and released before the flush: no call",
			cfg:  RouterConfig{BatchSize: 2, BatchDelay: never},
			run: func(t *testing.T, r *Router, cb *countingBroker) {
				r.Acquire("x")
				r.Release("x")
				r.Acquire("y") // x still counts in the queue: this fills the batch
				cb.waitFor(t, "the batch", hasCall(true, "y"))
			},
			wantCalls: []call{{true, []string{"y"}}},
			wantHeld:  1,
		},
		{
			name: "release overtaking its acquire cancels out",
			cfg:  RouterConfig{BatchSize: 1, BatchDelay: never},
			run: func(t *testing.T, r *Router, cb *countingBroker) {
				r.Release("x")
				r.Acquire("x")
				r.Acquire("y")
				cb.waitFor(t, "y", hasCall(true, "y"))
			},
			wantCalls: []call{{true, []string{"y"}}},
			wantHeld:  1,
		},
		{
			name: "second holder keeps the topic",
			cfg:  RouterConfig{BatchSize: 1, BatchDelay: time.Millisecond, Linger: time.Millisecond},
			run: func(t *testing.T, r *Router, cb *countingBroker) {
				r.Acquire("x")
				r.Acquire("x")
				cb.waitFor(t, "x", hasCall(true, "x"))
				r.Release("x")
				r.Acquire("y")
				cb.waitFor(t, "y", hasCall(true, "y"))
				r.Release("y") // lingers after x's only release would have
				cb.waitFor(t, "y released", hasCall(false, "y"))
			},
			wantCalls: []call{{true, []string{"x"}}, {true, []string{"y"}}, {false, []string{"y"}}},
			wantHeld:  1,
		},
		{
			name: "full batches go out without waiting",
			cfg:  RouterConfig{BatchSize: 3, BatchDelay: never},
			run: func(t *testing.T, r *Router, cb *countingBroker) {
				for _, tp := range []string{"a", "b", "c", "d", "e", "f", "g"} {
					r.Acquire(tp)
				}
				cb.waitFor(t, "two batches", func(c []call) bool { return len(c) == 2 })
			},
			wantCalls: []call{{true, []string{"a", "b", "c"}}, {true, []string{"d", "e", "f"}}},
			wantHeld:  7, // g waits in the queue
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb := counting(NewMemory(func(string, []byte) {}))
			r := newRouter(t, cb, tt.cfg)
			tt.run(t, r, cb)
			if got := cb.snapshot(); fmt.Sprint(got) != fmt.Sprint(tt.wantCalls) {
				t.Fatalf("calls %v, want %v", got, tt.wantCalls)
			}
			if got := r.Held(); got != tt.wantHeld {
				t.Fatalf("Held = %d, want %d", got, tt.wantHeld)
			}
		})
	}
}

func TestRouterReportsErrorsAndBrokerRecovers(t *testing.T) {
	in := newInbox()
	m := NewMemoryBus().Attach(in.handle) // routed: not a lone broadcasting node
	errs := make(chan error, 1)
	r := newRouter(t, m, RouterConfig{BatchSize: 1, OnError: func(err error) { errs <- err }})
	m.Bus().Stop()
	r.Acquire("x")
	if err := <-errs; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("OnError got %v, want ErrUnavailable", err)
	}
	if st := r.Stats(); st.Errors != 1 || st.Subscribes != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	// The broker kept the interest: no retry by the Router is needed.
	m.Bus().Start()
	mustPublish(t, m, "x", "back")
	if !in.has("x", "back") {
		t.Fatal("not delivered after the bus came back")
	}
}

func TestRouterClose(t *testing.T) {
	cb := counting(NewMemory(func(string, []byte) {}))
	r := NewRouter(cb, RouterConfig{BatchSize: 1})
	r.Acquire("x")
	cb.waitFor(t, "x", hasCall(true, "x"))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Acquire("y")
	r.Release("x")
	if got := cb.snapshot(); len(got) != 1 {
		t.Fatalf("calls after Close: %v", got)
	}
}

// quietBroker accepts every (un)subscription and does nothing, so that a
// test measures the Router's memory alone.
type quietBroker struct{ Broker }

func (quietBroker) Subscribe(context.Context, ...string) error   { return nil }
func (quietBroker) Unsubscribe(context.Context, ...string) error { return nil }

// After a storm of distinct topics comes and goes, the Router's route map
// and queues give their memory back.
func TestRouterShrinksAfterStorm(t *testing.T) {
	const n = 100_000
	topics := stormTopics(n)
	r := newRouter(t, quietBroker{}, RouterConfig{Linger: 10 * time.Millisecond})
	base := liveHeap()
	for _, tp := range topics {
		r.Acquire(tp)
	}
	ctx := ctxFor(t)
	for _, tp := range topics {
		if err := r.Ready(ctx, tp); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Held(); got != n {
		t.Fatalf("Held = %d, want %d", got, n)
	}
	peak := liveHeap()
	for _, tp := range topics {
		r.Release(tp)
	}
	eventually(t, "every topic released", func() error {
		if got := r.Held(); got != 0 {
			return fmt.Errorf("Held = %d", got)
		}
		return nil
	})
	after := liveHeap()
	runtime.KeepAlive(topics) // the names are the caller's, not the Router's
	checkReturned(t, base, peak, after)
	r.mu.Lock()
	routes, pending, lingering := len(r.routes), cap(r.pending), cap(r.lingering)
	r.mu.Unlock()
	if routes != 0 || pending > shrink.Floor || lingering > shrink.Floor {
		t.Fatalf("%d routes, pending cap %d, lingering cap %d; want 0 and at most %d",
			routes, pending, lingering, shrink.Floor)
	}
}
