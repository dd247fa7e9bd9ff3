package proto

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// manyTopics returns n distinct topics, enough to take the indexed paths
// that replace linear scans for long lists.
func manyTopics(n int) []string {
	ts := make([]string, n)
	for i := range ts {
		ts[i] = fmt.Sprintf("t.%d", i)
	}
	return ts
}

// jsonTopics writes topics as a JSON array.
func jsonTopics(ts []string) string {
	b, _ := json.Marshal(ts)
	return string(b)
}

// sinceOf writes a since object giving each topic the offset of its index.
func sinceOf(ts []string) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = fmt.Sprintf(`%q:{"offset":%d,"epoch":"e"}`, t, i)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func positionsMap(ts []string) map[string]Position {
	m := make(map[string]Position, len(ts))
	for i, t := range ts {
		m[t] = Position{Offset: uint64(i), Epoch: "e"}
	}
	return m
}

var longTopics = manyTopics(40)

// Cases for since and last, written in JSON and run against both codecs.
var historyRequestCases = []requestCase{
	{name: "since and last", in: `{"op":"sub","id":1,"topics":["chat.1","chat.2"],"since":{"chat.1":{"offset":41,"epoch":"a1b2"}},"last":50}`,
		want: Request{Op: OpSub, ID: 1, HasID: true, Topics: []string{"chat.1", "chat.2"},
			Since: map[string]Position{"chat.1": {Offset: 41, Epoch: "a1b2"}}, Last: 50}},
	{name: "since for every topic", in: `{"op":"sub","topics":["a","b"],"since":{"b":{"epoch":"y","offset":0},"a":{"offset":7,"epoch":"x"}}}`,
		want: Request{Op: OpSub, Topics: []string{"a", "b"}, Since: map[string]Position{"a": {7, "x"}, "b": {0, "y"}}}},
	{name: "since before topics", in: `{"since":{"a":{"offset":1,"epoch":"e"}},"op":"sub","topics":["a"]}`,
		want: Request{Op: OpSub, Topics: []string{"a"}, Since: map[string]Position{"a": {1, "e"}}}},
	{name: "since with a repeated topic", in: `{"op":"sub","topics":["a","a"],"since":{"a":{"offset":1,"epoch":"e"}}}`,
		want: Request{Op: OpSub, Topics: []string{"a", "a"}, Since: map[string]Position{"a": {1, "e"}}}},
	{name: "empty epoch", in: `{"op":"sub","topics":["a"],"since":{"a":{"offset":0,"epoch":""}}}`,
		want: Request{Op: OpSub, Topics: []string{"a"}, Since: map[string]Position{"a": {}}}},
	{name: "offset max", in: `{"op":"sub","topics":["a"],"since":{"a":{"offset":18446744073709551615,"epoch":"e"}}}`,
		want: Request{Op: OpSub, Topics: []string{"a"}, Since: map[string]Position{"a": {math.MaxUint64, "e"}}}},
	{name: "other keys in a position skipped", in: `{"op":"sub","topics":["a"],"since":{"a":{"x":[1,{"y":null}],"offset":3,"recovered":true,"recovered":1,"epoch":"e"}}}`,
		want: Request{Op: OpSub, Topics: []string{"a"}, Since: map[string]Position{"a": {3, "e"}}}},
	{name: "empty since is nil", in: `{"op":"sub","topics":["a"],"since":{}}`,
		want: Request{Op: OpSub, Topics: []string{"a"}}},
	{name: "null since and last", in: `{"op":"sub","topics":["a"],"since":null,"last":null}`,
		want: Request{Op: OpSub, Topics: []string{"a"}}},
	{name: "last alone", in: `{"op":"sub","topics":["a"],"last":18446744073709551615}`,
		want: Request{Op: OpSub, Topics: []string{"a"}, Last: math.MaxUint64}},
	{name: "last zero", in: `{"op":"sub","topics":["a"],"last":0}`, want: Request{Op: OpSub, Topics: []string{"a"}}},
	{name: "since among many topics", in: `{"op":"sub","topics":` + jsonTopics(longTopics) + `,"since":` + sinceOf(longTopics) + `}`,
		want: Request{Op: OpSub, Topics: longTopics, Since: positionsMap(longTopics)}},
	{name: "since and last ignored on unsub", in: `{"op":"unsub","topics":["a"],"since":{"a":{"offset":1,"epoch":"e"}},"last":5}`,
		want: Request{Op: OpUnsub, Topics: []string{"a"}}},
	{name: "bad since and last ignored on unsub", in: `{"op":"unsub","topics":["a"],"since":5,"last":-1}`,
		want: Request{Op: OpUnsub, Topics: []string{"a"}}},
	{name: "bad since and last ignored on pub", in: `{"op":"pub","topic":"a","data":1,"since":[],"last":"x"}`,
		want: Request{Op: OpPub, Topic: "a", Data: []byte(`1`)}},
	{name: "bad since and last ignored on ping", in: `{"op":"ping","since":{"a..b":1},"last":1.5}`,
		want: Request{Op: OpPing}},

	{name: "since an array", in: `{"op":"sub","id":1,"topics":["a"],"since":["a"]}`, code: CodeBadRequest, id: 1, hasID: true,
		frag: []string{`field "since" must be an object, got an array`}},
	{name: "since a string", in: `{"op":"sub","id":1,"topics":["a"],"since":"a"}`, code: CodeBadRequest, id: 1, hasID: true,
		frag: []string{`field "since" must be an object, got a string`}},
	{name: "since value a number", in: `{"op":"sub","id":1,"topics":["chat.1"],"since":{"chat.1":41}}`, code: CodeBadRequest, id: 1, hasID: true,
		frag: []string{`since["chat.1"] must be an object with "offset" and "epoch"`}},
	{name: "since value an array", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":[41,"e"]}}`, code: CodeBadRequest,
		frag: []string{`since["chat.1"] must be an object`, "an array"}},
	{name: "since value null", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":null}}`, code: CodeBadRequest,
		frag: []string{`since["chat.1"] must be an object`}},
	{name: "offset negative", in: `{"op":"sub","id":2,"topics":["chat.1"],"since":{"chat.1":{"offset":-1,"epoch":"e"}}}`, code: CodeBadRequest, id: 2, hasID: true,
		frag: []string{`since["chat.1"].offset must be a non-negative integer, got a negative number`}},
	{name: "offset float", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":{"offset":41.5,"epoch":"e"}}}`, code: CodeBadRequest,
		frag: []string{`since["chat.1"].offset must be a non-negative integer`}},
	{name: "offset string", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":{"offset":"41","epoch":"e"}}}`, code: CodeBadRequest,
		frag: []string{`since["chat.1"].offset must be a non-negative integer, got a string`}},
	{name: "offset missing", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":{"epoch":"e"}}}`, code: CodeBadRequest,
		frag: []string{`missing field since["chat.1"].offset`}},
	{name: "offset null", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":{"offset":null,"epoch":"e"}}}`, code: CodeBadRequest,
		frag: []string{`missing field since["chat.1"].offset`}},
	{name: "epoch a number", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":{"offset":1,"epoch":5}}}`, code: CodeBadRequest,
		frag: []string{`since["chat.1"].epoch must be a string, got`}},
	{name: "epoch an object", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":{"offset":1,"epoch":{}}}}`, code: CodeBadRequest,
		frag: []string{`since["chat.1"].epoch must be a string, got a`}},
	{name: "epoch missing", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":{"offset":1}}}`, code: CodeBadRequest,
		frag: []string{`missing field since["chat.1"].epoch`}},
	{name: "epoch null", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":{"offset":1,"epoch":null}}}`, code: CodeBadRequest,
		frag: []string{`missing field since["chat.1"].epoch`}},
	{name: "position empty", in: `{"op":"sub","topics":["chat.1"],"since":{"chat.1":{}}}`, code: CodeBadRequest,
		frag: []string{`missing field since["chat.1"].offset`}},
	{name: "since topic not in topics", in: `{"op":"sub","id":3,"topics":["chat.1"],"since":{"chat.2":{"offset":1,"epoch":"e"}}}`, code: CodeBadRequest, id: 3, hasID: true,
		frag: []string{`since names topic "chat.2" which is not in topics`}},
	{name: "since topic not among many", in: `{"op":"sub","topics":` + jsonTopics(longTopics) + `,"since":{"t.40":{"offset":1,"epoch":"e"}}}`, code: CodeBadRequest,
		frag: []string{`since names topic "t.40" which is not in topics`}},
	{name: "invalid since topic", in: `{"op":"sub","id":4,"topics":["a"],"since":{"a..b":{"offset":1,"epoch":"e"}}}`, code: CodeInvalidTopic, id: 4, hasID: true,
		frag: []string{`"a..b"`, "empty segment"}},
	{name: "wildcard since topic", in: `{"op":"sub","topics":["a"],"since":{"a.*":{"offset":1,"epoch":"e"}}}`, code: CodeInvalidTopic,
		frag: []string{`"a.*"`, "wildcard"}},
	{name: "empty since topic", in: `{"op":"sub","topics":["a"],"since":{"":{"offset":1,"epoch":"e"}}}`, code: CodeInvalidTopic,
		frag: []string{"topic is empty"}},
	{name: "duplicate since topic", in: `{"op":"sub","id":5,"topics":["a"],"since":{"a":{"offset":1,"epoch":"e"},"a":{"offset":2,"epoch":"e"}}}`, code: CodeBadRequest, id: 5, hasID: true,
		frag: []string{`duplicate topic "a" in field "since"`}},
	{name: "duplicate since topic among many", in: `{"op":"sub","topics":` + jsonTopics(longTopics) + `,"since":{"t.3":{"offset":1,"epoch":"e"},"t.3":{"offset":1,"epoch":"e"}}}`, code: CodeBadRequest,
		frag: []string{`duplicate topic "t.3" in field "since"`}},
	{name: "duplicate offset", in: `{"op":"sub","topics":["a"],"since":{"a":{"offset":1,"epoch":"e","offset":2}}}`, code: CodeBadRequest,
		frag: []string{`duplicate field since["a"].offset`}},
	{name: "duplicate epoch", in: `{"op":"sub","topics":["a"],"since":{"a":{"epoch":"e","offset":1,"epoch":"f"}}}`, code: CodeBadRequest,
		frag: []string{`duplicate field since["a"].epoch`}},
	{name: "duplicate since", in: `{"op":"sub","id":6,"topics":["a"],"since":{},"since":{}}`, code: CodeBadRequest, id: 6, hasID: true,
		frag: []string{`duplicate field "since"`}},
	{name: "topics checked before since", in: `{"op":"sub","topics":["a b"],"since":5}`, code: CodeInvalidTopic, frag: []string{`"a b"`}},
	{name: "last negative", in: `{"op":"sub","id":7,"topics":["a"],"last":-1}`, code: CodeBadRequest, id: 7, hasID: true,
		frag: []string{`field "last" must be a non-negative integer, got a negative number`}},
	{name: "last float", in: `{"op":"sub","topics":["a"],"last":2.5}`, code: CodeBadRequest,
		frag: []string{`field "last" must be a non-negative integer`}},
	{name: "last string", in: `{"op":"sub","topics":["a"],"last":"5"}`, code: CodeBadRequest,
		frag: []string{`field "last" must be a non-negative integer, got a string`}},
	{name: "last boolean", in: `{"op":"sub","topics":["a"],"last":true}`, code: CodeBadRequest,
		frag: []string{`field "last" must be a non-negative integer, got a boolean`}},
	{name: "duplicate last", in: `{"op":"sub","topics":["a"],"last":1,"last":1}`, code: CodeBadRequest,
		frag: []string{`duplicate field "last"`}},
}

func TestDecodeRequestHistory(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c Codec) {
		for _, tt := range historyRequestCases {
			t.Run(tt.name, func(t *testing.T) {
				want := tt.want
				if want.Data != nil {
					want.Data = inFormat(t, c.Format(), string(want.Data))
				}
				checkDecode(t, c, inFormat(t, c.Format(), tt.in), tt, want)
			})
		}
	})
}

// Since and last cases only one codec can express.
func TestDecodeRequestHistoryByCodec(t *testing.T) {
	jsonCases := []requestCase{
		{name: "escaped since key", in: `{"op":"sub","topics":["chat.1"],"since":{"chat\u002e1":{"\u006fffset":1,"epoch":"\u00e9"}}}`,
			want: Request{Op: OpSub, Topics: []string{"chat.1"}, Since: map[string]Position{"chat.1": {1, "é"}}}},
		{name: "escaped key of since", in: `{"op":"sub","topics":["a"],"\u0073ince":{"a":{"offset":1,"epoch":"e"}},"l\u0061st":2}`,
			want: Request{Op: OpSub, Topics: []string{"a"}, Since: map[string]Position{"a": {1, "e"}}, Last: 2}},
		{name: "whitespace in since", in: "{\"op\":\"sub\",\"topics\":[\"a\"],\"since\": { \"a\" :\n{ \"offset\" : 1 ,\t\"epoch\" : \"e\" } } }",
			want: Request{Op: OpSub, Topics: []string{"a"}, Since: map[string]Position{"a": {1, "e"}}}},
		{name: "offset with exponent", in: `{"op":"sub","topics":["a"],"since":{"a":{"offset":4e1,"epoch":"e"}}}`, code: CodeBadRequest,
			frag: []string{`since["a"].offset`, "fraction or exponent"}},
		{name: "offset beyond uint64", in: `{"op":"sub","topics":["a"],"since":{"a":{"offset":18446744073709551616,"epoch":"e"}}}`, code: CodeBadRequest,
			frag: []string{`since["a"].offset is larger than 2^64-1`}},
		{name: "escaped invalid since key", in: `{"op":"sub","topics":["a"],"since":{"a\u0020b":{"offset":1,"epoch":"e"}}}`, code: CodeInvalidTopic,
			frag: []string{`"a b"`, "space"}},
		{name: "duplicate escaped since key", in: `{"op":"sub","topics":["a"],"since":{"a":{"offset":1,"epoch":"e"},"\u0061":{"offset":1,"epoch":"e"}}}`, code: CodeBadRequest,
			frag: []string{`duplicate topic "a"`}},
		{name: "last with exponent", in: `{"op":"sub","topics":["a"],"last":1e2}`, code: CodeBadRequest,
			frag: []string{`field "last"`, "exponent"}},
	}
	for _, tt := range jsonCases {
		t.Run("JSON/"+tt.name, func(t *testing.T) { checkDecode(t, JSON, []byte(tt.in), tt, tt.want) })
	}

	s := func(v string) []byte { return mpOf(t, v) }
	pos := func(offset, epoch []byte) []byte { return mpPairs(t, s("offset"), offset, s("epoch"), epoch) }
	sub := func(since []byte) []byte {
		return mpPairs(t, s("op"), s("sub"), s("topics"), mpOf(t, []string{"a"}), s("since"), since)
	}
	mpCases := []struct {
		requestCase
		raw []byte
	}{
		{requestCase{name: "offset as uint64", want: Request{Op: OpSub, Topics: []string{"a"}, Since: map[string]Position{"a": {math.MaxUint64, "e"}}}},
			sub(mpPairs(t, s("a"), pos(mpOf(t, uint64(math.MaxUint64)), s("e"))))},
		{requestCase{name: "offset as int8", want: Request{Op: OpSub, Topics: []string{"a"}, Since: map[string]Position{"a": {5, "e"}}}},
			sub(mpPairs(t, s("a"), pos([]byte{0xd0, 5}, s("e"))))},
		{requestCase{name: "offset negative int8", code: CodeBadRequest, frag: []string{`since["a"].offset`, "negative"}},
			sub(mpPairs(t, s("a"), pos([]byte{0xd0, 0xff}, s("e"))))},
		{requestCase{name: "offset float", code: CodeBadRequest, frag: []string{`since["a"].offset must be a non-negative integer, got a float`}},
			sub(mpPairs(t, s("a"), pos(mpOf(t, 1.0), s("e"))))},
		{requestCase{name: "epoch bin", code: CodeBadRequest, frag: []string{`since["a"].epoch must be a string, got a binary`}},
			sub(mpPairs(t, s("a"), pos(mpOf(t, 1), []byte{0xc4, 1, 'e'})))},
		{requestCase{name: "since key bin", code: CodeBadRequest, frag: []string{"map key", "JSON keys are strings"}},
			sub(mpPairs(t, []byte{0xc4, 1, 'a'}, pos(mpOf(t, 1), s("e"))))},
		{requestCase{name: "last negative fixint", code: CodeBadRequest, frag: []string{`field "last"`, "negative"}},
			mpPairs(t, s("op"), s("sub"), s("topics"), mpOf(t, []string{"a"}), s("last"), []byte{0xff})},
		{requestCase{name: "last float32", code: CodeBadRequest, frag: []string{`field "last" must be a non-negative integer, got a float`}},
			mpPairs(t, s("op"), s("sub"), s("topics"), mpOf(t, []string{"a"}), s("last"), mpOf(t, float32(2)))},
	}
	for _, tt := range mpCases {
		t.Run("MessagePack/"+tt.name, func(t *testing.T) { checkDecode(t, Msgpack, tt.raw, tt.requestCase, tt.want) })
	}
}

func TestHistoryRequestRoundTrip(t *testing.T) {
	many := manyTopics(20) // more than sinceTopics holds without allocating
	reqs := []Request{
		{Op: OpSub, ID: 1, HasID: true, Topics: []string{"chat.1"}, Since: map[string]Position{"chat.1": {41, "a1b2"}}, Last: 50},
		{Op: OpSub, Topics: []string{"b", "a", "c"}, Since: map[string]Position{"c": {3, ""}, "a": {math.MaxUint64, "é\"\\"}}},
		{Op: OpSub, Topics: []string{"a"}, Last: 1},
		{Op: OpSub, Topics: []string{"a"}, Last: math.MaxUint64},
		{Op: OpSub, Topics: many, Since: positionsMap(many), Last: 300},
	}
	forEachCodec(t, func(t *testing.T, c Codec) {
		for _, r := range reqs {
			b := c.AppendRequest([]byte("prefix"), &r)
			var got Request
			if err := c.DecodeRequest(b[len("prefix"):], &got); err != nil {
				t.Fatalf("%+v: %v (%q)", r, err, b)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("round trip\n got %+v\nwant %+v", got, r)
			}
			canon(t, b[len("prefix"):], c.Format()) // the oracle accepts it
			// The same request encodes to the same bytes, whatever the
			// map's iteration order.
			for range 5 {
				if again := c.AppendRequest([]byte("prefix"), &r); string(again) != string(b) {
					t.Fatalf("encoding is not stable:\n %q\n %q", b, again)
				}
			}
		}
		// Since and Last belong to sub; other ops leave them out.
		for _, op := range []Op{OpUnsub, OpPub, OpPing, OpAuth} {
			r := Request{Op: op, Topics: []string{"a"}, Topic: "a", Data: inFormat(t, c.Format(), "1"), Token: "t",
				Since: map[string]Position{"a": {1, "e"}}, Last: 5}
			b := c.AppendRequest(nil, &r)
			m, ok := canon(t, b, c.Format()).(map[string]any)
			if !ok {
				t.Fatalf("%v: %q is not a map", op, b)
			}
			if _, has := m["since"]; has {
				t.Errorf("%v carries since: %q", op, b)
			}
			if _, has := m["last"]; has {
				t.Errorf("%v carries last: %q", op, b)
			}
		}
	})
}

func TestHistoryReplyRoundTrip(t *testing.T) {
	const awkward = "quote \" backslash \\ nul \x00 é 😀"
	many := make([]TopicPosition, 20)
	for i := range many {
		many[i] = TopicPosition{Topic: fmt.Sprintf("t.%d", i), Offset: uint64(i), Epoch: "e", Asked: i%2 == 0, Recovered: i%4 == 0}
	}
	forEachCodec(t, func(t *testing.T, c Codec) {
		data := inFormat(t, c.Format(), `{"price":1.5,"tags":["a","b"]}`)
		tests := []struct {
			name string
			b    []byte
			want Reply
		}{
			{"stream msg", c.AppendStreamMessage(nil, "chat.1", 42, "", data),
				Reply{Op: OpMsg, Topic: "chat.1", Offset: 42, Data: data}},
			{"stream msg with epoch", c.AppendStreamMessage(nil, "chat.1", 1, "x9", data),
				Reply{Op: OpMsg, Topic: "chat.1", Offset: 1, Epoch: "x9", Data: data}},
			{"stream msg offset zero", c.AppendStreamMessage(nil, "a", 0, "", data), Reply{Op: OpMsg, Topic: "a", Data: data}},
			{"stream msg offset max", c.AppendStreamMessage(nil, "a", math.MaxUint64, awkward, data),
				Reply{Op: OpMsg, Topic: "a", Offset: math.MaxUint64, Epoch: awkward, Data: data}},
			{"stream msg null data", c.AppendStreamMessage(nil, "a", 300, "e", nil),
				Reply{Op: OpMsg, Topic: "a", Offset: 300, Epoch: "e", Data: inFormat(t, c.Format(), "null")}},
			{"stream msg longTopics epoch", c.AppendStreamMessage(nil, "a", 70000, strings.Repeat("e", 300), data),
				Reply{Op: OpMsg, Topic: "a", Offset: 70000, Epoch: strings.Repeat("e", 300), Data: data}},
			{"pub ack", c.AppendPubAck(nil, 3, 58, "a1b2"), Reply{Op: OpAck, ID: 3, HasID: true, Offset: 58, Epoch: "a1b2"}},
			{"pub ack empty epoch", c.AppendPubAck(nil, 0, 1, ""), Reply{Op: OpAck, HasID: true, Offset: 1}},
			{"pub ack max", c.AppendPubAck(nil, math.MaxUint64, math.MaxUint64, awkward),
				Reply{Op: OpAck, ID: math.MaxUint64, HasID: true, Offset: math.MaxUint64, Epoch: awkward}},
			{"ack positions", c.AppendAckPositions(nil, 1, []TopicPosition{{Topic: "chat.1", Offset: 57, Epoch: "a1b2", Asked: true, Recovered: true}}),
				Reply{Op: OpAck, ID: 1, HasID: true, Positions: []TopicPosition{{Topic: "chat.1", Offset: 57, Epoch: "a1b2", Asked: true, Recovered: true}}}},
			{"ack positions in order", c.AppendAckPositions(nil, 2, []TopicPosition{
				{Topic: "z", Offset: 1, Epoch: "e"},
				{Topic: "a", Offset: 0, Epoch: "", Asked: true},
				{Topic: awkward, Offset: math.MaxUint64, Epoch: awkward, Asked: true, Recovered: true},
			}), Reply{Op: OpAck, ID: 2, HasID: true, Positions: []TopicPosition{
				{Topic: "z", Offset: 1, Epoch: "e"},
				{Topic: "a", Offset: 0, Epoch: "", Asked: true},
				{Topic: awkward, Offset: math.MaxUint64, Epoch: awkward, Asked: true, Recovered: true},
			}}},
			{"ack many positions", c.AppendAckPositions(nil, 3, many), Reply{Op: OpAck, ID: 3, HasID: true, Positions: many}},
			{"ack no positions", c.AppendAckPositions(nil, 4, nil), Reply{Op: OpAck, ID: 4, HasID: true}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := Reply{Op: OpErr, Msg: "stale", Epoch: "stale", Offset: 9, Positions: []TopicPosition{{Topic: "stale"}}}
				if err := c.DecodeReply(tt.b, &got); err != nil {
					t.Fatalf("DecodeReply(%q): %v", tt.b, err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %+v\nwant %+v", got, tt.want)
				}
				canon(t, tt.b, c.Format()) // the oracle decoder accepts it
			})
		}
	})
	if got, want := string(JSON.AppendAckPositions(nil, 4, nil)), string(JSON.AppendAck(nil, 4)); got != want {
		t.Errorf("JSON empty positions: %q, want %q", got, want)
	}
	if got, want := string(Msgpack.AppendAckPositions(nil, 4, nil)), string(Msgpack.AppendAck(nil, 4)); got != want {
		t.Errorf("MessagePack empty positions: %q, want %q", got, want)
	}
}

// The exact envelopes of docs/protocol.md: JSON byte for byte, and
// MessagePack as the same maps with the same key order.
func TestHistoryWireShapes(t *testing.T) {
	positions := []TopicPosition{{Topic: "chat.1", Offset: 57, Epoch: "a1b2", Asked: true, Recovered: true}}
	sub := Request{Op: OpSub, ID: 1, HasID: true, Topics: []string{"chat.1"}, Since: map[string]Position{"chat.1": {41, "a1b2"}}, Last: 50}
	tests := []struct {
		name string
		enc  func(c Codec, data []byte) []byte
		want string // JSON; data is {"a":1}
	}{
		{"msg", func(c Codec, d []byte) []byte { return c.AppendStreamMessage(nil, "chat.1", 42, "", d) },
			`{"op":"msg","topic":"chat.1","offset":42,"data":{"a":1}}`},
		{"msg with epoch", func(c Codec, d []byte) []byte { return c.AppendStreamMessage(nil, "chat.1", 1, "x9", d) },
			`{"op":"msg","topic":"chat.1","offset":1,"epoch":"x9","data":{"a":1}}`},
		{"ack positions", func(c Codec, _ []byte) []byte { return c.AppendAckPositions(nil, 1, positions) },
			`{"op":"ack","id":1,"positions":{"chat.1":{"offset":57,"epoch":"a1b2","recovered":true}}}`},
		{"ack positions not asked", func(c Codec, _ []byte) []byte {
			return c.AppendAckPositions(nil, 1, []TopicPosition{{Topic: "a", Offset: 2, Epoch: "e"}, {Topic: "b", Offset: 300, Epoch: "f", Asked: true}})
		}, `{"op":"ack","id":1,"positions":{"a":{"offset":2,"epoch":"e"},"b":{"offset":300,"epoch":"f","recovered":false}}}`},
		{"pub ack", func(c Codec, _ []byte) []byte { return c.AppendPubAck(nil, 3, 58, "a1b2") },
			`{"op":"ack","id":3,"offset":58,"epoch":"a1b2"}`},
		{"sub", func(c Codec, _ []byte) []byte { return c.AppendRequest(nil, &sub) },
			`{"op":"sub","id":1,"topics":["chat.1"],"since":{"chat.1":{"offset":41,"epoch":"a1b2"}},"last":50}`},
		{"sub since sorted", func(c Codec, _ []byte) []byte {
			return c.AppendRequest(nil, &Request{Op: OpSub, Topics: []string{"b", "a"}, Since: map[string]Position{"b": {2, "y"}, "a": {1, "x"}}})
		}, `{"op":"sub","topics":["b","a"],"since":{"a":{"offset":1,"epoch":"x"},"b":{"offset":2,"epoch":"y"}}}`},
		{"sub empty since, no last", func(c Codec, _ []byte) []byte {
			return c.AppendRequest(nil, &Request{Op: OpSub, Topics: []string{"a"}, Since: map[string]Position{}})
		}, `{"op":"sub","topics":["a"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.enc(JSON, []byte(`{"a":1}`)); string(got) != tt.want {
				t.Errorf("JSON:\n got %s\nwant %s", got, tt.want)
			}
			got := tt.enc(Msgpack, mp(t, `{"a":1}`))
			// The oracle encodes the JSON text member by member, in order.
			if want := mp(t, tt.want); string(got) != string(want) {
				t.Errorf("MessagePack:\n got %q\nwant %q", got, want)
			}
			var m map[string]any
			if err := msgpack.Unmarshal(got, &m); err != nil {
				t.Fatalf("vmihailenco/msgpack cannot decode %q: %v", got, err)
			}
			if cm, cj := canonValue(m), canon(t, []byte(tt.want), FormatJSON); !reflect.DeepEqual(cm, cj) {
				t.Errorf("MessagePack decodes to %#v\nwant %#v", cm, cj)
			}
		})
	}
}

func TestDecodeReplyHistory(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  Reply
		code  Code
		id    uint64
		hasID bool
		frag  string
	}{
		{name: "msg offset null", in: `{"op":"msg","topic":"a","offset":null,"epoch":null,"data":1}`,
			want: Reply{Op: OpMsg, Topic: "a", Data: []byte(`1`)}},
		{name: "msg epoch without offset", in: `{"op":"msg","topic":"a","epoch":"e","data":1}`,
			want: Reply{Op: OpMsg, Topic: "a", Epoch: "e", Data: []byte(`1`)}},
		{name: "msg positions ignored", in: `{"op":"msg","topic":"a","positions":5,"data":1}`,
			want: Reply{Op: OpMsg, Topic: "a", Data: []byte(`1`)}},
		{name: "err offset ignored", in: `{"op":"err","code":"x","offset":-1,"epoch":1,"positions":[]}`,
			want: Reply{Op: OpErr, Code: "x"}},
		{name: "pong offset ignored", in: `{"op":"pong","offset":"x"}`, want: Reply{Op: OpPong}},
		{name: "escaped positions key", in: `{"op":"ack","id":1,"\u0070\u006f\u0073\u0069\u0074\u0069\u006f\u006e\u0073":{"a":{"offset":1,"epoch":"e"}}}`,
			want: Reply{Op: OpAck, ID: 1, HasID: true, Positions: []TopicPosition{{Topic: "a", Offset: 1, Epoch: "e"}}}},
		{name: "positions empty", in: `{"op":"ack","id":1,"positions":{}}`, want: Reply{Op: OpAck, ID: 1, HasID: true}},
		{name: "positions null", in: `{"op":"ack","id":1,"positions":null}`, want: Reply{Op: OpAck, ID: 1, HasID: true}},
		{name: "recovered null is not asked", in: `{"op":"ack","id":1,"positions":{"a":{"offset":1,"epoch":"e","recovered":null}}}`,
			want: Reply{Op: OpAck, ID: 1, HasID: true, Positions: []TopicPosition{{Topic: "a", Offset: 1, Epoch: "e"}}}},
		{name: "recovered false is asked", in: `{"op":"ack","id":1,"positions":{"a":{"recovered":false,"x":1,"epoch":"e","offset":1}}}`,
			want: Reply{Op: OpAck, ID: 1, HasID: true, Positions: []TopicPosition{{Topic: "a", Offset: 1, Epoch: "e", Asked: true}}}},
		{name: "positions with offset and epoch", in: `{"op":"ack","id":1,"offset":2,"epoch":"e","positions":{"a":{"offset":1,"epoch":"e"}}}`,
			want: Reply{Op: OpAck, ID: 1, HasID: true, Offset: 2, Epoch: "e", Positions: []TopicPosition{{Topic: "a", Offset: 1, Epoch: "e"}}}},

		{name: "msg offset negative", in: `{"op":"msg","topic":"a","offset":-1,"data":1}`, code: CodeBadRequest,
			frag: `field "offset" must be a non-negative integer, got a negative number`},
		{name: "ack offset string", in: `{"op":"ack","id":2,"offset":"1"}`, code: CodeBadRequest, id: 2, hasID: true,
			frag: `field "offset" must be a non-negative integer, got a string`},
		{name: "msg epoch number", in: `{"op":"msg","topic":"a","epoch":1,"data":1}`, code: CodeBadRequest,
			frag: `field "epoch" must be a string`},
		{name: "duplicate offset", in: `{"op":"msg","topic":"a","offset":1,"offset":1,"data":1}`, code: CodeBadRequest,
			frag: `duplicate field "offset"`},
		{name: "positions an array", in: `{"op":"ack","id":3,"positions":[]}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `field "positions" must be an object, got an array`},
		{name: "position a string", in: `{"op":"ack","id":1,"positions":{"a":"1"}}`, code: CodeBadRequest, id: 1, hasID: true,
			frag: `positions["a"] must be an object with "offset" and "epoch", got a string`},
		{name: "position offset missing", in: `{"op":"ack","id":1,"positions":{"a":{"epoch":"e"}}}`, code: CodeBadRequest, id: 1, hasID: true,
			frag: `missing field positions["a"].offset`},
		{name: "position offset negative", in: `{"op":"ack","id":1,"positions":{"a":{"offset":-2,"epoch":"e"}}}`, code: CodeBadRequest, id: 1, hasID: true,
			frag: `positions["a"].offset must be a non-negative integer, got a negative number`},
		{name: "position epoch missing", in: `{"op":"ack","id":1,"positions":{"a":{"offset":1}}}`, code: CodeBadRequest, id: 1, hasID: true,
			frag: `missing field positions["a"].epoch`},
		{name: "position epoch array", in: `{"op":"ack","id":1,"positions":{"a":{"offset":1,"epoch":[]}}}`, code: CodeBadRequest, id: 1, hasID: true,
			frag: `positions["a"].epoch must be a string, got an array`},
		{name: "recovered a number", in: `{"op":"ack","id":1,"positions":{"a":{"offset":1,"epoch":"e","recovered":1}}}`, code: CodeBadRequest, id: 1, hasID: true,
			frag: `positions["a"].recovered must be a boolean, got`},
		{name: "duplicate recovered", in: `{"op":"ack","id":1,"positions":{"a":{"offset":1,"epoch":"e","recovered":true,"recovered":true}}}`, code: CodeBadRequest, id: 1, hasID: true,
			frag: `duplicate field positions["a"].recovered`},
		{name: "duplicate position topic", in: `{"op":"ack","id":1,"positions":{"a":{"offset":1,"epoch":"e"},"b":{"offset":1,"epoch":"e"},"a":{"offset":1,"epoch":"e"}}}`,
			code: CodeBadRequest, id: 1, hasID: true, frag: `duplicate topic "a" in field "positions"`},
		{name: "duplicate position topic among many", in: `{"op":"ack","id":1,"positions":` + sinceOf(append(manyTopics(30), "t.7")) + `}`,
			code: CodeBadRequest, id: 1, hasID: true, frag: `duplicate topic "t.7" in field "positions"`},
		{name: "ack positions without id", in: `{"op":"ack","positions":{"a":{"offset":1,"epoch":"e"}}}`, code: CodeBadRequest,
			frag: "ack without"},
	}
	forEachCodec(t, func(t *testing.T, c Codec) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := Reply{Op: OpAck, Msg: "stale", Epoch: "stale", Positions: []TopicPosition{{}}}
				err := c.DecodeReply(inFormat(t, c.Format(), tt.in), &got)
				if tt.code != "" {
					wantProtoError(t, err, tt.code, tt.id, tt.hasID, tt.frag)
					if !reflect.DeepEqual(got, Reply{}) {
						t.Fatalf("failed decode left %+v", got)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want := tt.want
				if want.Data != nil {
					want.Data = inFormat(t, c.Format(), string(want.Data))
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("got %+v\nwant %+v", got, want)
				}
			})
		}
	})
}
