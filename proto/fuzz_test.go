package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// checkDecodedRequest holds for any input: decoding never panics, a
// failure is an *Error with a request-level code and leaves r empty, and a
// success is a valid request that re-encodes and decodes to the same.
func checkDecodedRequest(t *testing.T, c Codec, in []byte) (ok bool) {
	t.Helper()
	var r Request
	err := c.DecodeRequest(in, &r)
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is %T, not *Error", err, err)
		}
		switch pe.Code {
		case CodeBadRequest, CodeUnknownOp, CodeInvalidTopic:
		default:
			t.Fatalf("unexpected code %s: %s", pe.Code, pe.Msg)
		}
		if pe.Msg == "" || !reflect.DeepEqual(r, Request{}) {
			t.Fatalf("error %+v left request %+v", pe, r)
		}
		// The reply to the failure must itself be a valid envelope.
		var rep Reply
		if err := c.DecodeReply(c.AppendError(nil, pe.ID, pe.HasID, pe.Code, pe.Msg), &rep); err != nil {
			t.Fatalf("error reply does not decode: %v", err)
		}
		return false
	}
	if !r.Op.IsRequest() {
		t.Fatalf("decoded non-request op %v", r.Op)
	}
	hasTopic := r.Op == OpPub || r.Op == OpPresence || r.Op == OpPresenceStats
	for _, topic := range append(r.Topics, r.Topic) {
		if topic != "" || hasTopic {
			if err := ValidTopic(topic); err != nil {
				t.Fatalf("accepted invalid topic: %v", err)
			}
		}
	}
	if r.Op == OpPub {
		if err := ValidData(r.Data, c.Format()); err != nil {
			t.Fatalf("accepted data %q: %v", r.Data, err)
		}
		if _, err := Convert(r.Data, c.Format(), other(c.Format())); err != nil {
			t.Fatalf("accepted data %q that does not convert: %v", r.Data, err)
		}
	}
	out := c.AppendRequest(nil, &r)
	var again Request
	if err := c.DecodeRequest(out, &again); err != nil {
		t.Fatalf("re-encoded %q does not decode: %v", out, err)
	}
	if !reflect.DeepEqual(r, again) {
		t.Fatalf("re-encoding changed the request\n %+v\n %+v", r, again)
	}
	return true
}

// checkDecodedReply holds for any input: decoding a reply never panics, a
// failure is an *Error and leaves r empty, and a success re-encodes, with
// the encoder the server would use, to the same reply.
func checkDecodedReply(t *testing.T, c Codec, in []byte) (ok bool) {
	t.Helper()
	var r Reply
	err := c.DecodeReply(in, &r)
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is %T, not *Error", err, err)
		}
		if pe.Msg == "" || !reflect.DeepEqual(r, Reply{}) {
			t.Fatalf("error %+v left reply %+v", pe, r)
		}
		return false
	}
	if !r.Op.IsReply() {
		t.Fatalf("decoded non-reply op %v", r.Op)
	}
	// Each kind of ack has its own encoder; an ack mixing the fields of two
	// kinds has none.
	stream := r.Offset != 0 || r.Epoch != ""
	info := r.Op == OpAck && (r.Client != "" || r.User != "" || r.Node != "")
	stats := r.Clients != 0 || r.Users != 0
	if b2i(stream)+b2i(r.Positions != nil)+b2i(info)+b2i(r.Presence != nil)+b2i(stats) > 1 {
		return true
	}
	var out []byte
	switch {
	case r.Op == OpJoin:
		out = c.AppendJoin(nil, r.Topic, r.Client, r.User)
	case r.Op == OpLeave:
		out = c.AppendLeave(nil, r.Topic, r.Client, r.User)
	case r.Op == OpUnsubscribed:
		out = c.AppendUnsubscribed(nil, r.Topic)
	case r.Op == OpAck && info:
		out = c.AppendInfoAck(nil, r.ID, r.Client, r.User, r.Node)
	case r.Op == OpAck && r.Presence != nil:
		out = c.AppendPresenceAck(nil, r.ID, r.Presence)
	case r.Op == OpAck && stats:
		out = c.AppendPresenceStatsAck(nil, r.ID, r.Clients, r.Users)
	case r.Op == OpMsg && r.Offset == 0 && r.Epoch == "":
		out = c.AppendMessage(nil, r.Topic, r.Data)
	case r.Op == OpMsg:
		out = c.AppendStreamMessage(nil, r.Topic, r.Offset, r.Epoch, r.Data)
	case r.Op == OpAck && r.Positions == nil && r.Offset == 0 && r.Epoch == "":
		out = c.AppendAck(nil, r.ID)
	case r.Op == OpAck && r.Positions == nil:
		out = c.AppendPubAck(nil, r.ID, r.Offset, r.Epoch)
	case r.Op == OpAck && r.Offset == 0 && r.Epoch == "":
		out = c.AppendAckPositions(nil, r.ID, r.Positions)
	case r.Op == OpErr:
		out = c.AppendError(nil, r.ID, r.HasID, r.Code, r.Msg)
	case r.Op == OpPong:
		out = c.AppendPong(nil, r.ID, r.HasID)
	default:
		t.Fatalf("no encoder for %+v", r)
	}
	var again Reply
	if err := c.DecodeReply(out, &again); err != nil {
		t.Fatalf("re-encoded %q does not decode: %v", out, err)
	}
	switch r.Op {
	case OpMsg, OpJoin, OpLeave, OpUnsubscribed:
		// These answer no request: the decoder reads an id, the encoders
		// write none.
		r.ID, r.HasID = 0, false
	}
	if !reflect.DeepEqual(r, again) {
		t.Fatalf("re-encoding changed the reply\n %+v\n %+v", r, again)
	}
	return true
}

func seedRequests(f *testing.F, fmt Format) {
	f.Helper()
	for _, tt := range sharedRequestCases {
		f.Add(inFormat(f, fmt, tt.in))
	}
	for _, tt := range historyRequestCases {
		if len(tt.in) < 300 {
			f.Add(inFormat(f, fmt, tt.in))
		}
	}
	for _, tt := range presenceRequestCases {
		if len(tt.in) < 300 {
			f.Add(inFormat(f, fmt, tt.in))
		}
	}
	for _, rep := range historyReplySeeds {
		f.Add(inFormat(f, fmt, rep))
	}
	for _, rep := range presenceReplySeeds {
		f.Add(inFormat(f, fmt, rep))
	}
	f.Add([]byte{})
	f.Add([]byte{0xc1})
}

// Replies with the history fields; the request targets decode every input
// as a reply too.
var historyReplySeeds = []string{
	`{"op":"msg","topic":"chat.1","offset":42,"data":{"a":1}}`,
	`{"op":"msg","topic":"chat.1","offset":1,"epoch":"x9","data":[1,"b"]}`,
	`{"op":"ack","id":1,"positions":{"chat.1":{"offset":57,"epoch":"a1b2","recovered":true},"b":{"offset":0,"epoch":""}}}`,
	`{"op":"ack","id":1,"positions":{"a":{"offset":1,"epoch":"e","recovered":null}},"offset":2}`,
	`{"op":"ack","id":3,"offset":58,"epoch":"a1b2"}`,
	`{"op":"err","id":3,"code":"forbidden","msg":"no"}`,
	`{"op":"pong","id":4}`,
}

// Replies with the identity and presence fields.
var presenceReplySeeds = []string{
	`{"op":"join","topic":"chat.1","client":"c1","user":"ada"}`,
	`{"op":"leave","topic":"chat.1","client":"c2","user":""}`,
	`{"op":"leave","topic":"chat.1","client":"c2"}`,
	`{"op":"unsubscribed","topic":"chat.1"}`,
	`{"op":"ack","id":1,"client":"c1","user":"ada","node":"node-a"}`,
	`{"op":"ack","id":2,"presence":[{"client":"c1","user":"ada"},{"client":"c2","user":""}]}`,
	`{"op":"ack","id":3,"presence":[]}`,
	`{"op":"ack","id":4,"clients":3,"users":2}`,
	`{"op":"ack","id":5,"presence":[{"client":"c","x":1,"user":null}],"clients":1}`,
	`{"op":"err","id":6,"code":"not_enabled","msg":"topic \"a\" has no presence"}`,
}

func FuzzDecodeRequestJSON(f *testing.F) {
	seedRequests(f, FormatJSON)
	for _, tt := range jsonRequestCases {
		if len(tt.in) < 200 {
			f.Add([]byte(tt.in))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if checkDecodedRequest(t, JSON, in) && !json.Valid(in) {
			t.Fatalf("accepted %q, which encoding/json rejects", in)
		}
		if checkDecodedReply(t, JSON, in) && !json.Valid(in) {
			t.Fatalf("accepted reply %q, which encoding/json rejects", in)
		}
	})
}

func FuzzDecodeRequestMsgpack(f *testing.F) {
	seedRequests(f, FormatMsgpack)
	f.Add([]byte{0x81, 0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte("\x83\xa2op\xa3pub\xa5topic\xa1a\xa4data\xd6\xff\x00\x00\x00\x01"))
	f.Add([]byte("\x83\xa2op\xa3pub\xa5topic\xa1a\xa4data\x81\x01\x02"))
	f.Add([]byte("\x84\xa2op\xa3sub\xa6topics\x91\xa1a\xa5since\x81\xa1a\x82\xa6offset\xd0\xff\xa5epoch\xc4\x01e\xa4last\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("\x84\xa2op\xa3pub\xa5topic\xa1a\xa4echo\xc2\xa4data\x01"))
	f.Add([]byte("\x84\xa2op\xa3pub\xa5topic\xa1a\xa4echo\x00\xa4data\x01"))
	f.Add([]byte("\x83\xa2op\xa3ack\xa2id\x01\xa8presence\x92\x82\xa6client\xa1c\xa4user\xa0\xa1x"))
	f.Add([]byte("\x84\xa2op\xa3ack\xa2id\x01\xa7clients\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xa5users\xd0\xff"))
	f.Add([]byte("\x83\xa2op\xa4join\xa5topic\xa1a\xa6client\xc4\x01c"))
	f.Add([]byte("\x83\xa2op\xa3ack\xa2id\x01\xa9positions\x81\xa1a\x83\xa6offset\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xa5epoch\xa0\xa9recovered\xc3"))
	f.Fuzz(func(t *testing.T, in []byte) {
		req, rep := checkDecodedRequest(t, Msgpack, in), checkDecodedReply(t, Msgpack, in)
		if req || rep {
			if _, err := msgpack.NewDecoder(bytes.NewReader(in)).DecodeInterface(); err != nil {
				t.Fatalf("accepted %x, which vmihailenco/msgpack rejects: %v", in, err)
			}
		}
	})
}

func FuzzConvert(f *testing.F) {
	for _, v := range jsonValues {
		if len(v) < 300 {
			f.Add([]byte(v), true)
			f.Add(mp(f, v), false)
		}
	}
	for _, bad := range []string{`[1,`, `{"a" 1}`, `1e999`, "\"\xff\"", `[1]x`, `"\ud800\udc00"`} {
		f.Add([]byte(bad), true)
	}
	for _, bad := range [][]byte{{0x81, 1, 2}, {0xca, 0x7f, 0xc0, 0, 0}, {0xd4, 3, 0}, {0x92, 1}, {0xa1, 0xff}, {0xc4, 3, 'a', 'b', 'c'},
		{0xd7, 0xff, 0, 0, 0, 4, 0, 0, 0, 1}, {0xca, 0x3f, 0x8c, 0xcc, 0xcd}} {
		f.Add(bad, false)
	}
	f.Fuzz(func(t *testing.T, in []byte, fromJSON bool) {
		from := FormatMsgpack
		if fromJSON {
			from = FormatJSON
		}
		to := other(from)
		verr := ValidData(in, from)
		out, cerr := Convert(in, from, to)
		if (verr == nil) != (cerr == nil) {
			t.Fatalf("ValidData says %v but Convert says %v", verr, cerr)
		}
		if cerr != nil {
			var ve, ce *DataError
			if !errors.As(verr, &ve) || !errors.As(cerr, &ce) || ve.Err != ce.Err || ve.Offset != ce.Offset {
				t.Fatalf("ValidData and Convert disagree: %v / %v", verr, cerr)
			}
			return
		}
		if err := ValidData(out, to); err != nil {
			t.Fatalf("output %q of %q is invalid: %v", out, in, err)
		}
		back, err := Convert(out, to, from)
		if err != nil {
			t.Fatalf("converting back %q: %v", out, err)
		}
		again, err := Convert(back, from, to)
		if err != nil || !bytes.Equal(out, again) {
			t.Fatalf("conversion is not stable: %v\n %q\n %q", err, out, again)
		}
		if fromJSON {
			if !json.Valid(in) {
				t.Fatalf("accepted %q, which encoding/json rejects", in)
			}
			if !hugeNumbers(t, in) {
				sameValue(t, in, FormatJSON, out, FormatMsgpack)
			}
		} else if !json.Valid(out) {
			t.Fatalf("produced %q, which encoding/json rejects", out)
		}
	})
}

// hugeNumbers reports whether a JSON value has a number that only a float
// can hold; the oracle and Convert may then legitimately round differently.
func hugeNumbers(t *testing.T, in []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if n, ok := tok.(json.Number); ok {
			if f, err := n.Float64(); err != nil || math.Abs(f) > 1<<53 {
				return true
			}
		}
	}
}
