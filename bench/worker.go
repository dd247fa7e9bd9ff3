package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
	"golang.org/x/time/rate"
)

// Subprotocol is the codec the clients ask for.
const Subprotocol = "subsock.v1.json"

// worker holds one process's share of the connections.
type worker struct {
	spec workerSpec
	rec  recorder

	wg    sync.WaitGroup // one per running reader
	mu    sync.Mutex     // guards the fields below it
	conns map[*conn]struct{}
	// handshake, subAck and ready (dial to last ack) are the
	// connect-phase histograms.
	handshake   *hdr.Histogram
	subAck      *hdr.Histogram
	ready       *hdr.Histogram
	closes      map[int]int64
	errs        map[string]int64
	failedConns []int
	// ring (recover) holds connection First+k at k, nil until it is
	// subscribed; cuts walk it from cursor. caught is the cut → caught-up
	// histogram.
	ring   []*conn
	cursor int
	caught *hdr.Histogram

	attempted, connected, subscribedN, failed, open atomic.Int64
	errReplies, pings, gaps, dups                   atomic.Int64
	joins, leaves, lastJoin                         atomic.Int64
	connectStart, connectEnd, subscribeEnd          atomic.Int64
	rc                                              recoverCounters
}

// recoverCounters are the worker's recoverStats as they run; replayed
// deliveries are the recorder's step recoverReplayStep.
type recoverCounters struct {
	cuts, reconnects, reconnectFailures, refused      atomic.Int64
	notRecovered, skipped, epochResets, caughtUpCount atomic.Int64
}

// RunWorker is the -worker mode: it serves the parent's commands from in and
// answers on out until a result command or the end of in, then closes every
// connection. It raises RLIMIT_NOFILE to the hard limit first.
func RunWorker(in io.Reader, out io.Writer) error {
	raiseNoFile()
	w := newWorker()
	defer w.closeAll()
	dec := json.NewDecoder(bufio.NewReader(in))
	var encMu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(r *workerReply) error {
		encMu.Lock()
		defer encMu.Unlock()
		return enc.Encode(r)
	}

	// Progress goes up once a second, even while a command runs, so the
	// parent can show a long connect phase as it happens.
	stop := make(chan struct{})
	var ticker sync.WaitGroup
	ticker.Add(1)
	go func() {
		defer ticker.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = send(&workerReply{Type: replyProgress, Stats: w.stats()})
			}
		}
	}()
	defer func() { close(stop); ticker.Wait() }()

	for {
		var cmd command
		if err := dec.Decode(&cmd); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%w: reading command: %v", ErrWorker, err)
		}
		if err := send(w.serve(&cmd)); err != nil {
			return fmt.Errorf("%w: writing reply: %v", ErrWorker, err)
		}
		if cmd.Cmd == cmdResult {
			return nil
		}
	}
}

// progressEvery is the period of a worker's unsolicited progress reports.
const progressEvery = samplePeriod

func newWorker() *worker {
	return &worker{
		conns:     make(map[*conn]struct{}),
		handshake: newHist(),
		subAck:    newHist(),
		ready:     newHist(),
		caught:    newHist(),
		closes:    make(map[int]int64),
		errs:      make(map[string]int64),
	}
}

func (w *worker) serve(cmd *command) *workerReply {
	rep := &workerReply{Type: cmd.Cmd}
	switch cmd.Cmd {
	case cmdInit:
		if cmd.Spec == nil {
			return errorReply(errors.New("init without a spec"))
		}
		// Under mu: the progress ticker's stats reads the spec meanwhile.
		w.mu.Lock()
		w.spec = *cmd.Spec
		if w.spec.Recover {
			w.ring = make([]*conn, w.spec.Count)
		}
		w.mu.Unlock()
	case cmdConnect:
		w.connectAll()
		rep.Stats = w.stats()
		w.mu.Lock()
		rep.Failed = slices.Clone(w.failedConns)
		w.mu.Unlock()
	case cmdStats:
		rep.Stats = w.stats()
		if rep.Stats.Recover != nil && cmd.Offsets != nil {
			rep.Stats.Recover.Behind, rep.Stats.Recover.Shortfall = w.behind(cmd.Offsets)
		}
	case cmdCut:
		rep.Cut = w.cut(cmd.Cut, cmd.Offsets)
	case cmdHist:
		s, err := encodeHist(w.rec.hist(cmd.Step))
		if err != nil {
			return errorReply(err)
		}
		rep.Hist = s
	case cmdClose:
		w.closeAll()
		rep.Stats = w.stats()
	case cmdResult:
		w.closeAll()
		res, err := w.result()
		if err != nil {
			return errorReply(err)
		}
		rep.Result = res
	default:
		return errorReply(fmt.Errorf("unknown command %q", cmd.Cmd))
	}
	return rep
}

func errorReply(err error) *workerReply { return &workerReply{Type: "error", Err: err.Error()} }

// raiseNoFile lifts the soft open-file limit to the hard one.
func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// connectAll dials every assigned connection with a bounded pool of dialers
// and returns when each has subscribed or failed.
func (w *worker) connectAll() {
	sp := &w.spec
	w.connectStart.Store(time.Now().UnixNano())
	idx := make(chan int)
	var dialers sync.WaitGroup
	for range max(1, sp.Concurrency) {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for i := range idx {
				w.dial(i)
			}
		}()
	}
	var lim *rate.Limiter
	if sp.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(sp.Rate), 1)
	}
	for i := sp.First; i < sp.First+sp.Count; i++ {
		if lim != nil {
			_ = lim.Wait(context.Background())
		}
		idx <- i
	}
	close(idx)
	dialers.Wait()
}

// upgrade dials connection i's target from the worker's source address
// and performs the WebSocket handshake. rest holds the bytes the server
// sent right after the 101 (a ping, say).
func (w *worker) upgrade(i int) (nc net.Conn, rest []byte, err error) {
	sp := &w.spec
	local := &net.TCPAddr{IP: net.ParseIP(sp.LocalIP)}
	d := ws.Dialer{
		Timeout:         sp.DialTimeout,
		Protocols:       []string{Subprotocol},
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: local}
			return nd.DialContext(ctx, network, addr)
		},
	}
	nc, br, _, err := d.Dial(context.Background(), sp.Targets[i%len(sp.Targets)])
	if err != nil {
		return nil, nil, err
	}
	if br != nil {
		rest = make([]byte, br.Buffered())
		_, _ = io.ReadFull(br, rest)
		ws.PutReader(br)
	}
	return nc, rest, nil
}

// dial opens and subscribes connection i over the spec's transport, then
// starts its reader.
func (w *worker) dial(i int) {
	sp := &w.spec
	w.attempted.Add(1)
	start := time.Now()
	c := &conn{w: w, idx: i}
	names := c.assignTopics(sp)
	var err error
	if sp.Transport == TransportSSE {
		err = c.openStream(names, start)
	} else {
		err = c.openWS(names, start)
	}
	if err != nil {
		if c.nc != nil {
			_ = c.nc.Close()
		}
		w.fail(i, err)
		return
	}
	w.mu.Lock()
	if len(names) > 0 {
		recordDur(w.ready, time.Since(start))
	}
	w.conns[c] = struct{}{}
	if c.rc != nil {
		w.ring[i-sp.First] = c
	}
	w.mu.Unlock()
	w.open.Add(1)
	w.wg.Add(1)
	go c.loop()
}

// assignTopics gives c its topics (see topicOf) and returns their names.
func (c *conn) assignTopics(sp *workerSpec) []string {
	k := sp.TopicsPerConn
	if k <= 0 {
		return nil
	}
	names := make([]string, k)
	c.topics = make([]uint32, k)
	c.last = make([]uint32, k)
	c.count = make([]uint32, k)
	for j := range k {
		id := topicOf(c.idx, j, k, sp.Topics, sp.HotSubs)
		c.topics[j] = uint32(id)
		names[j] = sp.TopicPrefix + "." + strconv.Itoa(id)
	}
	slices.Sort(c.topics)
	return names
}

// openWS upgrades c's socket and subscribes it to topics; start is when
// its dial began.
func (c *conn) openWS(topics []string, start time.Time) error {
	w := c.w
	nc, rest, err := w.upgrade(c.idx)
	if err != nil {
		return err
	}
	c.nc = nc
	w.connectedAt(start, time.Now())
	c.buf = make([]byte, readBufSize)
	c.reserve(len(rest))
	c.n = copy(c.buf, rest)
	if len(topics) == 0 {
		return nil
	}
	if w.spec.Recover {
		c.rc = &recoverState{topic: topics[0], subID: 1}
	}
	return c.subscribe(topics, time.Now().Add(w.spec.AckTimeout))
}

// connectedAt records a connection whose handshake, begun at start, ended
// at end.
func (w *worker) connectedAt(start, end time.Time) {
	w.mu.Lock()
	recordDur(w.handshake, end.Sub(start))
	w.mu.Unlock()
	w.connected.Add(1)
	storeMax(&w.connectEnd, end.UnixNano())
}

// subscribed records a connection whose every sub request was acked.
func (w *worker) subscribed(c *conn, took time.Duration) {
	w.mu.Lock()
	recordDur(w.subAck, took)
	w.mu.Unlock()
	w.subscribedN.Add(1)
	storeMax(&w.subscribeEnd, time.Now().UnixNano())
}

func (w *worker) fail(i int, err error) {
	w.failed.Add(1)
	w.noteError(err)
	w.mu.Lock()
	w.failedConns = append(w.failedConns, i)
	w.mu.Unlock()
}

// connDone runs when a reader ends; it settles the connection's gaps.
func (w *worker) connDone(c *conn) {
	if c.rc != nil {
		c.rc.state.Store(recGone)
	}
	gaps, dups := c.tally()
	w.gaps.Add(gaps)
	w.dups.Add(dups)
	w.mu.Lock()
	delete(w.conns, c)
	w.mu.Unlock()
	w.open.Add(-1)
	w.wg.Done()
}

func (w *worker) noteServerClose(code int) {
	w.mu.Lock()
	w.closes[code]++
	w.mu.Unlock()
}

// maxErrorKinds bounds the distinct error messages kept.
const maxErrorKinds = 16

func (w *worker) noteError(err error) {
	k := errorKind(err)
	w.mu.Lock()
	if _, ok := w.errs[k]; !ok && len(w.errs) >= maxErrorKinds {
		k = "other"
	}
	w.errs[k]++
	w.mu.Unlock()
}

// errorKind names an error without the addresses and ports that would make
// every instance distinct.
func errorKind(err error) string {
	var st ws.StatusError
	var sst sseStatusError
	var ne net.Error
	switch {
	case errors.As(err, &st):
		return "upgrade refused: HTTP " + strconv.Itoa(int(st))
	case errors.As(err, &sst):
		return "stream refused: HTTP " + strconv.Itoa(int(sst))
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free ephemeral port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by the server without a close frame"
	case errors.Is(err, errSubRefused):
		return "subscription refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// closeAll stops every reader and waits for them.
func (w *worker) closeAll() {
	w.mu.Lock()
	for c := range w.conns {
		c.stop()
	}
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *worker) stats() *workerStats {
	st := &workerStats{
		Attempted:    w.attempted.Load(),
		Connected:    w.connected.Load(),
		Subscribed:   w.subscribedN.Load(),
		Failed:       w.failed.Load(),
		Open:         w.open.Load(),
		ErrReplies:   w.errReplies.Load(),
		Pings:        w.pings.Load(),
		Joins:        w.joins.Load(),
		Leaves:       w.leaves.Load(),
		LastJoin:     w.lastJoin.Load(),
		Gaps:         w.gaps.Load(),
		Dups:         w.dups.Load(),
		ConnectStart: w.connectStart.Load(),
		ConnectEnd:   w.connectEnd.Load(),
		SubscribeEnd: w.subscribeEnd.Load(),
	}
	w.rec.fill(st)
	w.mu.Lock()
	recovers := w.spec.Recover
	w.mu.Unlock()
	if recovers {
		rc := &w.rc
		st.Recover = &recoverStats{
			Cuts:              rc.cuts.Load(),
			Reconnects:        rc.reconnects.Load(),
			ReconnectFailures: rc.reconnectFailures.Load(),
			Refused:           rc.refused.Load(),
			NotRecovered:      rc.notRecovered.Load(),
			Skipped:           rc.skipped.Load(),
			EpochResets:       rc.epochResets.Load(),
			CaughtUp:          rc.caughtUpCount.Load(),
		}
	}
	w.mu.Lock()
	if len(w.closes) > 0 {
		st.ServerCloses = maps.Clone(w.closes)
	}
	if len(w.errs) > 0 {
		st.Errors = maps.Clone(w.errs)
	}
	w.mu.Unlock()
	return st
}

func (w *worker) result() (*workerResult, error) {
	res := &workerResult{Stats: *w.stats()}
	var err error
	w.mu.Lock()
	hs, sa, ready, caught := w.handshake, w.subAck, w.ready, w.caught
	res.FailedConns = slices.Clone(w.failedConns)
	w.mu.Unlock()
	if w.spec.Recover {
		if res.CaughtUp, err = encodeHist(caught); err != nil {
			return nil, err
		}
	}
	if res.Handshake, err = encodeHist(hs); err != nil {
		return nil, err
	}
	if res.SubAck, err = encodeHist(sa); err != nil {
		return nil, err
	}
	if res.Ready, err = encodeHist(ready); err != nil {
		return nil, err
	}
	if res.Latency, err = encodeHist(w.rec.hist(-1)); err != nil {
		return nil, err
	}
	return res, nil
}

// cut orders the cut of up to n connections that are up, walking the
// ring from where the last cut stopped so every connection takes its turn;
// offsets are the topics' newest published offsets. It returns how many
// it cut.
func (w *worker) cut(n int, offsets []uint64) int {
	now := time.Now().UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	done := 0
	for tried := 0; tried < len(w.ring) && done < n; tried++ {
		c := w.ring[w.cursor]
		if w.cursor++; w.cursor == len(w.ring) {
			w.cursor = 0
		}
		if c != nil && c.requestCut(now, offsetOf(offsets, c.topics[0])) {
			done++
		}
	}
	w.rc.cuts.Add(int64(done))
	return done
}

// offsetOf is topic's entry of offsets, or 0.
func offsetOf(offsets []uint64, topic uint32) uint64 {
	if int(topic) < len(offsets) {
		return offsets[topic]
	}
	return 0
}

// behind counts the subscribed connections that are not up with their
// topic's offset in offsets, and the offsets they lack in all.
func (w *worker) behind(offsets []uint64) (conns, shortfall int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.ring {
		if c == nil {
			continue
		}
		want, last := offsetOf(offsets, c.topics[0]), c.rc.last.Load()
		if c.rc.state.Load() != recUp || last < want {
			conns++
		}
		if want > last {
			shortfall += int64(want - last)
		}
	}
	return conns, shortfall
}

// absorb moves a tracker's counts into the worker's.
func (w *worker) absorb(t *offsetTracker) {
	if t.gaps != 0 {
		w.gaps.Add(t.gaps)
	}
	if t.dups != 0 {
		w.dups.Add(t.dups)
	}
	if t.notRecovered != 0 {
		w.rc.notRecovered.Add(t.notRecovered)
	}
	if t.skipped != 0 {
		w.rc.skipped.Add(t.skipped)
	}
	if t.epochResets != 0 {
		w.rc.epochResets.Add(t.epochResets)
	}
	t.gaps, t.dups, t.notRecovered, t.skipped, t.epochResets = 0, 0, 0, 0, 0
}

// caughtUp records the time from a cut to its connection catching up.
func (w *worker) caughtUp(d time.Duration) {
	w.rc.caughtUpCount.Add(1)
	w.mu.Lock()
	recordDur(w.caught, d)
	w.mu.Unlock()
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func storeMaxU(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// workerEnv marks a process started as a worker by a test binary, whose
// flags cannot carry -worker (see WorkerMain).
const workerEnv = "SUBSOCK_BENCH_WORKER"

// WorkerMain runs the worker mode when the process was started as one
// through the environment (tests re-executing their own binary) and exits;
// otherwise it returns at once.
func WorkerMain() {
	if os.Getenv(workerEnv) != "1" {
		return
	}
	if err := RunWorker(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "subsock-bench worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// presenceEvent counts a join or leave event received at nowNs.
func (w *worker) presenceEvent(kind replyKind, nowNs int64) {
	if kind == replyLeave {
		w.leaves.Add(1)
		return
	}
	w.joins.Add(1)
	storeMax(&w.lastJoin, nowNs)
}
