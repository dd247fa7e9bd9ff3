package broker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// The padding in streamShard assumes the field sizes of this Go release.
func TestStreamShardIsTwoCacheLines(t *testing.T) {
	if got := unsafe.Sizeof(streamShard{}); got != 128 {
		t.Fatalf("sizeof(streamShard) = %d, want 128: fix the padding", got)
	}
}

// peekStream reports topic's stream without making one.
func peekStream(bus *MemoryBus, topic string) (Position, bool) {
	sh := bus.hist.shard(topic)
	sh.mu.Lock()
	s := sh.m[topic]
	sh.mu.Unlock()
	if s == nil {
		return Position{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return Position{s.offset, s.epoch}, true
}

// countedBytes adds up, stream by stream, what the bus should count.
func countedBytes(bus *MemoryBus) (streams int, bytes int64) {
	h := &bus.hist
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, s := range sh.m {
			s.mu.Lock()
			streams++
			bytes += streamBytes + int64(len(s.topic))
			for _, e := range s.ring {
				if e.b != nil {
					bytes += int64(len(e.payload())) + streamPubBytes
				}
			}
			s.mu.Unlock()
		}
		sh.mu.Unlock()
	}
	return streams, bytes
}

func checkCounted(t *testing.T, bus *MemoryBus) {
	t.Helper()
	streams, bytes := countedBytes(bus)
	if got, want := bus.hist.streams.Load(), int64(streams); got != want {
		t.Fatalf("bus counts %d streams, holds %d", got, want)
	}
	if got := bus.hist.bytes.Load(); got != bytes {
		t.Fatalf("bus counts %d bytes, its streams add up to %d", got, bytes)
	}
}

// TestMemoryStreamCap: past the cap, the least recently published streams
// are dropped whole, and come back under a new epoch.
func TestMemoryStreamCap(t *testing.T) {
	bus := NewMemoryBus()
	m := bus.Attach(func(string, []byte) {})
	defer m.Close()
	p := StreamPolicy{Size: 4, TTL: time.Minute}
	payload := string(make([]byte, 1000))
	perStream := int64(4*(1000+streamPubBytes) + streamBytes + len("cap.0"))
	const room = 5
	bus.SetHistoryMemory(room*perStream + perStream/2)
	epochs := map[string]string{}
	fill := func(topic string) {
		t.Helper()
		for range 4 {
			epochs[topic] = mustPublishStream(t, m, topic, payload, p).Epoch
		}
	}
	for i := range room {
		fill(fmt.Sprint("cap.", i))
	}
	// cap.0 is published again: cap.1 is now the least recent.
	mustPublishStream(t, m, "cap.0", payload, p)
	expect := func(gone string, held ...string) {
		t.Helper()
		checkCounted(t, bus)
		streams, bytes := m.HistoryStats()
		if bytes > bus.hist.limit.Load() || streams != len(held) {
			t.Fatalf("%d streams, %d bytes; want %d streams within the cap of %d", streams, bytes, len(held), bus.hist.limit.Load())
		}
		if pos, ok := peekStream(bus, gone); ok {
			t.Fatalf("%s still held at %+v", gone, pos)
		}
		for _, topic := range held {
			if pos, ok := peekStream(bus, topic); !ok || pos.Epoch != epochs[topic] {
				t.Fatalf("%s: %+v (held %v), want epoch %s kept", topic, pos, ok, epochs[topic])
			}
		}
	}
	fill("cap.5")
	expect("cap.1", "cap.0", "cap.2", "cap.3", "cap.4", "cap.5")
	fill("cap.6")
	expect("cap.2", "cap.0", "cap.3", "cap.4", "cap.5", "cap.6")
	// A dropped topic starts again under a new epoch.
	old := epochs["cap.1"]
	if pos := mustPublishStream(t, m, "cap.1", "x", p); pos.Offset != 1 || pos.Epoch == old {
		t.Fatalf("dropped stream published again: %+v, want offset 1 under a new epoch (was %s)", pos, old)
	}
	epochs["cap.1"] = mustPublishStream(t, m, "cap.1", payload, p).Epoch
	fill("cap.1")
	expect("cap.3", "cap.0", "cap.1", "cap.4", "cap.5", "cap.6")
	// A lower cap drops at once; everything goes below one stream's worth.
	bus.SetHistoryMemory(1)
	checkCounted(t, bus)
	if streams, bytes := m.HistoryStats(); streams != 0 || bytes != 0 {
		t.Fatalf("cap of 1 byte: %d streams, %d bytes held", streams, bytes)
	}
}

// TestMemoryStreamExpiredReclaimed: expired streams are dropped by
// publishes on their stripe and by HistoryStats, with no goroutine.
func TestMemoryStreamExpiredReclaimed(t *testing.T) {
	bus := NewMemoryBus()
	m := bus.Attach(func(string, []byte) {})
	defer m.Close()
	const probe = "probe"
	var mates []string // topics of probe's stripe
	for i := 0; len(mates) < 4; i++ {
		if topic := fmt.Sprint("exp.", i); bus.hist.shard(topic) == bus.hist.shard(probe) {
			mates = append(mates, topic)
		}
	}
	short := StreamPolicy{Size: 2, TTL: time.Millisecond}
	for _, topic := range mates {
		mustPublishStream(t, m, topic, "x", short)
	}
	for i := range 20 {
		mustPublishStream(t, m, fmt.Sprint("other.", i), "x", short)
	}
	expired := time.Now().Add(5 * time.Millisecond)
	for time.Now().Before(expired) {
		time.Sleep(time.Millisecond) // expiry is the passing of time itself
	}
	before := bus.hist.streams.Load()
	mustPublishStream(t, m, probe, "x", keepAll)
	mustPublishStream(t, m, probe, "x", keepAll)
	if got, want := bus.hist.streams.Load(), before+1-int64(len(mates)); got != want {
		t.Fatalf("%d streams after two publishes on the stripe of %d expired ones, want %d", got, len(mates), want)
	}
	checkCounted(t, bus)
	if streams, bytes := m.HistoryStats(); streams != 1 {
		t.Fatalf("HistoryStats: %d streams (%d bytes), want probe alone", streams, bytes)
	}
	checkCounted(t, bus)
}

// TestMemoryStreamConcurrent: publishes and reads on many topics with a
// cap small enough to evict all along; each topic's messages reach the
// Handler in offset order, and the count matches what is held.
func TestMemoryStreamConcurrent(t *testing.T) {
	bus := NewMemoryBus()
	in := newStreamInbox()
	m := bus.Attach(in.handle)
	defer m.Close()
	topics := make([]string, 50)
	for i := range topics {
		topics[i] = fmt.Sprint("cc.", i)
		mustSubscribe(t, m, topics[i])
	}
	bus.SetHistoryMemory(20_000)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			payload := make([]byte, 200)
			for range 2000 {
				topic := topics[r.IntN(len(topics))]
				p := StreamPolicy{Size: 1 + r.IntN(8), TTL: time.Duration(r.IntN(3)) * time.Millisecond}
				if r.IntN(4) == 0 {
					if _, _, err := m.ReadStream(context.Background(), topic, StreamQuery{Last: 3, Limit: 3}, p); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				if _, err := m.PublishStream(context.Background(), topic, payload[:r.IntN(len(payload))], p); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	in.mu.Lock()
	bad := in.bad
	in.mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("handler saw: %v", bad[:min(len(bad), 5)])
	}
	checkCounted(t, bus)
	if _, bytes := bus.HistoryStats(); bytes > 20_000 {
		t.Fatalf("%d bytes held over a cap of 20000", bytes)
	}
}

func TestOpenMemoryHistoryMemory(t *testing.T) {
	for _, tt := range []struct{ set, want int64 }{{0, 256 << 20}, {12345, 12345}} {
		b, err := Open("memory", func(string, []byte) {}, Options{HistoryMemory: tt.set})
		if err != nil {
			t.Fatal(err)
		}
		if got := b.(*Memory).Bus().hist.limit.Load(); got != tt.want {
			t.Errorf("HistoryMemory %d: cap %d, want %d", tt.set, got, tt.want)
		}
		b.Close()
	}
	if got := (Options{}).WithDefaults().HistoryMemory; got != 256<<20 {
		t.Errorf("default HistoryMemory %d", got)
	}
}
