package broker

import (
	"errors"
	"sync"
	"testing"
)

// TestHealthEpoch: a recovery reports health only if nothing was lost since
// the state it started from was loaded.
func TestHealthEpoch(t *testing.T) {
	errDown := errors.New("down")
	tests := []struct {
		name string
		// run acts on h and returns the epoch to recover from.
		run       func(h *health) uint64
		recovered bool
	}{
		{"never lost", func(h *health) uint64 { return h.load().epoch }, true},
		{"lost, recovered after", func(h *health) uint64 {
			h.lose(errDown)
			return h.load().epoch
		}, true},
		{"lost again during the recovery", func(h *health) uint64 {
			h.lose(errDown)
			e := h.load().epoch
			h.lose(errDown)
			return e
		}, false},
		{"recovery loaded before the loss", func(h *health) uint64 {
			e := h.load().epoch
			h.lose(errDown)
			return e
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h health
			e := tt.run(&h)
			if got := h.recovered(e); got != tt.recovered {
				t.Fatalf("recovered(%d) = %v, want %v", e, got, tt.recovered)
			}
			if err := h.load().err; (err == nil) != tt.recovered {
				t.Fatalf("err after recovered = %v, want nil: %v", err, tt.recovered)
			}
		})
	}
}

// TestHealthConcurrentLoss: losses racing with a recovery are never erased
// by it; every lose either lands after the recovery or makes it fail.
func TestHealthConcurrentLoss(t *testing.T) {
	var h health
	errDown := errors.New("down")
	for range 1000 {
		h.lose(errDown)
		e := h.load().epoch
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.lose(errDown)
		}()
		ok := h.recovered(e)
		wg.Wait()
		if h.load().err == nil {
			t.Fatalf("a loss was erased (recovered = %v)", ok)
		}
	}
}
