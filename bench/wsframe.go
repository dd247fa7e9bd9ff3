package bench

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// The clients frame by hand over a per-connection buffer: a worker holds
// 15,000 of them, and the server coalesces many frames into one TCP write,
// so one Read usually carries several whole frames.

// frameHeader is a parsed server-to-client frame header (RFC 6455 §5.2).
type frameHeader struct {
	fin    bool
	op     ws.OpCode
	masked bool
	size   int // header bytes, mask key included
	length int // payload bytes
}

// maxClientFrame bounds a payload the clients accept; the node's own limit
// is 64 KiB by default.
const maxClientFrame = 16 << 20

// parseFrameHeader reads the header at the start of b. ok is false while b
// holds too few bytes; err is ErrMalformed for a length past maxClientFrame.
func parseFrameHeader(b []byte) (h frameHeader, ok bool, err error) {
	if len(b) < 2 {
		return h, false, nil
	}
	h.fin = b[0]&0x80 != 0
	h.op = ws.OpCode(b[0] & 0x0f)
	h.masked = b[1]&0x80 != 0
	n := uint64(b[1] & 0x7f)
	h.size = 2
	switch n {
	case 126:
		if len(b) < 4 {
			return h, false, nil
		}
		n, h.size = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return h, false, nil
		}
		n, h.size = binary.BigEndian.Uint64(b[2:]), 10
	}
	if n > maxClientFrame {
		return h, false, malformed(b, 1, "a frame of at most 16 MiB")
	}
	if h.masked {
		h.size += 4
	}
	if len(b) < h.size {
		return h, false, nil
	}
	h.length = int(n)
	return h, true, nil
}

// appendClientFrame appends one final, masked frame carrying payload
// (RFC 6455 §5.3: every client frame is masked).
func appendClientFrame(dst []byte, op ws.OpCode, payload []byte, key [4]byte) []byte {
	dst = append(dst, 0x80|byte(op))
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], key, 0)
	return dst
}

// appendCloseFrame appends a masked close frame with a status code.
func appendCloseFrame(dst []byte, code uint16, key [4]byte) []byte {
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], code)
	return appendClientFrame(dst, ws.OpClose, p[:], key)
}
