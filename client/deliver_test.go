package client

import (
	"strconv"
	"testing"
)

// queueImpls are the delivery policies; shared bodies run against each.
var queueImpls = []struct {
	policy Policy
	new    func(buffer int) queue
}{
	{All, func(n int) queue { return newQueue(All, n) }},
	{Latest, func(n int) queue { return newQueue(Latest, n) }},
}

func TestQueue(t *testing.T) {
	for _, impl := range queueImpls {
		t.Run(impl.policy.String(), func(t *testing.T) {
			t.Run("arrival order across topics", func(t *testing.T) { testQueueOrder(t, impl.new(16)) })
			t.Run("stop ends run", func(t *testing.T) { testQueueStop(t, impl.new(16)) })
		})
	}
}

// runQueue runs q on a goroutine delivering into a channel; the returned
// stop function stops it and waits for run to return.
func runQueue(t *testing.T, q queue) (<-chan Message, func()) {
	t.Helper()
	out := make(chan Message, 64)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		q.run(stop, func(m Message) { out <- m })
	}()
	var stopped bool
	stopFn := func() {
		if !stopped {
			stopped = true
			close(stop)
			<-done
		}
	}
	t.Cleanup(stopFn)
	return out, stopFn
}

func testQueueOrder(t *testing.T, q queue) {
	t.Helper()
	for i := range 10 {
		if got := q.push(Message{Topic: "t" + strconv.Itoa(i)}); got != queued {
			t.Fatalf("push %d: %v", i, got)
		}
	}
	if q.pending() != 10 {
		t.Fatalf("pending = %d, want 10", q.pending())
	}
	out, _ := runQueue(t, q)
	for i := range 10 {
		if m := <-out; m.Topic != "t"+strconv.Itoa(i) {
			t.Fatalf("message %d is %q", i, m.Topic)
		}
	}
}

func testQueueStop(t *testing.T, q queue) {
	t.Helper()
	out, stop := runQueue(t, q)
	q.push(Message{Topic: "a"})
	<-out
	stop() // returns only once run has returned
	q.push(Message{Topic: "b"})
	select {
	case m := <-out:
		t.Fatalf("delivered %q after stop", m.Topic)
	default:
	}
}

func TestAllQueueOverflowDrops(t *testing.T) {
	q := newQueue(All, 3)
	for i := range 3 {
		if got := q.push(Message{Topic: "t", Data: []byte{byte(i)}}); got != queued {
			t.Fatalf("push %d = %v", i, got)
		}
	}
	if got := q.push(Message{Topic: "t", Data: []byte{3}}); got != dropped {
		t.Fatalf("push into a full queue = %v, want dropped", got)
	}
	out, _ := runQueue(t, q)
	for i := range 3 {
		if m := <-out; m.Data[0] != byte(i) {
			t.Fatalf("message %d carries %d", i, m.Data[0])
		}
	}
}

func TestLatestQueueCoalesces(t *testing.T) {
	q := newQueue(Latest, 0)
	outcomes := []outcome{
		q.push(Message{Topic: "p", Data: []byte("1")}),
		q.push(Message{Topic: "q", Data: []byte("1")}),
		q.push(Message{Topic: "p", Data: []byte("2")}),
		q.push(Message{Topic: "p", Data: []byte("3")}),
	}
	want := []outcome{queued, queued, coalesced, coalesced}
	for i := range want {
		if outcomes[i] != want[i] {
			t.Fatalf("push %d = %v, want %v", i, outcomes[i], want[i])
		}
	}
	if q.pending() != 2 {
		t.Fatalf("pending = %d, want 2 (one per topic)", q.pending())
	}
	out, _ := runQueue(t, q)
	// p stays first (its first unseen value came first) but carries the newest.
	if m := <-out; m.Topic != "p" || string(m.Data) != "3" {
		t.Fatalf("first = %s %s, want p 3", m.Topic, m.Data)
	}
	if m := <-out; m.Topic != "q" || string(m.Data) != "1" {
		t.Fatalf("second = %s %s, want q 1", m.Topic, m.Data)
	}
	q.push(Message{Topic: "p", Data: []byte("4")})
	if m := <-out; string(m.Data) != "4" {
		t.Fatalf("after draining, got %s, want 4", m.Data)
	}
}

func BenchmarkQueuePush(b *testing.B) {
	for _, impl := range queueImpls {
		b.Run(impl.policy.String(), func(b *testing.B) {
			q := impl.new(1024)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { defer close(done); q.run(stop, func(Message) {}) }()
			m := Message{Topic: "prices.AAPL", Data: []byte(`{"p":1}`)}
			b.ReportAllocs()
			for b.Loop() {
				q.push(m)
			}
			close(stop)
			<-done
		})
	}
}
