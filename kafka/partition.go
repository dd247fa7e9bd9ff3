package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/proto"
)

// partition publishes one assigned Kafka partition's records, in offset
// order, on its own goroutine (run), from its assignment until its revoke.
// The poll loop appends to queue (push); run takes the queue whole.
//
// Fetching of the partition is paused while its queue holds
// PartitionBuffer bytes (full) and while the backbone refuses its next
// record (backbone); it resumes when neither holds. Both flags and the
// pause calls change under mu, so pauses and resumes reach franz-go in the
// order they were decided.
type partition struct {
	c  *Consumer
	cl *kgo.Client
	tp tp

	consumed, published, retries, deadLettered prometheus.Counter

	mu       sync.Mutex
	queue    []*kgo.Record
	queued   int // bytes in queue, by recordSize
	full     bool
	backbone bool
	wake     chan struct{} // a push happened; capacity 1

	next atomic.Int64 // offset after the last record handled; -1 before the first
	hw   atomic.Int64 // high watermark of the last fetch

	// ctx ends waits (backoff, a dead-letter produce) when the partition
	// is revoked; an in-flight Publish is let finish (c.pubCtx).
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
}

func newPartition(c *Consumer, cl *kgo.Client, k tp) *partition {
	ctx, cancel := context.WithCancel(context.Background())
	p := &partition{
		c: c, cl: cl, tp: k,
		consumed:     c.m.consumed.WithLabelValues(k.topic),
		published:    c.m.published.WithLabelValues(k.topic),
		retries:      c.m.retries.WithLabelValues(k.topic),
		deadLettered: c.m.deadLettered.WithLabelValues(k.topic),
		wake:         make(chan struct{}, 1),
		ctx:          ctx,
		cancel:       cancel,
		done:         make(chan struct{}),
	}
	p.next.Store(-1)
	p.hw.Store(-1)
	return p
}

// push queues fetched records; it runs on the poll loop and never blocks.
func (p *partition) push(recs []*kgo.Record, hw int64) {
	p.hw.Store(hw)
	p.mu.Lock()
	p.queue = append(p.queue, recs...)
	for _, r := range recs {
		p.queued += recordSize(r)
	}
	if !p.full && p.queued >= p.c.cfg.PartitionBuffer {
		p.setLocked(func() { p.full = true })
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// recordSize is what a queued record holds in memory, roughly.
func recordSize(r *kgo.Record) int {
	n := 100 + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 32
	}
	return n
}

// setLocked applies change to the pause flags and pauses or resumes the
// partition's fetching if that changed. mu is held.
func (p *partition) setLocked(change func()) {
	was := p.full || p.backbone
	wasBackbone := p.backbone
	change()
	switch now := p.full || p.backbone; {
	case now && !was:
		p.cl.PauseFetchPartitions(map[string][]int32{p.tp.topic: {p.tp.part}})
	case !now && was:
		p.cl.ResumeFetchPartitions(map[string][]int32{p.tp.topic: {p.tp.part}})
	}
	switch {
	case p.backbone && !wasBackbone:
		p.c.pausedBackbone.Add(1)
	case !p.backbone && wasBackbone:
		p.c.pausedBackbone.Add(-1)
	}
}

func (p *partition) setBackbone(v bool) {
	p.mu.Lock()
	if p.backbone != v {
		p.setLocked(func() { p.backbone = v })
	}
	p.mu.Unlock()
}

// run handles the queued records until the partition is stopped.
func (p *partition) run() {
	defer close(p.done)
	defer func() {
		// The revoke resumes the partition in franz-go; only the count of
		// partitions waiting for the backbone is this one's to undo.
		p.mu.Lock()
		if p.backbone {
			p.c.pausedBackbone.Add(-1)
		}
		p.full, p.backbone, p.queue = false, false, nil
		p.mu.Unlock()
	}()
	var batch []*kgo.Record
	for {
		p.mu.Lock()
		batch, p.queue, p.queued = p.queue, batch[:0], 0
		if p.full {
			p.setLocked(func() { p.full = false })
		}
		p.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-p.wake:
				continue
			case <-p.ctx.Done():
				return
			}
		}
		bp, _ := p.c.pub.(BatchPublisher)
		for i := 0; i < len(batch); {
			if p.ctx.Err() != nil {
				return
			}
			n := 1
			if bp != nil {
				n = min(len(batch)-i, maxBatch)
			}
			if (n == 1 && !p.handle(batch[i])) || (n > 1 && !p.handleBatch(bp, batch[i:i+n])) {
				return
			}
			clear(batch[i : i+n])
			i += n
		}
	}
}

// maxBatch bounds the records a partition publishes in one exchange.
const maxBatch = 128

// handle publishes r (or skips or dead-letters it) and marks it for
// commit. It returns false when the partition was stopped first: r is then
// not marked, and the next owner handles it.
func (p *partition) handle(r *kgo.Record) bool {
	p.took()
	topic, f, err := p.route(r)
	if err == nil {
		err = p.publish(r, topic, f)
		if errors.Is(err, errStopped) {
			return false
		}
	}
	return p.settle(r, err)
}

// routed is a record's subsock topic and format, or why it has none.
type routed struct {
	topic string
	f     proto.Format
	err   error
}

// handleBatch is handle for records in a row, published in one exchange
// (BatchPublisher). Records the backbone refused or could not route are
// skipped or dead-lettered as handle does; if the backbone did not take
// the batch (unavailable), that record and the ones after it are
// published one at a time with handle's retries, in order (a retried
// record may then be delivered twice, as any retried record may).
func (p *partition) handleBatch(bp BatchPublisher, recs []*kgo.Record) bool {
	c := p.c
	rs := make([]routed, len(recs))
	pubs := make([]proto.Pub, 0, len(recs))
	for i, r := range recs {
		t, f, err := p.route(r)
		rs[i] = routed{t, f, err}
		if err == nil {
			pubs = append(pubs, proto.Pub{Topic: t, Format: f, Data: r.Value})
		}
	}
	errs := make([]error, len(pubs))
	if len(pubs) > 0 {
		bp.PublishBatch(c.pubCtx, pubs, errs)
	}
	k := 0
	for i, r := range recs {
		err := rs[i].err
		if err == nil {
			err = errs[k]
			k++
			if err != nil && !refused(err) {
				return p.settleEach(recs[i:], rs[i:])
			}
		}
		p.took()
		if rs[i].err == nil && err == nil {
			p.published.Inc()
			c.stats.published.Add(1)
		}
		if !p.settle(r, err) {
			return false
		}
	}
	return true
}

// settleEach publishes routed records one at a time, with retries, and
// settles each.
func (p *partition) settleEach(recs []*kgo.Record, rs []routed) bool {
	for i, r := range recs {
		p.took()
		err := rs[i].err
		if err == nil {
			err = p.publish(r, rs[i].topic, rs[i].f)
			if errors.Is(err, errStopped) {
				return false
			}
		}
		if !p.settle(r, err) {
			return false
		}
	}
	return true
}

// took counts a record taken in hand, in offset order.
func (p *partition) took() {
	p.consumed.Inc()
	p.c.stats.consumed.Add(1)
}

// route returns r's subsock topic and format, or why it has none.
func (p *partition) route(r *kgo.Record) (string, proto.Format, error) {
	c := p.c
	topic, f, err := c.rt.route(r)
	if err == nil && len(r.Value) > c.cfg.MaxValue {
		err = fmt.Errorf("%w: %d bytes, the most is %d", ErrTooLarge, len(r.Value), c.cfg.MaxValue)
	}
	return topic, f, err
}

// settle ends r: a failure is counted and, when configured,
// dead-lettered; then r is marked for commit. It returns false when the
// partition was stopped during the dead-letter produce (r not marked).
func (p *partition) settle(r *kgo.Record, err error) bool {
	if err != nil {
		p.fail(r, err)
		if p.c.cfg.DeadLetterTopic != "" && !p.deadLetter(r, err) {
			return false
		}
	}
	p.cl.MarkCommitRecords(r)
	p.next.Store(r.Offset + 1)
	return true
}

// errStopped: the partition was stopped while a record waited.
var errStopped = errors.New("kafka: partition stopped")

// publish publishes r's value, retrying with backoff, fetching paused,
// while the Publisher answers unavailable. It returns nil, the Publisher's
// refusal of the record, or errStopped.
func (p *partition) publish(r *kgo.Record, topic string, f proto.Format) error {
	c := p.c
	for attempt := 0; ; attempt++ {
		_, err := c.pub.Publish(c.pubCtx, topic, f, r.Value)
		if err == nil || refused(err) {
			if attempt > 0 {
				p.setBackbone(false)
				c.log.Info("kafka: the backbone took a record again; partition resumed",
					zap.String("topic", p.tp.topic), zap.Int32("partition", p.tp.part), zap.Int("attempts", attempt+1))
			}
			if err == nil {
				p.published.Inc()
				c.stats.published.Add(1)
			}
			return err
		}
		if attempt == 0 {
			p.setBackbone(true)
		}
		p.retries.Inc()
		c.stats.retries.Add(1)
		if ok, n := c.retryLog.allow(); ok {
			c.log.Warn("kafka: the backbone refused a record; partition paused, retrying",
				zap.String("topic", p.tp.topic), zap.Int32("partition", p.tp.part), zap.Int64("offset", r.Offset),
				zap.Error(err), zap.Int("suppressed", n))
		}
		if !p.sleep(backoff(c.cfg.RetryMin, c.cfg.RetryMax, attempt)) {
			return errStopped
		}
	}
}

// refused reports whether the Publisher refused the record itself (its
// topic or data), as opposed to the backbone being unavailable.
func refused(err error) bool {
	var pe *proto.Error
	return errors.As(err, &pe) || errors.Is(err, broker.ErrBadTopic)
}

// Reasons a record fails, the label of subsock_kafka_records_failed_total.
const (
	reasonNoTopic     = "no_topic"
	reasonContentType = "content_type"
	reasonTooLarge    = "too_large"
	reasonBadTopic    = "bad_topic"
	reasonBadData     = "bad_data"
)

func reasonOf(err error) string {
	var pe *proto.Error
	switch {
	case errors.Is(err, ErrNoTopic):
		return reasonNoTopic
	case errors.Is(err, ErrContentType):
		return reasonContentType
	case errors.Is(err, ErrTooLarge):
		return reasonTooLarge
	case errors.Is(err, broker.ErrBadTopic):
		return reasonBadTopic
	case errors.As(err, &pe) && pe.Code == proto.CodeInvalidTopic:
		return reasonBadTopic
	}
	return reasonBadData
}

// fail counts a record that cannot be published and logs it, at most once
// per LogInterval.
func (p *partition) fail(r *kgo.Record, err error) {
	c := p.c
	c.m.failed.WithLabelValues(p.tp.topic, reasonOf(err)).Inc()
	c.stats.failed.Add(1)
	if ok, n := c.skipLog.allow(); ok {
		what := "skipped"
		if c.cfg.DeadLetterTopic != "" {
			what = "sent to " + c.cfg.DeadLetterTopic
		}
		c.log.Warn("kafka: record "+what,
			zap.String("topic", p.tp.topic), zap.Int32("partition", p.tp.part), zap.Int64("offset", r.Offset),
			zap.Error(err), zap.Int("more_since_last_log", n))
	}
}

// Headers a dead-lettered record carries besides its own.
const (
	HeaderError           = "subsock-error"
	HeaderSourceTopic     = "subsock-source-topic"
	HeaderSourcePartition = "subsock-source-partition"
	HeaderSourceOffset    = "subsock-source-offset"
)

// deadLetter produces r to the dead-letter topic, retrying until Kafka
// takes it; false if the partition was stopped first.
func (p *partition) deadLetter(r *kgo.Record, cause error) bool {
	c := p.c
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+4)
	hs = append(hs, r.Headers...)
	hs = append(hs,
		kgo.RecordHeader{Key: HeaderError, Value: []byte(cause.Error())},
		kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		kgo.RecordHeader{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
	)
	dl := &kgo.Record{Topic: c.cfg.DeadLetterTopic, Key: r.Key, Value: r.Value, Headers: hs}
	for attempt := 0; ; attempt++ {
		err := p.cl.ProduceSync(p.ctx, dl).FirstErr()
		if err == nil {
			p.deadLettered.Inc()
			c.stats.deadLettered.Add(1)
			return true
		}
		if p.ctx.Err() != nil {
			return false
		}
		if ok, n := c.errLog.allow(); ok {
			c.log.Warn("kafka: dead-letter produce failed, retrying", zap.String("topic", c.cfg.DeadLetterTopic),
				zap.Error(err), zap.Int("suppressed", n))
		}
		if !p.sleep(backoff(c.cfg.RetryMin, c.cfg.RetryMax, attempt)) {
			return false
		}
	}
}

// sleep waits d; false if the partition was stopped first.
func (p *partition) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// backoff is min·2^attempt, capped at max.
func backoff(min, max time.Duration, attempt int) time.Duration {
	d := min
	for range attempt {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	return d
}

// lag is how many records of the partition follow the last one handled
// (or, before the first, the group's commit); ok is false when neither
// position nor end is known yet.
func (p *partition) lag(end, committed int64, haveEnd, haveCommit bool) (int64, bool) {
	if hw := p.hw.Load(); hw > end {
		end, haveEnd = hw, true
	}
	pos := p.next.Load()
	if pos < 0 {
		pos = committed
		if !haveCommit {
			return 0, false
		}
	}
	if !haveEnd {
		return 0, false
	}
	return max(end-pos, 0), true
}
