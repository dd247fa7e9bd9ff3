package hub

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/subsock/subsock/poller"
	"github.com/subsock/subsock/registry"
)

// Sink takes a member's deliveries: a poller.Conn in a node, anything that
// records them in a test. Both calls queue b (shared, read-only) and must
// not block; EnqueuePrompt asks for it to jump a writer's pass (see
// poller.Conn.EnqueuePrompt). poller.ErrOverflow means the member was cut
// as a slow consumer.
type Sink interface {
	Enqueue(b []byte) error
	EnqueuePrompt(b []byte) error
}

// Member is what fan-out reads of one subscriber; a node's session embeds
// it. Out, CID and Wire are set before the member joins a group and not
// changed while it is in one.
type Member struct {
	Out  Sink
	CID  uint64 // client number within the node (echo:false leaves it out); 0: none
	Wire uint8  // an index into Codecs, or WireSSE
	// Live is false for an SSE stream until its head is out: a delivery
	// before that would come ahead of the 200.
	Live atomic.Bool
}

// Subscriber is the registry's element type: a pointer that yields its
// Member.
type Subscriber interface {
	comparable
	Member() *Member
}

// Config tunes a Hub; the zero value is ready to use.
type Config struct {
	// Node is this node's id: a relay marked echo:false from one of its
	// own connections skips that connection.
	Node string
	// SmallGroup is the largest group whose messages are queued with
	// EnqueuePrompt; 0 or negative: none.
	SmallGroup int
	// Log gets a debug line per unconvertible message, an info line per
	// pass that cut slow consumers. Default: none.
	Log *zap.Logger
	// Marked takes the payloads that begin with a mark byte (MarkMin and
	// above: a relay's format byte never is one) instead of Deliver's own
	// path: a node's history publications and presence events. Default:
	// they are dropped.
	Marked func(topic string, payload []byte)
}

// MarkMin is the smallest mark byte (see Config.Marked).
const MarkMin = 0x80

// Hub is a node's fan-out core: the registry of groups (topic -> local
// subscribers) and the encode-once delivery of a message to a group. It
// touches no socket itself; members' Sinks do.
type Hub[S Subscriber] struct {
	Reg *registry.Registry[S]
	cfg Config

	// MsgsOut counts deliveries queued, ConvertErrors messages that a
	// wire could not carry (MessagePack bytes that are not JSON for a JSON
	// subscriber), Fanout times each pass.
	MsgsOut       atomic.Uint64
	ConvertErrors atomic.Uint64
	Fanout        prometheus.Histogram
}

// New returns a Hub over reg.
func New[S Subscriber](reg *registry.Registry[S], cfg Config) *Hub[S] {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &Hub[S]{Reg: reg, cfg: cfg, Fanout: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "subsock_fanout_duration_seconds",
		Help:    "Time to queue one message on every local subscriber.",
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12),
	})}
}

// Prompt reports whether a group of n members is small enough for its
// messages to jump the writers' passes over larger groups
// (Config.SmallGroup). Give it the size registry.RangeSized reports, so
// fan-out looks the group up once.
func (h *Hub[S]) Prompt(n int) bool {
	return h.cfg.SmallGroup > 0 && n <= h.cfg.SmallGroup
}

// Enqueue queues a delivery's shared bytes on m, promptly for a small
// group (see Prompt).
func Enqueue(m *Member, b []byte, prompt bool) error {
	if prompt {
		return m.Out.EnqueuePrompt(b)
	}
	return m.Out.Enqueue(b)
}

// Deliver is the fan-out stage's work for one message (see NewStage). A
// relay payload (see AppendRelay) it fans out to topic's group: it
// builds the message once per wire in use and queues the same bytes on
// every member. It allocates nothing per member. It runs on a fan-out
// stage worker, never on a broker's goroutine.
func (h *Hub[S]) Deliver(topic string, payload []byte) {
	if len(payload) == 0 {
		return
	}
	if payload[0] >= MarkMin {
		if h.cfg.Marked != nil {
			h.cfg.Marked(topic, payload)
		}
		return
	}
	start := time.Now()
	f, data, skip, ok := SplitRelay(payload, h.cfg.Node)
	if !ok {
		return
	}
	// Each wire's frame is built when its first member is reached, so a
	// topic whose subscribers all use JSON never pays for MessagePack.
	var frames [NWires][]byte
	var failed [NWires]bool
	var sent, slow uint64
	var prompt bool
	h.Reg.RangeSized(topic, func(n int) { prompt = h.Prompt(n) }, func(s S) bool {
		m := s.Member()
		if skip != 0 && m.CID == skip {
			return true // its publisher asked not to get it back
		}
		if m.Wire == WireSSE && !m.Live.Load() {
			return true // a stream whose 200 is not out yet: not subscribed yet
		}
		fr := frames[m.Wire]
		if fr == nil {
			if failed[m.Wire] {
				return true
			}
			b, err := BuildFor(m.Wire, topic, f, data)
			if err != nil {
				failed[m.Wire] = true
				h.ConvertErrors.Add(1)
				if ce := h.cfg.Log.Check(zap.DebugLevel, "message not representable"); ce != nil {
					ce.Write(zap.String("topic", topic), zap.String("wire", WireName(m.Wire)), zap.Error(err))
				}
				return true
			}
			frames[m.Wire], fr = b, b
		}
		if Enqueue(m, fr, prompt) == poller.ErrOverflow {
			slow++
		} else {
			sent++
		}
		return true
	})
	h.MsgsOut.Add(sent)
	h.Fanout.Observe(time.Since(start).Seconds())
	if slow > 0 {
		if ce := h.cfg.Log.Check(zap.InfoLevel, "closed slow consumers"); ce != nil {
			ce.Write(zap.String("topic", topic), zap.Uint64("count", slow))
		}
	}
}
