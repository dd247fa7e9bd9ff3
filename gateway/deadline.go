package gateway

import (
	"container/heap"
	"sync"

	"github.com/gobwas/ws"

	"github.com/subsock/subsock/frame"
)

// Frames sent when a deadline closes a connection.
var (
	requestTimeoutFrame = frame.AppendClose(nil, ws.StatusPolicyViolation, "message not completed within the request timeout")
	backlogFrame        = frame.AppendClose(nil, ws.StatusPolicyViolation, "unprocessed input over the limit")
)

// deadlines enforces the per-connection limits that must act within a
// tick rather than within a ping interval: partial input older than
// RequestTimeout, closes that outlive CloseGrace, subs unconfirmed after
// SubscribeTimeout, and token expiry. The
// wheel's goroutine calls check on every tick (PingInterval/64).
//
// Only connections with something pending are looked at: a connection
// joins the watch set when it starts holding partial input or a close, and
// is dropped from it once none holds; tokens wait in a heap by expiry.
type deadlines struct {
	g *Gateway

	mu      sync.Mutex
	watch   map[*session]struct{}
	exp     expiryHeap
	scratch []*session // check's copy of watch, reused (check runs on the wheel's goroutine only)
}

func newDeadlines(g *Gateway) *deadlines {
	return &deadlines{g: g, watch: make(map[*session]struct{})}
}

// watchSession makes check look at s until it holds nothing pending.
func (d *deadlines) watchSession(s *session) {
	d.mu.Lock()
	d.watch[s] = struct{}{}
	d.mu.Unlock()
}

// setExpiry records s's token expiry (unix ms, 0 for none) for the request
// path and for check.
func (d *deadlines) setExpiry(s *session, at int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s.exp.Store(at) // under d.mu: it is the heap's key
	switch {
	case at == 0 && s.expIdx >= 0:
		heap.Remove(&d.exp, int(s.expIdx))
	case at == 0:
	case s.expIdx >= 0:
		heap.Fix(&d.exp, int(s.expIdx))
	default:
		heap.Push(&d.exp, s)
	}
}

// forget drops a closed connection.
func (d *deadlines) forget(s *session) {
	d.mu.Lock()
	delete(d.watch, s)
	if s.expIdx >= 0 {
		heap.Remove(&d.exp, int(s.expIdx))
	}
	d.mu.Unlock()
}

// check acts on every deadline passed at now (unix ms). d.mu is held only
// to copy the watch set and to update it: handlers call watchSession, and
// must never wait behind a walk over thousands of sessions.
func (d *deadlines) check(now int64) {
	g := d.g
	reqTimeout := g.cfg.RequestTimeout.Milliseconds()
	var expired []*session
	d.mu.Lock()
	for d.exp.Len() > 0 && d.exp[0].exp.Load() <= now {
		expired = append(expired, heap.Pop(&d.exp).(*session))
	}
	list := d.scratch[:0]
	for s := range d.watch {
		list = append(list, s)
	}
	d.mu.Unlock()

	var cuts []cut
	idle := list[:0] // sessions found with nothing pending, reusing list's array
	for _, s := range list {
		p, cl := s.partial.Load(), s.closeBy.Load()
		waiting := s.waiting.Load() && g.expireReplies(s, now)
		switch {
		case cl != 0 && now > cl:
			g.graceResets.Add(1)
			cuts = append(cuts, cut{s, nil})
		case p != 0 && now-p > reqTimeout:
			g.requestTimeouts.Add(1)
			var final []byte
			if s.mode.Load() == modeWS {
				final = requestTimeoutFrame
			}
			cuts = append(cuts, cut{s, final})
		case p == 0 && cl == 0 && !waiting:
			idle = append(idle, s)
		}
	}

	grace := now + g.cfg.CloseGrace.Milliseconds()
	d.mu.Lock()
	for _, c := range cuts {
		delete(d.watch, c.s)
	}
	for _, s := range idle {
		// Checked again under d.mu: a handler sets what it waits for before
		// calling watchSession, so either this sees it or the handler
		// re-adds the session after this delete.
		if s.partial.Load() == 0 && s.closeBy.Load() == 0 && !s.waiting.Load() {
			delete(d.watch, s)
		}
	}
	for _, s := range expired {
		// Requests are refused from the expiry on (see handleMessage); the
		// close frame may wait behind a full socket, so the grace bounds it.
		g.tokenExpiries.Add(1)
		s.closeBy.Store(grace)
		d.watch[s] = struct{}{}
		s.conn().CloseAfter(finalFor(s, tokenExpiredFrame, sseTokenExpiredFinal))
	}
	clear(list)
	d.scratch = list[:0]
	d.mu.Unlock()
	// Outside d.mu: a reset may run OnClose, which calls forget.
	for _, c := range cuts {
		c.s.conn().Reset(c.final)
	}
}

// cut is a connection to reset, with its best-effort final frame.
type cut struct {
	s     *session
	final []byte
}

// expiryHeap orders sessions by token expiry; session.expIdx is each one's
// index, -1 when not in it.
type expiryHeap []*session

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp.Load() < h[j].exp.Load() }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].expIdx, h[j].expIdx = int32(i), int32(j)
}
func (h *expiryHeap) Push(x any) {
	s := x.(*session)
	s.expIdx = int32(len(*h))
	*h = append(*h, s)
}
func (h *expiryHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.expIdx = -1
	return s
}
