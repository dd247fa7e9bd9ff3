package hub

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// deliveryLog is a deliver func that keeps what it was given, per topic.
type deliveryLog struct {
	mu   sync.Mutex
	got  map[string][]string
	n    int
	more chan struct{} // poked after each delivery
}

func newDeliveryLog() *deliveryLog {
	return &deliveryLog{got: make(map[string][]string), more: make(chan struct{}, 1)}
}

func (r *deliveryLog) deliver(topic string, payload []byte) {
	r.mu.Lock()
	r.got[topic] = append(r.got[topic], string(payload))
	r.n++
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// wait returns once n deliveries were recorded, failing after a while.
func (r *deliveryLog) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		got := r.n
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("%d deliveries, want %d", got, n)
		}
	}
}

// eventually polls cond (a counter the code under test bumps before it
// blocks, so there is no signal to await) until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// topicsOnDistinctWorkers returns n topic names that map to n different
// workers of s.
func topicsOnDistinctWorkers(t *testing.T, s *Stage, n int) []string {
	t.Helper()
	seen := make(map[int]bool)
	var out []string
	for i := 0; len(out) < n && i < 10000; i++ {
		topic := "t." + strconv.Itoa(i)
		if w := s.worker(topic); !seen[w] {
			seen[w] = true
			out = append(out, topic)
		}
	}
	if len(out) < n {
		t.Fatalf("found %d topics on distinct workers, want %d", len(out), n)
	}
	return out
}

// TestStageOrderPerTopic: many topics over several workers, handed over
// from several goroutines at once (as memory-broker publishers do), each
// goroutine owning its topics; every message arrives, and each topic's in
// the order it was handed over.
func TestStageOrderPerTopic(t *testing.T) {
	rec := newDeliveryLog()
	s := NewStage(4, 8, rec.deliver)
	defer s.Stop()
	const senders, topicsPer, msgs = 4, 25, 200
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range msgs {
				for k := range topicsPer {
					s.Handle(fmt.Sprintf("t.%d.%d", g, k), []byte(strconv.Itoa(i)))
				}
			}
		}()
	}
	wg.Wait()
	rec.wait(t, senders*topicsPer*msgs)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != senders*topicsPer {
		t.Fatalf("%d topics delivered, want %d", len(rec.got), senders*topicsPer)
	}
	for topic, got := range rec.got {
		for i, p := range got {
			if p != strconv.Itoa(i) {
				t.Fatalf("topic %s: message %d is %q, want %d (out of order)", topic, i, p, i)
			}
		}
	}
}

// TestStageSlowTopicDoesNotDelayOthers: while one topic's fan-out is
// stuck, a topic on another worker is still delivered.
func TestStageSlowTopicDoesNotDelayOthers(t *testing.T) {
	release := make(chan struct{})
	rec := newDeliveryLog()
	var slow string
	s := NewStage(2, 8, func(topic string, payload []byte) {
		if topic == slow {
			<-release
		}
		rec.deliver(topic, payload)
	})
	defer s.Stop()
	ts := topicsOnDistinctWorkers(t, s, 2)
	slow = ts[0]
	s.Handle(slow, []byte("a"))
	s.Handle(slow, []byte("b"))
	s.Handle(ts[1], []byte("x"))
	rec.wait(t, 1)
	rec.mu.Lock()
	got := rec.got[ts[1]]
	rec.mu.Unlock()
	if len(got) != 1 || got[0] != "x" {
		t.Fatalf("fast topic got %q while the slow one was stuck", got)
	}
	close(release)
	rec.wait(t, 3)
}

// TestStagePayloadCopied: the broker may reuse its buffer once the
// Handler returns; the stage delivers what was handed over.
func TestStagePayloadCopied(t *testing.T) {
	release := make(chan struct{})
	rec := newDeliveryLog()
	s := NewStage(1, 4, func(topic string, payload []byte) {
		<-release
		rec.deliver(topic, payload)
	})
	defer s.Stop()
	buf := []byte("first")
	s.Handle("t", buf)
	copy(buf, "XXXXX")
	s.Handle("t", nil) // empty payloads are not queued
	close(release)
	rec.wait(t, 1)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := rec.got["t"]; len(got) != 1 || got[0] != "first" {
		t.Fatalf("delivered %q, want [first]", got)
	}
}

// TestStageFullQueueWaitsAndCounts: a hand-off to a full queue waits for
// room (back-pressure), is counted and timed, and loses nothing.
func TestStageFullQueueWaitsAndCounts(t *testing.T) {
	release := make(chan struct{})
	rec := newDeliveryLog()
	s := NewStage(1, 2, func(topic string, payload []byte) {
		<-release
		rec.deliver(topic, payload)
	})
	defer s.Stop()
	s.Handle("t", []byte("0")) // taken by the worker, which blocks
	eventually(t, "the worker to take the first message", func() bool { return s.Queued() == 0 })
	s.Handle("t", []byte("1"))
	s.Handle("t", []byte("2")) // the queue (2) is full now
	if s.Full.Load() != 0 || s.Queued() != 2 {
		t.Fatalf("full %d, queued %d before the queue overflowed", s.Full.Load(), s.Queued())
	}
	handed := make(chan struct{})
	go func() {
		s.Handle("t", []byte("3"))
		close(handed)
	}()
	eventually(t, "the hand-off to find the queue full", func() bool { return s.Full.Load() == 1 })
	select {
	case <-handed:
		t.Fatal("a hand-off to a full queue returned before there was room")
	default:
	}
	close(release)
	<-handed
	rec.wait(t, 4)
	if s.Blocked.Load() <= 0 || s.Dropped.Load() != 0 {
		t.Fatalf("blocked %d ns, dropped %d", s.Blocked.Load(), s.Dropped.Load())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := fmt.Sprint(rec.got["t"]); got != "[0 1 2 3]" {
		t.Fatalf("delivered %s", got)
	}
}

// TestStageStopDropsQueued: stop ends the workers (TestMain checks that no
// goroutine outlives the tests), releases a hand-off waiting on a full
// queue, and counts what it dropped; a hand-off after stop is dropped and
// counted too, without blocking.
func TestStageStopDropsQueued(t *testing.T) {
	release := make(chan struct{})
	rec := newDeliveryLog()
	s := NewStage(1, 2, func(topic string, payload []byte) {
		<-release
		rec.deliver(topic, payload)
	})
	s.Handle("t", []byte("0"))
	eventually(t, "the worker to take the first message", func() bool { return s.Queued() == 0 })
	s.Handle("t", []byte("1"))
	s.Handle("t", []byte("2"))
	waiting := make(chan struct{})
	go func() {
		s.Handle("t", []byte("3"))
		close(waiting)
	}()
	eventually(t, "the hand-off to find the queue full", func() bool { return s.Full.Load() == 1 })
	stopped := make(chan struct{})
	go func() {
		s.Stop()
		close(stopped)
	}()
	<-waiting // released by stop, not by room in the queue
	close(release)
	<-stopped
	s.Handle("t", []byte("4"))
	s.Stop() // idempotent
	rec.mu.Lock()
	delivered := rec.n
	rec.mu.Unlock()
	if delivered != 1 || s.Dropped.Load() != 4 || s.Queued() != 0 {
		t.Fatalf("delivered %d, dropped %d, queued %d; want 1, 4, 0", delivered, s.Dropped.Load(), s.Queued())
	}
}

// TestStageSynchronous: a synchronous hand-off (the memory broker's)
// returns only once its message was fanned out, lends its payload without
// a copy, and is released by stop when its message is dropped.
func TestStageSynchronous(t *testing.T) {
	taken, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var seen []*byte
	s := NewStage(1, 4, func(topic string, payload []byte) {
		if topic == "slow" {
			close(taken)
			<-release
		}
		mu.Lock()
		seen = append(seen, &payload[0])
		mu.Unlock()
	})
	s.WaitForDelivery()
	buf := []byte("lent")
	s.Handle("t", buf)
	mu.Lock()
	if len(seen) != 1 || seen[0] != &buf[0] {
		t.Fatalf("handle returned before delivery, or delivered a copy: %v", seen)
	}
	mu.Unlock()

	go s.Handle("slow", []byte("x")) // the worker blocks on it
	<-taken
	returned := make(chan struct{})
	go func() {
		s.Handle("t", []byte("queued"))
		close(returned)
	}()
	eventually(t, "the second message to be queued", func() bool { return s.Queued() == 1 })
	stopped := make(chan struct{})
	go func() {
		s.Stop()
		close(stopped)
	}()
	<-s.done // the worker now ends after the message in hand
	close(release)
	<-stopped
	<-returned // dropped by stop, and released
	if s.Dropped.Load() != 1 {
		t.Fatalf("dropped %d, want 1", s.Dropped.Load())
	}
}

// benchmarkStage measures one hand-off through the stage to a deliver
// that does nothing: the copy and the queueing. allocs/op is the one copy
// of the payload.
func benchmarkStage(b *testing.B, topics int) {
	s := NewStage(2, 1024, func(string, []byte) {})
	defer s.Stop()
	names := make([]string, topics)
	for i := range names {
		names[i] = "bench.stage." + strconv.Itoa(i)
	}
	payload := []byte(`J{"price":101.25,"symbol":"ACME"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Handle(names[i%topics], payload)
	}
}

func BenchmarkStage_1Topic(b *testing.B) { benchmarkStage(b, 1) }

// BenchmarkStageSynchronous is the memory broker's hand-off: queued, then
// waited for; no copy, nothing allocated.
func BenchmarkStageSynchronous(b *testing.B) {
	s := NewStage(2, 1024, func(string, []byte) {})
	defer s.Stop()
	s.WaitForDelivery()
	payload := []byte(`J{"price":101.25,"symbol":"ACME"}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.Handle("bench.stage", payload)
	}
}
func BenchmarkStage_1000Topics(b *testing.B) { benchmarkStage(b, 1000) }

// BenchmarkStageParallel hands over from many goroutines at once, as
// memory-broker publishers do.
func BenchmarkStageParallel(b *testing.B) {
	s := NewStage(2, 1024, func(string, []byte) {})
	defer s.Stop()
	names := make([]string, 64)
	for i := range names {
		names[i] = "bench.stage." + strconv.Itoa(i)
	}
	payload := []byte(`J{"price":101.25,"symbol":"ACME"}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			s.Handle(names[i%len(names)], payload)
			i++
		}
	})
}
