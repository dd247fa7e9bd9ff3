package poller

import (
	"sync"
	"sync/atomic"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"
)

// Conn state bits, guarded by Conn.mu.
const (
	stScheduled uint8 = 1 << iota // on a writer's ready list or parked in epoll
	stClosing                     // close once the queue is written
	stAbort                       // drop the queue, write final best effort, close
	stClosed                      // gone: nothing may be written to fd
	stParked                      // waiting for EPOLLOUT
	stInEpoll                     // fd was added to the writable epoll set
	stLinger                      // our side is shut; waiting for the peer's FIN
	stGone                        // netpoll's close callback ran
)

// Conn is one accepted connection. Enqueue, Close and Abort are safe for
// concurrent use; Value belongs to the Handler.
type Conn struct {
	// Value is the handler's per-connection state, set in OnOpen.
	Value any

	nc netpoll.Connection
	fd int
	w  *writer
	s  *Server

	wmu     sync.Mutex  // held around write syscalls and while marking closed
	urgent  atomic.Bool // scheduled ahead of ordinary connections (see SetUrgent)
	lagging atomic.Bool // the peer is not draining: scheduled after the others (see noteLag)

	mu      sync.Mutex
	state   uint8
	off     int    // bytes of the first queued frame already written
	pending int    // bytes queued and not yet written
	q       *queue // shared, immutable frames; nil when none wait
	final   []byte // written best effort before an abort
	x       *extra // rarely used state; nil for most connections
}

// extra is what few connections need, kept out of Conn so that an idle
// connection does not pay for it. Guarded by Conn.mu.
type extra struct {
	// overflow, when set, replaces Config.OverflowFinal for this
	// connection (another protocol on the same loops: SSE).
	overflow []byte
	// Bytes queued by EnqueueExempt and not yet written (exempt), and
	// the bytes queued before them and not yet written (before).
	before, exempt int
}

func (c *Conn) extraLocked() *extra {
	if c.x == nil {
		c.x = &extra{}
	}
	return c.x
}

// SetOverflowFinal makes final what is written, best effort, when this
// connection's queue overflows, instead of Config.OverflowFinal.
func (c *Conn) SetOverflowFinal(final []byte) {
	c.mu.Lock()
	c.extraLocked().overflow = final
	c.mu.Unlock()
}

// EnqueueExempt queues b, which the peer asked for at once (a replay of
// history), outside the MaxPending limit: until its bytes are written
// they do not count against the limit of later Enqueues, so a connection
// that is owed a large replay is not cut as a slow consumer for it. The
// caller bounds what it queues this way (see Exempt).
func (c *Conn) EnqueueExempt(b []byte) error {
	c.mu.Lock()
	if c.state&(stClosing|stAbort|stClosed) != 0 {
		c.mu.Unlock()
		return ErrClosed
	}
	x := c.extraLocked()
	if x.exempt == 0 {
		x.before = c.pending
	}
	// Bytes queued between two exempt ones count as exempt too: a
	// slight over-allowance, never more than one limit's worth.
	x.exempt = c.pending - x.before + len(b)
	c.queueAndUnlock(b, false)
	return nil
}

// queueAndUnlock appends b to the queue, releases mu, and puts the
// connection on its writer's ready list (the prompt one when prompt) if it
// was not there.
func (c *Conn) queueAndUnlock(b []byte, prompt bool) {
	c.pushLocked(b)
	c.pending += len(b)
	sched := c.state&stScheduled == 0
	c.state |= stScheduled
	c.mu.Unlock()
	if sched {
		c.w.push(c, prompt) // the writer's own lock, a leaf
	}
}

// Exempt returns the bytes queued by EnqueueExempt not yet written.
func (c *Conn) Exempt() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.x == nil {
		return 0
	}
	return c.x.exempt
}

// limitedLocked is what counts against MaxPending: the queue minus its
// exempt bytes.
func (c *Conn) limitedLocked() int {
	if c.x == nil {
		return c.pending
	}
	return c.pending - c.x.exempt
}

// Enqueue queues b to be written. b is not copied and must not change
// afterwards: the same slice may be queued on many connections at once.
// It never blocks. On overflow the connection is aborted.
func (c *Conn) Enqueue(b []byte) error { return c.enqueue(b, false) }

// EnqueuePrompt is Enqueue for a message of a small group: when it
// schedules the connection, the writer serves it between the writes of
// the pass under way (as urgent connections are) instead of after them,
// so a one-subscriber topic's message does not wait behind a pass over a
// 10,000-subscriber topic's sockets. A lagging connection stays behind.
func (c *Conn) EnqueuePrompt(b []byte) error { return c.enqueue(b, true) }

func (c *Conn) enqueue(b []byte, prompt bool) error {
	c.mu.Lock()
	if c.state&(stClosing|stAbort|stClosed) != 0 {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.limitedLocked()+len(b) > c.w.cfg.MaxPending {
		c.w.overflows.Add(1)
		final := c.w.cfg.OverflowFinal
		if c.x != nil && c.x.overflow != nil {
			final = c.x.overflow
		}
		c.abortLocked(final)
		c.mu.Unlock()
		return ErrOverflow
	}
	c.queueAndUnlock(b, prompt)
	return nil
}

// CloseAfter queues final (may be nil) and closes the connection once
// everything queued before it has been written. It ignores the queue limit
// so a close frame always fits.
func (c *Conn) CloseAfter(final []byte) {
	c.mu.Lock()
	if c.state&(stClosing|stAbort|stClosed) != 0 {
		c.mu.Unlock()
		return
	}
	if len(final) > 0 {
		c.pushLocked(final)
		c.pending += len(final)
	}
	c.state |= stClosing
	sched := c.state&stScheduled == 0
	c.state |= stScheduled
	c.mu.Unlock()
	if sched {
		c.w.push(c, false)
	}
}

// Abort drops whatever is queued, writes final if the socket takes it at
// once (and only at a frame boundary), then resets the connection: it is
// closed with SO_LINGER 0, so the kernel sends RST and frees the socket's
// buffers at once instead of keeping unsent bytes in an orphaned socket
// for minutes. Every abort is for a peer that is slow, silent or hostile,
// so nothing it could still read is worth that memory.
func (c *Conn) Abort(final []byte) {
	c.mu.Lock()
	c.abortLocked(final)
	c.mu.Unlock()
}

// Reset is Abort carried out at once, on the caller's goroutine, rather
// than by the connection's writer: for a peer whose input is being cut
// off, every moment it stays open netpoll keeps reading it into memory.
// The caller must not hold the Conn's locks (so not from inside Enqueue's
// callers' critical sections); any goroutine may call it, OnData included.
func (c *Conn) Reset(final []byte) {
	c.wmu.Lock()
	c.mu.Lock()
	if c.state&stClosed != 0 {
		c.mu.Unlock()
		c.wmu.Unlock()
		return
	}
	c.state |= stAbort
	c.resetLocked(final)
	c.mu.Unlock()
	c.wmu.Unlock()
	_ = c.nc.Close()
}

// resetLocked drops the queue, writes final if the socket takes it at once
// at a frame boundary, and arms SO_LINGER 0 so the close that follows is an
// RST. It runs with wmu and mu held; the caller then closes nc.
func (c *Conn) resetLocked(final []byte) {
	atBoundary := c.off == 0
	c.releaseQueueLocked()
	c.final, c.pending, c.off = nil, 0, 0
	c.state |= stClosed
	if len(final) > 0 && atBoundary {
		// Best effort: a peer that stopped reading will not see it.
		_, _ = unix.Write(c.fd, final)
	}
	_ = unix.SetsockoptLinger(c.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}

func (c *Conn) abortLocked(final []byte) {
	if c.state&(stAbort|stClosed) != 0 {
		return
	}
	c.state |= stAbort
	c.final = final
	if c.state&stScheduled == 0 || c.state&stLinger != 0 {
		c.state |= stScheduled
		// push takes only the writer's own lock, a leaf.
		c.w.push(c, false)
	} else if c.state&stParked != 0 {
		// Parked on a full socket: wake it now rather than when it drains.
		c.state &^= stParked
		c.w.push(c, false)
	}
}

// Closing reports whether the connection is closing or closed; input that
// arrives then can be discarded.
func (c *Conn) Closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state&(stClosing|stAbort|stClosed) != 0
}

// Active reports whether the connection is still open on both sides as
// far as netpoll knows: false once the peer closed or reset it, or once it
// was closed here.
func (c *Conn) Active() bool { return c.nc.IsActive() }

// SetUrgent marks the connection's writes as urgent: its writer serves it
// before the connections already waiting. For request/response traffic
// (HTTP) sharing writers with bulk fan-out.
func (c *Conn) SetUrgent(on bool) { c.urgent.Store(on) }

// Pending returns the bytes queued and not yet written.
func (c *Conn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending
}

// RemoteAddr returns the peer's address as text.
func (c *Conn) RemoteAddr() string {
	if a := c.nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// onClosed is netpoll's close callback. It runs before netpoll closes the
// descriptor (callbacks run newest first), so after it returns no writer
// can touch fd.
func (c *Conn) onClosed(netpoll.Connection) error {
	c.wmu.Lock()
	c.mu.Lock()
	already := c.state&stGone != 0
	if !already && c.urgent.Load() && c.state&(stAbort|stClosed) == 0 {
		// The peer half-closed after its request (an HTTP client that sends
		// FIN after the body): netpoll closes on FIN, so the reply still
		// queued is written now, best effort, while fd is ours.
		c.writeQueuedLocked()
	}
	c.state |= stClosed | stGone
	c.releaseQueueLocked()
	c.final, c.pending, c.off = nil, 0, 0
	c.mu.Unlock()
	c.wmu.Unlock()
	if already {
		return nil
	}
	c.s.ep.forget(c)
	c.s.closed(c)
	return nil
}

// writeQueuedLocked makes one non-blocking attempt to write what is queued.
// It runs with wmu and mu held, only for small request/response traffic.
func (c *Conn) writeQueuedLocked() {
	var iov [8]unix.Iovec
	n, off := 0, c.off
	for _, b := range c.frames() {
		b = b[off:]
		off = 0
		if len(b) == 0 {
			continue
		}
		if n == len(iov) {
			break
		}
		iov[n] = unix.Iovec{Base: &b[0], Len: uint64(len(b))}
		n++
	}
	if n > 0 {
		_, _ = writev(c.fd, iov[:n])
	}
}
