package proto

import "strconv"

// Envelope decoding runs in two steps. A codec-specific scan checks the
// whole message and records where each known field's value lies; then the
// shared code below interprets those spans through an envReader, so both
// codecs enforce the same rules with the same messages.

type field uint8

const (
	fOp field = iota
	fID
	fTopics
	fTopic
	fData
	fToken
	fCode
	fMsg
	fSince
	fLast
	fOffset
	fEpoch
	fPositions
	fEcho
	fClient
	fUser
	fNode
	fPresence
	fClients
	fUsers
	nFields
)

var fieldNames = [nFields]string{"op", "id", "topics", "topic", "data", "token", "code", "msg",
	"since", "last", "offset", "epoch", "positions", "echo", "client", "user", "node", "presence",
	"clients", "users"}

func fieldByName(k []byte) (field, bool) {
	switch bstr(k) {
	case "op":
		return fOp, true
	case "id":
		return fID, true
	case "topics":
		return fTopics, true
	case "topic":
		return fTopic, true
	case "data":
		return fData, true
	case "token":
		return fToken, true
	case "code":
		return fCode, true
	case "msg":
		return fMsg, true
	case "since":
		return fSince, true
	case "last":
		return fLast, true
	case "offset":
		return fOffset, true
	case "epoch":
		return fEpoch, true
	case "positions":
		return fPositions, true
	case "echo":
		return fEcho, true
	case "client":
		return fClient, true
	case "user":
		return fUser, true
	case "node":
		return fNode, true
	case "presence":
		return fPresence, true
	case "clients":
		return fClients, true
	case "users":
		return fUsers, true
	}
	return 0, false
}

// span locates a field's encoded value in the message; end is 0 when the
// field is absent (no value can end at offset 0).
type span struct{ start, end int }

func (s span) present() bool { return s.end > 0 }

type fields [nFields]span

// set records a field, refusing duplicates: two parsers could otherwise
// disagree about which one counts.
func (f *fields) set(k field, s span) *Error {
	if f[k].present() {
		return &Error{Code: CodeBadRequest, Msg: "duplicate field " + strconv.Quote(fieldNames[k])}
	}
	f[k] = s
	return nil
}

// fieldReader is what envReader asks of each codec: typed values read out
// of spans the codec's scan has already checked for well-formedness.
type fieldReader interface {
	isNull(s span) bool
	// kind names the value's type for messages ("a string", "an array").
	kind(s span) string
	// text returns a string's content, unescaped into buf when needed;
	// ok is false when the value is not a string.
	text(s span, buf []byte) (b []byte, ok bool)
	// uint returns a non-negative integer, or what is wrong with the value
	// as a predicate to follow the field's name ("must be ..., got ...").
	uint(s span) (v uint64, problem string)
	// boolean returns a boolean's value; ok is false when the value is not
	// a boolean.
	boolean(s span) (v, ok bool)
	// elems calls fn for each element of an array, stopping when fn
	// returns false; ok is false when the value is not an array.
	elems(s span, fn func(i int, e span) bool) (n int, ok bool)
	// members calls fn for each key and value of an object (a map, in
	// MessagePack), stopping when fn returns false; ok is false when the
	// value is not one. The key is a string span, read with text.
	members(s span, fn func(k, v span) bool) (n int, ok bool)
	// raw returns the encoded value itself.
	raw(s span) []byte
}

// envReader dispatches to one codec's reader with a branch rather than an
// interface or a generic dictionary: with direct calls the compiler can
// keep the scratch buffers and callbacks below on the stack.
type envReader struct {
	b  []byte
	mp bool
}

var _ fieldReader = envReader{}

func (r envReader) isNull(s span) bool {
	if r.mp {
		return mpReader{r.b}.isNull(s)
	}
	return jsonReader{r.b}.isNull(s)
}

func (r envReader) kind(s span) string {
	if r.mp {
		return mpReader{r.b}.kind(s)
	}
	return jsonReader{r.b}.kind(s)
}

func (r envReader) text(s span, buf []byte) ([]byte, bool) {
	if r.mp {
		return mpReader{r.b}.text(s, buf)
	}
	return jsonReader{r.b}.text(s, buf)
}

func (r envReader) uint(s span) (uint64, string) {
	if r.mp {
		return mpReader{r.b}.uint(s)
	}
	return jsonReader{r.b}.uint(s)
}

func (r envReader) boolean(s span) (bool, bool) {
	if r.mp {
		return mpReader{r.b}.boolean(s)
	}
	return jsonReader{r.b}.boolean(s)
}

func (r envReader) elems(s span, fn func(int, span) bool) (int, bool) {
	if r.mp {
		return mpReader{r.b}.elems(s, fn)
	}
	return jsonReader{r.b}.elems(s, fn)
}

func (r envReader) members(s span, fn func(k, v span) bool) (int, bool) {
	if r.mp {
		return mpReader{r.b}.members(s, fn)
	}
	return jsonReader{r.b}.members(s, fn)
}

func (r envReader) raw(s span) []byte { return r.b[s.start:s.end] }

func badRequest(msg string) *Error { return &Error{Code: CodeBadRequest, Msg: msg} }

// withID stamps the request id on e when the id field could be read.
func withID(r envReader, f *fields, e *Error) *Error {
	if s := f[fID]; s.present() && !r.isNull(s) {
		if v, problem := r.uint(s); problem == "" {
			e.ID, e.HasID = v, true
		}
	}
	return e
}

// absent treats an explicit null like a missing field, as most encoders
// write null for an unset optional value.
func absent(r envReader, s span) bool { return !s.present() || r.isNull(s) }

func readOp(r envReader, f *fields) (Op, *Error) {
	s := f[fOp]
	if absent(r, s) {
		return 0, badRequest(`missing field "op"`)
	}
	var buf [16]byte
	name, ok := r.text(s, buf[:0])
	if !ok {
		return 0, badRequest(`field "op" must be a string, got ` + r.kind(s))
	}
	op, known := ParseOp(bstr(name))
	if !known {
		return 0, &Error{Code: CodeUnknownOp, Msg: "unknown op " + quoteShort(name)}
	}
	return op, nil
}

// readString reads a required string field.
func readString(r envReader, f *fields, k field) (string, *Error) {
	s := f[k]
	if absent(r, s) {
		return "", badRequest("missing field " + strconv.Quote(fieldNames[k]))
	}
	b, ok := r.text(s, nil)
	if !ok {
		return "", badRequest("field " + strconv.Quote(fieldNames[k]) + " must be a string, got " + r.kind(s))
	}
	return string(b), nil
}

// readOptionalString reads a string field that may be absent or null.
func readOptionalString(r envReader, f *fields, k field) (string, *Error) {
	if absent(r, f[k]) {
		return "", nil
	}
	return readString(r, f, k)
}

// readTopic reads the required "topic" of a request and checks it.
func readTopic(r envReader, f *fields) (string, *Error) {
	topic, e := readString(r, f, fTopic)
	if e != nil {
		return "", e
	}
	if e := checkTopic(topic); e != nil {
		return "", e
	}
	return topic, nil
}

// readUint reads a non-negative integer; name introduces the value in the
// message (`field "last"`).
func readUint(r envReader, s span, name string) (uint64, *Error) {
	v, problem := r.uint(s)
	if problem != "" {
		return 0, badRequest(name + " " + problem)
	}
	return v, nil
}

// decodeFields interprets a request's fields; the caller has reset req.
func decodeFields(r envReader, f *fields, req *Request) *Error {
	if s := f[fID]; !absent(r, s) {
		v, e := readUint(r, s, `field "id"`)
		if e != nil {
			return e
		}
		req.ID, req.HasID = v, true
	}
	e := decodeOpFields(r, f, req)
	if e != nil {
		e.ID, e.HasID = req.ID, req.HasID
	}
	return e
}

func decodeOpFields(r envReader, f *fields, req *Request) *Error {
	op, e := readOp(r, f)
	if e != nil {
		return e
	}
	if !op.IsRequest() {
		return &Error{Code: CodeUnknownOp, Msg: "op " + strconv.Quote(op.String()) + " is sent by the server, not by clients"}
	}
	req.Op = op
	switch op {
	case OpSub, OpUnsub:
		s := f[fTopics]
		if absent(r, s) {
			return badRequest(`missing field "topics"`)
		}
		n, ok := r.elems(s, func(int, span) bool { return true })
		switch {
		case !ok:
			return badRequest(`field "topics" must be an array of strings, got ` + r.kind(s))
		case n == 0:
			return badRequest(`field "topics" must not be empty`)
		}
		topics := make([]string, 0, n)
		var bad *Error
		r.elems(s, func(i int, e span) bool {
			var buf [MaxTopicLen]byte
			t, isStr := r.text(e, buf[:0])
			if !isStr {
				bad = badRequest(`field "topics" must hold strings; element ` + strconv.Itoa(i) + " is " + r.kind(e))
				return false
			}
			if bad = checkTopic(bstr(t)); bad != nil {
				return false
			}
			topics = append(topics, string(t))
			return true
		})
		if bad != nil {
			return bad
		}
		req.Topics = topics
		if op == OpSub {
			if req.Since, e = readSince(r, f[fSince], topics); e != nil {
				return e
			}
			if s := f[fLast]; !absent(r, s) {
				if req.Last, e = readUint(r, s, `field "last"`); e != nil {
					return e
				}
			}
		}
	case OpPub:
		topic, e := readTopic(r, f)
		if e != nil {
			return e
		}
		s := f[fData]
		if !s.present() {
			return badRequest(`missing field "data"`)
		}
		req.Topic = topic
		req.Data = r.raw(s)
		if req.NoEcho, e = readNoEcho(r, f[fEcho]); e != nil {
			return e
		}
	case OpPresence, OpPresenceStats:
		topic, e := readTopic(r, f)
		if e != nil {
			return e
		}
		req.Topic = topic
	case OpAuth:
		token, e := readString(r, f, fToken)
		if e != nil {
			return e
		}
		if token == "" {
			return badRequest(`field "token" must not be empty`)
		}
		req.Token = token
	}
	return nil
}

// decodeReplyFields interprets a server envelope; the caller has reset rep.
func decodeReplyFields(r envReader, f *fields, rep *Reply) *Error {
	if s := f[fID]; !absent(r, s) {
		v, e := readUint(r, s, `field "id"`)
		if e != nil {
			return e
		}
		rep.ID, rep.HasID = v, true
	}
	op, e := readOp(r, f)
	if e != nil {
		return e
	}
	if !op.IsReply() {
		return &Error{Code: CodeUnknownOp, Msg: "op " + strconv.Quote(op.String()) + " is sent by clients, not by the server"}
	}
	rep.Op = op
	switch op {
	case OpAck:
		if !rep.HasID {
			return badRequest(`ack without "id"`)
		}
		if e := readStreamFields(r, f, rep); e != nil {
			return e
		}
		if rep.Positions, e = readPositions(r, f[fPositions]); e != nil {
			return e
		}
		if e := readPresenceAckFields(r, f, rep); e != nil {
			return e
		}
	case OpJoin, OpLeave:
		if rep.Topic, e = readString(r, f, fTopic); e != nil {
			return e
		}
		if rep.Client, e = readString(r, f, fClient); e != nil {
			return e
		}
		if rep.User, e = readOptionalString(r, f, fUser); e != nil {
			return e
		}
	case OpUnsubscribed:
		if rep.Topic, e = readString(r, f, fTopic); e != nil {
			return e
		}
	case OpErr:
		code, e := readString(r, f, fCode)
		if e != nil {
			return e
		}
		rep.Code = Code(code)
		if rep.Msg, e = readOptionalString(r, f, fMsg); e != nil {
			return e
		}
	case OpMsg:
		topic, e := readString(r, f, fTopic)
		if e != nil {
			return e
		}
		s := f[fData]
		if !s.present() {
			return badRequest(`missing field "data"`)
		}
		rep.Topic = topic
		rep.Data = r.raw(s)
		if e := readStreamFields(r, f, rep); e != nil {
			return e
		}
	}
	return nil
}

// quoteShort quotes client-supplied text for an error message, cut short
// so a reply never echoes a large payload back.
func quoteShort(b []byte) string {
	const limit = 64
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + "..."
	}
	return strconv.Quote(string(b))
}
