package gateway_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/subsock/subsock/gateway"
)

// sample is a value with every JSON kind; it must arrive unchanged
// through either codec (integers stay integers, floats stay floats).
var sample = map[string]any{
	"n":   42,
	"neg": -7,
	"big": 1 << 40,
	"f":   1.5,
	"s":   "héllo \"quoted\" \\ \u0001",
	"b":   true,
	"z":   nil,
	"a":   []any{1, "two", 3.25, false},
	"m":   map[string]any{"k": "v", "nested": map[string]any{"x": -0.5}},
}

// TestE2ERequests runs the request/reply exchanges over each way of
// choosing a codec (JSON offered, none offered, MessagePack offered).
func TestE2ERequests(t *testing.T) {
	n := startNode(t, gateway.Config{})
	for _, c := range allCodecs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testRequests(t, n, c)
		})
	}
}

func testRequests(t *testing.T, n *node, c wireCodec) {
	cl := dialWS(t, n, c)
	topic := "req." + c.name

	// ping with and without an id.
	cl.sendEnv(t, envelope{{"op", "ping"}, {"id", 7}})
	if r := cl.next(t); r.op != "pong" || !r.hasID || r.id != 7 {
		t.Fatalf("ping id 7: %v, want pong id 7", r)
	}
	cl.sendEnv(t, envelope{{"op", "ping"}})
	if r := cl.next(t); r.op != "pong" || r.hasID {
		t.Fatalf("ping without id: %v, want pong without id", r)
	}

	// A sub without an id is not acknowledged: the next reply is the pong.
	cl.sendEnv(t, envelope{{"op", "sub"}, {"topics", []string{topic + ".quiet"}}})
	cl.sendEnv(t, envelope{{"op", "ping"}, {"id", 8}})
	if r := cl.next(t); r.op != "pong" || r.id != 8 {
		t.Fatalf("after a sub without id: %v, want pong id 8 (no ack)", r)
	}

	// A large id and a 256-byte topic (the longest allowed) are accepted.
	cl.subscribe(t, 1<<53, strings.Repeat("t", 256))
	cl.subscribe(t, 1, topic, topic+".other")

	// pub with an id: acknowledged, and delivered to the publisher's own
	// subscription with the value intact.
	cl.sendEnv(t, envelope{{"op", "pub"}, {"id", 2}, {"topic", topic}, {"data", sample}})
	gotAck, gotMsg := false, false
	for !gotAck || !gotMsg {
		r := cl.next(t)
		switch {
		case r.op == "ack" && r.id == 2 && !gotAck:
			gotAck = true
		case r.op == "msg" && !gotMsg:
			gotMsg = true
			if r.hasID || r.topic != topic || !reflect.DeepEqual(r.data, norm(sample)) {
				t.Fatalf("msg %v, want topic %s data %v", r, topic, norm(sample))
			}
		default:
			t.Fatalf("unexpected reply %v while waiting for ack 2 and the msg", r)
		}
	}

	// An error reply carries the request's id.
	cl.sendEnv(t, envelope{{"op", "pub"}, {"id", 3}, {"topic", "bad topic"}, {"data", 1}})
	if r := cl.next(t); r.op != "err" || r.id != 3 || r.code != "invalid_topic" || r.msg == "" {
		t.Fatalf("pub to a bad topic: %v, want err id 3 invalid_topic with a message", r)
	}

	// unsub stops delivery: the node counts no subscriber left on the
	// topic, and a later message on another topic arrives with nothing
	// before it.
	cl.expectAck(t, 4, envelope{{"op", "unsub"}, {"id", 4}, {"topics", []string{topic}}})
	hc := newHTTPClient(t)
	if subs := publishOK(t, hc, n, topic, "application/json", []byte(`"after unsub"`)); subs != 0 {
		t.Fatalf("publish after unsub reached %d subscribers, want 0", subs)
	}
	if subs := publishOK(t, hc, n, topic+".other", "application/json", []byte(`"still here"`)); subs != 1 {
		t.Fatalf("publish to the remaining topic reached %d subscribers, want 1", subs)
	}
	if r := cl.next(t); r.op != "msg" || r.topic != topic+".other" || r.data != "still here" {
		t.Fatalf("after unsub: %v, want only the message on %s.other", r, topic)
	}
	// Unsubscribing from a topic not held is not an error.
	cl.expectAck(t, 5, envelope{{"op", "unsub"}, {"id", 5}, {"topics", []string{"never.subscribed"}}})
}

// TestE2ECrossCodec checks that a publisher's value reaches subscribers of
// either codec unchanged.
func TestE2ECrossCodec(t *testing.T) {
	n := startNode(t, gateway.Config{})
	for _, pub := range bothCodecs {
		for _, sub := range bothCodecs {
			t.Run(pub.name+"_to_"+sub.name, func(t *testing.T) {
				t.Parallel()
				topic := "cross." + pub.name + "." + sub.name
				s := dialWS(t, n, sub)
				s.subscribe(t, 1, topic)
				p := dialWS(t, n, pub)
				p.expectAck(t, 9, envelope{{"op", "pub"}, {"id", 9}, {"topic", topic}, {"data", sample}})
				r := s.next(t)
				if r.op != "msg" || r.topic != topic || r.hasID {
					t.Fatalf("subscriber got %v, want a msg on %s", r, topic)
				}
				if !reflect.DeepEqual(r.data, norm(sample)) {
					t.Fatalf("data %#v\nwant %#v", r.data, norm(sample))
				}
			})
		}
	}
}

// TestE2EMalformed sends bad requests; each gets an err with the right
// code (and the id when it could be read), and the connection stays usable.
func TestE2EMalformed(t *testing.T) {
	const maxSubs, maxTopics = 8, 16
	n := startNode(t, gateway.Config{MaxSubsPerConn: maxSubs, MaxTopicsPerRequest: maxTopics})
	many := func(prefix string, k int) []string {
		out := make([]string, k)
		for i := range out {
			out[i] = fmt.Sprintf("%s.%d", prefix, i)
		}
		return out
	}
	idFirst := envelope{{"id", 12}, {"op", "sub"}, {"topics", []string{"a", "b"}}}
	truncated := func(b []byte) []byte { return b[:len(b)-3] }
	type tc struct {
		name   string
		setup  []string // topics subscribed (and acked) first
		env    envelope // the bad request
		raw    map[string][]byte
		code   string
		id     uint64
		hasID  bool
		unsubd []string // topics that must have no subscriber afterwards
	}
	cases := []tc{
		{name: "syntax", raw: map[string][]byte{
			"json":    []byte(`{"op":"sub","topics":[`),
			"msgpack": {0x83, 0xa2, 'o', 'p', 0xa3, 's', 'u'}, // truncated map
		}, code: "bad_request"},
		// The id was read before the input ended, so the reply carries it.
		{name: "truncated_after_id", raw: map[string][]byte{
			"json":    truncated(codecJSON.encode(t, idFirst)),
			"msgpack": truncated(codecMsgpack.encode(t, idFirst)),
		}, code: "bad_request", id: 12, hasID: true},
		{name: "never_used_byte", raw: map[string][]byte{
			"json":    []byte(`}{`),
			"msgpack": {0xc1},
		}, code: "bad_request"},
		{name: "not_a_map", raw: map[string][]byte{
			"json":    []byte(`["sub",1]`),
			"msgpack": {0x92, 0xa3, 's', 'u', 'b', 0x01},
		}, code: "bad_request"},
		{name: "topics_string", env: envelope{{"op", "sub"}, {"id", 2}, {"topics", "x"}}, code: "bad_request", id: 2, hasID: true},
		{name: "topics_numbers", env: envelope{{"op", "sub"}, {"id", 3}, {"topics", []int{1, 2}}}, code: "bad_request", id: 3, hasID: true},
		{name: "topics_missing", env: envelope{{"op", "sub"}, {"id", 4}}, code: "bad_request", id: 4, hasID: true},
		{name: "id_string", env: envelope{{"op", "sub"}, {"id", "7"}, {"topics", []string{"a"}}}, code: "bad_request"},
		{name: "id_negative", env: envelope{{"op", "ping"}, {"id", -1}}, code: "bad_request"},
		{name: "op_missing", env: envelope{{"id", 5}, {"topics", []string{"a"}}}, code: "bad_request", id: 5, hasID: true},
		{name: "op_number", env: envelope{{"id", 6}, {"op", 1}}, code: "bad_request", id: 6, hasID: true},
		{name: "op_unknown", env: envelope{{"id", 7}, {"op", "fly"}}, code: "unknown_op", id: 7, hasID: true},
		{name: "op_server_side", env: envelope{{"id", 8}, {"op", "msg"}, {"topic", "a"}, {"data", 1}}, code: "unknown_op", id: 8, hasID: true},
		{name: "too_many_subscriptions_at_once", env: envelope{{"op", "sub"}, {"id", 9}, {"topics", many("at.once", maxSubs+1)}},
			code: "too_many_subscriptions", id: 9, hasID: true, unsubd: many("at.once", maxSubs+1)},
		{name: "too_many_subscriptions_over_time", setup: many("held", maxSubs-2),
			env:  envelope{{"op", "sub"}, {"id", 10}, {"topics", many("more", 3)}},
			code: "too_many_subscriptions", id: 10, hasID: true, unsubd: many("more", 3)},
		{name: "too_many_topics_in_one_request", env: envelope{{"op", "unsub"}, {"id", 11}, {"topics", many("x", maxTopics+1)}},
			code: "too_large", id: 11, hasID: true},
	}
	for i, topic := range []string{"", "a b", strings.Repeat("a", 257), "café", "a..b", ".a", "a.", "a.*.b", "a.>", "tab\there", "nul\x00"} {
		id := uint64(100 + 2*i)
		cases = append(cases,
			tc{name: fmt.Sprintf("sub_invalid_topic_%d", i), env: envelope{{"op", "sub"}, {"id", id}, {"topics", []string{"ok.one", topic}}},
				code: "invalid_topic", id: id, hasID: true, unsubd: []string{"ok.one"}},
			tc{name: fmt.Sprintf("pub_invalid_topic_%d", i), env: envelope{{"op", "pub"}, {"id", id + 1}, {"topic", topic}, {"data", "x"}},
				code: "invalid_topic", id: id + 1, hasID: true})
	}
	cases = append(cases, tc{name: "invalid_topic_without_id", env: envelope{{"op", "sub"}, {"topics", []string{"a b"}}}, code: "invalid_topic"})

	for _, c := range bothCodecs {
		t.Run(c.name, func(t *testing.T) {
			for _, tt := range cases {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					cl := dialWS(t, n, c)
					if len(tt.setup) > 0 {
						cl.subscribe(t, 1, tt.setup...)
					}
					b, ok := tt.raw[c.name]
					if !ok {
						b = c.encode(t, tt.env)
					}
					cl.send(t, b)
					r := cl.next(t)
					if r.op != "err" || r.code != tt.code || r.msg == "" {
						t.Fatalf("reply to %q: %v, want err %s with a message", b, r, tt.code)
					}
					if r.hasID != tt.hasID || r.id != tt.id {
						t.Fatalf("reply to %q: %v, want id %d present=%v", b, r, tt.id, tt.hasID)
					}
					expectUsable(t, cl, "usable."+c.name+"."+tt.name)
					for _, topic := range tt.unsubd {
						if cnt := publishOK(t, newHTTPClient(t), n, topic, "application/json", []byte("0")); cnt != 0 {
							t.Fatalf("rejected request left %d subscribers on %s", cnt, topic)
						}
					}
				})
			}
		})
	}
}

// expectUsable subscribes to topic, publishes to it and expects the ack
// and the message back: the connection still works.
func expectUsable(t testing.TB, cl *wsClient, topic string) {
	t.Helper()
	cl.subscribe(t, 1000, topic)
	cl.sendEnv(t, envelope{{"op", "pub"}, {"id", 1001}, {"topic", topic}, {"data", "still usable"}})
	gotAck, gotMsg := false, false
	for !gotAck || !gotMsg {
		r := cl.next(t)
		switch {
		case r.op == "ack" && r.id == 1001:
			gotAck = true
		case r.op == "msg" && r.topic == topic && r.data == "still usable":
			gotMsg = true
		default:
			t.Fatalf("after the bad request: %v, want ack 1001 and the message", r)
		}
	}
}

// TestE2EAckedSubscriptionIsLive: once a sub is acknowledged, a message
// published at once is delivered. The ack must not run ahead of the node's
// upstream interest in the topic.
func TestE2EAckedSubscriptionIsLive(t *testing.T) {
	n := startNode(t, gateway.Config{})
	for _, c := range bothCodecs {
		t.Run(c.name, func(t *testing.T) {
			cl := dialWS(t, n, c)
			for i := range 20 {
				topic := fmt.Sprintf("live.%s.%d", c.name, i)
				cl.expectAck(t, 1, envelope{{"op", "sub"}, {"id", 1}, {"topics", []string{topic}}})
				cl.sendEnv(t, envelope{{"op", "pub"}, {"id", 2}, {"topic", topic}, {"data", i}})
				// The ping is a barrier: the pong is queued after anything the
				// pub produced on this connection.
				cl.sendEnv(t, envelope{{"op", "ping"}, {"id", 3}})
				gotAck, gotMsg := false, false
				for r := cl.next(t); r.op != "pong"; r = cl.next(t) {
					switch {
					case r.op == "ack" && r.id == 2:
						gotAck = true
					case r.op == "msg" && r.topic == topic && r.data == int64(i):
						gotMsg = true
					default:
						t.Fatalf("unexpected %v", r)
					}
				}
				if !gotAck {
					t.Fatalf("topic %d: the pub was not acknowledged before the pong", i)
				}
				if !gotMsg {
					t.Fatalf("topic %d (%s): the message published right after the sub ack was never delivered", i, topic)
				}
			}
		})
	}
}
