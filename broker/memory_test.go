package broker

import (
	"context"
	"runtime"
	"strconv"
	"testing"
)

// The memory broker delivers synchronously; a Handler that publishes (as
// the rules allow) must not deadlock against the bus lock, nor against a
// Subscribe waiting for it.
func TestMemoryHandlerMayPublish(t *testing.T) {
	in := newInbox()
	var m *Memory
	m = NewMemory(func(topic string, payload []byte) {
		in.handle(topic, payload)
		if topic == "ping" {
			if err := m.Publish(context.Background(), "pong", payload); err != nil {
				t.Errorf("Publish from handler: %v", err)
			}
		}
	})
	defer m.Close()
	mustSubscribe(t, m, "ping", "pong")
	mustPublish(t, m, "ping", "x")
	want := []message{{"ping", "x"}, {"pong", "x"}}
	if got := in.snapshot(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// A Publish ranging over a topic's subscribers keeps its snapshot while
// another node unsubscribes: copy-on-write, checked by the race detector.
func TestMemoryConcurrentChurn(t *testing.T) {
	bus := NewMemoryBus()
	pub := bus.Attach(func(string, []byte) {})
	defer pub.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n := bus.Attach(func(string, []byte) {})
		defer n.Close()
		for range 200 {
			if err := n.Subscribe(context.Background(), "c"); err != nil {
				t.Errorf("Subscribe: %v", err)
			}
			if err := n.Unsubscribe(context.Background(), "c"); err != nil {
				t.Errorf("Unsubscribe: %v", err)
			}
		}
	}()
	for range 200 {
		mustPublish(t, pub, "c", "x")
	}
	<-done
	if got := bus.Subscribers("c"); got != 0 {
		t.Fatalf("Subscribers = %d after churn, want 0", got)
	}
}

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// stormTopics returns n distinct topic names, made before a baseline is
// taken so that their bytes do not count as the structure's.
func stormTopics(n int) []string {
	topics := make([]string, n)
	for i := range topics {
		topics[i] = "storm." + strconv.Itoa(i)
	}
	return topics
}

// checkReturned fails t when more than 5 % of what a storm took (peak
// over base) is still held at after.
func checkReturned(t *testing.T, base, peak, after uint64) {
	t.Helper()
	took, left := peak-base, int64(after)-int64(base)
	t.Logf("the storm took %d KiB; %d KiB left after it went", took>>10, left>>10)
	if left > int64(took/20) {
		t.Fatalf("%d bytes of the %d the storm took stayed (%.1f%%), want at most 5%%",
			left, took, 100*float64(left)/float64(took))
	}
}

// After a storm of distinct topics leaves a node, the bus's and the node's
// maps give their memory back, whether the node unsubscribes or closes.
func TestMemoryShrinksAfterStorm(t *testing.T) {
	const n, batch = 100_000, 512
	tests := []struct {
		name  string
		leave func(m *Memory, topics []string) error
	}{
		{"Unsubscribe", func(m *Memory, topics []string) error {
			for len(topics) > 0 {
				k := min(batch, len(topics))
				if err := m.Unsubscribe(context.Background(), topics[:k]...); err != nil {
					return err
				}
				topics = topics[k:]
			}
			return nil
		}},
		{"Close", func(m *Memory, _ []string) error { return m.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topics := stormTopics(n)
			bus := NewMemoryBus()
			stay := bus.Attach(func(string, []byte) {})
			defer stay.Close()
			m := bus.Attach(func(string, []byte) {})
			defer m.Close()
			mustSubscribe(t, stay, "stays")
			base := liveHeap()
			for i := 0; i < n; i += batch {
				mustSubscribe(t, m, topics[i:min(i+batch, n)]...)
			}
			if got := bus.Topics(); got != n+1 {
				t.Fatalf("Topics = %d, want %d", got, n+1)
			}
			peak := liveHeap()
			if err := tt.leave(m, topics); err != nil {
				t.Fatal(err)
			}
			if got := bus.Topics(); got != 1 {
				t.Fatalf("Topics = %d after the storm left, want 1", got)
			}
			after := liveHeap()
			runtime.KeepAlive(topics) // the names are the caller's, not the bus's
			checkReturned(t, base, peak, after)
			// The rebuilt maps still serve.
			in := newInbox()
			other := bus.Attach(in.handle)
			defer other.Close()
			mustSubscribe(t, other, "stays")
			mustPublish(t, stay, "stays", "x")
			if got := in.snapshot(); len(got) != 1 || got[0] != (message{"stays", "x"}) {
				t.Fatalf("got %v, want one message on stays", got)
			}
		})
	}
}

// A lone node (NewMemory) gets every publish without subscribing, and a
// Router in front of it books nothing: a topic costs nothing there.
func TestLoneMemoryBroadcasts(t *testing.T) {
	var got []string
	m := NewMemory(func(topic string, _ []byte) { got = append(got, topic) })
	defer m.Close()
	if !m.Broadcasts() {
		t.Fatal("NewMemory's broker does not broadcast")
	}
	r := NewRouter(m, RouterConfig{})
	defer r.Close()
	r.Acquire("a")
	answered := false
	r.Await("a", func(err error) { answered = err == nil })
	if !answered {
		t.Fatal("Await on a broadcasting broker did not answer at once")
	}
	if r.Held() != 0 || m.Bus().Topics() != 0 {
		t.Fatalf("Held %d, bus topics %d: want nothing booked", r.Held(), m.Bus().Topics())
	}
	if err := m.Publish(context.Background(), "never.subscribed", []byte{1}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "never.subscribed" {
		t.Fatalf("delivered %v, want the publish", got)
	}
	shared := NewMemoryBus().Attach(func(string, []byte) {})
	if shared.Broadcasts() {
		t.Fatal("a node on a shared bus broadcasts")
	}
}
