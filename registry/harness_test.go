package registry

import (
	"strconv"
	"testing"
)

// conn stands in for the gateway's connection: subscribers are pointers.
type conn struct{ id uint64 }

// harness drives one instantiation of Registry through int subscriber ids,
// so that a single test body runs against every subscriber type.
type harness interface {
	Subscribe(topic string, id int) (added, first bool)
	Unsubscribe(topic string, id int) (removed, last bool)
	Join(topic string, id int, set *Set) (added, first bool)
	Leave(topic string, id int, set *Set) (removed, last bool)
	RemoveAll(id int, set *Set, onLast func(string))
	Range(topic string, fn func(id int) bool) int
	Count(topic string) int
	Has(topic string, id int) bool
	Stats() Stats
	Topics(fn func(string) bool)
}

type adapter[S comparable] struct {
	r  *Registry[S]
	to func(int) S
	id func(S) int
}

var _ harness = (*adapter[*conn])(nil)

func (a *adapter[S]) Subscribe(topic string, id int) (bool, bool) {
	return a.r.Subscribe(topic, a.to(id))
}
func (a *adapter[S]) Unsubscribe(topic string, id int) (bool, bool) {
	return a.r.Unsubscribe(topic, a.to(id))
}
func (a *adapter[S]) Join(topic string, id int, set *Set) (bool, bool) {
	return a.r.Join(topic, a.to(id), set)
}
func (a *adapter[S]) Leave(topic string, id int, set *Set) (bool, bool) {
	return a.r.Leave(topic, a.to(id), set)
}
func (a *adapter[S]) RemoveAll(id int, set *Set, onLast func(string)) {
	a.r.RemoveAll(a.to(id), set, onLast)
}
func (a *adapter[S]) Range(topic string, fn func(int) bool) int {
	return a.r.Range(topic, func(s S) bool { return fn(a.id(s)) })
}
func (a *adapter[S]) Count(topic string) int        { return a.r.Count(topic) }
func (a *adapter[S]) Has(topic string, id int) bool { return a.r.Has(topic, a.to(id)) }
func (a *adapter[S]) Stats() Stats                  { return a.r.Stats() }
func (a *adapter[S]) Topics(fn func(string) bool)   { a.r.Topics(fn) }

// conns interns *conn values so that the same id always maps to the same
// pointer; the table is built before any goroutine starts, then only read.
type conns []*conn

func newConns(n int) conns {
	cs := make(conns, n)
	for i := range cs {
		cs[i] = &conn{id: uint64(i)}
	}
	return cs
}

// maxID bounds the subscriber ids the tests use.
const maxID = 20_000

// implementations lists every subscriber type and shard layout the shared
// test bodies run against. One shard forces every topic into one stripe.
func implementations() []struct {
	name string
	new  func() harness
} {
	cs := newConns(maxID)
	return []struct {
		name string
		new  func() harness
	}{
		{"pointer/64shards", func() harness {
			return &adapter[*conn]{r: New[*conn](Config{}), to: func(i int) *conn { return cs[i] }, id: func(c *conn) int { return int(c.id) }}
		}},
		{"uint64/1shard", func() harness {
			return &adapter[uint64]{r: New[uint64](Config{Shards: 1}), to: func(i int) uint64 { return uint64(i) }, id: func(v uint64) int { return int(v) }}
		}},
		{"string/3shards", func() harness {
			return &adapter[string]{r: New[string](Config{Shards: 3}), to: strconv.Itoa, id: func(s string) int {
				n, err := strconv.Atoi(s)
				if err != nil {
					panic(err)
				}
				return n
			}}
		}},
	}
}

// forEachImpl runs body once per implementation as a subtest.
func forEachImpl(t *testing.T, body func(t *testing.T, h harness)) {
	t.Helper()
	for _, impl := range implementations() {
		t.Run(impl.name, func(t *testing.T) { body(t, impl.new()) })
	}
}

// wantStats fails the test when h's counters differ from want.
func wantStats(t *testing.T, h harness, want Stats) {
	t.Helper()
	if got := h.Stats(); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
}

// topicsOf collects every topic h reports.
func topicsOf(t *testing.T, h harness) map[string]int {
	t.Helper()
	seen := map[string]int{}
	h.Topics(func(topic string) bool {
		seen[topic]++
		return true
	})
	for topic, n := range seen {
		if n != 1 {
			t.Fatalf("Topics reported %q %d times", topic, n)
		}
	}
	return seen
}

// members collects the ids Range visits for topic, failing on duplicates.
func members(t *testing.T, h harness, topic string) map[int]bool {
	t.Helper()
	seen := map[int]bool{}
	n := h.Range(topic, func(id int) bool {
		if seen[id] {
			t.Fatalf("Range(%q) visited %d twice", topic, id)
		}
		seen[id] = true
		return true
	})
	if n != len(seen) {
		t.Fatalf("Range(%q) returned %d, visited %d", topic, n, len(seen))
	}
	return seen
}
