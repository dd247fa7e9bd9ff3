package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sampleResult builds a result by hand, as Run would fill it.
func sampleResult(s Scenario) *Result {
	h := newHist()
	for i := 1; i <= 500; i++ {
		recordDur(h, time.Duration(i)*10*time.Microsecond)
	}
	r := &Result{
		Name: string(s), Scenario: s, Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Seconds: 12.5,
		Params:  Params{Scenario: s, Conns: 1000, TopicsPerConn: 2, Topics: 200},
		Targets: []string{testTarget}, Workers: 1, OK: true,
		Connect: ConnectResult{Attempted: 1000, Connected: 1000, Subscribed: 1000, Subscriptions: 2000,
			Seconds: 0.5, PerSec: 2000, Handshake: summarize(h), SubAck: summarize(h)},
		Delivery: &DeliveryResult{Published: 10, Expected: 100, Received: 99, Lost: 1, LossRatio: 0.01, PerSec: 50, Seconds: 2},
		Latency:  summarize(h), LatencyCDF: cdf(h, 10),
		Server: ServerResult{Source: "/proc/1", RSSBaseline: 10 << 20, RSSLoaded: 20 << 20, RSSPerConn: 10485.76,
			CPUPublish: CPU{Seconds: 1, Wall: 2, Percent: 50}},
		Samples: []Sample{{T: 0.5, RSS: 11 << 20, Open: 100}, {T: 1, RSS: 20 << 20, Open: 1000, Received: 40}},
		Notes:   []string{"a note with <markup> & \"quotes\""},
	}
	switch s {
	case ScenarioSteps:
		r.Steps = []StepResult{
			{Step: 1, Rate: 50, PerSec: 1000, Latency: summarize(h)},
			{Step: 2, Rate: 75, PerSec: 1500, Latency: summarize(h), LossRatio: 0.5, Stop: "loss over the limit"},
		}
	case ScenarioChurn:
		r.Delivery = nil
		r.Churn = &ChurnResult{
			Cycles:   []CycleResult{{Connected: 1000, Subscribed: 1000, Seconds: 0.5, PerSec: 2000}},
			Baseline: map[string]float64{"subsock_connections": 0}, After: map[string]float64{"subsock_connections": 0},
			Returned: true, RSSBaseline: 10 << 20, RSSAfter: 11 << 20, RSSPeak: 30 << 20,
		}
	case ScenarioHol:
		r.Hol = &HolResult{
			Hot: ClassResult{Topics: 1, Subscribers: 900, Rate: 100, PublishRate: 99, Published: 1000,
				Expected: 900000, Received: 900000, PerSec: 90000, Latency: summarize(h)},
			Small: ClassResult{Topics: 100, Subscribers: 100, Rate: 1000, PublishRate: 990, Published: 10000,
				Expected: 10000, Received: 9990, Lost: 10, LossRatio: 0.001, PerSec: 990, Latency: summarize(h)},
			Omem: OmemResult{Redis: "127.0.0.1:6379", Samples: 100, Clients: 1, MaxBytes: 2048, MaxList: 3},
		}
	case ScenarioRecover:
		r.Recover = &RecoverResult{Backbone: BackboneRedis, CutEvery: 1, CutFraction: 0.1, Rounds: 30, Cuts: 3000, Reconnects: 3000,
			FinalOffset: 600, Deliveries: 600000, Live: 590000, Replayed: 10000, CaughtUp: summarize(h), ReplayLatency: summarize(h)}
	case ScenarioJoinStorm:
		r.Params.TopicsPerConn, r.Params.Topics, r.Params.TopicPrefix, r.Params.Rate = 1, 1, "storm", 20
		r.Params.P99Limit, r.Params.ConnectRate = 50*time.Millisecond, 2000
		r.Delivery = &DeliveryResult{Published: 160, Expected: 160, Received: 160, PublishRate: 20, PerSec: 20, Seconds: 8}
		r.JoinStorm = &JoinStormResult{Members: 1000, StormSeconds: 0.5, JoinsPerSec: 2000, LeadSeconds: 1, TailSeconds: 2,
			JoinLeaveMax: 1000, CanaryJoins: 999, CanaryLastJoin: 0.48, Before: summarize(h), During: summarize(h), After: summarize(h),
			MemberDeliveries: 100000, MemberLatency: summarize(h), MemberJoins: 498501, MemberLeaves: 498501, NodeEvents: 499500,
			CPUStorm: CPU{Seconds: 0.4, Wall: 0.5, Percent: 80},
			Seconds:  []StormSecond{{Second: 1, Members: 1000, Latency: Percentiles{Count: 20, P99: 3.5, Max: 4}}}}
		r.Presence = &PresenceCheck{Topic: "storm.0", Want: 1001, Clients: 1001, Users: 1, Millis: 1.5}
	case ScenarioKafka:
		r.Params.TopicsPerConn, r.Params.Topics, r.Params.TopicPrefix, r.Params.Records = 1, 100, "events", 200000
		r.Delivery = &DeliveryResult{Published: 200000, Expected: 2000000, Received: 2000000, PublishRate: 13000, PerSec: 130000, Seconds: 15.4}
		r.Kafka = &KafkaResult{Brokers: "127.0.0.1:9092", Kfake: true, Topic: "events", Partitions: 6, PartitionsUsed: 6,
			Keys: 100, Template: "events.{key}", Assigned: true, AssignSeconds: 0.2, Records: 200000, Produced: 200000,
			ProduceSeconds: 0.3, ProduceRate: 666667, Consumed: 200000, Published: 200000, ConsumedSeconds: 15.2,
			PublishedSeconds: 15.3, ConsumeRate: 13158, PublishRate: 13072, PeakPublishRate: 15000, LagMax: 180000,
			LagPartitions: 6, LagZero: true, LagZeroSeconds: 15.3, KafkaCPU: CPU{Percent: 1}, RedisCPU: CPU{Percent: 11},
			HarnessCPU: CPU{Seconds: 0.4, Wall: 15.4, Percent: 3},
			Series: []KafkaSample{{T: 0.1, Produced: 100000, Consumed: 1000, Published: 990, Lag: 99000, LagPartitions: 6},
				{T: 15.3, Produced: 200000, Consumed: 200000, Published: 200000, LagPartitions: 6}}}
	}
	return r
}

func TestRenderHTML(t *testing.T) {
	for _, s := range []Scenario{ScenarioLatency, ScenarioSteps, ScenarioChurn, ScenarioIdle, ScenarioRecover, ScenarioKafka} {
		t.Run(string(s), func(t *testing.T) {
			r := sampleResult(s)
			if s == ScenarioIdle {
				r.Delivery, r.LatencyCDF, r.Latency = nil, nil, Percentiles{}
			}
			b, err := RenderHTML(r)
			if err != nil {
				t.Fatal(err)
			}
			page := string(b)
			if !strings.Contains(page, "Chart.js v4.6.1") || !strings.Contains(page, "new Chart(") {
				t.Fatal("the page must inline Chart.js and draw with it")
			}
			if strings.Contains(page, `src="http`) || strings.Contains(page, `href="http`) {
				t.Fatal("the page must not load anything from the network")
			}
			if strings.Contains(page, "<markup>") {
				t.Fatal("notes must be escaped")
			}
			canvases := map[string]bool{
				"cdf":     r.LatencyCDF != nil,
				"steps":   r.Steps != nil,
				"rate":    r.Delivery != nil,
				"rssconn": r.Churn == nil,
				"kafka":   r.Kafka != nil,
			}
			for id, want := range canvases {
				if got := strings.Contains(page, `<canvas id="`+id+`">`); got != want {
					t.Errorf("canvas %s present = %v, want %v", id, got, want)
				}
			}
			// The data handed to the charts is the result itself.
			m := regexp.MustCompile(`const R = (\{.*\});\n`).FindStringSubmatch(page)
			if m == nil {
				t.Fatal("no result object in the page")
			}
			var back Result
			if err := json.Unmarshal([]byte(m[1]), &back); err != nil {
				t.Fatalf("embedded result is not JSON: %v", err)
			}
			if back.Name != r.Name || len(back.Steps) != len(r.Steps) || back.Connect.Connected != 1000 {
				t.Fatalf("embedded result differs: %+v", back)
			}
		})
	}
}

func TestWriteFilesAndReadResult(t *testing.T) {
	dir := t.TempDir()
	r := sampleResult(ScenarioSteps)
	jp, hp, err := r.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if jp != filepath.Join(dir, "steps.json") || hp != filepath.Join(dir, "steps.html") {
		t.Fatalf("paths %s %s", jp, hp)
	}
	back, err := ReadResult(jp)
	if err != nil {
		t.Fatal(err)
	}
	if back.Name != r.Name || back.Latency != r.Latency || len(back.Steps) != 2 || back.Steps[1].Stop != r.Steps[1].Stop {
		t.Fatalf("read back %+v", back)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadResult(filepath.Join(dir, "bad.json")); err == nil {
		t.Fatal("a broken file must not read")
	}
}

func TestWriteSummary(t *testing.T) {
	results := []*Result{sampleResult(ScenarioLatency), sampleResult(ScenarioSteps), sampleResult(ScenarioChurn), sampleResult(ScenarioHol), sampleResult(ScenarioRecover)}
	results[0].OK = false
	var b bytes.Buffer
	if err := WriteSummary(&b, results); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "| scenario |") || !strings.HasPrefix(lines[1], "|---") {
		t.Fatalf("no table header:\n%s", out)
	}
	cols := strings.Count(lines[0], "|")
	for _, l := range lines[2:5] {
		if strings.Count(l, "|") != cols {
			t.Errorf("row has %d separators, header %d: %s", strings.Count(l, "|"), cols, l)
		}
	}
	for _, want := range []string{
		"| [latency](latency.html) | 1000 × 2 |", "99 / 100", "1.000%", "**no**",
		"1000 × 2 × 1 cycles", "+1.0 MiB after", "**steps** (steps, 1000 subscribers)", "loss over the limit",
		"**hol** (head-of-line on Redis)", "| hot | 1 × 900 | 99 (100) | 90000 | 0.000% |", "| small | 100 × 1 | 990 (1000) |", "max 2.00 KiB over 100 samples",
		"**recover** (cuts and recovery with since", "| [recover](recover.html) | redis | 1000 | 0 | 3000 in 30 rounds | 3000 | 600000 (10000) | 0 | 0 | 0 | 2.50 / 4.95 | yes |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestPrintFiguresRecover(t *testing.T) {
	var b bytes.Buffer
	PrintFigures(&b, sampleResult(ScenarioRecover))
	out := b.String()
	for _, want := range []string{"== recover (recover) OK", "3000 cut, 3000 reconnected", "lost 0 (gaps 0, tail 0) · dups 0 · recovered:false 0",
		"600000 = 590000 live + 10000 replayed, up to offset 600", "cut → caught up", "(redis backbone)"} {
		if !strings.Contains(out, want) {
			t.Errorf("figures lack %q:\n%s", want, out)
		}
	}
}

func TestPrintFigures(t *testing.T) {
	var b bytes.Buffer
	PrintFigures(&b, sampleResult(ScenarioSteps))
	out := b.String()
	for _, want := range []string{"== steps (steps) OK", "connect rate", "2000 upgrades/s", "99 received of 100 expected", "step 2", "note: a note"} {
		if !strings.Contains(out, want) {
			t.Errorf("figures lack %q:\n%s", want, out)
		}
	}
}

// TestWriteSummarySSE: each SSE run sits beside the WebSocket run of the
// same parameters, with the ratios and the targets judged.
func TestWriteSummarySSE(t *testing.T) {
	idle, idleSSE := sampleResult(ScenarioIdle), sampleResult(ScenarioIdle)
	idle.Delivery, idleSSE.Delivery = nil, nil
	idleSSE.Name, idleSSE.Params.Transport = "idle-sse", TransportSSE
	idle.Server.RSSPerConn, idleSSE.Server.RSSPerConn = 4096, 4096*1.25
	lat, latSSE := sampleResult(ScenarioLatency), sampleResult(ScenarioLatency)
	latSSE.Name, latSSE.Params.Transport = "latency-sse", TransportSSE
	latSSE.Latency.P99 = lat.Latency.P99 * 1.1
	lat.Delivery.Lost, latSSE.Delivery.Lost = 0, 0
	lone := sampleResult(ScenarioFanout)
	lone.Name, lone.Params.Transport, lone.Params.Rate = "fanout-sse", TransportSSE, 100

	var b bytes.Buffer
	if err := WriteSummary(&b, []*Result{idle, idleSSE, lat, latSSE, lone}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"**SSE vs WebSocket**",
		"| [idle-sse](idle-sse.html) | [idle](idle.html) | 5.00 / 4.00 (×1.25) |", "memory **missed**",
		"| [latency-sse](latency-sse.html) | [latency](latency.html) |", "| 50 / 50 (×1.00) |", "5.45 / 4.95 (×1.10)", "deliveries/s met · p99 met",
		"| [fanout-sse](fanout-sse.html) | none with the same parameters |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| [idle](idle.html) | [") {
		t.Error("a WebSocket run must not get a row of its own in the comparison")
	}
	table := strings.Split(strings.TrimSpace(out[strings.Index(out, "| SSE run |"):]), "\n")
	for _, l := range table[1:] {
		if strings.Count(l, "|") != strings.Count(table[0], "|") {
			t.Errorf("row has %d separators, header %d: %s", strings.Count(l, "|"), strings.Count(table[0], "|"), l)
		}
	}
}

func TestPrintFiguresJoinStorm(t *testing.T) {
	var b bytes.Buffer
	PrintFigures(&b, sampleResult(ScenarioJoinStorm))
	out := b.String()
	for _, want := range []string{"== joinstorm (joinstorm) OK", "canary deliveries", "160 received of 160 expected",
		"canary latency, storm", "1000 members joined storm.0 in 0.50 s (2000 joins/s; asked 2000/s)",
		"canary during the storm", "canary by second of the storm", "1 s: 3.50 / 4.00 (1000)", "999 (cut-off -join-leave-max 1000), the last 0.48 s into the storm",
		"498501 join and 498501 leave events received", "499500 queued",
		"storm.0: 1001 clients, 1 users (the harness had 1001 subscribers connected)"} {
		if !strings.Contains(out, want) {
			t.Errorf("figures lack %q:\n%s", want, out)
		}
	}
}

// TestWriteSummaryJoinStormAndPresence: the joinstorm table judges the
// canary's p99, and each run on a presence node sits beside its plain
// twin with the ratios and issue 13's targets.
func TestWriteSummaryJoinStormAndPresence(t *testing.T) {
	storm := sampleResult(ScenarioJoinStorm)
	slow := sampleResult(ScenarioJoinStorm)
	slow.Name, slow.OK = "joinstorm-slow", false
	slow.JoinStorm.During.P99 = 64.9
	lat, pres := sampleResult(ScenarioLatency), sampleResult(ScenarioLatency)
	lat.Node = &NodeInfo{Args: []string{"-loops", "2"}}
	pres.Name, pres.Node = "latency-presence", &NodeInfo{Args: []string{"-loops", "2", "-presence", "bench.>"}}
	pres.Presence = &PresenceCheck{Topic: "bench.0", Want: 1000, Clients: 1000, Users: 1}
	pres.Server.RSSPerConn, pres.Server.HeapPerConn, lat.Server.HeapPerConn = 10485.76*1.05, 2048*1.2, 2048
	pres.Latency.P99 = lat.Latency.P99 * 1.1
	lone := sampleResult(ScenarioFanout)
	lone.Name, lone.Presence = "fanout-presence", &PresenceCheck{Topic: "bench.0", Want: 1000, Err: "err not_enabled: x"}
	// An SSE run must still pair with the plain run, not the presence one.
	sse := sampleResult(ScenarioLatency)
	sse.Name, sse.Params.Transport = "latency-sse", TransportSSE

	var b bytes.Buffer
	plain := sampleResult(ScenarioJoinStorm)
	plain.Name, plain.Params.NoPresence, plain.Presence = "joinstorm-plain", true, nil
	plain.JoinStorm.CanaryJoins, plain.JoinStorm.During.P99 = 0, 9.9
	if err := WriteSummary(&b, []*Result{lat, pres, sse, lone, storm, slow, plain}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"**joinstorm** (members join",
		"| [joinstorm](joinstorm.html) | 1000 in 0.50 (2000) | 20 | 160 / 160 | 2.50 / 4.95 / 5.00 | 4.95 / 4.95 | 999 (1000) | 498501 | 80% | < 50.0 ms met | yes |",
		"| < 50.0 ms **missed** | **no** |",
		"The same storm with and without presence + join-leave", "joinstorm, the canary by second of the storm (p99 / max ms, members connected at its end): 1 s: 3.50 / 4.00 (1000)",
		"| [joinstorm](joinstorm.html) | [joinstorm-plain](joinstorm-plain.html) | 2.50 / 2.50 (×1.00) | 4.95 / 9.90 (×0.50) |",
		"| [joinstorm-slow](joinstorm-slow.html) | [joinstorm-plain](joinstorm-plain.html) | 2.50 / 2.50 (×1.00) | 64.90 / 9.90 (×6.56) |",
		"**presence vs none**",
		"| [latency-presence](latency-presence.html) | [latency](latency.html) | 10.75 / 10.24 (×1.05) | 2.40 / 2.00 (×1.20) |",
		"| 1000 / 1000 | memory **missed** · p99 met |",
		"| [fanout-presence](fanout-presence.html) | none with the same parameters |", "**err not_enabled: x**",
		"| [latency-sse](latency-sse.html) | [latency](latency.html) |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| [joinstorm-plain](joinstorm-plain.html) | [") {
		t.Error("a control run must not be compared with itself")
	}
	for _, head := range []string{"| run | members in s", "| presence run |", "| run | control |"} {
		table := strings.Split(strings.TrimSpace(out[strings.Index(out, head):]), "\n")
		for _, l := range table[1:] {
			if !strings.HasPrefix(l, "|") {
				break
			}
			if strings.Count(l, "|") != strings.Count(table[0], "|") {
				t.Errorf("row has %d separators, header %d: %s", strings.Count(l, "|"), strings.Count(table[0], "|"), l)
			}
		}
	}
}
