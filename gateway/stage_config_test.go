package gateway

import (
	"context"
	"runtime"
	"testing"
)

// TestStageConfigAndMetrics: the node sizes its stage from the config
// (defaults: GOMAXPROCS workers, 1024 each), exports the stage's series,
// and Shutdown stops the workers.
func TestStageConfigAndMetrics(t *testing.T) {
	if c := (Config{}).withDefaults(); c.FanoutWorkers != runtime.GOMAXPROCS(0) || c.FanoutQueue != 1024 {
		t.Fatalf("defaults: %d workers, queue %d", c.FanoutWorkers, c.FanoutQueue)
	}
	g, err := New(Config{FanoutWorkers: 3, FanoutQueue: 7})
	if err != nil {
		t.Fatal(err)
	}
	if w, q := g.stage.Shape(); w != 3 || q != 7 || !g.stage.Synchronous() {
		t.Fatalf("stage: %d workers, queue %d, synchronous %v (memory broker)", w, q, g.stage.Synchronous())
	}
	mfs, err := g.registerMetrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[string]bool)
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, name := range []string{"subsock_fanout_queued", "subsock_fanout_queue_full_total", "subsock_fanout_blocked_seconds_total",
		"subsock_fanout_dropped_total", "subsock_fanout_duration_seconds"} {
		if !have[name] {
			t.Errorf("no %s in /metrics", name)
		}
	}
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !g.stage.Stopped() {
		t.Fatal("Shutdown left the stage running")
	}
}
