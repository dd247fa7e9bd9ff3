package poller

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs stays under the kernel's IOV_MAX (1024).
const maxIovecs = 1024

// writer owns a share of the connections' outbound traffic. Connections
// are scheduled on it by Enqueue; it writes each one's whole queue with a
// single writev.
type writer struct {
	cfg  Config
	s    *Server
	wake chan struct{}

	mu        sync.Mutex
	ready     []*Conn
	spare     []*Conn
	urgent    []*Conn     // urgent connections and prompt pushes jump the ready list
	hasUrgent atomic.Bool // checked between flushes without the lock
	hasReady  atomic.Bool // len(ready) > 0, checked during a pass's lagging tail
	fresh     []*Conn     // scratch of flushReady
	lagging   []*Conn     // connections whose peer is not draining: served at the end of the next pass

	iov  []unix.Iovec // scratch for writev, reused
	refs [][]byte     // keeps what iov points at reachable during the call

	lingering []lingerEntry // owned by the writer goroutine

	bytesOut  atomic.Uint64
	writes    atomic.Uint64
	overflows atomic.Uint64
}

type lingerEntry struct {
	c        *Conn
	deadline time.Time
}

func newWriter(s *Server, cfg Config) *writer {
	return &writer{
		cfg:  cfg,
		s:    s,
		wake: make(chan struct{}, 1),
		iov:  make([]unix.Iovec, 0, maxIovecs),
		refs: make([][]byte, 0, maxIovecs),
	}
}

// push schedules c: urgent connections and prompt pushes (see
// EnqueuePrompt) of connections that keep up go to the list served
// between the writes of a pass, lagging ones after the pass, the rest in
// turn.
func (w *writer) push(c *Conn, prompt bool) {
	w.mu.Lock()
	if c.urgent.Load() || prompt && !c.lagging.Load() {
		w.urgent = append(w.urgent, c)
		w.hasUrgent.Store(true)
	} else if c.lagging.Load() {
		w.lagging = append(w.lagging, c)
	} else {
		w.ready = append(w.ready, c)
		w.hasReady.Store(true)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run is the writer goroutine; it returns when stop is closed.
func (w *writer) run(stop <-chan struct{}) {
	tick := time.NewTicker(w.cfg.LingerTimeout / 4)
	defer tick.Stop()
	for {
		w.mu.Lock()
		batch := w.ready
		w.ready = w.spare[:0]
		w.hasReady.Store(false)
		// Lagging connections close every pass: behind the readers that
		// keep up, but never more than one pass behind, so a reader that
		// was only briefly slow is not starved into a slow-consumer cut.
		// While their tail runs (thousands of shut windows being filled,
		// each write a large copy), a reader that keeps up and has more
		// to take is served between two of their writes rather than after
		// them all: it would otherwise wait a whole pass of copies, and
		// could be cut as slow itself.
		lagFrom := len(batch)
		batch = append(batch, w.lagging...)
		clear(w.lagging)
		w.lagging = w.lagging[:0]
		w.mu.Unlock()
		for i, c := range batch {
			if w.hasUrgent.Load() {
				w.flushUrgent()
			}
			if i >= lagFrom && w.hasReady.Load() {
				w.flushReady()
			}
			w.flush(c)
			batch[i] = nil
		}
		w.spare = batch[:0]
		if w.hasUrgent.Load() {
			w.flushUrgent()
			continue
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-w.wake:
		case now := <-tick.C:
			w.reapLinger(now)
		case <-stop:
			return
		}
	}
}

// flushUrgent writes the urgent connections first: an HTTP reply must not
// wait for a pass over thousands of subscribers.
func (w *writer) flushUrgent() {
	w.mu.Lock()
	list := w.urgent
	w.urgent = nil
	w.hasUrgent.Store(false)
	w.mu.Unlock()
	for _, c := range list {
		w.flush(c)
	}
}

// flushReady writes the connections that became ready (and keep up)
// since the pass began: see run.
func (w *writer) flushReady() {
	w.mu.Lock()
	list := w.ready
	w.ready = w.fresh[:0]
	w.hasReady.Store(false)
	w.mu.Unlock()
	for i, c := range list {
		w.flush(c)
		list[i] = nil
	}
	w.fresh = list[:0]
}

// flush writes what c has queued, or carries out its close.
func (w *writer) flush(c *Conn) {
	c.wmu.Lock()
	c.mu.Lock()
	st := c.state
	switch {
	case st&stClosed != 0:
		c.mu.Unlock()
		c.wmu.Unlock()
		return
	case st&stAbort != 0:
		c.resetLocked(c.final)
		c.mu.Unlock()
		c.wmu.Unlock()
		_ = c.nc.Close()
		return
	}
	// Gather the queue into iovecs; frames stay where they are.
	w.iov, w.refs = w.iov[:0], w.refs[:0]
	total, off := 0, c.off
	for _, b := range c.frames() {
		b = b[off:]
		off = 0
		if len(b) == 0 {
			continue
		}
		w.refs = append(w.refs, b)
		w.iov = append(w.iov, unix.Iovec{Base: &b[0], Len: uint64(len(b))})
		total += len(b)
		if len(w.iov) == maxIovecs || total >= w.cfg.MaxWriteBytes {
			break
		}
	}
	c.mu.Unlock()

	n, err := 0, error(nil)
	if total > 0 {
		n, err = writev(c.fd, w.iov)
		w.writes.Add(1)
		if n > 0 {
			w.bytesOut.Add(uint64(n))
		}
	}
	for i := range w.refs {
		w.refs[i] = nil
	}
	c.noteLag(n, total, err)

	c.mu.Lock()
	c.consumeLocked(n)
	var closeNow, park, requeue bool
	switch {
	case err != nil && err != unix.EAGAIN && err != unix.EINTR:
		c.state |= stClosed
		c.releaseQueueLocked()
		c.pending = 0
		closeNow = true
	case c.state&stAbort != 0:
		// Abort came while we wrote: it left the close to this flush.
		requeue = true
	case n < total || err == unix.EAGAIN:
		park = true
		c.state |= stParked
	case len(c.frames()) > 0:
		requeue = true
	case c.state&stClosing != 0:
		c.releaseQueueLocked()
		// Our last bytes are out: send FIN and give the peer a moment to
		// close first, so its kernel does not discard the close frame on
		// an RST from unread input.
		c.state |= stLinger
		c.state &^= stScheduled
	default:
		c.state &^= stScheduled
		c.releaseQueueLocked() // empty: an idle connection keeps no queue
	}
	linger := c.state&stLinger != 0 && !closeNow && !park && !requeue
	c.mu.Unlock()
	if linger {
		_ = unix.Shutdown(c.fd, unix.SHUT_WR)
	}
	c.wmu.Unlock()

	switch {
	case closeNow:
		_ = c.nc.Close()
	case park:
		w.s.ep.park(c)
	case requeue:
		w.push(c, false)
	case linger:
		w.lingering = append(w.lingering, lingerEntry{c, time.Now().Add(w.cfg.LingerTimeout)})
	}
}

// lagProbe is the smallest write after which the peer's window is read:
// below it a lagging peer costs little, and the probe would cost more.
const lagProbe = 16 << 10

// noteLag classifies the peer after a write of n of total bytes: it lags
// when the socket refused part of the write, or when after a large write
// part of it could not even be sent because the peer's window is shut (it
// is not draining). A lagging connection's writes come after the others'
// in the next pass, so that the TCP windows of readers that stopped are
// not filled ahead of readers that keep up. Runs with wmu held (fd is valid).
func (c *Conn) noteLag(n, total int, err error) {
	switch {
	case err == unix.EAGAIN || n < total:
		c.lagging.Store(true)
	case n >= lagProbe:
		ti, e := unix.GetsockoptTCPInfo(c.fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		c.lagging.Store(e == nil && (ti.Notsent_bytes > 0 || ti.Snd_wnd < lagProbe))
	case n > 0:
		c.lagging.Store(false)
	}
}

// consumeLocked drops n written bytes from the front of the queue.
func (c *Conn) consumeLocked(n int) {
	c.pending -= n
	if x := c.x; x != nil && x.exempt > 0 {
		d := min(n, x.before)
		x.before -= d
		x.exempt -= min(n-d, x.exempt)
	}
	if c.q == nil {
		return
	}
	q := c.q.s
	i := 0
	for i < len(q) && n > 0 {
		rest := len(q[i]) - c.off
		if n < rest {
			c.off += n
			n = 0
			break
		}
		n -= rest
		c.off = 0
		i++
	}
	if i > 0 {
		k := copy(q, q[i:])
		clear(q[k:]) // no stale references keep written frames alive
		c.q.s = q[:k]
	}
}

func (w *writer) reapLinger(now time.Time) {
	kept := w.lingering[:0]
	for _, e := range w.lingering {
		switch {
		case !e.c.nc.IsActive():
		case now.After(e.deadline):
			_ = e.c.nc.Close()
		default:
			kept = append(kept, e)
			continue
		}
	}
	for i := len(kept); i < len(w.lingering); i++ {
		w.lingering[i] = lingerEntry{}
	}
	w.lingering = kept
}

func writev(fd int, iov []unix.Iovec) (int, error) {
	for {
		n, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, syscall.Errno(e)
		}
		return int(n), nil
	}
}
