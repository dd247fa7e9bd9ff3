package bench

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"
)

// TestHistogramMergeAcrossWorkers is the trip workers → parent: each side
// records, encodes; the parent merges and must see exactly the union.
func TestHistogramMergeAcrossWorkers(t *testing.T) {
	tests := []struct {
		name    string
		workers [][]time.Duration
	}{
		{"one worker", [][]time.Duration{{time.Millisecond, 2 * time.Millisecond}}},
		{"disjoint ranges", [][]time.Duration{{50 * time.Microsecond, 80 * time.Microsecond}, {900 * time.Millisecond, 3 * time.Second}}},
		{"an empty worker", [][]time.Duration{{}, {time.Second}}},
		{"clamped outliers", [][]time.Duration{{0, time.Nanosecond}, {10 * time.Minute}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			merged, direct := newHist(), newHist()
			for _, vals := range tt.workers {
				h := newHist()
				for _, v := range vals {
					recordDur(h, v)
					recordDur(direct, v)
				}
				s, err := encodeHist(h)
				if err != nil {
					t.Fatal(err)
				}
				if err := mergeEncoded(merged, s); err != nil {
					t.Fatal(err)
				}
			}
			if !merged.Equals(direct) {
				t.Fatalf("merged histogram differs: count %d vs %d, max %d vs %d",
					merged.TotalCount(), direct.TotalCount(), merged.Max(), direct.Max())
			}
		})
	}
}

func TestMergeEncodedRejectsGarbage(t *testing.T) {
	if err := mergeEncoded(newHist(), ""); err != nil {
		t.Fatalf("empty string must add nothing: %v", err)
	}
	for _, s := range []string{"not base64!", "AAAA", "HISTFAAAAB"} {
		if err := mergeEncoded(newHist(), s); !errors.Is(err, ErrMalformed) {
			t.Errorf("mergeEncoded(%q) = %v, want ErrMalformed", s, err)
		}
	}
}

func TestSummarize(t *testing.T) {
	h := newHist()
	for i := 1; i <= 1000; i++ {
		recordDur(h, time.Duration(i)*time.Millisecond)
	}
	p := summarize(h)
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > want*0.002 {
			t.Errorf("%s = %v, want %v ±0.2%%", name, got, want)
		}
	}
	if p.Count != 1000 {
		t.Fatalf("count %d", p.Count)
	}
	near("p50", p.P50, 500)
	near("p90", p.P90, 900)
	near("p99", p.P99, 990)
	near("p99.9", p.P999, 999)
	near("max", p.Max, 1000)
	near("min", p.Min, 1)
	near("mean", p.Mean, 500.5)
	if z := summarize(newHist()); z != (Percentiles{}) {
		t.Fatalf("empty histogram summarised as %+v", z)
	}
}

func TestCDF(t *testing.T) {
	h := newHist()
	for i := 1; i <= 10000; i++ {
		recordDur(h, time.Duration(i)*time.Microsecond)
	}
	pts := cdf(h, 10)
	if len(pts) < 20 {
		t.Fatalf("only %d points", len(pts))
	}
	if pts[0].Q != 0 || pts[len(pts)-1].Q != 1 {
		t.Fatalf("points must run from q=0 to q=1: %+v … %+v", pts[0], pts[len(pts)-1])
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].Q < pts[i-1].Q || pts[i].Ms < pts[i-1].Ms {
			t.Fatalf("not monotonic at %d: %+v after %+v", i, pts[i], pts[i-1])
		}
	}
	if last := pts[len(pts)-1].Ms; math.Abs(last-10) > 0.01 {
		t.Fatalf("last point %v ms, want the 10 ms maximum", last)
	}
	if cdf(newHist(), 10) != nil {
		t.Fatal("an empty histogram has no CDF")
	}
}

func TestRecorderSteps(t *testing.T) {
	var r recorder
	var wg sync.WaitGroup
	// Readers on different shards and one shared shard, concurrently.
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b batch
			for i := range 100 {
				b.samples[b.n] = sample{lat: time.Duration(i+1) * time.Millisecond, step: i % 3}
				b.n++
				if b.full() {
					r.flush(c, int64(1000+c), &b)
				}
			}
			b.unstamped = 1
			r.flush(c, int64(1000+c), &b)
		}()
	}
	wg.Wait()
	var st workerStats
	r.fill(&st)
	if st.Received != 1600 || st.Unstamped != 16 {
		t.Fatalf("stats %+v", st)
	}
	want := []int64{16 * 34, 16 * 33, 16 * 33}
	for s, n := range want {
		if st.ReceivedByStep[s] != n {
			t.Errorf("step %d received %d, want %d", s, st.ReceivedByStep[s], n)
		}
		if st.LastRecvByStep[s] != 1015 {
			t.Errorf("step %d last receive %d, want 1015", s, st.LastRecvByStep[s])
		}
		if got := r.hist(s).TotalCount(); got != n {
			t.Errorf("step %d histogram holds %d, want %d", s, got, n)
		}
	}
	if got := r.hist(-1).TotalCount(); got != 1600 {
		t.Fatalf("all-steps histogram holds %d", got)
	}
	if got := r.hist(9).TotalCount(); got != 0 {
		t.Fatalf("an unseen step holds %d", got)
	}
}

func TestWorkerStatsAdd(t *testing.T) {
	a := workerStats{Connected: 1, ReceivedByStep: []int64{1}, LastRecvByStep: []int64{50},
		ServerCloses: map[int]int64{1013: 1}, ConnectStart: 100, ConnectEnd: 200}
	b := workerStats{Connected: 2, ReceivedByStep: []int64{2, 5}, LastRecvByStep: []int64{40, 60},
		ServerCloses: map[int]int64{1013: 2, 4000: 1}, Errors: map[string]int64{"timeout": 1}, ConnectStart: 90, ConnectEnd: 150}
	var sum workerStats
	sum.add(&a)
	sum.add(&b)
	if sum.Connected != 3 || sum.ReceivedByStep[0] != 3 || sum.ReceivedByStep[1] != 5 ||
		sum.LastRecvByStep[0] != 50 || sum.LastRecvByStep[1] != 60 ||
		sum.ServerCloses[1013] != 3 || sum.ServerCloses[4000] != 1 || sum.Errors["timeout"] != 1 ||
		sum.ConnectStart != 90 || sum.ConnectEnd != 200 {
		t.Fatalf("sum %+v", sum)
	}
}
