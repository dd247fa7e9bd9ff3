package proto

import (
	"bytes"
	"strconv"
)

// jsonCodec is subsock.v1.json: envelopes are JSON objects in text frames
// and data is any JSON value, kept as the exact text the publisher sent.
type jsonCodec struct{}

func (jsonCodec) Name() string   { return SubprotocolJSON }
func (jsonCodec) Format() Format { return FormatJSON }
func (jsonCodec) Binary() bool   { return false }

func (jsonCodec) DecodeRequest(b []byte, r *Request) error {
	*r = Request{}
	var f fields
	rd := envReader{b: b}
	if e := jsonEnvelope(b, &f, "a request"); e != nil {
		return withID(rd, &f, e)
	}
	if e := decodeFields(rd, &f, r); e != nil {
		*r = Request{}
		return e
	}
	return nil
}

func (jsonCodec) DecodeReply(b []byte, r *Reply) error {
	*r = Reply{}
	var f fields
	rd := envReader{b: b}
	if e := jsonEnvelope(b, &f, "a reply"); e != nil {
		return withID(rd, &f, e)
	}
	if e := decodeReplyFields(rd, &f, r); e != nil {
		*r = Reply{}
		return withID(rd, &f, e)
	}
	return nil
}

// envelopeError turns a scan failure into the bad_request a client gets.
func envelopeError(err error, format string) *Error {
	de, ok := err.(*DataError)
	if !ok {
		return badRequest(err.Error())
	}
	msg := de.Reason + " at offset " + strconv.Itoa(de.Offset)
	if de.Err == ErrMalformed {
		msg = "invalid " + format + ": " + msg
	}
	return badRequest(msg)
}

// jsonEnvelope checks that b is one JSON object and records the spans of
// the fields subsock knows; other fields are checked and skipped.
func jsonEnvelope(b []byte, f *fields, what string) *Error {
	i := jsonSkipWS(b, 0)
	if i >= len(b) {
		return badRequest("empty message")
	}
	if b[i] != '{' {
		return badRequest(what + " must be a JSON object")
	}
	i = jsonSkipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return envelopeError(jsonUnexpected(b, i, "a string key"), "JSON")
			}
			ks := i
			ke, escaped, err := jsonString(b, i)
			if err != nil {
				return envelopeError(err, "JSON")
			}
			i = jsonSkipWS(b, ke)
			if i >= len(b) || b[i] != ':' {
				return envelopeError(jsonUnexpected(b, i, "':'"), "JSON")
			}
			vs := jsonSkipWS(b, i+1)
			if i, err = jsonValue(b, vs, 0); err != nil {
				return envelopeError(err, "JSON")
			}
			if k, known := jsonKey(b[ks+1:ke-1], escaped); known {
				if e := f.set(k, span{vs, i}); e != nil {
					return e
				}
			}
			i = jsonSkipWS(b, i)
			if i < len(b) && b[i] == ',' {
				i = jsonSkipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return envelopeError(jsonUnexpected(b, i, "',' or '}'"), "JSON")
		}
	}
	if i = jsonSkipWS(b, i); i < len(b) {
		return envelopeError(dataErr(ErrMalformed, i, "data after the object"), "JSON")
	}
	return nil
}

// jsonKey looks a key up; an escaped key is decoded first, since
// "\u006fp" is the key "op" all the same.
func jsonKey(raw []byte, escaped bool) (field, bool) {
	if !escaped {
		return fieldByName(raw)
	}
	if len(raw) > 64 { // longer than any known key written with \u escapes
		return 0, false
	}
	var buf [64]byte
	return fieldByName(appendUnescaped(buf[:0], raw))
}

// jsonReader reads field values out of a checked JSON envelope.
type jsonReader struct{ b []byte }

var _ fieldReader = jsonReader{}

func (r jsonReader) isNull(s span) bool { return r.b[s.start] == 'n' }

func (r jsonReader) kind(s span) string {
	switch r.b[s.start] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func (r jsonReader) text(s span, buf []byte) ([]byte, bool) {
	if r.b[s.start] != '"' {
		return nil, false
	}
	body := r.b[s.start+1 : s.end-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return body, true
	}
	return appendUnescaped(buf, body), true
}

func (r jsonReader) uint(s span) (uint64, string) {
	num := r.b[s.start:s.end]
	switch c := num[0]; {
	case c == '-':
		return 0, "must be a non-negative integer, got a negative number"
	case c < '0' || c > '9':
		return 0, "must be a non-negative integer, got " + r.kind(s)
	}
	if bytes.ContainsAny(num, ".eE") {
		return 0, "must be a non-negative integer, got a number with a fraction or exponent"
	}
	v, err := strconv.ParseUint(bstr(num), 10, 64)
	if err != nil {
		return 0, "is larger than 2^64-1"
	}
	return v, ""
}

func (r jsonReader) boolean(s span) (bool, bool) {
	switch r.b[s.start] {
	case 't':
		return true, true
	case 'f':
		return false, true
	}
	return false, false
}

func (r jsonReader) elems(s span, fn func(int, span) bool) (int, bool) {
	b := r.b
	if b[s.start] != '[' {
		return 0, false
	}
	i := jsonSkipWS(b, s.start+1)
	if b[i] == ']' {
		return 0, true
	}
	n := 0
	for {
		vs := i
		// The envelope scan already checked the array, so this only
		// measures the element.
		i, _ = jsonValue(b, vs, 0)
		n++
		if !fn(n-1, span{vs, i}) {
			return n, true
		}
		i = jsonSkipWS(b, i)
		if b[i] != ',' {
			return n, true
		}
		i = jsonSkipWS(b, i+1)
	}
}

func (r jsonReader) members(s span, fn func(k, v span) bool) (int, bool) {
	b := r.b
	if b[s.start] != '{' {
		return 0, false
	}
	i := jsonSkipWS(b, s.start+1)
	if b[i] == '}' {
		return 0, true
	}
	n := 0
	for {
		// As in elems, the object is already checked: this only measures.
		ks := i
		ke, _, _ := jsonString(b, ks)
		vs := jsonSkipWS(b, jsonSkipWS(b, ke)+1)
		i, _ = jsonValue(b, vs, 0)
		n++
		if !fn(span{ks, ke}, span{vs, i}) {
			return n, true
		}
		i = jsonSkipWS(b, i)
		if b[i] != ',' {
			return n, true
		}
		i = jsonSkipWS(b, i+1)
	}
}

func (r jsonReader) raw(s span) []byte { return r.b[s.start:s.end] }

// Envelope openings, written once so each encoder is a few appends.
const (
	jsonMsgPrefix          = `{"op":"msg","topic":`
	jsonMsgData            = `,"data":`
	jsonOffset             = `,"offset":`
	jsonEpoch              = `,"epoch":`
	jsonAckPrefix          = `{"op":"ack","id":`
	jsonErrPrefix          = `{"op":"err"`
	jsonPongPrefix         = `{"op":"pong"`
	jsonJoinPrefix         = `{"op":"join","topic":`
	jsonLeavePrefix        = `{"op":"leave","topic":`
	jsonUnsubscribedPrefix = `{"op":"unsubscribed","topic":`
	jsonClient             = `,"client":`
	jsonUser               = `,"user":`
)

func (jsonCodec) AppendMessage(dst []byte, topic string, data []byte) []byte {
	dst = append(dst, jsonMsgPrefix...)
	dst = appendJSONString(dst, topic)
	dst = append(dst, jsonMsgData...)
	dst = appendJSONData(dst, data)
	return append(dst, '}')
}

func (jsonCodec) AppendStreamMessage(dst []byte, topic string, offset uint64, epoch string, data []byte) []byte {
	dst = append(dst, jsonMsgPrefix...)
	dst = appendJSONString(dst, topic)
	dst = append(dst, jsonOffset...)
	dst = strconv.AppendUint(dst, offset, 10)
	if epoch != "" {
		dst = append(dst, jsonEpoch...)
		dst = appendJSONString(dst, epoch)
	}
	dst = append(dst, jsonMsgData...)
	dst = appendJSONData(dst, data)
	return append(dst, '}')
}

func appendJSONData(dst, data []byte) []byte {
	if len(data) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, data...)
}

func (jsonCodec) AppendAck(dst []byte, id uint64) []byte {
	dst = append(dst, jsonAckPrefix...)
	dst = strconv.AppendUint(dst, id, 10)
	return append(dst, '}')
}

func (jsonCodec) AppendAckPositions(dst []byte, id uint64, positions []TopicPosition) []byte {
	dst = append(dst, jsonAckPrefix...)
	dst = strconv.AppendUint(dst, id, 10)
	if len(positions) > 0 {
		dst = append(dst, `,"positions":{`...)
		for i := range positions {
			p := &positions[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, p.Topic)
			dst = append(dst, `:{"offset":`...)
			dst = strconv.AppendUint(dst, p.Offset, 10)
			dst = append(dst, jsonEpoch...)
			dst = appendJSONString(dst, p.Epoch)
			if p.Asked {
				dst = append(dst, `,"recovered":`...)
				dst = strconv.AppendBool(dst, p.Recovered)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

func (jsonCodec) AppendPubAck(dst []byte, id uint64, offset uint64, epoch string) []byte {
	dst = append(dst, jsonAckPrefix...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, jsonOffset...)
	dst = strconv.AppendUint(dst, offset, 10)
	dst = append(dst, jsonEpoch...)
	dst = appendJSONString(dst, epoch)
	return append(dst, '}')
}

func (jsonCodec) AppendJoin(dst []byte, topic, client, user string) []byte {
	return appendJSONPresenceEvent(append(dst, jsonJoinPrefix...), topic, client, user)
}

func (jsonCodec) AppendLeave(dst []byte, topic, client, user string) []byte {
	return appendJSONPresenceEvent(append(dst, jsonLeavePrefix...), topic, client, user)
}

// appendJSONPresenceEvent finishes a join or leave after its prefix.
func appendJSONPresenceEvent(dst []byte, topic, client, user string) []byte {
	dst = appendJSONString(dst, topic)
	dst = append(dst, jsonClient...)
	dst = appendJSONString(dst, client)
	dst = append(dst, jsonUser...)
	dst = appendJSONString(dst, user)
	return append(dst, '}')
}

func (jsonCodec) AppendUnsubscribed(dst []byte, topic string) []byte {
	dst = append(dst, jsonUnsubscribedPrefix...)
	dst = appendJSONString(dst, topic)
	return append(dst, '}')
}

func (jsonCodec) AppendInfoAck(dst []byte, id uint64, client, user, node string) []byte {
	dst = append(dst, jsonAckPrefix...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, jsonClient...)
	dst = appendJSONString(dst, client)
	dst = append(dst, jsonUser...)
	dst = appendJSONString(dst, user)
	dst = append(dst, `,"node":`...)
	dst = appendJSONString(dst, node)
	return append(dst, '}')
}

func (jsonCodec) AppendPresenceAck(dst []byte, id uint64, members []Member) []byte {
	dst = append(dst, jsonAckPrefix...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `,"presence":[`...)
	for i := range members {
		m := &members[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"client":`...)
		dst = appendJSONString(dst, m.Client)
		dst = append(dst, jsonUser...)
		dst = appendJSONString(dst, m.User)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

func (jsonCodec) AppendPresenceStatsAck(dst []byte, id uint64, clients, users int) []byte {
	dst = append(dst, jsonAckPrefix...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `,"clients":`...)
	dst = strconv.AppendUint(dst, uint64(max(clients, 0)), 10)
	dst = append(dst, `,"users":`...)
	dst = strconv.AppendUint(dst, uint64(max(users, 0)), 10)
	return append(dst, '}')
}

func (jsonCodec) AppendError(dst []byte, id uint64, hasID bool, code Code, msg string) []byte {
	dst = append(dst, jsonErrPrefix...)
	dst = appendJSONID(dst, id, hasID)
	dst = append(dst, `,"code":`...)
	dst = appendJSONString(dst, string(code))
	dst = append(dst, `,"msg":`...)
	dst = appendJSONString(dst, msg)
	return append(dst, '}')
}

func (jsonCodec) AppendPong(dst []byte, id uint64, hasID bool) []byte {
	dst = append(dst, jsonPongPrefix...)
	dst = appendJSONID(dst, id, hasID)
	return append(dst, '}')
}

func appendJSONID(dst []byte, id uint64, hasID bool) []byte {
	if !hasID {
		return dst
	}
	dst = append(dst, `,"id":`...)
	return strconv.AppendUint(dst, id, 10)
}

func (jsonCodec) AppendRequest(dst []byte, r *Request) []byte {
	dst = append(dst, `{"op":`...)
	dst = appendJSONString(dst, r.Op.String())
	dst = appendJSONID(dst, r.ID, r.HasID)
	switch r.Op {
	case OpSub, OpUnsub:
		dst = append(dst, `,"topics":[`...)
		for i, t := range r.Topics {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, t)
		}
		dst = append(dst, ']')
		if r.Op == OpSub {
			dst = appendJSONSince(dst, r.Since)
			if r.Last != 0 {
				dst = append(dst, `,"last":`...)
				dst = strconv.AppendUint(dst, r.Last, 10)
			}
		}
	case OpPub:
		dst = append(dst, `,"topic":`...)
		dst = appendJSONString(dst, r.Topic)
		if r.NoEcho {
			dst = append(dst, `,"echo":false`...)
		}
		dst = append(dst, jsonMsgData...)
		dst = appendJSONData(dst, r.Data)
	case OpPresence, OpPresenceStats:
		dst = append(dst, `,"topic":`...)
		dst = appendJSONString(dst, r.Topic)
	case OpAuth:
		dst = append(dst, `,"token":`...)
		dst = appendJSONString(dst, r.Token)
	}
	return append(dst, '}')
}

func appendJSONSince(dst []byte, since map[string]Position) []byte {
	if len(since) == 0 {
		return dst
	}
	var buf [8]string
	dst = append(dst, `,"since":{`...)
	for i, t := range sinceTopics(since, buf[:0]) {
		if i > 0 {
			dst = append(dst, ',')
		}
		p := since[t]
		dst = appendJSONString(dst, t)
		dst = append(dst, `:{"offset":`...)
		dst = strconv.AppendUint(dst, p.Offset, 10)
		dst = append(dst, jsonEpoch...)
		dst = appendJSONString(dst, p.Epoch)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}
