package registry

import (
	"strconv"
	"testing"
)

// After a storm of distinct topics leaves, the shard maps give their memory
// back: a Go map keeps the tables of its largest size unless rebuilt.
func TestRegistryShrinksAfterStorm(t *testing.T) {
	const conns, perConn = 100, 1000 // 100,000 topics of one subscriber each
	tests := []struct {
		name  string
		leave func(r *Registry[*conn], c *conn, set *Set, topics []string)
	}{
		{"Unsubscribe", func(r *Registry[*conn], c *conn, set *Set, topics []string) {
			for _, topic := range topics {
				if removed, last := r.Leave(topic, c, set); !removed || !last {
					t.Fatalf("Leave(%q) = %v, %v, want true, true", topic, removed, last)
				}
			}
		}},
		{"RemoveAll", func(r *Registry[*conn], c *conn, set *Set, _ []string) {
			r.RemoveAll(c, set, nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := newConns(conns)
			topics := make([][]string, conns)
			for i := range topics {
				topics[i] = make([]string, perConn)
				for k := range topics[i] {
					topics[i][k] = "s." + strconv.Itoa(i) + "." + strconv.Itoa(k)
				}
			}
			sets := make([]Set, conns)
			r := New[*conn](Config{})
			base := heapInUse()
			for i, c := range cs {
				for _, topic := range topics[i] {
					r.Join(topic, c, &sets[i])
				}
			}
			peak := heapInUse()
			if st := r.Stats(); st.Topics != conns*perConn {
				t.Fatalf("Stats() = %+v, want %d topics", st, conns*perConn)
			}
			for i, c := range cs {
				tt.leave(r, c, &sets[i], topics[i])
			}
			after := heapInUse()
			if st := r.Stats(); st != (Stats{}) {
				t.Fatalf("Stats() = %+v after every subscriber left, want zero", st)
			}
			took, left := peak-base, int64(after)-int64(base)
			t.Logf("%d topics took %d KiB; %d KiB left after they went", conns*perConn, took>>10, left>>10)
			// What stays is the shards' small maps, sized for fewer than
			// shrink.Floor entries each (under 2 % here), and noise. Maps
			// that are not rebuilt keep about 30 %.
			if left > int64(took/20) {
				t.Fatalf("%d bytes of the %d the storm took stayed (%.1f%%), want at most 5%%",
					left, took, 100*float64(left)/float64(took))
			}
			// The registry still works after its maps were rebuilt.
			for i, c := range cs[:2] {
				r.Join(topics[i][0], c, &sets[i])
			}
			if got := r.Count(topics[1][0]); got != 1 {
				t.Fatalf("Count = %d after a rejoin, want 1", got)
			}
		})
	}
}
