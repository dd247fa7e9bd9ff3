package gateway

import (
	"sync"
	"time"
)

// wheel pings connections and closes silent ones with one goroutine and no
// timer per connection: connections are spread over slots, and each tick
// visits one slot, so each connection is visited once per PingInterval.
type wheel struct {
	g     *Gateway
	slots []wheelSlot
	next  uint16 // slot given to the next connection
	mu    sync.Mutex
}

type wheelSlot struct {
	mu sync.Mutex
	m  map[*session]struct{}
}

const wheelSlots = 64

func newWheel(g *Gateway) *wheel {
	w := &wheel{g: g, slots: make([]wheelSlot, wheelSlots)}
	for i := range w.slots {
		w.slots[i].m = make(map[*session]struct{})
	}
	return w
}

func (w *wheel) add(s *session) {
	w.mu.Lock()
	s.slot = w.next
	w.next = (w.next + 1) % wheelSlots
	w.mu.Unlock()
	sl := &w.slots[s.slot]
	sl.mu.Lock()
	sl.m[s] = struct{}{}
	sl.mu.Unlock()
}

func (w *wheel) remove(s *session) {
	sl := &w.slots[s.slot]
	sl.mu.Lock()
	delete(sl.m, s)
	sl.mu.Unlock()
}

// each calls fn for every connection, slot by slot.
func (w *wheel) each(fn func(*session)) {
	for i := range w.slots {
		sl := &w.slots[i]
		sl.mu.Lock()
		list := make([]*session, 0, len(sl.m))
		for s := range sl.m {
			list = append(list, s)
		}
		sl.mu.Unlock()
		for _, s := range list {
			fn(s)
		}
	}
}

// run ticks until stop is closed.
func (w *wheel) run(stop <-chan struct{}) {
	g := w.g
	step := g.cfg.PingInterval / wheelSlots
	if step < time.Millisecond {
		step = time.Millisecond
	}
	t := time.NewTicker(step)
	defer t.Stop()
	slot := 0
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			ms := now.UnixMilli()
			g.deadlines.check(ms)
			w.visit(slot, ms)
			slot = (slot + 1) % wheelSlots
		}
	}
}

func (w *wheel) visit(slot int, now int64) {
	g := w.g
	timeout := g.cfg.PingTimeout.Milliseconds()
	sl := &w.slots[slot]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	for s := range sl.m {
		// seen moves only when a whole frame or request arrives, so a peer
		// trickling bytes is as silent as one sending nothing.
		silent := now - s.seen.Load()
		mode := s.mode.Load()
		switch {
		case mode == modeSSE:
			// A stream's client never sends: a comment keeps proxies from
			// timing it out, and a write to a peer that is gone fails.
			if streaming(s) {
				_ = s.conn().Enqueue(sseHeartbeat)
			}
		case silent > timeout && mode == modeWS:
			g.heartbeatCloses.Add(1)
			s.conn().Abort(heartbeatFrame)
		case silent > timeout:
			s.conn().Abort(nil) // an idle HTTP client
		case mode == modeWS:
			_ = s.conn().Enqueue(pingFrame)
		}
	}
}
