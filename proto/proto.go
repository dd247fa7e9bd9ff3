package proto

import "strconv"

// Subprotocol names offered in Sec-WebSocket-Protocol.
const (
	SubprotocolJSON    = "subsock.v1.json"
	SubprotocolMsgpack = "subsock.v1.msgpack"
)

// Format is the encoding of a value: the codec's own format for a message's
// data, or the Content-Type of a published body. The numeric values are
// stable; they may be stored or sent as one byte.
type Format uint8

// Formats.
const (
	FormatJSON    Format = 1
	FormatMsgpack Format = 2
)

func (f Format) String() string {
	switch f {
	case FormatJSON:
		return "JSON"
	case FormatMsgpack:
		return "MessagePack"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// Valid reports whether f is a known format.
func (f Format) Valid() bool { return f == FormatJSON || f == FormatMsgpack }

// Op is an envelope's operation. The zero value is no operation, so a
// Request that was never decoded cannot pass for a valid one.
type Op uint8

// Operations. The numeric values are stable: a new operation is appended
// at the end, whichever side sends it, so IsRequest and IsReply go by a
// table rather than by ranges.
const (
	OpSub Op = iota + 1
	OpUnsub
	OpPub
	OpPing
	OpAuth
	OpAck
	OpErr
	OpPong
	OpMsg
	OpInfo          // request: who am I (client, user, node)
	OpPresence      // request: who is subscribed to a topic
	OpPresenceStats // request: how many clients and users a topic has
	OpJoin          // reply: a client subscribed to a presence topic
	OpLeave         // reply: a client left a presence topic
	OpUnsubscribed  // reply: the server removed a subscription
)

var opNames = [...]string{
	OpSub:           "sub",
	OpUnsub:         "unsub",
	OpPub:           "pub",
	OpPing:          "ping",
	OpAuth:          "auth",
	OpAck:           "ack",
	OpErr:           "err",
	OpPong:          "pong",
	OpMsg:           "msg",
	OpInfo:          "info",
	OpPresence:      "presence",
	OpPresenceStats: "presence_stats",
	OpJoin:          "join",
	OpLeave:         "leave",
	OpUnsubscribed:  "unsubscribed",
}

// requestOps has a bit set for each op a client may send; every other
// known op is sent by the server.
const requestOps uint32 = 1<<OpSub | 1<<OpUnsub | 1<<OpPub | 1<<OpPing | 1<<OpAuth |
	1<<OpInfo | 1<<OpPresence | 1<<OpPresenceStats

// requestOps has room for 31 ops; this fails to compile beyond that.
const _ = uint(32 - len(opNames))

// String returns the wire name ("sub", "msg", ...).
func (o Op) String() string {
	if o.known() {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

func (o Op) known() bool { return o != 0 && int(o) < len(opNames) }

// IsRequest reports whether a client may send o.
func (o Op) IsRequest() bool { return o.known() && requestOps>>o&1 != 0 }

// IsReply reports whether the server sends o.
func (o Op) IsReply() bool { return o.known() && requestOps>>o&1 == 0 }

// ParseOp returns the Op whose wire name is name.
func ParseOp(name string) (Op, bool) {
	// A switch on the string compiles to length-then-bytes compares and,
	// unlike a map, allocates nothing when called with string(b).
	switch name {
	case "sub":
		return OpSub, true
	case "unsub":
		return OpUnsub, true
	case "pub":
		return OpPub, true
	case "ping":
		return OpPing, true
	case "auth":
		return OpAuth, true
	case "ack":
		return OpAck, true
	case "err":
		return OpErr, true
	case "pong":
		return OpPong, true
	case "msg":
		return OpMsg, true
	case "info":
		return OpInfo, true
	case "presence":
		return OpPresence, true
	case "presence_stats":
		return OpPresenceStats, true
	case "join":
		return OpJoin, true
	case "leave":
		return OpLeave, true
	case "unsubscribed":
		return OpUnsubscribed, true
	}
	return 0, false
}

// Code is the machine-readable reason in an err reply.
type Code string

// Error codes (docs/protocol.md lists when each is sent).
const (
	CodeBadRequest           Code = "bad_request"            // malformed envelope, wrong field type, missing field
	CodeUnknownOp            Code = "unknown_op"             // op is not a request this server knows
	CodeInvalidTopic         Code = "invalid_topic"          // a topic breaks the topic rules
	CodeTooManySubscriptions Code = "too_many_subscriptions" // the per-connection limit would be exceeded
	CodeTooLarge             Code = "too_large"              // a request exceeds a size limit
	CodeForbidden            Code = "forbidden"              // the token does not allow it
	CodeRateLimited          Code = "rate_limited"           // too many requests; retry later
	CodeUnavailable          Code = "unavailable"            // the broker is down; retry later
	CodeInternal             Code = "internal"               // a server fault
	CodeNotEnabled           Code = "not_enabled"            // the topic has no presence (presence, presence_stats)
)

// Request is one decoded client envelope.
type Request struct {
	Op    Op
	ID    uint64
	HasID bool
	// Topics is set for sub and unsub: non-empty, each topic valid.
	Topics []string
	// Topic is set for pub, presence and presence_stats, and valid.
	Topic string
	// Data is the pub value in the codec's own format (JSON text or
	// MessagePack bytes), exactly as sent. It may alias the decoded buffer:
	// callers copy what they keep.
	Data []byte
	// Token is set for auth.
	Token string
	// Since is set for sub when the client asks to recover what it missed:
	// for some of Topics (each appears in Topics), the position it last saw.
	// nil when absent, null or empty ({}).
	Since map[string]Position
	// Last is set for sub: how many of each history topic's latest
	// publications the client asks for on subscribing; 0 when absent or null.
	Last uint64
	// NoEcho is set for a pub sent with "echo":false: the publisher's own
	// connection does not receive the message even if it is subscribed.
	// The zero value keeps the v1 behaviour (echo absent or null is true).
	NoEcho bool
}

// Pub is one publish from a source that feeds a node (a Kafka record's
// value): the topic and one value in format Format.
type Pub struct {
	Topic  string
	Format Format
	Data   []byte
}

// Member is one subscriber of a presence topic: its connection's id and
// the user its token names ("" when anonymous).
type Member struct {
	Client string
	User   string
}

// Position is a place in a topic's stream: the offset of the last
// publication and the stream's epoch.
type Position struct {
	Offset uint64
	Epoch  string
}

// TopicPosition is one topic's position in the ack of a sub.
type TopicPosition struct {
	Topic  string
	Offset uint64
	Epoch  string
	// Asked reports that the sub asked to recover this topic (since): the
	// "recovered" key is on the wire. A null "recovered" counts as absent.
	Asked bool
	// Recovered reports that every publication after the sub's position
	// was sent; meaningful only when Asked.
	Recovered bool
}

// Reply is one decoded server envelope, as a client sees it. Data may alias
// the decoded buffer.
type Reply struct {
	Op    Op
	ID    uint64
	HasID bool
	Code  Code   // err
	Msg   string // err
	Topic string // msg, join, leave, unsubscribed
	Data  []byte // msg, in the codec's own format
	// Offset is set on a msg of a history topic and on the ack of a pub on
	// one; 0 when absent or null.
	Offset uint64
	// Epoch is set on the ack of a pub on a history topic, and on a msg
	// when the stream's epoch changed; "" when absent or null.
	Epoch string
	// Positions is set on the ack of a sub that named history topics, in
	// wire order; nil when absent, null or empty.
	Positions []TopicPosition
	// Client and User are set on a join or leave (the member that came or
	// went) and on the ack of an info (the connection itself); Node on the
	// ack of an info. "" when absent or null.
	Client, User, Node string
	// Presence is set on the ack of a presence, in wire order: nil when
	// absent or null, empty but not nil for a topic with no subscribers.
	Presence []Member
	// Clients and Users are set on the ack of a presence_stats; 0 when
	// absent or null. A count beyond math.MaxInt is refused.
	Clients, Users int
}

// Codec encodes and decodes envelopes in one format. Implementations are
// stateless and safe for concurrent use.
type Codec interface {
	// Name is the subprotocol negotiated for this codec.
	Name() string
	Format() Format
	// Binary reports whether messages go in binary frames (else text).
	Binary() bool
	// DecodeRequest fills r from one client message. Bad input yields an
	// *Error carrying the code to reply with; it never panics. r.Data may
	// alias b.
	DecodeRequest(b []byte, r *Request) error
	// AppendRequest appends the client envelope for r; fields that r.Op
	// does not use are left out. Empty Data is sent as null. A sub's Since
	// is left out when empty and written in topic order (sorting more than
	// 8 topics costs one allocation); Last is left out when 0. A pub's
	// NoEcho is sent as "echo":false and left out when false.
	AppendRequest(dst []byte, r *Request) []byte
	// DecodeReply fills r from one server message; r.Data may alias b.
	DecodeReply(b []byte, r *Reply) error
	AppendAck(dst []byte, id uint64) []byte
	AppendError(dst []byte, id uint64, hasID bool, code Code, msg string) []byte
	AppendPong(dst []byte, id uint64, hasID bool) []byte
	// AppendMessage appends a msg envelope; data must already be one value
	// in this codec's format (empty data is sent as null). This is the
	// fan-out path: it allocates nothing when dst has room.
	AppendMessage(dst []byte, topic string, data []byte) []byte
	// AppendStreamMessage appends a msg envelope of a history topic:
	// AppendMessage plus its offset, and the epoch when non-empty. Fan-out
	// path: it allocates nothing when dst has room.
	AppendStreamMessage(dst []byte, topic string, offset uint64, epoch string, data []byte) []byte
	// AppendAckPositions appends the ack of a sub carrying the position of
	// each history topic, in the order given; the topics must be distinct.
	// Empty positions give a plain ack, as AppendAck.
	AppendAckPositions(dst []byte, id uint64, positions []TopicPosition) []byte
	// AppendPubAck appends the ack of a pub on a history topic; the epoch
	// is always written, even when empty.
	AppendPubAck(dst []byte, id uint64, offset uint64, epoch string) []byte
	// AppendJoin and AppendLeave append the event of a member subscribing
	// to or leaving a presence topic; user is written even when empty.
	// Fan-out path: they allocate nothing when dst has room.
	AppendJoin(dst []byte, topic, client, user string) []byte
	AppendLeave(dst []byte, topic, client, user string) []byte
	// AppendUnsubscribed appends the notice that the server removed the
	// connection's subscription to topic. It allocates nothing when dst
	// has room.
	AppendUnsubscribed(dst []byte, topic string) []byte
	// AppendInfoAck appends the ack of an info; every field is written,
	// even when empty.
	AppendInfoAck(dst []byte, id uint64, client, user, node string) []byte
	// AppendPresenceAck appends the ack of a presence with the members in
	// the order given; no members is an empty array, not a plain ack.
	AppendPresenceAck(dst []byte, id uint64, members []Member) []byte
	// AppendPresenceStatsAck appends the ack of a presence_stats. Counts
	// are never negative; a negative one is written as 0.
	AppendPresenceStatsAck(dst []byte, id uint64, clients, users int) []byte
}

// The codecs.
var (
	JSON    Codec = jsonCodec{}
	Msgpack Codec = msgpackCodec{}
)

var (
	_ Codec = jsonCodec{}
	_ Codec = msgpackCodec{}
)

// ForSubprotocol returns the codec named by a Sec-WebSocket-Protocol token.
// Names match exactly; a client that offers none of them gets JSON, which
// is the caller's choice to make.
func ForSubprotocol(name string) (Codec, bool) {
	switch name {
	case SubprotocolJSON:
		return JSON, true
	case SubprotocolMsgpack:
		return Msgpack, true
	}
	return nil, false
}

// ForFormat returns the codec whose messages carry data in format f.
func ForFormat(f Format) (Codec, bool) {
	switch f {
	case FormatJSON:
		return JSON, true
	case FormatMsgpack:
		return Msgpack, true
	}
	return nil, false
}
