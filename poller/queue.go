package poller

import "sync"

// queue is a connection's list of frames waiting to be written. It is
// borrowed from a pool while frames wait and given back once they are
// written, so an idle connection holds none, and a busy one does not grow
// a fresh slice on every pass of its writer.
type queue struct{ s [][]byte }

// maxPooledQueue keeps a rare huge backlog's slice out of the pool.
const maxPooledQueue = 4096

var queuePool = sync.Pool{New: func() any { return &queue{s: make([][]byte, 0, 32)} }}

// pushLocked appends b to c's queue, borrowing one if needed.
func (c *Conn) pushLocked(b []byte) {
	if c.q == nil {
		c.q = queuePool.Get().(*queue)
	}
	c.q.s = append(c.q.s, b)
}

// frames returns what is queued (nil when nothing is).
func (c *Conn) frames() [][]byte {
	if c.q == nil {
		return nil
	}
	return c.q.s
}

// releaseQueueLocked drops every queued frame and gives the queue back.
func (c *Conn) releaseQueueLocked() {
	if c.q == nil {
		return
	}
	q := c.q
	c.q = nil
	clear(q.s)
	q.s = q.s[:0]
	if cap(q.s) <= maxPooledQueue {
		queuePool.Put(q)
	}
}
