package bench

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		st   stamp
		size int
	}{
		{"small", stamp{sent: 1, seq: 1, step: 0}, 0},
		{"typical", stamp{sent: 1763800000123456789, seq: 42, step: 3}, 64},
		{"padded", stamp{sent: 1763800000123456789, seq: 1 << 40, step: 7}, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := appendPayload(nil, tt.st, tt.size)
			if tt.size > 40 && (len(p) < tt.size-1 || len(p) > tt.size+1) {
				t.Errorf("payload is %d bytes, want about %d", len(p), tt.size)
			}
			var v []any
			if err := json.Unmarshal(p, &v); err != nil || len(v) != 4 {
				t.Fatalf("payload %s is not a 4-element JSON array: %v", p, err)
			}
			frame := `{"op":"msg","topic":"bench.3","data":` + string(p) + `}`
			var r reply
			if err := parseReply([]byte(frame), &r); err != nil {
				t.Fatal(err)
			}
			if r.kind != replyMsg || !r.hasStamp || r.st != tt.st || string(r.topic) != "bench.3" {
				t.Fatalf("parsed %+v from %s", r, frame)
			}
		})
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		in   string
		want reply
	}{
		{`{"op":"ack","id":7}`, reply{kind: replyAck, id: 7, hasID: true}},
		{`{"op":"pong"}`, reply{kind: replyPong}},
		{`{"op":"err","id":1,"code":"invalid_topic","msg":"topic \"a..b\": empty segment"}`,
			reply{kind: replyErr, id: 1, hasID: true, code: []byte("invalid_topic")}},
		{`{"op":"err","code":"bad_request","msg":"x"}`, reply{kind: replyErr, code: []byte("bad_request")}},
		{` { "topic" : "t.1" , "data" : [ 5 , 6 , 1 , "x" ] , "op" : "msg" } `,
			reply{kind: replyMsg, topic: []byte("t.1"), st: stamp{sent: 5, seq: 6, step: 1}, hasStamp: true}},
		{`{"op":"msg","topic":"t","data":{"nested":[1,{"a":null}],"b":true}}`, reply{kind: replyMsg, topic: []byte("t")}},
		{`{"op":"msg","topic":"t","data":[1.5,2,3]}`, reply{kind: replyMsg, topic: []byte("t")}},
		{`{"op":"msg","topic":"t","data":[-1,2,3]}`, reply{kind: replyMsg, topic: []byte("t")}},
		{`{"op":"msg","topic":"t","data":[1,2]}`, reply{kind: replyMsg, topic: []byte("t")}},
		{`{"op":"msg","topic":"t","data":"text"}`, reply{kind: replyMsg, topic: []byte("t")}},
		{`{"op":"msg","topic":"t","data":[1,2,3]}`, reply{kind: replyMsg, topic: []byte("t"), st: stamp{1, 2, 3}, hasStamp: true}},
		{`{"op":"future","extra":[{"deep":{"x":-1.5e3}}]}`, reply{kind: replyOther}},
		{`{"op":"join","topic":"room.1","client":"k3v9q2x-1f","user":"42"}`, reply{kind: replyJoin, topic: []byte("room.1")}},
		{`{"op":"leave","topic":"room.1","client":"k3v9q2x-1f","user":""}`, reply{kind: replyLeave, topic: []byte("room.1")}},
		{`{"op":"ack","id":3,"clients":10001,"users":1}`, reply{kind: replyAck, id: 3, hasID: true, clients: 10001, users: 1, hasCounts: true}},
		{`{"op":"ack","id":3,"presence":[{"client":"a-1","user":"7"}]}`, reply{kind: replyAck, id: 3, hasID: true}},
		{`{}`, reply{}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var r reply
			if err := parseReply([]byte(tt.in), &r); err != nil {
				t.Fatal(err)
			}
			if r.kind != tt.want.kind || r.id != tt.want.id || r.hasID != tt.want.hasID ||
				string(r.topic) != string(tt.want.topic) || string(r.code) != string(tt.want.code) ||
				r.hasStamp != tt.want.hasStamp || r.st != tt.want.st ||
				r.clients != tt.want.clients || r.users != tt.want.users || r.hasCounts != tt.want.hasCounts {
				t.Fatalf("got %+v, want %+v", r, tt.want)
			}
		})
	}
}

func TestParseReplyMalformed(t *testing.T) {
	for _, in := range []string{
		``, `[]`, `{`, `{"op"}`, `{"op":}`, `{"op":"ack",}`, `{"op":"ack"} x`, `{"id":-1}`, `{"id":"7"}`,
		`{"id":01}`, `{"id":1.5}`, `{"id":99999999999999999999}`, `{"op":"msg","data":[1,2,3}`, `{"op":"msg","data":tru}`,
		"{\"op\":\"a\nb\"}", `{"op":"ack" "id":1}`, `{"op":1}`, `{"op":"msg","data":{"a" 1}}`,
		`{"op":"ack","clients":-1}`, `{"op":"ack","users":"3"}`,
		`{"x":` + deepArray(maxDepth+2) + `}`,
	} {
		var r reply
		if err := parseReply([]byte(in), &r); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseReply(%q) = %v, want ErrMalformed", in, err)
		}
	}
}

func deepArray(n int) string {
	s := ""
	for range n {
		s += "["
	}
	for range n {
		s += "]"
	}
	return s
}

func TestTopicID(t *testing.T) {
	tests := []struct {
		in   string
		id   uint32
		want bool
	}{
		{"bench.0", 0, true},
		{"bench.12345", 12345, true},
		{"a.b.c.77", 77, true},
		{"9", 9, true},
		{"bench.", 0, false},
		{"bench.x1", 0, false},
		{"bench.01", 0, false},
		{"bench.4294967296", 0, false},
	}
	for _, tt := range tests {
		id, ok := topicID([]byte(tt.in))
		if ok != tt.want || id != tt.id {
			t.Errorf("topicID(%q) = %d, %v; want %d, %v", tt.in, id, ok, tt.id, tt.want)
		}
	}
}

func TestAppendSubRequest(t *testing.T) {
	b := appendSubRequest(nil, 3, []string{"bench.1", "bench.22"})
	var v struct {
		Op     string   `json:"op"`
		ID     uint64   `json:"id"`
		Topics []string `json:"topics"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if v.Op != "sub" || v.ID != 3 || len(v.Topics) != 2 || v.Topics[1] != "bench.22" {
		t.Fatalf("decoded %+v from %s", v, b)
	}
}

// FuzzParseReply: the parser must never panic, and whatever it accepts as a
// stamped message must survive a rebuild through appendPayload.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		`{"op":"msg","topic":"bench.1","data":[1763800000123456789,5,0,"xxxx"]}`,
		`{"op":"ack","id":1}`,
		`{"op":"err","id":2,"code":"forbidden","msg":"no \u00e9"}`,
		`{"op":"msg","topic":"t","data":{"a":[1,2,{"b":null}],"c":"\\"}}`,
		`{"op":"pong"}`, `{`, `{"id":-1}`, `[1,2,3]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r reply
		if err := parseReply(b, &r); err != nil || !r.hasStamp {
			return
		}
		frame := `{"op":"msg","topic":"t.` + strconv.Itoa(int(r.st.seq%1000)) + `","data":` + string(appendPayload(nil, r.st, 0)) + `}`
		var again reply
		if err := parseReply([]byte(frame), &again); err != nil || again.st != r.st {
			t.Fatalf("stamp %+v did not survive a rebuild: %v", r.st, err)
		}
	})
}
