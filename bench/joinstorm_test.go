package bench

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestPresenceArgs(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"-loops", "2"}, []string{"-loops", "2", "-presence", "storm.>", "-join-leave", "storm.>"}},
		{[]string{"-presence", "x.>"}, []string{"-presence", "x.>", "-join-leave", "storm.>"}},
		{[]string{"-join-leave=y.>", "-join-leave-max", "10"}, []string{"-join-leave=y.>", "-join-leave-max", "10", "-presence", "storm.>"}},
		{[]string{"--presence", ">", "-join-leave", ">"}, []string{"--presence", ">", "-join-leave", ">"}},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.in)
		if got := presenceArgs(in, "storm"); !slices.Equal(got, tt.want) {
			t.Errorf("presenceArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("presenceArgs changed its input: %q", in)
		}
	}
}

// TestCanarySpec: the canary is one connection on PREFIX.0, from an
// address no worker uses, tallying its sequences.
func TestCanarySpec(t *testing.T) {
	p, err := Params{Scenario: ScenarioJoinStorm, Targets: []string{testTarget, "ws://127.0.0.1:9/ws"}, Conns: 500}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	sp := canarySpec(&p)
	c := &conn{idx: sp.First}
	names := c.assignTopics(&sp)
	if sp.Count != 1 || sp.LocalIP != "127.0.0.1" || sp.LateJoin || !slices.Equal(sp.Targets, []string{testTarget}) ||
		!slices.Equal(names, []string{"storm.0"}) {
		t.Fatalf("spec %+v topics %q", sp, names)
	}
	// The outside canary: one more connection, on a topic no PREFIX.> rule
	// covers.
	os := outsideSpec(&p)
	oc := &conn{idx: os.First}
	onames := oc.assignTopics(&os)
	if os.Count != 1 || os.First == sp.First || os.Index == sp.Index || os.LocalIP != "127.0.0.1" ||
		!slices.Equal(onames, []string{"storm-canary.0"}) || strings.HasPrefix(onames[0], "storm.") {
		t.Fatalf("outside spec %+v topics %q", os, onames)
	}
}

// TestOutsidePlan: the outside canary's phase is the storm topic's on its
// own topic and sequences.
func TestOutsidePlan(t *testing.T) {
	o := &outsidePub{seq: make([]uint64, 1)}
	pl := pacePlan{rate: 20, duration: time.Second, step: stepStorm, prefix: "storm", seq: make([]uint64, 3), from: 1, to: 2, stepEvery: time.Second}
	got := o.plan(pl)
	if got.prefix != "storm-canary" || len(got.seq) != 1 || &got.seq[0] != &o.seq[0] || got.from != 0 || got.to != 0 ||
		got.rate != 20 || got.step != stepStorm || got.stepEvery != time.Second || pl.prefix != "storm" {
		t.Fatalf("%+v", got)
	}
}

// countingPublisher accepts every publish at once.
type countingPublisher struct{ n atomic.Int64 }

func (c *countingPublisher) publish(context.Context, string, []byte) (pubAnswer, error) {
	c.n.Add(1)
	return pubAnswer{subscribers: 1}, nil
}

func (c *countingPublisher) close() error { return nil }

// TestPaceStop: a phase bounded by a long duration ends when its stop
// channel closes, keeping what it published.
func TestPaceStop(t *testing.T) {
	pub := &countingPublisher{}
	stop := make(chan struct{})
	time.AfterFunc(300*time.Millisecond, func() { close(stop) })
	t0 := time.Now()
	pr := pace(context.Background(), pub, pacePlan{rate: 100, duration: time.Minute, prefix: "storm", senders: 2, seq: make([]uint64, 1), stop: stop})
	if took := time.Since(t0); took > 5*time.Second {
		t.Fatalf("the phase ran %s after its stop", took)
	}
	if pr.published == 0 || pr.published != pub.n.Load() || pr.published != pr.perTopic[0] || pr.published > 60 {
		t.Fatalf("published %d (publisher saw %d, per topic %v)", pr.published, pub.n.Load(), pr.perTopic)
	}
}

// TestConnPresenceEvents: join and leave events are counted, not taken
// for messages; a late joiner's sequences starting mid-stream are not
// gaps.
func TestConnPresenceEvents(t *testing.T) {
	for _, late := range []bool{false, true} {
		client, server := pair(t)
		w := newWorker()
		w.spec.LateJoin = late
		c := newTestConn(w, client, 0)
		w.conns[c] = struct{}{}
		w.open.Add(1)
		w.wg.Add(1)
		done := make(chan struct{})
		go func() { defer close(done); c.loop() }()
		var stream []byte
		stream = append(stream, serverFrame(t, ws.OpText, []byte(`{"op":"join","topic":"storm.0","client":"n-1","user":""}`))...)
		stream = append(stream, msgFrame(t, "storm.0", 7, 1, 40)...) // joined after 1..6
		stream = append(stream, serverFrame(t, ws.OpText, []byte(`{"op":"join","topic":"storm.0","client":"n-2","user":"42"}`))...)
		stream = append(stream, serverFrame(t, ws.OpText, []byte(`{"op":"leave","topic":"storm.0","client":"n-1","user":""}`))...)
		stream = append(stream, msgFrame(t, "storm.0", 8, 1, 40)...)
		stream = append(stream, serverFrame(t, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))...)
		before := time.Now().UnixNano()
		if _, err := server.Write(stream); err != nil {
			t.Fatal(err)
		}
		readClientFrame(t, server) // the echo
		<-done
		st := w.stats()
		wantGaps := int64(6)
		if late {
			wantGaps = 0
		}
		if st.Joins != 2 || st.Leaves != 1 || st.LastJoin < before || st.Received != 2 || st.Unstamped != 0 || st.Gaps != wantGaps || len(st.Errors) != 0 {
			t.Fatalf("late %v: stats %+v", late, st)
		}
	}
}

func TestWorkerStatsAddPresence(t *testing.T) {
	a := &workerStats{Joins: 3, Leaves: 1, LastJoin: 50}
	a.add(&workerStats{Joins: 4, Leaves: 2, LastJoin: 40})
	a.add(&workerStats{LastJoin: 70})
	if a.Joins != 7 || a.Leaves != 3 || a.LastJoin != 70 {
		t.Fatalf("%+v", a)
	}
}

// TestJudgeJoinStorm covers the target and each way a joinstorm falls
// short.
func TestJudgeJoinStorm(t *testing.T) {
	good := func() (*JoinStormResult, *DeliveryResult) {
		return &JoinStormResult{Members: 10000, StormSeconds: 5.1, JoinsPerSec: 1960, JoinLeaveMax: 1000, CanaryJoins: 999,
				During: Percentiles{Count: 100, P99: 90, Max: 120}, // the member canary: the group's fan-out, not judged
				Outside: &OutsideCanary{Topic: "storm-canary.0", During: Percentiles{Count: 100, P99: 12, Max: 20},
					Delivery: &DeliveryResult{Published: 160, Expected: 160, Received: 160}}},
			&DeliveryResult{Published: 160, Expected: 160, Received: 160}
	}
	tests := []struct {
		name  string
		edit  func(js *JoinStormResult, d *DeliveryResult)
		ok    bool
		notes []string
	}{
		{"met", func(*JoinStormResult, *DeliveryResult) {}, true, nil},
		{"p99 at the limit", func(js *JoinStormResult, _ *DeliveryResult) { js.Outside.During.P99 = 50 }, false, []string{"outside canary's p99 during the storm was 50.0 ms"}},
		{"member canary slow", func(js *JoinStormResult, _ *DeliveryResult) { js.During.P99 = 500 }, true, nil},
		{"nothing during the storm", func(js *JoinStormResult, _ *DeliveryResult) { js.Outside.During = Percentiles{} }, false, []string{"outside canary received no message published during the storm"}},
		{"no outside canary", func(js *JoinStormResult, _ *DeliveryResult) { js.Outside = nil }, false, []string{"outside canary received no message"}},
		{"outside gaps", func(js *JoinStormResult, _ *DeliveryResult) { js.Outside.Delivery.Gaps = 3 }, false, []string{"outside canary's sequences: 3 missing"}},
		{"outside lost", func(js *JoinStormResult, _ *DeliveryResult) { js.Outside.Delivery.Lost = 4 }, false, []string{"4 of 160 owed not received"}},
		{"gaps", func(_ *JoinStormResult, d *DeliveryResult) { d.Gaps = 2 }, false, []string{"member canary's sequences: 2 missing"}},
		{"no join events", func(js *JoinStormResult, _ *DeliveryResult) { js.CanaryJoins = 0 }, false, []string{"no join event"}},
		{"events past the cut-off", func(js *JoinStormResult, _ *DeliveryResult) { js.CanaryJoins = 1500 }, false, []string{"1500 join events, more than -join-leave-max 1000"}},
		{"slow storm", func(js *JoinStormResult, _ *DeliveryResult) { js.StormSeconds, js.JoinsPerSec = 8, 1250 }, true, []string{"the joins took 8.00 s"}},
		{"refused events", func(js *JoinStormResult, _ *DeliveryResult) { js.NodeEventErrors = 3 }, true, []string{"refused 3 join/leave events"}},
		{"control run", func(js *JoinStormResult, _ *DeliveryResult) { js.CanaryJoins = 0 }, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js, d := good()
			tt.edit(js, d)
			r := &runner{
				p:   Params{Scenario: ScenarioJoinStorm, TopicPrefix: "storm", P99Limit: 50 * time.Millisecond, Duration: 5 * time.Second, ConnectRate: 2000},
				res: &Result{JoinStorm: js, Delivery: d},
			}
			r.p.NoPresence = tt.name == "control run"
			if ok := r.judgeJoinStorm(); ok != tt.ok {
				t.Errorf("ok %v, want %v (notes %q)", ok, tt.ok, r.res.Notes)
			}
			if len(r.res.Notes) != len(tt.notes) {
				t.Fatalf("notes %q, want %q", r.res.Notes, tt.notes)
			}
			for i, n := range tt.notes {
				if !strings.Contains(r.res.Notes[i], n) {
					t.Errorf("note %q lacks %q", r.res.Notes[i], n)
				}
			}
		})
	}
}

func TestOpenAt(t *testing.T) {
	samples := []Sample{{T: 0.5, Open: 0}, {T: 1.0, Open: 100}, {T: 1.5, Open: 900}, {T: 2.0, Open: 1000}}
	for _, tt := range []struct {
		t    float64
		want int64
	}{{0.2, 0}, {1.0, 100}, {1.4, 100}, {1.7, 900}, {9, 1000}} {
		if got := openAt(samples, tt.t); got != tt.want {
			t.Errorf("openAt(%v) = %d, want %d", tt.t, got, tt.want)
		}
	}
}

func TestPlanStepAt(t *testing.T) {
	pl := pacePlan{step: 2, stepEvery: time.Second}
	for _, tt := range []struct {
		at   time.Duration
		want int
	}{{0, 2}, {999 * time.Millisecond, 2}, {time.Second, 3}, {5500 * time.Millisecond, 7}} {
		if got := pl.stepAt(tt.at); got != tt.want {
			t.Errorf("stepAt(%s) = %d, want %d", tt.at, got, tt.want)
		}
	}
	if got := (&pacePlan{step: 4}).stepAt(time.Hour); got != 4 {
		t.Errorf("without stepEvery the step is fixed, got %d", got)
	}
}
