package broker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subsock/subsock/internal/testserver"
)

// benchRoundTrip publishes one message at a time and waits for it to come
// back through the backbone to the same node's Handler.
func benchRoundTrip(b *testing.B, open func(h Handler) Broker, size int) {
	back := make(chan struct{}, 1)
	br := open(func(string, []byte) { back <- struct{}{} })
	defer br.Close()
	ctx := context.Background()
	if err := br.Subscribe(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Publish(ctx, "bench", payload); err != nil {
			b.Fatal(err)
		}
		<-back
	}
}

func openBench(b *testing.B, url string) func(Handler) Broker {
	return func(h Handler) Broker {
		br, err := Open(url, h, Options{})
		if err != nil {
			b.Fatal(err)
		}
		return br
	}
}

func BenchmarkRoundTrip_Memory_64B(b *testing.B) {
	benchRoundTrip(b, func(h Handler) Broker { return NewMemory(h) }, 64)
}

func BenchmarkRoundTrip_Redis_64B(b *testing.B) {
	benchRoundTrip(b, openBench(b, testserver.Redis(b).URL), 64)
}

func BenchmarkRoundTrip_Redis_4KiB(b *testing.B) {
	benchRoundTrip(b, openBench(b, testserver.Redis(b).URL), 4096)
}

func BenchmarkRoundTrip_NATS_64B(b *testing.B) {
	benchRoundTrip(b, openBench(b, testserver.NATS(b).URL), 64)
}

// BenchmarkMemoryPublish_100Nodes is one publish fanned out to 100 nodes
// on one bus.
func BenchmarkMemoryPublish_100Nodes(b *testing.B) {
	bus := NewMemoryBus()
	var got atomic.Int64
	for range 100 {
		n := bus.Attach(func(string, []byte) { got.Add(1) })
		if err := n.Subscribe(context.Background(), "t"); err != nil {
			b.Fatal(err)
		}
	}
	pub := bus.Attach(func(string, []byte) {})
	payload := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Publish(context.Background(), "t", payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRouterAcquireRelease is the contended path: many sessions'
// first-subscriber and last-subscriber transitions on distinct topics.
func BenchmarkRouterAcquireRelease(b *testing.B) {
	r := NewRouter(NewMemoryBus().Attach(func(string, []byte) {}), RouterConfig{})
	defer r.Close()
	topics := make([]string, 4096)
	for i := range topics {
		topics[i] = fmt.Sprintf("topic.%d", i)
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1) * 7919
		for pb.Next() {
			t := topics[i%uint64(len(topics))]
			r.Acquire(t)
			r.Release(t)
			i++
		}
	})
}

// benchPublishStream publishes 64-byte payloads on 1,000 topics of history
// from p goroutines per CPU, and reports publishes per second.
func benchPublishStream(b *testing.B, s Streamer, p int) {
	topics := make([]string, 1000)
	for i := range topics {
		topics[i] = fmt.Sprintf("topic.%d", i)
	}
	payload := make([]byte, 64)
	policy := StreamPolicy{Size: 100, TTL: time.Minute}
	var next atomic.Uint64
	b.SetParallelism(p)
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1) * 7919
		for pb.Next() {
			if _, err := s.PublishStream(context.Background(), topics[i%uint64(len(topics))], payload, policy); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "publishes/s")
}

// BenchmarkMemoryPublishStream: 2 goroutines per CPU on a lone node,
// whose Handler gets every publication.
func BenchmarkMemoryPublishStream(b *testing.B) {
	benchPublishStream(b, NewMemory(func(string, []byte) {}), 2)
}

// BenchmarkRedisPublishStream: 128 goroutines per CPU, which rueidis
// pipelines onto its connection.
func BenchmarkRedisPublishStream(b *testing.B) {
	br := openBench(b, testserver.Redis(b).URL)(func(string, []byte) {})
	defer br.Close()
	benchPublishStream(b, br.(Streamer), 128)
}

// benchPublishers publishes 64-byte messages from 4 × GOMAXPROCS callers,
// as many as a node's publisher workers, either each with its own Publish
// or in batches (as a worker sends what it finds queued behind a busy
// backbone): publishes/s either way.
func benchPublishers(b *testing.B, batch int) {
	br := openBench(b, testserver.Redis(b).URL)(func(string, []byte) {})
	defer br.Close()
	payload := make([]byte, 64)
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		msgs := make([]Message, 0, batch)
		errs := make([]error, batch)
		for pb.Next() {
			if batch == 0 {
				if err := br.Publish(ctx, "bench", payload); err != nil {
					b.Error(err)
					return
				}
				continue
			}
			msgs = append(msgs, Message{Topic: "bench", Payload: payload})
			if len(msgs) == batch {
				br.(BatchPublisher).PublishBatch(ctx, msgs, errs)
				msgs = msgs[:0]
			}
		}
		if len(msgs) > 0 {
			br.(BatchPublisher).PublishBatch(ctx, msgs, errs[:len(msgs)])
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
}

func BenchmarkRedisPublish_Workers(b *testing.B)        { benchPublishers(b, 0) }
func BenchmarkRedisPublishBatch64_Workers(b *testing.B) { benchPublishers(b, 64) }
