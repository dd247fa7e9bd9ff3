package broker

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Handler receives every message for a topic the node holds interest in.
// It is called from the broker's own goroutine(s) and must not block for
// long. payload is read-only and must not be retained after return.
type Handler func(topic string, payload []byte)

// Broker is the seam between a node and the backbone. Payloads are opaque
// bytes. All methods are safe for concurrent use.
type Broker interface {
	// Publish sends payload to every node subscribed to topic, this one
	// included. It returns nil only once the backbone has accepted the
	// message while every upstream subscription of this node was in place,
	// so that a publish reported as done reaches this node's subscribers.
	// It fails with ErrUnavailable (wrapping the cause) when the backbone
	// cannot be reached, when Health is non-nil (reconnecting or
	// resubscribing), when a connection was lost while it was under way, and
	// when ctx ends first; a message it failed for may still be delivered.
	// It returns within ctx's deadline (Options.Timeout when ctx has none).
	// payload is not retained.
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe adds interest in topics in one round trip per backbone
	// node. Interest is recorded even when it fails with ErrUnavailable:
	// the broker subscribes upstream once it is connected again.
	Subscribe(ctx context.Context, topics ...string) error
	// Unsubscribe drops interest in topics; unknown topics are ignored.
	Unsubscribe(ctx context.Context, topics ...string) error
	// Health is nil when connected and subscribed; otherwise it says why
	// (wrapping ErrUnavailable, or ErrClosed). It turns non-nil as soon as a
	// connection is lost or the backbone stops answering, and back to nil
	// only once every topic held has been confirmed subscribed again: while
	// it is non-nil, Publish fails.
	Health() error
	// Stats returns counters since Open.
	Stats() Stats
	// Close stops every goroutine the broker started and waits for them.
	Close() error
}

// Broadcaster is implemented by a broker that delivers every topic to
// every node whatever interest it holds, so a node needs none: a Router in
// front of it books nothing and makes no calls (see NewMemory).
type Broadcaster interface {
	Broadcasts() bool
}

// BatchPublisher is implemented by a broker that can send several
// publishes in one exchange with the backbone (one pipelined write, one
// wait). A node's publisher uses it for whatever its worker found queued,
// so publish throughput is not one round trip per worker.
type BatchPublisher interface {
	// PublishBatch publishes msgs in order, each under Publish's rules;
	// errs (as long as msgs) receives each one's result. Payloads are not
	// retained.
	PublishBatch(ctx context.Context, msgs []Message, errs []error)
}

// Message is one publish of a batch.
type Message struct {
	Topic   string
	Payload []byte
}

// Stats are cumulative counters.
type Stats struct {
	Errors     uint64 // failed calls, lost connections and failed reconnect attempts
	Reconnects uint64 // recoveries after a lost backbone connection
	Published  uint64 // messages accepted by the backbone
	Received   uint64 // messages handed to the Handler
}

// Options tune a broker; the zero value is ready to use.
type Options struct {
	// Logger receives reconnect events, the only thing a broker logs
	// (everything else is returned). Nil means zap.NewNop().
	Logger *zap.Logger
	// DialTimeout bounds each connection attempt. Default: 5s.
	DialTimeout time.Duration
	// Timeout bounds a round trip when the caller's context has no
	// deadline, and each resubscription after a reconnect. Default: 5s.
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the wait between reconnect attempts,
	// which doubles from min to max. Defaults: 50ms and 5s.
	BackoffMin, BackoffMax time.Duration
	// QueueSize is how many messages NATS may hold for the Handler before
	// the client drops them as a slow consumer. Default: 65536.
	QueueSize int
	// HistoryMemory caps the bytes the streams of the memory broker hold
	// (see MemoryBus.HistoryStats for what counts); past it the least
	// recently published streams are dropped whole. Redis keeps its own
	// streams, under its maxmemory. Default: 256 MiB.
	HistoryMemory int64
}

// WithDefaults returns o with each zero field set to the default documented
// on it: the options Open uses. Callers that show defaults (the command's
// flags) take them from here, so each is written once.
func (o Options) WithDefaults() Options { return o.withDefaults() }

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 50 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Second
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 65536
	}
	if o.HistoryMemory <= 0 {
		o.HistoryMemory = defaultHistoryMemory
	}
	return o
}

// Open connects to the backbone named by url:
//
//	"memory" or ""                       an in-process bus of its own (NewMemory)
//	"redis://[user:pass@]host:port[/db]" Redis Pub/Sub
//	"redis-cluster://h1:p1,h2:p2,..."    Redis Cluster sharded Pub/Sub
//	"nats://host:port[,nats://...]"      NATS core
//
// It fails with ErrBadURL for anything else, and with ErrUnavailable when
// the backbone cannot be reached at all at start.
func Open(url string, h Handler, opts Options) (Broker, error) {
	if h == nil {
		return nil, ErrNilHandler
	}
	ep, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	switch ep.kind {
	case kindMemory:
		m := NewMemory(h)
		m.bus.SetHistoryMemory(opts.HistoryMemory)
		return m, nil
	case kindRedis, kindRedisCluster:
		return openRedis(ep, h, opts)
	default:
		return openNATS(ep, h, opts)
	}
}

// counters back Stats.
type counters struct {
	errors, reconnects, published, received atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Errors:     c.errors.Load(),
		Reconnects: c.reconnects.Load(),
		Published:  c.published.Load(),
		Received:   c.received.Load(),
	}
}

// health is what Health reports: nil, or why the broker is not healthy.
// Every loss bumps an epoch, so that a recovery which raced with a newer
// loss cannot report health, and a Publish that overlapped a loss can tell
// that its message may have reached the backbone while this node was not
// subscribed (see redisBroker.Publish). It is one atomic pointer, because
// Publish reads it twice per message.
type health struct {
	p atomic.Pointer[healthState]
}

type healthState struct {
	err   error
	epoch uint64
}

// load returns the current state; the zero value (healthy, epoch 0) until
// the first loss.
func (h *health) load() healthState {
	if s := h.p.Load(); s != nil {
		return *s
	}
	return healthState{}
}

// lose makes Health report err (which wraps ErrUnavailable) until a
// recovered call that began after it.
func (h *health) lose(err error) {
	for {
		old := h.p.Load()
		next := &healthState{err: err, epoch: 1}
		if old != nil {
			next.epoch = old.epoch + 1
		}
		if h.p.CompareAndSwap(old, next) {
			return
		}
	}
}

// recovered clears the error if nothing was lost since the state of the
// given epoch was loaded, and reports whether the broker is now healthy.
func (h *health) recovered(epoch uint64) bool {
	old := h.p.Load()
	if old == nil {
		return epoch == 0
	}
	if old.epoch != epoch {
		return false
	}
	return old.err == nil || h.p.CompareAndSwap(old, &healthState{epoch: epoch})
}

// callContext bounds ctx by timeout when it has no deadline of its own.
func callContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timeout)
}
