// Package shrink gives back the memory of maps and slices that emptied out.
// A Go map keeps the tables of its largest size until the map itself is
// dropped, so a registry that once held a storm of topics would hold that
// memory for good; the structures of the request path rebuild theirs
// instead, at amortised O(1) cost.
package shrink

// Floor is the high-water length under which nothing is rebuilt: a small
// map costs little to keep, and rebuilding it would only churn. It is also
// about the most an emptied map keeps, per map: the registry has 64 of
// them, which at 1024 still held 2.6 MiB after a storm had left.
const Floor = 128

// Watermark tracks one map's high-water length and says when to rebuild
// it. The zero value is ready to use. It is not safe for concurrent use:
// the lock that guards the map guards its Watermark.
type Watermark struct {
	high int
}

// Grew records the map's length n after an insertion.
func (w *Watermark) Grew(n int) {
	if n > w.high {
		w.high = n
	}
}

// Shrunk reports, after deletions left the map n entries long, whether to
// rebuild it: its high-water length passed Floor and n is below a quarter
// of it. When it reports true the mark restarts at n, as the caller is to
// rebuild. A rebuild copies n entries after at least 3n deletions, so its
// cost spreads to O(1) per deletion. Callers may ask after each deletion or
// once after a batch of them.
func (w *Watermark) Shrunk(n int) bool {
	if w.high <= Floor || n*4 >= w.high {
		return false
	}
	w.high = n
	return true
}

// Map returns a fresh copy of m sized for its entries. (maps.Clone would
// not do: it copies m's tables at their current size.)
func Map[M ~map[K]V, K comparable, V any](m M) M {
	fresh := make(M, len(m))
	for k, v := range m {
		fresh[k] = v
	}
	return fresh
}

// Slice returns s, or its elements in a fresh array with room for twice
// as many (nil when there are none) when the capacity s reaches is above
// Floor and less than a quarter used, so a queue that once held a burst
// does not keep the burst's array. A queue consumed from the front passes
// s[i:]: the capacity past its end counts, so a mostly drained array is
// copied out, and one with no room left is dropped at the next append.
func Slice[S ~[]E, E any](s S) S {
	if cap(s) <= Floor || len(s)*4 >= cap(s) {
		return s
	}
	if len(s) == 0 {
		return nil
	}
	fresh := make(S, len(s), 2*len(s))
	copy(fresh, s)
	return fresh
}
