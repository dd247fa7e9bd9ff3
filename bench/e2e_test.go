package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary serve as a worker process: Run re-executes
// it with SUBSOCK_BENCH_WORKER=1 (see e2eConfig).
func TestMain(m *testing.M) {
	WorkerMain()
	code := m.Run()
	if nodeBin != "" {
		_ = os.RemoveAll(filepath.Dir(nodeBin))
	}
	os.Exit(code)
}

var (
	nodeOnce sync.Once
	nodeBin  string
	nodeErr  error
	nodeOut  []byte
)

// buildNode builds ./cmd/subsock once per test binary.
func buildNode(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end runs build and start a real node")
	}
	nodeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "subsock-bench-node")
		if err != nil {
			nodeErr = err
			return
		}
		nodeBin = filepath.Join(dir, "subsock")
		cmd := exec.Command("go", "build", "-o", nodeBin, "github.com/subsock/subsock/cmd/subsock")
		nodeOut, nodeErr = cmd.CombinedOutput()
	})
	if nodeErr != nil {
		t.Fatalf("building the node: %v\n%s", nodeErr, nodeOut)
	}
	return nodeBin
}

// lockedBuffer collects the node's output, written from exec's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func e2eConfig(nodeLog *lockedBuffer) Config {
	exe, _ := os.Executable()
	return Config{
		WorkerArgv: []string{exe},
		WorkerEnv:  []string{workerEnv + "=1"},
		Progress:   &bytes.Buffer{},
		NodeLog:    nodeLog,
	}
}

// runE2E runs p against a freshly spawned node and fails the test with the
// node's log if the run errs.
func runE2E(t *testing.T, p Params) *Result {
	t.Helper()
	p.Spawn = buildNode(t)
	p.SpawnArgs = append(p.SpawnArgs, "-loops", "2", "-log-level", "warn")
	p.Quiet = true
	p.Timeout = 90 * time.Second
	var log lockedBuffer
	res, err := Run(context.Background(), e2eConfig(&log), p)
	if err != nil {
		t.Fatalf("Run: %v\nnode log:\n%s", err, log.String())
	}
	if res.Node == nil || res.Node.PID == 0 || res.Server.RSSBaseline <= 0 {
		t.Fatalf("no node readings: %+v", res.Server)
	}
	if len(res.Samples) == 0 {
		t.Fatal("the sampler took no samples")
	}
	return res
}

// TestE2ELatency: a few hundred connections on two workers, a few seconds
// of publishing; every delivery must arrive, be timed and be reported.
func TestE2ELatency(t *testing.T) {
	dir := t.TempDir()
	res := runE2E(t, Params{
		Scenario: ScenarioLatency, Conns: 300, Workers: 2, Rate: 20, Duration: 2 * time.Second,
		SpawnArgs:  []string{"-pprof"},
		CPUProfile: filepath.Join(dir, "cpu.prof"), HeapProfile: filepath.Join(dir, "heap.prof"),
	})
	if !res.Server.ForcedGC || res.Server.HeapLoaded <= res.Server.HeapBaseline {
		t.Fatalf("a -pprof node must be GC'd before readings: %+v", res.Server)
	}
	for _, f := range []string{"cpu.prof", "heap.prof"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Fatalf("profile %s: %v", f, err)
		}
	}
	c, d := res.Connect, res.Delivery
	if c.Connected != 300 || c.Failed != 0 || c.Subscribed != 300 || c.Handshake.Count != 300 || c.PerSec <= 0 {
		t.Fatalf("connect %+v", c)
	}
	if d == nil || d.Published != 40 || d.Expected != 40*300 || d.Received != d.Expected || d.Lost != 0 {
		t.Fatalf("delivery %+v", d)
	}
	if d.ServerReported != d.Expected {
		t.Fatalf("the node reported %d subscriber-deliveries, expected %d", d.ServerReported, d.Expected)
	}
	if d.Gaps != 0 || d.Dups != 0 || d.Unstamped != 0 {
		t.Fatalf("sequence errors %+v", d)
	}
	if res.Latency.Count != d.Received || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 || len(res.LatencyCDF) == 0 {
		t.Fatalf("latency %+v", res.Latency)
	}
	if !res.OK {
		t.Fatalf("judged not OK: %v", res.Notes)
	}
	dir = t.TempDir()
	if _, _, err := res.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	back, err := ReadResult(filepath.Join(dir, "latency.json"))
	if err != nil || back.Delivery.Received != d.Received {
		t.Fatalf("read back: %v", err)
	}
}

// TestE2ESSE: the latency scenario with SSE subscribers, each stream on
// two topics; every delivery must arrive and be timed, and the streams
// must open and close as cleanly as WebSockets.
func TestE2ESSE(t *testing.T) {
	res := runE2E(t, Params{
		Scenario: ScenarioLatency, Transport: TransportSSE, Conns: 300, Workers: 2, TopicsPerConn: 2, Topics: 4,
		Rate: 20, Duration: 2 * time.Second, SpawnArgs: []string{"-pprof"},
	})
	c, d := res.Connect, res.Delivery
	if c.Connected != 300 || c.Failed != 0 || c.Subscribed != 300 || c.Subscriptions != 600 ||
		c.Handshake.Count != 300 || c.SubAck.Count != 300 || c.Ready.Count != 300 {
		t.Fatalf("connect %+v", c)
	}
	// 40 publishes round-robin over 4 topics of 150 subscribers each.
	if d == nil || d.Published != 40 || d.Expected != 40*150 || d.Received != d.Expected || d.ServerReported != d.Expected {
		t.Fatalf("delivery %+v", d)
	}
	if d.Gaps != 0 || d.Dups != 0 || d.Unstamped != 0 || res.Latency.Count != d.Received || res.Latency.P50 <= 0 {
		t.Fatalf("delivery %+v latency %+v", d, res.Latency)
	}
	if len(res.Errors) != 0 || len(res.ServerCloses) != 0 || !res.OK {
		t.Fatalf("errors %v closes %v notes %v", res.Errors, res.ServerCloses, res.Notes)
	}
	if m := res.Server.Metrics; m["subsock_connections"] != 0 {
		t.Fatalf("the node still counts connections: %v", m)
	}
}

// TestE2EStepsOverWebSocket: two steps over several topics, publishing with
// op pub on a WebSocket; each step is accounted separately.
func TestE2EStepsOverWebSocket(t *testing.T) {
	res := runE2E(t, Params{
		Scenario: ScenarioSteps, Conns: 200, Workers: 1, TopicsPerConn: 2, Topics: 4,
		Rate: 20, StepFactor: 2, MaxSteps: 2, StepDuration: time.Second, PublishVia: "ws",
	})
	if len(res.Steps) != 2 {
		t.Fatalf("%d steps: %+v", len(res.Steps), res.Steps)
	}
	if res.Server.ForcedGC {
		t.Fatal("a node without -pprof cannot be made to GC")
	}
	for i, s := range res.Steps {
		// Each topic has 100 subscribers (200 connections × 2 topics / 4).
		if s.Published == 0 || s.Expected != s.Published*100 || s.Received != s.Expected || s.Latency.Count != s.Received {
			t.Errorf("step %d: %+v", i+1, s)
		}
	}
	if res.Steps[1].Rate != 40 || res.Steps[1].Stop != "last step" {
		t.Errorf("second step %+v", res.Steps[1])
	}
	if d := res.Delivery; d.Received != res.Steps[0].Received+res.Steps[1].Received || d.Gaps != 0 {
		t.Errorf("totals %+v", d)
	}
}

// TestE2EChurn: connect, subscribe and disconnect three times; the node's
// registry must come back to where it started.
func TestE2EChurn(t *testing.T) {
	res := runE2E(t, Params{
		Scenario: ScenarioChurn, Conns: 200, Workers: 2, TopicsPerConn: 5, Topics: 50, Cycles: 3,
		SettleTimeout: 6 * time.Second, SpawnArgs: []string{"-interest-linger", "100ms", "-pprof"},
	})
	ch := res.Churn
	if ch == nil || len(ch.Cycles) != 3 {
		t.Fatalf("churn %+v", ch)
	}
	for i, cy := range ch.Cycles {
		if cy.Connected != 200 || cy.Subscribed != 200 || cy.Failed != 0 {
			t.Errorf("cycle %d: %+v", i+1, cy)
		}
	}
	if !ch.Returned || ch.After["subsock_connections"] != 0 || ch.After["subsock_subscriptions"] != 0 {
		t.Fatalf("registry did not return: after %v baseline %v", ch.After, ch.Baseline)
	}
	if ch.HeapAfter <= 0 || ch.RSSAfter <= 0 || !res.Server.ForcedGC {
		t.Fatalf("no memory readings after churn: %+v", ch)
	}
	if res.Connect.Connected != 600 || !res.OK {
		t.Fatalf("connect %+v ok %v notes %v", res.Connect, res.OK, res.Notes)
	}
}

// TestE2EHol: the hol scenario in miniature on a real redis-server the
// harness starts: each class is counted apart, none is lost, and the
// node's pub/sub connection is found in CLIENT LIST.
func TestE2EHol(t *testing.T) {
	res := runE2E(t, Params{
		Scenario: ScenarioHol, Conns: 300, HotSubs: 200, Workers: 2, Rate: 20, SmallRate: 2, Duration: 2 * time.Second,
	})
	h := res.Hol
	if h == nil {
		t.Fatalf("no hol result: %+v", res)
	}
	if h.Hot.Topics != 1 || h.Hot.Subscribers != 200 || h.Small.Topics != 100 || h.Small.Subscribers != 100 {
		t.Fatalf("classes hot %+v small %+v", h.Hot, h.Small)
	}
	if h.Hot.Published != 40 || h.Hot.Expected != 40*200 || h.Hot.Received != h.Hot.Expected {
		t.Fatalf("hot %+v", h.Hot)
	}
	if h.Small.Published != 400 || h.Small.Expected != 400 || h.Small.Received != h.Small.Expected {
		t.Fatalf("small %+v", h.Small)
	}
	if h.Hot.Latency.Count != h.Hot.Received || h.Small.Latency.Count != h.Small.Received || h.Small.PerSec <= 0 {
		t.Fatalf("latency hot %+v small %+v", h.Hot.Latency, h.Small.Latency)
	}
	if d := res.Delivery; d.Gaps != 0 || d.Dups != 0 || d.Received != h.Hot.Received+h.Small.Received {
		t.Fatalf("delivery %+v", d)
	}
	if h.Omem.Samples == 0 || h.Omem.Clients < 1 || h.Omem.Redis == "" {
		t.Fatalf("omem %+v", h.Omem)
	}
	if flagValue(res.Node.Args, "broker") != "redis://"+h.Omem.Redis {
		t.Fatalf("node args %v, redis %s", res.Node.Args, h.Omem.Redis)
	}
}

// TestE2ERecover: the recover scenario in miniature on each backbone (a
// redis-server the harness starts for redis): every round cuts its share,
// every cut reconnects and recovers, and every subscriber ends with each
// offset exactly once.
func TestE2ERecover(t *testing.T) {
	for _, backbone := range []string{BackboneMemory, BackboneRedis} {
		t.Run(backbone, func(t *testing.T) {
			res := runE2E(t, Params{
				Scenario: ScenarioRecover, Backbone: backbone, Conns: 200, Workers: 2, Rate: 20, Duration: 3 * time.Second,
				CutEvery: time.Second, CutFraction: 0.1, HistorySize: 500,
			})
			rc, d := res.Recover, res.Delivery
			if rc == nil || d == nil {
				t.Fatalf("no recover result: %+v", res)
			}
			if rc.Rounds != 3 || rc.Cuts != 60 || rc.Reconnects != 60 || rc.CaughtUp.Count != 60 || rc.Backbone != backbone {
				t.Fatalf("cuts %+v", rc)
			}
			if d.Published != 60 || rc.FinalOffset != 60 || d.Expected != 60*200 || d.Received != d.Expected || rc.Deliveries != d.Received {
				t.Fatalf("delivery %+v recover %+v", d, rc)
			}
			if rc.Lost != 0 || rc.Dups != 0 || rc.NotRecovered != 0 || rc.EpochResets != 0 || rc.Behind != 0 || rc.ReconnectFailures != 0 {
				t.Fatalf("recovery %+v", rc)
			}
			if rc.Live+rc.Replayed != rc.Deliveries || res.Latency.Count != rc.Live || rc.CaughtUp.P50 <= 0 {
				t.Fatalf("live %d + replayed %d of %d, latency %+v, caught up %+v", rc.Live, rc.Replayed, rc.Deliveries, res.Latency, rc.CaughtUp)
			}
			if flagValue(res.Node.Args, "history") != "bench.>=500,10m" {
				t.Fatalf("node args %v", res.Node.Args)
			}
			if broker := flagValue(res.Node.Args, "broker"); (backbone == BackboneRedis) != strings.HasPrefix(broker, "redis://") {
				t.Fatalf("backbone %s, node args %v", backbone, res.Node.Args)
			}
			if !res.OK {
				t.Fatalf("judged not OK: %v", res.Notes)
			}
		})
	}
}

// TestE2EJoinStorm: the joinstorm scenario in miniature, with a cut-off of
// 100: the harness gives the node its presence rules, the canary loses
// nothing, gets the join events until the group passes the cut-off and
// none after, and presence_stats counts every member and the canary.
func TestE2EJoinStorm(t *testing.T) {
	res := runE2E(t, Params{
		Scenario: ScenarioJoinStorm, Conns: 300, Workers: 2, Rate: 20, Duration: time.Second,
		P99Limit: time.Second, SpawnArgs: []string{"-join-leave-max", "100", "-pprof"},
	})
	js, d := res.JoinStorm, res.Delivery
	if js == nil || d == nil {
		t.Fatalf("no joinstorm result: %+v", res)
	}
	if flagValue(res.Node.Args, "presence") != "storm.>" || flagValue(res.Node.Args, "join-leave") != "storm.>" || js.JoinLeaveMax != 100 {
		t.Fatalf("node args %v, cut-off %d", res.Node.Args, js.JoinLeaveMax)
	}
	if res.Connect.Subscribed != 300 || js.Members != 300 || js.StormSeconds <= 0 {
		t.Fatalf("connect %+v storm %+v", res.Connect, js)
	}
	if d.Published == 0 || d.Expected != d.Published || d.Received != d.Expected || d.Lost != 0 || d.Gaps != 0 || d.Dups != 0 {
		t.Fatalf("canary delivery %+v", d)
	}
	if js.Before.Count != 20 || js.After.Count != 40 || js.During.Count == 0 || res.Latency != js.During ||
		js.Before.Count+js.During.Count+js.After.Count != d.Received {
		t.Fatalf("canary latency before %+v during %+v after %+v", js.Before, js.During, js.After)
	}
	if len(js.Seconds) == 0 || js.Seconds[len(js.Seconds)-1].Members == 0 {
		t.Fatalf("storm by second %+v", js.Seconds)
	}
	n := int64(0)
	for _, s := range js.Seconds {
		n += s.Latency.Count
	}
	if n != js.During.Count {
		t.Fatalf("%d canary messages by second, %d during the storm", n, js.During.Count)
	}
	if js.CanaryJoins < 50 || js.CanaryJoins > 100 || js.CanaryLeaves != 0 || js.CanaryLastJoin <= 0 {
		t.Fatalf("canary events: %d joins, %d leaves, last at %.2f s", js.CanaryJoins, js.CanaryLeaves, js.CanaryLastJoin)
	}
	if js.MemberJoins == 0 || js.NodeEvents < float64(js.CanaryJoins) || js.MemberDeliveries == 0 {
		t.Fatalf("members %+v", js)
	}
	if pc := res.Presence; pc == nil || pc.Err != "" || pc.Want != 301 || pc.Clients != 301 || pc.Topic != "storm.0" {
		t.Fatalf("presence %+v", res.Presence)
	}
	if !res.OK || len(res.ServerCloses) != 0 {
		t.Fatalf("judged not OK: %v, closes %v, errors %v", res.Notes, res.ServerCloses, res.Errors)
	}
}

// TestE2EPresence: a latency run on a node with presence ends with a
// presence_stats that counts every subscriber; on a node without, the
// node's refusal makes the run NOT OK.
func TestE2EPresence(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"on", Params{SpawnArgs: []string{"-presence", "bench.>", "-join-leave", "none.>"}}, true},
		{"off", Params{PresenceStats: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			p.Scenario, p.Conns, p.Workers, p.Rate, p.Duration = ScenarioLatency, 300, 2, 10, time.Second
			res := runE2E(t, p)
			pc := res.Presence
			if pc == nil || pc.Want != 300 || res.Delivery.Lost != 0 {
				t.Fatalf("presence %+v delivery %+v", pc, res.Delivery)
			}
			if tt.ok && (pc.Err != "" || pc.Clients != 300 || pc.Users != 1 || !res.OK) {
				t.Fatalf("presence %+v, ok %v, notes %v", pc, res.OK, res.Notes)
			}
			if !tt.ok && (!strings.Contains(pc.Err, "not_enabled") || res.OK) {
				t.Fatalf("presence %+v, ok %v", pc, res.OK)
			}
		})
	}
}

// TestE2EKafka: the kafka scenario in miniature on a kfake and a
// redis-server the harness starts (building kfake itself): every record is
// consumed, published once and delivered to each subscriber of its key's
// topic, and the consumer lag reads 0 at the end.
func TestE2EKafka(t *testing.T) {
	res := runE2E(t, Params{
		Scenario: ScenarioKafka, Conns: 100, Workers: 2, Topics: 10, Records: 2000, KafkaPartitions: 3, SpawnArgs: []string{"-pprof"},
	})
	k, d := res.Kafka, res.Delivery
	if k == nil || d == nil {
		t.Fatalf("no kafka result: %+v", res)
	}
	if !k.Kfake || k.Partitions != 3 || k.PartitionsUsed == 0 || k.Keys != 10 || k.Template != "events.{key}" || !k.Assigned {
		t.Fatalf("kafka %+v", k)
	}
	if flagValue(res.Node.Args, "kafka-brokers") != k.Brokers || flagValue(res.Node.Args, "kafka-topics") != "events" ||
		!strings.HasPrefix(flagValue(res.Node.Args, "broker"), "redis://") {
		t.Fatalf("node args %v, brokers %s", res.Node.Args, k.Brokers)
	}
	if k.Produced != 2000 || k.ProduceErrors != 0 || k.Consumed != 2000 || k.Published != 2000 || k.Failed != 0 {
		t.Fatalf("records %+v", k)
	}
	if k.PublishedSeconds <= 0 || k.PublishRate <= 0 || !k.LagZero || k.LagEnd != 0 || k.LagPartitions < k.PartitionsUsed || len(k.Series) == 0 {
		t.Fatalf("rates and lag %+v", k)
	}
	if d.Published != 2000 || d.Expected != 2000*10 || d.Received != d.Expected || d.Lost != 0 || d.Gaps != 0 || d.Dups != 0 || d.Unstamped != 0 {
		t.Fatalf("delivery %+v", d)
	}
	if res.Latency.Count != d.Received || res.Latency.P50 <= 0 || !res.OK {
		t.Fatalf("latency %+v, ok %v, notes %v", res.Latency, res.OK, res.Notes)
	}
}
