package broker

import (
	"context"
	"testing"
	"time"
)

// Ready returns only once the upstream subscription exists, so a node that
// acknowledges after Ready never misses a message published right after.
func TestRouterReadyWaitsForUpstream(t *testing.T) {
	m := NewMemory(func(string, []byte) {})
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
	m := NewMemory(func(string, []byte) {})
	defer m.Close()
	r := NewRouter(m, RouterConfig{BatchDelay: time.Hour, BatchSize: 1 << 20})
	r.Acquire("x")
	done := make(chan error, 1)
	go func() { done <- r.Ready(context.Background(), "x") }()
	_ = r.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Ready still waiting after Close")
	}
}
