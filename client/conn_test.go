package client

import (
	"bytes"
	"context"
	"errors"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/proto"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		sub, pub proto.Codec
	}{
		{"json", proto.JSON, proto.JSON},
		{"msgpack", proto.Msgpack, proto.Msgpack},
		{"json to msgpack", proto.JSON, proto.Msgpack},
		{"msgpack to json", proto.Msgpack, proto.JSON},
	}
	n := startNode(t, "", gateway.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := "chat." + strings.ReplaceAll(tt.name, " ", "_")
			sub := openConn(t, n.url(), Options{Codec: tt.sub})
			pub := openConn(t, n.url(), Options{Codec: tt.pub})
			in := newInbox()
			mustSubscribe(t, sub, topic, in.handler)
			waitRoute(t, viaConn(pub, topic), in, topic)
			before := sub.Stats()
			for i := range 3 {
				if err := pub.Publish(context.Background(), topic, payload{N: i, Text: text(i)}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 3 {
				m, p := in.next(t)
				if m.Topic != topic || p.N != i || p.Text != text(i) {
					t.Fatalf("got %s %+v, want %s %d %q", m.Topic, p, topic, i, text(i))
				}
				// The data arrives in the subscriber's codec, whatever the publisher's.
				if err := proto.ValidData(m.Data, tt.sub.Format()); err != nil {
					t.Fatalf("data %x is not %v: %v", m.Data, tt.sub.Format(), err)
				}
			}
			st := sub.Stats()
			if !st.Connected || st.Connects != 1 || st.Subscriptions != 1 ||
				st.Received-before.Received != 3 || st.Delivered-before.Delivered != 3 {
				t.Fatalf("subscriber stats %+v (before %+v)", st, before)
			}
			if ps := pub.Stats(); ps.Published < 4 {
				t.Fatalf("publisher stats %+v", ps)
			}
		})
	}
}

func TestUnsubscribe(t *testing.T) {
	n := startNode(t, "", gateway.Config{})
	c := openConn(t, n.url(), Options{})
	gone, kept := newInbox(), newInbox()
	mustSubscribe(t, c, "news.gone", gone.handler)
	mustSubscribe(t, c, "news.kept", kept.handler)
	waitRoute(t, viaHTTP(t, n, "news.gone"), gone, "news.gone")
	waitRoute(t, viaHTTP(t, n, "news.kept"), kept, "news.kept")
	if err := c.Unsubscribe(context.Background(), "news.gone"); err != nil {
		t.Fatal(err)
	}
	if got := n.publish(t, "news.gone", payload{N: 1}); got != 0 {
		t.Fatalf("the node still counts %d subscribers after the unsub ack", got)
	}
	before := c.Stats()
	n.publish(t, "news.kept", payload{N: 2})
	// One connection, one order: had news.gone been sent, it would have
	// been read before news.kept.
	if _, p := kept.next(t); p.N != 2 {
		t.Fatalf("kept got %+v", p)
	}
	st := c.Stats()
	if st.Received-before.Received != 1 || st.Subscriptions != 1 || len(gone) != 0 {
		t.Fatalf("stats %+v (before %+v), %d on the unsubscribed topic", st, before, len(gone))
	}
	if err := c.Unsubscribe(context.Background(), "never.subscribed"); err != nil {
		t.Fatalf("unsubscribing an unknown topic: %v", err)
	}
}

func TestPublishAckAndServerErrors(t *testing.T) {
	n := startNode(t, "", gateway.Config{})
	acked := openConn(t, n.url(), Options{AckPublish: true})
	plain := openConn(t, n.url(), Options{})
	tests := []struct {
		name  string
		topic string
		code  proto.Code // "" for success
	}{
		{"valid", "orders.new", ""},
		{"space", "bad topic", proto.CodeInvalidTopic},
		{"empty segment", "a..b", proto.CodeInvalidTopic},
		{"wildcard segment", "prices.>", proto.CodeInvalidTopic},
		{"empty", "", proto.CodeInvalidTopic},
	}
	modes := []struct {
		name    string
		publish func(topic string) error
	}{
		{"AckPublish", func(topic string) error { return acked.Publish(context.Background(), topic, payload{N: 1}) }},
		{"ctx deadline", func(topic string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return plain.Publish(ctx, topic, payload{N: 1})
		}},
	}
	for _, mode := range modes {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				err := mode.publish(tt.topic)
				if tt.code == "" {
					if err != nil {
						t.Fatalf("publish: %v", err)
					}
					return
				}
				var se *ServerError
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want a *ServerError", err)
				}
				if se.Code != tt.code || se.Op != "pub" || se.Topic != tt.topic || se.Msg == "" {
					t.Fatalf("err = %+v, want code %s for pub %q", se, tt.code, tt.topic)
				}
			})
		}
	}
	t.Run("unacked refusal reaches OnError", func(t *testing.T) {
		errs := make(chan error, 4)
		c := openConn(t, n.url(), Options{OnError: func(err error) { notify(errs, err) }})
		if err := c.Publish(context.Background(), "bad topic", 1); err != nil {
			t.Fatalf("an unacked publish returned %v", err)
		}
		var se *ServerError
		if err := await(t, errs, "the refusal"); !errors.As(err, &se) || se.Code != proto.CodeInvalidTopic {
			t.Fatalf("OnError got %v, want invalid_topic", err)
		}
	})
	t.Run("subscribe refused", func(t *testing.T) {
		err := plain.Subscribe(context.Background(), "a..b", func(Message) {})
		var se *ServerError
		if !errors.As(err, &se) || se.Code != proto.CodeInvalidTopic || se.Op != "sub" || se.Topic != "a..b" {
			t.Fatalf("err = %v, want invalid_topic for sub a..b", err)
		}
		if st := plain.Stats(); st.Subscriptions != 0 {
			t.Fatalf("a refused topic is kept: %+v", st)
		}
	})
}

func TestTokenAndRefresh(t *testing.T) {
	secret := []byte("test secret, 32 bytes long......")
	sign := func(subs ...string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "tester", "subs": subs, "pubs": subs, "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	n := startNode(t, "", gateway.Config{Security: gateway.SecurityConfig{JWT: auth.Config{Secret: secret}}})

	t.Run("no token", func(t *testing.T) {
		_, err := Dial(context.Background(), n.url(), Options{})
		var he *HandshakeError
		if !errors.As(err, &he) || he.Status != 401 {
			t.Fatalf("err = %v, want a 401 HandshakeError", err)
		}
	})

	var current atomic.Value // the token the provider hands out
	current.Store(sign("news.*", "sports.*"))
	var calls atomic.Int32
	errs := make(chan error, 8)
	c := openConn(t, n.url(), Options{
		Token: func(context.Context) (string, error) {
			calls.Add(1)
			return current.Load().(string), nil
		},
		OnError: func(err error) { notify(errs, err) },
	})
	mustSubscribe(t, c, "news.a", func(Message) {})
	mustSubscribe(t, c, "sports.b", func(Message) {})
	var se *ServerError
	if err := c.Subscribe(context.Background(), "weather.x", func(Message) {}); !errors.As(err, &se) || se.Code != proto.CodeForbidden {
		t.Fatalf("subscribe outside the token: %v, want forbidden", err)
	}
	current.Store(sign("sports.*"))
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 {
		t.Fatalf("token provider called %d times, want 2 (connect, refresh)", calls.Load())
	}
	// The node drops what the new token no longer allows and says so.
	if err := await(t, errs, "the dropped subscription"); !errors.As(err, &se) || se.Code != proto.CodeForbidden || !strings.Contains(se.Msg, "news.a") {
		t.Fatalf("OnError got %v, want forbidden naming news.a", err)
	}
	if got := n.publish(t, "news.a", 1); got != 0 {
		t.Fatalf("news.a still has %d subscribers", got)
	}
	if got := n.publish(t, "sports.b", 1); got != 1 {
		t.Fatalf("sports.b has %d subscribers, want 1", got)
	}
	current.Store("not a jwt")
	if err := c.Refresh(context.Background()); !errors.As(err, &se) || se.Code != proto.CodeForbidden || se.Op != "auth" {
		t.Fatalf("refresh with a bad token: %v, want forbidden", err)
	}
}

// slowHandler blocks on the message numbered 1 until the test ends or
// release is called, and passes every other non-probe payload to seen.
type slowHandler struct {
	probes  inbox
	entered chan struct{}
	gate    chan struct{}
	seen    chan payload
}

func newSlowHandler(t *testing.T) *slowHandler {
	h := &slowHandler{probes: newInbox(), entered: make(chan struct{}, 1), gate: make(chan struct{}), seen: make(chan payload, 256)}
	return h
}

func (h *slowHandler) handle(m Message) {
	var p payload
	if err := m.Decode(&p); err != nil {
		return
	}
	if p.Probe {
		h.probes <- m
		return
	}
	if p.N == 1 {
		h.entered <- struct{}{}
		<-h.gate
	}
	h.seen <- p
}

// expect reads the next payloads and checks their numbers.
func (h *slowHandler) expect(t *testing.T, want ...int) {
	t.Helper()
	for _, w := range want {
		if p := await(t, h.seen, "a delivery"); p.N != w {
			t.Fatalf("delivered %d, want %d (sequence %v)", p.N, w, want)
		}
	}
}

// TestDeliveryPolicies: the subscriber publishes to itself with acks on
// its own connection, so when Publish returns the reader has already
// queued (or dropped, or coalesced) the message: the figures are exact.
func TestDeliveryPolicies(t *testing.T) {
	n := startNode(t, "", gateway.Config{})
	t.Run("Latest under a slow handler", func(t *testing.T) {
		h := newSlowHandler(t)
		c := openConn(t, n.url(), Options{Policy: Latest, AckPublish: true})
		t.Cleanup(func() { close(h.gate) }) // runs before the Conn's Close
		mustSubscribe(t, c, "px.aapl", h.handle)
		pub := viaConn(c, "px.aapl")
		waitRoute(t, pub, h.probes, "px.aapl")
		before := c.Stats()
		if err := pub(payload{N: 1}); err != nil {
			t.Fatal(err)
		}
		await(t, h.entered, "the handler")
		for i := 2; i <= 100; i++ {
			if err := pub(payload{N: i}); err != nil {
				t.Fatal(err)
			}
		}
		st := c.Stats()
		// 2 took the free slot; 3..100 each replaced the one before.
		if got := st.Coalesced - before.Coalesced; got != 98 || st.Queued != 1 || st.Dropped != 0 {
			t.Fatalf("coalesced %d, queued %d, dropped %d; want 98, 1, 0", got, st.Queued, st.Dropped)
		}
		h.gate <- struct{}{}
		h.expect(t, 1, 100)
		if err := pub(payload{N: 101}); err != nil {
			t.Fatal(err)
		}
		h.expect(t, 101)
		t.Logf("Latest: handler saw 1, 100, 101 of 101; coalesced %d", st.Coalesced-before.Coalesced)
	})
	t.Run("All overflow is reported", func(t *testing.T) {
		h := newSlowHandler(t)
		var reported atomic.Int32
		c := openConn(t, n.url(), Options{Policy: All, Buffer: 4, AckPublish: true, OnError: func(err error) {
			if errors.Is(err, ErrBufferFull) && strings.Contains(err.Error(), "alerts.risk") {
				reported.Add(1)
			}
		}})
		t.Cleanup(func() { close(h.gate) })
		mustSubscribe(t, c, "alerts.risk", h.handle)
		pub := viaConn(c, "alerts.risk")
		waitRoute(t, pub, h.probes, "alerts.risk")
		before := c.Stats()
		if err := pub(payload{N: 1}); err != nil {
			t.Fatal(err)
		}
		await(t, h.entered, "the handler")
		for i := 2; i <= 10; i++ {
			if err := pub(payload{N: i}); err != nil {
				t.Fatal(err)
			}
		}
		st := c.Stats()
		// 1 is in the handler, 2..5 fill the buffer of 4, 6..10 are dropped.
		if got := st.Dropped - before.Dropped; got != 5 || reported.Load() != 5 || st.Queued != 4 {
			t.Fatalf("dropped %d, reported %d, queued %d; want 5, 5, 4", got, reported.Load(), st.Queued)
		}
		h.gate <- struct{}{}
		h.expect(t, 1, 2, 3, 4, 5)
		if err := pub(payload{N: 11}); err != nil {
			t.Fatal(err)
		}
		h.expect(t, 11)
	})
}

// clientGoroutines returns the stacks of goroutines running this
// package's code, the test's own excluded.
func clientGoroutines() []string {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	var out []string
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(g, "subsock/client.(*") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, g)
		}
	}
	return out
}

func TestCloseStopsEveryGoroutine(t *testing.T) {
	n := startNode(t, "", gateway.Config{})
	for _, policy := range []Policy{All, Latest} {
		c, err := Dial(context.Background(), n.url(), Options{Policy: policy, PingInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		mustSubscribe(t, c, "x", func(Message) {})
		if len(clientGoroutines()) == 0 {
			t.Fatal("no goroutine of the Conn found while it runs: the check below would prove nothing")
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		// Close has waited for them; a goroutine that signalled its end may
		// still be returning, so allow it a moment to leave the list.
		gs := clientGoroutines()
		for deadline := time.Now().Add(2 * time.Second); len(gs) > 0 && time.Now().Before(deadline); gs = clientGoroutines() {
			time.Sleep(5 * time.Millisecond)
		}
		if len(gs) > 0 {
			t.Fatalf("%v: after Close, %d goroutines remain:\n%s", policy, len(gs), strings.Join(gs, "\n\n"))
		}
		if err := c.Subscribe(context.Background(), "y", func(Message) {}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Subscribe after Close: %v", err)
		}
		if err := c.Publish(context.Background(), "y", 1); !errors.Is(err, ErrClosed) {
			t.Fatalf("Publish after Close: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	// A Conn still dialling is stopped by Close too (Dial's ctx ends).
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, "ws://127.0.0.1:1/ws", Options{}); err == nil {
		t.Fatal("dialled a closed port")
	}
	if gs := clientGoroutines(); len(gs) > 0 {
		t.Fatalf("after a failed Dial, %d goroutines remain:\n%s", len(gs), strings.Join(gs, "\n\n"))
	}
}
