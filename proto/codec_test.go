package proto

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

var codecs = []Codec{JSON, Msgpack}

// forEachCodec runs a shared test body against every codec.
func forEachCodec(t *testing.T, body func(t *testing.T, c Codec)) {
	for _, c := range codecs {
		t.Run(c.Format().String(), func(t *testing.T) { body(t, c) })
	}
}

func TestCodecIdentity(t *testing.T) {
	tests := []struct {
		c      Codec
		name   string
		format Format
		binary bool
	}{
		{JSON, "subsock.v1.json", FormatJSON, false},
		{Msgpack, "subsock.v1.msgpack", FormatMsgpack, true},
	}
	for _, tt := range tests {
		if tt.c.Name() != tt.name || tt.c.Format() != tt.format || tt.c.Binary() != tt.binary {
			t.Errorf("%s: Name %q Format %v Binary %v", tt.name, tt.c.Name(), tt.c.Format(), tt.c.Binary())
		}
		if c, ok := ForSubprotocol(tt.name); !ok || c != tt.c {
			t.Errorf("ForSubprotocol(%q) = %v, %v", tt.name, c, ok)
		}
		if c, ok := ForFormat(tt.format); !ok || c != tt.c {
			t.Errorf("ForFormat(%v) = %v, %v", tt.format, c, ok)
		}
	}
	for _, name := range []string{"", "subsock.v1.JSON", "subsock.v2.json", "json", "subsock.v1.json "} {
		if c, ok := ForSubprotocol(name); ok || c != nil {
			t.Errorf("ForSubprotocol(%q) = %v, %v; want none", name, c, ok)
		}
	}
	if _, ok := ForFormat(0); ok {
		t.Error("ForFormat(0) found a codec")
	}
}

func TestEnumNames(t *testing.T) {
	ops := map[Op]string{OpSub: "sub", OpUnsub: "unsub", OpPub: "pub", OpPing: "ping", OpAuth: "auth",
		OpAck: "ack", OpErr: "err", OpPong: "pong", OpMsg: "msg", OpInfo: "info", OpPresence: "presence",
		OpPresenceStats: "presence_stats", OpJoin: "join", OpLeave: "leave", OpUnsubscribed: "unsubscribed",
		0: "op(0)", 200: "op(200)"}
	for op, name := range ops {
		if op.String() != name {
			t.Errorf("Op(%d).String() = %q, want %q", op, op.String(), name)
		}
		parsed, ok := ParseOp(name)
		if valid := op != 0 && op != 200; ok != valid || valid && parsed != op {
			t.Errorf("ParseOp(%q) = %v, %v", name, parsed, ok)
		}
		if op.IsRequest() == op.IsReply() && op != 0 && op != 200 {
			t.Errorf("%v is both or neither request and reply", op)
		}
	}
	for _, tt := range []struct {
		f    Format
		name string
	}{{FormatJSON, "JSON"}, {FormatMsgpack, "MessagePack"}, {0, "Format(0)"}, {9, "Format(9)"}} {
		if tt.f.String() != tt.name || tt.f.Valid() != (tt.f == FormatJSON || tt.f == FormatMsgpack) {
			t.Errorf("Format(%d): %q valid=%v", tt.f, tt.f.String(), tt.f.Valid())
		}
	}
	if FormatJSON != 1 || FormatMsgpack != 2 {
		t.Fatal("format numbers are part of the relay encoding and must not change")
	}
}

// requestCase is written in JSON; for MessagePack the oracle re-encodes
// the same envelope, so one table covers both codecs.
type requestCase struct {
	name string
	in   string
	want Request // Data given as JSON text; converted for MessagePack
	// For failures: the code, the id the error must carry, and fragments
	// its message must contain.
	code  Code
	id    uint64
	hasID bool
	frag  []string
}

var sharedRequestCases = []requestCase{
	{name: "sub", in: `{"op":"sub","id":1,"topics":["prices.AAPL","alerts"]}`,
		want: Request{Op: OpSub, ID: 1, HasID: true, Topics: []string{"prices.AAPL", "alerts"}}},
	{name: "sub without id", in: `{"op":"sub","topics":["a"]}`,
		want: Request{Op: OpSub, Topics: []string{"a"}}},
	{name: "unsub", in: `{"op":"unsub","id":2,"topics":["alerts"]}`,
		want: Request{Op: OpUnsub, ID: 2, HasID: true, Topics: []string{"alerts"}}},
	{name: "pub object", in: `{"op":"pub","id":3,"topic":"chat.lobby","data":{"text":"hi","n":[1,2.5,null,true,-7]}}`,
		want: Request{Op: OpPub, ID: 3, HasID: true, Topic: "chat.lobby", Data: []byte(`{"text":"hi","n":[1,2.5,null,true,-7]}`)}},
	{name: "pub null", in: `{"op":"pub","topic":"a","data":null}`,
		want: Request{Op: OpPub, Topic: "a", Data: []byte(`null`)}},
	{name: "pub string", in: `{"op":"pub","topic":"a","data":"x\"y"}`,
		want: Request{Op: OpPub, Topic: "a", Data: []byte(`"x\"y"`)}},
	{name: "pub number", in: `{"op":"pub","topic":"a","data":-12.5}`,
		want: Request{Op: OpPub, Topic: "a", Data: []byte(`-12.5`)}},
	{name: "pub fields in any order", in: `{"data":[1],"topic":"a.b","op":"pub","id":9}`,
		want: Request{Op: OpPub, ID: 9, HasID: true, Topic: "a.b", Data: []byte(`[1]`)}},
	{name: "ping", in: `{"op":"ping","id":4}`, want: Request{Op: OpPing, ID: 4, HasID: true}},
	{name: "ping without id", in: `{"op":"ping"}`, want: Request{Op: OpPing}},
	{name: "auth", in: `{"op":"auth","id":5,"token":"eyJ.a.b"}`,
		want: Request{Op: OpAuth, ID: 5, HasID: true, Token: "eyJ.a.b"}},
	{name: "unknown fields ignored", in: `{"op":"ping","id":4,"extra":{"deep":[1,{"x":null}]},"v":2}`,
		want: Request{Op: OpPing, ID: 4, HasID: true}},
	{name: "fields of other ops ignored", in: `{"op":"ping","topics":"x","topic":5,"token":[]}`,
		want: Request{Op: OpPing}},
	{name: "null id is no id", in: `{"op":"ping","id":null}`, want: Request{Op: OpPing}},
	{name: "id zero", in: `{"op":"ping","id":0}`, want: Request{Op: OpPing, HasID: true}},
	{name: "id max", in: `{"op":"ping","id":18446744073709551615}`,
		want: Request{Op: OpPing, ID: math.MaxUint64, HasID: true}},
	{name: "longest topic", in: `{"op":"sub","topics":["` + strings.Repeat("a", 256) + `"]}`,
		want: Request{Op: OpSub, Topics: []string{strings.Repeat("a", 256)}}},
	{name: "wildcard chars inside a segment", in: `{"op":"sub","topics":["a*b.c>d","~!"]}`,
		want: Request{Op: OpSub, Topics: []string{"a*b.c>d", "~!"}}},

	{name: "missing op", in: `{"id":7}`, code: CodeBadRequest, id: 7, hasID: true, frag: []string{`missing field "op"`}},
	{name: "null op", in: `{"op":null,"id":7}`, code: CodeBadRequest, id: 7, hasID: true, frag: []string{`"op"`}},
	{name: "op not a string", in: `{"op":7,"id":1}`, code: CodeBadRequest, id: 1, hasID: true, frag: []string{`"op" must be a string`}},
	{name: "unknown op", in: `{"op":"subscribe","id":3}`, code: CodeUnknownOp, id: 3, hasID: true, frag: []string{`"subscribe"`}},
	{name: "server op", in: `{"op":"msg","id":3}`, code: CodeUnknownOp, id: 3, hasID: true, frag: []string{`"msg"`, "server"}},
	{name: "op case matters", in: `{"op":"SUB","topics":["a"]}`, code: CodeUnknownOp, frag: []string{`"SUB"`}},
	{name: "id string", in: `{"op":"sub","id":"7","topics":["a"]}`, code: CodeBadRequest, frag: []string{`"id"`, "string"}},
	{name: "id negative", in: `{"op":"sub","id":-1,"topics":["a"]}`, code: CodeBadRequest, frag: []string{`"id"`, "negative"}},
	{name: "id fraction", in: `{"op":"ping","id":1.5}`, code: CodeBadRequest, frag: []string{`"id"`}},
	{name: "id too large", in: `{"op":"ping","id":18446744073709551616}`, code: CodeBadRequest, frag: []string{`"id"`}},
	{name: "id array", in: `{"op":"ping","id":[1]}`, code: CodeBadRequest, frag: []string{`"id"`, "array"}},
	{name: "topics string", in: `{"op":"sub","id":1,"topics":"x"}`, code: CodeBadRequest, id: 1, hasID: true,
		frag: []string{`"topics"`, "array", "a string"}},
	{name: "topics missing", in: `{"op":"unsub","id":1}`, code: CodeBadRequest, id: 1, hasID: true, frag: []string{`missing field "topics"`}},
	{name: "topics null", in: `{"op":"sub","id":1,"topics":null}`, code: CodeBadRequest, id: 1, hasID: true, frag: []string{`"topics"`}},
	{name: "topics empty", in: `{"op":"sub","id":1,"topics":[]}`, code: CodeBadRequest, id: 1, hasID: true, frag: []string{"empty"}},
	{name: "topics element", in: `{"op":"sub","id":1,"topics":["a",2]}`, code: CodeBadRequest, id: 1, hasID: true,
		frag: []string{`"topics"`, "element 1"}},
	{name: "topic empty segment", in: `{"op":"sub","id":1,"topics":["a..b"]}`, code: CodeInvalidTopic, id: 1, hasID: true,
		frag: []string{`"a..b"`, "empty segment"}},
	{name: "topic space", in: `{"op":"unsub","id":2,"topics":["ok","a b"]}`, code: CodeInvalidTopic, id: 2, hasID: true,
		frag: []string{`"a b"`, "space"}},
	{name: "topic wildcard", in: `{"op":"sub","topics":["a.*"]}`, code: CodeInvalidTopic, frag: []string{`"a.*"`, "wildcard"}},
	{name: "topic too long", in: `{"op":"sub","topics":["` + strings.Repeat("a", 257) + `"]}`, code: CodeInvalidTopic, frag: []string{"256"}},
	{name: "pub without topic", in: `{"op":"pub","id":2,"data":1}`, code: CodeBadRequest, id: 2, hasID: true, frag: []string{`missing field "topic"`}},
	{name: "pub without data", in: `{"op":"pub","id":2,"topic":"a"}`, code: CodeBadRequest, id: 2, hasID: true, frag: []string{`missing field "data"`}},
	{name: "pub topic number", in: `{"op":"pub","id":2,"topic":7,"data":1}`, code: CodeBadRequest, id: 2, hasID: true,
		frag: []string{`"topic" must be a string`}},
	{name: "pub topic empty", in: `{"op":"pub","id":2,"topic":"","data":1}`, code: CodeInvalidTopic, id: 2, hasID: true, frag: []string{"empty"}},
	{name: "pub topic wildcard", in: `{"op":"pub","topic":">","data":1}`, code: CodeInvalidTopic, frag: []string{"wildcard"}},
	{name: "pub topic trailing dot", in: `{"op":"pub","topic":"a.","data":1}`, code: CodeInvalidTopic, frag: []string{"empty segment"}},
	{name: "auth without token", in: `{"op":"auth","id":5}`, code: CodeBadRequest, id: 5, hasID: true, frag: []string{`missing field "token"`}},
	{name: "auth empty token", in: `{"op":"auth","id":5,"token":""}`, code: CodeBadRequest, id: 5, hasID: true, frag: []string{`"token"`, "empty"}},
	{name: "auth token number", in: `{"op":"auth","token":1}`, code: CodeBadRequest, frag: []string{`"token" must be a string`}},
	{name: "duplicate field", in: `{"op":"ping","id":1,"op":"sub"}`, code: CodeBadRequest, id: 1, hasID: true, frag: []string{`duplicate field "op"`}},
	{name: "duplicate id", in: `{"op":"ping","id":1,"id":2}`, code: CodeBadRequest, id: 1, hasID: true, frag: []string{`duplicate field "id"`}},
	{name: "not an object", in: `["op","ping"]`, code: CodeBadRequest, frag: []string{"must be a"}},
	{name: "a string", in: `"ping"`, code: CodeBadRequest, frag: []string{"must be a"}},
}

func TestDecodeRequestShared(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c Codec) {
		for _, tt := range sharedRequestCases {
			t.Run(tt.name, func(t *testing.T) {
				in := inFormat(t, c.Format(), tt.in)
				want := tt.want
				if want.Data != nil {
					want.Data = inFormat(t, c.Format(), string(want.Data))
				}
				checkDecode(t, c, in, tt, want)
			})
		}
	})
}

func checkDecode(t *testing.T, c Codec, in []byte, tt requestCase, want Request) {
	t.Helper()
	// A reused Request must come back holding only the new message.
	got := Request{Op: OpAuth, Token: "stale", Topics: []string{"stale"}, Data: []byte("stale")}
	err := c.DecodeRequest(in, &got)
	if tt.code != "" {
		wantProtoError(t, err, tt.code, tt.id, tt.hasID, tt.frag...)
		if !reflect.DeepEqual(got, Request{}) {
			t.Fatalf("failed decode left %+v", got)
		}
		return
	}
	if err != nil {
		t.Fatalf("DecodeRequest(%q): %v", in, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeRequest(%q)\n got %+v\nwant %+v", in, got, want)
	}
}

// Cases only JSON text can express: syntax, escapes, whitespace.
var jsonRequestCases = []requestCase{
	{name: "escaped key", in: `{"\u006fp":"ping","id":1}`, want: Request{Op: OpPing, ID: 1, HasID: true}},
	{name: "escaped op", in: `{"op":"p\u0069ng"}`, want: Request{Op: OpPing}},
	{name: "escaped topic", in: `{"op":"sub","topics":["prices.\u0041APL","a\/b"]}`,
		want: Request{Op: OpSub, Topics: []string{"prices.AAPL", "a/b"}}},
	{name: "escaped token", in: `{"op":"auth","token":"a\"b\\c\u00e9\ud83d\ude00"}`,
		want: Request{Op: OpAuth, Token: "a\"b\\c\u00e9\U0001F600"}},
	{name: "whitespace kept in data", in: " {\t\"op\" : \"pub\" ,\n\"topic\":\"a\", \"data\" : [ 1 , {\"k\" : \"v\"} ] \r\n} ",
		want: Request{Op: OpPub, Topic: "a", Data: []byte(`[ 1 , {"k" : "v"} ]`)}},
	{name: "data escapes kept", in: `{"op":"pub","topic":"a","data":"\u00e9\n"}`,
		want: Request{Op: OpPub, Topic: "a", Data: []byte(`"\u00e9\n"`)}},
	{name: "big integer data", in: `{"op":"pub","topic":"a","data":123456789012345678901234567890}`,
		want: Request{Op: OpPub, Topic: "a", Data: []byte(`123456789012345678901234567890`)}},
	{name: "empty object", in: `{}`, code: CodeBadRequest, frag: []string{`missing field "op"`}},

	{name: "empty", in: ``, code: CodeBadRequest, frag: []string{"empty message"}},
	{name: "blank", in: " \n", code: CodeBadRequest, frag: []string{"empty message"}},
	{name: "truncated", in: `{"op":"ping"`, code: CodeBadRequest, frag: []string{"invalid JSON", "end of input"}},
	{name: "truncated keeps id", in: `{"id":9,"op":"pi`, code: CodeBadRequest, id: 9, hasID: true, frag: []string{"invalid JSON"}},
	{name: "trailing comma keeps id", in: `{"id":9,"op":"ping",}`, code: CodeBadRequest, id: 9, hasID: true,
		frag: []string{"invalid JSON", "'}'", "offset 20"}},
	{name: "syntax error before id", in: `{"op":"ping",,"id":9}`, code: CodeBadRequest, frag: []string{"invalid JSON"}},
	{name: "trailing data", in: `{"op":"ping"} {}`, code: CodeBadRequest, frag: []string{"data after the object"}},
	{name: "single quotes", in: `{'op':'ping'}`, code: CodeBadRequest, frag: []string{"invalid JSON"}},
	{name: "missing colon", in: `{"op" "ping"}`, code: CodeBadRequest, frag: []string{"':'"}},
	{name: "bad literal", in: `{"op":"ping","x":tru}`, code: CodeBadRequest, frag: []string{"invalid JSON"}},
	{name: "leading zero", in: `{"op":"pub","topic":"a","data":01}`, code: CodeBadRequest, frag: []string{"invalid JSON"}},
	{name: "bare minus", in: `{"op":"pub","topic":"a","data":-}`, code: CodeBadRequest, frag: []string{"a digit"}},
	{name: "dot without digits", in: `{"op":"pub","topic":"a","data":1.}`, code: CodeBadRequest, frag: []string{"a digit"}},
	{name: "invalid UTF-8", in: "{\"op\":\"ping\",\"x\":\"\xff\"}", code: CodeBadRequest, frag: []string{"UTF-8"}},
	{name: "control character", in: "{\"op\":\"ping\",\"x\":\"a\x01\"}", code: CodeBadRequest, frag: []string{"control character"}},
	{name: "bad escape", in: `{"op":"ping","x":"\q"}`, code: CodeBadRequest, frag: []string{"escape"}},
	{name: "short unicode escape", in: `{"op":"ping","x":"\u12"}`, code: CodeBadRequest, frag: []string{"hex digit"}},
	{name: "number beyond float64", in: `{"op":"pub","id":3,"topic":"a","data":1e999}`, code: CodeBadRequest, id: 3, hasID: true,
		frag: []string{"out of float64 range"}},
	{name: "escaped NUL in topic", in: `{"op":"sub","topics":["a\u0000b"]}`, code: CodeInvalidTopic, frag: []string{"0x0"}},
	{name: "escaped non-ASCII topic", in: `{"op":"sub","topics":["caf\u00e9"]}`, code: CodeInvalidTopic, frag: []string{"0xc3"}},
	{name: "id with exponent", in: `{"op":"sub","id":1e2,"topics":["a"]}`, code: CodeBadRequest, frag: []string{"exponent"}},
	{name: "id minus zero", in: `{"op":"ping","id":-0}`, code: CodeBadRequest, frag: []string{"negative"}},
	{name: "id beyond uint64", in: `{"op":"ping","id":18446744073709551616}`, code: CodeBadRequest, frag: []string{"2^64-1"}},
	{name: "too deep", in: `{"op":"pub","id":1,"topic":"a","data":` + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1) + `}`,
		code: CodeBadRequest, id: 1, hasID: true, frag: []string{"nesting deeper than 1000"}},
	{name: "deep enough", in: `{"op":"pub","topic":"a","data":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`,
		want: Request{Op: OpPub, Topic: "a", Data: []byte(strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth))}},
}

func TestDecodeRequestJSON(t *testing.T) {
	for _, tt := range jsonRequestCases {
		t.Run(tt.name, func(t *testing.T) { checkDecode(t, JSON, []byte(tt.in), tt, tt.want) })
	}
}

// mpPairs builds a MessagePack map from raw encoded keys and values, so
// tests can write what the oracle encoder would refuse to.
func mpPairs(t testing.TB, kv ...[]byte) []byte {
	t.Helper()
	b := mpAppendContainer(nil, 0x80, len(kv)/2)
	for _, x := range kv {
		b = append(b, x...)
	}
	return b
}

func TestDecodeRequestMsgpack(t *testing.T) {
	s := func(v string) []byte { return mpOf(t, v) }
	nan := mpAppendFloat(nil, math.NaN())
	ping5 := mp(t, `{"id":5,"op":"ping"}`)
	tests := []struct {
		requestCase
		raw []byte
	}{
		{requestCase{name: "id as int8", want: Request{Op: OpPing, ID: 5, HasID: true}},
			mpPairs(t, s("op"), s("ping"), s("id"), []byte{0xd0, 5})},
		{requestCase{name: "id as int64", want: Request{Op: OpPing, ID: 1 << 40, HasID: true}},
			mpPairs(t, s("op"), s("ping"), s("id"), mpOf(t, int64(1<<40)))},
		{requestCase{name: "id as uint64", want: Request{Op: OpPing, ID: math.MaxUint64, HasID: true}},
			mpPairs(t, s("op"), s("ping"), s("id"), mpOf(t, uint64(math.MaxUint64)))},
		{requestCase{name: "str8 and str16 keys and values", want: Request{Op: OpSub, Topics: []string{strings.Repeat("t", 256)}}},
			mpPairs(t, []byte("\xd9\x02op"), []byte("\xda\x00\x03sub"), s("topics"), mpOf(t, []string{strings.Repeat("t", 256)}))},
		{requestCase{name: "timestamp data", want: Request{Op: OpPub, Topic: "a", Data: []byte{0xd6, 0xff, 0, 0, 0, 1}}},
			mpPairs(t, s("op"), s("pub"), s("topic"), s("a"), s("data"), []byte{0xd6, 0xff, 0, 0, 0, 1})},
		{requestCase{name: "bin data", want: Request{Op: OpPub, Topic: "a", Data: []byte{0xc4, 2, 0, 0xff}}},
			mpPairs(t, s("op"), s("pub"), s("topic"), s("a"), s("data"), []byte{0xc4, 2, 0, 0xff})},
		{requestCase{name: "unknown non-string value ignored", want: Request{Op: OpPing}},
			mpPairs(t, s("op"), s("ping"), s("x"), []byte{0xc4, 1, 0xff})},

		{requestCase{name: "empty", code: CodeBadRequest, frag: []string{"empty message"}}, []byte{}},
		{requestCase{name: "array", code: CodeBadRequest, frag: []string{"must be a MessagePack map", "an array"}}, []byte{0x91, 1}},
		{requestCase{name: "reserved byte", code: CodeBadRequest, frag: []string{"invalid MessagePack", "0xc1"}}, []byte{0xc1}},
		{requestCase{name: "integer key", code: CodeBadRequest, frag: []string{"keys must be strings", "an integer"}},
			mpPairs(t, s("op"), s("ping"), mpOf(t, 1), s("x"))},
		{requestCase{name: "integer key after id", code: CodeBadRequest, id: 3, hasID: true, frag: []string{"keys must be strings"}},
			mpPairs(t, s("id"), mpOf(t, 3), mpOf(t, 1), s("x"), s("op"), s("ping"))},
		{requestCase{name: "truncated keeps id", code: CodeBadRequest, id: 5, hasID: true, frag: []string{"invalid MessagePack", "truncated"}},
			ping5[:len(ping5)-1]},
		{requestCase{name: "trailing byte", code: CodeBadRequest, frag: []string{"data after the map"}}, append(mp(t, `{"op":"ping"}`), 0xc0)},
		{requestCase{name: "huge map count", code: CodeBadRequest, frag: []string{"truncated"}}, []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa0}},
		{requestCase{name: "huge str length", code: CodeBadRequest, frag: []string{"truncated"}}, []byte{0x81, 0xdb, 0xff, 0xff, 0xff, 0xff}},
		{requestCase{name: "id float", code: CodeBadRequest, frag: []string{`"id"`, "float"}},
			mpPairs(t, s("op"), s("ping"), s("id"), mpOf(t, 1.0))},
		{requestCase{name: "id negative int8", code: CodeBadRequest, frag: []string{`"id"`, "negative"}},
			mpPairs(t, s("op"), s("ping"), s("id"), []byte{0xd0, 0xff})},
		{requestCase{name: "op as bin", code: CodeBadRequest, frag: []string{`"op" must be a string`, "binary"}},
			mpPairs(t, s("op"), []byte{0xc4, 4, 'p', 'i', 'n', 'g'})},
		{requestCase{name: "topic element bin", code: CodeBadRequest, frag: []string{"element 0", "binary"}},
			mpPairs(t, s("op"), s("sub"), s("topics"), []byte{0x91, 0xc4, 1, 'a'})},
		{requestCase{name: "invalid UTF-8 string", code: CodeBadRequest, frag: []string{"UTF-8"}},
			mpPairs(t, s("op"), s("sub"), s("topics"), []byte{0x91, 0xa1, 0xff})},
		{requestCase{name: "data with integer key", code: CodeBadRequest, id: 4, hasID: true, frag: []string{"map key", "JSON keys are strings"}},
			mpPairs(t, s("op"), s("pub"), s("id"), mpOf(t, 4), s("topic"), s("a"), s("data"), mpOf(t, map[int]string{1: "x"}))},
		{requestCase{name: "data NaN", code: CodeBadRequest, frag: []string{"NaN"}},
			mpPairs(t, s("op"), s("pub"), s("topic"), s("a"), s("data"), nan)},
		{requestCase{name: "data extension", code: CodeBadRequest, frag: []string{"extension type 5"}},
			mpPairs(t, s("op"), s("pub"), s("topic"), s("a"), s("data"), []byte{0xd4, 5, 0})},
		{requestCase{name: "data too deep", code: CodeBadRequest, frag: []string{"nesting deeper"}},
			mpPairs(t, s("op"), s("pub"), s("topic"), s("a"), s("data"), append(bytes.Repeat([]byte{0x91}, MaxDepth+1), 0xc0))},
		{requestCase{name: "deep enough", want: Request{Op: OpPub, Topic: "a", Data: append(bytes.Repeat([]byte{0x91}, MaxDepth), 0xc0)}},
			mpPairs(t, s("op"), s("pub"), s("topic"), s("a"), s("data"), append(bytes.Repeat([]byte{0x91}, MaxDepth), 0xc0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkDecode(t, Msgpack, tt.raw, tt.requestCase, tt.want) })
	}
}

// Data aliases the input rather than copying it; callers rely on the
// documented aliasing to avoid a copy on the publish path.
func TestDecodeRequestDataAliasesInput(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c Codec) {
		in := inFormat(t, c.Format(), `{"op":"pub","topic":"a","data":"payload"}`)
		var r Request
		if err := c.DecodeRequest(in, &r); err != nil {
			t.Fatal(err)
		}
		before := string(r.Data)
		for i := range in {
			in[i] ^= 0xff
		}
		if string(r.Data) == before {
			t.Fatal("Data was copied")
		}
	})
}

func TestRequestRoundTrip(t *testing.T) {
	reqs := []Request{
		{Op: OpSub, ID: 1, HasID: true, Topics: []string{"prices.AAPL", "alerts"}},
		{Op: OpSub, Topics: []string{strings.Repeat("x", 256)}},
		{Op: OpUnsub, ID: math.MaxUint64, HasID: true, Topics: []string{"a"}},
		{Op: OpPub, ID: 300, HasID: true, Topic: "chat.lobby", Data: []byte(`{"a":[1,2,{"b":null}],"c":"\u00e9"}`)},
		{Op: OpPub, Topic: "a", Data: []byte(`"x"`)},
		{Op: OpPing},
		{Op: OpPing, ID: 70000, HasID: true},
		{Op: OpAuth, ID: 5, HasID: true, Token: "eyJhbGciOi.\"quoted\"\\.\n"},
	}
	forEachCodec(t, func(t *testing.T, c Codec) {
		for _, r := range reqs {
			if r.Data != nil {
				r.Data = inFormat(t, c.Format(), string(r.Data))
			}
			b := c.AppendRequest([]byte("prefix"), &r)
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatalf("AppendRequest did not append: %q", b)
			}
			var got Request
			if err := c.DecodeRequest(b[len("prefix"):], &got); err != nil {
				t.Fatalf("%+v: %v (%q)", r, err, b)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("round trip\n got %+v\nwant %+v", got, r)
			}
			if c == JSON {
				canon(t, b[len("prefix"):], FormatJSON) // the oracle accepts it
			} else {
				canon(t, b[len("prefix"):], FormatMsgpack)
			}
		}
	})
}

// An empty Data is sent as null rather than as an invalid envelope.
func TestAppendEmptyDataIsNull(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c Codec) {
		var got Request
		if err := c.DecodeRequest(c.AppendRequest(nil, &Request{Op: OpPub, Topic: "a"}), &got); err != nil {
			t.Fatal(err)
		}
		if null := inFormat(t, c.Format(), "null"); !bytes.Equal(got.Data, null) {
			t.Fatalf("data = %q, want %q", got.Data, null)
		}
		var rep Reply
		if err := c.DecodeReply(c.AppendMessage(nil, "a", nil), &rep); err != nil {
			t.Fatal(err)
		}
		if null := inFormat(t, c.Format(), "null"); !bytes.Equal(rep.Data, null) {
			t.Fatalf("message data = %q, want %q", rep.Data, null)
		}
	})
}

func TestReplyRoundTrip(t *testing.T) {
	const awkward = "quote \" backslash \\ newline \n tab \t nul \x00 bell \x07 del \x7f é 😀"
	forEachCodec(t, func(t *testing.T, c Codec) {
		data := inFormat(t, c.Format(), `{"price":1.5,"tags":["a","b"],"n":-3}`)
		tests := []struct {
			name string
			b    []byte
			want Reply
		}{
			{"ack", c.AppendAck(nil, 7), Reply{Op: OpAck, ID: 7, HasID: true}},
			{"ack zero", c.AppendAck(nil, 0), Reply{Op: OpAck, HasID: true}},
			{"ack max", c.AppendAck(nil, math.MaxUint64), Reply{Op: OpAck, ID: math.MaxUint64, HasID: true}},
			{"err", c.AppendError(nil, 3, true, CodeForbidden, "not allowed to sub a"),
				Reply{Op: OpErr, ID: 3, HasID: true, Code: CodeForbidden, Msg: "not allowed to sub a"}},
			{"err without id", c.AppendError(nil, 99, false, CodeBadRequest, awkward),
				Reply{Op: OpErr, Code: CodeBadRequest, Msg: awkward}},
			{"err long msg", c.AppendError(nil, 1, true, CodeInternal, strings.Repeat("m", 70000)),
				Reply{Op: OpErr, ID: 1, HasID: true, Code: CodeInternal, Msg: strings.Repeat("m", 70000)}},
			{"pong", c.AppendPong(nil, 4, true), Reply{Op: OpPong, ID: 4, HasID: true}},
			{"pong without id", c.AppendPong(nil, 4, false), Reply{Op: OpPong}},
			{"msg", c.AppendMessage(nil, "chat.lobby", data), Reply{Op: OpMsg, Topic: "chat.lobby", Data: data}},
			{"msg long topic", c.AppendMessage(nil, strings.Repeat("t", 256), data),
				Reply{Op: OpMsg, Topic: strings.Repeat("t", 256), Data: data}},
			{"msg awkward topic", c.AppendMessage(nil, awkward, data), Reply{Op: OpMsg, Topic: awkward, Data: data}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := Reply{Op: OpMsg, Msg: "stale", Data: []byte("stale")}
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

// The exact bytes on the wire are the contract clients are written to.
func TestWireBytes(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"json ack", JSON.AppendAck(nil, 1), `{"op":"ack","id":1}`},
		{"json err", JSON.AppendError(nil, 2, true, CodeUnknownOp, `unknown op "x"`), `{"op":"err","id":2,"code":"unknown_op","msg":"unknown op \"x\""}`},
		{"json err no id", JSON.AppendError(nil, 0, false, CodeBadRequest, "bad\n"), `{"op":"err","code":"bad_request","msg":"bad\n"}`},
		{"json pong", JSON.AppendPong(nil, 4, true), `{"op":"pong","id":4}`},
		{"json pong no id", JSON.AppendPong(nil, 0, false), `{"op":"pong"}`},
		{"json msg", JSON.AppendMessage(nil, "chat.lobby", []byte(`{"a":1}`)), `{"op":"msg","topic":"chat.lobby","data":{"a":1}}`},
		{"json control chars", JSON.AppendError(nil, 0, false, "c", "\x00\x1f\t\r\b\f\"\\/<"), `{"op":"err","code":"c","msg":"\u0000\u001f\t\r\b\f\"\\/<"}`},
		{"json invalid UTF-8", JSON.AppendError(nil, 0, false, "c", "a\xffb"), `{"op":"err","code":"c","msg":"a\ufffdb"}`},
		{"json sub", JSON.AppendRequest(nil, &Request{Op: OpSub, ID: 1, HasID: true, Topics: []string{"a", "b"}}), `{"op":"sub","id":1,"topics":["a","b"]}`},
		{"json pub", JSON.AppendRequest(nil, &Request{Op: OpPub, Topic: "a", Data: []byte(`[1]`)}), `{"op":"pub","topic":"a","data":[1]}`},
		{"json auth", JSON.AppendRequest(nil, &Request{Op: OpAuth, Token: "t"}), `{"op":"auth","token":"t"}`},
		{"msgpack ack", Msgpack.AppendAck(nil, 1), "\x82\xa2op\xa3ack\xa2id\x01"},
		{"msgpack ack big id", Msgpack.AppendAck(nil, 256), "\x82\xa2op\xa3ack\xa2id\xcd\x01\x00"},
		{"msgpack pong no id", Msgpack.AppendPong(nil, 0, false), "\x81\xa2op\xa4pong"},
		{"msgpack msg", Msgpack.AppendMessage(nil, "t", []byte{0x01}), "\x83\xa2op\xa3msg\xa5topic\xa1t\xa4data\x01"},
		{"msgpack err", Msgpack.AppendError(nil, 0, false, "c", "m"), "\x83\xa2op\xa3err\xa4code\xa1c\xa3msg\xa1m"},
		{"msgpack invalid UTF-8", Msgpack.AppendError(nil, 0, false, "c", "a\xffb"), "\x83\xa2op\xa3err\xa4code\xa1c\xa3msg\xa5a\xef\xbf\xbdb"},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestDecodeReplyErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		code  Code
		id    uint64
		hasID bool
		frag  string
	}{
		{"client op", `{"op":"sub","id":1,"topics":["a"]}`, CodeUnknownOp, 1, true, "clients"},
		{"unknown op", `{"op":"hello"}`, CodeUnknownOp, 0, false, `"hello"`},
		{"ack without id", `{"op":"ack"}`, CodeBadRequest, 0, false, "ack without"},
		{"err without code", `{"op":"err","id":2,"msg":"x"}`, CodeBadRequest, 2, true, `missing field "code"`},
		{"err msg number", `{"op":"err","code":"x","msg":1}`, CodeBadRequest, 0, false, `"msg" must be a string`},
		{"msg without data", `{"op":"msg","topic":"a"}`, CodeBadRequest, 0, false, `missing field "data"`},
		{"msg without topic", `{"op":"msg","data":1}`, CodeBadRequest, 0, false, `missing field "topic"`},
		{"not an object", `[1]`, CodeBadRequest, 0, false, "a reply must be"},
	}
	forEachCodec(t, func(t *testing.T, c Codec) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := Reply{Op: OpAck, Msg: "stale"}
				err := c.DecodeReply(inFormat(t, c.Format(), tt.in), &got)
				wantProtoError(t, err, tt.code, tt.id, tt.hasID, tt.frag)
				if !reflect.DeepEqual(got, Reply{}) {
					t.Fatalf("failed decode left %+v", got)
				}
			})
		}
	})
	// An err reply may leave msg out.
	var r Reply
	if err := JSON.DecodeReply([]byte(`{"op":"err","code":"internal"}`), &r); err != nil || r.Code != CodeInternal || r.Msg != "" {
		t.Fatalf("%+v, %v", r, err)
	}
}

// JSON replies always stay valid UTF-8 so a text frame never makes the
// browser drop the connection, whatever bytes the message carries.
func TestJSONRepliesAreValidUTF8(t *testing.T) {
	for _, msg := range []string{"\xff", "a\xc3", "\xed\xa0\x80", "ok é", "\xf4\x90\x80\x80"} {
		b := JSON.AppendError(nil, 1, true, CodeBadRequest, msg)
		if !utf8.Valid(b) {
			t.Errorf("AppendError(%q) = %q is not UTF-8", msg, b)
		}
		b = JSON.AppendMessage(nil, msg, []byte("1"))
		if !utf8.Valid(b) {
			t.Errorf("AppendMessage(%q) = %q is not UTF-8", msg, b)
		}
		b = Msgpack.AppendError(nil, 1, true, CodeBadRequest, msg)
		var r Reply
		if err := Msgpack.DecodeReply(b, &r); err != nil || !utf8.ValidString(r.Msg) {
			t.Errorf("msgpack AppendError(%q) = %x: %v", msg, b, err)
		}
	}
}

// Encoders allocate nothing when dst has room: the fan-out path builds a
// message per publish, and replies are built per request.
func TestAppendAllocatesNothing(t *testing.T) {
	data := []byte(`{"price":101.5}`)
	forEachCodec(t, func(t *testing.T, c Codec) {
		buf := make([]byte, 0, 1024)
		req := Request{Op: OpSub, ID: 1, HasID: true, Topics: []string{"a", "b"}}
		since := Request{Op: OpSub, ID: 1, HasID: true, Topics: []string{"a", "b", "c"}, Last: 10,
			Since: map[string]Position{"c": {41, "a1b2"}, "a": {7, "a1b2"}, "b": {0, ""}}}
		positions := []TopicPosition{{Topic: "a", Offset: 57, Epoch: "a1b2", Asked: true, Recovered: true}, {Topic: "b", Offset: 3, Epoch: "x"}}
		presence := Request{Op: OpPresence, ID: 1, HasID: true, Topic: "chat.lobby"}
		noEcho := Request{Op: OpPub, ID: 1, HasID: true, Topic: "chat.lobby", Data: data, NoEcho: true}
		members := make([]Member, 20)
		for i := range members {
			members[i] = Member{Client: "c1f3a9", User: "ada"}
		}
		encoders := map[string]func(){
			"AppendMessage":             func() { c.AppendMessage(buf, "prices.AAPL", data) },
			"AppendStreamMessage":       func() { c.AppendStreamMessage(buf, "prices.AAPL", 1<<40, "", data) },
			"AppendStreamMessage epoch": func() { c.AppendStreamMessage(buf, "prices.AAPL", 1, "a1b2", data) },
			"AppendAck":                 func() { c.AppendAck(buf, 12345) },
			"AppendAckPositions":        func() { c.AppendAckPositions(buf, 12345, positions) },
			"AppendPubAck":              func() { c.AppendPubAck(buf, 12345, 58, "a1b2") },
			"AppendError":               func() { c.AppendError(buf, 1, true, CodeForbidden, "not allowed") },
			"AppendPong":                func() { c.AppendPong(buf, 1, true) },
			"AppendRequest":             func() { c.AppendRequest(buf, &req) },
			"AppendRequest since":       func() { c.AppendRequest(buf, &since) },
			"AppendRequest presence":    func() { c.AppendRequest(buf, &presence) },
			"AppendRequest pub no echo": func() { c.AppendRequest(buf, &noEcho) },
			"AppendJoin":                func() { c.AppendJoin(buf, "chat.lobby", "c1f3a9", "ada") },
			"AppendLeave":               func() { c.AppendLeave(buf, "chat.lobby", "c1f3a9", "") },
			"AppendUnsubscribed":        func() { c.AppendUnsubscribed(buf, "chat.lobby") },
			"AppendInfoAck":             func() { c.AppendInfoAck(buf, 12345, "c1f3a9", "ada", "node-a") },
			"AppendPresenceAck":         func() { c.AppendPresenceAck(buf, 12345, members) },
			"AppendPresenceStatsAck":    func() { c.AppendPresenceStatsAck(buf, 12345, 70000, 300) },
		}
		for name, f := range encoders {
			if n := testing.AllocsPerRun(100, f); n != 0 {
				t.Errorf("%s: %v allocations", name, n)
			}
		}
	})
}
