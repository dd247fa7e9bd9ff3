package limit

import (
	"container/heap"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// seeded makes a's jitter reproducible; a must then be used from one
// goroutine, as *rand.Rand is not safe for concurrent use.
func seeded(a *Admission, seed uint64) *Admission {
	a.randN = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)).Int64N
	return a
}

func TestAdmissionMaxConns(t *testing.T) {
	for _, max := range []int{1, 3, 50} {
		a := NewAdmission(AdmissionConfig{MaxConns: max})
		for i := range max {
			if ok, _, reason := a.Admit(t0); !ok {
				t.Fatalf("max %d: conn %d refused: %s", max, i, reason)
			}
		}
		if a.Open() != max {
			t.Fatalf("max %d: Open = %d", max, a.Open())
		}
		for range 3 {
			ok, retry, reason := a.Admit(t0)
			if ok || reason != ReasonTooManyConns {
				t.Fatalf("max %d: over the cap: ok=%v reason=%q", max, ok, reason)
			}
			if retry < connsRetryBase || retry > connsRetryBase+connsRetryJitter {
				t.Fatalf("max %d: retryAfter %v outside [%v, %v]", max, retry, connsRetryBase, connsRetryBase+connsRetryJitter)
			}
		}
		if a.Open() != max {
			t.Fatalf("max %d: refusals changed Open to %d", max, a.Open())
		}
		a.Done()
		if ok, _, _ := a.Admit(t0); !ok {
			t.Fatalf("max %d: Done did not free a slot", max)
		}
		for range max {
			a.Done()
		}
		if a.Open() != 0 {
			t.Fatalf("max %d: Open = %d after all Done", max, a.Open())
		}
	}
}

func TestAdmissionMaxConnsRetrySpreads(t *testing.T) {
	a := seeded(NewAdmission(AdmissionConfig{MaxConns: 1}), 1)
	a.Admit(t0)
	seen := map[time.Duration]bool{}
	for range 100 {
		_, retry, _ := a.Admit(t0)
		seen[retry] = true
	}
	if len(seen) < 90 {
		t.Fatalf("only %d distinct retry delays in 100 refusals", len(seen))
	}
}

func TestAdmissionUnlimited(t *testing.T) {
	for _, cfg := range []AdmissionConfig{{}, {MaxConns: -1, Rate: -5}} {
		a := NewAdmission(cfg)
		for i := range 10000 {
			if ok, _, reason := a.Admit(t0); !ok {
				t.Fatalf("%+v: conn %d refused: %s", cfg, i, reason)
			}
		}
		if a.Open() != 10000 {
			t.Fatalf("Open = %d", a.Open())
		}
	}
}

func TestAdmissionDoneWithoutAdmitPanics(t *testing.T) {
	a := NewAdmission(AdmissionConfig{MaxConns: 2})
	a.Admit(t0)
	a.Done()
	defer func() {
		if recover() == nil {
			t.Fatal("extra Done did not panic")
		}
		if a.Open() != 0 {
			t.Fatalf("Open = %d after the panic, want 0", a.Open())
		}
	}()
	a.Done()
}

func TestAdmissionConcurrentCap(t *testing.T) {
	const max, workers, rounds = 8, 16, 500
	a := NewAdmission(AdmissionConfig{MaxConns: max})
	var inside, peak atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				ok, _, _ := a.Admit(time.Now())
				if !ok {
					continue
				}
				n := inside.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				inside.Add(-1)
				a.Done()
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > max {
		t.Fatalf("%d connections open at once, cap %d", p, max)
	}
	if a.Open() != 0 {
		t.Fatalf("Open = %d at the end", a.Open())
	}
}

func TestAdmissionRate(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		burst int
		want  int // burst actually used
	}{
		{100, 10, 10},
		{100, 0, 10},
		{5, 0, 1},
		{0.5, 0, 1},
		{1000, 50, 50},
	} {
		a := seeded(NewAdmission(AdmissionConfig{Rate: tc.rate, Burst: tc.burst}), 2)
		const secs = 20
		step := time.Millisecond
		if tc.rate >= 500 {
			step = 100 * time.Microsecond // keep arrivals well above the rate
		}
		admitted := 0
		perSecond := make([]int, secs)
		var retries []time.Duration
		for now := t0; now.Before(t0.Add(secs * time.Second)); now = now.Add(step) {
			ok, retry, reason := a.Admit(now)
			if ok {
				admitted++
				perSecond[int(now.Sub(t0)/time.Second)]++
				a.Done()
				continue
			}
			if reason != ReasonRateExceeded {
				t.Fatalf("rate %v: reason %q", tc.rate, reason)
			}
			if retry <= 0 || retry > time.Duration(float64(time.Second)/tc.rate)+maxCrowdWait {
				t.Fatalf("rate %v: retryAfter %v out of range", tc.rate, retry)
			}
			retries = append(retries, retry)
		}
		// Over T seconds a bucket admits its burst plus Rate*T.
		want := float64(tc.want) + tc.rate*secs
		if d := float64(admitted) - want; d < -1 || d > 1 {
			t.Errorf("rate %v burst %d: admitted %d in %ds, want %.0f±1", tc.rate, tc.burst, admitted, secs, want)
		}
		// After the first second no second sees more than Rate (+1 for a
		// token straddling the boundary).
		for s, n := range perSecond[1:] {
			if float64(n) > tc.rate+1 {
				t.Errorf("rate %v: second %d admitted %d", tc.rate, s+1, n)
			}
		}
		distinct := map[time.Duration]bool{}
		for _, r := range retries {
			distinct[r] = true
		}
		if len(retries) == 0 || len(distinct) < len(retries)*9/10 {
			t.Errorf("rate %v: %d distinct retry delays among %d refusals", tc.rate, len(distinct), len(retries))
		}
	}
}

func TestAdmissionRefusalsConsumeNothing(t *testing.T) {
	// A rate refusal holds no connection slot.
	a := NewAdmission(AdmissionConfig{MaxConns: 5, Rate: 1, Burst: 1})
	if ok, _, _ := a.Admit(t0); !ok {
		t.Fatal("first refused")
	}
	if ok, _, reason := a.Admit(t0); ok || reason != ReasonRateExceeded {
		t.Fatalf("second: ok=%v reason=%q", ok, reason)
	}
	if a.Open() != 1 {
		t.Fatalf("Open = %d after a rate refusal, want 1", a.Open())
	}

	// A cap refusal takes no rate token.
	a = NewAdmission(AdmissionConfig{MaxConns: 1, Rate: 1, Burst: 2})
	if ok, _, _ := a.Admit(t0); !ok {
		t.Fatal("first refused")
	}
	for range 5 {
		if ok, _, reason := a.Admit(t0); ok || reason != ReasonTooManyConns {
			t.Fatalf("over the cap: ok=%v reason=%q", ok, reason)
		}
	}
	a.Done()
	if ok, _, reason := a.Admit(t0); !ok {
		t.Fatalf("second token was taken by cap refusals: %s", reason)
	}
}

func TestAdmissionTinyRate(t *testing.T) {
	a := NewAdmission(AdmissionConfig{Rate: 1e-12})
	if ok, _, _ := a.Admit(t0); !ok {
		t.Fatal("first refused")
	}
	for range 3 {
		ok, retry, _ := a.Admit(t0)
		if ok || retry <= 0 || retry > 2*maxCrowdWait {
			t.Fatalf("ok=%v retryAfter=%v, want a refusal within %v", ok, retry, 2*maxCrowdWait)
		}
	}
}

// retryHeap orders simulated clients by when they come back.
type retryHeap []time.Time

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *retryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// TestReconnectStorm drops every client of a node on it at the same
// instant and lets each retry when told. The retries must spread out: the
// crowd gets in at about the configured rate, without most of it coming
// back at one moment.
func TestReconnectStorm(t *testing.T) {
	for _, tc := range []struct {
		clients int
		rate    float64
		// slowdown bounds the time to admit everyone relative to
		// clients/rate. A burst of 1 (the default below 20/s) wastes the
		// tokens that come due while nobody is knocking.
		slowdown float64
	}{
		{2000, 100, 1.5},
		{5000, 1000, 1.5},
		{300, 10, 2.5},
	} {
		a := seeded(NewAdmission(AdmissionConfig{Rate: tc.rate}), 3)
		h := make(retryHeap, tc.clients)
		for i := range h {
			h[i] = t0
		}
		heap.Init(&h)
		attempts, last := 0, t0
		buckets := map[int64]int{} // retries per tenth of the drain time
		drain := time.Duration(float64(tc.clients) / tc.rate * float64(time.Second))
		for h.Len() > 0 {
			now := heap.Pop(&h).(time.Time)
			attempts++
			if now.After(t0) {
				buckets[int64(now.Sub(t0)/(drain/10))]++
			}
			ok, retry, _ := a.Admit(now)
			if ok {
				last = now
				continue
			}
			heap.Push(&h, now.Add(retry))
		}
		took := last.Sub(t0)
		t.Logf("%d clients at %v/s: all in after %v (ideal %v), %.2f attempts per client",
			tc.clients, tc.rate, took.Round(time.Millisecond), drain, float64(attempts)/float64(tc.clients))
		if took > time.Duration(float64(drain)*tc.slowdown) {
			t.Errorf("storm took %v to admit, over %vx the %v the rate needs", took, tc.slowdown, drain)
		}
		if per := float64(attempts) / float64(tc.clients); per > 4 {
			t.Errorf("%.1f attempts per client: retries are not spreading", per)
		}
		// Lockstep would put every retry in one tenth; spread retries put
		// about a tenth of them in each.
		t.Logf("retries per tenth of the drain time: %v", tenths(buckets))
		for b, n := range buckets {
			if n > (attempts-tc.clients)/4 {
				t.Errorf("%d of %d retries landed in tenth %d of the drain time", n, attempts-tc.clients, b)
			}
		}
	}
}

func tenths(buckets map[int64]int) []int {
	var out []int
	for b := int64(0); len(out) < len(buckets); b++ {
		out = append(out, buckets[b])
	}
	return out
}

func BenchmarkAdmit_Unlimited(b *testing.B) { benchmarkAdmit(b, AdmissionConfig{}) }
func BenchmarkAdmit_MaxConns(b *testing.B)  { benchmarkAdmit(b, AdmissionConfig{MaxConns: 1 << 30}) }
func BenchmarkAdmit_Rate(b *testing.B) {
	benchmarkAdmit(b, AdmissionConfig{Rate: 1e12, Burst: 1 << 30})
}

func benchmarkAdmit(b *testing.B, cfg AdmissionConfig) {
	a := NewAdmission(cfg)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _, _ := a.Admit(now); !ok {
				b.Fatal("refused")
			}
			a.Done()
		}
	})
}
