package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/subsock/subsock/internal/shrink"
)

// MemoryBus is an in-process backbone. Every Memory attached to one bus
// sees the others' publishes, as nodes sharing a Redis would, which lets a
// single process run several nodes (tests, demos). Stop and Start simulate
// an outage of the backbone.
type MemoryBus struct {
	mu     sync.RWMutex
	topics map[string][]*Memory // copy-on-write: Publish reads them without holding mu
	nodes  map[*Memory]struct{}
	down   error // non-nil while stopped
	// single is the only node of a bus made by NewMemory: it gets every
	// publish whatever it subscribed, so its node needs no interest.
	single *Memory

	// topicsHigh rebuilds topics once a storm of topics has left, since a
	// Go map keeps the memory of its largest size. Guarded by mu.
	topicsHigh shrink.Watermark

	// hist holds the streams of history topics (memory_stream.go), with
	// locks of its own.
	hist memHistory
}

// NewMemoryBus returns an empty, running bus whose streams may hold the
// default 256 MiB (see SetHistoryMemory).
func NewMemoryBus() *MemoryBus {
	bus := &MemoryBus{topics: make(map[string][]*Memory), nodes: make(map[*Memory]struct{})}
	bus.hist.init()
	return bus
}

// Attach connects a new broker, delivering to h, to the bus.
func (bus *MemoryBus) Attach(h Handler) *Memory {
	m := &Memory{bus: bus, h: h, topics: make(map[string]struct{})}
	bus.mu.Lock()
	bus.nodes[m] = struct{}{}
	bus.mu.Unlock()
	return m
}

// errMemoryStopped is the cause reported while a bus is stopped.
var errMemoryStopped = errors.New("memory bus stopped")

// Stop simulates a backbone outage: until Start, publishes and
// subscriptions fail with ErrUnavailable and Health reports it. Interest
// is kept, as a real broker keeps it to resubscribe.
func (bus *MemoryBus) Stop() {
	bus.mu.Lock()
	bus.down = errMemoryStopped
	bus.mu.Unlock()
}

// Start ends an outage begun by Stop; every attached broker counts a
// reconnect.
func (bus *MemoryBus) Start() {
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if bus.down == nil {
		return
	}
	bus.down = nil
	for m := range bus.nodes {
		m.stats.reconnects.Add(1)
	}
}

// Subscribers reports how many attached brokers hold interest in topic:
// the memory bus's PUBSUB NUMSUB.
func (bus *MemoryBus) Subscribers(topic string) int {
	bus.mu.RLock()
	defer bus.mu.RUnlock()
	return len(bus.topics[topic])
}

// Topics reports how many topics any attached broker holds interest in:
// the memory bus's PUBSUB CHANNELS, counted.
func (bus *MemoryBus) Topics() int {
	bus.mu.RLock()
	defer bus.mu.RUnlock()
	return len(bus.topics)
}

// Memory is a broker on a MemoryBus. Publish delivers synchronously: every
// interested broker's Handler has run when it returns, on the publisher's
// goroutine.
type Memory struct {
	bus    *MemoryBus
	h      Handler
	topics map[string]struct{} // guarded by bus.mu
	closed bool                // guarded by bus.mu
	stats  counters

	topicsHigh shrink.Watermark // rebuilds topics, as the bus's; guarded by bus.mu
}

var _ Broker = (*Memory)(nil)

// NewMemory returns a broker on a bus of its own: a single node that
// loops every publish back to h, subscribed or not (it Broadcasts), so a
// node in front of it keeps no per-topic interest at all. Subscribe still
// records interest, for Subscribers and Topics.
func NewMemory(h Handler) *Memory {
	bus := NewMemoryBus()
	m := bus.Attach(h)
	bus.single = m
	return m
}

var _ Broadcaster = (*Memory)(nil)

// Broadcasts reports whether m is the only node of its bus (NewMemory):
// then every publish reaches it.
func (m *Memory) Broadcasts() bool { return m.bus.single == m }

// Bus returns the bus m is attached to, to attach more nodes to it.
func (m *Memory) Bus() *MemoryBus { return m.bus }

func (m *Memory) unavailable(err error) error {
	m.stats.errors.Add(1)
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Publish calls the Handler of every broker on the bus subscribed to topic.
// A Publish concurrent with a subscriber's Close may still reach it.
func (m *Memory) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.bus.mu.RLock()
	closed, down, subs := m.closed, m.bus.down, m.bus.topics[topic]
	if single := m.bus.single; single != nil && !single.closed {
		subs = []*Memory{single} // no allocation: it does not escape
	}
	m.bus.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if down != nil {
		return m.unavailable(down)
	}
	m.stats.published.Add(1)
	for _, s := range subs {
		s.stats.received.Add(1)
		s.h(topic, payload)
	}
	return nil
}

// Subscribe records interest; while the bus is stopped it still does, and
// reports ErrUnavailable.
func (m *Memory) Subscribe(ctx context.Context, topics ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	bus := m.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	for _, t := range topics {
		if _, ok := m.topics[t]; ok {
			continue
		}
		m.topics[t] = struct{}{}
		m.topicsHigh.Grew(len(m.topics))
		old := bus.topics[t]
		subs := make([]*Memory, len(old), len(old)+1)
		copy(subs, old)
		bus.topics[t] = append(subs, m)
		bus.topicsHigh.Grew(len(bus.topics))
	}
	if bus.down != nil {
		return m.unavailable(bus.down)
	}
	return nil
}

// Unsubscribe drops interest.
func (m *Memory) Unsubscribe(ctx context.Context, topics ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	bus := m.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.dropLocked(topics)
	if bus.down != nil {
		return m.unavailable(bus.down)
	}
	return nil
}

func (m *Memory) dropLocked(topics []string) {
	bus := m.bus
	for _, t := range topics {
		if _, ok := m.topics[t]; !ok {
			continue
		}
		delete(m.topics, t)
		old := bus.topics[t]
		if len(old) == 1 {
			delete(bus.topics, t)
			continue
		}
		// A new slice, since a concurrent Publish may be ranging over old.
		bus.topics[t] = slices.DeleteFunc(slices.Clone(old), func(s *Memory) bool { return s == m })
	}
	// Checked once per call rather than per topic: a batch can only bring
	// a rebuild forward, never skip one.
	if m.topicsHigh.Shrunk(len(m.topics)) {
		m.topics = shrink.Map(m.topics)
	}
	if bus.topicsHigh.Shrunk(len(bus.topics)) {
		bus.topics = shrink.Map(bus.topics)
	}
}

// Health is nil unless the bus is stopped or m is closed.
func (m *Memory) Health() error {
	m.bus.mu.RLock()
	defer m.bus.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	if m.bus.down != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, m.bus.down)
	}
	return nil
}

// Stats returns m's counters.
func (m *Memory) Stats() Stats { return m.stats.snapshot() }

// Close detaches m from the bus. Memory starts no goroutines.
func (m *Memory) Close() error {
	bus := m.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.dropLocked(slices.Collect(maps.Keys(m.topics)))
	delete(bus.nodes, m)
	return nil
}
