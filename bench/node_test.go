package bench

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestParseStatusRSS(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
		err  bool
	}{
		{"typical", "Name:\tsubsock\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n", 12345 << 10, false},
		{"zero", "VmRSS:\t0 kB\n", 0, false},
		{"missing", "Name:\tx\n", 0, true},
		{"bad unit", "VmRSS:\t12 MB\n", 0, true},
		{"bad number", "VmRSS:\tx kB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatusRSS([]byte(tt.in))
			if tt.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	rest := " S 1 2 3 4 5 6 7 8 9 10 250 70 0 0 20 0 9 0 100 200 300"
	tests := []struct {
		name string
		in   string
		want int64
		err  bool
	}{
		{"plain name", "4242 (subsock)" + rest, 320, false},
		{"name with spaces and parens", "4242 (a) b (c))" + rest, 320, false},
		{"no paren", "4242 subsock S 1", 0, true},
		{"too few fields", "4242 (x) S 1 2 3", 0, true},
		{"bad number", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 x 70 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.in))
			if tt.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// TestParseStatCPUSelf reads this process's own stat file.
func TestParseStatCPUSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	if _, err := parseStatCPU(b); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if rss, err := parseStatusRSS(b); err != nil || rss <= 0 {
		t.Fatalf("own RSS %d, %v", rss, err)
	}
}

const sampleMetrics = `# HELP subsock_connections Open WebSocket connections.
# TYPE subsock_connections gauge
subsock_connections 15000
subsock_subscriptions 150000
go_memstats_heap_inuse_bytes 7.5e+07
process_cpu_seconds_total 12.34 1700000000000
subsock_fanout_duration_seconds_bucket{le="1e-06"} 0
subsock_fanout_duration_seconds_bucket{le="+Inf", x="a b"} 9
go_gc_duration_seconds{quantile="0.5"} NaN
subsock_weird +Inf
`

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics([]byte(sampleMetrics))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"subsock_connections": 15000, "subsock_subscriptions": 150000,
		"go_memstats_heap_inuse_bytes": 75e6, "process_cpu_seconds_total": 12.34,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if _, ok := m["subsock_fanout_duration_seconds_bucket"]; ok {
		t.Error("labelled series must be skipped")
	}
	for _, bad := range []string{"lonely_name\n", "name notanumber\n"} {
		if _, err := parseMetrics([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseMetrics(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add([]byte(sampleMetrics))
	f.Add([]byte("a 1\nb{c=\"d\"} 2\n# x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMetrics(b)
		if err == nil && m == nil {
			t.Fatal("nil map without an error")
		}
	})
}

// TestProbe reads RSS and CPU from a fake /proc and, without a PID, from
// two targets' /metrics, which it sums.
func TestProbe(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "77"), 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "77", "status"), []byte("VmRSS:\t2048 kB\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "77", "stat"), []byte("77 (n) S 1 2 3 4 5 6 7 8 9 10 150 50 0"), 0o644))
	p := newProbe(77, nil)
	p.procDir = dir
	if rss, err := p.rss(ctx); err != nil || rss != 2048<<10 {
		t.Fatalf("rss %d, %v", rss, err)
	}
	if cpu, err := p.cpu(ctx); err != nil || cpu != 2 {
		t.Fatalf("cpu %v, %v", cpu, err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("process_resident_memory_bytes 1000\nprocess_cpu_seconds_total 1.5\n"))
	}))
	defer srv.Close()
	target := "ws://" + srv.Listener.Addr().String() + "/ws"
	p = newProbe(0, []string{target, target})
	if rss, err := p.rss(ctx); err != nil || rss != 2000 {
		t.Fatalf("rss over two targets %d, %v", rss, err)
	}
	if cpu, err := p.cpu(ctx); err != nil || cpu != 3 {
		t.Fatalf("cpu over two targets %v, %v", cpu, err)
	}
}
