package proto

import "strconv"

// msgpackCodec is subsock.v1.msgpack: the same envelopes as maps with
// string keys in binary frames, and data as one MessagePack value.
type msgpackCodec struct{}

func (msgpackCodec) Name() string   { return SubprotocolMsgpack }
func (msgpackCodec) Format() Format { return FormatMsgpack }
func (msgpackCodec) Binary() bool   { return true }

func (msgpackCodec) DecodeRequest(b []byte, r *Request) error {
	*r = Request{}
	var f fields
	rd := envReader{b: b, mp: true}
	if e := mpEnvelope(b, &f, "a request"); e != nil {
		return withID(rd, &f, e)
	}
	if e := decodeFields(rd, &f, r); e != nil {
		*r = Request{}
		return e
	}
	return nil
}

func (msgpackCodec) DecodeReply(b []byte, r *Reply) error {
	*r = Reply{}
	var f fields
	rd := envReader{b: b, mp: true}
	if e := mpEnvelope(b, &f, "a reply"); e != nil {
		return withID(rd, &f, e)
	}
	if e := decodeReplyFields(rd, &f, r); e != nil {
		*r = Reply{}
		return withID(rd, &f, e)
	}
	return nil
}

// mpEnvelope checks that b is one MessagePack map with string keys and
// records the spans of the fields subsock knows.
func mpEnvelope(b []byte, f *fields, what string) *Error {
	if len(b) == 0 {
		return badRequest("empty message")
	}
	t, i, err := mpNext(b, 0)
	if err != nil {
		return envelopeError(err, "MessagePack")
	}
	if t.kind != mpMap {
		return badRequest(what + " must be a MessagePack map, got " + article(t.kind))
	}
	for k := 0; k < t.n; k++ {
		kt, vs, err := mpNext(b, i)
		if err != nil {
			return envelopeError(err, "MessagePack")
		}
		if kt.kind != mpStr {
			return badRequest("envelope keys must be strings; the key at offset " + strconv.Itoa(i) + " is " + article(kt.kind))
		}
		if i, err = mpValue(b, vs, 0); err != nil {
			return envelopeError(err, "MessagePack")
		}
		if k, known := fieldByName(b[kt.start:kt.end]); known {
			if e := f.set(k, span{vs, i}); e != nil {
				return e
			}
		}
	}
	if i < len(b) {
		return envelopeError(dataErr(ErrMalformed, i, "data after the map"), "MessagePack")
	}
	return nil
}

// mpReader reads field values out of a checked MessagePack envelope.
type mpReader struct{ b []byte }

var _ fieldReader = mpReader{}

// token re-reads a header the envelope scan has already checked.
func (r mpReader) token(s span) mpToken {
	t, _, _ := mpNext(r.b, s.start)
	return t
}

func (r mpReader) isNull(s span) bool { return r.b[s.start] == 0xc0 }

func (r mpReader) kind(s span) string {
	t := r.token(s)
	return article(t.kind)
}

func (r mpReader) text(s span, _ []byte) ([]byte, bool) {
	t := r.token(s)
	if t.kind != mpStr {
		return nil, false
	}
	return r.b[t.start:t.end], true
}

func (r mpReader) uint(s span) (uint64, string) {
	t := r.token(s)
	switch {
	case t.kind != mpInt:
		return 0, "must be a non-negative integer, got " + article(t.kind)
	case t.neg:
		return 0, "must be a non-negative integer, got a negative number"
	}
	return t.u, ""
}

func (r mpReader) boolean(s span) (bool, bool) {
	t := r.token(s)
	return t.u == 1, t.kind == mpBool
}

func (r mpReader) elems(s span, fn func(int, span) bool) (int, bool) {
	t, i, _ := mpNext(r.b, s.start)
	if t.kind != mpArray {
		return 0, false
	}
	for k := 0; k < t.n; k++ {
		vs := i
		i, _ = mpValue(r.b, vs, 0)
		if !fn(k, span{vs, i}) {
			return t.n, true
		}
	}
	return t.n, true
}

func (r mpReader) members(s span, fn func(k, v span) bool) (int, bool) {
	t, i, _ := mpNext(r.b, s.start)
	if t.kind != mpMap {
		return 0, false
	}
	for k := 0; k < t.n; k++ {
		// The envelope scan checked the map, its keys strings included.
		ks := i
		vs, _ := mpValue(r.b, ks, 0)
		i, _ = mpValue(r.b, vs, 0)
		if !fn(span{ks, vs}, span{vs, i}) {
			return t.n, true
		}
	}
	return t.n, true
}

func (r mpReader) raw(s span) []byte { return r.b[s.start:s.end] }

// Envelope openings: fixmap headers and fixstr keys, written once.
const (
	mpKeyOp        = "\xa2op"
	mpKeyID        = "\xa2id"
	mpKeyTopic     = "\xa5topic"
	mpKeyData      = "\xa4data"
	mpKeyOffset    = "\xa6offset"
	mpKeyEpoch     = "\xa5epoch"
	mpKeyPositions = "\xa9positions"
	mpKeyRecovered = "\xa9recovered"
	mpKeySince     = "\xa5since"
	mpKeyLast      = "\xa4last"
	mpKeyClient    = "\xa6client"
	mpKeyUser      = "\xa4user"
	mpMsgHead      = "\x83" + mpKeyOp + "\xa3msg" + mpKeyTopic
	mpAckHead      = "\x82" + mpKeyOp + "\xa3ack" + mpKeyID
)

func (msgpackCodec) AppendMessage(dst []byte, topic string, data []byte) []byte {
	dst = append(dst, mpMsgHead...)
	dst = mpAppendString(dst, topic)
	dst = append(dst, mpKeyData...)
	return mpAppendData(dst, data)
}

func (msgpackCodec) AppendStreamMessage(dst []byte, topic string, offset uint64, epoch string, data []byte) []byte {
	dst = append(dst, 0x84+byte(b2i(epoch != "")))
	dst = append(dst, mpKeyOp+"\xa3msg"+mpKeyTopic...)
	dst = mpAppendString(dst, topic)
	dst = append(dst, mpKeyOffset...)
	dst = mpAppendUint(dst, offset)
	if epoch != "" {
		dst = append(dst, mpKeyEpoch...)
		dst = mpAppendString(dst, epoch)
	}
	dst = append(dst, mpKeyData...)
	return mpAppendData(dst, data)
}

func mpAppendData(dst, data []byte) []byte {
	if len(data) == 0 {
		return append(dst, 0xc0)
	}
	return append(dst, data...)
}

func (msgpackCodec) AppendAck(dst []byte, id uint64) []byte {
	dst = append(dst, mpAckHead...)
	return mpAppendUint(dst, id)
}

func (msgpackCodec) AppendAckPositions(dst []byte, id uint64, positions []TopicPosition) []byte {
	if len(positions) == 0 {
		return mpAppendUint(append(dst, mpAckHead...), id)
	}
	dst = append(dst, "\x83"+mpKeyOp+"\xa3ack"+mpKeyID...)
	dst = mpAppendUint(dst, id)
	dst = append(dst, mpKeyPositions...)
	dst = mpAppendContainer(dst, 0x80, len(positions))
	for i := range positions {
		p := &positions[i]
		dst = mpAppendString(dst, p.Topic)
		dst = append(dst, 0x82+byte(b2i(p.Asked)))
		dst = append(dst, mpKeyOffset...)
		dst = mpAppendUint(dst, p.Offset)
		dst = append(dst, mpKeyEpoch...)
		dst = mpAppendString(dst, p.Epoch)
		if p.Asked {
			dst = append(dst, mpKeyRecovered...)
			dst = append(dst, 0xc2+byte(b2i(p.Recovered)))
		}
	}
	return dst
}

func (msgpackCodec) AppendPubAck(dst []byte, id uint64, offset uint64, epoch string) []byte {
	dst = append(dst, "\x84"+mpKeyOp+"\xa3ack"+mpKeyID...)
	dst = mpAppendUint(dst, id)
	dst = append(dst, mpKeyOffset...)
	dst = mpAppendUint(dst, offset)
	dst = append(dst, mpKeyEpoch...)
	return mpAppendString(dst, epoch)
}

func (msgpackCodec) AppendJoin(dst []byte, topic, client, user string) []byte {
	dst = append(dst, "\x84"+mpKeyOp+"\xa4join"+mpKeyTopic...)
	return mpAppendPresenceEvent(dst, topic, client, user)
}

func (msgpackCodec) AppendLeave(dst []byte, topic, client, user string) []byte {
	dst = append(dst, "\x84"+mpKeyOp+"\xa5leave"+mpKeyTopic...)
	return mpAppendPresenceEvent(dst, topic, client, user)
}

// mpAppendPresenceEvent finishes a join or leave after its topic key.
func mpAppendPresenceEvent(dst []byte, topic, client, user string) []byte {
	dst = mpAppendString(dst, topic)
	dst = append(dst, mpKeyClient...)
	dst = mpAppendString(dst, client)
	dst = append(dst, mpKeyUser...)
	return mpAppendString(dst, user)
}

func (msgpackCodec) AppendUnsubscribed(dst []byte, topic string) []byte {
	dst = append(dst, "\x82"+mpKeyOp+"\xacunsubscribed"+mpKeyTopic...)
	return mpAppendString(dst, topic)
}

func (msgpackCodec) AppendInfoAck(dst []byte, id uint64, client, user, node string) []byte {
	dst = append(dst, "\x85"+mpKeyOp+"\xa3ack"+mpKeyID...)
	dst = mpAppendUint(dst, id)
	dst = append(dst, mpKeyClient...)
	dst = mpAppendString(dst, client)
	dst = append(dst, mpKeyUser...)
	dst = mpAppendString(dst, user)
	dst = append(dst, "\xa4node"...)
	return mpAppendString(dst, node)
}

func (msgpackCodec) AppendPresenceAck(dst []byte, id uint64, members []Member) []byte {
	dst = append(dst, "\x83"+mpKeyOp+"\xa3ack"+mpKeyID...)
	dst = mpAppendUint(dst, id)
	dst = append(dst, "\xa8presence"...)
	dst = mpAppendContainer(dst, 0x90, len(members))
	for i := range members {
		m := &members[i]
		dst = append(dst, "\x82"+mpKeyClient...)
		dst = mpAppendString(dst, m.Client)
		dst = append(dst, mpKeyUser...)
		dst = mpAppendString(dst, m.User)
	}
	return dst
}

func (msgpackCodec) AppendPresenceStatsAck(dst []byte, id uint64, clients, users int) []byte {
	dst = append(dst, "\x84"+mpKeyOp+"\xa3ack"+mpKeyID...)
	dst = mpAppendUint(dst, id)
	dst = append(dst, "\xa7clients"...)
	dst = mpAppendUint(dst, uint64(max(clients, 0)))
	dst = append(dst, "\xa5users"...)
	return mpAppendUint(dst, uint64(max(users, 0)))
}

func (msgpackCodec) AppendError(dst []byte, id uint64, hasID bool, code Code, msg string) []byte {
	dst = mpAppendContainer(dst, 0x80, 3+b2i(hasID))
	dst = append(dst, mpKeyOp+"\xa3err"...)
	dst = mpAppendID(dst, id, hasID)
	dst = append(dst, "\xa4code"...)
	dst = mpAppendString(dst, string(code))
	dst = append(dst, "\xa3msg"...)
	return mpAppendString(dst, msg)
}

func (msgpackCodec) AppendPong(dst []byte, id uint64, hasID bool) []byte {
	dst = mpAppendContainer(dst, 0x80, 1+b2i(hasID))
	dst = append(dst, mpKeyOp+"\xa4pong"...)
	return mpAppendID(dst, id, hasID)
}

func mpAppendID(dst []byte, id uint64, hasID bool) []byte {
	if !hasID {
		return dst
	}
	return mpAppendUint(append(dst, mpKeyID...), id)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (msgpackCodec) AppendRequest(dst []byte, r *Request) []byte {
	n := 1 + b2i(r.HasID)
	switch r.Op {
	case OpSub:
		n += 1 + b2i(len(r.Since) > 0) + b2i(r.Last != 0)
	case OpUnsub, OpAuth, OpPresence, OpPresenceStats:
		n++
	case OpPub:
		n += 2 + b2i(r.NoEcho)
	}
	dst = mpAppendContainer(dst, 0x80, n)
	dst = append(dst, mpKeyOp...)
	dst = mpAppendString(dst, r.Op.String())
	dst = mpAppendID(dst, r.ID, r.HasID)
	switch r.Op {
	case OpSub, OpUnsub:
		dst = append(dst, "\xa6topics"...)
		dst = mpAppendContainer(dst, 0x90, len(r.Topics))
		for _, t := range r.Topics {
			dst = mpAppendString(dst, t)
		}
		if r.Op == OpSub {
			dst = mpAppendSince(dst, r.Since)
			if r.Last != 0 {
				dst = mpAppendUint(append(dst, mpKeyLast...), r.Last)
			}
		}
	case OpPub:
		dst = append(dst, mpKeyTopic...)
		dst = mpAppendString(dst, r.Topic)
		if r.NoEcho {
			dst = append(dst, "\xa4echo\xc2"...)
		}
		dst = append(dst, mpKeyData...)
		dst = mpAppendData(dst, r.Data)
	case OpPresence, OpPresenceStats:
		dst = append(dst, mpKeyTopic...)
		dst = mpAppendString(dst, r.Topic)
	case OpAuth:
		dst = append(dst, "\xa5token"...)
		dst = mpAppendString(dst, r.Token)
	}
	return dst
}

func mpAppendSince(dst []byte, since map[string]Position) []byte {
	if len(since) == 0 {
		return dst
	}
	var buf [8]string
	dst = append(dst, mpKeySince...)
	dst = mpAppendContainer(dst, 0x80, len(since))
	for _, t := range sinceTopics(since, buf[:0]) {
		p := since[t]
		dst = mpAppendString(dst, t)
		dst = append(dst, "\x82"+mpKeyOffset...)
		dst = mpAppendUint(dst, p.Offset)
		dst = append(dst, mpKeyEpoch...)
		dst = mpAppendString(dst, p.Epoch)
	}
	return dst
}
