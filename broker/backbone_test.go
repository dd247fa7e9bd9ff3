package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/subsock/subsock/internal/testserver"
)

// backbone is one kind of backbone under test, running for one test.
type backbone struct {
	name string
	// open attaches a new node to the backbone; it is closed at cleanup.
	open func(t *testing.T, h Handler) Broker
	// upstream reports, for every channel starting with prefix that has
	// interest on the backbone, how many subscriptions the backbone shows.
	upstream func(t *testing.T, prefix string) map[string]int
	// stop and start take the whole backbone down and bring it back on the
	// same addresses.
	stop, start func()
	// pause and resume hang the backbone (SIGSTOP, SIGCONT): connections
	// stay open, nothing is answered. Nil where there is no one process.
	pause, resume func()
	// keySlot asks the server for a key's cluster slot (cluster only).
	keySlot func(t *testing.T, key string) int
	// moveSlot hands a slot to another master and returns both masters'
	// addresses (cluster only).
	moveSlot func(t *testing.T, slot int) (from, to string)
	// kill ends the backbone as a crash would (SIGKILL), losing its data;
	// start brings it back. Nil where stop is the only way.
	kill func()
	// flush drops every key the backbone holds (FLUSHALL; Redis only).
	flush func(t *testing.T)
}

// backboneKinds lists every implementation; each setup starts a fresh
// server for the calling test.
var backboneKinds = []struct {
	name  string
	setup func(t *testing.T) *backbone
}{
	{"memory", memoryBackbone},
	{"redis", redisBackbone},
	{"redis-cluster", redisClusterBackbone},
	{"nats", natsBackbone},
}

// testOptions make recovery quick enough for tests.
var testOptions = Options{
	DialTimeout: time.Second,
	Timeout:     3 * time.Second,
	BackoffMin:  10 * time.Millisecond,
	BackoffMax:  200 * time.Millisecond,
}

func openURL(t *testing.T, url string, h Handler) Broker {
	t.Helper()
	b, err := Open(url, h, testOptions)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func memoryBackbone(t *testing.T) *backbone {
	bus := NewMemoryBus()
	return &backbone{
		name: "memory",
		open: func(t *testing.T, h Handler) Broker {
			m := bus.Attach(h)
			t.Cleanup(func() { m.Close() })
			return m
		},
		upstream: func(t *testing.T, prefix string) map[string]int {
			bus.mu.RLock()
			defer bus.mu.RUnlock()
			got := map[string]int{}
			for topic, subs := range bus.topics {
				if strings.HasPrefix(topic, prefix) {
					got[topic] = len(subs)
				}
			}
			return got
		},
		stop:  bus.Stop,
		start: bus.Start,
	}
}

// redisClient is a plain client to one server, for looking at its state.
func redisClient(t *testing.T, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{addr},
		ForceSingleClient: true,
		DisableCache:      true,
	})
	if err != nil {
		t.Fatalf("redis client %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

func queryCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func redisBackbone(t *testing.T) *backbone {
	srv := testserver.Redis(t)
	c := redisClient(t, srv.Addr)
	return &backbone{
		name: "redis",
		open: func(t *testing.T, h Handler) Broker { return openURL(t, srv.URL, h) },
		upstream: func(t *testing.T, prefix string) map[string]int {
			t.Helper()
			ctx := queryCtx(t)
			chans, err := c.Do(ctx, c.B().PubsubChannels().Pattern(prefix+"*").Build()).AsStrSlice()
			if err != nil {
				t.Fatalf("PUBSUB CHANNELS: %v", err)
			}
			got := map[string]int{}
			for len(chans) > 0 {
				n := min(len(chans), 1000)
				counts, err := c.Do(ctx, c.B().PubsubNumsub().Channel(chans[:n]...).Build()).AsIntMap()
				if err != nil {
					t.Fatalf("PUBSUB NUMSUB: %v", err)
				}
				for ch, k := range counts {
					if k > 0 {
						got[ch] = int(k)
					}
				}
				chans = chans[n:]
			}
			return got
		},
		stop:   srv.Stop,
		start:  srv.Start,
		pause:  srv.Pause,
		resume: srv.Resume,
		kill:   srv.Kill,
		flush:  func(t *testing.T) { flushAll(t, c) },
	}
}

// flushAll drops every key of each server.
func flushAll(t *testing.T, clients ...rueidis.Client) {
	t.Helper()
	for _, c := range clients {
		if err := c.Do(queryCtx(t), c.B().Flushall().Build()).Error(); err != nil {
			t.Fatalf("FLUSHALL: %v", err)
		}
	}
}

func redisClusterBackbone(t *testing.T) *backbone {
	cl := testserver.RedisCluster(t)
	clients := make([]rueidis.Client, len(cl.Addrs))
	for i, a := range cl.Addrs {
		clients[i] = redisClient(t, a)
	}
	return &backbone{
		name: "redis-cluster",
		open: func(t *testing.T, h Handler) Broker { return openURL(t, cl.URL, h) },
		// Shard channels live on the node that owns their slot: ask every
		// node, and count the nodes that list a channel (one, if right).
		upstream: func(t *testing.T, prefix string) map[string]int {
			t.Helper()
			ctx := queryCtx(t)
			got := map[string]int{}
			for i, c := range clients {
				chans, err := c.Do(ctx, c.B().PubsubShardchannels().Pattern(prefix+"*").Build()).AsStrSlice()
				if err != nil {
					t.Fatalf("PUBSUB SHARDCHANNELS on %s: %v", cl.Addrs[i], err)
				}
				for _, ch := range chans {
					got[ch]++
				}
			}
			return got
		},
		stop:  cl.Stop,
		start: cl.Start,
		flush: func(t *testing.T) { flushAll(t, clients...) },
		keySlot: func(t *testing.T, key string) int {
			t.Helper()
			n, err := clients[0].Do(queryCtx(t), clients[0].B().ClusterKeyslot().Key(key).Build()).AsInt64()
			if err != nil {
				t.Fatalf("CLUSTER KEYSLOT: %v", err)
			}
			return int(n)
		},
		moveSlot: func(t *testing.T, slot int) (from, to string) {
			t.Helper()
			ctx := queryCtx(t)
			ids := make([]string, len(clients))
			src := -1
			for i, c := range clients {
				id, err := c.Do(ctx, c.B().ClusterMyid().Build()).ToString()
				if err != nil {
					t.Fatalf("CLUSTER MYID: %v", err)
				}
				ids[i] = id
			}
			ranges, err := clients[0].Do(ctx, clients[0].B().ClusterSlots().Build()).ToArray()
			if err != nil {
				t.Fatalf("CLUSTER SLOTS: %v", err)
			}
			for _, r := range ranges {
				f, _ := r.ToArray()
				lo, _ := f[0].AsInt64()
				hi, _ := f[1].AsInt64()
				if int64(slot) < lo || int64(slot) > hi {
					continue
				}
				m, _ := f[2].ToArray()
				id, _ := m[2].ToString()
				src = slices.Index(ids, id)
			}
			if src < 0 {
				t.Fatalf("no owner found for slot %d", slot)
			}
			dst := (src + 1) % len(clients)
			do := func(i int, args ...string) {
				t.Helper()
				if err := clients[i].Do(ctx, clients[i].B().Arbitrary("CLUSTER", "SETSLOT").Args(args...).Build()).Error(); err != nil {
					t.Fatalf("CLUSTER SETSLOT %v on %s: %v", args, cl.Addrs[i], err)
				}
			}
			s := strconv.Itoa(slot)
			// The documented order for an empty slot: importing, migrating,
			// then NODE on the destination first and on the rest after.
			do(dst, s, "IMPORTING", ids[src])
			do(src, s, "MIGRATING", ids[dst])
			do(dst, s, "NODE", ids[dst])
			do(src, s, "NODE", ids[dst])
			for i := range clients {
				if i != src && i != dst {
					do(i, s, "NODE", ids[dst])
				}
			}
			return cl.Addrs[src], cl.Addrs[dst]
		},
	}
}

func natsBackbone(t *testing.T) *backbone {
	srv := testserver.NATS(t)
	return &backbone{
		name: "nats",
		open: func(t *testing.T, h Handler) Broker { return openURL(t, srv.URL, h) },
		// /connz?subs=1 lists every connection's subscriptions.
		upstream: func(t *testing.T, prefix string) map[string]int {
			t.Helper()
			req, _ := http.NewRequestWithContext(queryCtx(t), http.MethodGet, "http://"+srv.MonitorAddr+"/connz?subs=1", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("connz: %v", err)
			}
			defer resp.Body.Close()
			var connz struct {
				Connections []struct {
					Subs []string `json:"subscriptions_list"`
				} `json:"connections"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&connz); err != nil {
				t.Fatalf("connz: %v", err)
			}
			got := map[string]int{}
			for _, c := range connz.Connections {
				for _, s := range c.Subs {
					if strings.HasPrefix(s, prefix) {
						got[s]++
					}
				}
			}
			return got
		},
		stop:   srv.Stop,
		start:  srv.Start,
		pause:  srv.Pause,
		resume: srv.Resume,
	}
}

// inbox records what a Handler receives.
type inbox struct {
	mu   sync.Mutex
	msgs []message
	note chan struct{} // cap 1: something arrived
}

type message struct{ topic, payload string }

func newInbox() *inbox { return &inbox{note: make(chan struct{}, 1)} }

func (in *inbox) handle(topic string, payload []byte) {
	in.mu.Lock()
	in.msgs = append(in.msgs, message{topic, string(payload)})
	in.mu.Unlock()
	select {
	case in.note <- struct{}{}:
	default:
	}
}

func (in *inbox) snapshot() []message {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]message(nil), in.msgs...)
}

func (in *inbox) has(topic, payload string) bool {
	for _, m := range in.snapshot() {
		if m.topic == topic && m.payload == payload {
			return true
		}
	}
	return false
}

const waitLimit = 20 * time.Second

// waitFor blocks until cond holds over what arrived, woken by each arrival.
func (in *inbox) waitFor(t *testing.T, what string, cond func([]message) bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		msgs := in.snapshot()
		if cond(msgs) {
			return
		}
		select {
		case <-in.note:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; received %d: %v", what, len(msgs), truncate(msgs))
		}
	}
}

func truncate(msgs []message) []message {
	if len(msgs) > 10 {
		return msgs[len(msgs)-10:]
	}
	return msgs
}

// eventually polls check until it returns nil, for state that sends no
// signal (server-side interest, health).
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
	}
}

// expectUpstream waits until the backbone shows exactly want (channel to
// subscription count) among the channels starting with prefix.
func expectUpstream(t *testing.T, bb *backbone, prefix string, want map[string]int) {
	t.Helper()
	eventually(t, fmt.Sprintf("interest under %q", prefix), func() error {
		got := bb.upstream(t, prefix)
		if len(got) != len(want) {
			return fmt.Errorf("%d channels on the backbone, want %d", len(got), len(want))
		}
		for ch, n := range want {
			if got[ch] != n {
				return fmt.Errorf("%q has %d subscriptions, want %d", ch, got[ch], n)
			}
		}
		return nil
	})
}

func ones(topics ...string) map[string]int {
	m := make(map[string]int, len(topics))
	for _, t := range topics {
		m[t] = 1
	}
	return m
}
