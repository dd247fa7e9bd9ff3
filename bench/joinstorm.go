package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// The joinstorm scenario (issue 13): "a storm of 10,000 joins in 5 s on a
// presence + join-leave topic keeps the canary subscriber's p99 under
// 50 ms". A spawned node gets -presence and -join-leave for PREFIX.>. The
// canary — one WebSocket of a worker the parent runs in-process, so it
// shares no socket loop with the members — subscribes to PREFIX.0 first;
// the publisher then sends Rate messages a second to that topic
// throughout three phases, stamped as the payload's step: a lead before
// any join, the storm (the members' connects, paced at Conns / Duration
// joins a second over the workers, each subscribing to PREFIX.0) until the
// last member's ack, and a tail. That member canary is a member of the
// group too, so it receives the join events while the group is at most
// -join-leave-max, and none after; its latency is the fan-out to the
// whole group. The target is about everyone else: an outside canary, a
// second connection of its own in-process worker, subscribes to
// outsideTopic(PREFIX) (no presence rule covers it), which a second
// publisher sends Rate messages a second to over the same phases. The
// outside canary's latency during the storm and its losses are judged,
// with the join events the member canary got; the member canary's and
// the members' figures are reported beside.

// defaultJoinLeaveMax is the node's default -join-leave-max.
const defaultJoinLeaveMax = 1000

// The publishing around the storm, and the payload steps of the phases:
// the storm's advance by one each second from stepStorm on.
const (
	stormLead  = time.Second
	stormTail  = 2 * time.Second
	stepBefore = 0
	stepAfter  = 1
	stepStorm  = 2
)

// presenceArgs returns a joinstorm node's flags with -presence and
// -join-leave for PREFIX.> added, each unless the flags name it already.
func presenceArgs(args []string, prefix string) []string {
	rule := prefix + ".>"
	out := slices.Clone(args)
	if flagValue(args, "presence") == "" {
		out = append(out, "-presence", rule)
	}
	if flagValue(args, "join-leave") == "" {
		out = append(out, "-join-leave", rule)
	}
	return out
}

// addPresenceRules gives a spawned joinstorm node its presence rules
// (not to a control run's).
func (r *runner) addPresenceRules() {
	if r.p.Spawn != "" && !r.p.NoPresence {
		r.p.SpawnArgs = presenceArgs(r.p.SpawnArgs, r.p.TopicPrefix)
		r.res.Params = r.p
	}
}

// canarySpec is the member canary's worker: one connection, dialled from
// 127.0.0.1 (the workers use 127.0.0.2 on), subscribed to PREFIX.0 and
// tallying its sequences like any subscriber present from the start.
func canarySpec(p *Params) workerSpec {
	return workerSpec{
		Index: -1, LocalIP: "127.0.0.1", Targets: p.Targets[:1],
		First: p.Conns, Count: 1, TopicsPerConn: 1, Topics: 1, TopicPrefix: p.TopicPrefix,
		Transport: TransportWS, Concurrency: 1, DialTimeout: p.DialTimeout, AckTimeout: p.AckTimeout,
	}
}

// outsidePrefix is the outside canary's topic prefix: PREFIX-canary, whose
// topic 0 no PREFIX.> rule covers and no member joins.
func outsidePrefix(prefix string) string { return prefix + "-canary" }

// outsideSpec is the outside canary's worker: the member canary's, on
// outsidePrefix(PREFIX).0.
func outsideSpec(p *Params) workerSpec {
	sp := canarySpec(p)
	sp.Index, sp.First, sp.TopicPrefix = -2, p.Conns+1, outsidePrefix(p.TopicPrefix)
	return sp
}

// outsidePub is the outside canary's publishing: its own publisher (so
// the storm topic's fan-out does not hold its publishes back), topic and
// sequences.
type outsidePub struct {
	pub publisher
	seq []uint64
	d   *DeliveryResult
}

// openOutside opens the outside canary's publisher, of the run's kind.
func (r *runner) openOutside(ctx context.Context) (*outsidePub, error) {
	p, err := r.newPublisher(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: outside canary's publisher: %w", err)
	}
	return &outsidePub{pub: p, seq: make([]uint64, 1), d: &DeliveryResult{}}, nil
}

// outsidePlan is pl for the outside canary's topic.
func (o *outsidePub) plan(pl pacePlan) pacePlan {
	pl.prefix, pl.seq, pl.from, pl.to = outsidePrefix(pl.prefix), o.seq, 0, 0
	return pl
}

// paceBoth runs pl on the storm topic and its twin on the outside
// canary's at once, adding the latter to the outside canary's deliveries.
func (r *runner) paceBoth(ctx context.Context, o *outsidePub, pl pacePlan) *paceResult {
	var opr *paceResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		opr = pace(ctx, o.pub, o.plan(pl))
	}()
	pr := r.runPace(ctx, pl)
	<-done
	for k, v := range opr.errKinds {
		r.addError("outside canary publish: "+k, v)
	}
	addDelivery(o.d, opr, opr.perTopic[0])
	return pr
}

// joinStorm runs the scenario's phases: canary, lead, storm, tail, drain,
// memory and presence readings, then the closes (the canary's first, so
// the members' leaves do not reach it).
func (r *runner) joinStorm(ctx context.Context) error {
	p := &r.p
	r.setPhase("canary")
	cw := newWorker()
	cw.spec = canarySpec(p)
	r.canary = cw
	cw.connectAll()
	if cw.subscribedN.Load() != 1 {
		return fmt.Errorf("%w: the canary did not subscribe to %s.0: %v", ErrNode, p.TopicPrefix, cw.stats().Errors)
	}
	ow := newWorker()
	ow.spec = outsideSpec(p)
	defer ow.closeAll()
	ow.connectAll()
	if ow.subscribedN.Load() != 1 {
		return fmt.Errorf("%w: the outside canary did not subscribe to %s.0: %v", ErrNode, outsidePrefix(p.TopicPrefix), ow.stats().Errors)
	}
	r.subs = []int64{1}
	if err := r.openPublisher(ctx); err != nil {
		return err
	}
	op, err := r.openOutside(ctx)
	if err != nil {
		return err
	}
	defer op.pub.close()
	js := &JoinStormResult{JoinLeaveMax: p.JoinLeaveMax}
	r.res.JoinStorm = js
	m0, _ := r.probe.metrics(ctx)
	stopProfile := r.startCPUProfile(ctx, stormLead+p.Duration+stormTail)
	defer stopProfile()
	cpu0, ccpu0 := r.cpu(ctx), r.workers.cpu(r.probe)

	d, rtt := &DeliveryResult{}, newHist()
	add := func(pr *paceResult) {
		addDelivery(d, pr, pr.perTopic[0]) // the canary is owed every publish
		rtt.Merge(pr.rtt)
	}
	r.setPhase("lead")
	lead := r.paceBoth(ctx, op, r.plan(stepBefore, p.Rate, stormLead))
	add(lead)

	// The storm: publishing goes on until the last member's ack, a step a
	// second.
	stormDone, paced := make(chan struct{}), make(chan struct{})
	pl := r.plan(stepStorm, p.Rate, p.Timeout)
	pl.stop, pl.stepEvery = stormDone, time.Second
	var storm *paceResult
	go func() {
		defer close(paced)
		storm = r.paceBoth(ctx, op, pl)
	}()
	stormStart, cpuS := time.Now(), r.cpu(ctx)
	st, failed, err := r.connect(ctx)
	close(stormDone)
	<-paced
	js.CPUStorm = r.cpuSpan(ctx, cpuS, stormStart)
	if err != nil {
		return err
	}
	add(storm)
	r.fillConnect(st)
	r.subs = topicSubs(r.p, failed)
	r.subs[0]++ // the canary
	js.Members = r.res.Connect.Subscribed
	js.StormSeconds = r.res.Connect.SubscribeSeconds
	if js.StormSeconds > 0 {
		js.JoinsPerSec = float64(js.Members) / js.StormSeconds
	}

	r.setPhase("tail")
	tail := r.paceBoth(ctx, op, r.plan(stepAfter, p.Rate, stormTail))
	add(tail)
	js.LeadSeconds, js.TailSeconds = lead.end.Sub(lead.start).Seconds(), tail.end.Sub(tail.start).Seconds()
	r.setPhase("drain")
	if err := r.drainCanary(ctx, r.canary, d.Expected); err != nil {
		return err
	}
	if err := r.drainCanary(ctx, ow, op.d.Expected); err != nil {
		return err
	}
	r.res.Server.CPUPublish = r.cpuSpan(ctx, cpu0, lead.start)
	r.res.Server.ClientCPUPublish = span(r.workers.cpu(r.probe)-ccpu0, lead.start)
	if m1, err := r.probe.metrics(ctx); err == nil && m0 != nil {
		js.NodeEvents = m1["subsock_presence_events_total"] - m0["subsock_presence_events_total"]
		js.NodeEventErrors = m1["subsock_presence_event_errors_total"] - m0["subsock_presence_event_errors_total"]
		r.coalescing(m0, m1)
	}
	r.res.Delivery, r.pubStart = d, lead.start
	r.res.PublishRTT = summarize(rtt)

	r.loadedMemory(ctx, false)
	if r.p.PresenceStats {
		r.setPhase("presence")
		r.checkPresence(ctx)
	}
	r.setPhase("close")
	r.finishCanary(stormStart, ow, op.d)
	_, err = r.workers.all(ctx, command{Cmd: cmdClose})
	return err
}

// drainCanary waits until canary cw holds expected messages, none came
// for drainQuiet, or DrainTimeout passes.
func (r *runner) drainCanary(ctx context.Context, cw *worker, expected int64) error {
	deadline := time.Now().Add(r.p.DrainTimeout)
	last, lastChange := int64(-1), time.Now()
	for {
		got := cw.stats().Received
		now := time.Now()
		if got != last {
			last, lastChange = got, now
		}
		if got >= expected || now.After(deadline) || now.Sub(lastChange) > drainQuiet {
			return nil
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// finishCanary closes both canaries and settles what they saw: the
// member canary's deliveries (Result.Delivery), latency by phase and the
// events it received; the outside canary's deliveries (od) and latency.
func (r *runner) finishCanary(stormStart time.Time, ow *worker, od *DeliveryResult) {
	cw, js := r.canary, r.res.JoinStorm
	r.mu.Lock()
	samples := slices.Clone(r.samples)
	r.mu.Unlock()
	stormT := stormStart.Sub(r.start).Seconds()

	cw.closeAll() // tallies its gaps and duplicates
	st := cw.stats()
	finishDelivery(r.res.Delivery, st, r.pubStart)
	js.CanaryJoins, js.CanaryLeaves = st.Joins, st.Leaves
	if st.LastJoin > 0 {
		js.CanaryLastJoin = float64(st.LastJoin-stormStart.UnixNano()) / 1e9
	}
	js.Before, js.During, js.After, js.Seconds, r.canaryDuring = canaryPhases(cw, st, samples, stormT)
	r.closeErrors("canary", st)

	ow.closeAll()
	ost := ow.stats()
	finishDelivery(od, ost, r.pubStart)
	out := &OutsideCanary{Topic: outsidePrefix(r.p.TopicPrefix) + ".0", Delivery: od, Joins: ost.Joins}
	out.Before, out.During, out.After, out.Seconds, _ = canaryPhases(ow, ost, samples, stormT)
	js.Outside = out
	r.closeErrors("outside canary", ost)
}

// canaryPhases is a canary's latency before, during and after the storm,
// during it second by second, and its histogram during the storm.
func canaryPhases(cw *worker, st *workerStats, samples []Sample, stormT float64) (before, during, after Percentiles, secs []StormSecond, dh *hdr.Histogram) {
	before, after = summarize(cw.rec.hist(stepBefore)), summarize(cw.rec.hist(stepAfter))
	dh = newHist()
	for s := stepStorm; s < len(st.ReceivedByStep); s++ {
		h := cw.rec.hist(s)
		dh.Merge(h)
		k := s - stepStorm + 1
		secs = append(secs, StormSecond{Second: k, Members: openAt(samples, stormT+float64(k)), Latency: summarize(h)})
	}
	return before, summarize(dh), after, secs, dh
}

// closeErrors adds a canary's server closes and errors to the run's.
func (r *runner) closeErrors(who string, st *workerStats) {
	for code, n := range st.ServerCloses {
		if r.res.ServerCloses == nil {
			r.res.ServerCloses = map[string]int64{}
		}
		r.res.ServerCloses[fmt.Sprintf("%d (%s)", code, who)] += n
	}
	for k, v := range st.Errors {
		r.addError(who+": "+k, v)
	}
}

// openAt is the connections open in the last sample at or before t
// (seconds since the start), 0 before the first.
func openAt(samples []Sample, t float64) int64 {
	var open int64
	for _, s := range samples {
		if s.T > t {
			break
		}
		open = s.Open
	}
	return open
}

// finishJoinStorm fills the members' figures from the workers' final
// counts and latency, and puts the member canary's storm latency in
// Result.Latency (the outside canary's, the target, is JoinStorm.Outside).
func (r *runner) finishJoinStorm(st *workerStats, members *hdr.Histogram) {
	js := r.res.JoinStorm
	js.MemberDeliveries = st.Received
	js.MemberLatency = summarize(members)
	js.MemberJoins, js.MemberLeaves = st.Joins, st.Leaves
	r.res.Latency = js.During
	r.res.LatencyCDF = nil
	if r.canaryDuring != nil {
		r.res.LatencyCDF = cdf(r.canaryDuring, 10)
	}
}

// judgeJoinStorm reports whether the outside canary met the target — p99
// during the storm below P99Limit, nothing lost — and the join events
// behaved: some reached the member canary, and no more than the node's
// cut-off allows. The member canary's losses are judged too; its latency,
// the fan-out to the whole group, is not.
func (r *runner) judgeJoinStorm() bool {
	js, d := r.res.JoinStorm, r.res.Delivery
	ok := true
	miss := func(format string, a ...any) {
		ok = false
		r.note("joinstorm: " + fmt.Sprintf(format, a...))
	}
	limit := float64(r.p.P99Limit.Microseconds()) / 1000
	o := js.Outside
	switch {
	case o == nil || o.During.Count == 0:
		miss("the outside canary received no message published during the storm")
	case o.During.P99 >= limit:
		miss("the outside canary's p99 during the storm was %.1f ms (max %.1f ms), target < %s", o.During.P99, o.During.Max, r.p.P99Limit)
	}
	if o != nil && o.Delivery != nil {
		if od := o.Delivery; od.Gaps > 0 || od.Dups > 0 || od.Lost > 0 {
			miss("the outside canary's sequences: %d missing, %d twice, %d of %d owed not received", od.Gaps, od.Dups, od.Lost, od.Expected)
		}
	}
	if d != nil && (d.Gaps > 0 || d.Dups > 0) {
		miss("the member canary's sequences: %d missing, %d twice", d.Gaps, d.Dups)
	}
	switch {
	case r.p.NoPresence:
		// A control run: the node was given no join-leave rule.
	case js.CanaryJoins == 0:
		miss("the member canary received no join event (is -join-leave on for %s.0?)", r.p.TopicPrefix)
	case js.CanaryJoins > int64(js.JoinLeaveMax):
		miss("the member canary received %d join events, more than -join-leave-max %d: the events did not stop once the group was large", js.CanaryJoins, js.JoinLeaveMax)
	}
	if js.NodeEventErrors > 0 {
		r.note(fmt.Sprintf("joinstorm: the node's backbone refused %.0f join/leave events", js.NodeEventErrors))
	}
	if asked := r.p.Duration.Seconds(); js.StormSeconds > 1.1*asked {
		r.note(fmt.Sprintf("joinstorm: the joins took %.2f s, %s asked: %.0f joins/s instead of %.0f (dials in flight waited for the node)",
			js.StormSeconds, r.p.Duration, js.JoinsPerSec, r.p.ConnectRate))
	}
	return ok
}
