package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// The recover scenario: the node keeps a stream for PREFIX.> (-history),
// every connection subscribes with an id and follows its topic's offsets,
// and while the publisher runs the coordinator orders, every CutEvery, a
// CutFraction of the connections cut (client side, no close frame). Each
// cut connection dials again at once and resubscribes with since; the
// workers count offsets lost, duplicated and not recovered, and time each
// cut until its connection has caught up (see client_recover.go).

// historyTTL is the TTL of the -history rule given to a spawned node.
const historyTTL = "10m"

// addHistoryRule gives a spawned recover node its -history rule for
// PREFIX.>, unless its flags name one.
func (r *runner) addHistoryRule() error {
	defer func() { r.res.Params = r.p }()
	if r.p.Spawn == "" || flagValue(r.p.SpawnArgs, "history") != "" {
		return nil
	}
	if r.p.Backbone == BackboneMemory && flagValue(r.p.SpawnArgs, "broker") != "" {
		return fmt.Errorf("%w: -backbone memory, but the node's flags name a -broker", ErrBadParams)
	}
	rule := r.p.TopicPrefix + ".>=" + strconv.Itoa(r.p.HistorySize) + "," + historyTTL
	r.p.SpawnArgs = append(slices.Clone(r.p.SpawnArgs), "-history", rule)
	return nil
}

// cutTimes are the moments, from the start of publishing, at which cuts
// are ordered: the middle of each whole period every within d, so each
// round falls while publications flow.
func cutTimes(every, d time.Duration) []time.Duration {
	var ts []time.Duration
	for t := every / 2; t < d && every > 0; t += every {
		ts = append(ts, t)
	}
	return ts
}

// cutShares splits one round's cuts, round(fraction × Σcounts), over
// workers holding counts connections each: in proportion, the remainder
// going to the largest fractional parts (the lower index on a tie).
func cutShares(counts []int, fraction float64) []int {
	sum := 0
	for _, c := range counts {
		sum += c
	}
	shares := make([]int, len(counts))
	if sum == 0 {
		return shares
	}
	total := min(sum, int(math.Round(fraction*float64(sum))))
	rems := make([]float64, len(counts))
	given := 0
	for i, c := range counts {
		exact := float64(total) * float64(c) / float64(sum)
		shares[i] = int(exact)
		rems[i] = exact - float64(shares[i])
		given += shares[i]
	}
	order := make([]int, len(counts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case rems[a] > rems[b]:
			return -1
		case rems[a] < rems[b]:
			return 1
		}
		return 0
	})
	for k := 0; given < total && k < 2*len(order); k++ {
		if i := order[k%len(order)]; shares[i] < counts[i] {
			shares[i]++
			given++
		}
	}
	return shares
}

// workerCounts is the connections each worker holds (as startWorkers
// assigns them).
func (r *runner) workerCounts() []int {
	per := ceilDiv(r.p.Conns, r.p.Workers)
	counts := make([]int, len(r.workers))
	for i := range counts {
		counts[i] = max(0, min(per, r.p.Conns-i*per))
	}
	return counts
}

func snapshot(v []atomic.Uint64) []uint64 {
	out := make([]uint64, len(v))
	for i := range v {
		out[i] = v[i].Load()
	}
	return out
}

// cutAndRecover publishes at Rate for Duration while ordering the cuts, then
// waits for every subscriber to hold the newest offset.
func (r *runner) cutAndRecover(ctx context.Context) error {
	p := &r.p
	// No wait for upstream interest (openPublisher): the ack of each sub,
	// with its position, is the guarantee under test here.
	r.pub = newHTTPPublisher(p.Targets[0], p.APIKey, p.Publishers)
	rc := &RecoverResult{Backbone: p.Backbone, CutEvery: p.CutEvery.Seconds(), CutFraction: p.CutFraction}
	r.res.Recover = rc
	newest := make([]atomic.Uint64, p.Topics)
	m0, _ := r.probe.metrics(ctx)
	r.setPhase("publish+cut")
	stopProfile := r.startCPUProfile(ctx, p.Duration)
	defer stopProfile()
	cpu0, ccpu0, t0 := r.cpu(ctx), r.workers.cpu(r.probe), time.Now()
	var pr *paceResult
	paced := make(chan struct{})
	go func() {
		defer close(paced)
		pr = pace(ctx, r.pub, pacePlan{
			rate: p.Rate, duration: p.Duration, prefix: p.TopicPrefix, size: p.PayloadSize,
			senders: p.Publishers, seq: r.seq, newest: newest,
		})
	}()
	shares := cutShares(r.workerCounts(), p.CutFraction)
	var cutErr error
	for _, at := range cutTimes(p.CutEvery, p.Duration) {
		if cutErr = sleepCtx(ctx, time.Until(t0.Add(at))); cutErr != nil {
			break
		}
		offsets := snapshot(newest)
		if _, cutErr = r.workers.each(ctx, func(i int) command {
			return command{Cmd: cmdCut, Cut: shares[i], Offsets: offsets}
		}); cutErr != nil {
			break
		}
		rc.Rounds++
	}
	<-paced
	if cutErr != nil {
		return cutErr
	}
	for k, v := range pr.errKinds {
		r.addError("publish: "+k, v)
	}
	final := snapshot(newest)
	rc.FinalOffset = slices.Max(append(final, 0))
	exp := r.expected(pr)
	r.setPhase("drain")
	st, err := r.drainRecover(ctx, final)
	if err != nil {
		return err
	}
	if rs := st.Recover; rs != nil {
		rc.Behind, rc.Tail = rs.Behind, rs.Shortfall
	}
	r.res.Server.CPUPublish = r.cpuSpan(ctx, cpu0, t0)
	r.res.Server.ClientCPUPublish = span(r.workers.cpu(r.probe)-ccpu0, t0)
	m1, _ := r.probe.metrics(ctx)
	r.coalescing(m0, m1)
	if r.liveHist, err = r.stepHist(ctx, 0); err != nil {
		return err
	}
	replay, err := r.stepHist(ctx, recoverReplayStep)
	if err != nil {
		return err
	}
	rc.ReplayLatency = summarize(replay)
	d := &DeliveryResult{}
	addDelivery(d, pr, exp)
	r.res.Delivery, r.pubStart = d, pr.start
	r.res.PublishRTT = summarize(pr.rtt)
	return nil
}

// drainRecover polls the workers until every subscriber holds its
// topic's final offset, nothing changes for drainQuiet, or DrainTimeout
// passes.
func (r *runner) drainRecover(ctx context.Context, final []uint64) (*workerStats, error) {
	deadline := time.Now().Add(r.p.DrainTimeout)
	var last recoverStats
	lastRecv, lastChange := int64(-1), time.Now()
	for {
		reps, err := r.workers.all(ctx, command{Cmd: cmdStats, Offsets: final})
		if err != nil {
			return nil, err
		}
		st := sumStats(reps)
		rs := st.Recover
		if rs == nil {
			rs = &recoverStats{}
		}
		if rs.Behind == 0 {
			return st, nil
		}
		now := time.Now()
		if st.Received != lastRecv || rs.Behind != last.Behind || rs.Shortfall != last.Shortfall {
			lastRecv, last, lastChange = st.Received, *rs, now
		}
		if now.After(deadline) || now.Sub(lastChange) > drainQuiet {
			return st, nil
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// finishRecover fills RecoverResult from the workers' final counters and
// cut histogram; Delivery.Lost becomes the offsets lost, and the latency
// figures are the live deliveries'.
func (r *runner) finishRecover(st *workerStats, caught *hdr.Histogram) {
	rc := r.res.Recover
	if rs := st.Recover; rs != nil {
		rc.Cuts, rc.Reconnects, rc.ReconnectFailures, rc.Refused = rs.Cuts, rs.Reconnects, rs.ReconnectFailures, rs.Refused
		rc.NotRecovered, rc.Skipped, rc.EpochResets = rs.NotRecovered, rs.Skipped, rs.EpochResets
	}
	rc.Live = stepCount(st.ReceivedByStep, 0)
	rc.Replayed = stepCount(st.ReceivedByStep, recoverReplayStep)
	rc.Deliveries = st.Received
	rc.Gaps, rc.Dups = st.Gaps, st.Dups
	rc.Lost = rc.Gaps + rc.Tail
	rc.CaughtUp = summarize(caught)
	if d := r.res.Delivery; d != nil {
		d.Lost = rc.Lost
		d.LossRatio = 0
		if d.Expected > 0 {
			d.LossRatio = float64(d.Lost) / float64(d.Expected)
		}
	}
	if r.liveHist != nil {
		r.res.Latency = summarize(r.liveHist)
		r.res.LatencyCDF = cdf(r.liveHist, 10)
	}
}

// judgeRecover notes each way the recover run fell short and reports
// whether it was clean: nothing lost, nothing twice, every resubscription
// recovered, every subscriber caught up.
func (r *runner) judgeRecover() bool {
	rc, d := r.res.Recover, r.res.Delivery
	ok := true
	miss := func(format string, a ...any) {
		ok = false
		r.note("recover: " + fmt.Sprintf(format, a...))
	}
	if rc.Rounds == 0 || rc.Cuts == 0 {
		miss("no connection was cut (%d rounds)", rc.Rounds)
	}
	if rc.Lost > 0 {
		miss("%d offsets lost: %d gaps, %d never delivered by the end of the drain", rc.Lost, rc.Gaps, rc.Tail)
	}
	if rc.Dups > 0 {
		miss("%d offsets delivered twice", rc.Dups)
	}
	if rc.NotRecovered > 0 {
		miss("%d resubscriptions answered recovered:false or no position (%d offsets skipped)", rc.NotRecovered, rc.Skipped)
	}
	if rc.EpochResets > 0 {
		miss("%d messages announced a new epoch: the stream lost its past", rc.EpochResets)
	}
	if rc.ReconnectFailures > 0 {
		miss("%d cut connections gave up reconnecting or resubscribing", rc.ReconnectFailures)
	}
	if rc.Refused > 0 {
		// Not a loss by itself (the retry recovers), but the node's
		// doing: the errors above give its reasons.
		r.note(fmt.Sprintf("recover: the node refused %d subs with since (err replies; each sent again after a pause)", rc.Refused))
	}
	if rc.Behind > 0 {
		miss("%d subscribers had not caught up with offset %d when the drain ended", rc.Behind, rc.FinalOffset)
	}
	// Every subscriber is owed each publication once: what arrived, less
	// the duplicates, must be what was owed less what was lost or skipped.
	if d != nil {
		if got, want := d.Received-rc.Dups, d.Expected-rc.Lost-rc.Skipped; got != want {
			miss("deliveries do not add up: %d received less %d duplicates = %d, but %d owed less %d lost and %d skipped = %d",
				d.Received, rc.Dups, got, d.Expected, rc.Lost, rc.Skipped, want)
		}
	}
	return ok
}
