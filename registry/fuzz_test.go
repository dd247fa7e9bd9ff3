package registry

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"testing"
)

// check verifies the set's invariants: items holds no duplicates, and when
// indexed, idx holds exactly one slot per value, reachable from the value's
// home slot, within the load bounds.
func (g *dense[T]) check(seed maphash.Seed, th thresholds) error {
	if g.idx == nil {
		if len(g.items) > th.above {
			return fmt.Errorf("%d values and no index", len(g.items))
		}
		for i := range g.items {
			for j := range i {
				if g.items[i] == g.items[j] {
					return fmt.Errorf("duplicate member at %d and %d", j, i)
				}
			}
		}
		return nil
	}
	if len(g.items) < th.below {
		return fmt.Errorf("index kept at %d members", len(g.items))
	}
	if len(g.items)*4 > len(g.idx)*3 {
		return fmt.Errorf("index overfull: %d in %d slots", len(g.items), len(g.idx))
	}
	used := 0
	for _, p := range g.idx {
		if p != 0 {
			used++
		}
	}
	if used != len(g.items) {
		return fmt.Errorf("index has %d slots for %d members", used, len(g.items))
	}
	for p, s := range g.items {
		slot, ok := g.lookup(seed, s)
		if !ok || int(g.idx[slot]) != p+1 {
			return fmt.Errorf("member at %d not found through the index", p)
		}
	}
	return nil
}

// applyDense applies ops to a dense set and to a map, checking that they
// agree and that the set's invariants hold after every op. Each op is two
// bytes: the top bit chooses remove, the low 12 bits pick one of 4096
// values through val.
func applyDense[T comparable](t *testing.T, ops []byte, th thresholds, val func(uint16) T) {
	t.Helper()
	seed := maphash.MakeSeed()
	var d dense[T]
	model := map[T]bool{}
	for i := 0; i+1 < len(ops); i += 2 {
		op := binary.BigEndian.Uint16(ops[i:])
		v := val(op & 0x0fff)
		if op&0x8000 != 0 {
			if got := d.remove(seed, v, th); got != model[v] {
				t.Fatalf("op %d: remove(%v) = %v, want %v", i/2, v, got, model[v])
			}
			delete(model, v)
		} else {
			if got := d.add(seed, v, th); got == model[v] {
				t.Fatalf("op %d: add(%v) = %v, want %v", i/2, v, got, !model[v])
			}
			model[v] = true
		}
		if len(d.items) != len(model) {
			t.Fatalf("op %d: %d values, want %d", i/2, len(d.items), len(model))
		}
		if err := d.check(seed, th); err != nil {
			t.Fatalf("op %d: %v", i/2, err)
		}
	}
	for v := range model {
		if !d.has(seed, v) {
			t.Fatalf("value %v lost", v)
		}
	}
}

// FuzzDense runs each op sequence against both uses of dense: groups
// (pointer-sized values, group thresholds) and Sets (strings, Set
// thresholds), so both grow past their index threshold and shrink back.
func FuzzDense(f *testing.F) {
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
	var names [4096]string
	for i := range names {
		names[i] = fmt.Sprintf("t.%d", i)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		t.Run("group", func(t *testing.T) {
			applyDense(t, ops, groupThresholds, func(v uint16) uint32 { return uint32(v) })
		})
		t.Run("set", func(t *testing.T) {
			applyDense(t, ops, setThresholds, func(v uint16) string { return names[v] })
		})
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
			if err := s.d.check(setSeed, setThresholds); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			wantSetContents(t, &s, model)
		}
	})
}
