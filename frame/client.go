package frame

import (
	"bufio"
	"encoding/binary"
	"io"
	"slices"

	"github.com/gobwas/ws"
)

// The client's side of framing, for the bench harness and the tests: a
// client masks every frame it sends and reads unmasked frames back.

// AppendMaskedFrame appends a complete masked, final frame carrying payload,
// as a client must send it (RFC 6455 section 5.3). key is the masking key;
// the caller picks a fresh, unpredictable one per frame. payload is not
// modified. dst grows at most once, so a dst with room (MaxMaskedHeaderSize
// plus the payload) allocates nothing.
func AppendMaskedFrame(dst []byte, op ws.OpCode, payload []byte, key [4]byte) []byte {
	n := len(payload)
	hs := HeaderSize(n) + len(key)
	start := len(dst)
	dst = slices.Grow(dst, hs+n)[:start+hs+n]
	h := dst[start : start+hs]
	h[0] = 0x80 | byte(op)
	switch {
	case n <= 125:
		h[1] = 0x80 | byte(n)
	case n <= 0xffff:
		h[1] = 0x80 | 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h[1] = 0x80 | 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	copy(h[hs-len(key):], key[:])
	p := dst[start+hs:]
	copy(p, payload)
	ws.Cipher(p, key, 0)
	return dst
}

// CheckServerFrame validates, before its payload is read, the header of a
// frame a client received: a server never masks (RFC 6455 section 5.1),
// sets no RSV bits without a negotiated extension (section 5.2), and a
// payload longer than max is refused before it is buffered. Opcode and
// fragmentation rules are left to the caller, which knows what it expects.
func CheckServerFrame(h ws.Header, max int) error {
	switch {
	case h.Masked:
		return ErrMasked
	case h.Rsv != 0:
		return ErrRsv
	case h.Length > int64(max):
		return ErrTooBig
	}
	return nil
}

// ReadServerFrame reads one frame a server sent from br and checks it with
// CheckServerFrame against max. The payload is read into buf when its
// capacity suffices, so a reused buf allocates nothing, and into a new slice
// otherwise. br's errors are returned as they are: io.EOF means the stream
// ended cleanly between two frames; a stream cut inside a frame gives
// io.ErrUnexpectedEOF. After a protocol error the stream is not resumable.
func ReadServerFrame(br *bufio.Reader, buf []byte, max int) (h ws.Header, payload []byte, err error) {
	b, err := br.Peek(2)
	if err != nil {
		if len(b) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	if b, err = br.Peek(headerLen(b[1])); err != nil {
		return h, nil, noEOF(err)
	}
	h, n, err := ParseHeader(b)
	if err != nil {
		return h, nil, err
	}
	_, _ = br.Discard(n) // n bytes are buffered: Discard cannot fail
	if err := CheckServerFrame(h, max); err != nil {
		return h, nil, err
	}
	if int64(cap(buf)) >= h.Length {
		payload = buf[:h.Length]
	} else {
		payload = make([]byte, h.Length)
	}
	if _, err := io.ReadFull(br, payload); err != nil {
		return h, nil, noEOF(err)
	}
	return h, payload, nil
}

// headerLen is the length of a header whose second byte is b1.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// noEOF turns an end of stream inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
