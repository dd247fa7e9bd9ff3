package bench

import (
	"bytes"
	"fmt"
	"strconv"
)

// A published value is the JSON array [sentUnixNanos, seq, step, "pad"]:
// the intended send time, the topic's sequence number (from 1), the steps
// scenario's step, and padding to the requested size. Arrays keep it cheap
// to build and to find again in the server's {"op":"msg",...,"data":…}.

// stamp is what a receiver needs from one delivery.
type stamp struct {
	sent int64
	seq  uint64
	step int
}

// appendPayload appends the JSON value for st, padded so the value is about
// size bytes.
func appendPayload(dst []byte, st stamp, size int) []byte {
	start := len(dst)
	dst = append(dst, '[')
	dst = strconv.AppendInt(dst, st.sent, 10)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, st.seq, 10)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, int64(st.step), 10)
	dst = append(dst, ',', '"')
	for pad := size - (len(dst) - start) - 2; pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return append(dst, '"', ']')
}

// replyKind is the op of a server frame.
type replyKind uint8

const (
	replyOther replyKind = iota
	replyMsg
	replyAck
	replyErr
	replyPong
	replyJoin  // another member subscribed to a -join-leave topic
	replyLeave // another member left it
)

// reply is one decoded server frame. topic, code and the epochs alias the
// input.
type reply struct {
	kind     replyKind
	id       uint64
	hasID    bool
	topic    []byte
	code     []byte
	text     []byte // an err's msg, raw
	st       stamp
	hasStamp bool
	// A msg on a history topic has an offset, and an epoch when the
	// stream lost its past; the ack of a sub has positions, of which the
	// first is kept (the recover scenario's connections have one topic).
	offset    uint64
	hasOffset bool
	epoch     []byte
	pos       position
	hasPos    bool
	// clients and users are the counts of a presence_stats ack.
	clients, users uint64
	hasCounts      bool
}

// position is one topic's entry in the positions of a sub's ack.
type position struct {
	offset    uint64
	epoch     []byte
	recovered recovery
}

// recovery is a position's "recovered" field: absent on a sub without
// since, else true or false.
type recovery uint8

const (
	recoveryNone recovery = iota
	recoveryTrue
	recoveryFalse
)

// maxDepth bounds nesting in skipped values.
const maxDepth = 64

// parseReply decodes a JSON server frame. Unknown fields are skipped; a
// data value of another shape than a bench payload leaves hasStamp false.
func parseReply(b []byte, r *reply) error {
	*r = reply{}
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return malformed(b, i, "an object")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return trailing(b, i+1)
	}
	for {
		ks, ke, next, err := scanString(b, i)
		if err != nil {
			return err
		}
		i = skipWS(b, next)
		if i >= len(b) || b[i] != ':' {
			return malformed(b, i, "':'")
		}
		i = skipWS(b, i+1)
		switch string(b[ks:ke]) {
		case "op":
			vs, ve, n, err := scanString(b, i)
			if err != nil {
				return err
			}
			r.kind = opKind(b[vs:ve])
			i = n
		case "id":
			v, n, ok := scanUint(b, i)
			if !ok {
				return malformed(b, i, "a non-negative integer id")
			}
			r.id, r.hasID, i = v, true, n
		case "topic":
			vs, ve, n, err := scanString(b, i)
			if err != nil {
				return err
			}
			r.topic, i = b[vs:ve], n
		case "code":
			vs, ve, n, err := scanString(b, i)
			if err != nil {
				return err
			}
			r.code, i = b[vs:ve], n
		case "msg":
			vs, ve, n, err := scanString(b, i)
			if err != nil {
				return err
			}
			r.text, i = b[vs:ve], n
		case "offset":
			v, n, ok := scanUint(b, i)
			if !ok {
				return malformed(b, i, "a non-negative integer offset")
			}
			r.offset, r.hasOffset, i = v, true, n
		case "epoch":
			vs, ve, n, err := scanString(b, i)
			if err != nil {
				return err
			}
			r.epoch, i = b[vs:ve], n
		case "clients", "users":
			v, n, ok := scanUint(b, i)
			if !ok {
				return malformed(b, i, "a non-negative integer count")
			}
			if b[ks] == 'c' {
				r.clients = v
			} else {
				r.users = v
			}
			r.hasCounts, i = true, n
		case "positions":
			n, found, err := scanPositions(b, i, &r.pos)
			if err != nil {
				return err
			}
			r.hasPos, i = found, n
		case "data":
			if st, n, ok := scanStamp(b, i); ok {
				r.st, r.hasStamp, i = st, true, n
				break
			}
			n, err := skipValue(b, i, 0)
			if err != nil {
				return err
			}
			i = n
		default:
			n, err := skipValue(b, i, 0)
			if err != nil {
				return err
			}
			i = n
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return malformed(b, i, "',' or '}'")
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return trailing(b, i+1)
		default:
			return malformed(b, i, "',' or '}'")
		}
	}
}

func opKind(op []byte) replyKind {
	switch string(op) {
	case "msg":
		return replyMsg
	case "ack":
		return replyAck
	case "err":
		return replyErr
	case "pong":
		return replyPong
	case "join":
		return replyJoin
	case "leave":
		return replyLeave
	}
	return replyOther
}

// scanStamp reads [int, uint, int, ...] and skips the rest of the array.
func scanStamp(b []byte, i int) (stamp, int, bool) {
	var st stamp
	if i >= len(b) || b[i] != '[' {
		return st, i, false
	}
	i = skipWS(b, i+1)
	v, i, ok := scanUint(b, i)
	if !ok || v > 1<<62 {
		return st, i, false
	}
	st.sent = int64(v)
	if i = skipWS(b, i); i >= len(b) || b[i] != ',' {
		return st, i, false
	}
	if st.seq, i, ok = scanUint(b, skipWS(b, i+1)); !ok {
		return st, i, false
	}
	if i = skipWS(b, i); i >= len(b) || b[i] != ',' {
		return st, i, false
	}
	step, i, ok := scanUint(b, skipWS(b, i+1))
	if !ok || step > 1<<20 {
		return st, i, false
	}
	st.step = int(step)
	for i = skipWS(b, i); i < len(b) && b[i] == ','; i = skipWS(b, i) {
		n, err := skipValue(b, skipWS(b, i+1), 1)
		if err != nil {
			return st, i, false
		}
		i = n
	}
	if i >= len(b) || b[i] != ']' {
		return st, i, false
	}
	return st, i + 1, true
}

// scanPositions reads {"TOPIC":{"offset":N,"epoch":"E","recovered":B},...}
// into pos from its first entry and skips the others.
func scanPositions(b []byte, i int, pos *position) (next int, found bool, err error) {
	if i >= len(b) || b[i] != '{' {
		return i, false, malformed(b, i, "a positions object")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, false, nil
	}
	for {
		_, _, n, err := scanString(b, i)
		if err != nil {
			return n, found, err
		}
		if i = skipWS(b, n); i >= len(b) || b[i] != ':' {
			return i, found, malformed(b, i, "':'")
		}
		i = skipWS(b, i+1)
		if found {
			i, err = skipValue(b, i, 1)
		} else {
			i, err = scanPosition(b, i, pos)
			found = true
		}
		if err != nil {
			return i, found, err
		}
		i = skipWS(b, i)
		switch {
		case i < len(b) && b[i] == '}':
			return i + 1, found, nil
		case i < len(b) && b[i] == ',':
			i = skipWS(b, i+1)
		default:
			return i, found, malformed(b, i, "',' or '}'")
		}
	}
}

// scanPosition reads one {"offset":N,"epoch":"E","recovered":B}.
func scanPosition(b []byte, i int, pos *position) (int, error) {
	*pos = position{}
	if i >= len(b) || b[i] != '{' {
		return i, malformed(b, i, "a position object")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		ks, ke, n, err := scanString(b, i)
		if err != nil {
			return n, err
		}
		if i = skipWS(b, n); i >= len(b) || b[i] != ':' {
			return i, malformed(b, i, "':'")
		}
		i = skipWS(b, i+1)
		switch string(b[ks:ke]) {
		case "offset":
			v, n, ok := scanUint(b, i)
			if !ok {
				return n, malformed(b, i, "a non-negative integer offset")
			}
			pos.offset, i = v, n
		case "epoch":
			vs, ve, n, err := scanString(b, i)
			if err != nil {
				return n, err
			}
			pos.epoch, i = b[vs:ve], n
		case "recovered":
			switch {
			case bytes.HasPrefix(b[i:], []byte("true")):
				pos.recovered, i = recoveryTrue, i+4
			case bytes.HasPrefix(b[i:], []byte("false")):
				pos.recovered, i = recoveryFalse, i+5
			default:
				return i, malformed(b, i, "true or false")
			}
		default:
			if i, err = skipValue(b, i, 2); err != nil {
				return i, err
			}
		}
		i = skipWS(b, i)
		switch {
		case i < len(b) && b[i] == '}':
			return i + 1, nil
		case i < len(b) && b[i] == ',':
			i = skipWS(b, i+1)
		default:
			return i, malformed(b, i, "',' or '}'")
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the raw (still escaped) contents of the string at i.
func scanString(b []byte, i int) (start, end, next int, err error) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, i, malformed(b, i, "a string")
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return i + 1, j, j + 1, nil
		case c == '\\':
			j++
		case c < 0x20:
			return 0, 0, j, malformed(b, j, "no control character in a string")
		}
	}
	return 0, 0, len(b), malformed(b, len(b), "the end of a string")
}

// scanUint reads a decimal integer with no sign, fraction or exponent.
func scanUint(b []byte, i int) (uint64, int, bool) {
	start := i
	var v uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		d := uint64(b[i] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, i, false
		}
		v = v*10 + d
		i++
	}
	if i == start || (b[start] == '0' && i-start > 1) {
		return 0, i, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, i, false
	}
	return v, i, true
}

// skipValue returns the index just past the JSON value at i.
func skipValue(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, malformed(b, i, "less nesting")
	}
	if i >= len(b) {
		return i, malformed(b, i, "a value")
	}
	switch c := b[i]; {
	case c == '"':
		_, _, n, err := scanString(b, i)
		return n, err
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == closer {
			return i + 1, nil
		}
		for {
			if c == '{' {
				_, _, n, err := scanString(b, i)
				if err != nil {
					return n, err
				}
				if i = skipWS(b, n); i >= len(b) || b[i] != ':' {
					return i, malformed(b, i, "':'")
				}
				i = skipWS(b, i+1)
			}
			n, err := skipValue(b, i, depth+1)
			if err != nil {
				return n, err
			}
			i = skipWS(b, n)
			if i < len(b) && b[i] == closer {
				return i + 1, nil
			}
			if i >= len(b) || b[i] != ',' {
				return i, malformed(b, i, "',' or '"+string(closer)+"'")
			}
			i = skipWS(b, i+1)
		}
	case c == '-' || (c >= '0' && c <= '9'):
		j := i
		if b[j] == '-' {
			j++
		}
		start := j
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		if j == start {
			return j, malformed(b, j, "a digit")
		}
		return j, nil
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if bytes.HasPrefix(b[i:], []byte(lit)) {
				return i + len(lit), nil
			}
		}
		return i, malformed(b, i, "a value")
	}
}

func trailing(b []byte, i int) error {
	if i = skipWS(b, i); i != len(b) {
		return malformed(b, i, "the end of the frame")
	}
	return nil
}

func malformed(b []byte, i int, want string) error {
	got := "end of input"
	if i < len(b) {
		got = strconv.QuoteRune(rune(b[i]))
	}
	return fmt.Errorf("%w: offset %d: want %s, got %s", ErrMalformed, i, want, got)
}
