package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subsock/subsock/bench"
)

// TestSummarizeOrdersByScenario writes results out of order and expects
// summary.md in the order of the standard set.
func TestSummarizeOrdersByScenario(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []bench.Scenario{bench.ScenarioChurn, bench.ScenarioIdle, bench.ScenarioSteps} {
		r := &bench.Result{Name: string(s), Scenario: s, OK: true}
		if _, _, err := r.WriteFiles(dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := summarize(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	idle, steps, churn := strings.Index(out, "[idle]"), strings.Index(out, "[steps]"), strings.Index(out, "[churn]")
	if idle < 0 || !(idle < steps && steps < churn) {
		t.Fatalf("rows out of order:\n%s", out)
	}
	if err := summarize(t.TempDir()); err == nil {
		t.Fatal("an empty directory must be an error")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"-scenario", "nope", "-target", "ws://127.0.0.1:1/ws"}, 2},
		{[]string{"-target", "ws://10.1.2.3:80/ws"}, 2},
		{[]string{"-h"}, 0},
	}
	for _, tt := range tests {
		code, err := run(tt.args)
		if code != tt.code {
			t.Errorf("run(%q) = %d, %v; want %d", tt.args, code, err, tt.code)
		}
		if tt.code == 2 && (err == nil || errors.Is(err, flag.ErrHelp)) {
			t.Errorf("run(%q) must explain the bad flag, got %v", tt.args, err)
		}
	}
}
