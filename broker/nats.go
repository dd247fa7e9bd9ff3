package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// natsBroker carries topics as NATS core subjects, one subject per topic.
//
// nats.go reconnects by itself and writes every subscription to the new
// connection before anything else, under its lock; its reconnect buffer is
// disabled so that a Publish while disconnected fails instead of being
// held. Health stays non-nil after a reconnection until a PING sent behind
// those SUBs has been answered (the confirm goroutine). nats.go's Publish
// only buffers, so ours also waits for the PONG of a PING sent behind its
// PUB, on a connection that did not change meanwhile: a PUB still in the
// buffer when the connection dropped is then reported, not lost silently.
// All subscriptions feed one channel, drained by one dispatcher goroutine
// that calls the Handler (nats.go would otherwise start a goroutine per
// subscription).
type natsBroker struct {
	h     Handler
	opts  Options
	log   *zap.Logger
	nc    *nats.Conn
	msgs  chan *nats.Msg
	stats counters
	// health is lost on a disconnection and on a publish the server did
	// not answer in time; confirm restores it.
	health health
	// confirmed is nats.go's reconnect count whose resubscription the
	// server has answered; Health is non-nil while it lags.
	confirmed atomic.Uint64
	wake      chan struct{} // cap 1: reconnected, or a publish got no answer

	mu     sync.Mutex
	subs   map[string]*nats.Subscription
	closed bool

	ctx    context.Context // cancelled by Close: stops the goroutines below
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ Broker = (*natsBroker)(nil)

func openNATS(ep endpoint, h Handler, opts Options) (*natsBroker, error) {
	ctx, cancel := context.WithCancel(context.Background())
	b := &natsBroker{
		h:      h,
		opts:   opts,
		log:    opts.Logger,
		msgs:   make(chan *nats.Msg, opts.QueueSize),
		subs:   make(map[string]*nats.Subscription),
		wake:   make(chan struct{}, 1),
		ctx:    ctx,
		cancel: cancel,
	}
	nc, err := nats.Connect(strings.Join(ep.addrs, ","),
		nats.Name("subsock"),
		nats.Timeout(opts.DialTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration { return backoff(opts, attempts-1) }),
		nats.DisconnectErrHandler(b.onDisconnect),
		nats.ReconnectHandler(b.onReconnect),
		nats.ErrorHandler(b.onAsyncError),
		nats.NoCallbacksAfterClientClose(),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	b.nc = nc
	b.wg.Add(2)
	go b.dispatch()
	go b.confirm()
	return b, nil
}

// dispatch hands queued messages to the Handler until Close.
func (b *natsBroker) dispatch() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case m := <-b.msgs:
			b.stats.received.Add(1)
			b.h(m.Subject, m.Data)
		}
	}
}

// confirm restores health after each wake: once connected, a PING
// answered proves the server has every SUB nats.go resent before it (and
// answers at all, after a publish that timed out). It retries with backoff
// while connected; while disconnected the next reconnection wakes it.
func (b *natsBroker) confirm() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.wake:
		}
		for attempt := 0; !b.confirmOnce(); attempt++ {
			if !sleepCtx(b.ctx, backoff(b.opts, attempt)) {
				return
			}
		}
	}
}

// confirmOnce reports false when it should be tried again.
func (b *natsBroker) confirmOnce() bool {
	st := b.health.load()
	want := b.nc.Stats().Reconnects
	if b.nc.Status() != nats.CONNECTED {
		return true
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
	defer cancel()
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return b.ctx.Err() != nil
	}
	if b.nc.Stats().Reconnects != want {
		return false // the PONG came on a newer connection
	}
	b.confirmed.Store(want)
	return b.health.recovered(st.epoch)
}

func (b *natsBroker) kick() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// The callbacks below run on nats.go's callback goroutine.

func (b *natsBroker) onDisconnect(_ *nats.Conn, err error) {
	if err == nil { // a Close of ours
		return
	}
	b.stats.errors.Add(1)
	b.health.lose(fmt.Errorf("%w: nats: %w", ErrUnavailable, err))
	b.log.Warn("broker: nats connection lost", zap.Error(err))
}

func (b *natsBroker) onReconnect(nc *nats.Conn) {
	b.stats.reconnects.Add(1)
	b.kick()
	b.log.Info("broker: nats reconnected", zap.String("url", nc.ConnectedUrlRedacted()))
}

func (b *natsBroker) onAsyncError(_ *nats.Conn, _ *nats.Subscription, err error) {
	// Chiefly slow-consumer drops: the Handler fell QueueSize behind.
	b.stats.errors.Add(1)
	b.log.Warn("broker: nats async error", zap.Error(err))
}

func (b *natsBroker) unavailable(err error) error {
	b.stats.errors.Add(1)
	if errors.Is(err, nats.ErrConnectionClosed) && b.isClosed() {
		return ErrClosed
	}
	if err == nil {
		err = errors.New(b.nc.Status().String())
	}
	return fmt.Errorf("%w: nats: %w", ErrUnavailable, err)
}

func (b *natsBroker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Publish writes the message to nats.go's buffer, then waits for the PONG
// to a PING written behind it: the server has the message once that comes
// on the connection it was written to (one round trip per publish, as
// with Redis).
func (b *natsBroker) Publish(ctx context.Context, topic string, payload []byte) error {
	if !validSubject(topic) {
		b.stats.errors.Add(1)
		return fmt.Errorf("%w: %q", ErrBadTopic, topic)
	}
	conn, err := b.state()
	if err != nil {
		b.stats.errors.Add(1)
		return err
	}
	if err := ctx.Err(); err != nil {
		return b.unavailable(err)
	}
	if err := b.nc.Publish(topic, payload); err != nil {
		return b.unavailable(err)
	}
	ctx, cancel := callContext(ctx, b.opts.Timeout)
	defer cancel()
	err = b.nc.FlushWithContext(ctx)
	if err == nil && b.nc.Stats().Reconnects != conn {
		// The PONG came on a newer connection: the PUB was buffered for
		// the old one and may never have left.
		err = errLostWhilePublishing
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			// A server that does not answer: fail the next publishes at
			// once, and /healthz with them, until it answers a PING.
			b.health.lose(fmt.Errorf("%w: nats publish: %w", ErrUnavailable, err))
			b.kick()
		}
		return b.unavailable(err)
	}
	b.stats.published.Add(1)
	return nil
}

// PublishBatch writes every message to nats.go's buffer, then waits for
// one PONG for them all: the server has every message written before it.
// A message with a bad subject fails alone; a failed flush fails the rest.
func (b *natsBroker) PublishBatch(ctx context.Context, msgs []Message, errs []error) {
	conn, err := b.state()
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: nats: %w", ErrUnavailable, ctx.Err())
	}
	sent := 0
	for i, m := range msgs {
		switch {
		case err != nil:
			errs[i] = err
			b.stats.errors.Add(1)
		case !validSubject(m.Topic):
			errs[i] = fmt.Errorf("%w: %q", ErrBadTopic, m.Topic)
			b.stats.errors.Add(1)
		default:
			if e := b.nc.Publish(m.Topic, m.Payload); e != nil {
				errs[i] = b.unavailable(e)
			} else {
				errs[i] = nil
				sent++
			}
		}
	}
	if sent == 0 {
		return
	}
	ctx, cancel := callContext(ctx, b.opts.Timeout)
	defer cancel()
	err = b.nc.FlushWithContext(ctx)
	if err == nil && b.nc.Stats().Reconnects != conn {
		err = errLostWhilePublishing
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		b.health.lose(fmt.Errorf("%w: nats publish: %w", ErrUnavailable, err))
		b.kick()
	}
	if err != nil {
		err = b.unavailable(err)
	} else {
		b.stats.published.Add(uint64(sent))
	}
	for i := range msgs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
}

// Subscribe queues one SUB per new topic and then waits for one PING/PONG,
// so the server has them all when it returns. While disconnected it fails
// at once with ErrUnavailable; nats.go sends the SUBs on reconnection.
func (b *natsBroker) Subscribe(ctx context.Context, topics ...string) error {
	var errs []error
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	for _, t := range topics {
		if _, ok := b.subs[t]; ok {
			continue
		}
		if !validSubject(t) {
			b.stats.errors.Add(1)
			errs = append(errs, fmt.Errorf("%w: %q", ErrBadTopic, t))
			continue
		}
		s, err := b.nc.ChanSubscribe(t, b.msgs)
		if err != nil {
			errs = append(errs, b.unavailable(err))
			continue
		}
		b.subs[t] = s
	}
	b.mu.Unlock()
	if err := b.flush(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Unsubscribe queues one UNSUB per held topic and waits for one PING/PONG.
func (b *natsBroker) Unsubscribe(ctx context.Context, topics ...string) error {
	var errs []error
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	for _, t := range topics {
		s, ok := b.subs[t]
		if !ok {
			continue
		}
		delete(b.subs, t)
		// While reconnecting nats.go only forgets the subscription, which
		// is what the server will then not be told about.
		if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, b.unavailable(err))
		}
	}
	b.mu.Unlock()
	if err := b.flush(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (b *natsBroker) flush(ctx context.Context) error {
	if !b.nc.IsConnected() {
		// FlushWithContext would wait out the deadline while reconnecting.
		return b.unavailable(b.nc.LastError())
	}
	ctx, cancel := callContext(ctx, b.opts.Timeout)
	defer cancel()
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return b.unavailable(err)
	}
	return nil
}

// Health is nil while connected, with the resubscription after the last
// reconnection confirmed and no publish left unanswered since.
func (b *natsBroker) Health() error {
	_, err := b.state()
	return err
}

// state is Health with the reconnect count it saw, which names the
// connection in use. The count is read after the status: a reconnection
// completing in between then shows as not yet confirmed.
func (b *natsBroker) state() (uint64, error) {
	if b.isClosed() {
		return 0, ErrClosed
	}
	if st := b.nc.Status(); st != nats.CONNECTED {
		if err := b.nc.LastError(); err != nil {
			return 0, fmt.Errorf("%w: nats %s: %w", ErrUnavailable, st, err)
		}
		return 0, fmt.Errorf("%w: nats %s", ErrUnavailable, st)
	}
	conn := b.nc.Stats().Reconnects
	if conn != b.confirmed.Load() {
		return conn, fmt.Errorf("%w: nats: resubscribing after a reconnection", ErrUnavailable)
	}
	return conn, b.health.load().err
}

// Stats returns the counters.
func (b *natsBroker) Stats() Stats { return b.stats.snapshot() }

// Close closes the connection (which stops nats.go's goroutines), stops
// the dispatcher and the confirm goroutine, and waits for them. Messages
// still queued are dropped.
func (b *natsBroker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.nc.Close()
	b.cancel()
	b.wg.Wait()
	return nil
}

// validSubject reports whether topic is a literal NATS subject: not empty,
// no whitespace, no empty token, and no token that is a wildcard.
func validSubject(topic string) bool {
	if topic == "" {
		return false
	}
	start := 0
	for i := 0; i <= len(topic); i++ {
		if i < len(topic) {
			switch topic[i] {
			case ' ', '\t', '\r', '\n', '\f', '\v':
				return false
			case '.':
			default:
				continue
			}
		}
		tok := topic[start:i]
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
		start = i + 1
	}
	return true
}
