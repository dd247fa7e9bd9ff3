package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"go.uber.org/zap"

	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/gateway/hub"
	"github.com/subsock/subsock/poller"
	"github.com/subsock/subsock/registry"
)

const (
	modeHTTP uint32 = iota
	modeWS
	modeSSE
)

// session is the gateway's state for one connection. Fields without a
// comment saying otherwise are touched only from OnData and OnClose, which
// netpoll serialises.
type session struct {
	// m is what fan-out reads (hub.Member): the connection as a sink, the
	// client id within the node (see clientID; 0 before the upgrade), the
	// wire (hub.Codecs index, or hub.WireSSE for a stream) and, for a
	// stream, whether its head is out.
	m         hub.Member   // m.Out is the connection: see conn
	seen      atomic.Int64 // unix ms of the last whole frame or request (liveness)
	exp       atomic.Int64 // token expiry (unix ms), 0 when none; set only under deadlines.mu (the expiry heap's key)
	partial   atomic.Int64 // unix ms when the unfinished frame, message or request began, 0 when none
	closeBy   atomic.Int64 // unix ms by which a close the node began must be done, 0 when none
	replyDue  atomic.Int64 // unix ms: the earliest deadline of a waiting reply, 0 when none (read without mu)
	in        []byte       // partial input kept between reads (nil when none)
	proc      sync.Mutex   // held while input is processed: by OnData, or by a resumed handshake
	hold      []byte       // an upgrade request waiting for its token's key (see suspendHandshake)
	asm       frame.Assembler
	mu        sync.Mutex // guards subs and rq: late answers from the Router touch them (see reply.go)
	subs      registry.Set
	hist      *sessionStreams // history topics' state; nil until the first (set under mu, before the Join)
	rq        []*pendingReply // replies in request order while one waits; nil otherwise
	auth      *authState      // set at upgrade; grants, publish limiter
	sse       *sseState       // an SSE stream's own state; nil otherwise
	expIdx    int32           // index in the expiry heap, -1 when absent; guarded by deadlines.mu
	mode      atomic.Uint32   // modeHTTP, modeWS or modeSSE; read by the heartbeat wheel
	waiting   atomic.Bool     // len(rq) > 0
	slot      uint16
	suspended bool // hold is set: input waits unprocessed
	done      bool // we decided to close; ignore further input
}

// conn is the session's connection, which fan-out knows as its Sink.
func (s *session) conn() *poller.Conn { return s.m.Out.(*poller.Conn) }

// Member implements hub.Subscriber.
func (s *session) Member() *hub.Member { return &s.m }

// OnOpen implements poller.Handler.
func (g *Gateway) OnOpen(c *poller.Conn) {
	s := &session{expIdx: -1}
	s.m.Out = c
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
	s.proc.Lock()
	defer s.proc.Unlock()
	// Input is not executed once we decided to close, nor once a WebSocket
	// peer is gone (an HTTP client may half-close after its request and
	// still read the reply).
	if s.done || s.mode.Load() == modeSSE || (!c.Active() && s.mode.Load() == modeWS) {
		g.discard(s, r, n)
		return
	}
	// netpoll reads every readable socket into memory with no way to pause
	// one, so a peer sending faster than its requests are worked off is
	// cut here, before its backlog is copied or executed.
	if len(s.in)+n > g.cfg.MaxInputBacklog {
		g.inputOverflows.Add(1)
		if ce := g.log.Check(zap.DebugLevel, "closing connection: input backlog"); ce != nil {
			ce.Write(zap.String("remote", c.RemoteAddr()), zap.Int("bytes", len(s.in)+n))
		}
		g.discard(s, r, n)
		// At once, not by the writer: until the descriptor leaves netpoll's
		// epoll set, netpoll keeps reading the flood into memory.
		if s.mode.Load() == modeWS {
			c.Reset(backlogFrame)
		} else {
			c.Reset(nil)
		}
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
	wasInMessage := s.asm.InMessage()
	used := g.process(s, buf)
	g.keepRest(s, buf, used, fresh)
	if fresh {
		_ = r.Skip(n)
	}
	_ = r.Release()
	g.trackPartial(s, used > 0, wasInMessage)
}

// keepRest keeps what process left of buf in s.in; fresh says buf is
// netpoll's buffer rather than s.in.
func (g *Gateway) keepRest(s *session, buf []byte, used int, fresh bool) {
	rest := buf[used:]
	switch {
	case s.done || len(rest) == 0:
		freeIn(s)
	case fresh:
		s.in = append(getIn(len(rest)), rest...)
	default:
		s.in = append(s.in[:0], rest...)
	}
}

// trackPartial starts or stops the RequestTimeout clock after a read:
// it runs from the first byte of an unfinished unit (a frame, a fragmented
// message or an HTTP request) until that unit completes, whatever trickles
// in meanwhile. progressed says whether a whole frame or request was
// processed in this read, which is also what counts as liveness.
func (g *Gateway) trackPartial(s *session, progressed, wasInMessage bool) {
	now := time.Now().UnixMilli()
	if progressed {
		s.seen.Store(now)
	}
	inMessage := s.asm.InMessage()
	switch {
	case s.done || (len(s.in) == 0 && !inMessage && !s.suspended):
		s.partial.Store(0)
	case s.partial.Load() == 0:
		s.partial.Store(now)
		g.deadlines.watchSession(s)
	case progressed && !(wasInMessage && inMessage):
		s.partial.Store(now) // the unit that was pending completed; a new one began
	}
}

// discard drops n unread bytes.
func (g *Gateway) discard(s *session, r netpoll.Reader, n int) {
	s.done = true
	freeIn(s)
	s.partial.Store(0)
	_ = r.Skip(n)
	_ = r.Release()
}

// process handles every complete unit (HTTP request or frame) at the front
// of buf and returns how many bytes it consumed.
func (g *Gateway) process(s *session, buf []byte) int {
	used := 0
	for used < len(buf) && !s.done && !s.suspended {
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
	s.proc.Lock()
	defer s.proc.Unlock()
	s.hold, s.suspended = nil, false
	g.wheel.remove(s)
	g.deadlines.forget(s)
	if m := s.mode.Load(); m == modeWS || m == modeSSE {
		if m == modeWS {
			g.wsConns.Add(-1)
		} else {
			g.sseConns.Add(-1)
		}
		s.mu.Lock()
		if len(g.pres.joinLeave) > 0 {
			var announced []string
			s.subs.Range(func(t string) bool {
				if g.pres.announces(t) {
					announced = append(announced, t)
				}
				return true
			})
			for _, t := range announced {
				g.leaveLocked(s, t) // with its leave event
			}
		}
		g.reg.RemoveAll(s, &s.subs, g.router.Release)
		s.rq = nil
		s.mu.Unlock()
		g.releaseAdmission(s)
	}
	freeIn(s)
}

// inPool recycles the buffers that hold partial input between reads: large
// messages split over reads would otherwise make garbage at the input rate.
var inPool sync.Pool // of *[]byte

// maxPooledIn keeps a rare huge buffer out of the pool.
const maxPooledIn = 256 << 10

func getIn(n int) []byte {
	if p, ok := inPool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, max(n, 4<<10))
}

// freeIn gives s.in back to the pool.
func freeIn(s *session) {
	if s.in != nil && cap(s.in) <= maxPooledIn {
		b := s.in[:0]
		inPool.Put(&b)
	}
	s.in = nil
}
