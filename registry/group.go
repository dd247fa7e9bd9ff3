package registry

import "hash/maphash"

const (
	// indexAbove is the group size past which a position index is built;
	// up to it a linear scan of the dense slice is as fast as hashing.
	indexAbove = 32
	// indexBelow is the size under which the index is dropped again. The gap
	// to indexAbove keeps a group hovering near the threshold from
	// rebuilding its index on every call.
	indexBelow = indexAbove / 2
	// minShrinkCap is the smallest backing array the group bothers to shrink.
	minShrinkCap = 16
)

// group is the set of subscribers of one topic.
//
// subs is dense so that fan-out walks contiguous memory. Once the group is
// large, idx is an open-addressing (linear probing) table whose slots hold a
// position in subs plus one, 0 meaning empty; it is kept between 3/8 and 3/4
// full, so it costs 5 to 11 bytes per subscriber against a Go map's 20 to 40.
// Deletion shifts entries back instead of leaving tombstones, so probe chains
// never degrade under churn.
type group[S comparable] struct {
	// topic is the key the shard map holds for this group, kept so Join can
	// hand the same string to every subscriber's Set.
	topic string
	subs  []S
	idx   []int32
}

// has reports whether s is in the group.
func (g *group[S]) has(seed maphash.Seed, s S) bool {
	if g.idx == nil {
		for _, v := range g.subs {
			if v == s {
				return true
			}
		}
		return false
	}
	_, ok := g.lookup(seed, s)
	return ok
}

// add inserts s and reports whether it was absent.
func (g *group[S]) add(seed maphash.Seed, s S) bool {
	if g.idx == nil {
		for _, v := range g.subs {
			if v == s {
				return false
			}
		}
		g.subs = append(g.subs, s)
		if len(g.subs) > indexAbove {
			g.reindex(seed)
		}
		return true
	}
	slot, ok := g.lookup(seed, s)
	if ok {
		return false
	}
	g.subs = append(g.subs, s)
	if len(g.subs)*4 > len(g.idx)*3 {
		g.reindex(seed)
		return true
	}
	g.idx[slot] = int32(len(g.subs))
	return true
}

// remove deletes s and reports whether it was present. The last subscriber
// takes the freed position, so subs stays dense.
func (g *group[S]) remove(seed maphash.Seed, s S) bool {
	last := len(g.subs) - 1
	pos := -1
	if g.idx == nil {
		for i, v := range g.subs {
			if v == s {
				pos = i
				break
			}
		}
		if pos < 0 {
			return false
		}
	} else {
		slot, ok := g.lookup(seed, s)
		if !ok {
			return false
		}
		pos = int(g.idx[slot]) - 1
		g.erase(seed, slot)
		if pos != last {
			moved, _ := g.lookup(seed, g.subs[last])
			g.idx[moved] = int32(pos + 1)
		}
	}
	var zero S
	g.subs[pos] = g.subs[last]
	g.subs[last] = zero // drop the reference for the garbage collector
	g.subs = g.subs[:last]
	g.shrink(seed)
	return true
}

// shrink releases memory a group no longer needs after removals.
func (g *group[S]) shrink(seed maphash.Seed) {
	n := len(g.subs)
	if c := cap(g.subs); c > minShrinkCap && n*4 < c {
		subs := make([]S, n, n*2)
		copy(subs, g.subs)
		g.subs = subs
	}
	switch {
	case g.idx == nil:
	case n < indexBelow:
		g.idx = nil
	case n*8 < len(g.idx):
		g.reindex(seed)
	}
}

// lookup returns the slot holding s and true, or the empty slot where s
// would go and false.
func (g *group[S]) lookup(seed maphash.Seed, s S) (int, bool) {
	mask := len(g.idx) - 1
	i := int(maphash.Comparable(seed, s)) & mask
	for {
		p := g.idx[i]
		if p == 0 {
			return i, false
		}
		if g.subs[p-1] == s {
			return i, true
		}
		i = (i + 1) & mask
	}
}

// erase empties slot i, moving later members of its probe chain back so
// that every entry stays reachable from its home slot.
func (g *group[S]) erase(seed maphash.Seed, i int) {
	mask := len(g.idx) - 1
	for j := (i + 1) & mask; g.idx[j] != 0; j = (j + 1) & mask {
		home := int(maphash.Comparable(seed, g.subs[g.idx[j]-1])) & mask
		// The entry at j may fill the hole at i unless its home lies
		// cyclically in (i, j], in which case moving it would hide it.
		if (j-home)&mask >= (j-i)&mask {
			g.idx[i] = g.idx[j]
			i = j
		}
	}
	g.idx[i] = 0
}

// reindex rebuilds idx at a size that leaves it at most half full.
func (g *group[S]) reindex(seed maphash.Seed) {
	size := 1
	for size < len(g.subs)*2 {
		size <<= 1
	}
	idx := make([]int32, size)
	mask := size - 1
	for p, s := range g.subs {
		i := int(maphash.Comparable(seed, s)) & mask
		for idx[i] != 0 {
			i = (i + 1) & mask
		}
		idx[i] = int32(p + 1)
	}
	g.idx = idx
}
