package bench

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
)

//go:embed assets/chart.umd.js
var chartJS string

//go:embed report.html.tmpl
var reportTmpl string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":  func(f float64) float64 { return f * 100 },
	"inc":  func(i int) int { return i + 1 },
	"join": strings.Join,
}).Parse(reportTmpl))

// figure is one labelled value of a report.
type figure struct{ Label, Value string }

type churnRow struct{ Label, Base, After string }

// RenderHTML renders r as one self-contained page: the figures, the
// charts, and Chart.js inlined so the file works offline.
func RenderHTML(r *Result) ([]byte, error) {
	data := struct {
		R         *Result
		Figures   []figure
		ChurnRows []churnRow
		ChartJS   template.JS
	}{R: r, Figures: keyFigures(r), ChartJS: template.JS(chartJS)}
	if r.Churn != nil {
		for _, k := range churnKeys {
			data.ChurnRows = append(data.ChurnRows, churnRow{k, fmt.Sprint(r.Churn.Baseline[k]), fmt.Sprint(r.Churn.After[k])})
		}
		data.ChurnRows = append(data.ChurnRows,
			churnRow{"node RSS", mib(r.Churn.RSSBaseline), mib(r.Churn.RSSAfter)},
			churnRow{"node RSS peak", "", mib(r.Churn.RSSPeak)},
			churnRow{"node heap in use", mib(r.Churn.HeapBaseline), mib(r.Churn.HeapAfter)})
	}
	var b bytes.Buffer
	if err := reportTemplate.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("bench: render html: %w", err)
	}
	return b.Bytes(), nil
}

// keyFigures lists the headline numbers of r in reading order.
func keyFigures(r *Result) []figure {
	var f []figure
	add := func(label, format string, a ...any) { f = append(f, figure{label, fmt.Sprintf(format, a...)}) }
	c := &r.Connect
	sse := r.Params.Transport == TransportSSE
	if sse {
		add("transport", "SSE: one GET /sse?topics=… per connection, whose 200 head is the subscription's ack")
	}
	add("connections", "%d connected of %d attempted, %d failed", c.Connected, c.Attempted, c.Failed)
	if c.Subscriptions > 0 {
		add("subscriptions", "%d (%d per connection)", c.Subscriptions, r.Params.TopicsPerConn)
	}
	if c.PerSec > 0 {
		unit := "upgrades/s"
		if sse {
			unit = "streams/s (the 200 head, subscribed)"
		}
		add("connect rate", "%.0f %s (%.2f s)", c.PerSec, unit, c.Seconds)
	}
	if c.Handshake.Count > 0 {
		label := "handshake"
		if sse {
			label = "handshake (dial → 200 head)"
		}
		add(label, "p50 %.2f ms · p99 %.2f ms · max %.2f ms", c.Handshake.P50, c.Handshake.P99, c.Handshake.Max)
	}
	if c.SubAck.Count > 0 {
		label := "subscribe ack"
		if sse {
			label = "subscribe ack (request → 200 head)"
		}
		add(label, "p50 %.2f ms · p99 %.2f ms · %.0f subscriptions/s", c.SubAck.P50, c.SubAck.P99, c.SubsPerSec)
	}
	if c.Ready.Count > 0 {
		add("ready (dial → subscribed)", "p50 %.2f ms · p99 %.2f ms · max %.2f ms", c.Ready.P50, c.Ready.P99, c.Ready.Max)
	}
	deliveries, latency := "deliveries", "latency"
	if r.JoinStorm != nil {
		deliveries, latency = "member canary deliveries", "member canary latency, storm"
	}
	if r.Kafka != nil {
		latency = "latency, produce → socket"
	}
	if d := r.Delivery; d != nil {
		add("published", "%d (%.1f/s achieved, %d errors, %d late)", d.Published, d.PublishRate, d.PublishErrors, d.Late)
		add(deliveries, "%d received of %d expected · lost %d (%.4f%%) · gaps %d · dups %d", d.Received, d.Expected, d.Lost, d.LossRatio*100, d.Gaps, d.Dups)
		add("delivery rate", "%.0f deliveries/s over %.2f s", d.PerSec, d.Seconds)
	}
	if l := r.Latency; l.Count > 0 {
		add(latency, "p50 %.2f · p90 %.2f · p99 %.2f · p99.9 %.2f · max %.2f ms (%d samples)", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
	}
	if js := r.JoinStorm; js != nil {
		if r.Params.NoPresence {
			add("control run", "the node had no -presence or -join-leave rule for the topic")
		}
		add("storm", "%d members joined %s.0 in %.2f s (%.0f joins/s; asked %.0f/s), after a %.1f s lead, before a %.1f s tail",
			js.Members, r.Params.TopicPrefix, js.StormSeconds, js.JoinsPerSec, r.Params.ConnectRate, js.LeadSeconds, js.TailSeconds)
		for _, ph := range []struct {
			name string
			l    Percentiles
		}{{"member canary before the storm", js.Before}, {"member canary during the storm", js.During}, {"member canary after the storm", js.After}} {
			add(ph.name, "p50 %.2f · p99 %.2f · max %.2f ms (%d messages)", ph.l.P50, ph.l.P99, ph.l.Max, ph.l.Count)
		}
		if len(js.Seconds) > 0 {
			add("member canary by second of the storm", "%s", stormSeconds(js.Seconds))
		}
		if o := js.Outside; o != nil {
			if d := o.Delivery; d != nil {
				add("outside canary ("+o.Topic+")", "%d received of %d expected (%d published) · lost %d · gaps %d · dups %d · %d join events",
					d.Received, d.Expected, d.Published, d.Lost, d.Gaps, d.Dups, o.Joins)
			}
			for _, ph := range []struct {
				name string
				l    Percentiles
			}{{"outside canary before the storm", o.Before}, {"outside canary during the storm", o.During}, {"outside canary after the storm", o.After}} {
				add(ph.name, "p50 %.2f · p99 %.2f · max %.2f ms (%d messages)", ph.l.P50, ph.l.P99, ph.l.Max, ph.l.Count)
			}
			if len(o.Seconds) > 0 {
				add("outside canary by second of the storm", "%s", stormSeconds(o.Seconds))
			}
		}
		add("join events to the member canary", "%d (cut-off -join-leave-max %d), the last %.2f s into the storm · %d leaves", js.CanaryJoins, js.JoinLeaveMax, js.CanaryLastJoin, js.CanaryLeaves)
		ml := js.MemberLatency
		add("members", "%d deliveries (p50 %.2f · p99 %.2f · max %.2f ms) · %d join and %d leave events received", js.MemberDeliveries, ml.P50, ml.P99, ml.Max, js.MemberJoins, js.MemberLeaves)
		add("node join/leave deliveries", "%.0f queued over lead, storm and tail · %.0f refused by the backbone", js.NodeEvents, js.NodeEventErrors)
		add("node CPU, storm", "%.2f s over %.2f s (%.0f%% of a core)", js.CPUStorm.Seconds, js.CPUStorm.Wall, js.CPUStorm.Percent)
	}
	if k := r.Kafka; k != nil {
		kafkaFigures(k, add)
	}
	if pc := r.Presence; pc != nil {
		if pc.Err != "" {
			add("presence_stats", "%s: %s", pc.Topic, pc.Err)
		} else {
			add("presence_stats", "%s: %d clients, %d users (the harness had %d subscribers connected), answered in %.1f ms", pc.Topic, pc.Clients, pc.Users, pc.Want, pc.Millis)
		}
	}
	if p := r.PublishRTT; p.Count > 0 {
		add("publish round trip", "p50 %.2f ms · p99 %.2f ms", p.P50, p.P99)
	}
	s := &r.Server
	add("node RSS", "%s before → %s loaded", mib(s.RSSBaseline), mib(s.RSSLoaded))
	if s.RSSPerConn != 0 {
		add("node RSS per connection", "%s", kib(s.RSSPerConn))
	}
	if s.RSSPerSub != 0 {
		add("node RSS per subscription", "%.0f B (growth / subscriptions, connections included)", s.RSSPerSub)
	}
	if s.HeapPerConn != 0 {
		add("node heap in use per connection", "%s (%s → %s)", kib(s.HeapPerConn), mib(s.HeapBaseline), mib(s.HeapLoaded))
	}
	if s.CPUConnect.Wall > 0 {
		add("node CPU, connect", "%.2f s over %.2f s (%.0f%% of a core)", s.CPUConnect.Seconds, s.CPUConnect.Wall, s.CPUConnect.Percent)
	}
	if s.CPUPublish.Wall > 0 {
		add("node CPU, publish", "%.2f s over %.2f s (%.0f%% of a core)", s.CPUPublish.Seconds, s.CPUPublish.Wall, s.CPUPublish.Percent)
	}
	if c := s.ClientCPUPublish; c.Wall > 0 {
		add("client CPU, publish", "%.2f s over %.2f s (%.0f%% of a core, all workers)", c.Seconds, c.Wall, c.Percent)
	}
	if s.DeliveriesPerWrite > 0 {
		add("deliveries per writev", "%.1f", s.DeliveriesPerWrite)
	}
	if h := r.Hol; h != nil {
		for _, c := range []struct {
			name string
			cls  ClassResult
		}{{"hot topic", h.Hot}, {"small topics", h.Small}} {
			l := c.cls.Latency
			add(c.name, "%d topic(s), %d subscribers, %g msg/s asked, %.0f/s published (%d late) · %.0f deliveries/s · lost %d of %d · p50 %.2f · p99 %.2f · p99.9 %.2f · max %.2f ms",
				c.cls.Topics, c.cls.Subscribers, c.cls.Rate, c.cls.PublishRate, c.cls.Late, c.cls.PerSec, c.cls.Lost, c.cls.Expected, l.P50, l.P99, l.P999, l.Max)
		}
		add("redis output buffer (omem)", "max %s · oll max %d · %d samples of %s, %d pub/sub connection(s)",
			kib(float64(h.Omem.MaxBytes)), h.Omem.MaxList, h.Omem.Samples, h.Omem.Redis, h.Omem.Clients)
	}
	if rc := r.Recover; rc != nil {
		add("cuts", "%d rounds every %gs × %g%% of the connections: %d cut, %d reconnected, %d subs with since refused, %d gave up (%s backbone)",
			rc.Rounds, rc.CutEvery, rc.CutFraction*100, rc.Cuts, rc.Reconnects, rc.Refused, rc.ReconnectFailures, rc.Backbone)
		add("recovery", "lost %d (gaps %d, tail %d) · dups %d · recovered:false %d (%d offsets skipped) · epoch resets %d · behind at the end %d",
			rc.Lost, rc.Gaps, rc.Tail, rc.Dups, rc.NotRecovered, rc.Skipped, rc.EpochResets, rc.Behind)
		add("recovered deliveries", "%d = %d live + %d replayed, up to offset %d", rc.Deliveries, rc.Live, rc.Replayed, rc.FinalOffset)
		l := rc.CaughtUp
		add("cut → caught up", "p50 %.2f · p90 %.2f · p99 %.2f · max %.2f ms (%d cuts)", l.P50, l.P90, l.P99, l.Max, l.Count)
		if l := rc.ReplayLatency; l.Count > 0 {
			add("replayed: publish → receive", "p50 %.2f · p99 %.2f · max %.2f ms", l.P50, l.P99, l.Max)
		}
	}
	if ch := r.Churn; ch != nil {
		add("registry back to baseline", "%v after %.1f s", ch.Returned, ch.ReturnSeconds)
		add("node RSS after churn", "%s (baseline %s, peak %s)", mib(ch.RSSAfter), mib(ch.RSSBaseline), mib(ch.RSSPeak))
		add("node heap in use after churn", "%s (baseline %s)", mib(ch.HeapAfter), mib(ch.HeapBaseline))
	}
	add("box load average", "%.1f at the start, %.1f at the end", r.LoadAvg[0], r.LoadAvg[1])
	if len(r.ServerCloses) > 0 {
		add("closed by the node", "%s", sortedCounts(r.ServerCloses))
	}
	if len(r.Errors) > 0 {
		add("errors", "%s", sortedCounts(r.Errors))
	}
	return f
}

// kafkaFigures adds the kafka scenario's lines.
func kafkaFigures(k *KafkaResult, add func(label, format string, a ...any)) {
	src := "a running Kafka"
	if k.Kfake {
		src = "kfake, started by the harness"
	}
	add("kafka", "topic %s, %d partitions (%d took records) on %s (%s); keys 0..%d → %s",
		k.Topic, k.Partitions, k.PartitionsUsed, k.Brokers, src, k.Keys-1, k.Template)
	add("partitions owned by the node", "%v, %.2f s after the subscribers were in", k.Assigned, k.AssignSeconds)
	add("produced", "%d of %d records acknowledged in %.2f s (%.0f records/s), %d errors", k.Produced, k.Records, k.ProduceSeconds, k.ProduceRate, k.ProduceErrors)
	add("node consumed", "%.0f records, all by %s s (%.0f records/s)", k.Consumed, secs(k.ConsumedSeconds), k.ConsumeRate)
	add("node published", "%.0f records, all by %s s (%.0f records/s, best second %.0f/s) · failed %.0f · retried %.0f",
		k.Published, secs(k.PublishedSeconds), k.PublishRate, k.PeakPublishRate, k.Failed, k.Retries)
	back := "did not return to 0"
	if k.LagZero {
		back = fmt.Sprintf("back to 0 at %.2f s", k.LagZeroSeconds)
	}
	add("consumer lag", "max %.0f · %s (last reading %.0f over %d partitions)", k.LagMax, back, k.LagEnd, k.LagPartitions)
	add("CPU from the first record", "kfake %.0f%% · redis-server %.0f%% · harness (producer) %.0f%% of a core, over %.2f s (node and subscribers below)",
		k.KafkaCPU.Percent, k.RedisCPU.Percent, k.HarnessCPU.Percent, k.HarnessCPU.Wall)
}

// secs shows a time in seconds, or "–" for none.
func secs(s float64) string {
	if s == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", s)
}

func kib(b float64) string { return fmt.Sprintf("%.2f KiB", b/1024) }

func sortedCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, "; ")
}

// PrintFigures writes r's key figures as aligned text.
func PrintFigures(w io.Writer, r *Result) {
	status := "OK"
	if !r.OK {
		status = "NOT OK"
	}
	fmt.Fprintf(w, "== %s (%s) %s, %.1f s\n", r.Name, r.Scenario, status, r.Seconds)
	for _, f := range keyFigures(r) {
		fmt.Fprintf(w, "  %-32s %s\n", f.Label, f.Value)
	}
	for _, s := range r.Steps {
		fmt.Fprintf(w, "  step %-2d %7.0f/s  %9.0f deliveries/s  loss %.3f%%  p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms  cpu %.0f%%  %s\n",
			s.Step, s.Rate, s.PerSec, s.LossRatio*100, s.Latency.P50, s.Latency.P99, s.Latency.P999, s.Latency.Max, s.CPUPercent, s.Stop)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// WriteSummary writes a Markdown table with one row per result.
func WriteSummary(w io.Writer, results []*Result) error {
	var b strings.Builder
	b.WriteString("| scenario | conns × topics | connect/s | handshake p50 / p99 ms | msgs/s (asked) | delivered / expected | loss | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | RSS/conn | node CPU | load | ok |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range results {
		topics := "–"
		if r.Params.TopicsPerConn > 0 {
			topics = fmt.Sprint(r.Params.TopicsPerConn)
		}
		conns := fmt.Sprintf("%d × %s", r.Params.Conns, topics)
		if r.Churn != nil {
			conns = fmt.Sprintf("%d × %s × %d cycles", r.Params.Conns, topics, len(r.Churn.Cycles))
		}
		hs := "–"
		if r.Connect.Handshake.Count > 0 {
			hs = fmt.Sprintf("%.2f / %.2f", r.Connect.Handshake.P50, r.Connect.Handshake.P99)
		}
		deliv, loss, rate, pubs := "–", "–", "–", "–"
		if d := r.Delivery; d != nil {
			pubs = fmt.Sprintf("%.1f (%g)", d.PublishRate, r.Params.Rate)
			if h := r.Hol; h != nil {
				pubs = fmt.Sprintf("%.1f (%g)", d.PublishRate, h.Hot.Rate+h.Small.Rate)
			}
			if r.Scenario == ScenarioSteps {
				pubs = fmt.Sprintf("%.1f (steps)", d.PublishRate)
			}
			if k := r.Kafka; k != nil {
				pubs = fmt.Sprintf("%.0f (kafka)", k.PublishRate)
			}
			deliv = fmt.Sprintf("%d / %d", d.Received, d.Expected)
			loss = fmt.Sprintf("%.3f%%", d.LossRatio*100)
			rate = fmt.Sprintf("%.0f", d.PerSec)
		}
		lat := [5]string{"–", "–", "–", "–", "–"}
		if l := r.Latency; l.Count > 0 {
			lat = [5]string{ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max)}
		}
		rss := "–"
		if r.Server.RSSPerConn != 0 {
			rss = kib(r.Server.RSSPerConn)
		}
		if r.Churn != nil {
			rss = fmt.Sprintf("%+.1f MiB after", float64(r.Churn.RSSAfter-r.Churn.RSSBaseline)/(1<<20))
		}
		cpu := r.Server.CPUPublish
		if cpu.Wall == 0 {
			cpu = r.Server.CPUConnect
		}
		ok := "yes"
		if !r.OK {
			ok = "**no**"
		}
		fmt.Fprintf(&b, "| [%s](%s.html) | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f%% | %.1f | %s |\n",
			r.Name, r.Name, conns, r.Connect.PerSec, hs, pubs, deliv, loss, rate, lat[0], lat[1], lat[2], lat[3], lat[4], rss, cpu.Percent, max(r.LoadAvg[0], r.LoadAvg[1]), ok)
	}
	for _, r := range results {
		if len(r.Steps) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n**%s** (steps, %d subscribers):\n\n", r.Name, r.Connect.Subscribed)
		b.WriteString("| step | rate/s | deliveries/s | loss | p50 ms | p99 ms | p99.9 ms | max ms | node CPU | stop |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
		for _, s := range r.Steps {
			fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.3f%% | %s | %s | %s | %s | %.0f%% | %s |\n",
				s.Step, s.Rate, s.PerSec, s.LossRatio*100, ms(s.Latency.P50), ms(s.Latency.P99), ms(s.Latency.P999), ms(s.Latency.Max), s.CPUPercent, s.Stop)
		}
	}
	for _, r := range results {
		h := r.Hol
		if h == nil {
			continue
		}
		fmt.Fprintf(&b, "\n**%s** (head-of-line on Redis):\n\n", r.Name)
		b.WriteString("| class | topics × subscribers | msg/s (asked) | deliveries/s | loss | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, c := range []struct {
			name string
			cls  ClassResult
		}{{"hot", h.Hot}, {"small", h.Small}} {
			l := c.cls.Latency
			fmt.Fprintf(&b, "| %s | %d × %d | %.0f (%g) | %.0f | %.3f%% | %s | %s | %s | %s |\n", c.name, c.cls.Topics,
				c.cls.Subscribers/int64(max(1, c.cls.Topics)), c.cls.PublishRate, c.cls.Rate, c.cls.PerSec, c.cls.LossRatio*100, ms(l.P50), ms(l.P99), ms(l.P999), ms(l.Max))
		}
		fmt.Fprintf(&b, "\nRedis output buffer of the node's pub/sub connection (omem, CLIENT LIST every 100 ms): max %s over %d samples.\n",
			kib(float64(h.Omem.MaxBytes)), h.Omem.Samples)
	}
	writeRecoverSummary(&b, results)
	writeJoinStormSummary(&b, results)
	writeKafkaSummary(&b, results)
	writePresenceSummary(&b, results)
	writeSSESummary(&b, results)
	_, err := io.WriteString(w, b.String())
	return err
}

// Targets of issue 12 for SSE against WebSocket: memory per idle stream
// within 10 %, the same deliveries/s (taken as within 5 %) and p99 within
// 20 %.
const (
	sseMemoryRatio   = 1.10
	sseDeliveryDelta = 0.05
	sseP99Ratio      = 1.20
)

// writeSSESummary adds a table setting each SSE run beside the WebSocket
// run of the same parameters, if any.
func writeSSESummary(b *strings.Builder, results []*Result) {
	head := false
	for _, r := range results {
		if r.Params.Transport != TransportSSE {
			continue
		}
		if !head {
			fmt.Fprintf(b, "\n**SSE vs WebSocket** (each SSE run beside the WebSocket run of the same parameters; (×r) is SSE ÷ WebSocket; targets: RSS per idle stream ≤ ×%.2f, deliveries/s within %.0f %%, p99 ≤ ×%.2f):\n\n",
				sseMemoryRatio, sseDeliveryDelta*100, sseP99Ratio)
			b.WriteString("| SSE run | WebSocket run | RSS/conn KiB | heap/conn KiB | ready p99 ms | subscriptions/s | deliveries/s | loss SSE / WS | p50 ms | p99 ms | node CPU % | targets |\n")
			b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
			head = true
		}
		w := wsTwin(r, results)
		if w == nil {
			fmt.Fprintf(b, "| [%s](%s.html) | none with the same parameters | | | | | | | | | | |\n", r.Name, r.Name)
			continue
		}
		sv, wv := &r.Server, &w.Server
		cells := []string{
			versus("%.2f", sv.RSSPerConn/1024, wv.RSSPerConn/1024),
			versus("%.2f", sv.HeapPerConn/1024, wv.HeapPerConn/1024),
			versus("%.2f", r.Connect.Ready.P99, w.Connect.Ready.P99),
			versus("%.0f", r.Connect.SubsPerSec, w.Connect.SubsPerSec),
		}
		deliv, loss, p50, p99, cpu := "–", "–", "–", "–", "–"
		var verdict []string
		if r.Delivery != nil && w.Delivery != nil {
			deliv = versus("%.0f", r.Delivery.PerSec, w.Delivery.PerSec)
			loss = fmt.Sprintf("%.3f%% / %.3f%%", r.Delivery.LossRatio*100, w.Delivery.LossRatio*100)
			p50 = versus("%.2f", r.Latency.P50, w.Latency.P50)
			p99 = versus("%.2f", r.Latency.P99, w.Latency.P99)
			cpu = versus("%.0f", sv.CPUPublish.Percent, wv.CPUPublish.Percent)
			dr := ratio(r.Delivery.PerSec, w.Delivery.PerSec)
			same := dr >= 1-sseDeliveryDelta && dr <= 1+sseDeliveryDelta && r.Delivery.Lost == 0
			verdict = append(verdict, "deliveries/s "+met(same),
				"p99 "+met(ratio(r.Latency.P99, w.Latency.P99) <= sseP99Ratio))
		}
		if r.Scenario == ScenarioIdle {
			verdict = append(verdict, "memory "+met(ratio(sv.RSSPerConn, wv.RSSPerConn) <= sseMemoryRatio))
		}
		fmt.Fprintf(b, "| [%s](%s.html) | [%s](%s.html) | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Name, r.Name, w.Name, w.Name, cells[0], cells[1], cells[2], cells[3], deliv, loss, p50, p99, cpu, strings.Join(verdict, " · "))
	}
}

// wsTwin is the WebSocket run among results with r's workload, on a node
// without presence.
func wsTwin(r *Result, results []*Result) *Result {
	for _, w := range results {
		if w.Params.Transport != TransportSSE && !hasPresence(w) && sameWorkload(r, w) {
			return w
		}
	}
	return nil
}

// sameWorkload reports whether a and b ran the same scenario with the same
// load (transport and node flags aside).
func sameWorkload(a, b *Result) bool {
	x, y := a.Params, b.Params
	return a.Scenario == b.Scenario && x.Conns == y.Conns && x.TopicsPerConn == y.TopicsPerConn && x.Topics == y.Topics &&
		x.Rate == y.Rate && x.Duration == y.Duration && x.PayloadSize == y.PayloadSize && x.PublishVia == y.PublishVia
}

// hasPresence reports whether r's node had presence: it was asked for
// presence_stats, or a spawned node's flags name -presence.
func hasPresence(r *Result) bool {
	return r.Presence != nil || (r.Node != nil && flagValue(r.Node.Args, "presence") != "")
}

// Targets of issue 13 for presence against none: the node's memory with
// 10,000 subscribers within 10 %, and nothing per message, taken as p99
// within the 20 % that run-to-run noise allows.
const (
	presenceMemoryRatio = 1.10
	presenceP99Ratio    = 1.20
)

// writePresenceSummary sets each run on a node with presence (joinstorm
// aside) beside the run of the same workload without it.
func writePresenceSummary(b *strings.Builder, results []*Result) {
	head := false
	for _, r := range results {
		if !hasPresence(r) || r.JoinStorm != nil {
			continue
		}
		if !head {
			fmt.Fprintf(b, "\n**presence vs none** (each run on a node with presence beside the same workload without; (×r) is presence ÷ none; targets: memory per connection ≤ ×%.2f, p99 ≤ ×%.2f):\n\n",
				presenceMemoryRatio, presenceP99Ratio)
			b.WriteString("| presence run | plain run | RSS/conn KiB | heap/conn KiB | RSS loaded MiB | p50 ms | p99 ms | max ms | node CPU, publish s | presence_stats clients / subscribers | targets |\n")
			b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
			head = true
		}
		stats := "–"
		if pc := r.Presence; pc != nil {
			stats = fmt.Sprintf("%d / %d", pc.Clients, pc.Want)
			if pc.Err != "" {
				stats = "**" + pc.Err + "**"
			} else if pc.Clients != pc.Want {
				stats = "**" + stats + "**"
			}
		}
		var w *Result
		for _, o := range results {
			if o != r && !hasPresence(o) && o.Params.Transport == r.Params.Transport && sameWorkload(r, o) {
				w = o
				break
			}
		}
		if w == nil {
			fmt.Fprintf(b, "| [%s](%s.html) | none with the same parameters | | | | | | | | %s | |\n", r.Name, r.Name, stats)
			continue
		}
		sv, wv := &r.Server, &w.Server
		memOK := within(sv.RSSPerConn, wv.RSSPerConn, presenceMemoryRatio) && within(sv.HeapPerConn, wv.HeapPerConn, presenceMemoryRatio)
		verdict := []string{"memory " + met(memOK)}
		if r.Latency.Count > 0 && w.Latency.Count > 0 {
			verdict = append(verdict, "p99 "+met(ratio(r.Latency.P99, w.Latency.P99) <= presenceP99Ratio))
		}
		fmt.Fprintf(b, "| [%s](%s.html) | [%s](%s.html) | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Name, r.Name, w.Name, w.Name,
			versus("%.2f", sv.RSSPerConn/1024, wv.RSSPerConn/1024),
			versus("%.2f", sv.HeapPerConn/1024, wv.HeapPerConn/1024),
			versus("%.1f", float64(sv.RSSLoaded)/(1<<20), float64(wv.RSSLoaded)/(1<<20)),
			versus("%.2f", r.Latency.P50, w.Latency.P50),
			versus("%.2f", r.Latency.P99, w.Latency.P99),
			versus("%.2f", r.Latency.Max, w.Latency.Max),
			versus("%.2f", sv.CPUPublish.Seconds, wv.CPUPublish.Seconds),
			stats, strings.Join(verdict, " · "))
	}
}

// stormSeconds lists the canary's p99 and max, and the members, second by
// second of a storm.
func stormSeconds(ss []StormSecond) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = fmt.Sprintf("%d s: %s / %s (%d)", s.Second, ms(s.Latency.P99), ms(s.Latency.Max), s.Members)
	}
	return strings.Join(parts, " · ")
}

// writeJoinStormSummary adds a table of the joinstorm runs, if any.
func writeJoinStormSummary(b *strings.Builder, results []*Result) {
	head := false
	for _, r := range results {
		js := r.JoinStorm
		if js == nil {
			continue
		}
		if !head {
			b.WriteString("\n**joinstorm** (members join the member canary's presence + join-leave topic, spread over the storm, while it is published to; the outside canary subscribes to a topic of its own, published to at the same rate; latencies by each message's send time; target: the outside canary's p99 during the storm below the limit, nothing lost, join events to the member canary ≤ -join-leave-max):\n\n")
			b.WriteString("| run | members in s (joins/s) | msg/s | member canary received / published | member canary p50 / p99 / max ms, storm | member p99 before / after ms | join events to member canary (max) | join events to members | node CPU, storm | p99 target (outside canary) | ok | outside canary received / published | outside canary p50 / p99 / max ms, storm | outside p99 before / after ms |\n")
			b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|--:|--:|--:|\n")
			head = true
		}
		recv, pub := int64(0), int64(0)
		if d := r.Delivery; d != nil {
			recv, pub = d.Received, d.Published
		}
		ok := "yes"
		if !r.OK {
			ok = "**no**"
		}
		l := js.During
		limit := float64(r.Params.P99Limit.Microseconds()) / 1000
		out := "– | – | –"
		if o := js.Outside; o != nil {
			l = o.During // the target's
			orecv, opub := int64(0), int64(0)
			if d := o.Delivery; d != nil {
				orecv, opub = d.Received, d.Published
			}
			out = fmt.Sprintf("%d / %d | %s / %s / %s | %s / %s", orecv, opub, ms(o.During.P50), ms(o.During.P99), ms(o.During.Max), ms(o.Before.P99), ms(o.After.P99))
		}
		fmt.Fprintf(b, "| [%s](%s.html) | %d in %.2f (%.0f) | %g | %d / %d | %s / %s / %s | %s / %s | %d (%d) | %d | %.0f%% | < %s ms %s | %s | %s |\n",
			r.Name, r.Name, js.Members, js.StormSeconds, js.JoinsPerSec, r.Params.Rate, recv, pub,
			ms(js.During.P50), ms(js.During.P99), ms(js.During.Max), ms(js.Before.P99), ms(js.After.P99), js.CanaryJoins, js.JoinLeaveMax,
			js.MemberJoins, js.CPUStorm.Percent, ms(limit), met(l.Count > 0 && l.P99 < limit), ok, out)
	}
	for _, r := range results {
		js := r.JoinStorm
		if js == nil {
			continue
		}
		if o := js.Outside; o != nil && len(o.Seconds) > 0 {
			fmt.Fprintf(b, "\n%s, the outside canary by second of the storm (p99 / max ms, members connected at its end): %s\n", r.Name, stormSeconds(o.Seconds))
		}
		if len(js.Seconds) > 0 {
			fmt.Fprintf(b, "\n%s, the canary by second of the storm (p99 / max ms, members connected at its end): %s\n", r.Name, stormSeconds(js.Seconds))
		}
	}
	head = false
	for _, r := range results {
		if r.JoinStorm == nil || r.Params.NoPresence {
			continue
		}
		var c *Result
		for _, o := range results {
			if o.JoinStorm != nil && o.Params.NoPresence && sameWorkload(r, o) {
				c = o
				break
			}
		}
		if c == nil {
			continue
		}
		if !head {
			b.WriteString("\nThe same storm with and without presence + join-leave on the topic ((×r) is with ÷ without; the control tells the feature's cost from the fan-out's):\n\n")
			b.WriteString("| run | control | member canary p50 ms, storm | member canary p99 ms, storm | member canary max ms, storm | member canary p99 ms, after | joins/s | node CPU s, storm | outside canary p99 ms, storm | outside canary max ms, storm |\n")
			b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
			head = true
		}
		js, cs := r.JoinStorm, c.JoinStorm
		jo, co := js.Outside, cs.Outside
		if jo == nil {
			jo = &OutsideCanary{}
		}
		if co == nil {
			co = &OutsideCanary{}
		}
		fmt.Fprintf(b, "| [%s](%s.html) | [%s](%s.html) | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Name, r.Name, c.Name, c.Name,
			versus("%.2f", js.During.P50, cs.During.P50), versus("%.2f", js.During.P99, cs.During.P99),
			versus("%.2f", js.During.Max, cs.During.Max), versus("%.2f", js.After.P99, cs.After.P99),
			versus("%.0f", js.JoinsPerSec, cs.JoinsPerSec), versus("%.2f", js.CPUStorm.Seconds, cs.CPUStorm.Seconds),
			versus("%.2f", jo.During.P99, co.During.P99), versus("%.2f", jo.During.Max, co.During.Max))
	}
}

// versus shows an SSE figure, its WebSocket twin (each in verb) and their
// ratio.
func versus(verb string, sse, ws float64) string {
	if ws == 0 && sse == 0 {
		return "–"
	}
	return fmt.Sprintf(verb+" / "+verb+" (×%.2f)", sse, ws, ratio(sse, ws))
}

// within reports whether a ≤ limit × b; two zeros (no reading) pass.
func within(a, b, limit float64) bool {
	return (a == 0 && b == 0) || ratio(a, b) <= limit
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return a / b
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// writeRecoverSummary adds a table of the recover runs, if any.
func writeRecoverSummary(b *strings.Builder, results []*Result) {
	head := false
	for _, r := range results {
		rc := r.Recover
		if rc == nil {
			continue
		}
		if !head {
			b.WriteString("\n**recover** (cuts and recovery with since; cut → caught up: from the cut's order to the ack of the sub with since, holding every offset published before the cut):\n\n")
			b.WriteString("| run | backbone | conns | msg/s | cuts | reconnects | deliveries (replayed) | lost | dups | recovered:false | cut → caught up p50 / p99 ms | ok |\n")
			b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
			head = true
		}
		ok := "yes"
		if !r.OK {
			ok = "**no**"
		}
		fmt.Fprintf(b, "| [%s](%s.html) | %s | %d | %g | %d in %d rounds | %d | %d (%d) | %d | %d | %d | %s / %s | %s |\n",
			r.Name, r.Name, rc.Backbone, r.Connect.Subscribed, r.Params.Rate, rc.Cuts, rc.Rounds, rc.Reconnects,
			rc.Deliveries, rc.Replayed, rc.Lost, rc.Dups, rc.NotRecovered, ms(rc.CaughtUp.P50), ms(rc.CaughtUp.P99), ok)
	}
}

// writeKafkaSummary adds a table of the kafka runs, if any.
func writeKafkaSummary(b *strings.Builder, results []*Result) {
	head := false
	for _, r := range results {
		k := r.Kafka
		if k == nil {
			continue
		}
		if !head {
			b.WriteString("\n**kafka** (records produced to Kafka, consumed and published by the node to their key's topic; records/s from the first record produced to the node's counter reaching them all; latency from the record handed to the producer to its frame read by a subscriber; target: nothing lost, lag back to 0):\n\n")
			b.WriteString("| run | partitions | subscribers × topics | records | produced/s | node consumed/s | node published/s (best second) | deliveries/s | delivered / expected | p50 / p99 ms | lag max → end | ok |\n")
			b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
			head = true
		}
		deliv, rate := "–", "–"
		if d := r.Delivery; d != nil {
			deliv, rate = fmt.Sprintf("%d / %d", d.Received, d.Expected), fmt.Sprintf("%.0f", d.PerSec)
		}
		lagEnd := "**not 0**"
		if k.LagZero {
			lagEnd = fmt.Sprintf("0 at %.1f s", k.LagZeroSeconds)
		}
		ok := "yes"
		if !r.OK {
			ok = "**no**"
		}
		fmt.Fprintf(b, "| [%s](%s.html) | %d | %d × %d | %d | %.0f | %.0f | %.0f (%.0f) | %s | %s | %s / %s | %.0f → %s | %s |\n",
			r.Name, r.Name, k.Partitions, r.Connect.Subscribed, k.Keys, k.Produced, k.ProduceRate, k.ConsumeRate, k.PublishRate, k.PeakPublishRate,
			rate, deliv, ms(r.Latency.P50), ms(r.Latency.P99), k.LagMax, lagEnd, ok)
	}
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
