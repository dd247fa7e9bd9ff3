package frame

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"testing"
	"testing/iotest"

	"github.com/gobwas/ws"
)

func TestAppendRawHeaderMatchesGobwas(t *testing.T) {
	for _, n := range []int64{0, 1, 125, 126, 0xffff, 0x10000, 1 << 40} {
		for rsv := byte(0); rsv < 8; rsv++ {
			for op := ws.OpCode(0); op < 16; op++ {
				for _, fin := range []bool{false, true} {
					for _, masked := range []bool{false, true} {
						h := ws.Header{Fin: fin, Rsv: rsv, OpCode: op, Masked: masked, Length: n}
						if masked {
							h.Mask = [4]byte{1, 2, 3, 4}
						}
						var want bytes.Buffer
						if err := ws.WriteHeader(&want, h); err != nil {
							t.Fatal(err)
						}
						if got := AppendRawHeader(nil, h); !bytes.Equal(got, want.Bytes()) {
							t.Fatalf("%+v: % x, gobwas/ws writes % x", h, got, want.Bytes())
						}
					}
				}
			}
		}
	}
}

// TestAppendRawHeaderInvalid covers what only a hand-crafted header carries.
func TestAppendRawHeaderInvalid(t *testing.T) {
	b := AppendRawHeader(nil, ws.Header{Fin: true, OpCode: ws.OpText, Length: math.MinInt64})
	if want := []byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}; !bytes.Equal(b, want) {
		t.Fatalf("most significant bit: % x, want % x", b, want)
	}
	var ce *CloseError
	if _, _, err := ParseHeader(b); !errors.As(err, &ce) || ce.Code != ws.StatusProtocolError {
		t.Fatalf("ParseHeader = %v, want a protocol error", err)
	}
	// RSV bits beyond the three are dropped rather than flipping FIN.
	if b := AppendRawHeader(nil, ws.Header{Rsv: 0xff, OpCode: 0xff}); b[0] != 0x7f {
		t.Fatalf("first byte %#x, want 0x7f", b[0])
	}
}

func TestAppendMaskedFrame(t *testing.T) {
	key := [4]byte{9, 8, 7, 6}
	for _, n := range []int{0, 1, 125, 126, 0xffff, 0x10000, 70000} {
		payload := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
		prefix := []byte("kept")
		b := AppendMaskedFrame(bytes.Clone(prefix), ws.OpText, payload, key)
		if !bytes.HasPrefix(b, prefix) {
			t.Fatalf("%d bytes: dst's contents not kept", n)
		}
		if !bytes.Equal(payload, bytes.Repeat([]byte{'a' + byte(n%26)}, n)) {
			t.Fatalf("%d bytes: payload modified", n)
		}
		f, err := ws.ReadFrame(bytes.NewReader(b[len(prefix):]))
		if err != nil {
			t.Fatalf("%d bytes: gobwas/ws: %v", n, err)
		}
		if !f.Header.Masked || !f.Header.Fin || f.Header.OpCode != ws.OpText || f.Header.Mask != key {
			t.Fatalf("%d bytes: header %+v", n, f.Header)
		}
		if f = ws.UnmaskFrameInPlace(f); !bytes.Equal(f.Payload, payload) {
			t.Fatalf("%d bytes: payload differs after unmasking", n)
		}
		// The server side takes it.
		h, hn, err := ParseHeader(b[len(prefix):])
		var a Assembler
		if err != nil || hn+n != len(b)-len(prefix) || a.Check(h, 1<<20) != nil {
			t.Fatalf("%d bytes: ParseHeader %+v, %d, %v", n, h, hn, err)
		}
	}
}

func TestAppendMaskedFrameAllocs(t *testing.T) {
	payload := make([]byte, 300)
	buf := make([]byte, 0, MaxMaskedHeaderSize+len(payload))
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendMaskedFrame(buf[:0], ws.OpBinary, payload, [4]byte{1, 2, 3, 4})
	}); n != 0 {
		t.Fatalf("%v allocations with room in dst, want 0", n)
	}
}

func TestCheckServerFrame(t *testing.T) {
	tests := []struct {
		name string
		h    ws.Header
		want error
	}{
		{"text", ws.Header{Fin: true, OpCode: ws.OpText, Length: 100}, nil},
		{"at limit", ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 1000}, nil},
		{"fragment", ws.Header{OpCode: ws.OpText, Length: 1}, nil},
		{"masked", ws.Header{Fin: true, OpCode: ws.OpText, Masked: true}, ErrMasked},
		{"rsv1", ws.Header{Fin: true, OpCode: ws.OpText, Rsv: 4}, ErrRsv},
		{"over limit", ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 1001}, ErrTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckServerFrame(tt.h, 1000); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// readAll reads frames from b until an error and returns them and the error.
func readAll(r io.Reader, max int) (frames []ws.Frame, err error) {
	br := bufio.NewReaderSize(r, 16) // the smallest bufio allows; a header is 14 at most
	for {
		h, p, err := ReadServerFrame(br, nil, max)
		if err != nil {
			return frames, err
		}
		frames = append(frames, ws.Frame{Header: h, Payload: p})
	}
}

func TestReadServerFrame(t *testing.T) {
	frames := func(ff ...[]byte) []byte { return bytes.Join(ff, nil) }
	text := AppendFrame(nil, ws.OpText, []byte("hello"))
	long := AppendFrame(nil, ws.OpBinary, bytes.Repeat([]byte{7}, 300))
	huge := AppendFrame(nil, ws.OpBinary, bytes.Repeat([]byte{8}, 70000))
	masked := AppendMaskedFrame(nil, ws.OpText, []byte("hi"), [4]byte{1, 2, 3, 4})
	tests := []struct {
		name string
		in   []byte
		n    int // frames read before err
		err  error
	}{
		{"empty", nil, 0, io.EOF},
		{"one", text, 1, io.EOF},
		{"three", frames(text, long, huge), 3, io.EOF},
		{"empty payload", AppendFrame(nil, ws.OpPing, nil), 1, io.EOF},
		{"close", AppendClose(nil, ws.StatusGoingAway, "bye"), 1, io.EOF},
		{"one byte", text[:1], 0, io.ErrUnexpectedEOF},
		{"cut in the extended length", long[:3], 0, io.ErrUnexpectedEOF},
		{"cut before the payload", frames(text, long[:4]), 1, io.ErrUnexpectedEOF},
		{"cut in the payload", frames(text, huge[:5000]), 1, io.ErrUnexpectedEOF},
		{"masked", frames(text, masked), 1, ErrMasked},
		{"rsv", frames(AppendRawHeader(nil, ws.Header{Fin: true, Rsv: 1, OpCode: ws.OpText})), 0, ErrRsv},
		// Refused on its header: no payload follows, and none is awaited.
		{"too big", AppendHeader(nil, ws.OpBinary, 100001), 0, ErrTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []io.Reader{bytes.NewReader(tt.in), iotest.OneByteReader(bytes.NewReader(tt.in))} {
				got, err := readAll(r, 100000)
				if len(got) != tt.n || !errors.Is(err, tt.err) {
					t.Fatalf("%d frames, %v; want %d, %v", len(got), err, tt.n, tt.err)
				}
			}
		})
	}
	var ce *CloseError
	msb := AppendRawHeader(nil, ws.Header{Fin: true, OpCode: ws.OpText, Length: -1})
	if _, err := readAll(bytes.NewReader(msb), 100); !errors.As(err, &ce) || ce.Code != ws.StatusProtocolError {
		t.Fatalf("length with its top bit set: %v, want a protocol error", err)
	}
}

// TestReadServerFrameGobwas reads what gobwas/ws writes.
func TestReadServerFrameGobwas(t *testing.T) {
	var stream bytes.Buffer
	var want []ws.Frame
	for _, n := range []int{0, 5, 125, 126, 300, 0xffff, 0x10000} {
		f := ws.NewFrame(ws.OpCode(n%3), n%2 == 0, bytes.Repeat([]byte{'z'}, n))
		if err := ws.WriteFrame(&stream, f); err != nil {
			t.Fatal(err)
		}
		want = append(want, f)
	}
	got, err := readAll(&stream, 1<<20)
	if err != io.EOF || len(got) != len(want) {
		t.Fatalf("%d frames, %v; want %d, EOF", len(got), err, len(want))
	}
	for i := range got {
		if got[i].Header != want[i].Header || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("frame %d: %+v, want %+v", i, got[i].Header, want[i].Header)
		}
	}
}

func TestReadServerFrameReusesBuf(t *testing.T) {
	stream := bytes.Repeat(AppendFrame(nil, ws.OpText, bytes.Repeat([]byte("m"), 200)), 150)
	r := bytes.NewReader(stream)
	br := bufio.NewReader(r)
	buf := make([]byte, 0, 256)
	n := testing.AllocsPerRun(100, func() {
		_, p, err := ReadServerFrame(br, buf, 1024)
		if err != nil || len(p) != 200 || &p[0] != &buf[:1][0] {
			t.Fatalf("payload of %d bytes, %v; want 200 bytes in buf", len(p), err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations with room in buf, want 0", n)
	}
}

// FuzzReadServerFrame reads arbitrary bytes as a stream of server frames.
// It must never panic, and every frame it returns must be one a client may
// accept, of the length its header declares, whose header encodes back to
// itself.
func FuzzReadServerFrame(f *testing.F) {
	f.Add(AppendFrame(nil, ws.OpText, []byte(`{"op":"msg","topic":"a","data":1}`)))
	f.Add(append(AppendFrame(nil, ws.OpPing, []byte("hb")), AppendClose(nil, 1000, "")...))
	f.Add(AppendFrame(nil, ws.OpBinary, make([]byte, 300)))
	f.Add(AppendMaskedFrame(nil, ws.OpText, []byte("masked"), [4]byte{1, 2, 3, 4}))
	f.Add(AppendRawHeader(nil, ws.Header{Fin: true, Rsv: 2, OpCode: 3, Length: -1}))
	f.Add([]byte{0x82, 126, 0})
	f.Add([]byte{0x81, 126, 0, 5, 'h', 'e', 'l', 'l', 'o'}) // not the shortest length encoding
	const max = 4096
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(b), 16)
		var buf []byte
		for {
			h, p, err := ReadServerFrame(br, buf, max)
			if err != nil {
				return
			}
			if h.Masked || h.Rsv != 0 || h.Length > max || int64(len(p)) != h.Length {
				t.Fatalf("accepted %+v with %d payload bytes", h, len(p))
			}
			back, _, err := ParseHeader(AppendRawHeader(nil, h))
			if err != nil || back != h {
				t.Fatalf("header %+v encodes back to %+v, %v", h, back, err)
			}
			buf = p[:0]
		}
	})
}

// FuzzAppendRawHeader checks that any header AppendRawHeader writes parses
// back to itself, and that only a negative length is refused.
func FuzzAppendRawHeader(f *testing.F) {
	f.Add(true, byte(0), byte(1), true, []byte{1, 2, 3, 4}, int64(5))
	f.Add(false, byte(7), byte(0xb), false, []byte(nil), int64(126))
	f.Add(true, byte(4), byte(2), true, []byte{0, 0, 0, 0}, int64(1<<40))
	f.Add(true, byte(0), byte(2), false, []byte(nil), int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, fin bool, rsv, op byte, masked bool, key []byte, n int64) {
		h := ws.Header{Fin: fin, Rsv: rsv & 7, OpCode: ws.OpCode(op & 0xf), Masked: masked, Length: n}
		if masked {
			copy(h.Mask[:], key)
		}
		b := AppendRawHeader(nil, h)
		got, hn, err := ParseHeader(b)
		if n < 0 {
			if err == nil {
				t.Fatalf("length %d parsed as %d", n, got.Length)
			}
			return
		}
		if err != nil || got != h || hn != len(b) {
			t.Fatalf("%+v encoded as % x parses as %+v, %d, %v", h, b, got, hn, err)
		}
	})
}

func benchmarkAppendMaskedFrame(b *testing.B, n int) {
	payload := bytes.Repeat([]byte{'x'}, n)
	buf := make([]byte, 0, MaxMaskedHeaderSize+n)
	b.ReportAllocs()
	b.SetBytes(int64(n))
	for i := 0; i < b.N; i++ {
		buf = AppendMaskedFrame(buf[:0], ws.OpText, payload, [4]byte{1, 2, 3, 4})
	}
}

func BenchmarkAppendMaskedFrame64(b *testing.B)  { benchmarkAppendMaskedFrame(b, 64) }
func BenchmarkAppendMaskedFrame4K(b *testing.B)  { benchmarkAppendMaskedFrame(b, 4096) }
func BenchmarkAppendMaskedFrame64K(b *testing.B) { benchmarkAppendMaskedFrame(b, 65536) }

func BenchmarkReadServerFrame(b *testing.B) {
	frame := AppendFrame(nil, ws.OpText, []byte(`{"op":"msg","topic":"chat.lobby","data":{"x":1}}`))
	r := bytes.NewReader(frame)
	br := bufio.NewReader(r)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for i := 0; i < b.N; i++ {
		r.Reset(frame)
		br.Reset(r)
		if _, _, err := ReadServerFrame(br, buf, 1024); err != nil {
			b.Fatal(err)
		}
	}
}
