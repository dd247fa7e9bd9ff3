package frame

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// MaxHeaderSize is the longest header of an unmasked (server) frame.
const MaxHeaderSize = 10

// MaxMaskedHeaderSize is the longest header of a masked (client) frame:
// MaxHeaderSize plus the 4-byte mask key (RFC 6455 section 5.2).
const MaxMaskedHeaderSize = MaxHeaderSize + 4

// HeaderSize returns the header length of an unmasked frame with an
// n-byte payload.
func HeaderSize(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	}
	return 10
}

// AppendHeader appends the header of an unmasked, final frame.
func AppendHeader(dst []byte, op ws.OpCode, n int) []byte {
	b0 := 0x80 | byte(op)
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	}
	dst = append(dst, b0, 127)
	return binary.BigEndian.AppendUint64(dst, uint64(n))
}

// AppendFrame appends a complete unmasked, final frame.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	return append(AppendHeader(dst, op, len(payload)), payload...)
}

// Reserve returns dst emptied, with MaxHeaderSize bytes of room at its front.
// Append a payload after it, then call Seal: the payload is encoded straight
// into its final place and never copied to make room for the header.
func Reserve(dst []byte) []byte {
	var room [MaxHeaderSize]byte
	return append(dst[:0], room[:]...)
}

// Seal writes the header in front of the payload that follows the reserved
// room in b and returns the finished frame, a subslice of b.
func Seal(b []byte, op ws.OpCode) []byte {
	n := len(b) - MaxHeaderSize
	start := MaxHeaderSize - HeaderSize(n)
	AppendHeader(b[start:start], op, n)
	return b[start:]
}

// AppendClose appends a close frame carrying code and reason. The reason is
// cut to fit the 125-byte control payload limit.
func AppendClose(dst []byte, code ws.StatusCode, reason string) []byte {
	if len(reason) > MaxControlPayload-2 {
		reason = reason[:MaxControlPayload-2]
	}
	dst = AppendHeader(dst, ws.OpClose, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

// AppendRawHeader appends h exactly as given, valid or not (RFC 6455
// section 5.2): any RSV bits (the low three bits of h.Rsv) and opcode, the
// mask bit and key when h.Masked, and the shortest length encoding for
// h.Length. A negative h.Length is written as its 64-bit two's-complement
// pattern, so a length with the most significant bit set, which section 5.2
// forbids, can be declared. It exists to craft the frames a peer must
// reject; a valid frame is built with AppendFrame or AppendMaskedFrame.
func AppendRawHeader(dst []byte, h ws.Header) []byte {
	b0 := (h.Rsv&7)<<4 | byte(h.OpCode)&0x0f
	if h.Fin {
		b0 |= 0x80
	}
	var mask byte
	if h.Masked {
		mask = 0x80
	}
	switch n := h.Length; {
	case n >= 0 && n <= 125:
		dst = append(dst, b0, mask|byte(n))
	case n >= 0 && n <= 0xffff:
		dst = append(dst, b0, mask|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, mask|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if h.Masked {
		dst = append(dst, h.Mask[:]...)
	}
	return dst
}
