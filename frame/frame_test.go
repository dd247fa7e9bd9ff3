package frame

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

// clientFrame builds a masked client frame the way a browser would.
func clientFrame(t testing.TB, fin bool, op ws.OpCode, rsv byte, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	f.Header.Rsv = rsv
	f = ws.MaskFrameInPlace(f)
	if err := ws.WriteFrame(&buf, f); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseHeaderLengths(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20} {
		b := clientFrame(t, true, ws.OpBinary, 0, make([]byte, n))
		h, hn, err := ParseHeader(b)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if h.Length != int64(n) || !h.Masked || !h.Fin || h.OpCode != ws.OpBinary {
			t.Fatalf("n=%d: header %+v", n, h)
		}
		if hn+n != len(b) {
			t.Fatalf("n=%d: header length %d, frame %d", n, hn, len(b))
		}
		// Every strict prefix of the header is short.
		for i := 0; i < hn; i++ {
			if _, _, err := ParseHeader(b[:i]); !errors.Is(err, ErrShort) {
				t.Fatalf("n=%d prefix %d: err %v, want ErrShort", n, i, err)
			}
		}
	}
}

func TestParseHeaderRejectsHugeLength(t *testing.T) {
	b := []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
	_, _, err := ParseHeader(b)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != ws.StatusProtocolError {
		t.Fatalf("err = %v, want protocol error", err)
	}
}

func TestAssemblerRules(t *testing.T) {
	const max = 1024
	type step struct {
		fin     bool
		op      ws.OpCode
		rsv     byte
		masked  bool
		payload []byte
	}
	tests := []struct {
		name  string
		steps []step
		want  error // the error of the last step; earlier steps must pass
		msg   string
	}{
		{"text", []step{{true, ws.OpText, 0, true, []byte("hi")}}, nil, "hi"},
		{"unmasked", []step{{true, ws.OpText, 0, false, []byte("hi")}}, ErrUnmasked, ""},
		{"rsv1", []step{{true, ws.OpText, 4, true, []byte("hi")}}, ErrRsv, ""},
		{"rsv3", []step{{true, ws.OpText, 1, true, []byte("hi")}}, ErrRsv, ""},
		{"reserved data opcode", []step{{true, ws.OpCode(3), 0, true, nil}}, ErrReservedOpCode, ""},
		{"reserved control opcode", []step{{true, ws.OpCode(0xb), 0, true, nil}}, ErrReservedOpCode, ""},
		{"long ping", []step{{true, ws.OpPing, 0, true, make([]byte, 126)}}, ErrControlTooLong, ""},
		{"fragmented ping", []step{{false, ws.OpPing, 0, true, nil}}, ErrControlFragmented, ""},
		{"lone continuation", []step{{true, ws.OpContinuation, 0, true, []byte("x")}}, ErrUnexpectedCont, ""},
		{"data inside fragments", []step{
			{false, ws.OpText, 0, true, []byte("a")},
			{true, ws.OpText, 0, true, []byte("b")},
		}, ErrExpectedCont, ""},
		{"fragments", []step{
			{false, ws.OpText, 0, true, []byte("he")},
			{false, ws.OpContinuation, 0, true, []byte("l")},
			{true, ws.OpContinuation, 0, true, []byte("lo")},
		}, nil, "hello"},
		{"ping between fragments", []step{
			{false, ws.OpText, 0, true, []byte("he")},
			{true, ws.OpPing, 0, true, []byte("p")},
			{true, ws.OpContinuation, 0, true, []byte("llo")},
		}, nil, "hello"},
		{"too big", []step{{true, ws.OpBinary, 0, true, make([]byte, max+1)}}, ErrTooBig, ""},
		{"too big over fragments", []step{
			{false, ws.OpBinary, 0, true, make([]byte, max)},
			{true, ws.OpContinuation, 0, true, []byte("x")},
		}, ErrTooBig, ""},
		{"invalid utf8", []step{{true, ws.OpText, 0, true, []byte{0xff, 0xfe}}}, ErrInvalidUTF8, ""},
		{"invalid utf8 split", []step{
			{false, ws.OpText, 0, true, []byte{0xe2, 0x82}},
			{true, ws.OpContinuation, 0, true, []byte{0x28}},
		}, ErrInvalidUTF8, ""},
		{"utf8 split across fragments", []step{
			{false, ws.OpText, 0, true, []byte{0xe2, 0x82}},
			{true, ws.OpContinuation, 0, true, []byte{0xac}},
		}, nil, "€"},
		{"binary not utf8 checked", []step{{true, ws.OpBinary, 0, true, []byte{0xff}}}, nil, "\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Assembler
			var got string
			for i, s := range tt.steps {
				h := ws.Header{Fin: s.fin, OpCode: s.op, Rsv: s.rsv, Masked: s.masked, Length: int64(len(s.payload))}
				last := i == len(tt.steps)-1
				err := a.Check(h, max)
				if err == nil && !h.OpCode.IsControl() {
					var op ws.OpCode
					var msg []byte
					var done bool
					op, msg, done, err = a.Push(h, s.payload)
					if done && err == nil {
						got = string(msg)
						if op != tt.steps[0].op {
							t.Fatalf("message opcode %v, want %v", op, tt.steps[0].op)
						}
					}
				}
				if !last && err != nil {
					t.Fatalf("step %d: unexpected %v", i, err)
				}
				if last && !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
			}
			if tt.want == nil && got != tt.msg {
				t.Fatalf("message %q, want %q", got, tt.msg)
			}
		})
	}
}

func TestParseClose(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		code    ws.StatusCode
		want    error
	}{
		{"empty", nil, ws.StatusNoStatusRcvd, nil},
		{"one byte", []byte{3}, 0, ErrCloseLength},
		{"normal", []byte{0x03, 0xe8, 'b', 'y', 'e'}, 1000, nil},
		{"private", []byte{0x0f, 0xa0}, 4000, nil},
		{"1005 not sendable", []byte{0x03, 0xed}, 0, ErrCloseCode},
		{"999", []byte{0x03, 0xe7}, 0, ErrCloseCode},
		{"1016 unassigned", []byte{0x03, 0xf8}, 0, ErrCloseCode},
		{"5000", []byte{0x13, 0x88}, 0, ErrCloseCode},
		{"bad reason", []byte{0x03, 0xe8, 0xff}, 0, ErrCloseUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, err := ParseClose(tt.payload)
			if !errors.Is(err, tt.want) || (err == nil && code != tt.code) {
				t.Fatalf("ParseClose = %d, %v; want %d, %v", code, err, tt.code, tt.want)
			}
		})
	}
}

func TestSealMatchesGobwas(t *testing.T) {
	for _, n := range []int{0, 5, 125, 126, 1000, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		b := append(Reserve(nil), payload...)
		got := Seal(b, ws.OpText)
		want, err := ws.CompileFrame(ws.NewTextFrame(payload))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("n=%d: Seal differs from gobwas/ws", n)
		}
		if !bytes.Equal(AppendFrame(nil, ws.OpText, payload), want) {
			t.Fatalf("n=%d: AppendFrame differs from gobwas/ws", n)
		}
	}
}

func TestAppendClose(t *testing.T) {
	b := AppendClose(nil, ws.StatusGoingAway, "server shutting down")
	f, err := ws.ReadFrame(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	code, reason := ws.ParseCloseFrameData(f.Payload)
	if f.Header.OpCode != ws.OpClose || code != ws.StatusGoingAway || reason != "server shutting down" {
		t.Fatalf("got %v %d %q", f.Header.OpCode, code, reason)
	}
	long := AppendClose(nil, 1000, string(bytes.Repeat([]byte{'r'}, 300)))
	if h, _, _ := ParseHeader(long); h.Length != MaxControlPayload {
		t.Fatalf("long reason not cut: %d", h.Length)
	}
}

// FuzzReader feeds arbitrary bytes through the same loop the gateway runs:
// parse a header, check it, unmask, push. It must never panic, and every
// message it completes must respect the limit.
func FuzzReader(f *testing.F) {
	f.Add(clientFrame(f, true, ws.OpText, 0, []byte(`{"op":"ping"}`)))
	f.Add(append(clientFrame(f, false, ws.OpText, 0, []byte("a")), clientFrame(f, true, ws.OpContinuation, 0, []byte("b"))...))
	f.Add(clientFrame(f, true, ws.OpClose, 0, []byte{0x03, 0xe8}))
	f.Add(clientFrame(f, true, ws.OpPing, 0, make([]byte, 200)))
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x81, 0xfe, 0x00})
	const max = 4096
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Assembler
		for len(b) > 0 {
			h, n, err := ParseHeader(b)
			if err != nil {
				return
			}
			if err := a.Check(h, max); err != nil {
				return
			}
			if int64(len(b)-n) < h.Length {
				return
			}
			payload := b[n : n+int(h.Length)]
			ws.Cipher(payload, h.Mask, 0)
			b = b[n+int(h.Length):]
			if h.OpCode == ws.OpClose {
				_, _, _ = ParseClose(payload)
				continue
			}
			if h.OpCode.IsControl() {
				continue
			}
			_, msg, done, err := a.Push(h, payload)
			if err != nil {
				return
			}
			if done && len(msg) > max {
				t.Fatalf("message of %d bytes passed a %d limit", len(msg), max)
			}
		}
	})
}

func benchmarkSeal(b *testing.B, n int) {
	payload := bytes.Repeat([]byte{'x'}, n)
	buf := make([]byte, 0, MaxHeaderSize+n)
	b.ReportAllocs()
	b.SetBytes(int64(n))
	for i := 0; i < b.N; i++ {
		buf = append(Reserve(buf), payload...)
		_ = Seal(buf, ws.OpText)
	}
}

func BenchmarkSeal64(b *testing.B)  { benchmarkSeal(b, 64) }
func BenchmarkSeal4K(b *testing.B)  { benchmarkSeal(b, 4096) }
func BenchmarkSeal64K(b *testing.B) { benchmarkSeal(b, 65536) }

func BenchmarkParseCheckPush(b *testing.B) {
	frame := clientFrame(b, true, ws.OpText, 0, []byte(`{"op":"pub","topic":"chat.lobby","data":{"x":1}}`))
	buf := make([]byte, len(frame))
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	var a Assembler
	for i := 0; i < b.N; i++ {
		copy(buf, frame)
		h, n, err := ParseHeader(buf)
		if err != nil {
			b.Fatal(err)
		}
		if err := a.Check(h, 65536); err != nil {
			b.Fatal(err)
		}
		p := buf[n:]
		ws.Cipher(p, h.Mask, 0)
		if _, _, _, err := a.Push(h, p); err != nil {
			b.Fatal(err)
		}
	}
}
