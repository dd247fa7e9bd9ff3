package registry

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// benchTopics returns n topic names like "t.12345".
func benchTopics(n int) []string {
	topics := make([]string, n)
	for i := range topics {
		topics[i] = fmt.Sprintf("t.%d", i)
	}
	return topics
}

// benchSubscribeUnsubscribe measures a Subscribe+Unsubscribe pair under
// contention: every goroutine owns one subscriber and walks the topics.
// With resident set, every topic keeps one other subscriber, so groups
// persist (the steady state of popular topics); without it every pair
// creates and deletes its group.
func benchSubscribeUnsubscribe(b *testing.B, resident bool) {
	const nTopics = 4096
	topics := benchTopics(nTopics)
	r := New[*conn](Config{})
	if resident {
		keeper := &conn{}
		for _, topic := range topics {
			r.Subscribe(topic, keeper)
		}
	}
	var ids atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &conn{id: ids.Add(1)}
		i := int(c.id * 977)
		for pb.Next() {
			topic := topics[i&(nTopics-1)]
			i++
			if added, _ := r.Subscribe(topic, c); !added {
				b.Fatal("Subscribe did not add")
			}
			if removed, _ := r.Unsubscribe(topic, c); !removed {
				b.Fatal("Unsubscribe did not remove")
			}
		}
	})
	b.StopTimer()
	// A pair is two operations.
	b.ReportMetric(2*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkSubscribeUnsubscribeParallel(b *testing.B) {
	benchSubscribeUnsubscribe(b, true)
}
func BenchmarkSubscribeUnsubscribeParallel_NewGroup(b *testing.B) {
	benchSubscribeUnsubscribe(b, false)
}

// benchRange measures fan-out over one group of n subscribers.
func benchRange(b *testing.B, n int) {
	r := New[*conn](Config{})
	for i := range n {
		r.Subscribe("t.1", &conn{id: uint64(i)})
	}
	var sum uint64
	fn := func(c *conn) bool {
		sum += c.id
		return true
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r.Range("t.1", fn) != n {
			b.Fatal("short Range")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/sub")
	runtime.KeepAlive(sum)
}

func BenchmarkRange_10(b *testing.B)    { benchRange(b, 10) }
func BenchmarkRange_1000(b *testing.B)  { benchRange(b, 1000) }
func BenchmarkRange_10000(b *testing.B) { benchRange(b, 10_000) }

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// benchMemory builds subs subscriptions from connections of 100 topics
// each, every topic having perTopic subscribers, and reports the live heap
// growth per subscription. Counted: the registry, every connection's Set
// (the struct and its contents) and the topic strings; not counted: the
// connection objects, which exist without the registry.
func benchMemory(b *testing.B, subs, perTopic int) {
	const perConn = 100
	nConns, nTopics := subs/perConn, subs/perTopic
	cs := newConns(nConns)
	b.ReportAllocs()
	for b.Loop() {
		before := heapInUse()
		topics := benchTopics(nTopics)
		r := New[*conn](Config{})
		sets := make([]Set, nConns)
		for i, c := range cs {
			for k := range perConn {
				// Consecutive j are distinct topics for one connection and
				// spread every topic over exactly perTopic connections.
				j := i*perConn + k
				r.Join(topics[j%nTopics], c, &sets[i])
			}
		}
		after := heapInUse()
		if st := r.Stats(); st.Subscriptions != subs || st.Topics != nTopics {
			b.Fatalf("Stats() = %+v", st)
		}
		b.ReportMetric(float64(after-before)/float64(subs), "B/sub")
		runtime.KeepAlive(r)
		runtime.KeepAlive(sets)
		runtime.KeepAlive(topics)
	}
}

// The target shape: groups of 100, as many topics as connections.
func BenchmarkMemory_100k(b *testing.B) { benchMemory(b, 100_000, 100) }
func BenchmarkMemory_1M(b *testing.B)   { benchMemory(b, 1_000_000, 100) }
func BenchmarkMemory_10M(b *testing.B)  { benchMemory(b, 10_000_000, 100) }

// Smaller groups put the per-topic cost (shard map entry, group header) on
// fewer subscriptions.
func BenchmarkMemory_1M_Groups10(b *testing.B) { benchMemory(b, 1_000_000, 10) }
func BenchmarkMemory_1M_Groups1(b *testing.B)  { benchMemory(b, 1_000_000, 1) }
