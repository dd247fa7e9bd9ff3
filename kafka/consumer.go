package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/proto"
)

// Publisher takes one record's value to a subsock topic: *gateway.Gateway
// satisfies it (Gateway.Publish: the backbone once, every subscriber on
// every node once, an offset on a history topic). It must return within a
// bounded time (the gateway's PublishTimeout), fail with an error wrapping
// broker.ErrUnavailable when the backbone cannot take the message (the
// record is retried), and with a *proto.Error or broker.ErrBadTopic for a
// topic or data it refuses (the record is skipped or dead-lettered). Any
// other error is treated as unavailable: nothing is skipped on a guess.
type Publisher interface {
	Publish(ctx context.Context, topic string, f proto.Format, data []byte) (broker.Position, error)
}

// BatchPublisher is a Publisher that also takes several values in one
// exchange with the backbone: *gateway.Gateway (PublishBatch). A partition
// with records waiting sends up to maxBatch of them at once, in order;
// each value's result follows Publisher's rules.
type BatchPublisher interface {
	Publisher
	PublishBatch(ctx context.Context, pubs []proto.Pub, errs []error)
}

// Consumer feeds a node from Kafka: one member of the consumer group per
// node, each record published through the Publisher, offsets committed
// only for records the backbone accepted (or that were skipped).
type Consumer struct {
	cfg   Config
	opts  []kgo.Opt
	pub   Publisher
	log   *zap.Logger
	rt    router
	m     *metrics
	stats stats

	skipLog, retryLog, errLog rateLog

	life    sync.Mutex // guards the lifecycle fields below
	running bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{} // closed when Run returns

	// pubCtx is what Publish runs under: not canceled by a revoke (an
	// accepted record must be marked), only once Run has stopped every
	// partition.
	pubCtx context.Context

	mu        sync.Mutex // guards parts, ends, committed and probeErr
	parts     map[tp]*partition
	ends      map[tp]int64 // log end offsets, from the last probe
	committed map[tp]int64 // the group's committed offsets, from the last probe
	probeErr  error

	pausedBackbone atomic.Int64 // partitions waiting for the backbone
	wg             sync.WaitGroup
}

// tp is one Kafka partition.
type tp struct {
	topic string
	part  int32
}

// errNotProbed is Ready's reason before the first probe answered.
var errNotProbed = errors.New("no answer from the brokers yet")

// New checks cfg, reads its TLS files and returns a Consumer that
// publishes through pub. It starts nothing: Run does.
func New(cfg Config, pub Publisher) (*Consumer, error) {
	cfg = cfg.WithDefaults()
	if pub == nil {
		return nil, ErrNoPublisher
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.clientOpts()
	if err != nil {
		return nil, err
	}
	tmpl, _ := parseTemplate(cfg.TopicTemplate)
	c := &Consumer{
		cfg:       cfg,
		opts:      opts,
		pub:       pub,
		log:       cfg.Logger,
		rt:        router{header: cfg.TopicHeader, tmpl: tmpl},
		m:         newMetrics(),
		skipLog:   rateLog{every: cfg.LogInterval},
		retryLog:  rateLog{every: cfg.LogInterval},
		errLog:    rateLog{every: cfg.LogInterval},
		parts:     make(map[tp]*partition),
		ends:      make(map[tp]int64),
		committed: make(map[tp]int64),
		probeErr:  errNotProbed,
	}
	c.m.state = stateCollector{c}
	return c, nil
}

// Run joins the group and consumes until ctx ends or Close is called, then
// stops every goroutine it started: it lets in-flight records finish,
// commits the offsets of what was published and leaves the group, so the
// other nodes take the partitions over at once. It returns nil after such
// a stop, ErrClosed after Close, ErrRunning while another Run runs, or
// the error that kept the client from starting.
func (c *Consumer) Run(ctx context.Context) error {
	c.life.Lock()
	switch {
	case c.closed:
		c.life.Unlock()
		return ErrClosed
	case c.running:
		c.life.Unlock()
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c.running, c.cancel, c.done = true, cancel, done
	c.life.Unlock()
	defer func() {
		cancel()
		c.life.Lock()
		c.running = false
		c.life.Unlock()
		close(done)
	}()

	pubCtx, pubCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer pubCancel()
	c.pubCtx = pubCtx

	opts := append(slices.Clone(c.opts),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}

	probed := make(chan struct{})
	go func() {
		defer close(probed)
		c.probe(ctx, kadm.NewClient(cl))
	}()
	c.poll(ctx, cl)
	<-probed

	// Leaving runs the final revoke: partitions stop after their in-flight
	// record and what they published is committed. Bounded, so that a node
	// whose brokers are gone still shuts down.
	leaveCtx, leaveCancel := context.WithTimeout(context.Background(), c.cfg.RebalanceTimeout)
	_ = cl.LeaveGroupContext(leaveCtx)
	leaveCancel()
	cl.Close()
	c.stopAll() // partitions left over when the leave was cut short
	c.wg.Wait()
	return nil
}

// Close stops Run and waits for it to return; after Close, Run returns
// ErrClosed. It is safe to call more than once and before Run.
func (c *Consumer) Close() error {
	c.life.Lock()
	c.closed = true
	cancel, done := c.cancel, c.done
	c.life.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// Ready is a readiness check for Gateway.AddCheck: nil while Run runs, the
// brokers answered the last probe (within ProbeInterval) and no partition
// is waiting for the backbone; ErrNotRunning, ErrUnreachable or ErrPaused
// (wrapped with the detail) otherwise. A rebalance or a lag is no reason.
func (c *Consumer) Ready() error {
	c.life.Lock()
	running := c.running && !c.closed
	c.life.Unlock()
	if !running {
		return ErrNotRunning
	}
	c.mu.Lock()
	perr := c.probeErr
	c.mu.Unlock()
	if perr != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, perr)
	}
	if n := c.pausedBackbone.Load(); n > 0 {
		return fmt.Errorf("%w (%d partitions)", ErrPaused, n)
	}
	return nil
}

// poll hands fetched records to their partitions until ctx ends. With
// BlockRebalanceOnPoll no rebalance runs between a poll and
// AllowRebalance, so every partition fetched is one this node owns; the
// hand-off never blocks (a partition whose buffer fills is paused), so the
// group's rebalances are held up by microseconds, not by the backbone.
func (c *Consumer) poll(ctx context.Context, cl *kgo.Client) {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			cl.AllowRebalance()
			return
		}
		fs.EachError(func(topic string, part int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			c.m.fetchErrors.Inc()
			if ok, n := c.errLog.allow(); ok {
				c.log.Warn("kafka: fetch failed", zap.String("topic", topic), zap.Int32("partition", part), zap.Error(err), zap.Int("suppressed", n))
			}
		})
		c.mu.Lock()
		fs.EachPartition(func(f kgo.FetchTopicPartition) {
			if len(f.Records) == 0 {
				return
			}
			if p := c.parts[tp{f.Topic, f.Partition}]; p != nil {
				p.push(f.Records, f.HighWatermark)
			}
		})
		c.mu.Unlock()
		cl.AllowRebalance()
	}
}

// assigned runs on franz-go's group goroutine: a partition goroutine for
// each new partition, fetching starts after it returns.
func (c *Consumer) assigned(_ context.Context, cl *kgo.Client, m map[string][]int32) {
	c.m.rebalances.WithLabelValues("assigned").Inc()
	c.stats.rebalances.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, parts := range m {
		for _, n := range parts {
			k := tp{topic, n}
			if c.parts[k] != nil {
				continue
			}
			p := newPartition(c, cl, k)
			c.parts[k] = p
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				p.run()
			}()
		}
	}
	c.log.Info("kafka: partitions assigned", zap.Any("partitions", m))
}

// revoked runs on franz-go's group goroutine, the poll loop held off:
// the partitions stop after their in-flight record, then what was marked
// is committed, so the next owner starts right after the last record this
// node published.
func (c *Consumer) revoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	c.m.rebalances.WithLabelValues("revoked").Inc()
	c.stats.rebalances.Add(1)
	c.stop(m)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RebalanceTimeout/2)
	defer cancel()
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		c.m.commitErrors.Inc()
		c.log.Warn("kafka: commit on revoke failed; the next owner republishes from the last commit", zap.Error(err))
	}
	cl.ResumeFetchPartitions(m)
	if len(m) > 0 {
		c.log.Info("kafka: partitions revoked", zap.Any("partitions", m))
	}
}

// lost runs on franz-go's group goroutine after a fatal group error (the
// session expired): another node may own the partitions already, so
// nothing is committed; what was published since the last commit will be
// published again by the next owner.
func (c *Consumer) lost(_ context.Context, cl *kgo.Client, m map[string][]int32) {
	c.m.rebalances.WithLabelValues("lost").Inc()
	c.stats.rebalances.Add(1)
	c.stop(m)
	cl.ResumeFetchPartitions(m)
	c.log.Warn("kafka: partitions lost", zap.Any("partitions", m))
}

// stop ends the partitions of m and waits for each to finish its record.
func (c *Consumer) stop(m map[string][]int32) {
	var ps []*partition
	c.mu.Lock()
	for topic, parts := range m {
		for _, n := range parts {
			k := tp{topic, n}
			if p := c.parts[k]; p != nil {
				ps = append(ps, p)
				delete(c.parts, k)
			}
		}
	}
	c.mu.Unlock()
	stopWait(ps)
}

// stopAll ends every partition still running.
func (c *Consumer) stopAll() {
	c.mu.Lock()
	ps := make([]*partition, 0, len(c.parts))
	for k, p := range c.parts {
		ps = append(ps, p)
		delete(c.parts, k)
	}
	c.mu.Unlock()
	stopWait(ps)
}

func stopWait(ps []*partition) {
	for _, p := range ps {
		p.cancel()
	}
	for _, p := range ps {
		<-p.done
	}
}

// probe asks the brokers for the end offsets of the consumed topics and the
// group's commits every ProbeInterval: the lag metric, and the
// reachability Ready reports.
func (c *Consumer) probe(ctx context.Context, adm *kadm.Client) {
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		c.probeOnce(ctx, adm)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Consumer) probeOnce(ctx context.Context, adm *kadm.Client) {
	ctx, cancel := context.WithTimeout(ctx, max(c.cfg.ProbeInterval, 5*time.Second))
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, c.cfg.Topics...)
	if err == nil {
		err = ends.Error()
	}
	var commits kadm.OffsetResponses
	if err == nil {
		commits, err = adm.FetchOffsets(ctx, c.cfg.Group)
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return // shutting down: keep the last answer
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probeErr = err
	if err != nil {
		return
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			c.ends[tp{o.Topic, o.Partition}] = o.Offset
		}
	})
	commits.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 {
			c.committed[tp{o.Topic, o.Partition}] = o.At
		}
	})
}

// Stats are the consumer's totals since New.
type Stats struct {
	Consumed     uint64 // records taken from Kafka
	Published    uint64 // records the backbone accepted
	Failed       uint64 // records that could not be mapped or were refused
	DeadLettered uint64 // failed records produced to the dead-letter topic
	Retries      uint64 // publish attempts refused as unavailable
	Rebalances   uint64 // assigned, revoked and lost callbacks
	Assigned     int    // partitions owned now
	Paused       int    // partitions waiting for the backbone now
}

type stats struct {
	consumed, published, failed, deadLettered, retries, rebalances atomic.Uint64
}

// Stats returns the consumer's totals.
func (c *Consumer) Stats() Stats {
	c.mu.Lock()
	assigned := len(c.parts)
	c.mu.Unlock()
	return Stats{
		Consumed:     c.stats.consumed.Load(),
		Published:    c.stats.published.Load(),
		Failed:       c.stats.failed.Load(),
		DeadLettered: c.stats.deadLettered.Load(),
		Retries:      c.stats.retries.Load(),
		Rebalances:   c.stats.rebalances.Load(),
		Assigned:     assigned,
		Paused:       int(c.pausedBackbone.Load()),
	}
}

// rateLog lets one log line through per interval and counts the rest.
type rateLog struct {
	every time.Duration
	mu    sync.Mutex
	last  time.Time
	n     int
}

// allow reports whether to log now, and how many were suppressed since the
// last line.
func (l *rateLog) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.n++
		return false, 0
	}
	n := l.n
	l.last, l.n = now, 0
	return true, n
}
