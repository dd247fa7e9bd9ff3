package bench

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestAppendPresenceStatsRequest(t *testing.T) {
	got := string(appendPresenceStatsRequest([]byte("x"), 7, "storm.0"))
	if want := `x{"op":"presence_stats","id":7,"topic":"storm.0"}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// playNode plays the node on the first WebSocket accepted (see fakeNode).
func playNode(t *testing.T, serve func(t *testing.T, c net.Conn)) string {
	t.Helper()
	target, accepted := fakeNode(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, ok := <-accepted; ok {
			defer c.Close()
			serve(t, c)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(5 * time.Second): // no client came: fakeNode's cleanup ends the wait
		}
	})
	return target
}

// TestAskPresenceStats: the client sends one request, answers pings, lets
// events and other replies pass, takes the counts from the ack with its id
// and closes with 1000.
func TestAskPresenceStats(t *testing.T) {
	target := playNode(t, func(t *testing.T, c net.Conn) {
		req := readClientFrame(t, c)
		if string(req.Payload) != `{"op":"presence_stats","id":1,"topic":"bench.0"}` {
			t.Errorf("request %q", req.Payload)
		}
		var out []byte
		out = append(out, serverFrame(t, ws.OpPing, []byte("p"))...)
		out = append(out, serverFrame(t, ws.OpText, []byte(`{"op":"join","topic":"bench.0","client":"n-1","user":""}`))...)
		out = append(out, serverFrame(t, ws.OpText, []byte(`{"op":"ack","id":9}`))...)
		out = append(out, serverFrame(t, ws.OpText, []byte(`{"op":"ack","id":1,"clients":10000,"users":1}`))...)
		if _, err := c.Write(out); err != nil {
			t.Error(err)
			return
		}
		if f := readClientFrame(t, c); f.Header.OpCode != ws.OpPong || string(f.Payload) != "p" {
			t.Errorf("answer to ping: %v %q", f.Header.OpCode, f.Payload)
		}
		f := readClientFrame(t, c)
		if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != ws.StatusNormalClosure {
			t.Errorf("close: %v %d", f.Header.OpCode, code)
		}
		_, _ = c.Write(serverFrame(t, ws.OpClose, f.Payload))
	})
	clients, users, err := askPresenceStats(context.Background(), target, "bench.0", 5*time.Second)
	if err != nil || clients != 10000 || users != 1 {
		t.Fatalf("clients %d users %d err %v", clients, users, err)
	}
}

func TestAskPresenceStatsRefused(t *testing.T) {
	tests := []struct {
		name   string
		answer []byte
		want   string
		is     error
	}{
		{"not enabled", []byte(`{"op":"err","id":1,"code":"not_enabled","msg":"presence is not enabled on bench.0"}`), "err not_enabled: presence is not enabled", nil},
		{"ack without counts", []byte(`{"op":"ack","id":1}`), "presence_stats answer", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := playNode(t, func(t *testing.T, c net.Conn) {
				readClientFrame(t, c)
				_, _ = c.Write(serverFrame(t, ws.OpText, tt.answer))
				readClientFrame(t, c) // the close
			})
			_, _, err := askPresenceStats(context.Background(), target, "bench.0", 5*time.Second)
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// TestAskPresenceStatsBounded: a node that never answers costs the
// timeout, no more.
func TestAskPresenceStatsBounded(t *testing.T) {
	target := playNode(t, func(t *testing.T, c net.Conn) {
		readClientFrame(t, c)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Read(make([]byte, 64)) // until the client gives up
	})
	t0 := time.Now()
	_, _, err := askPresenceStats(context.Background(), target, "bench.0", 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || time.Since(t0) > 3*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(t0))
	}
}

func TestJudgePresence(t *testing.T) {
	tests := []struct {
		pc   PresenceCheck
		ok   bool
		note string
	}{
		{PresenceCheck{Topic: "bench.0", Want: 10000, Clients: 10000, Users: 1}, true, ""},
		{PresenceCheck{Topic: "bench.0", Want: 10000, Clients: 9999, Users: 1}, false, "counted 9999 clients, the harness had 10000"},
		{PresenceCheck{Topic: "bench.0", Want: 10, Err: "err not_enabled: no rule"}, false, "got no count: err not_enabled"},
	}
	for _, tt := range tests {
		pc := tt.pc
		r := &runner{res: &Result{Presence: &pc}}
		if ok := r.judgePresence(); ok != tt.ok {
			t.Errorf("%+v: ok %v", tt.pc, ok)
		}
		if tt.note != "" && (len(r.res.Notes) != 1 || !strings.Contains(r.res.Notes[0], tt.note)) {
			t.Errorf("%+v: notes %q, want %q", tt.pc, r.res.Notes, tt.note)
		}
	}
}
