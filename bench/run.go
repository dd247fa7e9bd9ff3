package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Config configures Run. The zero value suits cmd/subsock-bench.
type Config struct {
	// WorkerArgv starts one worker process. Default: this executable with
	// -worker.
	WorkerArgv []string
	// WorkerEnv is extra KEY=VALUE environment for the workers.
	WorkerEnv []string
	// Progress receives a line per second (unless Params.Quiet).
	// Default: os.Stderr.
	Progress io.Writer
	// NodeLog receives a spawned node's stdout and stderr. Default: discarded.
	NodeLog io.Writer
	// WorkerStderr receives the workers' stderr. Default: os.Stderr.
	WorkerStderr io.Writer
}

func (c Config) withDefaults() (Config, error) {
	if len(c.WorkerArgv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("%w: finding own executable: %v", ErrWorker, err)
		}
		c.WorkerArgv = []string{exe, "-worker"}
	}
	if c.Progress == nil {
		c.Progress = os.Stderr
	}
	if c.NodeLog == nil {
		c.NodeLog = io.Discard
	}
	if c.WorkerStderr == nil {
		c.WorkerStderr = os.Stderr
	}
	return c, nil
}

// samplePeriod is how often the sampler reads the node; progress prints
// every second sample.
const samplePeriod = 500 * time.Millisecond

// runner carries one run's state. Its methods run on Run's goroutine,
// except sample, which runs on the sampler goroutine and touches only
// samples (under mu) and the fleet's progress.
type runner struct {
	cfg     Config
	p       Params
	res     *Result
	node    *node
	probe   *probe
	workers fleet
	pub     publisher
	start   time.Time
	// seq is each topic's last published sequence number; subs the
	// subscribed connections per topic.
	seq  []uint64
	subs []int64
	// pubStart is the first publish; finish settles Result.Delivery from
	// the workers' final counts.
	pubStart time.Time
	// forcedGC is set when the node collects garbage on request.
	forcedGC bool
	// redis is the redis-server the harness started for hol or recover,
	// if any.
	redis *redisProc
	// liveHist is recover's latency of live deliveries (replays apart).
	liveHist *hdr.Histogram
	// canary is joinstorm's watched subscriber, a one-connection worker
	// run in this process; canaryDuring its latency during the storm.
	canary       *worker
	canaryDuring *hdr.Histogram
	// kfake is the Kafka the harness started for a kafka run, if any;
	// kafkaProduced counts the records Kafka acknowledged so far.
	kfake         *kafkaProc
	kafkaProduced atomic.Int64
	// phase names what the progress line shows; kafkaSeries holds the
	// kafka poller's samples.
	mu          sync.Mutex
	phase       string
	samples     []Sample
	kafkaSeries []KafkaSample
}

// Run performs one scenario and returns its result. It always stops what it
// started (workers, node, goroutines) before returning; the run is bounded
// by p.Timeout.
func Run(ctx context.Context, cfg Config, p Params) (*Result, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	if cfg, err = cfg.withDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()

	r := &runner{cfg: cfg, p: p, start: time.Now()}
	r.res = &Result{Name: p.Name, Scenario: p.Scenario, Params: p, Started: r.start, Targets: p.Targets}
	r.res.LoadAvg[0] = loadAvg()
	defer r.stopAll()

	if p.usesRedis() {
		if err := r.startRedis(ctx); err != nil {
			return nil, err
		}
	}
	if p.Scenario == ScenarioKafka {
		if err := r.startKafka(ctx); err != nil {
			return nil, err
		}
	}
	if p.Scenario == ScenarioRecover {
		if err := r.addHistoryRule(); err != nil {
			return nil, err
		}
	}
	if p.Scenario == ScenarioJoinStorm {
		r.addPresenceRules()
	}
	if p.Spawn != "" {
		r.node, err = spawnNode(ctx, p.Spawn, r.p.SpawnArgs, p.SpawnEnv, cfg.NodeLog)
		if err != nil {
			return nil, err
		}
		r.p.Targets = []string{r.node.target}
		r.res.Targets = r.p.Targets
		r.res.Node = &NodeInfo{Binary: p.Spawn, Args: r.node.cmd.Args[1:], Env: p.SpawnEnv, PID: r.node.pid()}
	}
	pid := p.PID
	if r.node != nil {
		pid = r.node.pid()
	}
	r.probe = newProbe(pid, r.p.Targets)
	r.res.Server.Source = r.probe.source()
	if p.TopicsPerConn > 0 {
		r.seq = make([]uint64, p.Topics)
	}

	if err := r.baseline(ctx); err != nil {
		return nil, err
	}
	if err := r.startWorkers(ctx); err != nil {
		return nil, err
	}
	stopSampler := r.startSampler()
	err = r.scenario(ctx)
	stopSampler()
	if ferr := r.finish(ctx); err == nil {
		err = ferr
	}
	r.res.Seconds = time.Since(r.start).Seconds()
	r.res.LoadAvg[1] = loadAvg()
	r.mu.Lock()
	r.res.Samples = r.samples
	r.mu.Unlock()
	if err != nil {
		return r.res, err
	}
	r.judge()
	return r.res, nil
}

// stopAll ends every process the run started.
func (r *runner) stopAll() {
	if r.pub != nil {
		_ = r.pub.close()
		r.pub = nil
	}
	if r.workers != nil {
		r.workers.stop(10 * time.Second)
		r.workers = nil
	}
	if r.canary != nil {
		r.canary.closeAll()
	}
	// The node before its Kafka: it commits and leaves the group on SIGTERM.
	if r.node != nil {
		_ = r.node.stop(20 * time.Second)
		r.node = nil
	}
	if r.kfake != nil {
		r.kfake.stop(5 * time.Second)
		r.kfake = nil
	}
	if r.redis != nil {
		r.redis.stop(5 * time.Second)
		r.redis = nil
	}
}

// baseline reads the node before any client connects.
func (r *runner) baseline(ctx context.Context) error {
	r.forcedGC = r.probe.gc(ctx) == nil
	r.res.Server.ForcedGC = r.forcedGC
	rss, err := r.probe.rss(ctx)
	if err != nil {
		return fmt.Errorf("%w: reading RSS: %v", ErrNode, err)
	}
	r.res.Server.RSSBaseline = rss
	if m, err := r.probe.metrics(ctx); err == nil {
		r.res.Server.HeapBaseline = int64(m["go_memstats_heap_inuse_bytes"])
	}
	return nil
}

func (r *runner) startWorkers(ctx context.Context) error {
	p := &r.p
	per := ceilDiv(p.Conns, p.Workers)
	for i := 0; i < p.Workers && i*per < p.Conns; i++ {
		w, err := startWorker(i, r.cfg.WorkerArgv, r.cfg.WorkerEnv, r.cfg.WorkerStderr)
		if err != nil {
			return err
		}
		r.workers = append(r.workers, w)
	}
	r.res.Workers = len(r.workers)
	_, err := r.workers.each(ctx, func(i int) command {
		first := i * per
		return command{Cmd: cmdInit, Spec: &workerSpec{
			Index:         i,
			LocalIP:       "127.0.0." + strconv.Itoa(2+i),
			Targets:       p.Targets,
			First:         first,
			Count:         min(per, p.Conns-first),
			TopicsPerConn: p.TopicsPerConn,
			Topics:        p.Topics,
			TopicPrefix:   p.TopicPrefix,
			HotSubs:       p.HotSubs,
			Transport:     p.Transport,
			Concurrency:   p.ConnectConcurrency,
			Rate:          p.ConnectRate / float64(len(r.workers)),
			DialTimeout:   p.DialTimeout,
			AckTimeout:    p.AckTimeout,
			Recover:       p.Scenario == ScenarioRecover,
		}}
	})
	return err
}

// startSampler reads the node every samplePeriod and prints progress every
// second; the returned func stops it and waits.
func (r *runner) startSampler() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(samplePeriod)
		defer t.Stop()
		// A sample at each end, so even a short run has its start and finish.
		prev := r.sample()
		for n := 1; ; n++ {
			select {
			case <-done:
				r.sample()
				return
			case <-t.C:
			}
			s := r.sample()
			if n%2 == 0 && !r.p.Quiet {
				r.printProgress(prev, s)
				prev = s
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (r *runner) sample() Sample {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st := r.workers.progress()
	s := Sample{T: time.Since(r.start).Seconds(), Open: st.Open, Received: st.Received}
	s.RSS, _ = r.probe.rss(ctx)
	s.CPU, _ = r.probe.cpu(ctx)
	s.Clients = r.workers.cpu(r.probe)
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
	return s
}

func (r *runner) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

func (r *runner) printProgress(prev, s Sample) {
	st := r.workers.progress()
	r.mu.Lock()
	phase := r.phase
	r.mu.Unlock()
	dt := s.T - prev.T
	rate, cpu := 0.0, 0.0
	if dt > 0 {
		rate = float64(s.Received-prev.Received) / dt
		cpu = (s.CPU - prev.CPU) / dt * 100
	}
	extra := ""
	if rs := st.Recover; rs != nil {
		extra = fmt.Sprintf(" | cut %d reconnected %d caught up %d gaps %d dups %d not recovered %d",
			rs.Cuts, rs.Reconnects, rs.CaughtUp, st.Gaps, st.Dups, rs.NotRecovered)
	}
	if r.p.Scenario == ScenarioKafka {
		ks := r.lastKafkaSample()
		extra = fmt.Sprintf(" | kafka produced %d, node consumed %.0f published %.0f lag %.0f",
			r.kafkaProduced.Load(), ks.Consumed, ks.Published, ks.Lag)
	}
	fmt.Fprintf(r.cfg.Progress, "[%s %4.0fs %s] open %d connected %d/%d failed %d subscribed %d | delivered %d (%.0f/s)%s | node rss %s cpu %.0f%%\n",
		r.p.Name, s.T, phase, st.Open, st.Connected, st.Attempted, st.Failed, st.Subscribed,
		st.Received, rate, extra, mib(s.RSS), cpu)
}

func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }

// scenario runs the scenario's phases.
func (r *runner) scenario(ctx context.Context) error {
	switch r.p.Scenario {
	case ScenarioChurn:
		return r.churn(ctx)
	case ScenarioJoinStorm:
		return r.joinStorm(ctx)
	}
	st, failed, err := r.connect(ctx)
	if err != nil {
		return err
	}
	r.fillConnect(st)
	r.subs = topicSubs(r.p, failed)

	switch r.p.Scenario {
	case ScenarioIdle, ScenarioTopics:
		r.setPhase("settle")
		r.loadedMemory(ctx, true)
	default:
		r.loadedMemory(ctx, false)
	}
	switch r.p.Scenario {
	case ScenarioIdle:
		r.setPhase("hold")
		if err := sleepCtx(ctx, r.p.Duration); err != nil {
			return err
		}
	case ScenarioLatency, ScenarioFanout, ScenarioTopics:
		if err := r.publishFixed(ctx); err != nil {
			return err
		}
	case ScenarioSteps:
		if err := r.steps(ctx); err != nil {
			return err
		}
	case ScenarioHol:
		if err := r.hol(ctx); err != nil {
			return err
		}
	case ScenarioRecover:
		if err := r.cutAndRecover(ctx); err != nil {
			return err
		}
	case ScenarioKafka:
		if err := r.kafka(ctx); err != nil {
			return err
		}
	}
	if r.p.PresenceStats && r.p.TopicsPerConn > 0 {
		r.setPhase("presence")
		r.checkPresence(ctx)
	}
	r.setPhase("close")
	_, err = r.workers.all(ctx, command{Cmd: cmdClose})
	return err
}

// connect runs one connect command on every worker and returns the summed
// cumulative counters and every failed connection index.
func (r *runner) connect(ctx context.Context) (*workerStats, []int, error) {
	r.setPhase("connect")
	cpu0, t0 := r.cpu(ctx), time.Now()
	reps, err := r.workers.all(ctx, command{Cmd: cmdConnect})
	if err != nil {
		return nil, nil, err
	}
	r.res.Server.CPUConnect = r.cpuSpan(ctx, cpu0, t0)
	var failed []int
	for _, rep := range reps {
		failed = append(failed, rep.Failed...)
	}
	return sumStats(reps), failed, nil
}

// fillConnect fills Result.Connect from cumulative counters.
func (r *runner) fillConnect(st *workerStats) {
	c := &r.res.Connect
	c.Attempted, c.Connected, c.Failed, c.Subscribed = st.Attempted, st.Connected, st.Failed, st.Subscribed
	c.Subscriptions = st.Subscribed * int64(max(0, r.p.TopicsPerConn))
	if st.ConnectEnd > st.ConnectStart && st.ConnectStart > 0 {
		c.Seconds = float64(st.ConnectEnd-st.ConnectStart) / 1e9
		c.PerSec = float64(st.Connected) / c.Seconds
	}
	if st.SubscribeEnd > st.ConnectStart && st.ConnectStart > 0 {
		c.SubscribeSeconds = float64(st.SubscribeEnd-st.ConnectStart) / 1e9
		c.SubsPerSec = float64(c.Subscriptions) / c.SubscribeSeconds
	}
}

// topicSubs counts the connections subscribed to each topic, leaving out
// the connections that failed.
func topicSubs(p Params, failed []int) []int64 {
	if p.TopicsPerConn <= 0 {
		return nil
	}
	subs := make([]int64, p.Topics)
	skip := make(map[int]bool, len(failed))
	for _, i := range failed {
		skip[i] = true
	}
	k := p.TopicsPerConn
	for i := range p.Conns {
		if skip[i] {
			continue
		}
		for j := range k {
			subs[topicOf(i, j, k, p.Topics, p.HotSubs)]++
		}
	}
	return subs
}

// loadedMemory reads RSS and heap with every connection open, after the
// RSS settles when settle is set (the node offers no way to force a GC).
func (r *runner) loadedMemory(ctx context.Context, settle bool) {
	s := &r.res.Server
	switch {
	case r.forcedGC:
		if err := r.probe.gc(ctx); err != nil {
			r.note("forced GC failed before the loaded reading: " + err.Error())
		}
		s.RSSLoaded, _ = r.probe.rss(ctx)
	case settle:
		s.RSSLoaded, s.Settled, s.SettleSeconds = r.settle(ctx)
	default:
		s.RSSLoaded, _ = r.probe.rss(ctx)
	}
	if m, err := r.probe.metrics(ctx); err == nil {
		s.HeapLoaded = int64(m["go_memstats_heap_inuse_bytes"])
	}
	if r.p.HeapProfile != "" {
		if err := r.probe.profile(ctx, "heap?gc=1", r.p.HeapProfile); err != nil {
			r.note("no heap profile: " + err.Error())
		}
	}
	if n := r.res.Connect.Connected; n > 0 {
		s.RSSPerConn = float64(s.RSSLoaded-s.RSSBaseline) / float64(n)
		s.HeapPerConn = float64(s.HeapLoaded-s.HeapBaseline) / float64(n)
	}
	if n := r.res.Connect.Subscriptions; n > 0 {
		s.RSSPerSub = float64(s.RSSLoaded-s.RSSBaseline) / float64(n)
	}
}

// settle waits until RSS stays within 1% over 2 s (five readings), or
// SettleTimeout passes.
func (r *runner) settle(ctx context.Context) (rss int64, settled bool, secs float64) {
	t0 := time.Now()
	var window []int64
	tick := time.NewTicker(samplePeriod)
	defer tick.Stop()
	for {
		v, err := r.probe.rss(ctx)
		if err == nil {
			rss = v
			window = append(window, v)
			if len(window) > 5 {
				window = window[1:]
			}
			if len(window) == 5 && float64(slices.Max(window)-slices.Min(window)) <= 0.01*float64(slices.Max(window)) {
				return rss, true, time.Since(t0).Seconds()
			}
		}
		if time.Since(t0) >= r.p.SettleTimeout {
			return rss, false, time.Since(t0).Seconds()
		}
		select {
		case <-ctx.Done():
			return rss, false, time.Since(t0).Seconds()
		case <-tick.C:
		}
	}
}

func (r *runner) cpu(ctx context.Context) float64 {
	v, _ := r.probe.cpu(ctx)
	return v
}

func (r *runner) cpuSpan(ctx context.Context, cpu0 float64, t0 time.Time) CPU {
	return span(r.cpu(ctx)-cpu0, t0)
}

// span is secs of CPU spent since t0.
func span(secs float64, t0 time.Time) CPU {
	c := CPU{Seconds: secs, Wall: time.Since(t0).Seconds()}
	if c.Wall > 0 {
		c.Percent = c.Seconds / c.Wall * 100
	}
	return c
}

// openPublisher connects the publisher to the first target and waits for
// the node to hold upstream interest in every subscribed topic.
func (r *runner) openPublisher(ctx context.Context) error {
	p, err := r.newPublisher(ctx)
	if err != nil {
		return fmt.Errorf("bench: publisher: %w", err)
	}
	r.pub = p
	return r.waitInterest(ctx)
}

// newPublisher opens a publisher of the run's kind (-publish-via) to the
// first target: Publishers keep-alive HTTP connections, or Publishers/16
// WebSockets (at least one), a topic always on the same one.
func (r *runner) newPublisher(ctx context.Context) (publisher, error) {
	if r.p.PublishVia == "ws" {
		return newWSPool(ctx, r.p.Targets[0], r.p.DialTimeout, max(1, r.p.Publishers/16))
	}
	return newHTTPPublisher(r.p.Targets[0], r.p.APIKey, r.p.Publishers), nil
}

// waitInterest polls subsock_broker_topics until the node holds interest
// in every topic that has subscribers (single node only; routers batch
// upstream subscriptions, and a publish racing them would be lost).
func (r *runner) waitInterest(ctx context.Context) error {
	if len(r.p.Targets) != 1 {
		return nil
	}
	want := 0
	for _, n := range r.subs {
		if n > 0 {
			want++
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := r.probe.metrics(ctx)
		if err != nil {
			return nil
		}
		held, ok := m["subsock_broker_topics"]
		if !ok || held >= float64(want) {
			return nil
		}
		if time.Now().After(deadline) {
			r.note(fmt.Sprintf("the node held upstream interest in %.0f of %d topics when publishing began", held, want))
			return nil
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// publishFixed is one publish phase at p.Rate for p.Duration, then a drain.
func (r *runner) publishFixed(ctx context.Context) error {
	if err := r.openPublisher(ctx); err != nil {
		return err
	}
	m0, _ := r.probe.metrics(ctx)
	r.setPhase("publish")
	stopProfile := r.startCPUProfile(ctx, r.p.Duration)
	defer stopProfile()
	cpu0, ccpu0, t0 := r.cpu(ctx), r.workers.cpu(r.probe), time.Now()
	pr := r.pace(ctx, 0, r.p.Rate, r.p.Duration)
	exp := r.expected(pr)
	r.setPhase("drain")
	if _, err := r.drain(ctx, 0, exp); err != nil {
		return err
	}
	r.res.Server.CPUPublish = r.cpuSpan(ctx, cpu0, t0)
	r.res.Server.ClientCPUPublish = span(r.workers.cpu(r.probe)-ccpu0, t0)
	m1, _ := r.probe.metrics(ctx)
	r.coalescing(m0, m1)
	d := &DeliveryResult{}
	addDelivery(d, pr, exp)
	r.res.Delivery, r.pubStart = d, pr.start
	r.res.PublishRTT = summarize(pr.rtt)
	return nil
}

// startCPUProfile fetches a CPU profile of the node covering d into
// p.CPUProfile, when asked; the returned func waits for it.
func (r *runner) startCPUProfile(ctx context.Context, d time.Duration) (wait func()) {
	if r.p.CPUProfile == "" {
		return func() {}
	}
	secs := max(1, int(d.Seconds()+0.5))
	done := make(chan error, 1)
	go func() {
		done <- r.probe.profile(ctx, "profile?seconds="+strconv.Itoa(secs), r.p.CPUProfile)
	}()
	return func() {
		if err := <-done; err != nil {
			r.note("no CPU profile: " + err.Error())
		}
	}
}

func (r *runner) pace(ctx context.Context, step int, rate float64, d time.Duration) *paceResult {
	return r.runPace(ctx, r.plan(step, rate, d))
}

// plan is a publish phase over every topic at rate for d, stamped step.
func (r *runner) plan(step int, rate float64, d time.Duration) pacePlan {
	return pacePlan{
		rate: rate, duration: d, step: step, prefix: r.p.TopicPrefix,
		size: r.p.PayloadSize, senders: r.p.Publishers, seq: r.seq,
	}
}

// runPace runs a publish phase and notes its errors.
func (r *runner) runPace(ctx context.Context, pl pacePlan) *paceResult {
	pr := pace(ctx, r.pub, pl)
	for k, v := range pr.errKinds {
		r.addError("publish: "+k, v)
	}
	return pr
}

// expected is Σ accepted publishes × subscribers, per topic.
func (r *runner) expected(pr *paceResult) int64 {
	var n int64
	for t, c := range pr.perTopic {
		n += c * r.subs[t]
	}
	return n
}

// drainQuiet ends a drain when no delivery arrived for this long.
const drainQuiet = 2 * time.Second

// drain polls the workers until step's deliveries reach expected, stop
// arriving for drainQuiet, or DrainTimeout passes.
func (r *runner) drain(ctx context.Context, step int, expected int64) (*workerStats, error) {
	deadline := time.Now().Add(r.p.DrainTimeout)
	last, lastChange := int64(-1), time.Now()
	for {
		reps, err := r.workers.all(ctx, command{Cmd: cmdStats})
		if err != nil {
			return nil, err
		}
		st := sumStats(reps)
		got := stepCount(st.ReceivedByStep, step)
		now := time.Now()
		if got != last {
			last, lastChange = got, now
		}
		if got >= expected || now.After(deadline) || now.Sub(lastChange) > drainQuiet {
			return st, nil
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func addDelivery(d *DeliveryResult, pr *paceResult, expected int64) {
	d.Published += pr.published
	d.PublishErrors += pr.errors
	d.Late += pr.late
	d.Expected += expected
	d.ServerReported += pr.serverSubs
}

// finishDelivery fills the received side from the final, cumulative
// stats; from is the first publish.
func finishDelivery(d *DeliveryResult, st *workerStats, from time.Time) {
	var lastRecv int64
	for _, v := range st.LastRecvByStep {
		lastRecv = max(lastRecv, v)
	}
	d.Received = st.Received
	d.Gaps, d.Dups, d.Unstamped = st.Gaps, st.Dups, st.Unstamped
	d.Lost = max(0, d.Expected-d.Received)
	if d.Expected > 0 {
		d.LossRatio = float64(d.Lost) / float64(d.Expected)
	}
	if lastRecv > from.UnixNano() {
		d.Seconds = float64(lastRecv-from.UnixNano()) / 1e9
		d.PerSec = float64(d.Received) / d.Seconds
		d.PublishRate = float64(d.Published) / d.Seconds
	}
}

// coalescing records deliveries per writev between two scrapes.
func (r *runner) coalescing(m0, m1 map[string]float64) {
	if m0 == nil || m1 == nil {
		return
	}
	out := m1["subsock_messages_out_total"] - m0["subsock_messages_out_total"]
	writes := m1["subsock_write_syscalls_total"] - m0["subsock_write_syscalls_total"]
	if writes > 0 {
		r.res.Server.DeliveriesPerWrite = out / writes
	}
}

// steps raises the rate by StepFactor per step until a step loses more
// than LossLimit, its p99 passes P99Limit, or MaxSteps is reached.
func (r *runner) steps(ctx context.Context) error {
	if err := r.openPublisher(ctx); err != nil {
		return err
	}
	m0, _ := r.probe.metrics(ctx)
	d := &DeliveryResult{}
	rtt := newHist()
	first := time.Now()
	cpuAll0, ccpu0 := r.cpu(ctx), r.workers.cpu(r.probe)
	rate := r.p.Rate
	var st *workerStats
	for s := 0; s < r.p.MaxSteps; s++ {
		r.setPhase(fmt.Sprintf("step %d @ %.0f/s", s+1, rate))
		cpu0, t0 := r.cpu(ctx), time.Now()
		pr := r.pace(ctx, s, rate, r.p.StepDuration)
		exp := r.expected(pr)
		var err error
		if st, err = r.drain(ctx, s, exp); err != nil {
			return err
		}
		cpu := r.cpuSpan(ctx, cpu0, t0)
		h, err := r.stepHist(ctx, s)
		if err != nil {
			return err
		}
		rtt.Merge(pr.rtt)
		addDelivery(d, pr, exp)
		got := stepCount(st.ReceivedByStep, s)
		sr := StepResult{
			Step: s + 1, Rate: rate, Published: pr.published, Late: pr.late,
			Expected: exp, Received: got, Lost: max(0, exp-got),
			Latency: summarize(h), CPUPercent: cpu.Percent,
		}
		if last := stepCount(st.LastRecvByStep, s); last > pr.start.UnixNano() {
			secs := float64(last-pr.start.UnixNano()) / 1e9
			sr.PerSec = float64(got) / secs
			sr.PublishRate = float64(pr.published) / secs
		}
		if exp > 0 {
			sr.LossRatio = float64(sr.Lost) / float64(exp)
		}
		limit := max(0, r.p.LossLimit)
		switch {
		case sr.LossRatio > limit:
			sr.Stop = fmt.Sprintf("loss %.4f%% over the limit", sr.LossRatio*100)
		case sr.Latency.P99 > float64(r.p.P99Limit.Milliseconds()):
			sr.Stop = fmt.Sprintf("p99 %.0f ms over %s", sr.Latency.P99, r.p.P99Limit)
		case s == r.p.MaxSteps-1:
			sr.Stop = "last step"
		}
		r.res.Steps = append(r.res.Steps, sr)
		if sr.Stop != "" {
			break
		}
		rate *= r.p.StepFactor
	}
	r.res.Server.CPUPublish = r.cpuSpan(ctx, cpuAll0, first)
	r.res.Server.ClientCPUPublish = span(r.workers.cpu(r.probe)-ccpu0, first)
	r.res.PublishRTT = summarize(rtt)
	m1, _ := r.probe.metrics(ctx)
	r.coalescing(m0, m1)
	r.res.Delivery, r.pubStart = d, first
	return nil
}

// stepHist merges step s's latency histogram from every worker.
func (r *runner) stepHist(ctx context.Context, s int) (*hdr.Histogram, error) {
	reps, err := r.workers.all(ctx, command{Cmd: cmdHist, Step: s})
	if err != nil {
		return nil, err
	}
	h := newHist()
	for _, rep := range reps {
		if err := mergeEncoded(h, rep.Hist); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// churnKeys are the registry figures churn expects back at the baseline.
var churnKeys = []string{"subsock_connections", "subsock_subscriptions", "subsock_topics", "subsock_broker_topics"}

// churn runs Cycles connect/subscribe/close cycles, then waits for the
// node's registry and memory to return.
func (r *runner) churn(ctx context.Context) error {
	ch := &ChurnResult{Baseline: map[string]float64{}, After: map[string]float64{}, RSSBaseline: r.res.Server.RSSBaseline}
	r.res.Churn = ch
	m0, err := r.probe.metrics(ctx)
	if err != nil {
		return fmt.Errorf("%w: churn needs /metrics: %v", ErrNode, err)
	}
	for _, k := range churnKeys {
		ch.Baseline[k] = m0[k]
	}
	ch.HeapBaseline = int64(m0["go_memstats_heap_inuse_bytes"])
	var prev workerStats
	cpu0, t0 := r.cpu(ctx), time.Now()
	for c := range r.p.Cycles {
		r.setPhase(fmt.Sprintf("cycle %d/%d", c+1, r.p.Cycles))
		st, _, err := r.connect(ctx)
		if err != nil {
			return err
		}
		cy := CycleResult{
			Connected:  st.Connected - prev.Connected,
			Subscribed: st.Subscribed - prev.Subscribed,
			Failed:     st.Failed - prev.Failed,
		}
		if st.ConnectEnd > st.ConnectStart && st.ConnectStart > 0 {
			cy.Seconds = float64(st.ConnectEnd-st.ConnectStart) / 1e9
			cy.PerSec = float64(cy.Connected) / cy.Seconds
		}
		ch.Cycles = append(ch.Cycles, cy)
		if rss, err := r.probe.rss(ctx); err == nil {
			ch.RSSPeak = max(ch.RSSPeak, rss)
		}
		prev = *st
		if _, err := r.workers.all(ctx, command{Cmd: cmdClose}); err != nil {
			return err
		}
	}
	r.res.Server.CPUConnect = r.cpuSpan(ctx, cpu0, t0)
	c := &r.res.Connect
	c.Attempted, c.Connected, c.Failed, c.Subscribed = prev.Attempted, prev.Connected, prev.Failed, prev.Subscribed
	c.Subscriptions = prev.Subscribed * int64(max(0, r.p.TopicsPerConn))
	for _, cy := range ch.Cycles {
		c.Seconds += cy.Seconds
	}
	if c.Seconds > 0 {
		c.PerSec = float64(c.Connected) / c.Seconds
		c.SubsPerSec = float64(c.Subscriptions) / c.Seconds
	}

	// The registry must drain: the node processes the closes asynchronously
	// and releases upstream interest after its linger.
	r.setPhase("return")
	closed := time.Now()
	deadline := closed.Add(r.p.SettleTimeout)
	for {
		m, err := r.probe.metrics(ctx)
		if err != nil {
			return err
		}
		back := true
		for _, k := range churnKeys {
			ch.After[k] = m[k]
			back = back && m[k] <= ch.Baseline[k]
		}
		if back {
			ch.Returned = true
			ch.ReturnSeconds = time.Since(closed).Seconds()
			break
		}
		if time.Now().After(deadline) {
			break
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	r.setPhase("settle")
	if r.forcedGC && r.probe.gc(ctx) == nil {
		ch.RSSAfter, _ = r.probe.rss(ctx)
	} else {
		ch.RSSAfter, r.res.Server.Settled, r.res.Server.SettleSeconds = r.settle(ctx)
	}
	if m, err := r.probe.metrics(ctx); err == nil {
		ch.HeapAfter = int64(m["go_memstats_heap_inuse_bytes"])
	}
	r.res.Server.RSSLoaded = ch.RSSPeak
	return nil
}

// finish closes the workers' connections, collects their results and
// merges the histograms.
func (r *runner) finish(ctx context.Context) error {
	if r.pub != nil {
		_ = r.pub.close()
		r.pub = nil
	}
	if len(r.workers) == 0 {
		return nil
	}
	reps, err := r.workers.all(ctx, command{Cmd: cmdResult})
	if err != nil {
		return err
	}
	hs, sa, ready, lat, caught := newHist(), newHist(), newHist(), newHist(), newHist()
	st := &workerStats{}
	for _, rep := range reps {
		res := rep.Result
		if res == nil {
			return fmt.Errorf("%w: empty result", ErrWorker)
		}
		st.add(&res.Stats)
		for _, m := range []struct {
			h *hdr.Histogram
			s string
		}{{hs, res.Handshake}, {sa, res.SubAck}, {ready, res.Ready}, {lat, res.Latency}, {caught, res.CaughtUp}} {
			if err := mergeEncoded(m.h, m.s); err != nil {
				return err
			}
		}
	}
	// A joinstorm's Delivery is its canary's, settled by finishCanary.
	if r.res.Delivery != nil && r.res.JoinStorm == nil {
		finishDelivery(r.res.Delivery, st, r.pubStart)
	}
	r.res.Connect.Handshake = summarize(hs)
	r.res.Connect.SubAck = summarize(sa)
	r.res.Connect.Ready = summarize(ready)
	r.res.Latency = summarize(lat)
	r.res.LatencyCDF = cdf(lat, 10)
	if r.res.Recover != nil {
		r.finishRecover(st, caught)
	}
	if r.res.JoinStorm != nil {
		r.finishJoinStorm(st, lat)
	}
	for code, n := range st.ServerCloses {
		if r.res.ServerCloses == nil {
			r.res.ServerCloses = map[string]int64{}
		}
		r.res.ServerCloses[strconv.Itoa(code)] += n
	}
	for k, v := range st.Errors {
		r.addError(k, v)
	}
	if m, err := r.probe.metrics(ctx); err == nil {
		keep := map[string]float64{}
		for k, v := range m {
			if len(k) > 8 && k[:8] == "subsock_" && !math.IsNaN(v) {
				keep[k] = v
			}
		}
		r.res.Server.Metrics = keep
	}
	r.res.Server.CPUTotal = CPU{Wall: time.Since(r.start).Seconds()}
	if len(r.samples) > 0 {
		first, last := r.samples[0], r.samples[len(r.samples)-1]
		r.res.Server.CPUTotal.Seconds = last.CPU - first.CPU
		r.res.Server.CPUTotal.Wall = last.T - first.T
		if r.res.Server.CPUTotal.Wall > 0 {
			r.res.Server.CPUTotal.Percent = r.res.Server.CPUTotal.Seconds / r.res.Server.CPUTotal.Wall * 100
		}
	}
	r.workers.stop(10 * time.Second)
	r.workers = nil
	return nil
}

func (r *runner) addError(k string, n int64) {
	if r.res.Errors == nil {
		r.res.Errors = map[string]int64{}
	}
	r.res.Errors[k] += n
}

func (r *runner) note(s string) { r.res.Notes = append(r.res.Notes, s) }

// judge sets OK and adds notes on what limits the reading.
func (r *runner) judge() {
	res := r.res
	ok := res.Connect.Failed == 0
	if res.Connect.Failed > 0 {
		r.note(fmt.Sprintf("%d of %d connections failed", res.Connect.Failed, res.Connect.Attempted))
	}
	if d := res.Delivery; d != nil {
		if d.Lost > 0 && r.p.Scenario != ScenarioSteps && r.p.Scenario != ScenarioRecover {
			ok = false
			r.note(fmt.Sprintf("%d of %d deliveries lost (%.4f%%)", d.Lost, d.Expected, d.LossRatio*100))
		}
		if d.PublishErrors > 0 {
			ok = false
			r.note(fmt.Sprintf("%d publishes failed", d.PublishErrors))
		}
		if target := r.p.Rate; r.p.Scenario != ScenarioSteps && d.PublishRate > 0 && d.PublishRate < 0.9*target {
			r.note(fmt.Sprintf("the rate was not sustained: %.1f publishes/s achieved of %.0f/s asked", d.PublishRate, target))
		}
		if d.Late > 0 {
			r.note(fmt.Sprintf("%d of %d publishes started more than %s behind schedule (every publisher was waiting for the node's answer, or the socket was full); the delay counts as latency", d.Late, d.Published+d.PublishErrors, lateAfter))
		}
		// Recover's cut connections are away when some publishes land.
		// So are joinstorm's members, who are not owed every publish.
		if d.ServerReported > 0 && d.ServerReported != d.Expected && len(res.Targets) == 1 &&
			r.p.Scenario != ScenarioRecover && r.p.Scenario != ScenarioJoinStorm {
			r.note(fmt.Sprintf("the node reported %d subscriber-deliveries, the harness expected %d", d.ServerReported, d.Expected))
		}
	}
	if len(res.ServerCloses) > 0 {
		ok = false
		r.note(fmt.Sprintf("the node closed connections: %v (close code: count)", res.ServerCloses))
	}
	if ch := res.Churn; ch != nil && !ch.Returned {
		ok = false
		r.note(fmt.Sprintf("registry did not return to the baseline within %s: %v, baseline %v", r.p.SettleTimeout, ch.After, ch.Baseline))
	}
	switch {
	case res.Server.ForcedGC:
		r.note("memory read after a forced GC (POST /debug/gc: runtime.GC and debug.FreeOSMemory), so heap-in-use is live memory")
	case res.Server.Settled:
		r.note(fmt.Sprintf("memory read after RSS settled (%.1f s) without a forced GC (start the node with -pprof to allow one), so RSS and heap-in-use may still hold garbage", res.Server.SettleSeconds))
	case r.p.Scenario == ScenarioIdle || r.p.Scenario == ScenarioTopics || r.p.Scenario == ScenarioChurn:
		r.note(fmt.Sprintf("RSS did not settle within %s; the memory figure is an upper bound", r.p.SettleTimeout))
	default:
		r.note("memory read right after connecting, without waiting to settle; use the idle scenario for memory per connection")
	}
	if res.Hol != nil && !r.judgeHol() {
		ok = false
	}
	if res.Recover != nil && !r.judgeRecover() {
		ok = false
	}
	if res.JoinStorm != nil && !r.judgeJoinStorm() {
		ok = false
	}
	if res.Kafka != nil && !r.judgeKafka() {
		ok = false
	}
	if res.Presence != nil && !r.judgePresence() {
		ok = false
	}
	if la := res.LoadAvg; la[0] > 2 || la[1] > 2 {
		r.note(fmt.Sprintf("the box was busy with other work (1-minute load average %.1f at the start, %.1f at the end, on %d cores): figures are noisy", la[0], la[1], runtime.NumCPU()))
	}
	res.OK = ok
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
