package registry

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

func TestConfigShards(t *testing.T) {
	tests := []struct {
		in, want int
	}{
		{0, DefaultShards},
		{-5, DefaultShards},
		{1, 1},
		{2, 2},
		{3, 4},
		{64, 64},
		{65, 128},
		{1000, 1024},
		{maxShards, maxShards},
		{maxShards + 1, maxShards},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.in), func(t *testing.T) {
			if got := (Config{Shards: tt.in}).shardCount(); got != tt.want {
				t.Fatalf("shardCount() = %d, want %d", got, tt.want)
			}
			if got := len(New[int](Config{Shards: tt.in}).shards); got != tt.want {
				t.Fatalf("New made %d shards, want %d", got, tt.want)
			}
		})
	}
}

// The padding in shard assumes the field sizes of this Go release.
func TestShardIsTwoCacheLines(t *testing.T) {
	if got := unsafe.Sizeof(shard[*conn]{}); got != 128 {
		t.Fatalf("sizeof(shard) = %d, want 128: fix the padding", got)
	}
}

type op int

const (
	sub op = iota
	unsub
)

type step struct {
	op     op
	topic  string
	id     int
	wantOK bool // added or removed
	wantFL bool // first or last
}

func TestSubscribeUnsubscribe(t *testing.T) {
	tests := []struct {
		name      string
		steps     []step
		wantStats Stats
		wantCount map[string]int
	}{
		{
			name:      "first subscriber creates the group",
			steps:     []step{{sub, "a", 1, true, true}},
			wantStats: Stats{1, 1},
			wantCount: map[string]int{"a": 1},
		},
		{
			name:      "duplicate is not added and not first",
			steps:     []step{{sub, "a", 1, true, true}, {sub, "a", 1, false, false}},
			wantStats: Stats{1, 1},
			wantCount: map[string]int{"a": 1},
		},
		{
			name:      "second subscriber is not first",
			steps:     []step{{sub, "a", 1, true, true}, {sub, "a", 2, true, false}},
			wantStats: Stats{1, 2},
			wantCount: map[string]int{"a": 2},
		},
		{
			name:      "unsubscribe from unknown topic",
			steps:     []step{{unsub, "a", 1, false, false}},
			wantStats: Stats{},
			wantCount: map[string]int{"a": 0},
		},
		{
			name:      "unsubscribe a non-member leaves the group alone",
			steps:     []step{{sub, "a", 1, true, true}, {unsub, "a", 2, false, false}},
			wantStats: Stats{1, 1},
			wantCount: map[string]int{"a": 1},
		},
		{
			name:      "removing one of two is not last",
			steps:     []step{{sub, "a", 1, true, true}, {sub, "a", 2, true, false}, {unsub, "a", 1, true, false}},
			wantStats: Stats{1, 1},
			wantCount: map[string]int{"a": 1},
		},
		{
			name: "last subscriber deletes the group, next subscriber is first again",
			steps: []step{
				{sub, "a", 1, true, true}, {unsub, "a", 1, true, true},
				{unsub, "a", 1, false, false}, {sub, "a", 1, true, true},
			},
			wantStats: Stats{1, 1},
			wantCount: map[string]int{"a": 1},
		},
		{
			name: "topics are independent",
			steps: []step{
				{sub, "a", 1, true, true}, {sub, "b", 1, true, true}, {sub, "b", 2, true, false},
				{unsub, "a", 1, true, true}, {unsub, "b", 2, true, false},
			},
			wantStats: Stats{1, 1},
			wantCount: map[string]int{"a": 0, "b": 1},
		},
		{
			name:      "empty topic name is a topic like any other",
			steps:     []step{{sub, "", 1, true, true}, {sub, "", 1, false, false}},
			wantStats: Stats{1, 1},
			wantCount: map[string]int{"": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachImpl(t, func(t *testing.T, h harness) {
				for i, st := range tt.steps {
					var ok, fl bool
					switch st.op {
					case sub:
						ok, fl = h.Subscribe(st.topic, st.id)
					case unsub:
						ok, fl = h.Unsubscribe(st.topic, st.id)
					}
					if ok != st.wantOK || fl != st.wantFL {
						t.Fatalf("step %d %+v: got (%v, %v)", i, st, ok, fl)
					}
				}
				wantStats(t, h, tt.wantStats)
				for topic, want := range tt.wantCount {
					if got := h.Count(topic); got != want {
						t.Fatalf("Count(%q) = %d, want %d", topic, got, want)
					}
					if got := len(members(t, h, topic)); got != want {
						t.Fatalf("Range(%q) visited %d, want %d", topic, got, want)
					}
				}
			})
		})
	}
}

// TestGroupLifecycle grows groups past the index threshold and empties them
// again in an order that moves members around, checking every member
// stays findable and the group is deleted at the end.
func TestGroupLifecycle(t *testing.T) {
	sizes := []int{1, 2, groupThresholds.below, groupThresholds.above, groupThresholds.above + 1, 100, 3000}
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			forEachImpl(t, func(t *testing.T, h harness) {
				rng := rand.New(rand.NewPCG(uint64(n), 1))
				for id := range n {
					if added, first := h.Subscribe("g", id); !added || first != (id == 0) {
						t.Fatalf("Subscribe(%d) = (%v, %v)", id, added, first)
					}
				}
				for id := range n {
					if added, _ := h.Subscribe("g", id); added {
						t.Fatalf("duplicate Subscribe(%d) added", id)
					}
				}
				wantStats(t, h, Stats{1, n})
				left := map[int]bool{}
				for id := range n {
					left[id] = true
				}
				if got := members(t, h, "g"); len(got) != n {
					t.Fatalf("Range visited %d, want %d", len(got), n)
				}
				for i, id := range rng.Perm(n) {
					removed, last := h.Unsubscribe("g", id)
					if !removed || last != (i == n-1) {
						t.Fatalf("Unsubscribe(%d) #%d = (%v, %v)", id, i, removed, last)
					}
					delete(left, id)
					if h.Has("g", id) {
						t.Fatalf("%d still a member after Unsubscribe", id)
					}
					// A full check per removal is quadratic; sample it.
					if i%97 == 0 || len(left) < groupThresholds.above+2 {
						got := members(t, h, "g")
						for id := range left {
							if !got[id] || !h.Has("g", id) {
								t.Fatalf("member %d lost after %d removals", id, i+1)
							}
						}
						if len(got) != len(left) {
							t.Fatalf("Range visited %d, want %d", len(got), len(left))
						}
					}
				}
				wantStats(t, h, Stats{})
				if got := topicsOf(t, h); len(got) != 0 {
					t.Fatalf("Topics after emptying = %v", got)
				}
			})
		})
	}
}

func TestRange(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		stopAfter int // fn returns false on this visit; 0 never
		want      int
	}{
		{"unknown topic", 0, 0, 0},
		{"unknown topic with stop", 0, 1, 0},
		{"all of one", 1, 0, 1},
		{"stop at first", 10, 1, 1},
		{"stop in the middle", 10, 4, 4},
		{"stop at last", 10, 10, 10},
		{"all of an indexed group", 1000, 0, 1000},
		{"stop early in an indexed group", 1000, 7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachImpl(t, func(t *testing.T, h harness) {
				for id := range tt.size {
					h.Subscribe("t", id)
				}
				h.Subscribe("other", maxID-1)
				calls := 0
				seen := map[int]bool{}
				got := h.Range("t", func(id int) bool {
					calls++
					if seen[id] || id >= tt.size {
						t.Fatalf("Range visited %d (duplicate or not a member)", id)
					}
					seen[id] = true
					return calls != tt.stopAfter
				})
				if got != tt.want || calls != tt.want {
					t.Fatalf("Range returned %d after %d calls, want %d", got, calls, tt.want)
				}
			})
		})
	}
}

// RangeSized reports the group's size once, before the first visit, under
// the same lock; an unknown topic reports nothing and visits nothing.
func TestRangeSized(t *testing.T) {
	r := New[int](Config{})
	for id := range 5 {
		r.Subscribe("t", id)
	}
	var sizes []int
	visits := 0
	got := r.RangeSized("t", func(n int) { sizes = append(sizes, n) }, func(int) bool {
		if len(sizes) != 1 {
			t.Fatal("a member was visited before the size was reported")
		}
		visits++
		return true
	})
	if got != 5 || visits != 5 || len(sizes) != 1 || sizes[0] != 5 {
		t.Fatalf("RangeSized returned %d after %d visits, sizes %v; want 5, 5, [5]", got, visits, sizes)
	}
	if got := r.RangeSized("none", func(int) { t.Fatal("size reported for an unknown topic") }, func(int) bool { return true }); got != 0 {
		t.Fatalf("unknown topic: %d", got)
	}
}

func TestStats(t *testing.T) {
	tests := []struct {
		name   string
		topics int
		per    int // subscribers per topic
		drop   int // subscribers then removed from every topic
		want   Stats
	}{
		{"empty", 0, 0, 0, Stats{}},
		{"one topic", 1, 5, 0, Stats{1, 5}},
		{"many topics", 500, 3, 0, Stats{500, 1500}},
		{"partly dropped", 100, 40, 10, Stats{100, 3000}},
		{"all dropped", 100, 40, 40, Stats{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachImpl(t, func(t *testing.T, h harness) {
				for i := range tt.topics {
					for id := range tt.per {
						h.Subscribe(fmt.Sprintf("t.%d", i), id)
					}
				}
				for i := range tt.topics {
					for id := range tt.drop {
						h.Unsubscribe(fmt.Sprintf("t.%d", i), id)
					}
				}
				wantStats(t, h, tt.want)
			})
		})
	}
}

func TestTopics(t *testing.T) {
	forEachImpl(t, func(t *testing.T, h harness) {
		want := map[string]bool{}
		for i := range 300 {
			topic := fmt.Sprintf("t.%d", i)
			h.Subscribe(topic, i%7)
			want[topic] = true
		}
		for i := range 300 {
			if i%3 == 0 {
				h.Unsubscribe(fmt.Sprintf("t.%d", i), i%7)
				delete(want, fmt.Sprintf("t.%d", i))
			}
		}
		got := topicsOf(t, h)
		if len(got) != len(want) {
			t.Fatalf("Topics reported %d topics, want %d", len(got), len(want))
		}
		for topic := range want {
			if got[topic] != 1 {
				t.Fatalf("Topics missed %q", topic)
			}
		}

		t.Run("stops when fn returns false", func(t *testing.T) {
			calls := 0
			h.Topics(func(string) bool {
				calls++
				return calls < 5
			})
			if calls != 5 {
				t.Fatalf("fn called %d times, want 5", calls)
			}
		})

		// fn runs with no lock held, so it may use the registry.
		t.Run("fn may call back", func(t *testing.T) {
			h.Topics(func(topic string) bool {
				h.Subscribe(topic, maxID-1)
				return h.Count(topic) > 0
			})
			for topic := range want {
				if !h.Has(topic, maxID-1) {
					t.Fatalf("callback's Subscribe(%q) lost", topic)
				}
			}
		})
	})
}

func TestJoinLeave(t *testing.T) {
	forEachImpl(t, func(t *testing.T, h harness) {
		var s1, s2 Set
		if added, first := h.Join("room", 1, &s1); !added || !first {
			t.Fatalf("Join = (%v, %v), want (true, true)", added, first)
		}
		if added, first := h.Join("room", 1, &s1); added || first {
			t.Fatalf("second Join = (%v, %v), want (false, false)", added, first)
		}
		if added, first := h.Join("room", 2, &s2); !added || first {
			t.Fatalf("Join by 2 = (%v, %v), want (true, false)", added, first)
		}
		if !s1.Has("room") || !s2.Has("room") || s1.Len() != 1 {
			t.Fatal("Join did not record the topic in the Set")
		}
		if removed, last := h.Leave("room", 1, &s1); !removed || last {
			t.Fatalf("Leave = (%v, %v), want (true, false)", removed, last)
		}
		if s1.Has("room") || h.Has("room", 1) {
			t.Fatal("Leave left the subscription behind")
		}
		if removed, last := h.Leave("room", 2, &s2); !removed || !last {
			t.Fatalf("last Leave = (%v, %v), want (true, true)", removed, last)
		}
		wantStats(t, h, Stats{})
	})
}

// Join hands every Set the group's own topic string, so a topic's bytes are
// held once however many subscribers parsed their own copy.
func TestJoinSharesTopicString(t *testing.T) {
	r := New[*conn](Config{})
	cs := newConns(3)
	sets := make([]Set, len(cs))
	for i, c := range cs {
		topic := strings.Clone("news.sport") // a fresh copy, as a parser makes
		r.Join(topic, c, &sets[i])
	}
	var ptrs []*byte
	for i := range sets {
		sets[i].Range(func(topic string) bool {
			ptrs = append(ptrs, unsafe.StringData(topic))
			return true
		})
	}
	for _, p := range ptrs[1:] {
		if p != ptrs[0] {
			t.Fatal("Sets hold different copies of the topic string")
		}
	}
}

func TestRemoveAll(t *testing.T) {
	const (
		subscribers = 10_000
		perSub      = 10
		topics      = 1000 // 100 subscribers per topic: indexed groups
	)
	forEachImpl(t, func(t *testing.T, h harness) {
		names := make([]string, topics)
		for i := range names {
			names[i] = fmt.Sprintf("t.%d", i)
		}
		sets := make([]Set, subscribers)
		for id := range subscribers {
			for k := range perSub {
				// Distinct topics per subscriber, spread evenly over all.
				h.Join(names[(id+k*(topics/perSub))%topics], id, &sets[id])
			}
			if sets[id].Len() != perSub {
				t.Fatalf("subscriber %d has %d topics, want %d", id, sets[id].Len(), perSub)
			}
		}
		wantStats(t, h, Stats{topics, subscribers * perSub})

		emptied := map[string]int{}
		onLast := func(topic string) { emptied[topic]++ }
		for id := range subscribers {
			h.RemoveAll(id, &sets[id], onLast)
			if sets[id].Len() != 0 {
				t.Fatalf("RemoveAll left %d topics in the Set", sets[id].Len())
			}
		}
		wantStats(t, h, Stats{0, 0})
		if len(emptied) != topics {
			t.Fatalf("onLast saw %d topics, want %d", len(emptied), topics)
		}
		for topic, n := range emptied {
			if n != 1 {
				t.Fatalf("onLast(%q) called %d times", topic, n)
			}
		}
		if got := topicsOf(t, h); len(got) != 0 {
			t.Fatalf("Topics after RemoveAll = %d topics", len(got))
		}
	})
}

func TestRemoveAllNilOnLast(t *testing.T) {
	forEachImpl(t, func(t *testing.T, h harness) {
		var set Set
		h.Join("a", 1, &set)
		h.Join("b", 1, &set)
		h.RemoveAll(1, &set, nil)
		wantStats(t, h, Stats{})
	})
}

// TestConcurrent hammers the registry from many goroutines at once, each
// subscriber owned by one goroutine, with readers ranging meanwhile; when
// every goroutine has removed what it added the registry must be exactly
// empty. Readers do a fixed amount of work rather than spin until the
// writers finish, which would starve them of the single-shard lock.
func TestConcurrent(t *testing.T) {
	const (
		writers = 8
		readers = 4
		perW    = 50   // subscribers per writer
		topics  = 64   // few topics: groups cross the index threshold
		rounds  = 3000 // operations per writer
		reads   = 1000 // Range calls per reader
	)
	forEachImpl(t, func(t *testing.T, h harness) {
		names := make([]string, topics)
		for i := range names {
			names[i] = fmt.Sprintf("t.%d", i)
		}
		start := make(chan struct{})
		var writersWG, readersWG sync.WaitGroup
		errs := make(chan error, writers+readers)

		for w := range writers {
			writersWG.Add(1)
			go func() {
				defer writersWG.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 2))
				sets := make([]Set, perW) // this goroutine's subscribers
				<-start
				for range rounds {
					i := rng.IntN(perW)
					id := w*perW + i
					topic := names[rng.IntN(topics)]
					had := sets[i].Has(topic)
					if rng.IntN(2) == 0 {
						if added, _ := h.Join(topic, id, &sets[i]); added == had {
							errs <- fmt.Errorf("Join(%q, %d) added=%v, Set had it: %v", topic, id, added, had)
							return
						}
					} else {
						if removed, _ := h.Leave(topic, id, &sets[i]); removed != had {
							errs <- fmt.Errorf("Leave(%q, %d) removed=%v, Set had it: %v", topic, id, removed, had)
							return
						}
					}
				}
				for i := range sets {
					h.RemoveAll(w*perW+i, &sets[i], nil)
				}
			}()
		}
		for r := range readers {
			readersWG.Add(1)
			go func() {
				defer readersWG.Done()
				seen := make([]bool, writers*perW)
				<-start
				for i := range reads {
					topic := names[(r+i)%topics]
					clear(seen)
					distinct := 0
					n := h.Range(topic, func(id int) bool {
						if !seen[id] {
							seen[id] = true
							distinct++
						}
						return true
					})
					if n != distinct {
						errs <- fmt.Errorf("Range(%q) returned %d for %d distinct subscribers", topic, n, distinct)
						return
					}
					h.Count(topic)
					if i%16 == 0 {
						h.Stats()
					}
				}
			}()
		}
		close(start)
		writersWG.Wait()
		readersWG.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		wantStats(t, h, Stats{0, 0})
		if got := topicsOf(t, h); len(got) != 0 {
			t.Fatalf("Topics after all left = %v", got)
		}
	})
}
