package registry

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"testing"
)

// check verifies the group's invariants: subs holds no duplicates, and when
// indexed, idx holds exactly one slot per member, reachable from the
// member's home slot, within the load bounds.
func (g *group[S]) check(seed maphash.Seed) error {
	if g.idx == nil {
		if len(g.subs) > indexAbove {
			return fmt.Errorf("%d members and no index", len(g.subs))
		}
		for i := range g.subs {
			for j := range i {
				if g.subs[i] == g.subs[j] {
					return fmt.Errorf("duplicate member at %d and %d", j, i)
				}
			}
		}
		return nil
	}
	if len(g.subs) < indexBelow {
		return fmt.Errorf("index kept at %d members", len(g.subs))
	}
	if len(g.subs)*4 > len(g.idx)*3 {
		return fmt.Errorf("index overfull: %d in %d slots", len(g.subs), len(g.idx))
	}
	used := 0
	for _, p := range g.idx {
		if p != 0 {
			used++
		}
	}
	if used != len(g.subs) {
		return fmt.Errorf("index has %d slots for %d members", used, len(g.subs))
	}
	for p, s := range g.subs {
		slot, ok := g.lookup(seed, s)
		if !ok || int(g.idx[slot]) != p+1 {
			return fmt.Errorf("member at %d not found through the index", p)
		}
	}
	return nil
}

// FuzzGroup applies a sequence of adds and removes to a group and to a map,
// checking that they agree and that the group's invariants hold. Each op is
// two bytes: the top bit chooses remove, the rest picks one of 4096 members,
// so groups grow past the index threshold and shrink back.
func FuzzGroup(f *testing.F) {
	grow := make([]byte, 0, 400)
	for i := range 200 {
		grow = binary.BigEndian.AppendUint16(grow, uint16(i))
	}
	shrink := append([]byte(nil), grow...)
	for i := range 200 {
		shrink = binary.BigEndian.AppendUint16(shrink, 0x8000|uint16(i*7%200))
	}
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 1, 0x80, 1, 0x80, 1})
	f.Add(grow)
	f.Add(shrink)
	seed := maphash.MakeSeed()
	f.Fuzz(func(t *testing.T, ops []byte) {
		var g group[uint32]
		model := map[uint32]bool{}
		for i := 0; i+1 < len(ops); i += 2 {
			v := binary.BigEndian.Uint16(ops[i:])
			s := uint32(v & 0x0fff)
			if v&0x8000 != 0 {
				if got := g.remove(seed, s); got != model[s] {
					t.Fatalf("op %d: remove(%d) = %v, want %v", i/2, s, got, model[s])
				}
				delete(model, s)
			} else {
				if got := g.add(seed, s); got == model[s] {
					t.Fatalf("op %d: add(%d) = %v, want %v", i/2, s, got, !model[s])
				}
				model[s] = true
			}
			if len(g.subs) != len(model) {
				t.Fatalf("op %d: %d members, want %d", i/2, len(g.subs), len(model))
			}
			if err := g.check(seed); err != nil {
				t.Fatalf("op %d: %v", i/2, err)
			}
		}
		for s := range model {
			if !g.has(seed, s) {
				t.Fatalf("member %d lost", s)
			}
		}
	})
}

// FuzzSet checks a Set against a map over a sequence of operations; each
// op byte's top bit chooses remove, the rest picks one of 32 topics, so the
// set crosses the slice/map threshold both ways.
func FuzzSet(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 0x81, 0x82, 0x83})
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 3})
	var topics [32]string
	for i := range topics {
		topics[i] = fmt.Sprintf("t.%d", i)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		var s Set
		model := map[string]bool{}
		for i, b := range ops {
			topic := topics[b&31]
			if b&0x80 != 0 {
				if got := s.Remove(topic); got != model[topic] {
					t.Fatalf("op %d: Remove(%q) = %v, want %v", i, topic, got, model[topic])
				}
				delete(model, topic)
			} else {
				if got := s.Add(topic); got == model[topic] {
					t.Fatalf("op %d: Add(%q) = %v, want %v", i, topic, got, !model[topic])
				}
				model[topic] = true
			}
			if s.big != nil && len(s.big) < setSmallBelow || s.big == nil && len(s.small) > setSmallMax {
				t.Fatalf("op %d: wrong form for %d topics", i, s.Len())
			}
			wantSetContents(t, &s, model)
		}
	})
}
