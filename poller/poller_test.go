package poller

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// testHandler hands each accepted Conn to the test and discards input.
type testHandler struct {
	opened chan *Conn
	mu     sync.Mutex
	closed int
	gone   chan struct{}
}

func newTestHandler() *testHandler {
	return &testHandler{opened: make(chan *Conn, 64), gone: make(chan struct{}, 64)}
}

func (h *testHandler) OnOpen(c *Conn) { h.opened <- c }
func (h *testHandler) OnData(_ *Conn, r netpoll.Reader) {
	_ = r.Skip(r.Len())
	_ = r.Release()
}
func (h *testHandler) OnClose(*Conn) {
	h.mu.Lock()
	h.closed++
	h.mu.Unlock()
	h.gone <- struct{}{}
}

func startServer(t *testing.T, cfg Config) (*Server, *testHandler, string) {
	t.Helper()
	h := newTestHandler()
	s, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return s, h, ln.Addr().String()
}

func dial(t *testing.T, h *testHandler, addr string) (net.Conn, *Conn) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	select {
	case c := <-h.opened:
		return nc, c
	case <-time.After(5 * time.Second):
		t.Fatal("connection not accepted")
	}
	return nil, nil
}

func TestEnqueueOrderAndCoalescing(t *testing.T) {
	s, h, addr := startServer(t, Config{})
	nc, c := dial(t, h, addr)
	var want bytes.Buffer
	for i := 0; i < 2000; i++ {
		b := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i%50)
		want.Write(b)
		if err := c.Enqueue(b); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, want.Len())
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(nc, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes arrived out of order or corrupted")
	}
	if st := s.Stats(); st.Writes >= 2000 {
		t.Fatalf("%d writes for 2000 frames: nothing was coalesced", st.Writes)
	}
}

// A peer that reads slowly still gets every byte in order: writes that hit a
// full socket are parked and resumed when it drains.
func TestParkedWriterResumes(t *testing.T) {
	_, h, addr := startServer(t, Config{MaxPending: 64 << 20})
	nc, c := dial(t, h, addr)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	const chunks = 128                                      // 8 MiB, far beyond socket buffers
	for i := 0; i < chunks; i++ {
		if err := c.Enqueue(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if c.Pending() == 0 {
		t.Fatal("everything was written at once; the test did not fill the socket")
	}
	buf := make([]byte, len(chunk))
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := 0; i < chunks; i++ {
		if _, err := io.ReadFull(nc, buf); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if !bytes.Equal(buf, chunk) {
			t.Fatalf("chunk %d corrupted", i)
		}
	}
}

// A peer that never reads overflows its queue and is cut off; a healthy
// peer on the same server is unaffected.
func TestOverflowAbortsOnlyTheSlowPeer(t *testing.T) {
	s, h, addr := startServer(t, Config{MaxPending: 256 << 10, OverflowFinal: []byte("BYE")})
	_, slow := dial(t, h, addr)
	fastNC, fast := dial(t, h, addr)
	chunk := make([]byte, 16<<10)
	var overflowed bool
	for i := 0; i < 1000 && !overflowed; i++ {
		err := slow.Enqueue(chunk)
		switch {
		case errors.Is(err, ErrOverflow):
			overflowed = true
		case err != nil:
			t.Fatalf("enqueue %d: %v", i, err)
		}
	}
	if !overflowed {
		t.Fatal("a peer that never reads never overflowed")
	}
	if err := slow.Enqueue(chunk); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue after overflow: %v, want ErrClosed", err)
	}
	select {
	case <-h.gone:
	case <-time.After(5 * time.Second):
		t.Fatal("slow peer was not closed")
	}
	if err := fast.Enqueue([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("still here"))
	_ = fastNC.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(fastNC, buf); err != nil || string(buf) != "still here" {
		t.Fatalf("healthy peer: %q %v", buf, err)
	}
	if s.Stats().Overflows != 1 {
		t.Fatalf("overflows = %d, want 1", s.Stats().Overflows)
	}
}

// CloseAfter writes what was queued, then the final bytes, then closes.
func TestCloseAfterFlushesThenCloses(t *testing.T) {
	_, h, addr := startServer(t, Config{})
	nc, c := dial(t, h, addr)
	_ = c.Enqueue([]byte("hello "))
	c.CloseAfter([]byte("bye"))
	if err := c.Enqueue([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue after CloseAfter: %v", err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(nc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello bye" {
		t.Fatalf("got %q", got)
	}
	select {
	case <-h.gone:
	case <-time.After(5 * time.Second):
		t.Fatal("OnClose not called")
	}
}

// Peers that vanish free their Conn exactly once and Stats follow.
func TestPeerCloseCallsOnCloseOnce(t *testing.T) {
	s, h, addr := startServer(t, Config{})
	const n = 50
	var ncs []net.Conn
	for i := 0; i < n; i++ {
		nc, _ := dial(t, h, addr)
		ncs = append(ncs, nc)
	}
	for _, nc := range ncs {
		_ = nc.Close()
	}
	for i := 0; i < n; i++ {
		select {
		case <-h.gone:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d closes seen", i, n)
		}
	}
	if got := s.Stats().Conns; got != 0 {
		t.Fatalf("open conns = %d after all closed", got)
	}
}

// The write scratch netpoll allocates per connection is dropped: if a
// netpoll upgrade moves it, idle memory silently grows, so fail loudly.
func TestTrimWriteScratch(t *testing.T) {
	_, h, addr := startServer(t, Config{})
	dial(t, h, addr)
	if barrierOffset == 0 {
		t.Fatal("netpoll's outputBarrier field was not found; idle connections keep ~1.2 KiB of write scratch")
	}
}

// After StopAccepting new connections are refused at once (not left
// hanging in a backlog), while open ones keep working.
func TestStopAcceptingRefusesNewKeepsOpen(t *testing.T) {
	s, h, addr := startServer(t, Config{})
	nc, c := dial(t, h, addr)
	s.StopAccepting()
	_, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		t.Fatal("dial succeeded after StopAccepting")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("dial hung until timeout instead of being refused: %v", err)
	}
	if err := c.Enqueue([]byte("open")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != "open" {
		t.Fatalf("open connection: %q %v", buf, err)
	}
}

// netpoll's settings are process-wide: a second Server asking for another
// loop count is refused instead of silently sharing the first one's.
func TestConfigConflict(t *testing.T) {
	s, err := New(Config{}, newTestHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	same, err := New(Config{}, newTestHandler())
	if err != nil {
		t.Fatalf("a second Server with the same settings: %v", err)
	}
	defer same.Close()
	other := s.Config().Loops + 1
	if _, err := New(Config{Loops: other}, newTestHandler()); !errors.Is(err, ErrConfigConflict) {
		t.Fatalf("New with %d loops after %d: %v, want ErrConfigConflict", other, s.Config().Loops, err)
	}
	if _, err := New(Config{ReadBufferSize: s.Config().ReadBufferSize * 2}, newTestHandler()); !errors.Is(err, ErrConfigConflict) {
		t.Fatalf("New with another read buffer size: %v, want ErrConfigConflict", err)
	}
}

// The version guard knows the netpoll go.mod asks for; a build with
// another one runs without the trim (see compat.go). Test binaries carry
// no dependency list, so go.mod is read.
func TestNetpollVersionVerified(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var v string
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == netpollModule {
			v = f[1]
		}
	}
	if !verifiedNetpoll[v] {
		t.Fatalf("go.mod's netpoll %q is not in verifiedNetpoll: verify trim.go and listener.go against it, then list it", v)
	}
}

// netpoll's log lines become zap entries without netpoll's own timestamp.
func TestZapWriter(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	w := zapWriter{zap.New(core)}
	in := "2026/12/03 10:40:00 NETPOLL: readall(fd=7)=0 before close: reset\n2026/12/03 10:40:00 second\n"
	if n, err := w.Write([]byte(in)); n != len(in) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	var got []string
	for _, e := range logs.All() {
		if e.Level != zap.WarnLevel {
			t.Errorf("level %v, want warn", e.Level)
		}
		got = append(got, e.Message)
	}
	want := []string{"NETPOLL: readall(fd=7)=0 before close: reset", "second"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("entries %q, want %q", got, want)
	}
}

// The writable-socket waiter blocks in epoll_wait and still stops at once.
func TestWaiterStops(t *testing.T) {
	s, err := New(Config{}, newTestHandler())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return: the waiter did not wake")
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err after a clean stop: %v", err)
	}
}

// A peer that stopped reading is moved to the lagging lane once its window
// shuts, while a reader on the same writer keeps getting every frame, in
// order; the lagging one still gets its bytes as far as its window allows.
func TestLaggingLane(t *testing.T) {
	_, h, addr := startServer(t, Config{Writers: 1, SendBuffer: 16 << 10, MaxPending: 64 << 20})
	_, stalled := dial(t, h, addr) // never read
	readerNC, reader := dial(t, h, addr)
	const frames, size = 64, 32 << 10
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, size)
		for i := 0; i < frames; i++ {
			_ = readerNC.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(readerNC, buf); err != nil {
				got <- err
				return
			}
			if buf[0] != byte(i) || buf[size-1] != byte(i) {
				got <- errors.New("frame out of order")
				return
			}
		}
		got <- nil
	}()
	for i := 0; i < frames; i++ {
		b := bytes.Repeat([]byte{byte(i)}, size)
		if err := stalled.Enqueue(b); err != nil {
			t.Fatal(err)
		}
		if err := reader.Enqueue(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-got; err != nil {
		t.Fatalf("reader: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !stalled.lagging.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !stalled.lagging.Load() {
		t.Fatal("a peer that never reads was not marked lagging")
	}
	// A peer's class is what its last write showed: once the reader has
	// drained everything, the next write finds its window open.
	if err := reader.Enqueue(bytes.Repeat([]byte{0xee}, size)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, size)
	_ = readerNC.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(readerNC, buf); err != nil {
		t.Fatal(err)
	}
	if reader.lagging.Load() {
		t.Fatal("a peer that read everything is marked lagging after its next write")
	}
}

// Bytes queued with EnqueueExempt do not count against MaxPending until
// written: a peer owed a large replay keeps its full limit for what
// follows, gets every byte in order, and is cut only past the limit on
// top of what is still exempt.
func TestEnqueueExemptKeepsTheLimitForWhatFollows(t *testing.T) {
	const limit = 256 << 10
	_, h, addr := startServer(t, Config{MaxPending: limit, SendBuffer: 8 << 10})
	nc, c := dial(t, h, addr)
	replay := bytes.Repeat([]byte{'r'}, 4*limit)
	if err := c.EnqueueExempt(replay); err != nil {
		t.Fatal(err)
	}
	if ex := c.Exempt(); ex > len(replay) || ex < len(replay)-(1<<20) {
		t.Fatalf("Exempt = %d right after queueing %d bytes", ex, len(replay))
	}
	live := bytes.Repeat([]byte{'l'}, limit/2)
	if err := c.Enqueue(live); err != nil {
		t.Fatalf("a live frame within the limit after an exempt replay: %v", err)
	}
	// Read everything: the replay, then the live frame, in order.
	got := make([]byte, len(replay)+len(live))
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:len(replay)], replay) || !bytes.Equal(got[len(replay):], live) {
		t.Fatal("bytes out of order")
	}
	if ex := c.Exempt(); ex != 0 {
		t.Fatalf("Exempt = %d once everything was written", ex)
	}
	// Now a peer that stops reading: the limit applies again in full.
	if err := c.EnqueueExempt(replay); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 16<<10)
	sent := 0
	for {
		err := c.Enqueue(chunk)
		if errors.Is(err, ErrOverflow) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if sent += len(chunk); sent > 2*limit+len(replay) {
			t.Fatalf("no overflow after %d bytes past an exempt %d", sent, len(replay))
		}
	}
	if sent > limit+len(chunk) || sent < limit-len(chunk)-(64<<10) {
		t.Fatalf("cut after %d live bytes; want about the %d-byte limit", sent, limit)
	}
}

// EnqueuePrompt puts a connection that keeps up on the list served between
// the writes of a pass (beside urgent ones); a lagging one still waits for
// the pass's end, and plain Enqueue takes its turn. Frames keep their order
// on the wire whichever way they were queued.
func TestPromptLane(t *testing.T) {
	w := newWriter(nil, Config{})
	prompt, lagging, plain := &Conn{w: w}, &Conn{w: w}, &Conn{w: w}
	lagging.lagging.Store(true)
	w.push(prompt, true)
	w.push(lagging, true)
	w.push(plain, false)
	if len(w.urgent) != 1 || w.urgent[0] != prompt || !w.hasUrgent.Load() {
		t.Fatalf("urgent list = %v, want the prompt connection", w.urgent)
	}
	if len(w.lagging) != 1 || w.lagging[0] != lagging {
		t.Fatalf("lagging list = %v, want the lagging connection", w.lagging)
	}
	if len(w.ready) != 1 || w.ready[0] != plain {
		t.Fatalf("ready list = %v, want the plain connection", w.ready)
	}

	_, h, addr := startServer(t, Config{Writers: 1})
	nc, c := dial(t, h, addr)
	for i := range 100 {
		b := []byte{byte(i)}
		var err error
		if i%3 == 0 {
			err = c.EnqueuePrompt(b)
		} else {
			err = c.Enqueue(b)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 100)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, buf); err != nil {
		t.Fatal(err)
	}
	for i, b := range buf {
		if b != byte(i) {
			t.Fatalf("byte %d = %d: frames out of order", i, b)
		}
	}
}
