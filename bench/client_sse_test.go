package bench

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chunk frames p as one HTTP/1.1 chunk, as the node does.
func chunk(p string) string {
	return strconv.FormatInt(int64(len(p)), 16) + "\r\n" + p + "\r\n"
}

// gotEvent is a decoded event with its bytes copied out of the buffer.
type gotEvent struct {
	name, data string
	hasData    bool
	comments   int
}

// sseTestStream is a body with every shape the decoder must take apart,
// and the events it holds.
func sseTestStream() (string, []gotEvent) {
	msg := `data: {"topic":"bench.1","data":[1,1,0,"x"]}` + "\n\n"
	split := "event: lost\ndata: {\"topic\":\"bench.1\",\"offset\":7,\"epoch\":\"e\"}\n\n"
	body := chunk("retry: 1500\n\n") +
		chunk(msg) +
		chunk(": ping\n\n") +
		// One event over three chunks, cut inside a field and inside its data.
		chunk(split[:3]) + chunk(split[3:20]) + chunk(split[20:]) +
		// Two events in one chunk, CRLF line ends, a size in upper-case hex
		// with an extension.
		strings.Replace(chunk("id: 9\r\ndata: a\r\n\r\ndata: b\n\n"), "1A", "1A;ext=1", 1) +
		// Several data lines, an event field between them.
		chunk("data: x\nevent: multi\ndata: yy\ndata:zzz\n: note\n\n") +
		chunk("event: close\ndata: slow consumer\n\n") +
		"0\r\n\r\n"
	want := []gotEvent{
		{},
		{data: msg[len("data: ") : len(msg)-2], hasData: true},
		{comments: 1},
		{name: "lost", data: `{"topic":"bench.1","offset":7,"epoch":"e"}`, hasData: true},
		{data: "a", hasData: true},
		{data: "b", hasData: true},
		{name: "multi", data: "x\nyy\nzzz", hasData: true, comments: 1},
		{name: "close", data: "slow consumer", hasData: true},
	}
	return body, want
}

// piecesConn is a net.Conn whose reads return the pieces in turn, then EOF.
type piecesConn struct {
	net.Conn
	pieces [][]byte
}

func (p *piecesConn) Read(b []byte) (int, error) {
	for len(p.pieces) > 0 && len(p.pieces[0]) == 0 {
		p.pieces = p.pieces[1:]
	}
	if len(p.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.pieces[0])
	p.pieces[0] = p.pieces[0][n:]
	return n, nil
}

// decodeAll reads pieces through a small buffer (so it compacts and grows)
// and returns the events and the error that ended the stream.
func decodeAll(t *testing.T, pieces ...[]byte) ([]gotEvent, error) {
	t.Helper()
	c := &conn{nc: &piecesConn{pieces: pieces}, buf: make([]byte, 16), sse: &sseDecoder{}}
	var got []gotEvent
	for {
		if err := c.fill(); err != nil {
			return got, err
		}
		for {
			ev, ok, err := c.nextEvent()
			if err != nil {
				return got, err
			}
			if !ok {
				break
			}
			got = append(got, gotEvent{string(ev.name), string(ev.data), ev.hasData, ev.comments})
		}
		if c.r > c.n || c.n > len(c.buf) || c.sse.raw != c.sse.ev {
			t.Fatalf("after a pass: r=%d n=%d len=%d ev=%d raw=%d", c.r, c.n, len(c.buf), c.sse.ev, c.sse.raw)
		}
	}
}

func equalEvents(a, b []gotEvent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSSEDecoderSplits feeds the stream split in two at every byte
// boundary, and one byte per read: the events must come out the same.
func TestSSEDecoderSplits(t *testing.T) {
	body, want := sseTestStream()
	b := []byte(body)
	for k := 0; k <= len(b); k++ {
		got, err := decodeAll(t, bytes.Clone(b[:k]), bytes.Clone(b[k:]))
		if !errors.Is(err, errStreamEnd) || !equalEvents(got, want) {
			t.Fatalf("split at %d: err %v\ngot  %+v\nwant %+v", k, err, got, want)
		}
	}
	var bytewise [][]byte
	for i := range b {
		bytewise = append(bytewise, []byte{b[i]})
	}
	if got, err := decodeAll(t, bytewise...); !errors.Is(err, errStreamEnd) || !equalEvents(got, want) {
		t.Fatalf("byte by byte: err %v\ngot  %+v", err, got)
	}
}

// TestSSEDecoderMalformed: framing the node would never send ends the
// connection as malformed; a body cut short is just a short read.
func TestSSEDecoderMalformed(t *testing.T) {
	tests := []struct {
		name string
		body string
		want error
	}{
		{"not hex", "zz\r\ndata: x\n\n\r\n", ErrMalformed},
		{"empty size", "\r\n", ErrMalformed},
		{"size too long", "123456789\r\n", ErrMalformed},
		{"no CRLF after data", "3\r\nabcX", ErrMalformed},
		{"size line without end", strings.Repeat("1", maxChunkLine+1), ErrMalformed},
		{"cut short", chunk("data: x\n\n")[:8], io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeAll(t, []byte(tt.body)); !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckSSEHead(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
	tests := []struct {
		name, head string
		want       error
	}{
		{"ok", ok, nil},
		{"header case", "HTTP/1.1 200 OK\r\ncontent-type: Text/Event-Stream; charset=utf-8\r\ntransfer-encoding: Chunked\r\n", nil},
		{"refused", "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n", sseStatusError(503)},
		{"not chunked", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n", ErrMalformed},
		{"not a stream", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n", ErrMalformed},
		{"no status", "SSH-2.0\r\n", ErrMalformed},
		{"a chunk before the head", "8\r\n: ping\n\n\r\n" + ok, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkSSEHead([]byte(tt.head)); !errors.Is(err, tt.want) {
				t.Fatalf("checkSSEHead = %v, want %v", err, tt.want)
			}
		})
	}
	if got := errorKind(sseStatusError(503)); got != "stream refused: HTTP 503" {
		t.Fatalf("errorKind = %q", got)
	}
}

func TestAppendSSERequest(t *testing.T) {
	req := appendSSERequest(nil, "127.0.0.1:8080", []string{"bench.1", "a b/c"})
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != http.MethodGet || r.URL.Path != "/sse" || r.URL.Query().Get("topics") != "bench.1,a b/c" ||
		r.Host != "127.0.0.1:8080" || r.Header.Get("Accept") != "text/event-stream" {
		t.Fatalf("request %q parsed as %s %s host %s", req, r.Method, r.URL, r.Host)
	}
}

// sseTestServer accepts one connection, checks its request and answers
// with head, then returns the server end.
func sseTestServer(t *testing.T, head string) (w *worker, srv <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 1)
	go func() {
		defer close(ch)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { nc.Close() })
		r, err := http.ReadRequest(bufio.NewReader(nc))
		if err != nil || r.URL.Path != "/sse" || r.URL.Query().Get("topics") != "bench.0,bench.1" {
			t.Errorf("request %v: %v", r, err)
			return
		}
		if _, err := io.WriteString(nc, head); err != nil {
			return
		}
		ch <- nc
	}()
	w = newWorker()
	w.spec = workerSpec{Targets: []string{"ws://" + ln.Addr().String() + "/ws"}, LocalIP: "127.0.0.1",
		TopicsPerConn: 2, Topics: 10, TopicPrefix: "bench", Transport: TransportSSE,
		DialTimeout: 5 * time.Second, AckTimeout: 5 * time.Second}
	return w, ch
}

// TestSSEStream drives one SSE connection against a scripted server: the
// 200 head with the first events in the same write, deliveries split over
// writes, a heartbeat, an event the node closes with, the last chunk.
func TestSSEStream(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	event := func(topic string, seq uint64, size int) string {
		data := appendPayload(nil, stamp{sent: time.Now().UnixNano(), seq: seq}, size)
		return chunk(`data: {"topic":"` + topic + `","data":` + string(data) + "}\n\n")
	}
	w, srv := sseTestServer(t, head+chunk("retry: 2000\n\n")+event("bench.1", 1, 40))
	w.dial(5) // topics 10 and 11 mod 10: bench.0 and bench.1
	nc := <-srv
	if nc == nil || w.connected.Load() != 1 || w.subscribedN.Load() != 1 || w.ready.TotalCount() != 1 || w.handshake.TotalCount() != 1 {
		t.Fatalf("connected %d subscribed %d failed %d %v", w.connected.Load(), w.subscribedN.Load(), w.failed.Load(), w.errs)
	}
	var stream []byte
	stream = append(stream, event("bench.0", 2, 40)...) // 1 never comes: a gap
	stream = append(stream, event("bench.1", 2, 5000)...)
	stream = append(stream, chunk(": ping\n\n")...)
	stream = append(stream, chunk(`data: {"topic":"x","data":{"k":1}}`+"\n\n")...)
	stream = append(stream, chunk("event: close\ndata: server shutting down\n\n")...)
	stream = append(stream, "0\r\n\r\n"...)
	for i := 0; i < len(stream); {
		n := min(len(stream)-i, 1+i%997)
		if _, err := nc.Write(stream[i : i+n]); err != nil {
			t.Fatal(err)
		}
		i += n
	}
	w.wg.Wait()
	st := w.stats()
	if st.Received != 3 || st.Gaps != 1 || st.Dups != 0 || st.Unstamped != 1 || st.Pings != 1 || st.Open != 0 {
		t.Fatalf("stats %+v", st)
	}
	if st.ServerCloses[1001] != 1 || len(st.ServerCloses) != 1 || len(st.Errors) != 0 {
		t.Fatalf("closes %v errors %v", st.ServerCloses, st.Errors)
	}
}

// TestSSEStreamRefused: a status other than 200 fails the connection.
func TestSSEStreamRefused(t *testing.T) {
	w, srv := sseTestServer(t, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nbusy\n")
	w.dial(5)
	<-srv
	if w.failed.Load() != 1 || w.connected.Load() != 0 || w.errs["stream refused: HTTP 503"] != 1 || len(w.failedConns) != 1 {
		t.Fatalf("failed %d connected %d errors %v", w.failed.Load(), w.connected.Load(), w.errs)
	}
}

// TestSSEStop checks our own close of a stream: a FIN, then the reader
// waits for the node to end its side.
func TestSSEStop(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	w, srv := sseTestServer(t, head)
	w.dial(5)
	nc := <-srv
	if nc == nil {
		t.Fatalf("no stream: %v", w.errs)
	}
	closed := make(chan struct{})
	go func() { defer close(closed); w.closeAll() }()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := nc.Read(make([]byte, 16)); err != io.EOF {
		t.Fatalf("the client must half-close: read %d, %v", n, err)
	}
	select {
	case <-closed:
		t.Fatal("the client must wait for the node to end the stream")
	case <-time.After(50 * time.Millisecond):
	}
	nc.Close()
	<-closed
	if st := w.stats(); st.Open != 0 || len(st.Errors) != 0 || len(st.ServerCloses) != 0 {
		t.Fatalf("stats after stop %+v", st)
	}
}

// TestSSEProcessAllocs: the SSE reader allocates per pass no more than the
// WebSocket reader does over the same deliveries.
func TestSSEProcessAllocs(t *testing.T) {
	ws, sse := newProcessBench(32, 100, false), newProcessBench(32, 100, true)
	now := time.Now()
	run := func(c *conn, stream []byte) func() {
		return func() {
			copy(c.buf, stream)
			c.r, c.n = 0, len(stream)
			var err error
			if c.sse != nil {
				err = c.processSSE(now)
			} else {
				err = c.process(now)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	wsAllocs := testing.AllocsPerRun(100, run(ws.c, ws.stream))
	sseAllocs := testing.AllocsPerRun(100, run(sse.c, sse.stream))
	if sseAllocs > wsAllocs {
		t.Fatalf("allocations per pass of 32 deliveries: SSE %.1f, WebSocket %.1f", sseAllocs, wsAllocs)
	}
}
