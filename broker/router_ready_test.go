package broker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// Ready returns only once the upstream subscription exists, so a node that
// acknowledges after Ready never misses a message published right after.
func TestRouterReadyWaitsForUpstream(t *testing.T) {
	m := NewMemoryBus().Attach(func(string, []byte) {}) // routed: not a lone broadcasting node
	defer m.Close()
	r := NewRouter(m, RouterConfig{BatchDelay: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, topic := range []string{"a", "b", "c"} {
		r.Acquire(topic)
		if got := m.Bus().Subscribers(topic); got != 0 {
			t.Fatalf("%s subscribed upstream before the batch delay: %d", topic, got)
		}
		if err := r.Ready(ctx, topic); err != nil {
			t.Fatal(err)
		}
		if got := m.Bus().Subscribers(topic); got != 1 {
			t.Fatalf("after Ready %d: %s has %d upstream subscribers, want 1", i, topic, got)
		}
		// Live topics answer at once.
		if err := r.Ready(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	// A topic nobody holds is not waited for.
	if err := r.Ready(ctx, "never"); err != nil {
		t.Fatal(err)
	}
}

func TestRouterReadyReturnsOnClose(t *testing.T) {
	m := NewMemoryBus().Attach(func(string, []byte) {}) // routed: not a lone broadcasting node
	defer m.Close()
	r := NewRouter(m, RouterConfig{BatchDelay: time.Hour, BatchSize: 1 << 20})
	r.Acquire("x")
	done := make(chan error, 1)
	go func() { done <- r.Ready(context.Background(), "x") }()
	_ = r.Close()
	select {
	case err := <-done:
		// Not live: an ack on it would be a lie.
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Ready after Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Ready still waiting after Close")
	}
}

// failingBroker fails every Subscribe while fail is set.
type failingBroker struct {
	Broker
	fail  atomic.Bool
	calls atomic.Int32
}

func (f *failingBroker) Subscribe(ctx context.Context, topics ...string) error {
	f.calls.Add(1)
	if f.fail.Load() {
		return fmt.Errorf("%w: test says no", ErrUnavailable)
	}
	return f.Broker.Subscribe(ctx, topics...)
}

// A failed subscribe call is reported as a failure (never as ready), the
// next Await calls the broker again, and a live topic answers at once on
// the caller's goroutine.
func TestRouterAwaitReportsFailureAndRetries(t *testing.T) {
	m := NewMemoryBus().Attach(func(string, []byte) {}) // routed: not a lone broadcasting node
	defer m.Close()
	fb := &failingBroker{Broker: m}
	fb.fail.Store(true)
	r := NewRouter(fb, RouterConfig{BatchDelay: time.Millisecond})
	defer r.Close()
	await := func() error {
		t.Helper()
		done := make(chan error, 1)
		r.Await("t", func(err error) { done <- err })
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("Await never answered")
			return nil
		}
	}
	r.Acquire("t")
	if err := await(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Await with the broker failing = %v, want ErrUnavailable", err)
	}
	fb.fail.Store(false)
	if err := await(); err != nil {
		t.Fatalf("Await after the broker recovered = %v, want nil", err)
	}
	if got := fb.calls.Load(); got != 2 {
		t.Fatalf("%d Subscribe calls, want 2 (the failure, then the retry)", got)
	}
	if got := m.Bus().Subscribers("t"); got != 1 {
		t.Fatalf("upstream subscribers of t = %d, want 1", got)
	}
	sync := false
	r.Await("t", func(err error) { sync = err == nil })
	if !sync {
		t.Fatal("Await on a live topic did not answer at once")
	}
}

// A waiter whose topic is released before its batch goes out is answered,
// not left behind.
func TestRouterAwaitReleasedBeforeCall(t *testing.T) {
	m := NewMemoryBus().Attach(func(string, []byte) {}) // routed: not a lone broadcasting node
	defer m.Close()
	r := NewRouter(m, RouterConfig{BatchDelay: 20 * time.Millisecond})
	defer r.Close()
	r.Acquire("gone")
	done := make(chan error, 1)
	r.Await("gone", func(err error) { done <- err })
	r.Release("gone")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Await = %v, want nil (nobody holds it)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter of a released topic was never answered")
	}
}
