package registry

import "hash/maphash"

// setThresholds: up to 8 topics a Set is a plain slice searched linearly,
// which beats hashing the strings; past that it gains a hash index.
var setThresholds = thresholds{above: 8, below: 4}

// setSeed hashes every Set's topics. Sets have no constructor to draw a
// seed in, and a per-process random seed still keeps clients from choosing
// topics that collide.
var setSeed = maphash.MakeSeed()

// Set is a connection's own list of topics, so that closing the connection
// can remove it from every group. It is not safe for concurrent use: the
// connection guards it. The zero value is an empty set.
//
// Up to 8 topics it is a slice searched linearly. Past that it becomes a
// hash set: the same slice plus an index of positions (as large groups use),
// about 28 bytes a topic at 100 topics where a map[string]struct{} takes 35,
// its slots padded to 24 bytes. It drops the index again below 4 topics.
// Topic strings are stored as given, never copied.
type Set struct {
	d dense[string]
}

// Add inserts topic and reports whether it was absent.
func (s *Set) Add(topic string) bool { return s.d.add(setSeed, topic, setThresholds) }

// Remove deletes topic and reports whether it was present.
func (s *Set) Remove(topic string) bool { return s.d.remove(setSeed, topic, setThresholds) }

// Has reports whether topic is in the set.
func (s *Set) Has(topic string) bool { return s.d.has(setSeed, topic) }

// Len returns the number of topics in the set.
func (s *Set) Len() int { return len(s.d.items) }

// Range calls fn for each topic, in no particular order, stopping if fn
// returns false. fn must not modify the set.
func (s *Set) Range(fn func(topic string) bool) {
	for _, t := range s.d.items {
		if !fn(t) {
			return
		}
	}
}

// Clear empties the set and releases its memory.
func (s *Set) Clear() { s.d = dense[string]{} }
