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
		name    string
		n       int
		wantMap bool // representation once n topics are in
	}{
		{"empty", 0, false},
		{"one", 1, false},
		{"at threshold", setSmallMax, false},
		{"just past threshold", setSmallMax + 1, true},
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
			if (s.big != nil) != tt.wantMap {
				t.Fatalf("map-backed = %v, want %v", s.big != nil, tt.wantMap)
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
				if s.Len() < setSmallBelow && s.big != nil {
					t.Fatalf("still map-backed at %d topics", s.Len())
				}
			}
		})
	}
}

// Between setSmallBelow and setSmallMax a set keeps whichever form it has,
// so one hovering at the threshold does not rebuild on every call.
func TestSetThresholdHysteresis(t *testing.T) {
	var s Set
	for i := range setSmallMax + 1 {
		s.Add(fmt.Sprint(i))
	}
	for range 10 {
		s.Remove("0")
		if s.big == nil {
			t.Fatal("fell back to a slice one below the threshold")
		}
		s.Add("0")
	}
}

func TestSetRangeStops(t *testing.T) {
	for _, n := range []int{setSmallMax, 50} {
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
			if s.small != nil || s.big != nil {
				t.Fatal("Clear kept memory")
			}
			wantSetContents(t, &s, map[string]bool{})
			if !s.Add("again") || !s.Has("again") {
				t.Fatal("a cleared Set is not usable")
			}
		})
	}
}
