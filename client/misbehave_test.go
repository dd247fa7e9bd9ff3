package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/subsock/subsock/proto"
)

// These tests need servers that misbehave on purpose, which a gateway
// never does: they use plain HTTP handlers and coder/websocket's Accept.

// wsURL turns an httptest URL into its WebSocket form.
func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws" }

// notify sends without blocking: the test reads what it needs.
func notify[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}

func await[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestPingDetectsSilentServer(t *testing.T) {
	tests := []struct {
		name    string
		answers bool // the server answers app-level pings
	}{
		{"server answers pings", true},
		{"silent server", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var accepts atomic.Int32
			accepted := make(chan struct{}, 8)
			pings := make(chan struct{}, 64)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{proto.SubprotocolJSON}})
				if err != nil {
					return
				}
				defer ws.CloseNow()
				accepts.Add(1)
				notify(accepted, struct{}{})
				for {
					_, b, err := ws.Read(context.Background())
					if err != nil {
						return
					}
					var req proto.Request
					if proto.JSON.DecodeRequest(b, &req) != nil || req.Op != proto.OpPing {
						continue
					}
					notify(pings, struct{}{})
					if tt.answers {
						_ = ws.Write(context.Background(), websocket.MessageText, proto.JSON.AppendPong(nil, 0, false))
					}
				}
			}))
			t.Cleanup(srv.Close)
			disconnects := make(chan error, 8)
			c, err := Dial(context.Background(), wsURL(srv), Options{
				PingInterval: 10 * time.Millisecond,
				PingTimeout:  10 * time.Millisecond,
				Backoff:      Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond},
				OnDisconnect: func(err error) { notify(disconnects, err) },
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			await(t, accepted, "the first connection")
			if tt.answers {
				// Ten answered pings span several timeouts; still one connection.
				for range 10 {
					await(t, pings, "a ping")
				}
				if n := accepts.Load(); n != 1 {
					t.Fatalf("%d connections, want 1: an answering server was taken as silent", n)
				}
				return
			}
			if err := await(t, disconnects, "a disconnect"); !errors.Is(err, ErrServerSilent) {
				t.Fatalf("disconnected with %v, want ErrServerSilent", err)
			}
			await(t, accepted, "the reconnection")
		})
	}
}

func TestDialRefusals(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		opts    Options
		check   func(t *testing.T, err error)
	}{
		{
			name: "401 is final",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer good" {
					http.Error(w, "bad token", http.StatusUnauthorized)
				}
			},
			opts: Options{Token: func(context.Context) (string, error) { return "bad", nil }},
			check: func(t *testing.T, err error) {
				var he *HandshakeError
				if !errors.As(err, &he) || he.Status != http.StatusUnauthorized || he.Reason != "bad token" {
					t.Fatalf("err = %v, want a 401 HandshakeError with the reason", err)
				}
			},
		},
		{
			name: "subprotocol refused",
			handler: func(w http.ResponseWriter, r *http.Request) {
				ws, err := websocket.Accept(w, r, nil) // picks no subprotocol: JSON
				if err == nil {
					_ = ws.CloseNow()
				}
			},
			opts: Options{Codec: proto.Msgpack},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrSubprotocol) {
					t.Fatalf("err = %v, want ErrSubprotocol", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, wsURL(srv), tt.opts)
			if err == nil {
				_ = c.Close()
				t.Fatal("Dial succeeded")
			}
			if ctx.Err() != nil {
				t.Fatalf("Dial retried until its deadline instead of failing at once: %v", err)
			}
			tt.check(t, err)
		})
	}
}

func TestDialBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://host/ws", "ws://", "::nope", "localhost:8080/ws"} {
		if _, err := Dial(context.Background(), u, Options{}); !errors.Is(err, ErrBadURL) {
			t.Errorf("Dial(%q) = %v, want ErrBadURL", u, err)
		}
	}
}

func TestDialGivesUpWithItsContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = Dial(ctx, "ws://"+addr+"/ws", Options{Backoff: Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last attempt") {
		t.Fatalf("err = %v, want the deadline and the last attempt's failure", err)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	var (
		mu    sync.Mutex
		times []time.Time
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "at the connection limit", http.StatusServiceUnavailable)
			return
		}
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{proto.SubprotocolJSON}})
		if err != nil {
			return
		}
		_, _, _ = ws.Read(context.Background()) // until the client closes
		_ = ws.CloseNow()
	}))
	t.Cleanup(srv.Close)
	refusals := make(chan error, 4)
	c, err := Dial(context.Background(), wsURL(srv), Options{
		Backoff: Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond},
		OnError: func(err error) { notify(refusals, err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var he *HandshakeError
	if err := await(t, refusals, "the refusal"); !errors.As(err, &he) || he.Status != 503 || he.RetryAfter != time.Second {
		t.Fatalf("refusal = %v, want a 503 HandshakeError with RetryAfter 1s", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 {
		t.Fatalf("%d attempts, want 2", len(times))
	}
	// Without the hint the backoff (Max 10ms) would have retried at once.
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Fatalf("retried after %v, before the server's Retry-After of 1s", gap)
	}
	t.Logf("retried %v after a 503 with Retry-After: 1", times[1].Sub(times[0]))
}

func TestStalledWriteEndsConnection(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{proto.SubprotocolJSON}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		<-release // never reads: the client's writes pile up in the socket buffers
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	disconnects := make(chan error, 4)
	c, err := Dial(context.Background(), wsURL(srv), Options{
		WriteTimeout: 50 * time.Millisecond,
		PingInterval: -1,
		Backoff:      Backoff{Min: time.Hour, Max: time.Hour},
		OnDisconnect: func(err error) { notify(disconnects, err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	big := Raw(`"` + strings.Repeat("x", 64<<10) + `"`)
	for i := 0; ; i++ {
		err := c.Publish(context.Background(), "bulk", big)
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("publish %d: %v, want ErrConnectionLost", i, err)
		}
		t.Logf("publish %d (%d KiB written) found the connection stalled", i, i*64)
		break
	}
	if err := await(t, disconnects, "the disconnect"); !errors.Is(err, ErrWriteTimeout) {
		t.Fatalf("disconnected with %v, want ErrWriteTimeout", err)
	}
}
