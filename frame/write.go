package frame

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// MaxHeaderSize is the longest header of an unmasked (server) frame.
const MaxHeaderSize = 10

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
