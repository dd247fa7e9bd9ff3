package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// natsBroker carries topics as NATS core subjects, one subject per topic.
//
// nats.go reconnects by itself and replays every subscription before it
// reports the reconnection; its reconnect buffer is disabled so that a
// Publish while disconnected fails instead of being held. All
// subscriptions feed one channel, drained by one dispatcher goroutine that
// calls the Handler (nats.go would otherwise start a goroutine per
// subscription).
type natsBroker struct {
	h     Handler
	opts  Options
	log   *zap.Logger
	nc    *nats.Conn
	msgs  chan *nats.Msg
	stats counters

	mu     sync.Mutex
	subs   map[string]*nats.Subscription
	closed bool

	done chan struct{}
	wg   sync.WaitGroup
}

var _ Broker = (*natsBroker)(nil)

func openNATS(ep endpoint, h Handler, opts Options) (*natsBroker, error) {
	b := &natsBroker{
		h:    h,
		opts: opts,
		log:  opts.Logger,
		msgs: make(chan *nats.Msg, opts.QueueSize),
		subs: make(map[string]*nats.Subscription),
		done: make(chan struct{}),
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
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	b.nc = nc
	b.wg.Add(1)
	go b.dispatch()
	return b, nil
}

// dispatch hands queued messages to the Handler until Close.
func (b *natsBroker) dispatch() {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case m := <-b.msgs:
			b.stats.received.Add(1)
			b.h(m.Subject, m.Data)
		}
	}
}

// The callbacks below run on nats.go's callback goroutine.

func (b *natsBroker) onDisconnect(_ *nats.Conn, err error) {
	if err == nil { // a Close of ours
		return
	}
	b.stats.errors.Add(1)
	b.log.Warn("broker: nats connection lost", zap.Error(err))
}

func (b *natsBroker) onReconnect(nc *nats.Conn) {
	b.stats.reconnects.Add(1)
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

// Publish writes the message to nats.go's buffer, flushed by its own
// goroutine: a server that dies after that loses it (at-most-once).
func (b *natsBroker) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validSubject(topic) {
		b.stats.errors.Add(1)
		return fmt.Errorf("%w: %q", ErrBadTopic, topic)
	}
	if err := b.nc.Publish(topic, payload); err != nil {
		return b.unavailable(err)
	}
	b.stats.published.Add(1)
	return nil
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

// Health is nil while connected; nats.go resubscribes before it reports
// CONNECTED again.
func (b *natsBroker) Health() error {
	if b.isClosed() {
		return ErrClosed
	}
	if st := b.nc.Status(); st != nats.CONNECTED {
		if err := b.nc.LastError(); err != nil {
			return fmt.Errorf("%w: nats %s: %w", ErrUnavailable, st, err)
		}
		return fmt.Errorf("%w: nats %s", ErrUnavailable, st)
	}
	return nil
}

// Stats returns the counters.
func (b *natsBroker) Stats() Stats { return b.stats.snapshot() }

// Close closes the connection (which stops nats.go's goroutines) and the
// dispatcher, and waits for it. Messages still queued are dropped.
func (b *natsBroker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.nc.Close()
	close(b.done)
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
