package registry

import (
	"hash/maphash"
	"sync"

	"github.com/subsock/subsock/internal/shrink"
)

// Stats counts what a Registry holds.
type Stats struct {
	Topics        int // topics with at least one subscriber
	Subscriptions int // (topic, subscriber) pairs
}

// Registry maps topics to groups of subscribers of type S (typically a
// connection pointer). It is safe for concurrent use.
type Registry[S comparable] struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard[S]
}

// shard is one lock stripe. It is padded to two cache lines so that
// neighbouring stripes locked from different cores do not share a line
// (adjacent-line prefetch pulls lines in pairs).
type shard[S comparable] struct {
	mu     sync.RWMutex
	groups map[string]*group[S]
	subs   int // subscriptions in groups, kept so Stats need not walk them
	// high rebuilds groups once a storm of topics has left, since a Go map
	// keeps the memory of its largest size.
	high shrink.Watermark
	_    [128 - 48]byte
}

// New returns an empty Registry configured by cfg.
func New[S comparable](cfg Config) *Registry[S] {
	n := cfg.shardCount()
	r := &Registry[S]{
		seed:   maphash.MakeSeed(),
		mask:   uint64(n - 1),
		shards: make([]shard[S], n),
	}
	for i := range r.shards {
		r.shards[i].groups = make(map[string]*group[S])
	}
	return r
}

func (r *Registry[S]) shard(topic string) *shard[S] {
	return &r.shards[maphash.String(r.seed, topic)&r.mask]
}

// Subscribe adds s to topic's group. added is false when s was already
// there; first is true when the group was created by this call (the node
// then needs upstream interest in the topic). The registry keeps topic
// itself, not a copy.
func (r *Registry[S]) Subscribe(topic string, s S) (added, first bool) {
	sh := r.shard(topic)
	sh.mu.Lock()
	added, first, _ = r.subscribeLocked(sh, topic, s)
	sh.mu.Unlock()
	return added, first
}

// subscribeLocked adds s under sh's write lock and also returns the topic
// string the group is keyed by.
func (r *Registry[S]) subscribeLocked(sh *shard[S], topic string, s S) (added, first bool, key string) {
	g := sh.groups[topic]
	if g == nil {
		g = &group[S]{topic: topic, subs: dense[S]{items: []S{s}}}
		sh.groups[topic] = g
		sh.high.Grew(len(sh.groups))
		sh.subs++
		return true, true, topic
	}
	if !g.subs.add(r.seed, s, groupThresholds) {
		return false, false, g.topic
	}
	sh.subs++
	return true, false, g.topic
}

// Unsubscribe removes s from topic's group; last is true when the group
// became empty and was deleted (the node may drop upstream interest).
func (r *Registry[S]) Unsubscribe(topic string, s S) (removed, last bool) {
	sh := r.shard(topic)
	sh.mu.Lock()
	removed, last = r.unsubscribeLocked(sh, topic, s)
	sh.mu.Unlock()
	return removed, last
}

func (r *Registry[S]) unsubscribeLocked(sh *shard[S], topic string, s S) (removed, last bool) {
	g := sh.groups[topic]
	if g == nil || !g.subs.remove(r.seed, s, groupThresholds) {
		return false, false
	}
	sh.subs--
	if len(g.subs.items) > 0 {
		return true, false
	}
	delete(sh.groups, topic)
	if sh.high.Shrunk(len(sh.groups)) {
		sh.groups = shrink.Map(sh.groups)
	}
	return true, true
}

// Join subscribes s to topic like Subscribe and records the topic in set.
// set receives the registry's own copy of the topic string, so a topic's
// bytes are held once however many connections subscribe to it, even when
// each caller parsed its topic into a fresh string. set must belong to s.
func (r *Registry[S]) Join(topic string, s S, set *Set) (added, first bool) {
	sh := r.shard(topic)
	sh.mu.Lock()
	added, first, key := r.subscribeLocked(sh, topic, s)
	sh.mu.Unlock()
	set.Add(key)
	return added, first
}

// Leave unsubscribes s from topic like Unsubscribe and removes the topic
// from set.
func (r *Registry[S]) Leave(topic string, s S, set *Set) (removed, last bool) {
	set.Remove(topic)
	return r.Unsubscribe(topic, s)
}

// RemoveAll unsubscribes s from every topic in set, calls onLast(topic) for
// each group that became empty, and clears set. onLast runs on the calling
// goroutine with no lock held and may be nil.
func (r *Registry[S]) RemoveAll(s S, set *Set, onLast func(topic string)) {
	set.Range(func(topic string) bool {
		if _, last := r.Unsubscribe(topic, s); last && onLast != nil {
			onLast(topic)
		}
		return true
	})
	set.Clear()
}

// Range calls fn for each subscriber of topic while holding the shard's
// read lock, stopping if fn returns false; it returns how many subscribers
// were visited. fn must not block and must not call back into the registry.
func (r *Registry[S]) Range(topic string, fn func(S) bool) int {
	return r.RangeSized(topic, nil, fn)
}

// RangeSized is Range, first telling size (when not nil) how many
// subscribers the group has, under the same read lock: one lookup where
// Count then Range would take two.
func (r *Registry[S]) RangeSized(topic string, size func(n int), fn func(S) bool) int {
	sh := r.shard(topic)
	sh.mu.RLock()
	defer sh.mu.RUnlock() // fn may panic; do not leave the stripe locked
	g := sh.groups[topic]
	if g == nil {
		return 0
	}
	if size != nil {
		size(len(g.subs.items))
	}
	for i, s := range g.subs.items {
		if !fn(s) {
			return i + 1
		}
	}
	return len(g.subs.items)
}

// Count returns the number of subscribers of topic.
func (r *Registry[S]) Count(topic string) int {
	sh := r.shard(topic)
	sh.mu.RLock()
	n := 0
	if g := sh.groups[topic]; g != nil {
		n = len(g.subs.items)
	}
	sh.mu.RUnlock()
	return n
}

// Has reports whether s is subscribed to topic.
func (r *Registry[S]) Has(topic string, s S) bool {
	sh := r.shard(topic)
	sh.mu.RLock()
	ok := false
	if g := sh.groups[topic]; g != nil {
		ok = g.subs.has(r.seed, s)
	}
	sh.mu.RUnlock()
	return ok
}

// Stats returns the number of topics and subscriptions. It reads each
// shard's counters, O(shards); the result is a sum of per-shard snapshots,
// not one atomic snapshot of the whole registry.
func (r *Registry[S]) Stats() Stats {
	var st Stats
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		st.Topics += len(sh.groups)
		st.Subscriptions += sh.subs
		sh.mu.RUnlock()
	}
	return st
}

// Topics calls fn for every topic that has subscribers, stopping if fn
// returns false. It copies one shard's topics at a time and calls fn with no
// lock held, so fn may be slow (a broker resubscribing) and may use the
// registry; topics added or removed meanwhile may or may not be reported.
func (r *Registry[S]) Topics(fn func(topic string) bool) {
	var buf []string
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		buf = buf[:0]
		for topic := range sh.groups {
			buf = append(buf, topic)
		}
		sh.mu.RUnlock()
		for _, topic := range buf {
			if !fn(topic) {
				return
			}
		}
	}
}
