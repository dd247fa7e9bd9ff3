package registry

import (
	"fmt"
	"testing"
)

// wantSetContents fails unless s holds exactly want, checked through every
// accessor.
func wantSetContents(t *testing.T, s *Set, want map[string]bool) {
	t.Helper()
	if s.Len() != len(want) {
		t.Fatalf("Len() = %d, want %d", s.Len(), len(want))
	}
	seen := map[string]bool{}
	s.Range(func(topic string) bool {
		if seen[topic] || !want[topic] {
			t.Fatalf("Range visited %q (duplicate or not a member)", topic)
		}
		seen[topic] = true
		return true
	})
	if len(seen) != len(want) {
		t.Fatalf("Range visited %d, want %d", len(seen), len(want))
	}
	for topic := range want {
		if !s.Has(topic) {
			t.Fatalf("Has(%q) = false", topic)
		}
	}
	if s.Has("absent") {
		t.Fatal(`Has("absent") = true`)
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		wantIndex bool // representation once n topics are in
	}{
		{"empty", 0, false},
		{"one", 1, false},
		{"at threshold", setThresholds.above, false},
		{"just past threshold", setThresholds.above + 1, true},
		{"hundred", 100, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Set
			want := map[string]bool{}
			for i := range tt.n {
				topic := fmt.Sprintf("t.%d", i)
				if !s.Add(topic) {
					t.Fatalf("Add(%q) = false on first add", topic)
				}
				if s.Add(topic) {
					t.Fatalf("Add(%q) = true on second add", topic)
				}
				want[topic] = true
			}
			wantSetContents(t, &s, want)
			if (s.d.idx != nil) != tt.wantIndex {
				t.Fatalf("indexed = %v, want %v", s.d.idx != nil, tt.wantIndex)
			}
			if s.Remove("absent") {
				t.Fatal(`Remove("absent") = true`)
			}
			// Remove from the end down so the set crosses back below the
			// threshold, checking contents on every step.
			for i := tt.n - 1; i >= 0; i-- {
				topic := fmt.Sprintf("t.%d", i)
				if !s.Remove(topic) {
					t.Fatalf("Remove(%q) = false", topic)
				}
				if s.Remove(topic) {
					t.Fatalf("Remove(%q) = true twice", topic)
				}
				delete(want, topic)
				wantSetContents(t, &s, want)
				if err := s.d.check(setSeed, setThresholds); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// Between setThresholds.below and .above a set keeps whichever form it
// has, so one hovering at the threshold does not rebuild on every call.
func TestSetThresholdHysteresis(t *testing.T) {
	var s Set
	for i := range setThresholds.above + 1 {
		s.Add(fmt.Sprint(i))
	}
	for range 10 {
		s.Remove("0")
		if s.d.idx == nil {
			t.Fatal("dropped the index one below the threshold")
		}
		s.Add("0")
	}
}

func TestSetRangeStops(t *testing.T) {
	for _, n := range []int{setThresholds.above, 50} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var s Set
			for i := range n {
				s.Add(fmt.Sprint(i))
			}
			calls := 0
			s.Range(func(string) bool {
				calls++
				return calls < 3
			})
			if calls != 3 {
				t.Fatalf("fn called %d times, want 3", calls)
			}
		})
	}
}

func TestSetClear(t *testing.T) {
	for _, n := range []int{0, 3, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var s Set
			for i := range n {
				s.Add(fmt.Sprint(i))
			}
			s.Clear()
			if s.d.items != nil || s.d.idx != nil {
				t.Fatal("Clear kept memory")
			}
			wantSetContents(t, &s, map[string]bool{})
			if !s.Add("again") || !s.Has("again") {
				t.Fatal("a cleared Set is not usable")
			}
		})
	}
}
