package bench

import (
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// recShards stripes a worker's latency recording so thousands of reader
// goroutines rarely wait on one lock; connection i uses shard i % recShards.
const recShards = 8

// recorder collects deliveries per step. Readers batch their samples and
// take a shard's lock once per batch.
type recorder struct {
	shards [recShards]recShard
}

type recShard struct {
	mu        sync.Mutex
	steps     []stepRec
	unstamped int64
	_         [64]byte // keep neighbouring shards' locks off one cache line
}

type stepRec struct {
	h        *hdr.Histogram
	received int64
	lastRecv int64 // unix ns
}

// sample is one delivery's latency, tagged with its step.
type sample struct {
	lat  time.Duration
	step int
}

// batch is what one reader accumulates between flushes.
type batch struct {
	n         int
	samples   [32]sample
	unstamped int64
}

func (b *batch) full() bool { return b.n == len(b.samples) }

func (b *batch) empty() bool { return b.n == 0 && b.unstamped == 0 }

// flush moves b into shard s, stamping the receive time now, and resets b.
func (r *recorder) flush(s int, now int64, b *batch) {
	if b.empty() {
		return
	}
	sh := &r.shards[s%recShards]
	sh.mu.Lock()
	for _, smp := range b.samples[:b.n] {
		for len(sh.steps) <= smp.step {
			sh.steps = append(sh.steps, stepRec{})
		}
		st := &sh.steps[smp.step]
		if st.h == nil {
			st.h = newHist()
		}
		recordDur(st.h, smp.lat)
		st.received++
		st.lastRecv = max(st.lastRecv, now)
	}
	sh.unstamped += b.unstamped
	sh.mu.Unlock()
	*b = batch{}
}

// fill adds the recorder's counters to st.
func (r *recorder) fill(st *workerStats) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for s, rec := range sh.steps {
			for len(st.ReceivedByStep) <= s {
				st.ReceivedByStep = append(st.ReceivedByStep, 0)
				st.LastRecvByStep = append(st.LastRecvByStep, 0)
			}
			st.ReceivedByStep[s] += rec.received
			st.LastRecvByStep[s] = max(st.LastRecvByStep[s], rec.lastRecv)
			st.Received += rec.received
		}
		st.Unstamped += sh.unstamped
		sh.mu.Unlock()
	}
}

// hist merges step s (every step when s < 0) over all shards.
func (r *recorder) hist(s int) *hdr.Histogram {
	out := newHist()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for step, rec := range sh.steps {
			if rec.h != nil && (s < 0 || step == s) {
				out.Merge(rec.h)
			}
		}
		sh.mu.Unlock()
	}
	return out
}
