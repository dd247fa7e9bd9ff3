package testserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// refused reports whether nothing listens on addr any more.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// Every helper must give a server that answers, goes away on Stop and comes
// back on the same address on Start.
func TestStopStartSameAddress(t *testing.T) {
	tests := []struct {
		name   string
		start  func(testing.TB) *Server
		scheme string
		check  func(t *testing.T, s *Server)
	}{
		{"redis", Redis, "redis://", func(t *testing.T, s *Server) {
			t.Helper()
			if err := redisPing(ctxT(t), s.Addr); err != nil {
				t.Fatalf("ping: %v", err)
			}
		}},
		{"nats", NATS, "nats://", func(t *testing.T, s *Server) {
			t.Helper()
			if err := natsInfo(ctxT(t), s.Addr); err != nil {
				t.Fatalf("info: %v", err)
			}
			resp, err := http.Get("http://" + s.MonitorAddr + "/varz")
			if err != nil {
				t.Fatalf("varz: %v", err)
			}
			defer resp.Body.Close()
			var v struct {
				Port int `json:"port"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
				t.Fatalf("varz: %v", err)
			}
			if _, port, _ := net.SplitHostPort(s.Addr); port != strconv.Itoa(v.Port) {
				t.Fatalf("varz port %d, server on %s", v.Port, s.Addr)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.start(t)
			if !strings.HasPrefix(s.URL, tt.scheme) || !strings.HasSuffix(s.URL, s.Addr) {
				t.Fatalf("URL %q for addr %q", s.URL, s.Addr)
			}
			tt.check(t, s)
			s.Stop()
			if s.Running() {
				t.Fatal("running after Stop")
			}
			if !refused(s.Addr) {
				t.Fatalf("%s still accepts after Stop", s.Addr)
			}
			s.Stop() // idempotent
			addr := s.Addr
			s.Start()
			if s.Addr != addr {
				t.Fatalf("restarted on %s, was %s", s.Addr, addr)
			}
			tt.check(t, s)
		})
	}
}

// Kill, Pause and Resume are the faults backbone tests inject: a crash the
// server comes back from on the same address, and a hang.
func TestKillPauseResume(t *testing.T) {
	s := Redis(t)
	s.Kill()
	if s.Running() {
		t.Fatal("running after Kill")
	}
	if !refused(s.Addr) {
		t.Fatalf("%s still accepts after Kill", s.Addr)
	}
	s.Kill() // idempotent
	s.Start()
	if err := redisPing(ctxT(t), s.Addr); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}

	s.Pause()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := redisPing(ctx, s.Addr); err == nil {
		t.Fatal("a paused server answered PING")
	}
	s.Resume()
	if err := redisPing(ctxT(t), s.Addr); err != nil {
		t.Fatalf("ping after Resume: %v", err)
	}

	// A server left paused still stops (at cleanup, say) without waiting
	// out the stop timeout.
	s.Pause()
	start := time.Now()
	s.Stop()
	if d := time.Since(start); d >= stopTimeout {
		t.Fatalf("Stop of a paused server took %v", d)
	}
}

func TestRedisCluster(t *testing.T) {
	c := RedisCluster(t)
	if len(c.Addrs) != clusterSize || len(c.Nodes) != clusterSize {
		t.Fatalf("%d addrs, %d nodes", len(c.Addrs), len(c.Nodes))
	}
	if want := "redis-cluster://" + strings.Join(c.Addrs, ","); c.URL != want {
		t.Fatalf("URL %q, want %q", c.URL, want)
	}
	for _, a := range c.Addrs {
		info, err := redisDo(ctxT(t), a, "CLUSTER", "INFO")
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			t.Fatalf("%s: %v %q", a, err, info)
		}
	}
	c.Stop()
	for _, a := range c.Addrs {
		if !refused(a) {
			t.Fatalf("%s still accepts after Stop", a)
		}
	}
	c.Start() // returns only once cluster_state:ok on every node
	for _, a := range c.Addrs {
		// The slot map survived the restart: a key is served somewhere.
		if _, err := redisDo(ctxT(t), a, "CLUSTER", "COUNTKEYSINSLOT", "0"); err != nil {
			t.Fatalf("%s after restart: %v", a, err)
		}
	}
}

func TestRedisDoErrorReply(t *testing.T) {
	s := Redis(t)
	_, err := redisDo(ctxT(t), s.Addr, "NOSUCHCOMMAND")
	if err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("err = %v, want an unknown command error", err)
	}
}

func TestMissingBinaryNamesInstallScript(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		lookBin(ft, "redis-server")
	}()
	<-done
	if !strings.Contains(ft.msg, "scripts/install-deps.sh") || !strings.Contains(ft.msg, "redis-server") {
		t.Fatalf("failure message %q does not name the binary and scripts/install-deps.sh", ft.msg)
	}
}

// fatalRecorder captures Fatalf and ends the goroutine as the real one would.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
