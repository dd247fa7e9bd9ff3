package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// The hol scenario's classes travel as steps of the stamp, so the workers'
// per-step counters and histograms keep them apart.
const (
	holHotStep   = 0
	holSmallStep = 1
)

// Targets of the hol scenario (issue 10's acceptance): the small topics'
// p99 stays within holSmallP99 while the hot topic delivers its full rate
// without loss, and Redis never holds holMaxOmem for the node.
const (
	holSmallP99 = 20 * time.Millisecond
	holMaxOmem  = 1 << 20
	// holRateShare is the part of the asked hot rate counted as delivered
	// in full: the last deliveries land after the first publish's span.
	holRateShare = 0.95
)

// hol publishes the hot topic and the small ones at once, each class with
// its own pacer and publisher (-publish-via), samples Redis's CLIENT LIST, drains,
// and reports each class apart.
func (r *runner) hol(ctx context.Context) error {
	p := &r.p
	hotPub, err := r.newPublisher(ctx)
	if err != nil {
		return fmt.Errorf("bench: hot topic's publisher: %w", err)
	}
	r.pub = hotPub
	smallPub, err := r.newPublisher(ctx)
	if err != nil {
		return fmt.Errorf("bench: small topics' publisher: %w", err)
	}
	defer smallPub.close()
	if err := r.waitInterest(ctx); err != nil {
		return err
	}
	var omem *omemSampler
	if p.Redis != "" {
		omem = startOmem(ctx, p.Redis)
	} else {
		r.note("no -redis address: the node's Redis output buffer was not sampled")
	}
	m0, _ := r.probe.metrics(ctx)
	r.setPhase("publish")
	stopProfile := r.startCPUProfile(ctx, p.Duration)
	defer stopProfile()
	cpu0, ccpu0, t0 := r.cpu(ctx), r.workers.cpu(r.probe), time.Now()
	small := float64(p.Topics-1) * p.SmallRate
	plan := func(step int, rate float64, from, to int) pacePlan {
		return pacePlan{
			rate: rate, duration: p.Duration, step: step, prefix: p.TopicPrefix,
			size: p.PayloadSize, senders: p.Publishers, seq: r.seq, from: from, to: to,
		}
	}
	var hot, sm *paceResult
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); hot = pace(ctx, hotPub, plan(holHotStep, p.Rate, 0, 1)) }()
	go func() { defer wg.Done(); sm = pace(ctx, smallPub, plan(holSmallStep, small, 1, p.Topics)) }()
	wg.Wait()
	for _, pr := range []*paceResult{hot, sm} {
		for k, v := range pr.errKinds {
			r.addError("publish: "+k, v)
		}
	}
	expHot, expSmall := r.expected(hot), r.expected(sm)
	r.setPhase("drain")
	if _, err := r.drain(ctx, holHotStep, expHot); err != nil {
		return err
	}
	st, err := r.drain(ctx, holSmallStep, expSmall)
	if err != nil {
		return err
	}
	h := &HolResult{}
	if omem != nil {
		h.Omem = omem.stop()
	}
	r.res.Server.CPUPublish = r.cpuSpan(ctx, cpu0, t0)
	r.res.Server.ClientCPUPublish = span(r.workers.cpu(r.probe)-ccpu0, t0)
	m1, _ := r.probe.metrics(ctx)
	r.coalescing(m0, m1)

	start := hot.start
	if sm.start.Before(start) {
		start = sm.start
	}
	for _, c := range []struct {
		cls    *ClassResult
		step   int
		pr     *paceResult
		exp    int64
		rate   float64
		from   int
		topics int
	}{
		{&h.Hot, holHotStep, hot, expHot, p.Rate, 0, 1},
		{&h.Small, holSmallStep, sm, expSmall, small, 1, p.Topics - 1},
	} {
		hist, err := r.stepHist(ctx, c.step)
		if err != nil {
			return err
		}
		cls := c.cls
		cls.Topics, cls.Rate, cls.Published, cls.Expected = c.topics, c.rate, c.pr.published, c.exp
		cls.Late = c.pr.late
		if d := c.pr.end.Sub(c.pr.start).Seconds(); d > 0 {
			cls.PublishRate = float64(cls.Published) / d
		}
		for t := c.from; t < c.from+c.topics; t++ {
			cls.Subscribers += r.subs[t]
		}
		cls.Received = stepCount(st.ReceivedByStep, c.step)
		cls.Lost = max(0, cls.Expected-cls.Received)
		if cls.Expected > 0 {
			cls.LossRatio = float64(cls.Lost) / float64(cls.Expected)
		}
		if last := stepCount(st.LastRecvByStep, c.step); last > start.UnixNano() {
			cls.PerSec = float64(cls.Received) / (float64(last-start.UnixNano()) / 1e9)
		}
		cls.Latency = summarize(hist)
	}
	r.res.Hol = h

	d := &DeliveryResult{}
	addDelivery(d, hot, expHot)
	addDelivery(d, sm, expSmall)
	rtt := newHist()
	rtt.Merge(hot.rtt)
	rtt.Merge(sm.rtt)
	r.res.Delivery, r.pubStart = d, start
	r.res.PublishRTT = summarize(rtt)
	return nil
}

// judgeHol notes each missed target of the hol scenario and reports
// whether all were met.
func (r *runner) judgeHol() bool {
	h := r.res.Hol
	ok := true
	miss := func(format string, a ...any) {
		ok = false
		r.note("hol target missed: " + fmt.Sprintf(format, a...))
	}
	if p99 := h.Small.Latency.P99; p99 > float64(holSmallP99.Milliseconds()) {
		miss("small topics' p99 %.1f ms > %s", p99, holSmallP99)
	}
	if want := holRateShare * r.p.Rate * float64(h.Hot.Subscribers); h.Hot.PerSec < want {
		miss("hot topic delivered %.0f/s < %.0f/s (%.0f%% of %g msg/s × %d subscribers)",
			h.Hot.PerSec, want, holRateShare*100, r.p.Rate, h.Hot.Subscribers)
	}
	for _, c := range []struct {
		name string
		cls  *ClassResult
	}{{"hot", &h.Hot}, {"small", &h.Small}} {
		if want := 0.9 * c.cls.Rate; c.cls.PublishRate < want {
			miss("%s topics: %.0f publishes/s accepted of %g/s asked (%d of %d publishes late)", c.name, c.cls.PublishRate, c.cls.Rate, c.cls.Late, c.cls.Published)
		}
	}
	if h.Hot.Lost > 0 || h.Small.Lost > 0 {
		miss("lost %d hot and %d small deliveries", h.Hot.Lost, h.Small.Lost)
	}
	switch {
	case h.Omem.Samples == 0:
		miss("Redis output buffer not sampled")
	case h.Omem.MaxBytes >= holMaxOmem:
		miss("Redis held up to %s for the node's pub/sub connection (omem) ≥ %s", mib(h.Omem.MaxBytes), mib(holMaxOmem))
	}
	return ok
}
