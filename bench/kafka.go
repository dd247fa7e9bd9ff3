package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The kafka scenario (issue 15): the subscribers are in first; then the
// harness produces Records records to KafkaTopic, record i keyed
// i mod Topics and stamped like a publish (payload.go) with the time it
// was handed to the producer and its key's sequence number; the node
// consumes them and publishes each to PREFIX.<key>. A poller reads the
// node's subsock_kafka_* counters every kafkaPollPeriod meanwhile.

// kfakePkg is the kfake server the harness builds when -kfake is not given.
const kfakePkg = "github.com/subsock/subsock/internal/testserver/kfake"

const (
	// kafkaPollPeriod is how often the node's Kafka counters are read.
	kafkaPollPeriod = 100 * time.Millisecond
	// kafkaAssignWait bounds the wait for the node to own every partition.
	kafkaAssignWait = 30 * time.Second
	// kafkaLagWait bounds the wait, after the deliveries, for the lag to
	// read 0: the node probes end offsets every 2 s by default.
	kafkaLagWait = 15 * time.Second
	// kafkaProfileSpan is the span of the node's CPU profile (-cpuprofile)
	// from the first record.
	kafkaProfileSpan = 5 * time.Second
)

// Families of the node's /metrics the poller reads.
const (
	metricKafkaConsumed  = "subsock_kafka_records_consumed_total"
	metricKafkaPublished = "subsock_kafka_records_published_total"
	metricKafkaFailed    = "subsock_kafka_records_failed_total"
	metricKafkaRetries   = "subsock_kafka_publish_retries_total"
	metricKafkaLag       = "subsock_kafka_consumer_lag"
	metricKafkaAssigned  = "subsock_kafka_partitions_assigned"
)

// kafkaProc is a kfake (internal/testserver/kfake) the harness started: one
// broker on a free loopback port, holding the run's topic.
type kafkaProc struct {
	cmd  *exec.Cmd
	addr string
	// tmp is a directory of the harness's own (the binary it built), or "".
	tmp    string
	exited chan struct{}
}

// startKafka gives a kafka run its Kafka: Params.Kafka if set (the node's
// -kafka-brokers included, see Normalize), else a kfake started here; a
// spawned node is pointed at it (kafkaNodeArgs).
func (r *runner) startKafka(ctx context.Context) error {
	defer func() { r.res.Params = r.p }()
	if r.p.Kafka == "" {
		kp, err := startKfake(ctx, r.p.Kfake, r.p.KafkaTopic, r.p.KafkaPartitions, r.cfg.NodeLog)
		if err != nil {
			return err
		}
		r.kfake = kp
		r.p.Kafka = kp.addr
	}
	if r.p.Spawn != "" {
		r.p.SpawnArgs = kafkaNodeArgs(r.p.SpawnArgs, r.p.Kafka, r.p.KafkaTopic, r.p.TopicPrefix)
	}
	return nil
}

// kafkaNodeArgs adds to a node's flags those of the kafka scenario that
// they do not name: the brokers, the topic, and the template that maps
// key k to PREFIX.k.
func kafkaNodeArgs(args []string, brokers, topic, prefix string) []string {
	args = slices.Clone(args)
	for _, f := range [][2]string{
		{"kafka-brokers", brokers},
		{"kafka-topics", topic},
		{"kafka-topic-template", prefix + ".{key}"},
	} {
		if flagValue(args, f[0]) == "" {
			args = append(args, "-"+f[0], f[1])
		}
	}
	return args
}

// firstBroker is the first host:port of a comma-separated broker list.
func firstBroker(list string) string {
	first, _, _ := strings.Cut(list, ",")
	return strings.TrimSpace(first)
}

// checkKafkaTopic accepts a legal Kafka topic name: 1..249 of
// [a-zA-Z0-9._-], not "." or "..".
func checkKafkaTopic(name string) error {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return fmt.Errorf("%w: -kafka-topic %q must be 1..249 bytes, not . or ..", ErrBadParams, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: -kafka-topic %q: byte %q is not allowed", ErrBadParams, name, c)
		}
	}
	return nil
}

// startKfake starts bin (built from kfakePkg when empty) on a free loopback
// port with topic of partitions partitions, and waits until it accepts
// connections.
func startKfake(ctx context.Context, bin, topic string, partitions int, logTo io.Writer) (*kafkaProc, error) {
	kp := &kafkaProc{exited: make(chan struct{})}
	if bin == "" {
		dir, err := os.MkdirTemp("", "subsock-bench-kfake")
		if err != nil {
			return nil, fmt.Errorf("%w: kfake: %v", ErrNode, err)
		}
		kp.tmp, bin = dir, filepath.Join(dir, "kfake")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, kfakePkg).CombinedOutput()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("%w: building kfake (run from the module, or give -kfake): %v\n%s", ErrNode, err, out)
		}
	}
	port, err := freePort()
	if err != nil {
		_ = os.RemoveAll(kp.tmp)
		return nil, fmt.Errorf("%w: kfake: %v", ErrNode, err)
	}
	kp.addr = "127.0.0.1:" + strconv.Itoa(port)
	kp.cmd = exec.Command(bin, "-port", strconv.Itoa(port), "-topic", topic+"="+strconv.Itoa(partitions))
	kp.cmd.Stdout, kp.cmd.Stderr = logTo, logTo
	kp.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := kp.cmd.Start(); err != nil {
		_ = os.RemoveAll(kp.tmp)
		return nil, fmt.Errorf("%w: kfake: %v", ErrNode, err)
	}
	go func() {
		_ = kp.cmd.Wait()
		close(kp.exited)
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		var d net.Dialer
		if c, err := d.DialContext(ctx, "tcp", kp.addr); err == nil {
			_ = c.Close()
			return kp, nil
		}
		select {
		case <-kp.exited:
			kp.stop(0)
			return nil, fmt.Errorf("%w: kfake exited at start", ErrNode)
		case <-ctx.Done():
			kp.stop(time.Second)
			return nil, fmt.Errorf("%w: kfake did not listen on %s", ErrNode, kp.addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (kp *kafkaProc) pid() int { return kp.cmd.Process.Pid }

// stop sends SIGTERM, kills after grace, and removes the built binary.
func (kp *kafkaProc) stop(grace time.Duration) {
	_ = kp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-kp.exited:
	case <-time.After(grace):
		_ = kp.cmd.Process.Kill()
		<-kp.exited
	}
	if kp.tmp != "" {
		_ = os.RemoveAll(kp.tmp)
	}
}

// recordOf is record i's key (of keys) and that key's sequence number,
// from 1: the keys are taken in turn.
func recordOf(i, keys int) (key int, seq uint64) {
	return i % keys, uint64(i/keys) + 1
}

// producePlan is what the producer sends.
type producePlan struct {
	topic   string
	records int
	keys    int
	// rate paces the records (per second); 0: as fast as the producer
	// takes them.
	rate float64
	size int
}

// produceResult is what Kafka acknowledged.
type produceResult struct {
	start, end time.Time
	errors     int64
	// perKey counts each key's acknowledged records; partitions those
	// that took at least one.
	perKey     []int64
	partitions int
	errKinds   map[string]int64
}

// produce sends pl's records through cl, asynchronously, and waits for
// every acknowledgement; acked counts them as they come. Each value is a
// bench payload stamped with the time the record was handed to the
// producer (paced: the time it was due), so a record held in the
// producer's buffer shows as latency.
func produce(ctx context.Context, cl *kgo.Client, pl producePlan, acked *atomic.Int64) *produceResult {
	res := &produceResult{perKey: make([]int64, pl.keys), errKinds: map[string]int64{}}
	keys := make([][]byte, pl.keys)
	for k := range keys {
		keys[k] = []byte(strconv.Itoa(k))
	}
	// Promises may run on several of the client's goroutines.
	var mu sync.Mutex
	parts := map[int32]bool{}
	promise := func(rec *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			res.errors++
			k := err.Error()
			if _, ok := res.errKinds[k]; !ok && len(res.errKinds) >= maxErrorKinds {
				k = "other"
			}
			res.errKinds[k]++
			return
		}
		if k, err := strconv.Atoi(string(rec.Key)); err == nil && k >= 0 && k < len(res.perKey) {
			res.perKey[k]++
		}
		parts[rec.Partition] = true
		acked.Add(1)
	}
	res.start = time.Now()
	for i := range pl.records {
		k, seq := recordOf(i, pl.keys)
		sent := time.Now()
		if pl.rate > 0 {
			sent = res.start.Add(time.Duration(float64(i) / pl.rate * float64(time.Second)))
			if d := time.Until(sent); d > 0 && sleepCtx(ctx, d) != nil {
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
		v := appendPayload(make([]byte, 0, pl.size+48), stamp{sent: sent.UnixNano(), seq: seq}, pl.size)
		cl.Produce(ctx, &kgo.Record{Topic: pl.topic, Key: keys[k], Value: v}, promise)
	}
	_ = cl.Flush(ctx) // on a cancelled ctx the promises report the records
	res.end = time.Now()
	mu.Lock()
	res.partitions = len(parts)
	mu.Unlock()
	return res
}

// kafkaPartitions returns the number of partitions of topic.
func kafkaPartitions(ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tds, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("%w: kafka: listing %s: %v", ErrNode, topic, err)
	}
	td, ok := tds[topic]
	switch {
	case !ok:
		return 0, fmt.Errorf("%w: kafka: no topic %s", ErrNode, topic)
	case td.Err != nil:
		return 0, fmt.Errorf("%w: kafka: topic %s: %v", ErrNode, topic, td.Err)
	}
	return len(td.Partitions), nil
}

// kafka runs the scenario once the subscribers are in: wait for upstream
// interest and for the node to own every partition, produce while polling
// the node's counters, drain the deliveries, wait for the lag to read 0.
func (r *runner) kafka(ctx context.Context) error {
	p := &r.p
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(p.Kafka),
		kgo.ClientID("subsock-bench"),
		// Everything shares two cores: no compression to pay for on
		// either side of the loopback.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)
	if err != nil {
		return fmt.Errorf("%w: kafka client: %v", ErrNode, err)
	}
	defer cl.Close()
	parts, err := kafkaPartitions(ctx, cl, p.KafkaTopic)
	if err != nil {
		return err
	}
	k := &KafkaResult{
		Brokers: p.Kafka, Kfake: r.kfake != nil, Topic: p.KafkaTopic, Partitions: parts,
		Keys: p.Topics, Template: p.TopicPrefix + ".{key}", Records: int64(p.Records),
	}
	if p.Spawn != "" {
		k.Template = flagValue(p.SpawnArgs, "kafka-topic-template")
	}
	r.res.Kafka = k
	if err := r.waitInterest(ctx); err != nil {
		return err
	}
	r.setPhase("assign")
	if k.Assigned, k.AssignSeconds, err = r.waitAssigned(ctx, parts); err != nil {
		return err
	}

	m0, _ := r.probe.metrics(ctx)
	poll, err := r.startKafkaPoll(ctx)
	if err != nil {
		return err
	}
	r.setPhase("produce")
	stopProfile := r.startCPUProfile(ctx, kafkaProfileSpan)
	cpu0, ccpu0, t0 := r.cpu(ctx), r.workers.cpu(r.probe), time.Now()
	kcpu0, rcpu0, hcpu0 := r.kafkaCPU(), r.redisCPU(), r.harnessCPU()
	pr := produce(ctx, cl, producePlan{
		topic: p.KafkaTopic, records: p.Records, keys: p.Topics, rate: p.Rate, size: p.PayloadSize,
	}, &r.kafkaProduced)
	for kind, n := range pr.errKinds {
		r.addError("produce: "+kind, n)
	}
	var exp int64
	for key, n := range pr.perKey {
		exp += n * r.subs[key]
		k.Produced += n
	}
	k.ProduceErrors, k.PartitionsUsed = pr.errors, pr.partitions
	if d := pr.end.Sub(pr.start).Seconds(); d > 0 {
		k.ProduceSeconds, k.ProduceRate = d, float64(k.Produced)/d
	}

	r.setPhase("drain")
	if _, err := r.drain(ctx, 0, exp); err != nil {
		poll.stop()
		return err
	}
	r.setPhase("lag")
	last, err := r.waitLagZero(ctx, k.Produced, pr.partitions)
	series := poll.stop()
	stopProfile()
	if err != nil {
		return err
	}
	r.res.Server.CPUPublish = r.cpuSpan(ctx, cpu0, t0)
	r.res.Server.ClientCPUPublish = span(r.workers.cpu(r.probe)-ccpu0, t0)
	k.KafkaCPU = span(r.kafkaCPU()-kcpu0, t0)
	k.RedisCPU = span(r.redisCPU()-rcpu0, t0)
	k.HarnessCPU = span(r.harnessCPU()-hcpu0, t0)
	m1, _ := r.probe.metrics(ctx)
	r.coalescing(m0, m1)

	k.Series = series
	k.Consumed, k.Published, k.Failed, k.Retries = last.Consumed, last.Published, last.Failed, last.Retries
	k.LagEnd, k.LagPartitions = last.Lag, last.LagPartitions
	k.LagZero = lagZero(last, k.Produced, pr.partitions)
	if k.LagZero {
		k.LagZeroSeconds = last.T
	}
	kr := kafkaRates(series, float64(k.Produced))
	k.ConsumedSeconds, k.PublishedSeconds, k.PeakPublishRate, k.LagMax = kr.consumedAt, kr.publishedAt, kr.peak, kr.lagMax
	if kr.consumedAt > 0 {
		k.ConsumeRate = float64(k.Produced) / kr.consumedAt
	}
	if kr.publishedAt > 0 {
		k.PublishRate = float64(k.Produced) / kr.publishedAt
	}

	r.res.Delivery = &DeliveryResult{Published: k.Produced, PublishErrors: pr.errors, Expected: exp}
	r.pubStart = pr.start
	return nil
}

// waitAssigned waits until the node owns parts partitions of the group, or
// kafkaAssignWait passes (a note then: records/s includes the wait).
func (r *runner) waitAssigned(ctx context.Context, parts int) (ok bool, secs float64, err error) {
	t0 := time.Now()
	var held float64
	for {
		if m, err := r.probe.metrics(ctx); err == nil {
			held = m[metricKafkaAssigned]
			if held >= float64(parts) {
				return true, time.Since(t0).Seconds(), nil
			}
		}
		if time.Since(t0) > kafkaAssignWait {
			r.note(fmt.Sprintf("the node owned %.0f of %d partitions after %s; producing anyway, so records/s includes the rest of the group's assignment", held, parts, kafkaAssignWait))
			return false, time.Since(t0).Seconds(), nil
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return false, 0, err
		}
	}
}

// lagZero reports whether s shows every record published and the lag at
// 0 on at least the parts partitions that took records.
func lagZero(s KafkaSample, produced int64, parts int) bool {
	return s.Published >= float64(produced) && s.LagPartitions >= parts && s.Lag == 0
}

// waitLagZero waits until the poller's latest sample shows lagZero, or
// kafkaLagWait passes; it returns the last sample either way.
func (r *runner) waitLagZero(ctx context.Context, produced int64, parts int) (KafkaSample, error) {
	deadline := time.Now().Add(kafkaLagWait)
	for {
		s := r.lastKafkaSample()
		if lagZero(s, produced, parts) || time.Now().After(deadline) {
			return s, nil
		}
		if err := sleepCtx(ctx, kafkaPollPeriod); err != nil {
			return s, err
		}
	}
}

func (r *runner) lastKafkaSample() KafkaSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.kafkaSeries); n > 0 {
		return r.kafkaSeries[n-1]
	}
	return KafkaSample{}
}

// kafkaPoll reads the node's Kafka counters every kafkaPollPeriod into
// runner.kafkaSeries until stopped.
type kafkaPoll struct {
	stopped chan struct{}
	done    chan struct{}
	r       *runner
}

// startKafkaPoll reads the counters once for the base the samples are
// taken from, then polls from now on, which is T = 0.
func (r *runner) startKafkaPoll(ctx context.Context) (*kafkaPoll, error) {
	base, err := r.probe.families(ctx, "subsock_kafka_")
	if err != nil {
		return nil, fmt.Errorf("%w: kafka needs the node's /metrics: %v", ErrNode, err)
	}
	kp := &kafkaPoll{stopped: make(chan struct{}), done: make(chan struct{}), r: r}
	t0 := time.Now()
	read := func() {
		m, err := r.probe.families(ctx, "subsock_kafka_")
		if err != nil {
			return
		}
		s := kafkaSampleOf(m, base, time.Since(t0), r.kafkaProduced.Load())
		r.mu.Lock()
		r.kafkaSeries = append(r.kafkaSeries, s)
		r.mu.Unlock()
	}
	go func() {
		defer close(kp.done)
		t := time.NewTicker(kafkaPollPeriod)
		defer t.Stop()
		for {
			read()
			select {
			case <-kp.stopped:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return kp, nil
}

// stop ends the polling and returns the samples.
func (kp *kafkaPoll) stop() []KafkaSample {
	close(kp.stopped)
	<-kp.done
	kp.r.mu.Lock()
	defer kp.r.mu.Unlock()
	return slices.Clone(kp.r.kafkaSeries)
}

// kafkaSampleOf is one poll, m, as growth over base, at t.
func kafkaSampleOf(m, base map[string]seriesSum, t time.Duration, produced int64) KafkaSample {
	grew := func(name string) float64 { return m[name].Sum - base[name].Sum }
	return KafkaSample{
		T: t.Seconds(), Produced: produced,
		Consumed: grew(metricKafkaConsumed), Published: grew(metricKafkaPublished),
		Failed: grew(metricKafkaFailed), Retries: grew(metricKafkaRetries),
		Lag: m[metricKafkaLag].Sum, LagPartitions: m[metricKafkaLag].N,
	}
}

// kafkaRateResult is what kafkaRates reads from a series.
type kafkaRateResult struct {
	// consumedAt and publishedAt are the first sample times at which the
	// counters reached want (0: never); peak is the best rate of
	// publication over a window of at least a second; lagMax the largest
	// lag.
	consumedAt, publishedAt, peak, lagMax float64
}

// kafkaRates reads a series of samples for want records.
func kafkaRates(series []KafkaSample, want float64) kafkaRateResult {
	var kr kafkaRateResult
	i := 0
	for j, s := range series {
		if kr.consumedAt == 0 && want > 0 && s.Consumed >= want {
			kr.consumedAt = s.T
		}
		if kr.publishedAt == 0 && want > 0 && s.Published >= want {
			kr.publishedAt = s.T
		}
		kr.lagMax = max(kr.lagMax, s.Lag)
		// i: the latest sample at least a second before j.
		for i+1 < j && series[i+1].T <= s.T-1 {
			i++
		}
		if dt := s.T - series[i].T; dt >= 1 {
			kr.peak = max(kr.peak, (s.Published-series[i].Published)/dt)
		}
	}
	return kr
}

// kafkaCPU is the CPU seconds of the kfake the harness started, or 0.
func (r *runner) kafkaCPU() float64 {
	if r.kfake == nil {
		return 0
	}
	v, _ := r.probe.procCPU(r.kfake.pid())
	return v
}

// redisCPU is the CPU seconds of the redis-server the harness started, or 0.
func (r *runner) redisCPU() float64 {
	if r.redis == nil {
		return 0
	}
	v, _ := r.probe.procCPU(r.redis.cmd.Process.Pid)
	return v
}

// harnessCPU is this process's CPU seconds: the producer's, mostly.
func (r *runner) harnessCPU() float64 {
	v, _ := r.probe.procCPU(os.Getpid())
	return v
}

// judgeKafka notes what the kafka scenario missed and reports whether it
// passed: every record produced, published once by the node and
// delivered to each subscriber of its topic (Delivery.Lost is judged with
// every scenario), no sequence missing, and the lag back at 0.
func (r *runner) judgeKafka() bool {
	k := r.res.Kafka
	ok := true
	miss := func(format string, a ...any) {
		ok = false
		r.note("kafka: " + fmt.Sprintf(format, a...))
	}
	if k.Produced < k.Records {
		miss("Kafka acknowledged %d of %d records", k.Produced, k.Records)
	}
	if k.Published < float64(k.Produced) {
		miss("the node published %.0f of the %d records produced (consumed %.0f, failed %.0f)", k.Published, k.Produced, k.Consumed, k.Failed)
	}
	if k.Failed > 0 {
		miss("the node failed %.0f records (subsock_kafka_records_failed_total: no topic, bad data…)", k.Failed)
	}
	if !k.LagZero {
		miss("subsock_kafka_consumer_lag did not return to 0 within %s: %.0f over %d partitions (%d took records)", kafkaLagWait, k.LagEnd, k.LagPartitions, k.PartitionsUsed)
	}
	if d := r.res.Delivery; d != nil {
		if d.Gaps > 0 {
			miss("%d sequence numbers never reached a subscriber of their topic", d.Gaps)
		}
		if d.Dups > 0 {
			r.note(fmt.Sprintf("kafka: %d deliveries were duplicates (the consumer is at least once; a clean run should have none)", d.Dups))
		}
	}
	if k.Published > float64(k.Produced) {
		r.note(fmt.Sprintf("kafka: the node published %.0f records for %d produced (republished after a rebalance?)", k.Published, k.Produced))
	}
	if k.Retries > 0 {
		r.note(fmt.Sprintf("kafka: the backbone refused %.0f publishes, retried", k.Retries))
	}
	if r.p.Rate == 0 && k.ProduceRate > 0 && k.PublishRate > 0 && k.ProduceRate > k.PublishRate {
		r.note(fmt.Sprintf("kafka: the records were produced at %.0f/s, faster than the node published them (%.0f/s): latency includes the wait behind the backlog in Kafka", k.ProduceRate, k.PublishRate))
	}
	return ok
}
