package registry

const (
	// setSmallMax is the largest Set kept as a slice; a linear scan over a
	// handful of strings beats hashing them.
	setSmallMax = 8
	// setSmallBelow is the size at which a map-backed Set returns to a
	// slice, below setSmallMax so a Set near the threshold does not flap.
	setSmallBelow = setSmallMax / 2
)

// Set is a connection's own list of topics, so that closing the connection
// can remove it from every group. It is not safe for concurrent use: the
// connection guards it. The zero value is an empty set.
//
// Up to setSmallMax topics live in a slice searched linearly; past that the
// set switches to a map, and back to a slice when it shrinks well below.
// Topic strings are stored as given, never copied.
type Set struct {
	small []string
	big   map[string]struct{}
}

// Add inserts topic and reports whether it was absent.
func (s *Set) Add(topic string) bool {
	if s.big != nil {
		if _, ok := s.big[topic]; ok {
			return false
		}
		s.big[topic] = struct{}{}
		return true
	}
	for _, t := range s.small {
		if t == topic {
			return false
		}
	}
	if len(s.small) < setSmallMax {
		s.small = append(s.small, topic)
		return true
	}
	big := make(map[string]struct{}, setSmallMax*2)
	for _, t := range s.small {
		big[t] = struct{}{}
	}
	big[topic] = struct{}{}
	s.big, s.small = big, nil
	return true
}

// Remove deletes topic and reports whether it was present.
func (s *Set) Remove(topic string) bool {
	if s.big != nil {
		if _, ok := s.big[topic]; !ok {
			return false
		}
		delete(s.big, topic)
		if len(s.big) < setSmallBelow {
			// A Go map never gives memory back; rebuilding as a slice does.
			small := make([]string, 0, setSmallMax)
			for t := range s.big {
				small = append(small, t)
			}
			s.small, s.big = small, nil
		}
		return true
	}
	for i, t := range s.small {
		if t == topic {
			last := len(s.small) - 1
			s.small[i] = s.small[last]
			s.small[last] = "" // drop the reference for the garbage collector
			s.small = s.small[:last]
			return true
		}
	}
	return false
}

// Has reports whether topic is in the set.
func (s *Set) Has(topic string) bool {
	if s.big != nil {
		_, ok := s.big[topic]
		return ok
	}
	for _, t := range s.small {
		if t == topic {
			return true
		}
	}
	return false
}

// Len returns the number of topics in the set.
func (s *Set) Len() int {
	if s.big != nil {
		return len(s.big)
	}
	return len(s.small)
}

// Range calls fn for each topic, in no particular order, stopping if fn
// returns false. fn must not modify the set.
func (s *Set) Range(fn func(topic string) bool) {
	if s.big != nil {
		for t := range s.big {
			if !fn(t) {
				return
			}
		}
		return
	}
	for _, t := range s.small {
		if !fn(t) {
			return
		}
	}
}

// Clear empties the set and releases its memory.
func (s *Set) Clear() {
	s.small, s.big = nil, nil
}
