package frame

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// MaxControlPayload is the largest payload a control frame may carry
// (RFC 6455 section 5.5).
const MaxControlPayload = 125

// ParseHeader reads one frame header from the front of b without copying.
// It returns the header and its encoded length, or ErrShort when b holds
// only part of it. The mask key, when present, is in h.Mask.
func ParseHeader(b []byte) (h ws.Header, n int, err error) {
	if len(b) < 2 {
		return h, 0, ErrShort
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < n+2 {
			return h, 0, ErrShort
		}
		h.Length = int64(binary.BigEndian.Uint16(b[n:]))
		n += 2
	case 127:
		if len(b) < n+8 {
			return h, 0, ErrShort
		}
		u := binary.BigEndian.Uint64(b[n:])
		if u>>63 != 0 {
			// Section 5.2: the most significant bit must be 0.
			return h, 0, protocolError("payload length has its most significant bit set")
		}
		h.Length = int64(u)
		n += 8
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return h, 0, ErrShort
		}
		copy(h.Mask[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// Assembler enforces the server's framing rules on a connection's inbound
// frames and reassembles fragmented messages. The zero value is ready;
// it is not safe for concurrent use (one reader per connection).
type Assembler struct {
	op  ws.OpCode // opcode of the fragmented message in progress, 0 if none
	buf []byte    // its payload so far
}

// InMessage reports whether a fragmented message is in progress.
func (a *Assembler) InMessage() bool { return a.op != 0 }

// Check validates a header before its payload is read, so a violation or an
// oversized message is refused without buffering it. max is the largest
// message allowed, summed over fragments.
func (a *Assembler) Check(h ws.Header, max int) error {
	switch {
	case !h.Masked:
		return ErrUnmasked // section 5.1
	case h.Rsv != 0:
		return ErrRsv // no extensions are negotiated
	case h.OpCode.IsReserved():
		return ErrReservedOpCode
	}
	if h.OpCode.IsControl() {
		if h.Length > MaxControlPayload {
			return ErrControlTooLong
		}
		if !h.Fin {
			return ErrControlFragmented
		}
		return nil
	}
	if h.OpCode == ws.OpContinuation {
		if a.op == 0 {
			return ErrUnexpectedCont
		}
	} else if a.op != 0 {
		return ErrExpectedCont
	}
	if h.Length > int64(max-len(a.buf)) {
		return ErrTooBig
	}
	return nil
}

// Push takes a data frame that passed Check, with its payload already
// unmasked. When the frame completes a message it returns the message's
// opcode and payload and done is true. An unfragmented message is returned
// as the given payload, without copying; a reassembled one belongs to the
// caller.
func (a *Assembler) Push(h ws.Header, payload []byte) (op ws.OpCode, msg []byte, done bool, err error) {
	if h.OpCode != ws.OpContinuation {
		if h.Fin {
			return h.OpCode, payload, true, validText(h.OpCode, payload)
		}
		a.op = h.OpCode
		a.buf = append(a.buf[:0], payload...)
		return 0, nil, false, nil
	}
	a.buf = append(a.buf, payload...)
	if !h.Fin {
		return 0, nil, false, nil
	}
	op, msg = a.op, a.buf
	a.op, a.buf = 0, nil
	return op, msg, true, validText(op, msg)
}

func validText(op ws.OpCode, p []byte) error {
	if op == ws.OpText && !utf8.Valid(p) {
		return ErrInvalidUTF8
	}
	return nil
}

// ParseClose validates a close frame's payload (RFC 6455 section 5.5.1):
// empty, or a valid status code followed by a UTF-8 reason. An empty
// payload yields ws.StatusNoStatusRcvd.
func ParseClose(p []byte) (code ws.StatusCode, reason []byte, err error) {
	switch len(p) {
	case 0:
		return ws.StatusNoStatusRcvd, nil, nil
	case 1:
		return 0, nil, ErrCloseLength
	}
	code = ws.StatusCode(binary.BigEndian.Uint16(p))
	if !ValidCloseCode(code) {
		return 0, nil, ErrCloseCode
	}
	if !utf8.Valid(p[2:]) {
		return 0, nil, ErrCloseUTF8
	}
	return code, p[2:], nil
}
