package broker

import (
	"context"
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
