package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// streamCases run, in this order, against one backbone of every kind that
// keeps history. Each uses its own topic prefix; "outage" goes last since
// it takes the backbone down.
var streamCases = []struct {
	name string
	body func(t *testing.T, bb *backbone)
}{
	{"concurrent-offsets", testStreamConcurrentOffsets},
	{"size", testStreamSize},
	{"query", testStreamQuery},
	{"read-creates", testStreamReadCreates},
	{"ttl", testStreamTTL},
	{"flushall", testStreamFlushAll},
	{"cluster-keys", testStreamClusterKeys},
	{"closed", testStreamClosed},
	{"hang", testStreamHang},
	{"outage", testStreamOutage},
}

func TestStream(t *testing.T) {
	for _, kind := range backboneKinds {
		if kind.name == "nats" {
			continue // NATS core keeps no history (TestNATSIsNoStreamer)
		}
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			bb := kind.setup(t)
			for _, c := range streamCases {
				t.Run(c.name, func(t *testing.T) { c.body(t, bb) })
			}
		})
	}
}

func TestNATSIsNoStreamer(t *testing.T) {
	if _, ok := any((*natsBroker)(nil)).(Streamer); ok {
		t.Fatal("*natsBroker implements Streamer: the gateway would offer history over NATS core")
	}
}

// openStreamer attaches a node that keeps history.
func openStreamer(t *testing.T, bb *backbone, h Handler) Streamer {
	t.Helper()
	b := bb.open(t, h)
	s, ok := b.(Streamer)
	if !ok {
		t.Fatalf("%T does not implement Streamer", b)
	}
	return s
}

// mustSubscribeAny is mustSubscribe for a Streamer that is also a Broker.
func mustSubscribeAny(t *testing.T, b any, topics ...string) {
	t.Helper()
	if len(topics) > 0 {
		mustSubscribe(t, b.(Broker), topics...)
	}
}

// streamInbox records the stream-form messages a Handler receives, per
// topic, and what was wrong with them: not in stream form, or, within an
// epoch, an offset that is not the one after the last.
type streamInbox struct {
	mu   sync.Mutex
	got  map[string][]streamMsg
	bad  []string
	note chan struct{}
}

type streamMsg struct {
	Offset         uint64
	Epoch, Payload string
}

func newStreamInbox() *streamInbox {
	return &streamInbox{got: map[string][]streamMsg{}, note: make(chan struct{}, 1)}
}

func (in *streamInbox) handle(topic string, b []byte) {
	off, epoch, payload, ok := ParseStream(b)
	in.mu.Lock()
	if !ok {
		in.bad = append(in.bad, fmt.Sprintf("%s: not in stream form: %q", topic, b))
	} else {
		m := streamMsg{off, string(epoch), string(payload)}
		if prev := in.got[topic]; len(prev) > 0 {
			if last := prev[len(prev)-1]; last.Epoch == m.Epoch && m.Offset != last.Offset+1 {
				in.bad = append(in.bad, fmt.Sprintf("%s: offset %d after %d", topic, m.Offset, last.Offset))
			}
		}
		in.got[topic] = append(in.got[topic], m)
	}
	in.mu.Unlock()
	select {
	case in.note <- struct{}{}:
	default:
	}
}

func (in *streamInbox) topic(topic string) []streamMsg {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.got[topic])
}

// waitN waits until topic has n messages, and fails on anything wrong.
func (in *streamInbox) waitN(t *testing.T, topic string, n int) []streamMsg {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		in.mu.Lock()
		bad, got := slices.Clone(in.bad), len(in.got[topic])
		in.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("handler saw: %v", bad)
		}
		if got >= n {
			return in.topic(topic)
		}
		select {
		case <-in.note:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %d messages on %s; got %d: %+v", n, topic, got, in.topic(topic))
		}
	}
}

func mustPublishStream(t *testing.T, s Streamer, topic, payload string, p StreamPolicy) Position {
	t.Helper()
	pos, err := s.PublishStream(ctxFor(t), topic, []byte(payload), p)
	if err != nil {
		t.Fatalf("PublishStream(%q): %v", topic, err)
	}
	if !validEpoch(pos.Epoch) {
		t.Fatalf("PublishStream(%q) gave epoch %q", topic, pos.Epoch)
	}
	return pos
}

func mustReadStream(t *testing.T, s Streamer, topic string, q StreamQuery, p StreamPolicy) (Position, []Publication) {
	t.Helper()
	pos, pubs, err := s.ReadStream(ctxFor(t), topic, q, p)
	if err != nil {
		t.Fatalf("ReadStream(%q, %+v): %v", topic, q, err)
	}
	if !validEpoch(pos.Epoch) {
		t.Fatalf("ReadStream(%q) gave epoch %q", topic, pos.Epoch)
	}
	return pos, pubs
}

func validEpoch(e string) bool { return e != "" && len(e) <= 16 && !strings.Contains(e, ":") }

// offsets lists the offsets of pubs.
func offsets(pubs []Publication) []uint64 {
	out := make([]uint64, len(pubs))
	for i, p := range pubs {
		out[i] = p.Offset
	}
	return out
}

func span(from, to uint64) []uint64 {
	out := []uint64{}
	for o := from; o <= to; o++ {
		out = append(out, o)
	}
	return out
}

var keepAll = StreamPolicy{Size: 1000, TTL: time.Minute}

// testStreamConcurrentOffsets: publishers on two nodes, two goroutines
// each, on one topic: the backbone gives offsets 1..N with no gaps, both
// nodes receive every publication in offset order under one epoch, each
// under the offset its PublishStream returned, and ReadStream returns
// them all.
func testStreamConcurrentOffsets(t *testing.T, bb *backbone) {
	const topic = "so.a"
	const perGoroutine = 50
	ins := []*streamInbox{newStreamInbox(), newStreamInbox()}
	nodes := make([]Streamer, len(ins))
	for i, in := range ins {
		nodes[i] = openStreamer(t, bb, in.handle)
		mustSubscribeAny(t, nodes[i], topic)
	}
	var (
		mu   sync.Mutex
		sent = map[uint64]string{} // offset returned -> payload
		ep   = map[string]bool{}
		wg   sync.WaitGroup
		errs = make(chan error, 4)
	)
	for i, n := range nodes {
		for g := range 2 {
			wg.Go(func() {
				for k := range perGoroutine {
					payload := fmt.Sprintf("n%d:g%d:%d\xff", i, g, k)
					pos, err := n.PublishStream(context.Background(), topic, []byte(payload), keepAll)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					if _, dup := sent[pos.Offset]; dup {
						errs <- fmt.Errorf("offset %d given twice", pos.Offset)
					}
					sent[pos.Offset] = payload
					ep[pos.Epoch] = true
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("PublishStream: %v", err)
	}
	const total = 4 * perGoroutine
	if len(ep) != 1 {
		t.Fatalf("publishes got epochs %v, want one", ep)
	}
	epoch := ""
	for e := range ep {
		epoch = e
	}
	for o := uint64(1); o <= total; o++ {
		if _, ok := sent[o]; !ok {
			t.Fatalf("offset %d never returned; offsets must be 1..%d", o, total)
		}
	}
	for i, in := range ins {
		got := in.waitN(t, topic, total)
		if len(got) != total {
			t.Fatalf("node %d received %d, want %d", i, len(got), total)
		}
		for k, m := range got {
			if want := (streamMsg{uint64(k + 1), epoch, sent[uint64(k+1)]}); m != want {
				t.Fatalf("node %d: message %d is %+v, want %+v", i, k, m, want)
			}
		}
	}
	pos, pubs := mustReadStream(t, nodes[1], topic, StreamQuery{Limit: 1000}, keepAll)
	if pos != (Position{total, epoch}) {
		t.Fatalf("ReadStream position %+v, want {%d %s}", pos, total, epoch)
	}
	if !slices.Equal(offsets(pubs), span(1, total)) {
		t.Fatalf("ReadStream offsets %v, want 1..%d", offsets(pubs), total)
	}
	for _, p := range pubs {
		if string(p.Payload) != sent[p.Offset] {
			t.Fatalf("ReadStream: offset %d holds %q, want %q", p.Offset, p.Payload, sent[p.Offset])
		}
	}
}

// testStreamSize: a stream keeps exactly the last Size publications, and
// follows a Size that changes.
func testStreamSize(t *testing.T, bb *backbone) {
	s := openStreamer(t, bb, newStreamInbox().handle)
	const topic = "sz.a"
	p := StreamPolicy{Size: 5, TTL: time.Minute}
	for i := 1; i <= 12; i++ {
		mustPublishStream(t, s, topic, fmt.Sprint("m", i), p)
	}
	expect := func(p StreamPolicy, want []uint64) {
		t.Helper()
		pos, pubs := mustReadStream(t, s, topic, StreamQuery{Limit: 100}, p)
		if !slices.Equal(offsets(pubs), want) {
			t.Fatalf("held %v, want %v", offsets(pubs), want)
		}
		if pos.Offset != want[len(want)-1] {
			t.Fatalf("position %d, want %d", pos.Offset, want[len(want)-1])
		}
		for _, pub := range pubs {
			if got := string(pub.Payload); got != fmt.Sprint("m", pub.Offset) {
				t.Fatalf("offset %d holds %q", pub.Offset, got)
			}
		}
	}
	expect(p, span(8, 12))
	// Smaller: the next publish trims to it; larger: it grows again.
	mustPublishStream(t, s, topic, "m13", StreamPolicy{Size: 3, TTL: time.Minute})
	expect(p, span(11, 13))
	mustPublishStream(t, s, topic, "m14", StreamPolicy{Size: 6, TTL: time.Minute})
	expect(p, span(11, 14))
	// Size below 1 counts as 1.
	mustPublishStream(t, s, topic, "m15", StreamPolicy{Size: 0, TTL: time.Minute})
	expect(p, span(15, 15))
}

// testStreamQuery: Since, Last and Limit select what ReadStream returns,
// oldest first.
func testStreamQuery(t *testing.T, bb *backbone) {
	s := openStreamer(t, bb, newStreamInbox().handle)
	const topic = "q.a"
	var epoch string
	for i := 1; i <= 10; i++ {
		epoch = mustPublishStream(t, s, topic, fmt.Sprint("m", i), keepAll).Epoch
	}
	tests := []struct {
		q    StreamQuery
		want []uint64
	}{
		{StreamQuery{}, nil},
		{StreamQuery{Since: 3}, nil},
		{StreamQuery{Limit: 100}, span(1, 10)},
		{StreamQuery{Limit: 1}, span(1, 1)},
		{StreamQuery{Since: 3, Limit: 100}, span(4, 10)},
		{StreamQuery{Since: 3, Limit: 2}, span(4, 5)},
		{StreamQuery{Since: 9, Limit: 100}, span(10, 10)},
		{StreamQuery{Since: 10, Limit: 100}, nil},
		{StreamQuery{Since: 20, Limit: 100}, nil},
		{StreamQuery{Last: 3, Limit: 100}, span(8, 10)},
		{StreamQuery{Last: 3, Limit: 2}, span(8, 9)},
		{StreamQuery{Last: 50, Limit: 100}, span(1, 10)},
		{StreamQuery{Last: 3, Since: 1, Limit: 100}, span(8, 10)},
	}
	for _, tt := range tests {
		pos, pubs := mustReadStream(t, s, topic, tt.q, keepAll)
		if pos != (Position{10, epoch}) {
			t.Errorf("%+v: position %+v, want {10 %s}", tt.q, pos, epoch)
		}
		if got := offsets(pubs); !slices.Equal(got, tt.want) {
			t.Errorf("%+v: offsets %v, want %v", tt.q, got, tt.want)
		}
		for _, p := range pubs {
			if string(p.Payload) != fmt.Sprint("m", p.Offset) {
				t.Errorf("%+v: offset %d holds %q", tt.q, p.Offset, p.Payload)
			}
		}
	}
	// The payloads returned are the caller's.
	_, pubs := mustReadStream(t, s, topic, StreamQuery{Last: 2, Limit: 2}, keepAll)
	pubs[0].Payload[0] = 'X'
	if _, again := mustReadStream(t, s, topic, StreamQuery{Last: 2, Limit: 2}, keepAll); string(again[0].Payload) != "m9" {
		t.Fatalf("writing to a returned payload changed the stream: %q", again[0].Payload)
	}
}

// testStreamReadCreates: reading a topic without a stream makes one (offset
// 0, an epoch) that the next read and the first publish keep.
func testStreamReadCreates(t *testing.T, bb *backbone) {
	in := newStreamInbox()
	s := openStreamer(t, bb, in.handle)
	const topic = "rc.a"
	mustSubscribeAny(t, s, topic)
	pos, pubs := mustReadStream(t, s, topic, StreamQuery{Limit: 10}, keepAll)
	if pos.Offset != 0 || len(pubs) != 0 {
		t.Fatalf("new stream: %+v with %d publications, want offset 0 and none", pos, len(pubs))
	}
	if again, _ := mustReadStream(t, s, topic, StreamQuery{}, keepAll); again != pos {
		t.Fatalf("second read %+v, want %+v", again, pos)
	}
	if got := mustPublishStream(t, s, topic, "first", keepAll); got != (Position{1, pos.Epoch}) {
		t.Fatalf("first publish %+v, want {1 %s}", got, pos.Epoch)
	}
	if got := in.waitN(t, topic, 1); got[0] != (streamMsg{1, pos.Epoch, "first"}) {
		t.Fatalf("received %+v", got[0])
	}
}

// testStreamTTL: publishes within the TTL keep the stream; once it has
// gone a TTL without one, it is gone: a read finds a new epoch at offset
// 0, which the next publish keeps, at offset 1.
func testStreamTTL(t *testing.T, bb *backbone) {
	s := openStreamer(t, bb, newStreamInbox().handle)
	const topic = "ttl.a"
	p := StreamPolicy{Size: 10, TTL: 200 * time.Millisecond}
	first := mustPublishStream(t, s, topic, "a", p)
	// Kept alive by publishing more often than the TTL, for longer.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 2; i <= 8; i++ {
		<-tick.C
		if pos := mustPublishStream(t, s, topic, "a", p); pos != (Position{uint64(i), first.Epoch}) {
			t.Fatalf("publish %d within the TTL: %+v, want {%d %s}", i, pos, i, first.Epoch)
		}
	}
	// Reads do not keep it.
	var fresh Position
	eventually(t, "the stream to expire", func() error {
		pos, pubs := mustReadStream(t, s, topic, StreamQuery{Limit: 10}, p)
		if pos.Epoch == first.Epoch {
			if pos.Offset != 8 || len(pubs) != 8 {
				return fmt.Errorf("unexpired stream at %+v holding %d, want offset 8 and all", pos, len(pubs))
			}
			return errors.New("not expired yet")
		}
		if pos.Offset != 0 || len(pubs) != 0 {
			t.Fatalf("expired stream reads %+v with %d publications, want offset 0 and none", pos, len(pubs))
		}
		fresh = pos
		return nil
	})
	if pos := mustPublishStream(t, s, topic, "b", p); pos != (Position{1, fresh.Epoch}) {
		t.Fatalf("publish after expiry %+v, want {1 %s}", pos, fresh.Epoch)
	}
	// A stream left to expire after a publish starts again on publish too.
	// Nothing signals an expiry, and any call in between would be one
	// more publish or a read that starts it afresh: wait past the TTL.
	time.Sleep(p.TTL + 50*time.Millisecond)
	if pos := mustPublishStream(t, s, topic, "c", p); pos.Epoch == fresh.Epoch || pos.Offset != 1 {
		t.Fatalf("publish after expiry %+v, want a new epoch (was %s) at 1", pos, fresh.Epoch)
	}
}

// testStreamFlushAll: Redis losing its data (FLUSHALL) changes the epoch.
func testStreamFlushAll(t *testing.T, bb *backbone) {
	if bb.flush == nil {
		t.Skip("no data to flush")
	}
	s := openStreamer(t, bb, newStreamInbox().handle)
	for _, read := range []bool{true, false} {
		topic := fmt.Sprint("fl.", read)
		before := mustPublishStream(t, s, topic, "a", keepAll)
		mustPublishStream(t, s, topic, "b", keepAll)
		bb.flush(t)
		if read {
			pos, pubs := mustReadStream(t, s, topic, StreamQuery{Limit: 10}, keepAll)
			if pos.Epoch == before.Epoch || pos.Offset != 0 || len(pubs) != 0 {
				t.Fatalf("read after FLUSHALL: %+v with %d publications; want a new epoch at 0 (was %s)", pos, len(pubs), before.Epoch)
			}
		}
		if pos := mustPublishStream(t, s, topic, "c", keepAll); pos.Epoch == before.Epoch || pos.Offset != 1 {
			t.Fatalf("publish after FLUSHALL: %+v, want a new epoch (was %s) at 1", pos, before.Epoch)
		}
	}
}

// trickyTopics are topics whose braces would make a naive hash tag of
// them land elsewhere than the shard channel.
var trickyTopics = []string{"a", "{a}b", "{}x", "}{", "{", "}", "x{}{y}", "{user1000}.following", "a{b}c{d}", "{{a}}", "chat.room.1"}

// testStreamClusterKeys: every key of a topic's stream is in the slot of
// its shard channel, by the server's own count, and the script runs there
// for topics that hold braces.
func testStreamClusterKeys(t *testing.T, bb *backbone) {
	if bb.keySlot == nil {
		t.Skip("only a cluster has slots")
	}
	in := newStreamInbox()
	s := openStreamer(t, bb, in.handle)
	topics := slices.Clone(trickyTopics)
	for i := range 20 {
		topics = append(topics, fmt.Sprintf("ck.%d", i))
	}
	mustSubscribeAny(t, s, topics...)
	for _, topic := range topics {
		meta, pubs := streamKeys(topic)
		want := bb.keySlot(t, topic)
		for _, key := range []string{meta, pubs} {
			if got := bb.keySlot(t, key); got != want {
				t.Errorf("key %q is in slot %d, channel %q in %d", key, got, topic, want)
			}
		}
		mustPublishStream(t, s, topic, "x", keepAll)
		if got := in.waitN(t, topic, 1); got[0].Offset != 1 || got[0].Payload != "x" {
			t.Errorf("%q: received %+v", topic, got[0])
		}
		if _, pubs := mustReadStream(t, s, topic, StreamQuery{Limit: 10}, keepAll); len(pubs) != 1 {
			t.Errorf("%q: read %d publications, want 1", topic, len(pubs))
		}
	}
}

// testStreamClosed: after Close, both calls fail with ErrClosed.
func testStreamClosed(t *testing.T, bb *backbone) {
	s := openStreamer(t, bb, newStreamInbox().handle)
	if err := s.(Broker).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PublishStream(ctxFor(t), "cl.a", []byte("x"), keepAll); !errors.Is(err, ErrClosed) {
		t.Errorf("PublishStream after Close = %v, want ErrClosed", err)
	}
	if _, _, err := s.ReadStream(ctxFor(t), "cl.a", StreamQuery{}, keepAll); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadStream after Close = %v, want ErrClosed", err)
	}
}

// testStreamHang: a backbone that stops answering makes PublishStream
// fail with ErrUnavailable within its context's deadline, and at once
// after that until it answers again.
func testStreamHang(t *testing.T, bb *backbone) {
	if bb.pause == nil {
		t.Skip("no single process to pause")
	}
	s := openStreamer(t, bb, newStreamInbox().handle)
	const topic = "hg.a"
	mustPublishStream(t, s, topic, "before", keepAll)
	bb.pause()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			bb.resume()
		}
	}
	t.Cleanup(resume)
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := s.PublishStream(ctx, topic, []byte("during"), keepAll)
	if took := time.Since(start); took > deadline+100*time.Millisecond {
		t.Errorf("PublishStream to a hung backbone took %v with a %v deadline", took, deadline)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("PublishStream to a hung backbone = %v, want ErrUnavailable", err)
	}
	start = time.Now()
	if _, _, err := s.ReadStream(ctxFor(t), topic, StreamQuery{}, keepAll); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ReadStream while Health is non-nil = %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("ReadStream while Health is non-nil took %v, want an immediate failure", took)
	}
	resume()
	eventually(t, "Health after the hang", s.(Broker).Health)
	mustPublishStream(t, s, topic, "after", keepAll)
}

// testStreamOutage: with the backbone down both calls fail with
// ErrUnavailable; after it is back they work again, and a backbone that
// lost its data (a killed Redis) gives a new epoch, starting at 1.
func testStreamOutage(t *testing.T, bb *backbone) {
	in := newStreamInbox()
	s := openStreamer(t, bb, in.handle)
	b := s.(Broker)
	const topic = "out.a"
	mustSubscribeAny(t, s, topic)
	before := mustPublishStream(t, s, topic, "before", keepAll)
	in.waitN(t, topic, 1) // on its way still, the kill could drop it

	down := bb.kill
	if down == nil {
		down = bb.stop
	}
	down()
	eventually(t, "Health to report the outage", func() error {
		if b.Health() == nil {
			return errors.New("Health is nil")
		}
		return nil
	})
	if _, err := s.PublishStream(ctxFor(t), topic, []byte("during"), keepAll); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("PublishStream while down = %v, want ErrUnavailable", err)
	}
	if _, _, err := s.ReadStream(ctxFor(t), topic, StreamQuery{Limit: 10}, keepAll); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ReadStream while down = %v, want ErrUnavailable", err)
	}

	bb.start()
	var after Position
	eventually(t, "PublishStream after the outage", func() error {
		var err error
		after, err = s.PublishStream(ctxFor(t), topic, []byte("after"), keepAll)
		return err
	})
	lost := bb.name != "memory" // a memory bus that was stopped keeps its streams
	switch {
	case lost && (after.Epoch == before.Epoch || after.Offset != 1):
		t.Fatalf("after losing its data: %+v, want a new epoch (was %s) at 1", after, before.Epoch)
	case !lost && after != (Position{before.Offset + 1, before.Epoch}):
		t.Fatalf("after the outage: %+v, want {%d %s}", after, before.Offset+1, before.Epoch)
	}
	got := in.waitN(t, topic, 2)
	if last := got[len(got)-1]; last != (streamMsg{after.Offset, after.Epoch, "after"}) {
		t.Fatalf("received %+v last, want the publish after the outage", last)
	}
}

func TestSlotTags(t *testing.T) {
	tags := slotTags()
	for slot, tag := range tags {
		if tag == "" || strings.ContainsAny(tag, "{}") || len(tag) > 4 {
			t.Fatalf("slot %d: tag %q", slot, tag)
		}
		if got := keySlot(tag); int(got) != slot {
			t.Fatalf("tag %q of slot %d hashes to %d", tag, slot, got)
		}
	}
	for _, topic := range trickyTopics {
		checkStreamKeys(t, topic)
	}
}

func checkStreamKeys(t *testing.T, topic string) {
	t.Helper()
	meta, pubs := streamKeys(topic)
	if meta == pubs || !strings.HasSuffix(meta, ":"+topic) || !strings.HasSuffix(pubs, ":"+topic) {
		t.Fatalf("keys of %q: %q, %q", topic, meta, pubs)
	}
	want := keySlot(topic)
	for _, key := range []string{meta, pubs} {
		if got := keySlot(key); got != want {
			t.Fatalf("key %q in slot %d, channel %q in %d", key, got, topic, want)
		}
	}
}

// FuzzStreamKeys: whatever the topic, its keys share its slot.
func FuzzStreamKeys(f *testing.F) {
	for _, s := range trickyTopics {
		f.Add(s)
	}
	f.Fuzz(checkStreamKeys)
}

func TestNewEpoch(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		e := newEpoch()
		if len(e) != epochLen || strings.ContainsAny(e, ":{}") {
			t.Fatalf("epoch %q", e)
		}
		if seen[e] {
			t.Fatalf("epoch %q drawn twice in 1000", e)
		}
		seen[e] = true
	}
}
