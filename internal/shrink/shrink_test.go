package shrink

import (
	"runtime"
	"strconv"
	"testing"
)

func TestWatermark(t *testing.T) {
	// Each step sets the map's length: up calls Grew, down calls Shrunk.
	type step struct {
		n       int
		rebuild bool // what Shrunk must answer (down steps only)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a small map never rebuilds", []step{{Floor, false}, {0, false}}},
		{"a map past Floor rebuilds under a quarter of its high", []step{{4 * Floor, false}, {Floor, false}, {Floor - 1, true}}},
		{"the mark restarts at the rebuilt length", []step{{8 * Floor, false}, {Floor, true}, {Floor / 4, false}}},
		{"the mark restarts, then follows growth again", []step{{8 * Floor, false}, {Floor, true}, {4 * Floor, false}, {Floor - 1, true}}},
		{"the quarter is of the high, not of the last length", []step{{8 * Floor, false}, {3 * Floor, false}, {4 * Floor, false}, {2*Floor - 1, true}}},
		{"emptying a large map at once rebuilds it", []step{{100 * Floor, false}, {0, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Watermark
			last := 0
			for i, s := range tt.steps {
				if s.n >= last {
					w.Grew(s.n)
				} else if got := w.Shrunk(s.n); got != s.rebuild {
					t.Fatalf("step %d: Shrunk(%d) = %v, want %v (high %d)", i, s.n, got, s.rebuild, w.high)
				}
				last = s.n
			}
		})
	}
}

func TestSlice(t *testing.T) {
	tests := []struct {
		name          string
		len, cap      int
		fresh         bool // a new array
		wantCapAtMost int
	}{
		{"small array kept", 0, Floor, false, Floor},
		{"small array kept however empty", 1, Floor, false, Floor},
		{"large array a quarter used kept", Floor, 4 * Floor, false, 4 * Floor},
		{"large array less used copied out", Floor - 1, 4 * Floor, true, 2 * (Floor - 1)},
		{"large empty array dropped", 0, 4 * Floor, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := make([]int, tt.len, tt.cap)
			for i := range s {
				s[i] = i + 1
			}
			got := Slice(s)
			if len(got) != tt.len {
				t.Fatalf("len %d, want %d", len(got), tt.len)
			}
			if cap(got) > tt.wantCapAtMost {
				t.Fatalf("cap %d, want at most %d", cap(got), tt.wantCapAtMost)
			}
			if shared := cap(got) > 0 && &got[:1][0] == &s[:1][0]; shared == tt.fresh {
				t.Fatalf("shares the old array: %v, want %v", shared, !tt.fresh)
			}
			for i, v := range got {
				if v != i+1 {
					t.Fatalf("element %d is %d, want %d", i, v, i+1)
				}
			}
		})
	}
}

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Map's copy holds its entries in memory sized for them, where the map it
// copies keeps the tables of its largest size.
func TestMapIsSizedForItsEntries(t *testing.T) {
	const n, keep = 100_000, 10
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k." + strconv.Itoa(i)
	}
	base := liveHeap()
	m := make(map[string]int)
	for i, k := range keys {
		m[k] = i
	}
	for _, k := range keys[keep:] {
		delete(m, k)
	}
	big := liveHeap() - base
	m = Map(m)
	small := liveHeap() - base
	if len(m) != keep {
		t.Fatalf("len %d, want %d", len(m), keep)
	}
	for i, k := range keys[:keep] {
		if m[k] != i {
			t.Fatalf("m[%q] = %d, want %d", k, m[k], i)
		}
	}
	t.Logf("%d entries left of %d: %d bytes before Map, %d after", keep, n, big, small)
	if small > 16<<10 || small*100 > big {
		t.Fatalf("the copy takes %d bytes, want under 16 KiB and 1%% of the %d the emptied map held", small, big)
	}
}
