package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
)

func TestOpenErrors(t *testing.T) {
	if _, err := Open(context.Background(), nil); !errors.Is(err, ErrNoSockets) {
		t.Fatalf("Open(nil) = %v", err)
	}
	n := startNode(t, "", gateway.Config{})
	_, err := Open(context.Background(), map[string]SocketConfig{
		"good": {URL: n.url()},
		"bad":  {URL: "ftp://nowhere"},
	})
	if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("err = %v, want ErrBadURL naming the socket", err)
	}
	ss, err := Open(context.Background(), map[string]SocketConfig{"only": {URL: n.url()}})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	if _, ok := ss.Lookup("other"); ok {
		t.Fatal("Lookup found an undeclared socket")
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `"other"`) {
			t.Fatalf("Get of an undeclared name: recover() = %v", r)
		}
	}()
	ss.Get("other")
}

// TestMicroSocketIsolation: what goes wrong on one socket stays there.
func TestMicroSocketIsolation(t *testing.T) {
	t.Run("its node goes down", func(t *testing.T) {
		prices, payments := startNode(t, "", gateway.Config{}), startNode(t, "", gateway.Config{})
		disconnected := make(chan error, 4)
		ss, err := Open(context.Background(), map[string]SocketConfig{
			"prices": {URL: prices.url(), Options: Options{Policy: Latest}},
			"payments": {URL: payments.url(), Options: Options{Policy: All, Buffer: 64,
				Backoff:      Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
				OnDisconnect: func(err error) { notify(disconnected, err) }}},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ss.Close() })
		pin, payin := newInbox(), newInbox()
		mustSubscribe(t, ss.Get("prices"), "prices.AAPL", pin.handler)
		mustSubscribe(t, ss.Get("payments"), "payments.settled", payin.handler)
		waitRoute(t, viaHTTP(t, prices, "prices.AAPL"), pin, "prices.AAPL")
		waitRoute(t, viaHTTP(t, payments, "payments.settled"), payin, "payments.settled")

		payments.stop()
		var ce *CloseError
		if err := await(t, disconnected, "the payments disconnect"); !errors.As(err, &ce) || ce.Code != 1001 {
			t.Fatalf("payments disconnected with %v, want 1001", err)
		}
		for i := range 5 {
			prices.publish(t, "prices.AAPL", payload{N: i})
			if _, p := pin.next(t); p.N != i {
				t.Fatalf("prices delivered %+v, want %d", p, i)
			}
		}
		st := ss.Stats()
		if !st["prices"].Connected || st["prices"].Connects != 1 || st["payments"].Connected {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("its handler is stuck", func(t *testing.T) {
		n := startNode(t, "", gateway.Config{})
		stuck := make(chan struct{})
		risk := newInbox()
		ss, err := Open(context.Background(), map[string]SocketConfig{
			"risk":   {URL: n.url(), Options: Options{Policy: All, Buffer: 8}},
			"prices": {URL: n.url(), Options: Options{Policy: Latest}},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ss.Close() })
		t.Cleanup(func() { close(stuck) }) // runs first: Close waits for handlers
		mustSubscribe(t, ss.Get("risk"), "alerts.risk", func(m Message) {
			var p payload
			if m.Decode(&p) == nil && p.Probe {
				risk.handler(m)
				return
			}
			<-stuck
		})
		pin := newInbox()
		mustSubscribe(t, ss.Get("prices"), "prices.MSFT", pin.handler)
		waitRoute(t, viaHTTP(t, n, "alerts.risk"), risk, "alerts.risk")
		waitRoute(t, viaHTTP(t, n, "prices.MSFT"), pin, "prices.MSFT")
		for i := range 50 {
			n.publish(t, "alerts.risk", payload{N: i})
		}
		for i := range 5 {
			n.publish(t, "prices.MSFT", payload{N: i})
			if _, p := pin.next(t); p.N != i {
				t.Fatalf("prices delivered %+v, want %d", p, i)
			}
		}
		// An acked request on the risk socket is answered after the 50
		// messages, so when it returns its reader has handled them all.
		if err := viaConn(ss.Get("risk"), "sync")(1); err != nil {
			t.Fatal(err)
		}
		// One in the stuck handler, 8 buffered, the rest dropped and counted.
		if st := ss.Stats()["risk"]; st.Dropped != 50-1-8 || !st.Connected {
			t.Fatalf("risk stats %+v: want 41 drops and the connection kept", st)
		}
	})
}
