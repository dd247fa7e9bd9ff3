package bench

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

func TestParseFrameHeader(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		ok     bool
		want   frameHeader
		errors bool
	}{
		{"empty", nil, false, frameHeader{}, false},
		{"one byte", []byte{0x81}, false, frameHeader{}, false},
		{"short text", []byte{0x81, 5}, true, frameHeader{fin: true, op: ws.OpText, size: 2, length: 5}, false},
		{"ping", []byte{0x89, 0}, true, frameHeader{fin: true, op: ws.OpPing, size: 2}, false},
		{"fragment", []byte{0x01, 3}, true, frameHeader{op: ws.OpText, size: 2, length: 3}, false},
		{"16-bit length, partial", []byte{0x82, 126, 1}, false, frameHeader{}, false},
		{"16-bit length", []byte{0x82, 126, 1, 0}, true, frameHeader{fin: true, op: ws.OpBinary, size: 4, length: 256}, false},
		{"64-bit length, partial", []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0}, false, frameHeader{}, false},
		{"64-bit length", []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}, true, frameHeader{fin: true, op: ws.OpBinary, size: 10, length: 65536}, false},
		{"masked, partial key", []byte{0x81, 0x85, 1, 2}, false, frameHeader{}, false},
		{"masked", []byte{0x81, 0x85, 1, 2, 3, 4}, true, frameHeader{fin: true, op: ws.OpText, masked: true, size: 6, length: 5}, false},
		{"too large", []byte{0x82, 127, 0, 0, 0, 0, 1, 0, 0, 1}, false, frameHeader{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok, err := parseFrameHeader(tt.in)
			if tt.errors {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || ok != tt.ok {
				t.Fatalf("ok, err = %v, %v; want %v", ok, err, tt.ok)
			}
			if ok && h != tt.want {
				t.Fatalf("header %+v, want %+v", h, tt.want)
			}
		})
	}
}

// TestClientFrameReadByGobwas checks the hand-built client frames against
// an independent reader.
func TestClientFrameReadByGobwas(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
		b := appendClientFrame(nil, ws.OpText, payload, [4]byte{9, 8, 7, 6})
		f, err := ws.ReadFrame(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !f.Header.Masked || !f.Header.Fin || f.Header.OpCode != ws.OpText {
			t.Fatalf("%d bytes: header %+v", n, f.Header)
		}
		f = ws.UnmaskFrameInPlace(f)
		if !bytes.Equal(f.Payload, payload) {
			t.Fatalf("%d bytes: payload differs after unmasking", n)
		}
	}
	f, err := ws.ReadFrame(bytes.NewReader(appendCloseFrame(nil, 1000, [4]byte{1, 2, 3, 4})))
	if err != nil {
		t.Fatal(err)
	}
	f = ws.UnmaskFrameInPlace(f)
	if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != ws.StatusNormalClosure {
		t.Fatalf("close frame op %v code %v", f.Header.OpCode, code)
	}
}

// TestServerFrameParsedAfterGobwas checks parseFrameHeader against frames
// written by gobwas/ws.
func TestServerFrameParsedAfterGobwas(t *testing.T) {
	for _, n := range []int{0, 5, 126, 300, 65536} {
		var buf bytes.Buffer
		if err := ws.WriteFrame(&buf, ws.NewTextFrame(bytes.Repeat([]byte("z"), n))); err != nil {
			t.Fatal(err)
		}
		h, ok, err := parseFrameHeader(buf.Bytes())
		if err != nil || !ok || h.length != n || h.size+h.length != buf.Len() || h.masked {
			t.Fatalf("%d bytes: %+v ok=%v err=%v (frame %d bytes)", n, h, ok, err, buf.Len())
		}
	}
}

func FuzzParseFrameHeader(f *testing.F) {
	for _, s := range [][]byte{{0x81, 5}, {0x82, 126, 1, 0}, {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}, {0x81, 0x85, 1, 2, 3, 4}, {0xff, 0xff}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok, err := parseFrameHeader(b)
		if err != nil || !ok {
			return
		}
		if h.size > len(b) || h.size < 2 || h.length < 0 || h.length > maxClientFrame {
			t.Fatalf("header %+v out of range for %d bytes", h, len(b))
		}
	})
}
