package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/gateway"
)

// TestE2EMemoryReturns: 1,000 connections each subscribed to 1,000 topics
// of its own (1M subscriptions on 1M topics) leave, and the node's memory
// comes back: the registry, the Router and the memory broker shrink their
// maps instead of keeping the storm's high-water mark.
func TestE2EMemoryReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("1M subscriptions; skipped with -short")
	}
	if raceEnabled {
		// The race detector's shadow memory takes the process past 1.4 GiB
		// for this storm and never gives it back, which the rest of the
		// suite would then run beside.
		t.Skip("1M subscriptions under -race hold 1.4 GiB; TestE2EMemoryReturnsRace runs a smaller storm")
	}
	testMemoryReturns(t, 1000, 1000)
}

// TestE2EMemoryReturnsRace is TestE2EMemoryReturns at a size the race
// detector runs in a second (100,000 subscriptions), so that
// `go test -race` still exercises the storm and its departure.
func TestE2EMemoryReturnsRace(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 subscriptions; skipped with -short")
	}
	if !raceEnabled {
		t.Skip("without -race, TestE2EMemoryReturns runs the full storm")
	}
	testMemoryReturns(t, 200, 500)
}

// testMemoryReturns runs the storm twice and checks that the memory comes
// back each time.
//
// Not all of it can: the Go runtime keeps metadata sized by the peak heap
// for good (a span structure for every span the heap held at once, GC
// bitmaps), about 3 % of the peak: some 12 MiB after this storm's 430 MiB,
// with no live object left, as a program that only fills and drops maps
// shows too. So the RSS after must be within 20 % of the RSS before plus
// 5 % of what the storm added; the Go heap itself (objects, the room in
// their spans, stacks) must give back all but 5 % of what the storm took.
// Under -race only the heap is checked: the detector's shadow memory is
// never returned to the kernel.
// nodeTopics is what a node holds on its bus for itself: its control
// topics (see control.go).
const nodeTopics = 2

func testMemoryReturns(t *testing.T, conns, perConn int) {
	bus := broker.NewMemoryBus()
	n := startNode(t, gateway.Config{
		// Released topics leave the Router (and the broker) after Linger;
		// the default 2 s would only make the test wait.
		Router:     broker.RouterConfig{Linger: 50 * time.Millisecond},
		OpenBroker: func(h broker.Handler) (broker.Broker, error) { return bus.Attach(h), nil },
	})
	// One connection comes and goes first, so that what any first
	// connection sets up for good (poller buffers, pools) is in the baseline.
	warm := dialWS(t, n, codecJSON)
	warm.subscribe(t, 1, "warm.up")
	warm.close()
	eventually(t, "the warm-up connection to leave", func() bool {
		st := n.g.Stats()
		return st.Connections == 0 && st.Subscriptions == 0 && st.BrokerTopics == 0 && bus.Topics() == nodeTopics
	})
	before := settledMemory(t)
	first := memoryStorm(t, n, bus, conns, perConn, before)
	if took, left := first.peak.heap-before.heap, first.after.heap-min(first.after.heap, before.heap); left > took/20 {
		t.Errorf("the Go heap kept %.1f MiB of the %.1f MiB the storm took (%.1f%%), want at most 5%%",
			mib(left), mib(took), pct(left, took))
	}
	if !raceEnabled {
		if limit := before.rss + before.rss/5 + (first.peak.rss-before.rss)/20; first.after.rss > limit {
			t.Errorf("RSS after the storm left is %.1f MiB, more than the %.1f MiB allowed: 120%% of the %.1f MiB before plus 5%% of the %.1f MiB the storm added",
				mib(first.after.rss), mib(limit), mib(before.rss), mib(first.peak.rss-before.rss))
		}
	}
	// The same storm again: what the runtime kept from the first one is
	// reused, so a node that has lived through a storm comes back to its
	// pre-storm figure, within 20 %, and storms do not accumulate.
	second := memoryStorm(t, n, bus, conns, perConn, first.after)
	if !raceEnabled && second.after.rss > first.after.rss+first.after.rss/5 {
		t.Errorf("RSS after a second storm is %.1f MiB, more than 120%% of the %.1f MiB before it",
			mib(second.after.rss), mib(first.after.rss))
	}
	if second.after.heap > first.after.heap+(second.peak.heap-first.after.heap)/20 {
		t.Errorf("the Go heap kept %.1f MiB after a second storm, %.1f MiB before it", mib(second.after.heap), mib(first.after.heap))
	}
}

// stormFigures are the memory figures at a storm's peak and after it left.
type stormFigures struct{ peak, after memFigures }

// memoryStorm subscribes conns connections to perConn distinct topics each,
// closes them all, waits until the node holds nothing, and logs the figures.
func memoryStorm(t *testing.T, n *node, bus *broker.MemoryBus, conns, perConn int, before memFigures) stormFigures {
	t.Helper()
	start := time.Now()
	held, err := dialStormClients(n.addr, conns, perConn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(held) })
	total := conns * perConn
	if st := n.g.Stats(); st.Subscriptions != total || st.Topics != total {
		t.Fatalf("after the storm: %+v, want %d subscriptions and topics", st, total)
	}
	eventually(t, "every topic to be held upstream", func() bool {
		return n.g.Stats().BrokerTopics == total && bus.Topics() == total+nodeTopics
	})
	subscribed := time.Since(start)
	var f stormFigures
	f.peak = settledMemory(t)

	start = time.Now()
	closeAll(held)
	eventually(t, "the registry, the Router and the broker to empty", func() bool {
		st := n.g.Stats()
		return st.Connections == 0 && st.Subscriptions == 0 && st.Topics == 0 && st.BrokerTopics == 0 && bus.Topics() == nodeTopics
	})
	emptied := time.Since(start)
	f.after = settledMemory(t)

	t.Logf("%d connections × %d topics subscribed in %v, gone in %v",
		conns, perConn, subscribed.Round(time.Millisecond), emptied.Round(time.Millisecond))
	t.Logf("RSS before %.1f MiB, peak %.1f MiB, after %.1f MiB (%.0f%% of before); Go heap before %.1f MiB, peak %.1f MiB, after %.1f MiB",
		mib(before.rss), mib(f.peak.rss), mib(f.after.rss), pct(f.after.rss, before.rss), mib(before.heap), mib(f.peak.heap), mib(f.after.heap))
	return f
}

// closeAll closes every connection in held and forgets it, so that the
// clients' sockets do not stay live through the measurement.
func closeAll(held []net.Conn) {
	for i, c := range held {
		if c != nil {
			_ = c.Close()
			held[i] = nil
		}
	}
}

func mib(b uint64) float64    { return float64(b) / (1 << 20) }
func pct(a, b uint64) float64 { return 100 * float64(a) / float64(b) }

// memFigures is what the process holds at one moment.
type memFigures struct {
	rss uint64 // VmRSS
	// heap is the Go heap in use: live objects, the free room in the spans
	// holding them, and goroutine stacks.
	heap uint64
}

// heapClasses add up to memFigures.heap.
var heapClasses = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/stacks:bytes",
}

// settledMemory collects garbage, returns free pages to the kernel and
// reads the figures.
func settledMemory(t testing.TB) memFigures {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	samples := make([]metrics.Sample, len(heapClasses))
	for i, name := range heapClasses {
		samples[i].Name = name
	}
	metrics.Read(samples)
	var f memFigures
	for _, s := range samples {
		if s.Value.Kind() != metrics.KindUint64 {
			t.Fatalf("runtime/metrics has no %s", s.Name)
		}
		f.heap += s.Value.Uint64()
	}
	f.rss = readRSS(t)
	return f
}

// readRSS returns the process's resident set size.
func readRSS(t testing.TB) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// "VmRSS:	  123456 kB"
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			kb, err := strconv.ParseUint(string(bytes.TrimSpace(bytes.TrimSuffix(rest, []byte("kB")))), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", sc.Text(), err)
			}
			return kb << 10
		}
	}
	t.Skip("no VmRSS in /proc/self/status")
	return 0
}

// dialStormClients opens conns raw WebSocket connections to addr, client i
// subscribed to perConn topics of its own, and returns them once every
// subscription is acknowledged. Raw connections need no goroutine each, so
// the clients add little to the process's memory; a few workers dial.
func dialStormClients(addr string, conns, perConn int) ([]net.Conn, error) {
	held, err := dialEach(conns, 16, func(i int) (net.Conn, error) { return dialStormClient(addr, i, perConn) })
	if err != nil {
		closeAll(held)
		return nil, err
	}
	return held, nil
}

// dialStormClient connects client i and subscribes it to topics
// "storm.<i>.<k>" for k < perConn, in requests of at most 256 topics (the
// default MaxTopicsPerRequest), sent back to back before reading the acks.
func dialStormClient(addr string, i, perConn int) (net.Conn, error) {
	const perReq = 256
	nc, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(waitFor))
	br, err := handshake(nc, addr, "")
	if err != nil {
		nc.Close()
		return nil, err
	}
	var out []byte
	reqs := 0
	for k := 0; k < perConn; k += perReq {
		topics := make([]string, 0, perReq)
		for j := k; j < min(k+perReq, perConn); j++ {
			topics = append(topics, "storm."+strconv.Itoa(i)+"."+strconv.Itoa(j))
		}
		req, _ := json.Marshal(map[string]any{"op": "sub", "id": reqs, "topics": topics})
		out = append(out, frame(opText, req)...)
		reqs++
	}
	if _, err := nc.Write(out); err != nil {
		nc.Close()
		return nil, err
	}
	for id := 0; id < reqs; {
		f, err := readFrame(br)
		if err != nil {
			nc.Close()
			return nil, err
		}
		if f.op == opPing {
			continue
		}
		r, err := codecJSON.decodeReply(f.payload)
		if err != nil || r.op != "ack" || r.id != uint64(id) {
			nc.Close()
			return nil, errors.Join(fmt.Errorf("reply to sub %d: %q", id, f.payload), err)
		}
		id++
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}

// BenchmarkE2EPerTopicCost reports the node's live heap per subscription
// when every subscription is on a topic of its own (per-user topics such
// as user.42.inbox): 1,000 connections × 1,000 topics on the memory
// broker. Run with -benchtime 1x; it reports B/sub.
func BenchmarkE2EPerTopicCost(b *testing.B) {
	const conns, perConn = 1000, 1000
	for range b.N {
		n := startNode(b, gateway.Config{})
		before := settledMemory(b)
		held, err := dialStormClients(n.addr, conns, perConn)
		if err != nil {
			b.Fatal(err)
		}
		after := settledMemory(b)
		if st := n.g.Stats(); st.Subscriptions != conns*perConn {
			b.Fatalf("%d subscriptions, want %d", st.Subscriptions, conns*perConn)
		}
		b.ReportMetric(float64(after.heap-before.heap)/float64(conns*perConn), "B/sub")
		closeAll(held)
		_ = n.shutdown()
	}
}
