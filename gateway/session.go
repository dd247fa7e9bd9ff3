package gateway

import (
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/poller"
	"github.com/subsock/subsock/registry"
)

const (
	modeHTTP uint32 = iota
	modeWS
)

// session is the gateway's state for one connection. Its fields other than
// seen are touched only from OnData and OnClose, which netpoll serialises.
type session struct {
	c     *poller.Conn
	seen  atomic.Int64 // unix ms of the last inbound bytes
	exp   atomic.Int64 // token expiry (unix ms), 0 when none
	req   atomic.Int64 // unix ms when the pending partial HTTP request began, 0 when none
	in    []byte       // partial input kept between reads (nil when none)
	asm   frame.Assembler
	subs  registry.Set
	mode  atomic.Uint32 // modeHTTP or modeWS; read by the heartbeat wheel
	codec uint8         // index into codecs
	slot  uint16
	done  bool       // we decided to close; ignore further input
	auth  *authState // set at upgrade; grants, publish limiter
}

// OnOpen implements poller.Handler.
func (g *Gateway) OnOpen(c *poller.Conn) {
	s := &session{c: c}
	s.seen.Store(time.Now().UnixMilli())
	c.Value = s
	c.SetUrgent(true) // HTTP replies go ahead of fan-out; cleared on upgrade
	g.wheel.add(s)
}

// OnData implements poller.Handler: it consumes everything r holds,
// keeping an incomplete frame or request in s.in.
func (g *Gateway) OnData(c *poller.Conn, r netpoll.Reader) {
	s := c.Value.(*session)
	n := r.Len()
	if n == 0 {
		return
	}
	s.seen.Store(time.Now().UnixMilli())
	if s.done {
		_ = r.Skip(n)
		_ = r.Release()
		return
	}
	var buf []byte
	fresh := len(s.in) == 0
	if fresh {
		buf, _ = r.Peek(n) // no copy when the bytes sit in one node
	} else {
		b, _ := r.Next(n)
		s.in = append(s.in, b...)
		buf = s.in
	}
	used := g.process(s, buf)
	rest := buf[used:]
	switch {
	case s.done || len(rest) == 0:
		s.in = nil
	case fresh:
		s.in = append([]byte(nil), rest...)
	default:
		s.in = append(s.in[:0], rest...)
	}
	if fresh {
		_ = r.Skip(n)
	}
	_ = r.Release()
	if s.mode.Load() == modeHTTP {
		switch {
		case len(s.in) == 0:
			s.req.Store(0)
		case s.req.Load() == 0:
			s.req.Store(time.Now().UnixMilli())
		}
	}
}

// process handles every complete unit (HTTP request or frame) at the front
// of buf and returns how many bytes it consumed.
func (g *Gateway) process(s *session, buf []byte) int {
	used := 0
	for used < len(buf) && !s.done {
		var n int
		if s.mode.Load() == modeHTTP {
			n = g.handleHTTP(s, buf[used:])
		} else {
			n = g.handleFrame(s, buf[used:])
		}
		if n == 0 {
			break
		}
		used += n
	}
	if s.done {
		return len(buf)
	}
	return used
}

// OnClose implements poller.Handler: the connection is gone, so it leaves
// every group it joined.
func (g *Gateway) OnClose(c *poller.Conn) {
	s := c.Value.(*session)
	g.wheel.remove(s)
	if s.mode.Load() == modeWS {
		g.wsConns.Add(-1)
		g.reg.RemoveAll(s, &s.subs, g.router.Release)
		g.releaseAdmission(s)
	}
	s.in = nil
}
