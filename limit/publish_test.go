package limit

import (
	"testing"
	"time"
)

func TestNewPublishLimiter(t *testing.T) {
	for _, tc := range []struct {
		perSecond float64
		burst     int
		nilWant   bool
		wantBurst int
	}{
		{0, 10, true, 0},
		{-1, 10, true, 0},
		{10, 0, false, 10},
		{0.5, 0, false, 1},
		{10, 3, false, 3},
	} {
		l := NewPublishLimiter(tc.perSecond, tc.burst)
		if (l == nil) != tc.nilWant {
			t.Fatalf("NewPublishLimiter(%v, %d) = %v", tc.perSecond, tc.burst, l)
		}
		if l == nil {
			for range 1000 {
				if !Allow(l) {
					t.Fatal("nil limiter refused")
				}
			}
			continue
		}
		if l.Burst() != tc.wantBurst {
			t.Fatalf("burst %d, want %d", l.Burst(), tc.wantBurst)
		}
		// The whole burst goes through at once, then the bucket is dry.
		now := time.Now()
		for i := range tc.wantBurst {
			if !l.AllowN(now, 1) {
				t.Fatalf("publish %d of the burst refused", i)
			}
		}
		if l.AllowN(now, 1) {
			t.Fatal("publish past the burst allowed")
		}
		if !l.AllowN(now.Add(time.Duration(float64(time.Second)/tc.perSecond)), 1) {
			t.Fatal("no token after one interval")
		}
	}
}

func TestAllowUsesTheLimiter(t *testing.T) {
	l := NewPublishLimiter(1e-3, 2)
	got := []bool{Allow(l), Allow(l), Allow(l)}
	if !got[0] || !got[1] || got[2] {
		t.Fatalf("Allow over a burst of 2 = %v, want [true true false]", got)
	}
}
