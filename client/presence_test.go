package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
	"github.com/subsock/subsock/proto"
)

var (
	testSecret = []byte("client-test-secret-0123456789abcdef")
	testAPIKey = "client-test-api-key-0123456789"
)

// serverAPIConfig is a node with tokens (testSecret), the server API
// (testAPIKey), presence and join-leave events on room.>, history on
// hist.>, on bus when given.
func serverAPIConfig(t testing.TB, bus *broker.MemoryBus) gateway.Config {
	t.Helper()
	r, err := gateway.ParseHistoryRule("hist.>=100,10m")
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{
		Security: gateway.SecurityConfig{JWT: auth.Config{Secret: testSecret}, APIKey: testAPIKey},
		Presence: []string{"room.>"}, JoinLeave: []string{"room.>"},
		History: []gateway.HistoryRule{r},
	}
	if bus != nil {
		cfg.OpenBroker = func(h broker.Handler) (broker.Broker, error) { return bus.Attach(h), nil }
	}
	return cfg
}

// tokenFor returns a token provider for user, allowed room.>, other.> and
// hist.>.
func tokenFor(t testing.TB, user string) func(context.Context) (string, error) {
	t.Helper()
	grants := []string{"room.>", "other.>", "hist.>"}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "exp": time.Now().Add(time.Hour).Unix(), "subs": grants, "pubs": grants,
	}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return func(context.Context) (string, error) { return tok, nil }
}

// api calls the node's server API with testAPIKey and returns the status
// and body.
func api(t testing.TB, n *node, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+n.addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustInfo(t testing.TB, c *Conn) Info {
	t.Helper()
	in, err := c.Info(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// members records the join and leave events of one subscription.
type members struct{ join, leave chan Member }

func newMembers() members { return members{make(chan Member, 64), make(chan Member, 64)} }

func (ms members) opts() SubscribeOptions {
	return SubscribeOptions{OnJoin: func(m Member) { ms.join <- m }, OnLeave: func(m Member) { ms.leave <- m }}
}

// TestPresenceAcrossNodes: two nodes on one bus; who is in a room, as the
// list, the counts and the join and leave events, whichever node each
// member is on.
func TestPresenceAcrossNodes(t *testing.T) {
	bus := broker.NewMemoryBus()
	a := startNode(t, "", serverAPIConfig(t, bus))
	b := startNode(t, "", serverAPIConfig(t, bus))

	alice := openConn(t, a.url(), Options{Token: tokenFor(t, "alice")})
	ai := mustInfo(t, alice)
	if ai.User != "alice" || ai.Node == "" || len(ai.Client) <= len(ai.Node) || ai.Client[:len(ai.Node)+1] != ai.Node+"-" {
		t.Fatalf("alice's info %+v", ai)
	}
	aliceEv := newMembers()
	if err := alice.SubscribeWith(ctxFor(t), "room.1", func(Message) {}, aliceEv.opts()); err != nil {
		t.Fatal(err)
	}

	bob := openConn(t, b.url(), Options{Token: tokenFor(t, "bob")})
	bi := mustInfo(t, bob)
	if bi.User != "bob" || bi.Node == ai.Node || bi.Client == ai.Client {
		t.Fatalf("bob's info %+v, alice's %+v", bi, ai)
	}
	bobEv := newMembers()
	if err := bob.SubscribeWith(ctxFor(t), "room.1", func(Message) {}, bobEv.opts()); err != nil {
		t.Fatal(err)
	}
	if m := await(t, aliceEv.join, "bob's join, from the other node"); m != (Member{Client: bi.Client, User: "bob"}) {
		t.Fatalf("alice saw the join of %+v, want bob %+v", m, bi)
	}

	// The list and the counts, gathered from both nodes by either.
	want := []Member{{Client: ai.Client, User: "alice"}, {Client: bi.Client, User: "bob"}}
	for _, c := range []*Conn{alice, bob} {
		ms, err := c.Presence(ctxFor(t), "room.1")
		if err != nil || !slices.Equal(ms, want) {
			t.Fatalf("presence of room.1: %v %v, want %v", ms, err, want)
		}
	}
	// A second connection of alice's, on b: three clients, two users.
	alice2 := openConn(t, b.url(), Options{Token: tokenFor(t, "alice")})
	a2 := mustInfo(t, alice2)
	mustSubscribe(t, alice2, "room.1", func(Message) {})
	for _, ev := range []members{aliceEv, bobEv} {
		if m := await(t, ev.join, "alice's second connection joining"); m != (Member{Client: a2.Client, User: "alice"}) {
			t.Fatalf("join of %+v, want %+v", m, a2)
		}
	}
	clients, users, err := alice.PresenceStats(ctxFor(t), "room.1")
	if err != nil || clients != 3 || users != 2 {
		t.Fatalf("presence stats: %d clients, %d users, %v; want 3, 2", clients, users, err)
	}
	// Asking needs the right to subscribe, not a subscription.
	if ms, err := alice.Presence(ctxFor(t), "room.2"); err != nil || ms == nil || len(ms) != 0 {
		t.Fatalf("presence of an empty room: %#v %v, want an empty list", ms, err)
	}
	var se *ServerError
	if _, err := alice.Presence(ctxFor(t), "other.1"); !errors.As(err, &se) || se.Code != "not_enabled" || se.Op != "presence" || se.Topic != "other.1" {
		t.Fatalf("presence of a topic without it: %v", err)
	}
	if _, _, err := alice.PresenceStats(ctxFor(t), "secret.1"); !errors.As(err, &se) || se.Code != "forbidden" {
		t.Fatalf("presence stats of a forbidden topic: %v", err)
	}

	// Leaving: an unsubscribe, then a disconnect.
	if err := alice2.Unsubscribe(ctxFor(t), "room.1"); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []members{aliceEv, bobEv} {
		if m := await(t, ev.leave, "alice's second connection leaving"); m != (Member{Client: a2.Client, User: "alice"}) {
			t.Fatalf("leave of %+v, want %+v", m, a2)
		}
	}
	_ = bob.Close()
	if m := await(t, aliceEv.leave, "bob's leave"); m != (Member{Client: bi.Client, User: "bob"}) {
		t.Fatalf("leave of %+v, want bob %+v", m, bi)
	}
	ms, err := alice.Presence(ctxFor(t), "room.1")
	if want := []Member{{Client: ai.Client, User: "alice"}}; err != nil || !slices.Equal(ms, want) {
		t.Fatalf("presence after the others left: %v %v, want %v", ms, err, want)
	}
	// Nobody heard of their own comings and goings, nor of members there
	// before them.
	if len(aliceEv.join) != 0 || len(aliceEv.leave) != 0 || len(bobEv.join) != 0 || len(bobEv.leave) != 0 {
		t.Fatalf("extra events: alice %d joins %d leaves, bob %d joins %d leaves",
			len(aliceEv.join), len(aliceEv.leave), len(bobEv.join), len(bobEv.leave))
	}
}

// TestNoEcho: a publish with NoEcho reaches every subscriber but its own
// Conn; on a history topic the Conn takes the holes its own publishes
// leave for what they are, not for gaps, under concurrent publishers.
func TestNoEcho(t *testing.T) {
	t.Run("plain topic", func(t *testing.T) {
		n := startNode(t, "", serverAPIConfig(t, nil))
		self := openConn(t, n.url(), Options{Token: tokenFor(t, "self")})
		other := openConn(t, n.url(), Options{Token: tokenFor(t, "other")})
		mine, theirs := newInbox(), newInbox()
		mustSubscribe(t, self, "room.echo", mine.handler)
		mustSubscribe(t, other, "room.echo", theirs.handler)
		waitRoute(t, viaConn(other, "room.echo"), theirs, "room.echo")
		waitRoute(t, viaConn(other, "room.echo"), mine, "room.echo")
		if err := self.PublishWith(ctxFor(t), "room.echo", payload{N: 1}, PublishOptions{NoEcho: true}); err != nil {
			t.Fatal(err)
		}
		if err := self.Publish(ctxFor(t), "room.echo", payload{N: 2}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []int{1, 2} {
			if _, p := theirs.next(t); p.N != want {
				t.Fatalf("the other subscriber got %d, want %d", p.N, want)
			}
		}
		if _, p := mine.next(t); p.N != 2 {
			t.Fatalf("the publisher got %d back, want only 2 (1 was sent with NoEcho)", p.N)
		}
	})

	for _, bb := range []struct {
		name   string
		broker func(t *testing.T) string
	}{
		{"history topic/memory", func(*testing.T) string { return "" }},
		{"history topic/redis", func(t *testing.T) string { return testserver.Redis(t).URL }},
	} {
		t.Run(bb.name, func(t *testing.T) {
			cfg := serverAPIConfig(t, nil)
			cfg.Broker = bb.broker(t)
			testNoEchoHistory(t, startNode(t, "", cfg))
		})
	}
}

// testNoEchoHistory: two Conns publish to one history topic at once, one
// of them with NoEcho; it gets the other's publications only, in order,
// with no recovery.
func testNoEchoHistory(t *testing.T, n *node) {
	recs := make(chan Recovery, 16)
	self := openConn(t, n.url(), Options{Token: tokenFor(t, "self"), OnRecover: func(r Recovery) { notify(recs, r) }})
	other := openConn(t, n.url(), Options{Token: tokenFor(t, "other")})
	mine, theirs := newInbox(), newInbox()
	mustSubscribe(t, self, "hist.echo", mine.handler)
	mustSubscribe(t, other, "hist.echo", theirs.handler)
	waitRoute(t, viaConn(other, "hist.echo"), theirs, "hist.echo")
	waitRoute(t, viaConn(other, "hist.echo"), mine, "hist.echo")
	// Both publish at once: self with NoEcho, half of its publishes
	// waiting for the ack and half not; other plainly.
	const each = 200
	done := make(chan error, 2)
	go func() {
		for i := 1; i <= each; i++ {
			ctx := context.Background()
			if i%2 == 0 {
				ctx = ctxFor(t) // a deadline: waits for the ack
			}
			if err := self.PublishWith(ctx, "hist.echo", payload{N: -i}, PublishOptions{NoEcho: true}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		for i := 1; i <= each; i++ {
			if err := other.Publish(ctxFor(t), "hist.echo", payload{N: i}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// The other subscriber sees every offset; self sees other's
	// publications only, in order, and no recovery.
	var offsets []uint64
	own := map[uint64]bool{}
	for range 2 * each {
		m, p := theirs.next(t)
		offsets = append(offsets, m.Offset)
		own[m.Offset] = p.N < 0
	}
	for i := 1; i < len(offsets); i++ {
		if offsets[i] != offsets[i-1]+1 {
			t.Fatalf("the other subscriber got offset %d after %d", offsets[i], offsets[i-1])
		}
	}
	want := 1
	for _, o := range offsets {
		if own[o] {
			continue
		}
		m, p := mine.next(t)
		if m.Offset != o || p.N != want {
			t.Fatalf("self got offset %d carrying %d, want offset %d carrying %d", m.Offset, p.N, o, want)
		}
		want++
	}
	// A fence: nothing else was queued for self before it.
	if err := other.Publish(ctxFor(t), "hist.echo", payload{N: 0, Text: "fence"}); err != nil {
		t.Fatal(err)
	}
	if _, p := mine.next(t); p.Text != "fence" {
		t.Fatalf("self got %+v, want the fence", p)
	}
	select {
	case r := <-recs:
		t.Fatalf("a recovery %+v: a no-echo publish was taken for a gap", r)
	default:
	}
	if st := self.Stats(); st.Dropped != 0 {
		t.Fatalf("self dropped %d messages", st.Dropped)
	}
}

// TestServerUnsubscribe: a subscription a backend removes is dropped,
// reported, and not renewed by the next connection.
func TestServerUnsubscribe(t *testing.T) {
	n := startNode(t, "", serverAPIConfig(t, nil))
	var ct cutter
	errs := make(chan error, 16)
	ready := make(chan struct{}, 4)
	c := openConn(t, n.url(), Options{
		Token:      tokenFor(t, "alice"),
		HTTPClient: ct.client(),
		Backoff:    Backoff{Min: time.Millisecond, Max: 20 * time.Millisecond},
		OnError:    func(err error) { errs <- err },
		OnConnect:  func() { notify(ready, struct{}{}) },
	})
	await(t, ready, "the first connection")
	mustSubscribe(t, c, "room.1", func(Message) {})
	mustSubscribe(t, c, "room.2", func(Message) {})
	if status, body := api(t, n, "POST", "/api/unsubscribe", map[string]string{"user": "alice", "topic": "room.1"}); status != http.StatusAccepted {
		t.Fatalf("unsubscribe: %d %s", status, body)
	}
	err := await(t, errs, "the unsubscribed report")
	var ue *UnsubscribedError
	if !errors.As(err, &ue) || ue.Topic != "room.1" || !errors.Is(err, ErrUnsubscribed) {
		t.Fatalf("OnError got %v, want an UnsubscribedError for room.1", err)
	}
	if st := c.Stats(); st.Subscriptions != 1 {
		t.Fatalf("%d subscriptions after the server removed one of two", st.Subscriptions)
	}
	// A new connection renews room.2 only.
	if ct.cut() != 1 {
		t.Fatal("no connection to cut")
	}
	await(t, ready, "the reconnection")
	ms, err := c.Presence(ctxFor(t), "room.1")
	if err != nil || len(ms) != 0 {
		t.Fatalf("room.1 after the reconnection: %v %v, want nobody", ms, err)
	}
	ms, err = c.Presence(ctxFor(t), "room.2")
	if err != nil || len(ms) != 1 {
		t.Fatalf("room.2 after the reconnection: %v %v, want the client", ms, err)
	}
}

// TestServerDisconnect: a client a backend disconnects (4003) stops for
// good, and says why; the others stay.
func TestServerDisconnect(t *testing.T) {
	n := startNode(t, "", serverAPIConfig(t, nil))
	downs := make(chan error, 4)
	c := openConn(t, n.url(), Options{
		Token:        tokenFor(t, "mallory"),
		Backoff:      Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond},
		OnDisconnect: func(err error) { downs <- err },
	})
	mustSubscribe(t, c, "room.1", func(Message) {})
	keep := openConn(t, n.url(), Options{Token: tokenFor(t, "alice")})
	if status, body := api(t, n, "POST", "/api/disconnect", map[string]string{"user": "mallory"}); status != http.StatusAccepted {
		t.Fatalf("disconnect: %d %s", status, body)
	}
	err := await(t, downs, "the disconnect")
	var ce *CloseError
	if !errors.Is(err, ErrDisconnected) || !errors.As(err, &ce) || ce.Code != 4003 {
		t.Fatalf("OnDisconnect got %v, want ErrDisconnected with a 4003 CloseError", err)
	}
	var re *RetryError
	if errors.As(err, &re) {
		t.Fatalf("OnDisconnect got a RetryError %v: a reconnect is planned", err)
	}
	await(t, c.Done(), "Done")
	if !errors.Is(c.Err(), ErrDisconnected) {
		t.Fatalf("Err() = %v", c.Err())
	}
	if err := c.Publish(ctxFor(t), "room.1", payload{N: 1}); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Publish after the disconnect: %v", err)
	}
	if err := c.Subscribe(ctxFor(t), "room.2", func(Message) {}); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Subscribe after the disconnect: %v", err)
	}
	if st := c.Stats(); st.Connects != 1 || st.Connected {
		t.Fatalf("stats after the disconnect %+v: it came back", st)
	}
	if _, err := keep.Info(ctxFor(t)); err != nil {
		t.Fatalf("another user's connection: %v", err)
	}
	_ = c.Close()
	if !errors.Is(c.Err(), ErrDisconnected) {
		t.Fatalf("Err() after Close = %v, want the disconnect still", c.Err())
	}
	select {
	case err := <-downs:
		t.Fatalf("a second OnDisconnect: %v", err)
	default:
	}
}

// TestNoEchoHoldsAGapUntilTheAck: a server that sends a message after the
// hole of a no-echo publish before the publish's ack. The Conn holds it
// until the ack says the hole is its own, and delivers it without a
// recovery; a real gap behind an own hole is recovered from after it.
func TestNoEchoHoldsAGapUntilTheAck(t *testing.T) {
	const topic = "hist.x"
	msg := func(offset uint64) []byte {
		return proto.JSON.AppendStreamMessage(nil, topic, offset, "", []byte(strconv.FormatUint(offset, 10)))
	}
	failed := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{proto.SubprotocolJSON}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := context.Background()
		// next returns the next request other than a ping.
		next := func(want proto.Op) (proto.Request, bool) {
			for {
				_, b, err := ws.Read(ctx)
				if err != nil {
					return proto.Request{}, false
				}
				var req proto.Request
				if err := proto.JSON.DecodeRequest(b, &req); err != nil {
					notify(failed, err.Error())
					return req, false
				}
				if req.Op == proto.OpPing {
					continue
				}
				if req.Op != want {
					notify(failed, "got "+req.Op.String()+", want "+want.String())
					return req, false
				}
				return req, true
			}
		}
		write := func(frames ...[]byte) bool {
			for _, f := range frames {
				if ws.Write(ctx, websocket.MessageText, f) != nil {
					return false
				}
			}
			return true
		}
		sub, ok := next(proto.OpSub)
		if !ok || !write(proto.JSON.AppendAckPositions(nil, sub.ID, []proto.TopicPosition{{Topic: topic, Offset: 1, Epoch: "e"}})) {
			return
		}
		// The client's own 2 is acked after 3.
		pub, ok := next(proto.OpPub)
		if !ok || !pub.NoEcho || !pub.HasID {
			notify(failed, "the first pub is not a no-echo pub with an id")
			return
		}
		if !write(msg(3), proto.JSON.AppendPubAck(nil, pub.ID, 2, "e")) {
			return
		}
		// Its own 4, then 6 before the ack: 5 is a real gap.
		if pub, ok = next(proto.OpPub); !ok {
			return
		}
		if !write(msg(6), proto.JSON.AppendPubAck(nil, pub.ID, 4, "e")) {
			return
		}
		if _, ok := next(proto.OpUnsub); !ok {
			return
		}
		sub, ok = next(proto.OpSub)
		if !ok {
			return
		}
		if p, ok := sub.Since[topic]; !ok || p.Offset != 4 || p.Epoch != "e" {
			notify(failed, fmt.Sprintf("recovery since %v, want offset 4 of e", sub.Since))
			return
		}
		if !write(msg(5), msg(6), proto.JSON.AppendAckPositions(nil, sub.ID, []proto.TopicPosition{{Topic: topic, Offset: 6, Epoch: "e", Asked: true, Recovered: true}})) {
			return
		}
		_, _ = next(proto.OpPing) // until the client goes
	}))
	t.Cleanup(srv.Close)
	recs := make(chan Recovery, 4)
	c := openConn(t, wsURL(srv), Options{OnRecover: func(r Recovery) { notify(recs, r) }})
	in := newInbox()
	mustSubscribe(t, c, topic, in.handler)
	noEcho := func(v int) {
		t.Helper()
		if err := c.PublishWith(ctxFor(t), topic, v, PublishOptions{NoEcho: true}); err != nil {
			t.Fatal(err)
		}
	}
	noEcho(2)
	if m := await(t, (<-chan Message)(in), "offset 3"); m.Offset != 3 {
		t.Fatalf("got offset %d, want 3", m.Offset)
	}
	select {
	case r := <-recs:
		t.Fatalf("recovery %+v: the own hole was taken for a gap", r)
	default:
	}
	noEcho(4)
	for _, want := range []uint64{5, 6} {
		select {
		case m := <-in:
			if m.Offset != want {
				t.Fatalf("got offset %d, want %d", m.Offset, want)
			}
		case f := <-failed:
			t.Fatal(f)
		case <-time.After(10 * time.Second):
			t.Fatalf("no offset %d", want)
		}
	}
	if r := await(t, recs, "the recovery of 5"); !r.Recovered || r.Offset != 6 {
		t.Fatalf("recovery %+v, want recovered up to 6", r)
	}
}
