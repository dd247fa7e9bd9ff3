package registry

import "hash/maphash"

// dense is a set of comparable values kept as a dense slice, so iteration
// walks contiguous memory, plus, once the set is large, an open-addressing
// (linear probing) index of positions so that lookup and removal stay O(1).
// Groups and Sets are both built on it, with their own thresholds.
//
// Each index slot holds a position in items plus one, 0 meaning empty (so a
// set holds at most 2^31-1 values, far beyond any group on one node). The
// index is kept between 3/8 and 3/4 full, which costs 5 to 11 bytes per
// value, where a Go map costs 20 to 40 per pointer key and 25 to 50 per
// string key. Deletion shifts later entries back instead of leaving
// tombstones, so probe chains do not degrade under churn.
type dense[T comparable] struct {
	items []T
	idx   []int32
}

// thresholds says when a dense set builds and drops its index.
type thresholds struct {
	// above is the size past which the index is built; up to it a linear
	// scan of items is as fast as hashing.
	above int
	// below is the size under which the index is dropped, less than above
	// so that a set hovering near the threshold does not rebuild its index
	// on every call.
	below int
}

// minShrinkCap is the smallest backing array worth shrinking.
const minShrinkCap = 16

// has reports whether v is in the set.
func (d *dense[T]) has(seed maphash.Seed, v T) bool {
	if d.idx == nil {
		for _, w := range d.items {
			if w == v {
				return true
			}
		}
		return false
	}
	_, ok := d.lookup(seed, v)
	return ok
}

// add inserts v and reports whether it was absent.
func (d *dense[T]) add(seed maphash.Seed, v T, th thresholds) bool {
	if d.idx == nil {
		for _, w := range d.items {
			if w == v {
				return false
			}
		}
		d.items = append(d.items, v)
		if len(d.items) > th.above {
			d.reindex(seed)
		}
		return true
	}
	slot, ok := d.lookup(seed, v)
	if ok {
		return false
	}
	d.items = append(d.items, v)
	if len(d.items)*4 > len(d.idx)*3 {
		d.reindex(seed)
		return true
	}
	d.idx[slot] = int32(len(d.items))
	return true
}

// remove deletes v and reports whether it was present. The last value takes
// the freed position, so items stays dense.
func (d *dense[T]) remove(seed maphash.Seed, v T, th thresholds) bool {
	last := len(d.items) - 1
	pos := -1
	if d.idx == nil {
		for i, w := range d.items {
			if w == v {
				pos = i
				break
			}
		}
		if pos < 0 {
			return false
		}
	} else {
		slot, ok := d.lookup(seed, v)
		if !ok {
			return false
		}
		pos = int(d.idx[slot]) - 1
		d.erase(seed, slot)
		if pos != last {
			moved, _ := d.lookup(seed, d.items[last])
			d.idx[moved] = int32(pos + 1)
		}
	}
	var zero T
	d.items[pos] = d.items[last]
	d.items[last] = zero // drop the reference for the garbage collector
	d.items = d.items[:last]
	d.shrink(seed, th)
	return true
}

// shrink releases memory the set no longer needs after removals.
func (d *dense[T]) shrink(seed maphash.Seed, th thresholds) {
	n := len(d.items)
	if c := cap(d.items); c > minShrinkCap && n*4 < c {
		items := make([]T, n, n*2)
		copy(items, d.items)
		d.items = items
	}
	switch {
	case d.idx == nil:
	case n < th.below:
		d.idx = nil
	case n*8 < len(d.idx):
		d.reindex(seed)
	}
}

// lookup returns the slot holding v and true, or the empty slot where v
// would go and false. The index is never full, so the probe ends.
func (d *dense[T]) lookup(seed maphash.Seed, v T) (int, bool) {
	mask := len(d.idx) - 1
	i := int(maphash.Comparable(seed, v)) & mask
	for {
		p := d.idx[i]
		if p == 0 {
			return i, false
		}
		if d.items[p-1] == v {
			return i, true
		}
		i = (i + 1) & mask
	}
}

// erase empties slot i, moving later members of its probe chain back so
// that every entry stays reachable from its home slot.
func (d *dense[T]) erase(seed maphash.Seed, i int) {
	mask := len(d.idx) - 1
	for j := (i + 1) & mask; d.idx[j] != 0; j = (j + 1) & mask {
		home := int(maphash.Comparable(seed, d.items[d.idx[j]-1])) & mask
		// The entry at j may fill the hole at i unless its home lies
		// cyclically in (i, j], in which case moving it would hide it.
		if (j-home)&mask >= (j-i)&mask {
			d.idx[i] = d.idx[j]
			i = j
		}
	}
	d.idx[i] = 0
}

// reindex rebuilds idx at a size that leaves it at most half full.
func (d *dense[T]) reindex(seed maphash.Seed) {
	size := 1
	for size < len(d.items)*2 {
		size <<= 1
	}
	idx := make([]int32, size)
	mask := size - 1
	for p, v := range d.items {
		i := int(maphash.Comparable(seed, v)) & mask
		for idx[i] != 0 {
			i = (i + 1) & mask
		}
		idx[i] = int32(p + 1)
	}
	d.idx = idx
}
