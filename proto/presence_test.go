package proto

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// Cases for info, presence, presence_stats and a pub's echo, written in
// JSON and run against both codecs.
var presenceRequestCases = []requestCase{
	{name: "info", in: `{"op":"info","id":1}`, want: Request{Op: OpInfo, ID: 1, HasID: true}},
	{name: "info without id", in: `{"op":"info"}`, want: Request{Op: OpInfo}},
	{name: "info ignores other fields", in: `{"op":"info","id":2,"topic":5,"topics":"x","echo":"no","client":[]}`,
		want: Request{Op: OpInfo, ID: 2, HasID: true}},
	{name: "presence", in: `{"op":"presence","id":3,"topic":"chat.lobby"}`,
		want: Request{Op: OpPresence, ID: 3, HasID: true, Topic: "chat.lobby"}},
	{name: "presence_stats", in: `{"op":"presence_stats","id":4,"topic":"chat.lobby"}`,
		want: Request{Op: OpPresenceStats, ID: 4, HasID: true, Topic: "chat.lobby"}},
	{name: "presence fields in any order", in: `{"topic":"a.b","data":1,"id":5,"op":"presence"}`,
		want: Request{Op: OpPresence, ID: 5, HasID: true, Topic: "a.b"}},
	{name: "pub echo false", in: `{"op":"pub","id":6,"topic":"a","echo":false,"data":1}`,
		want: Request{Op: OpPub, ID: 6, HasID: true, Topic: "a", Data: []byte(`1`), NoEcho: true}},
	{name: "pub echo true", in: `{"op":"pub","topic":"a","data":1,"echo":true}`,
		want: Request{Op: OpPub, Topic: "a", Data: []byte(`1`)}},
	{name: "pub echo null", in: `{"op":"pub","topic":"a","data":1,"echo":null}`,
		want: Request{Op: OpPub, Topic: "a", Data: []byte(`1`)}},
	{name: "echo ignored on sub", in: `{"op":"sub","topics":["a"],"echo":"x"}`,
		want: Request{Op: OpSub, Topics: []string{"a"}}},
	{name: "echo ignored on ping", in: `{"op":"ping","echo":false}`, want: Request{Op: OpPing}},

	{name: "presence without topic", in: `{"op":"presence","id":7}`, code: CodeBadRequest, id: 7, hasID: true,
		frag: []string{`missing field "topic"`}},
	{name: "presence_stats without topic", in: `{"op":"presence_stats","id":7}`, code: CodeBadRequest, id: 7, hasID: true,
		frag: []string{`missing field "topic"`}},
	{name: "presence topic null", in: `{"op":"presence","topic":null}`, code: CodeBadRequest, frag: []string{`missing field "topic"`}},
	{name: "presence topics instead of topic", in: `{"op":"presence","id":8,"topics":["a"]}`, code: CodeBadRequest, id: 8, hasID: true,
		frag: []string{`missing field "topic"`}},
	{name: "presence topic number", in: `{"op":"presence","id":8,"topic":1}`, code: CodeBadRequest, id: 8, hasID: true,
		frag: []string{`field "topic" must be a string, got a`}},
	{name: "presence topic array", in: `{"op":"presence_stats","topic":["a"]}`, code: CodeBadRequest,
		frag: []string{`field "topic" must be a string, got an array`}},
	{name: "presence topic empty", in: `{"op":"presence","id":9,"topic":""}`, code: CodeInvalidTopic, id: 9, hasID: true,
		frag: []string{"empty"}},
	{name: "presence topic empty segment", in: `{"op":"presence","topic":"a..b"}`, code: CodeInvalidTopic,
		frag: []string{`"a..b"`, "empty segment"}},
	{name: "presence topic wildcard", in: `{"op":"presence_stats","id":9,"topic":"chat.*"}`, code: CodeInvalidTopic, id: 9, hasID: true,
		frag: []string{`"chat.*"`, "wildcard"}},
	{name: "presence topic too long", in: `{"op":"presence","topic":"` + strings.Repeat("a", 257) + `"}`, code: CodeInvalidTopic,
		frag: []string{"256"}},
	{name: "echo a string", in: `{"op":"pub","id":10,"topic":"a","data":1,"echo":"false"}`, code: CodeBadRequest, id: 10, hasID: true,
		frag: []string{`field "echo" must be a boolean, got a string`}},
	{name: "echo a number", in: `{"op":"pub","topic":"a","data":1,"echo":0}`, code: CodeBadRequest,
		frag: []string{`field "echo" must be a boolean, got a`}},
	{name: "echo an object", in: `{"op":"pub","topic":"a","data":1,"echo":{}}`, code: CodeBadRequest,
		frag: []string{`field "echo" must be a boolean, got a`}},
	{name: "duplicate echo", in: `{"op":"pub","id":11,"topic":"a","data":1,"echo":true,"echo":false}`, code: CodeBadRequest, id: 11, hasID: true,
		frag: []string{`duplicate field "echo"`}},
	{name: "topic checked before echo", in: `{"op":"pub","topic":"a b","data":1,"echo":1}`, code: CodeInvalidTopic,
		frag: []string{`"a b"`}},
	{name: "server op join", in: `{"op":"join","id":12,"topic":"a","client":"c"}`, code: CodeUnknownOp, id: 12, hasID: true,
		frag: []string{`"join"`, "server"}},
	{name: "server op unsubscribed", in: `{"op":"unsubscribed","topic":"a"}`, code: CodeUnknownOp,
		frag: []string{`"unsubscribed"`, "server"}},
}

func TestDecodeRequestPresence(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c Codec) {
		for _, tt := range presenceRequestCases {
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

// Echo and topic cases only one codec can express.
func TestDecodeRequestPresenceByCodec(t *testing.T) {
	jsonCases := []requestCase{
		{name: "escaped echo key", in: `{"op":"pub","topic":"a","data":1,"\u0065cho":false}`,
			want: Request{Op: OpPub, Topic: "a", Data: []byte(`1`), NoEcho: true}},
		{name: "escaped op", in: `{"op":"presence\u005fstats","topic":"a"}`,
			want: Request{Op: OpPresenceStats, Topic: "a"}},
		{name: "escaped invalid topic", in: `{"op":"presence","topic":"a\u0020b"}`, code: CodeInvalidTopic,
			frag: []string{`"a b"`, "space"}},
	}
	for _, tt := range jsonCases {
		t.Run("JSON/"+tt.name, func(t *testing.T) { checkDecode(t, JSON, []byte(tt.in), tt, tt.want) })
	}

	s := func(v string) []byte { return mpOf(t, v) }
	pub := func(echo []byte) []byte {
		return mpPairs(t, s("op"), s("pub"), s("topic"), s("a"), s("data"), mpOf(t, 1), s("echo"), echo)
	}
	mpCases := []struct {
		requestCase
		raw []byte
	}{
		{requestCase{name: "echo nil", want: Request{Op: OpPub, Topic: "a", Data: []byte{1}}}, pub([]byte{0xc0})},
		{requestCase{name: "echo false", want: Request{Op: OpPub, Topic: "a", Data: []byte{1}, NoEcho: true}}, pub([]byte{0xc2})},
		{requestCase{name: "echo integer", code: CodeBadRequest, frag: []string{`field "echo" must be a boolean, got an integer`}}, pub([]byte{0x00})},
		{requestCase{name: "echo bin", code: CodeBadRequest, frag: []string{`field "echo" must be a boolean, got a binary`}}, pub([]byte{0xc4, 1, 0})},
		{requestCase{name: "topic bin", code: CodeBadRequest, frag: []string{`field "topic" must be a string, got a binary`}},
			mpPairs(t, s("op"), s("presence"), s("topic"), []byte{0xc4, 1, 'a'})},
	}
	for _, tt := range mpCases {
		t.Run("MessagePack/"+tt.name, func(t *testing.T) { checkDecode(t, Msgpack, tt.raw, tt.requestCase, tt.want) })
	}
}

func TestPresenceRequestRoundTrip(t *testing.T) {
	reqs := []Request{
		{Op: OpInfo},
		{Op: OpInfo, ID: math.MaxUint64, HasID: true},
		{Op: OpPresence, ID: 1, HasID: true, Topic: "chat.lobby"},
		{Op: OpPresence, Topic: strings.Repeat("t", 256)},
		{Op: OpPresenceStats, ID: 70000, HasID: true, Topic: "a"},
		{Op: OpPub, ID: 3, HasID: true, Topic: "chat.lobby", Data: []byte(`{"text":"hi"}`), NoEcho: true},
		{Op: OpPub, Topic: "a", Data: []byte(`null`), NoEcho: true},
		{Op: OpPub, Topic: "a", Data: []byte(`[1]`)},
	}
	forEachCodec(t, func(t *testing.T, c Codec) {
		for _, r := range reqs {
			if r.Data != nil {
				r.Data = inFormat(t, c.Format(), string(r.Data))
			}
			b := c.AppendRequest([]byte("prefix"), &r)
			var got Request
			if err := c.DecodeRequest(b[len("prefix"):], &got); err != nil {
				t.Fatalf("%+v: %v (%q)", r, err, b)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("round trip\n got %+v\nwant %+v", got, r)
			}
			m, ok := canon(t, b[len("prefix"):], c.Format()).(map[string]any)
			if !ok {
				t.Fatalf("%q is not a map", b)
			}
			if _, has := m["echo"]; has != r.NoEcho {
				t.Errorf("%+v: echo on the wire = %v, want %v (%q)", r, has, r.NoEcho, b)
			}
		}
		// NoEcho belongs to pub, and info carries nothing but its id.
		for _, op := range []Op{OpSub, OpUnsub, OpPing, OpAuth, OpInfo, OpPresence, OpPresenceStats} {
			r := Request{Op: op, Topics: []string{"a"}, Topic: "a", Token: "t", NoEcho: true}
			if op == OpInfo {
				r.Topic = ""
			}
			b := c.AppendRequest(nil, &r)
			m, ok := canon(t, b, c.Format()).(map[string]any)
			if !ok {
				t.Fatalf("%v: %q is not a map", op, b)
			}
			if _, has := m["echo"]; has {
				t.Errorf("%v carries echo: %q", op, b)
			}
			if _, has := m["topic"]; has && op == OpInfo {
				t.Errorf("info carries topic: %q", b)
			}
		}
	})
}

// The exact envelopes: JSON byte for byte, and MessagePack as the same
// maps with the same key order, read back by vmihailenco/msgpack.
func TestPresenceWireShapes(t *testing.T) {
	members := []Member{{Client: "c1", User: "ada"}, {Client: "c2", User: ""}}
	tests := []struct {
		name string
		enc  func(c Codec, data []byte) []byte
		want string // JSON; data is {"a":1}
	}{
		{"join", func(c Codec, _ []byte) []byte { return c.AppendJoin(nil, "chat.1", "c1", "ada") },
			`{"op":"join","topic":"chat.1","client":"c1","user":"ada"}`},
		{"join anonymous", func(c Codec, _ []byte) []byte { return c.AppendJoin(nil, "chat.1", "c2", "") },
			`{"op":"join","topic":"chat.1","client":"c2","user":""}`},
		{"leave", func(c Codec, _ []byte) []byte { return c.AppendLeave(nil, "chat.1", "c1", "ada") },
			`{"op":"leave","topic":"chat.1","client":"c1","user":"ada"}`},
		{"unsubscribed", func(c Codec, _ []byte) []byte { return c.AppendUnsubscribed(nil, "chat.1") },
			`{"op":"unsubscribed","topic":"chat.1"}`},
		{"info ack", func(c Codec, _ []byte) []byte { return c.AppendInfoAck(nil, 1, "c1", "ada", "node-a") },
			`{"op":"ack","id":1,"client":"c1","user":"ada","node":"node-a"}`},
		{"info ack anonymous", func(c Codec, _ []byte) []byte { return c.AppendInfoAck(nil, 2, "c1", "", "") },
			`{"op":"ack","id":2,"client":"c1","user":"","node":""}`},
		{"presence ack", func(c Codec, _ []byte) []byte { return c.AppendPresenceAck(nil, 3, members) },
			`{"op":"ack","id":3,"presence":[{"client":"c1","user":"ada"},{"client":"c2","user":""}]}`},
		{"presence ack empty", func(c Codec, _ []byte) []byte { return c.AppendPresenceAck(nil, 4, nil) },
			`{"op":"ack","id":4,"presence":[]}`},
		{"presence_stats ack", func(c Codec, _ []byte) []byte { return c.AppendPresenceStatsAck(nil, 5, 3, 2) },
			`{"op":"ack","id":5,"clients":3,"users":2}`},
		{"presence_stats ack big", func(c Codec, _ []byte) []byte { return c.AppendPresenceStatsAck(nil, 5, 70000, 1<<40) },
			`{"op":"ack","id":5,"clients":70000,"users":1099511627776}`},
		{"presence_stats ack negative", func(c Codec, _ []byte) []byte { return c.AppendPresenceStatsAck(nil, 6, -1, math.MinInt) },
			`{"op":"ack","id":6,"clients":0,"users":0}`},
		{"info", func(c Codec, _ []byte) []byte { return c.AppendRequest(nil, &Request{Op: OpInfo, ID: 1, HasID: true}) },
			`{"op":"info","id":1}`},
		{"presence", func(c Codec, _ []byte) []byte {
			return c.AppendRequest(nil, &Request{Op: OpPresence, ID: 2, HasID: true, Topic: "chat.1"})
		}, `{"op":"presence","id":2,"topic":"chat.1"}`},
		{"presence_stats", func(c Codec, _ []byte) []byte {
			return c.AppendRequest(nil, &Request{Op: OpPresenceStats, ID: 3, HasID: true, Topic: "chat.1"})
		}, `{"op":"presence_stats","id":3,"topic":"chat.1"}`},
		{"pub no echo", func(c Codec, d []byte) []byte {
			return c.AppendRequest(nil, &Request{Op: OpPub, ID: 4, HasID: true, Topic: "chat.1", Data: d, NoEcho: true})
		}, `{"op":"pub","id":4,"topic":"chat.1","echo":false,"data":{"a":1}}`},
		{"pub echo", func(c Codec, d []byte) []byte {
			return c.AppendRequest(nil, &Request{Op: OpPub, ID: 4, HasID: true, Topic: "chat.1", Data: d})
		}, `{"op":"pub","id":4,"topic":"chat.1","data":{"a":1}}`},
		{"not_enabled err", func(c Codec, _ []byte) []byte {
			return c.AppendError(nil, 7, true, CodeNotEnabled, `topic "chat.1" has no presence`)
		}, `{"op":"err","id":7,"code":"not_enabled","msg":"topic \"chat.1\" has no presence"}`},
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

func TestPresenceReplyRoundTrip(t *testing.T) {
	const awkward = "quote \" backslash \\ nul \x00 é 😀"
	many := make([]Member, 20) // past a fixarray
	for i := range many {
		many[i] = Member{Client: fmt.Sprintf("c%d", i), User: strings.Repeat("u", i)}
	}
	forEachCodec(t, func(t *testing.T, c Codec) {
		tests := []struct {
			name string
			b    []byte
			want Reply
		}{
			{"join", c.AppendJoin(nil, "chat.1", "c1", "ada"), Reply{Op: OpJoin, Topic: "chat.1", Client: "c1", User: "ada"}},
			{"join anonymous", c.AppendJoin(nil, "a", "c1", ""), Reply{Op: OpJoin, Topic: "a", Client: "c1"}},
			{"join awkward", c.AppendJoin(nil, awkward, awkward, awkward), Reply{Op: OpJoin, Topic: awkward, Client: awkward, User: awkward}},
			{"leave", c.AppendLeave(nil, "chat.1", "c1", "ada"), Reply{Op: OpLeave, Topic: "chat.1", Client: "c1", User: "ada"}},
			{"leave long user", c.AppendLeave(nil, "a", "c", strings.Repeat("u", 300)),
				Reply{Op: OpLeave, Topic: "a", Client: "c", User: strings.Repeat("u", 300)}},
			{"unsubscribed", c.AppendUnsubscribed(nil, "chat.1"), Reply{Op: OpUnsubscribed, Topic: "chat.1"}},
			{"unsubscribed long topic", c.AppendUnsubscribed(nil, strings.Repeat("t", 256)),
				Reply{Op: OpUnsubscribed, Topic: strings.Repeat("t", 256)}},
			{"info ack", c.AppendInfoAck(nil, 1, "c1", "ada", "node-a"),
				Reply{Op: OpAck, ID: 1, HasID: true, Client: "c1", User: "ada", Node: "node-a"}},
			{"info ack empty", c.AppendInfoAck(nil, 0, "", "", ""), Reply{Op: OpAck, HasID: true}},
			{"info ack awkward", c.AppendInfoAck(nil, math.MaxUint64, awkward, awkward, awkward),
				Reply{Op: OpAck, ID: math.MaxUint64, HasID: true, Client: awkward, User: awkward, Node: awkward}},
			{"presence ack", c.AppendPresenceAck(nil, 2, []Member{{"c1", "ada"}, {"c2", ""}, {awkward, awkward}}),
				Reply{Op: OpAck, ID: 2, HasID: true, Presence: []Member{{"c1", "ada"}, {"c2", ""}, {awkward, awkward}}}},
			{"presence ack many", c.AppendPresenceAck(nil, 3, many), Reply{Op: OpAck, ID: 3, HasID: true, Presence: many}},
			{"presence ack empty", c.AppendPresenceAck(nil, 4, nil), Reply{Op: OpAck, ID: 4, HasID: true, Presence: []Member{}}},
			{"presence_stats ack", c.AppendPresenceStatsAck(nil, 5, 3, 2), Reply{Op: OpAck, ID: 5, HasID: true, Clients: 3, Users: 2}},
			{"presence_stats ack zero", c.AppendPresenceStatsAck(nil, 5, 0, 0), Reply{Op: OpAck, ID: 5, HasID: true}},
			{"presence_stats ack max", c.AppendPresenceStatsAck(nil, 5, math.MaxInt, 1<<40),
				Reply{Op: OpAck, ID: 5, HasID: true, Clients: math.MaxInt, Users: 1 << 40}},
			{"presence_stats ack negative", c.AppendPresenceStatsAck(nil, 5, -3, -1), Reply{Op: OpAck, ID: 5, HasID: true}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := Reply{Op: OpErr, Msg: "stale", Client: "stale", Node: "stale", Clients: 9, Presence: []Member{{"stale", ""}}}
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
}

func TestDecodeReplyPresence(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  Reply
		code  Code
		id    uint64
		hasID bool
		frag  string
	}{
		{name: "join without user", in: `{"op":"join","topic":"a","client":"c"}`, want: Reply{Op: OpJoin, Topic: "a", Client: "c"}},
		{name: "leave user null", in: `{"op":"leave","topic":"a","client":"c","user":null}`, want: Reply{Op: OpLeave, Topic: "a", Client: "c"}},
		{name: "join unknown fields", in: `{"op":"join","x":[1],"user":"u","client":"c","topic":"a","node":5,"clients":-1}`,
			want: Reply{Op: OpJoin, Topic: "a", Client: "c", User: "u"}},
		{name: "unsubscribed ignores client", in: `{"op":"unsubscribed","topic":"a","client":1,"user":[]}`,
			want: Reply{Op: OpUnsubscribed, Topic: "a"}},
		{name: "msg ignores presence fields", in: `{"op":"msg","topic":"a","data":1,"client":1,"presence":"x","clients":"y"}`,
			want: Reply{Op: OpMsg, Topic: "a", Data: []byte(`1`)}},
		{name: "ack fields null", in: `{"op":"ack","id":1,"client":null,"user":null,"node":null,"presence":null,"clients":null,"users":null}`,
			want: Reply{Op: OpAck, ID: 1, HasID: true}},
		{name: "info ack partial", in: `{"op":"ack","id":1,"client":"c"}`, want: Reply{Op: OpAck, ID: 1, HasID: true, Client: "c"}},
		{name: "member without user", in: `{"op":"ack","id":1,"presence":[{"client":"c"},{"user":null,"client":"d"}]}`,
			want: Reply{Op: OpAck, ID: 1, HasID: true, Presence: []Member{{Client: "c"}, {Client: "d"}}}},
		{name: "member other keys skipped", in: `{"op":"ack","id":1,"presence":[{"x":{"client":1},"client":"c","since":2,"user":"u"}]}`,
			want: Reply{Op: OpAck, ID: 1, HasID: true, Presence: []Member{{Client: "c", User: "u"}}}},
		{name: "clients alone", in: `{"op":"ack","id":1,"clients":7}`, want: Reply{Op: OpAck, ID: 1, HasID: true, Clients: 7}},

		{name: "join without client", in: `{"op":"join","topic":"a","user":"u"}`, code: CodeBadRequest, frag: `missing field "client"`},
		{name: "join client null", in: `{"op":"join","topic":"a","client":null}`, code: CodeBadRequest, frag: `missing field "client"`},
		{name: "join without topic", in: `{"op":"join","client":"c"}`, code: CodeBadRequest, frag: `missing field "topic"`},
		{name: "leave client number", in: `{"op":"leave","topic":"a","client":1}`, code: CodeBadRequest, frag: `field "client" must be a string, got a`},
		{name: "leave user array", in: `{"op":"leave","topic":"a","client":"c","user":[]}`, code: CodeBadRequest,
			frag: `field "user" must be a string, got an array`},
		{name: "unsubscribed without topic", in: `{"op":"unsubscribed"}`, code: CodeBadRequest, frag: `missing field "topic"`},
		{name: "unsubscribed topic object", in: `{"op":"unsubscribed","topic":{}}`, code: CodeBadRequest, frag: `field "topic" must be a string`},
		{name: "duplicate client", in: `{"op":"join","topic":"a","client":"c","client":"d"}`, code: CodeBadRequest, frag: `duplicate field "client"`},
		{name: "info ack node number", in: `{"op":"ack","id":2,"client":"c","node":1}`, code: CodeBadRequest, id: 2, hasID: true,
			frag: `field "node" must be a string, got a`},
		{name: "info ack user boolean", in: `{"op":"ack","id":2,"user":true}`, code: CodeBadRequest, id: 2, hasID: true,
			frag: `field "user" must be a string, got a boolean`},
		{name: "presence an object", in: `{"op":"ack","id":3,"presence":{"client":"c"}}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `field "presence" must be an array of objects, got a`},
		{name: "presence a string", in: `{"op":"ack","id":3,"presence":"c"}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `field "presence" must be an array of objects, got a string`},
		{name: "member a string", in: `{"op":"ack","id":3,"presence":[{"client":"c"},"d"]}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `presence[1] must be an object with "client" and "user", got a string`},
		{name: "member an array", in: `{"op":"ack","id":3,"presence":[["c","u"]]}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `presence[0] must be an object with "client" and "user", got an array`},
		{name: "member null", in: `{"op":"ack","id":3,"presence":[null]}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `presence[0] must be an object`},
		{name: "member without client", in: `{"op":"ack","id":3,"presence":[{"user":"u"}]}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `missing field presence[0].client`},
		{name: "member client null", in: `{"op":"ack","id":3,"presence":[{"client":null}]}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `missing field presence[0].client`},
		{name: "member client number", in: `{"op":"ack","id":3,"presence":[{"client":"a"},{"client":2}]}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `presence[1].client must be a string, got a`},
		{name: "member user object", in: `{"op":"ack","id":3,"presence":[{"client":"a","user":{}}]}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `presence[0].user must be a string, got a`},
		{name: "member duplicate client", in: `{"op":"ack","id":3,"presence":[{"client":"a","client":"b"}]}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `duplicate field presence[0].client`},
		{name: "member duplicate user", in: `{"op":"ack","id":3,"presence":[{"user":"a","client":"c","user":"b"}]}`, code: CodeBadRequest, id: 3, hasID: true,
			frag: `duplicate field presence[0].user`},
		{name: "clients negative", in: `{"op":"ack","id":4,"clients":-1,"users":0}`, code: CodeBadRequest, id: 4, hasID: true,
			frag: `field "clients" must be a non-negative integer, got a negative number`},
		{name: "users string", in: `{"op":"ack","id":4,"clients":1,"users":"2"}`, code: CodeBadRequest, id: 4, hasID: true,
			frag: `field "users" must be a non-negative integer, got a string`},
		{name: "users float", in: `{"op":"ack","id":4,"users":1.5}`, code: CodeBadRequest, id: 4, hasID: true,
			frag: `field "users" must be a non-negative integer`},
		{name: "clients beyond int", in: `{"op":"ack","id":4,"clients":18446744073709551615}`, code: CodeBadRequest, id: 4, hasID: true,
			frag: `field "clients" is larger than`},
		{name: "duplicate presence", in: `{"op":"ack","id":4,"presence":[],"presence":[]}`, code: CodeBadRequest, id: 4, hasID: true,
			frag: `duplicate field "presence"`},
		{name: "presence ack without id", in: `{"op":"ack","presence":[]}`, code: CodeBadRequest, frag: "ack without"},
		{name: "client op", in: `{"op":"presence","id":5,"topic":"a"}`, code: CodeUnknownOp, id: 5, hasID: true, frag: "clients"},
		{name: "client op info", in: `{"op":"info","id":5}`, code: CodeUnknownOp, id: 5, hasID: true, frag: `"info"`},
	}
	forEachCodec(t, func(t *testing.T, c Codec) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := Reply{Op: OpAck, Msg: "stale", User: "stale", Users: 3, Presence: []Member{{}}}
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

// A client written before these additions keeps working: the new acks are
// still acks with the request's id, and reading only the v1 fields of a
// reply gives what it gave before.
func TestPresenceBackwardCompatible(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c Codec) {
		acks := [][]byte{
			c.AppendInfoAck(nil, 9, "c", "u", "n"),
			c.AppendPresenceAck(nil, 9, []Member{{"c", "u"}}),
			c.AppendPresenceStatsAck(nil, 9, 1, 1),
		}
		for _, b := range acks {
			var r Reply
			if err := c.DecodeReply(b, &r); err != nil {
				t.Fatalf("%q: %v", b, err)
			}
			if r.Op != OpAck || !r.HasID || r.ID != 9 || r.Positions != nil || r.Offset != 0 || r.Data != nil {
				t.Errorf("%q decodes to %+v", b, r)
			}
		}
		// A v1 pub (no echo) still echoes.
		var r Request
		if err := c.DecodeRequest(inFormat(t, c.Format(), `{"op":"pub","topic":"a","data":1}`), &r); err != nil || r.NoEcho {
			t.Errorf("v1 pub: %+v, %v", r, err)
		}
	})
}

func TestOpClasses(t *testing.T) {
	requests := []Op{OpSub, OpUnsub, OpPub, OpPing, OpAuth, OpInfo, OpPresence, OpPresenceStats}
	replies := []Op{OpAck, OpErr, OpPong, OpMsg, OpJoin, OpLeave, OpUnsubscribed}
	for _, op := range requests {
		if !op.IsRequest() || op.IsReply() {
			t.Errorf("%v: IsRequest %v IsReply %v, want a request", op, op.IsRequest(), op.IsReply())
		}
	}
	for _, op := range replies {
		if op.IsRequest() || !op.IsReply() {
			t.Errorf("%v: IsRequest %v IsReply %v, want a reply", op, op.IsRequest(), op.IsReply())
		}
	}
	if n := len(requests) + len(replies); n != len(opNames)-1 {
		t.Errorf("%d ops classified, %d defined", n, len(opNames)-1)
	}
	for _, op := range []Op{0, OpUnsubscribed + 1, 31, 32, 33, 64, 255} {
		if op.IsRequest() || op.IsReply() {
			t.Errorf("op %d is classified", op)
		}
	}
	// The numeric values are stable: relays and stored data may hold them.
	stable := map[Op]uint8{OpSub: 1, OpAuth: 5, OpAck: 6, OpMsg: 9, OpInfo: 10, OpPresence: 11, OpPresenceStats: 12,
		OpJoin: 13, OpLeave: 14, OpUnsubscribed: 15}
	for op, n := range stable {
		if uint8(op) != n {
			t.Errorf("%v = %d, want %d", op, uint8(op), n)
		}
	}
}
