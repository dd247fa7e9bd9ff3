package gateway_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
)

// historyConfig is a memory node whose chat.> topics keep size publications.
func historyConfig(t testing.TB, size int) gateway.Config {
	t.Helper()
	r, err := gateway.ParseHistoryRule(fmt.Sprintf("chat.>=%d,10m", size))
	if err != nil {
		t.Fatal(err)
	}
	return gateway.Config{History: []gateway.HistoryRule{r}}
}

// pubAnswer is POST /publish's 200 body.
type pubAnswer struct {
	Subscribers int    `json:"subscribers"`
	Offset      uint64 `json:"offset"`
	Epoch       string `json:"epoch"`
}

func publishHist(t testing.TB, hc *http.Client, n *node, topic string, v any) pubAnswer {
	t.Helper()
	body, _ := json.Marshal(v)
	status, text := publish(t, hc, n, topic, "application/json", body)
	if status != http.StatusOK {
		t.Fatalf("publish %s: %d %s", topic, status, text)
	}
	var a pubAnswer
	if err := json.Unmarshal([]byte(text), &a); err != nil {
		t.Fatalf("publish answer %q: %v", text, err)
	}
	return a
}

// offsetOf returns a msg's offset, failing when it has none.
func offsetOf(t testing.TB, r reply) uint64 {
	t.Helper()
	v, ok := r.fields["offset"].(int64)
	if !ok || v < 0 {
		t.Fatalf("%v: offset %v (%T), want a non-negative integer", r, r.fields["offset"], r.fields["offset"])
	}
	return uint64(v)
}

// position returns the position of topic in an ack.
func position(t testing.TB, r reply, topic string) (offset uint64, epoch string, recovered any) {
	t.Helper()
	ps, ok := r.fields["positions"].(map[string]any)
	if !ok {
		t.Fatalf("%v has no positions: %v", r, r.fields)
	}
	p, ok := ps[topic].(map[string]any)
	if !ok {
		t.Fatalf("%v: no position for %q: %v", r, topic, ps)
	}
	off, _ := p["offset"].(int64)
	epoch, _ = p["epoch"].(string)
	return uint64(off), epoch, p["recovered"]
}

func TestHistoryOffsetsPositionsAndPubAck(t *testing.T) {
	for _, c := range []wireCodec{codecJSON, codecMsgpack} {
		t.Run(c.name, func(t *testing.T) {
			n := startNode(t, historyConfig(t, 10))
			hc := newHTTPClient(t)
			cl := dialWS(t, n, c)
			cl.sendEnv(t, envelope{{"op", "sub"}, {"id", 1}, {"topics", []string{"chat.1", "plain"}}})
			ack := cl.next(t)
			if ack.op != "ack" || ack.id != 1 {
				t.Fatalf("sub reply %v", ack)
			}
			off, epoch, rec := position(t, ack, "chat.1")
			if off != 0 || epoch == "" || rec != nil {
				t.Fatalf("position of a new stream: offset %d epoch %q recovered %v; want 0, an epoch, no recovered", off, epoch, rec)
			}
			if ps := ack.fields["positions"].(map[string]any); len(ps) != 1 {
				t.Fatalf("positions %v: want chat.1 only (plain has no history)", ps)
			}
			for i := 1; i <= 3; i++ {
				a := publishHist(t, hc, n, "chat.1", map[string]int{"n": i})
				if a.Offset != uint64(i) || a.Epoch != epoch || a.Subscribers != 1 {
					t.Fatalf("publish %d answered %+v; want offset %d epoch %q 1 subscriber", i, a, i, epoch)
				}
				m := cl.next(t)
				if m.op != "msg" || offsetOf(t, m) != uint64(i) || m.fields["epoch"] != nil {
					t.Fatalf("msg %d: %v %v", i, m, m.fields)
				}
			}
			// A topic without history: no offset, and a plain ack.
			a := publishHist(t, hc, n, "plain", 1)
			if a.Offset != 0 || a.Epoch != "" {
				t.Fatalf("plain publish answered %+v, want no offset or epoch", a)
			}
			if m := cl.next(t); m.op != "msg" || m.fields["offset"] != nil {
				t.Fatalf("plain msg %v has fields %v", m, m.fields)
			}
			// A client pub with an id on a history topic: offset and epoch in the ack.
			cl.sendEnv(t, envelope{{"op", "pub"}, {"id", 7}, {"topic", "chat.1"}, {"data", "hi"}})
			var pubAck reply
			for i := 0; i < 2; i++ { // the ack and our own msg, in either order
				if r := cl.next(t); r.op == "ack" {
					pubAck = r
				} else if r.op != "msg" || offsetOf(t, r) != 4 {
					t.Fatalf("after pub: %v %v", r, r.fields)
				}
			}
			if pubAck.id != 7 || pubAck.fields["offset"] != int64(4) || pubAck.fields["epoch"] != epoch {
				t.Fatalf("pub ack %v %v; want id 7 offset 4 epoch %q", pubAck, pubAck.fields, epoch)
			}
			cl.sendEnv(t, envelope{{"op", "pub"}, {"id", 8}, {"topic", "plain"}, {"data", "hi"}})
			for i := 0; i < 2; i++ {
				if r := cl.next(t); r.op == "ack" && (r.fields["offset"] != nil || r.fields["epoch"] != nil) {
					t.Fatalf("plain pub ack %v carries %v", r, r.fields)
				}
			}
		})
	}
}

func TestHistoryRecoverSinceAndLast(t *testing.T) {
	n := startNode(t, historyConfig(t, 5))
	hc := newHTTPClient(t)
	var epoch string
	for i := 1; i <= 8; i++ {
		epoch = publishHist(t, hc, n, "chat.r", i).Epoch
	}
	cases := []struct {
		name      string
		extra     envelope
		replay    []uint64
		recovered any
	}{
		{"since within the window", envelope{{"since", map[string]any{"chat.r": map[string]any{"offset": 5, "epoch": epoch}}}}, []uint64{6, 7, 8}, true},
		{"since at the top", envelope{{"since", map[string]any{"chat.r": map[string]any{"offset": 8, "epoch": epoch}}}}, nil, true},
		{"since the oldest kept minus one", envelope{{"since", map[string]any{"chat.r": map[string]any{"offset": 3, "epoch": epoch}}}}, []uint64{4, 5, 6, 7, 8}, true},
		{"since before the window", envelope{{"since", map[string]any{"chat.r": map[string]any{"offset": 2, "epoch": epoch}}}}, nil, false},
		{"another epoch", envelope{{"since", map[string]any{"chat.r": map[string]any{"offset": 5, "epoch": "stale"}}}}, nil, false},
		{"ahead of the stream", envelope{{"since", map[string]any{"chat.r": map[string]any{"offset": 9, "epoch": epoch}}}}, nil, false},
		{"last 2", envelope{{"last", 2}}, []uint64{7, 8}, nil},
		{"last beyond the size", envelope{{"last", 50}}, []uint64{4, 5, 6, 7, 8}, nil},
		{"nothing asked", nil, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := dialWS(t, n, codecJSON)
			env := append(envelope{{"op", "sub"}, {"id", 1}, {"topics", []string{"chat.r"}}}, tc.extra...)
			cl.sendEnv(t, env)
			var got []uint64
			for {
				r := cl.next(t)
				if r.op == "ack" {
					off, ep, rec := position(t, r, "chat.r")
					if off != 8 || ep != epoch || rec != tc.recovered {
						t.Fatalf("position %d %q recovered %v; want 8 %q %v", off, ep, rec, epoch, tc.recovered)
					}
					break
				}
				if r.op != "msg" {
					t.Fatalf("before the ack: %v", r)
				}
				got = append(got, offsetOf(t, r))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.replay) {
				t.Fatalf("replayed %v, want %v", got, tc.replay)
			}
			// Live continues at 9 for this subscriber, whatever the replay.
			cl.close()
		})
	}
	cl := dialWS(t, n, codecJSON)
	cl.sendEnv(t, envelope{{"op", "sub"}, {"id", 1}, {"topics", []string{"chat.r"}}, {"last", 1}})
	if r := cl.next(t); r.op != "msg" || offsetOf(t, r) != 8 {
		t.Fatalf("last 1: %v", r)
	}
	if r := cl.next(t); r.op != "ack" {
		t.Fatalf("want the ack, got %v", r)
	}
	publishHist(t, hc, n, "chat.r", 9)
	if r := cl.next(t); r.op != "msg" || offsetOf(t, r) != 9 {
		t.Fatalf("live after recovery: %v", r)
	}
}

// TestHistorySeam subscribes with since while a publisher runs: the
// replay and the live stream meet with no gap and no duplicate.
func TestHistorySeam(t *testing.T) {
	for _, c := range []wireCodec{codecJSON, codecMsgpack} {
		t.Run(c.name, func(t *testing.T) {
			n := startNode(t, historyConfig(t, 10000))
			hc := newHTTPClient(t)
			const total = 1500
			epoch := publishHist(t, hc, n, "chat.seam", 1).Epoch
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				phc := newHTTPClient(t)
				for i := 2; i <= total; i++ {
					body, _ := json.Marshal(i)
					if status, text := publish(t, phc, n, "chat.seam", "application/json", body); status != http.StatusOK {
						t.Errorf("publish %d: %d %s", i, status, text)
						return
					}
				}
			}()
			// Subscribe several times at different points of the run.
			for k := 0; k < 5; k++ {
				since := uint64(k * 100)
				cl := dialWS(t, n, c)
				cl.sendEnv(t, envelope{{"op", "sub"}, {"id", 1}, {"topics", []string{"chat.seam"}},
					{"since", map[string]any{"chat.seam": map[string]any{"offset": since, "epoch": epoch}}}})
				want := since + 1
				acked := false
				for want <= total || !acked {
					r := cl.next(t)
					if r.op == "ack" {
						if _, _, rec := position(t, r, "chat.seam"); rec != true {
							t.Fatalf("since %d: recovered %v", since, rec)
						}
						acked = true
						continue
					}
					if got := offsetOf(t, r); got != want {
						t.Fatalf("since %d: got offset %d, want %d (acked %v)", since, got, want, acked)
					}
					if r.data != int64(want) {
						t.Fatalf("offset %d carries %v", want, r.data)
					}
					want++
				}
				if !acked {
					t.Fatalf("since %d: no ack", since)
				}
				cl.close()
			}
			wg.Wait()
		})
	}
}

func TestHistoryAPI(t *testing.T) {
	n := startNode(t, historyConfig(t, 4))
	hc := newHTTPClient(t)
	var epoch string
	for i := 1; i <= 6; i++ {
		epoch = publishHist(t, hc, n, "chat.api", map[string]int{"n": i}).Epoch
	}
	type ans struct {
		Topic        string `json:"topic"`
		Epoch        string `json:"epoch"`
		Offset       uint64 `json:"offset"`
		Publications []struct {
			Offset uint64          `json:"offset"`
			Data   json.RawMessage `json:"data"`
		} `json:"publications"`
	}
	cases := []struct {
		query   string
		offsets []uint64
	}{
		{"topic=chat.api", []uint64{3, 4, 5, 6}},
		{"topic=chat.api&since=4", []uint64{5, 6}},
		{"topic=chat.api&since=3&limit=2", []uint64{4, 5}},
		{"topic=chat.api&limit=0", nil},
		{"topic=chat.api&since=6", nil},
	}
	for _, tc := range cases {
		status, body := get(t, hc, n, "/history?"+tc.query)
		if status != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.query, status, body)
		}
		var a ans
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatalf("%s: %q: %v", tc.query, body, err)
		}
		var got []uint64
		for _, p := range a.Publications {
			got = append(got, p.Offset)
			if want := fmt.Sprintf(`{"n":%d}`, p.Offset); string(p.Data) != want {
				t.Fatalf("%s: offset %d data %s, want %s", tc.query, p.Offset, p.Data, want)
			}
		}
		if a.Topic != "chat.api" || a.Epoch != epoch || a.Offset != 6 || fmt.Sprint(got) != fmt.Sprint(tc.offsets) {
			t.Fatalf("%s: %+v offsets %v; want epoch %q offset 6 offsets %v", tc.query, a, got, epoch, tc.offsets)
		}
	}
	for _, q := range []string{"topic=plain", "topic=", "topic=chat.api&since=-1", "topic=chat.api&limit=x", "topic=chat.api&limit=100000"} {
		if status, body := get(t, hc, n, "/history?"+q); status != http.StatusBadRequest {
			t.Fatalf("%s: %d %s, want 400", q, status, body)
		}
	}
}

// TestHistoryBadRequests: since and last are checked like every field.
func TestHistoryBadRequests(t *testing.T) {
	n := startNode(t, historyConfig(t, 4))
	cl := dialWS(t, n, codecJSON)
	for _, env := range []envelope{
		{{"op", "sub"}, {"id", 1}, {"topics", []string{"chat.a"}}, {"since", map[string]any{"chat.b": map[string]any{"offset": 1, "epoch": "x"}}}},
		{{"op", "sub"}, {"id", 2}, {"topics", []string{"chat.a"}}, {"since", map[string]any{"chat.a": map[string]any{"offset": -1, "epoch": "x"}}}},
		{{"op", "sub"}, {"id", 3}, {"topics", []string{"chat.a"}}, {"since", []int{1}}},
		{{"op", "sub"}, {"id", 4}, {"topics", []string{"chat.a"}}, {"last", "ten"}},
	} {
		cl.sendEnv(t, env)
		if r := cl.next(t); r.op != "err" || r.code != "bad_request" || r.msg == "" {
			t.Fatalf("%v answered %v, want a bad_request with a reason", env, r)
		}
	}
}

// TestHistoryNeedsStreams: a node with -history refuses a backbone that
// keeps no streams.
func TestHistoryNeedsStreams(t *testing.T) {
	srv := testserver.NATS(t)
	cfg := historyConfig(t, 4)
	cfg.Broker = "nats://" + srv.Addr
	g, err := gateway.New(cfg)
	if err == nil {
		_ = g.Shutdown(t.Context())
		t.Fatal("New accepted -history with a NATS broker")
	}
	if !errors.Is(err, gateway.ErrNoHistory) || !strings.Contains(err.Error(), "NATS") {
		t.Fatalf("New: %v, want ErrNoHistory naming NATS", err)
	}
	cfg.History = nil
	g, err = gateway.New(cfg)
	if err != nil {
		t.Fatalf("New without history on NATS: %v", err)
	}
	_ = g.Shutdown(t.Context())
}

func TestParseHistoryRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // String() of the rule; "" = an error
	}{
		{"chat.>=100,10m", "chat.>=100,10m0s"},
		{"prices.*=1,1h", "prices.*=1,1h0m0s"},
		{"alerts=5", "alerts=5,10m0s"},
		{"chat.>=0", ""},
		{"chat.>=x", ""},
		{"chat.>=10,never", ""},
		{"chat.>=10,-1s", ""},
		{"=10", ""},
		{"a..b=10", ""},
		{"noequals", ""},
		{"a=1000001", ""},
	} {
		r, err := gateway.ParseHistoryRule(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%q parsed as %v, want an error", tc.in, r)
		case tc.want == "" && !errors.Is(err, gateway.ErrBadHistoryRule):
			t.Errorf("%q: %v, want ErrBadHistoryRule", tc.in, err)
		case tc.want != "" && (err != nil || r.String() != tc.want):
			t.Errorf("%q: %v %v, want %s", tc.in, r, err, tc.want)
		}
	}
}

// TestHistoryEpochChangeOnRedis: Redis loses its data (FLUSHALL) under a
// live subscription and between two connections of one client. The live
// subscriber is told by an epoch on the next msg; the one that comes back
// with since gets recovered:false and nothing stale.
func TestHistoryEpochChangeOnRedis(t *testing.T) {
	srv := testserver.Redis(t)
	cfg := historyConfig(t, 100)
	cfg.Broker = srv.URL
	n := startNode(t, cfg)
	hc := newHTTPClient(t)

	live := dialWS(t, n, codecJSON)
	live.sendEnv(t, envelope{{"op", "sub"}, {"id", 1}, {"topics", []string{"chat.f"}}})
	ack := live.next(t)
	_, epoch, _ := position(t, ack, "chat.f")
	for i := 1; i <= 5; i++ {
		if a := publishHist(t, hc, n, "chat.f", i); a.Offset != uint64(i) || a.Epoch != epoch {
			t.Fatalf("publish %d: %+v, want offset %d epoch %q", i, a, i, epoch)
		}
		if m := live.next(t); offsetOf(t, m) != uint64(i) || m.fields["epoch"] != nil {
			t.Fatalf("msg %d: %v %v", i, m, m.fields)
		}
	}

	if _, err := testserver.RedisDo(t.Context(), srv.Addr, "FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	a := publishHist(t, hc, n, "chat.f", 6)
	if a.Offset != 1 || a.Epoch == epoch || a.Epoch == "" {
		t.Fatalf("first publish after FLUSHALL: %+v, want offset 1 and a new epoch (old %q)", a, epoch)
	}
	m := live.next(t)
	if offsetOf(t, m) != 1 || m.fields["epoch"] != a.Epoch || m.data != int64(6) {
		t.Fatalf("live msg after FLUSHALL: %v %v; want offset 1 with epoch %q", m, m.fields, a.Epoch)
	}
	publishHist(t, hc, n, "chat.f", 7)
	if m := live.next(t); offsetOf(t, m) != 2 || m.fields["epoch"] != nil {
		t.Fatalf("next live msg: %v %v; want offset 2 without epoch", m, m.fields)
	}

	// A client that was at offset 5 of the old epoch comes back.
	back := dialWS(t, n, codecJSON)
	back.sendEnv(t, envelope{{"op", "sub"}, {"id", 1}, {"topics", []string{"chat.f"}},
		{"since", map[string]any{"chat.f": map[string]any{"offset": 5, "epoch": epoch}}}})
	r := back.next(t)
	if r.op != "ack" {
		t.Fatalf("stale since: got %v before the ack; nothing may be replayed", r)
	}
	off, ep, rec := position(t, r, "chat.f")
	if off != 2 || ep != a.Epoch || rec != false {
		t.Fatalf("stale since: position %d %q recovered %v; want 2 %q false", off, ep, rec, a.Epoch)
	}
	if got := scrape(t, hc, n, "subsock_history_not_recovered_total"); got != 1 {
		t.Fatalf("subsock_history_not_recovered_total = %v, want 1", got)
	}
}
