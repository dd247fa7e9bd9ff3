package hub

import (
	"bytes"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/subsock/subsock/poller"
	"github.com/subsock/subsock/proto"
	"github.com/subsock/subsock/registry"
)

// sink records what a member was sent, and how.
type sink struct {
	got     [][]byte
	prompt  []bool
	overrun bool // answer poller.ErrOverflow, as a cut slow consumer
}

func (k *sink) add(b []byte, prompt bool) error {
	if k.overrun {
		return poller.ErrOverflow
	}
	k.got = append(k.got, b)
	k.prompt = append(k.prompt, prompt)
	return nil
}
func (k *sink) Enqueue(b []byte) error       { return k.add(b, false) }
func (k *sink) EnqueuePrompt(b []byte) error { return k.add(b, true) }

type member struct {
	m   Member
	out sink
}

func (s *member) Member() *Member { return &s.m }

func newMember(cid uint64, wire uint8) *member {
	s := &member{}
	s.m.Out, s.m.CID, s.m.Wire = &s.out, cid, wire
	s.m.Live.Store(true)
	return s
}

func newHub(cfg Config) *Hub[*member] {
	return New(registry.New[*member](registry.Config{}), cfg)
}

// Deliver builds each wire's message once and queues the very same bytes
// on every member of that wire; it leaves out the publisher of an
// echo:false relay (on this node only), an SSE stream whose head is not
// out, and nobody else.
func TestDeliverEncodesOncePerWire(t *testing.T) {
	h := newHub(Config{Node: "n1"})
	const topic = "room.1"
	members := []*member{
		newMember(1, WireJSON), newMember(2, WireJSON), newMember(3, WireMsgpack),
		newMember(4, WireMsgpack), newMember(5, WireSSE), newMember(6, WireSSE),
	}
	members[5].m.Live.Store(false)
	for _, s := range members {
		h.Reg.Subscribe(topic, s)
	}
	data := []byte(`{"text":"hi"}`)
	h.Deliver(topic, AppendRelayNoEcho(nil, proto.FormatJSON, "n1", 2, data))

	want := map[uint8][]byte{}
	for w := uint8(0); w < uint8(NWires); w++ {
		b, err := BuildFor(w, topic, proto.FormatJSON, data)
		if err != nil {
			t.Fatal(err)
		}
		want[w] = b
	}
	var first [NWires][]byte
	for _, s := range members {
		cid, got := s.m.CID, s.out.got
		switch {
		case cid == 2 || cid == 6:
			if len(got) != 0 {
				t.Errorf("member %d was sent %d messages, want none", cid, len(got))
			}
			continue
		case len(got) != 1:
			t.Fatalf("member %d was sent %d messages, want 1", cid, len(got))
		}
		if !bytes.Equal(got[0], want[s.m.Wire]) {
			t.Errorf("member %d (wire %s) got %q, want %q", cid, WireName(s.m.Wire), got[0], want[s.m.Wire])
		}
		if first[s.m.Wire] == nil {
			first[s.m.Wire] = got[0]
		} else if &first[s.m.Wire][0] != &got[0][0] {
			t.Errorf("member %d got its own copy: a wire's message must be built once and shared", cid)
		}
	}
	if n := h.MsgsOut.Load(); n != 4 {
		t.Errorf("MsgsOut = %d, want 4", n)
	}

	// The same echo:false relay from another node leaves nobody out.
	before := len(members[1].out.got)
	h.Deliver(topic, AppendRelayNoEcho(nil, proto.FormatJSON, "n2", 2, data))
	if len(members[1].out.got) != before+1 {
		t.Error("a relay marked echo:false by another node skipped a local member")
	}
}

// A group of at most SmallGroup members is queued promptly, a larger one
// in turn; a wire that cannot carry the message is skipped and counted, a
// member cut as slow does not stop the pass.
func TestDeliverPromptOverflowAndConvert(t *testing.T) {
	h := newHub(Config{SmallGroup: 2})
	small, large := []*member{newMember(1, WireJSON), newMember(2, WireJSON)}, []*member{}
	for _, s := range small {
		h.Reg.Subscribe("small", s)
	}
	for i := range 3 {
		s := newMember(uint64(10+i), WireJSON)
		large = append(large, s)
		h.Reg.Subscribe("large", s)
	}
	large[0].out.overrun = true
	relay := AppendRelay(nil, proto.FormatJSON, []byte(`1`))
	h.Deliver("small", relay)
	h.Deliver("large", relay)
	for _, s := range small {
		if len(s.out.prompt) != 1 || !s.out.prompt[0] {
			t.Errorf("small group member %d: prompt %v, want [true]", s.m.CID, s.out.prompt)
		}
	}
	for _, s := range large[1:] {
		if len(s.out.prompt) != 1 || s.out.prompt[0] {
			t.Errorf("large group member %d: prompt %v, want [false]", s.m.CID, s.out.prompt)
		}
	}

	// A MessagePack map with an integer key, which JSON cannot express,
	// reaches the MessagePack member only.
	j, mp := newMember(20, WireJSON), newMember(21, WireMsgpack)
	h.Reg.Subscribe("bin", j)
	h.Reg.Subscribe("bin", mp)
	h.Deliver("bin", AppendRelay(nil, proto.FormatMsgpack, []byte{0x81, 0x01, 0x02}))
	if len(j.out.got) != 0 || len(mp.out.got) != 1 || h.ConvertErrors.Load() != 1 {
		t.Fatalf("json %d, msgpack %d messages, %d convert errors; want 0, 1, 1", len(j.out.got), len(mp.out.got), h.ConvertErrors.Load())
	}
	// A payload too short to be a relay is dropped.
	h.Deliver("small", []byte{byte(proto.FormatJSON) | relayNoEcho, 9})
	if len(small[0].out.got) != 1 {
		t.Fatal("a truncated relay was delivered")
	}
}

// FuzzSplitRelay: any bytes are read without panic, and what AppendRelay /
// AppendRelayNoEcho wrote reads back as written.
func FuzzSplitRelay(f *testing.F) {
	f.Add([]byte{0x01, 'x'}, "n", uint64(3), true)
	f.Add([]byte{}, "", uint64(0), false)
	f.Fuzz(func(t *testing.T, data []byte, node string, cid uint64, noEcho bool) {
		_, _, _, _ = SplitRelay(data, node)
		if len(node) > 255 || cid == 0 {
			return
		}
		var relay []byte
		if noEcho {
			relay = AppendRelayNoEcho(nil, proto.FormatJSON, node, cid, data)
		} else {
			relay = AppendRelay(nil, proto.FormatJSON, data)
		}
		fm, d, skip, ok := SplitRelay(relay, node)
		if !ok || fm != proto.FormatJSON || !bytes.Equal(d, data) || (noEcho && skip != cid) || (!noEcho && skip != 0) {
			t.Fatalf("round trip: ok %v format %v data %q skip %d", ok, fm, d, skip)
		}
	})
}

// nullSink takes every delivery and keeps none.
type nullSink struct{ n atomic.Uint64 }

func (k *nullSink) Enqueue([]byte) error       { k.n.Add(1); return nil }
func (k *nullSink) EnqueuePrompt([]byte) error { k.n.Add(1); return nil }

// BenchmarkHubDeliver is the fan-out's own cost, sockets left out: one
// message to a group of 10,000 JSON members. allocs/op stays at the
// message's own builds whatever the group's size.
func BenchmarkHubDeliver(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := newHub(Config{})
			var k nullSink
			for i := range n {
				s := &member{}
				s.m.Out, s.m.CID = &k, uint64(i+1)
				h.Reg.Subscribe("t", s)
			}
			relay := AppendRelay(nil, proto.FormatJSON, []byte(`{"price":101.25,"symbol":"ACME"}`))
			b.ReportAllocs()
			for b.Loop() {
				h.Deliver("t", relay)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// A payload with a mark byte goes to Config.Marked, not to the group.
func TestDeliverMarked(t *testing.T) {
	var got []byte
	h := newHub(Config{Marked: func(topic string, p []byte) { got = p }})
	s := newMember(1, WireJSON)
	h.Reg.Subscribe("t", s)
	h.Deliver("t", []byte{0xFE, 1, 2})
	if len(got) != 3 || len(s.out.got) != 0 {
		t.Fatalf("marked payload: handler got %v, member %d messages", got, len(s.out.got))
	}
	h.Deliver("t", nil)
	if len(s.out.got) != 0 {
		t.Fatal("an empty payload was delivered")
	}
}
