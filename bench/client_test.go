package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/subsock/subsock/frame"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func serverFrame(t *testing.T, op ws.OpCode, payload []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := ws.WriteFrame(&b, ws.NewFrame(op, true, payload)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func msgFrame(t *testing.T, topic string, seq uint64, step, size int) []byte {
	t.Helper()
	data := appendPayload(nil, stamp{sent: time.Now().UnixNano(), seq: seq, step: step}, size)
	return serverFrame(t, ws.OpText, []byte(`{"op":"msg","topic":"`+topic+`","data":`+string(data)+`}`))
}

// readClientFrame reads one frame the client sent and unmasks it.
func readClientFrame(t *testing.T, c net.Conn) ws.Frame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := ws.ReadFrame(c)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Header.Masked {
		t.Fatal("client frames must be masked")
	}
	return ws.UnmaskFrameInPlace(f)
}

func newTestConn(w *worker, nc net.Conn, topics ...uint32) *conn {
	return &conn{w: w, idx: 3, nc: nc, buf: make([]byte, readBufSize), topics: topics,
		last: make([]uint32, len(topics)), count: make([]uint32, len(topics))}
}

// TestConnNextFrame covers the framing of the reader's buffer: partial
// frames wait (with room made for them), whole ones are consumed, and what
// a server may not send ends the connection as malformed.
func TestConnNextFrame(t *testing.T) {
	hello := frame.AppendFrame(nil, ws.OpText, []byte("hello"))
	big := frame.AppendFrame(nil, ws.OpBinary, make([]byte, 3*readBufSize))
	tests := []struct {
		name string
		in   []byte
		ok   bool
		bad  bool
		room int // bytes of buffer from c.r on that a partial frame needs
	}{
		{"empty", nil, false, false, 0},
		{"one byte", hello[:1], false, false, 0},
		{"no payload yet", hello[:2], false, false, len(hello)},
		{"partial payload", hello[:5], false, false, len(hello)},
		{"text", hello, true, false, 0},
		{"partial 16-bit length", big[:3], false, false, 0},
		{"larger than the buffer, partial", big[:1000], false, false, len(big)},
		{"64-bit length, partial", []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0}, false, false, 0},
		{"too large", frame.AppendHeader(nil, ws.OpBinary, maxClientFrame+1), false, true, 0},
		{"masked", frame.AppendMaskedFrame(nil, ws.OpText, []byte("hi"), [4]byte{1, 2, 3, 4}), false, true, 0},
		{"rsv", frame.AppendRawHeader(nil, ws.Header{Fin: true, Rsv: 4, OpCode: ws.OpText}), false, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &conn{buf: make([]byte, readBufSize)}
			c.r, c.n = 7, 7+copy(c.buf[7:], tt.in) // not at the buffer's start
			h, payload, ok, err := c.nextFrame()
			if tt.bad {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || ok != tt.ok {
				t.Fatalf("ok, err = %v, %v; want %v", ok, err, tt.ok)
			}
			if !ok {
				if got := c.buf[c.r:c.n]; !bytes.Equal(got, tt.in) {
					t.Fatalf("buffered bytes changed: %q", got)
				}
				if len(c.buf)-c.r < tt.room {
					t.Fatalf("room for %d bytes, want %d", len(c.buf)-c.r, tt.room)
				}
				return
			}
			if h.OpCode != ws.OpText || !h.Fin || string(payload) != "hello" || c.r != c.n {
				t.Fatalf("header %+v payload %q, r=%d n=%d", h, payload, c.r, c.n)
			}
		})
	}
}

// TestConnReader drives one client reader with frames as a server writes
// them: several per write, split across writes, larger than the buffer,
// pings, and a close.
func TestConnReader(t *testing.T) {
	client, server := pair(t)
	w := newWorker()
	c := newTestConn(w, client, 0, 5)
	w.conns[c] = struct{}{}
	w.open.Add(1)
	w.wg.Add(1)
	done := make(chan struct{})
	go func() { defer close(done); c.loop() }()

	var stream []byte
	stream = append(stream, msgFrame(t, "bench.5", 3, 0, 40)...)    // overtook 2: not a gap…
	stream = append(stream, msgFrame(t, "bench.5", 2, 0, 40)...)    // …once 2 arrives
	stream = append(stream, msgFrame(t, "bench.5", 5, 0, 40)...)    // 1 and 4 never come: two gaps
	stream = append(stream, msgFrame(t, "bench.0", 1, 1, 40)...)    // another topic, step 1
	stream = append(stream, msgFrame(t, "bench.0", 1, 1, 10000)...) // a duplicate, larger than the buffer
	stream = append(stream, msgFrame(t, "bench.99", 1, 1, 40)...)   // not ours: counted, not tracked
	stream = append(stream, serverFrame(t, ws.OpText, []byte(`{"op":"msg","topic":"x","data":{"k":1}}`))...)
	stream = append(stream, serverFrame(t, ws.OpText, []byte(`{"op":"err","code":"rate_limited","msg":"slow down"}`))...)
	// Dribble the bytes in uneven pieces so frames straddle reads.
	for i := 0; i < len(stream); {
		n := min(len(stream)-i, 1+i%997)
		if _, err := server.Write(stream[i : i+n]); err != nil {
			t.Fatal(err)
		}
		i += n
	}
	if _, err := server.Write(serverFrame(t, ws.OpPing, []byte("hb"))); err != nil {
		t.Fatal(err)
	}
	pong := readClientFrame(t, server)
	if pong.Header.OpCode != ws.OpPong || string(pong.Payload) != "hb" {
		t.Fatalf("answer to ping: %v %q", pong.Header.OpCode, pong.Payload)
	}
	if _, err := server.Write(serverFrame(t, ws.OpClose, ws.NewCloseFrameBody(ws.StatusCode(1013), "slow"))); err != nil {
		t.Fatal(err)
	}
	echo := readClientFrame(t, server)
	if code, _ := ws.ParseCloseFrameData(echo.Payload); echo.Header.OpCode != ws.OpClose || code != 1013 {
		t.Fatalf("close answer: %v code %d", echo.Header.OpCode, code)
	}
	<-done

	st := w.stats()
	if st.Received != 6 || st.Gaps != 2 || st.Dups != 1 || st.Unstamped != 1 || st.ErrReplies != 1 || st.Pings != 1 {
		t.Fatalf("stats %+v", st)
	}
	if st.ReceivedByStep[0] != 3 || st.ReceivedByStep[1] != 3 {
		t.Fatalf("by step %v", st.ReceivedByStep)
	}
	if st.ServerCloses[1013] != 1 || st.Open != 0 {
		t.Fatalf("closes %v open %d", st.ServerCloses, st.Open)
	}
	if len(w.conns) != 0 {
		t.Fatal("the reader must deregister itself")
	}
}

// TestConnStop checks our own close: a 1000 close frame, a wait for the
// node's echo (deliveries still count meanwhile), then the socket closes.
func TestConnStop(t *testing.T) {
	client, server := pair(t)
	w := newWorker()
	c := newTestConn(w, client, 1)
	w.conns[c] = struct{}{}
	w.open.Add(1)
	w.wg.Add(1)
	go c.loop()
	closed := make(chan struct{})
	go func() { defer close(closed); w.closeAll() }()
	f := readClientFrame(t, server)
	if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != ws.StatusNormalClosure {
		t.Fatalf("got %v code %d", f.Header.OpCode, code)
	}
	var tail []byte
	tail = append(tail, msgFrame(t, "bench.1", 1, 0, 20)...)
	tail = append(tail, serverFrame(t, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))...)
	if _, err := server.Write(tail); err != nil {
		t.Fatal(err)
	}
	<-closed
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := server.Read(make([]byte, 16)); err == nil {
		t.Fatalf("the client must only close the socket after the echo, it sent %d more bytes", n)
	}
	st := w.stats()
	if st.Open != 0 || len(st.Errors) != 0 || len(st.ServerCloses) != 0 || st.Received != 1 {
		t.Fatalf("stats after stop %+v", st)
	}
}

func TestConnSubscribe(t *testing.T) {
	tests := []struct {
		name   string
		topics int
		answer func(id uint64) string
		want   error
	}{
		{"acked", 3, func(id uint64) string { return `{"op":"ack","id":` + strconv.FormatUint(id, 10) + `}` }, nil},
		{"split over requests", maxTopicsPerSub + 10, func(id uint64) string { return `{"op":"ack","id":` + strconv.FormatUint(id, 10) + `}` }, nil},
		{"refused", 2, func(id uint64) string {
			return `{"op":"err","id":` + strconv.FormatUint(id, 10) + `,"code":"too_many_subscriptions","msg":"no"}`
		}, errSubRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := pair(t)
			w := newWorker()
			c := newTestConn(w, client)
			names := make([]string, tt.topics)
			for i := range names {
				names[i] = "bench." + strconv.Itoa(i)
			}
			errc := make(chan error, 1)
			go func() { errc <- c.subscribe(names, time.Now().Add(5*time.Second)) }()
			var got []string
			for len(got) < tt.topics {
				f := readClientFrame(t, server)
				var req struct {
					Op     string   `json:"op"`
					ID     uint64   `json:"id"`
					Topics []string `json:"topics"`
				}
				if err := json.Unmarshal(f.Payload, &req); err != nil || req.Op != "sub" || len(req.Topics) > maxTopicsPerSub {
					t.Fatalf("request %s: %v", f.Payload, err)
				}
				got = append(got, req.Topics...)
				if _, err := server.Write(serverFrame(t, ws.OpText, []byte(tt.answer(req.ID)))); err != nil {
					t.Fatal(err)
				}
				if tt.want != nil {
					break
				}
			}
			if err := <-errc; !errors.Is(err, tt.want) {
				t.Fatalf("subscribe = %v, want %v", err, tt.want)
			}
			if tt.want == nil {
				if len(got) != tt.topics || got[len(got)-1] != names[len(names)-1] {
					t.Fatalf("server saw %d topics", len(got))
				}
				if w.subscribedN.Load() != 1 || w.subAck.TotalCount() != 1 {
					t.Fatalf("subscribed %d, ack samples %d", w.subscribedN.Load(), w.subAck.TotalCount())
				}
			}
		})
	}
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{ws.StatusError(503), "upgrade refused: HTTP 503"},
		{errSubRefused, "subscription refused"},
		{&net.OpError{Op: "dial", Err: errors.New("x")}, "dial: x"},
	}
	for _, tt := range tests {
		if got := errorKind(tt.err); got != tt.want {
			t.Errorf("errorKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
