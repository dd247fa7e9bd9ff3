package gateway

import (
	"context"
	"math"
	"net/http"
	"time"

	"github.com/gobwas/ws"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/gateway/hub"
	"github.com/subsock/subsock/proto"
)

// A connection's replies leave in the order of its requests (docs/protocol.md
// promises it), but some answers wait on the backbone: a sub is acknowledged
// only once its upstream subscription is live. Nothing waits in a netpoll
// handler for that. The request takes a place in the session's reply queue
// (session.rq) and the handler returns; the answer is filled in later, from
// the Router's goroutine (or the deadline check, at -subscribe-timeout), and
// everything ready at the front of the queue is sent. Replies made while the
// queue is empty (the usual case) go straight to the connection.
//
// session.mu guards rq and subs, because a late answer may have to roll a
// subscription back. Lock order: session.mu, then registry shard locks, then
// Router.mu; the Router calls back with no lock held.

// pendingReply is one request's place in the reply order.
type pendingReply struct {
	frame    []byte   // the sealed reply once known; stays nil when none is owed
	ready    bool     // answered: may leave once everything before it has
	wait     int      // upstream confirmations still awaited
	deadline int64    // unix ms: answered unavailable if still waiting then
	fresh    []string // topics the request joined; left again if it fails
	id       uint64
	hasID    bool
	close    bool        // close the connection once this reply is out (HTTP without keep-alive)
	hist     *subHistory // a sub with history topics: read once live upstream
	recovers bool        // frame is its replay and ack: the held live messages follow it
}

// reply seals a reply built after frame.Reserve and sends it in order.
func (g *Gateway) reply(s *session, b []byte) {
	g.send(s, sealReply(s, b), false)
}

// send queues ready bytes (a sealed frame, an HTTP response) in reply
// order, and closes the connection after them when closeAfter is set.
func (g *Gateway) send(s *session, fr []byte, closeAfter bool) {
	if !s.waiting.Load() {
		// Only this goroutine (the connection's handler) adds to rq, so it
		// cannot fill between the check and the send.
		sendNow(s, fr, closeAfter)
		return
	}
	s.mu.Lock()
	if len(s.rq) == 0 {
		sendNow(s, fr, closeAfter)
	} else {
		g.holdLocked(s, &pendingReply{frame: fr, ready: true, close: closeAfter})
	}
	s.mu.Unlock()
}

// maxHeldReplies bounds the replies a connection may have waiting behind
// one the backbone has not answered: they are memory the client controls.
const maxHeldReplies = 1024

var heldOverflowFrame = frame.AppendClose(nil, ws.StatusPolicyViolation, "too many requests waiting for the backbone")

// holdLocked appends pr to the reply queue, or, past maxHeldReplies, stops
// reading the connection and closes it with 1008. Only the connection's
// input side (OnData, or a resumed handshake) calls it, so s.done is its.
func (g *Gateway) holdLocked(s *session, pr *pendingReply) {
	if len(s.rq) >= maxHeldReplies {
		if !s.done {
			s.done = true
			g.inputOverflows.Add(1)
			s.conn().Abort(heldOverflowFrame) // asynchronous: s.mu is held
		}
		return
	}
	s.rq = append(s.rq, pr)
}

// sendNow queues a reply. Replies take the prompt lane: an ack or a pong
// is one connection's, and must not wait for a pass over a large topic's
// subscribers (see poller.Conn.EnqueuePrompt).
func sendNow(s *session, fr []byte, closeAfter bool) {
	if closeAfter {
		s.conn().CloseAfter(fr)
		return
	}
	_ = s.conn().EnqueuePrompt(fr)
}

func sealReply(s *session, b []byte) []byte {
	op := ws.OpText
	if hub.Codecs[s.m.Wire].Binary() {
		op = ws.OpBinary
	}
	return frame.Seal(b, op)
}

// awaitLocked queues pr, which waits for pr.wait confirmations.
func (g *Gateway) awaitLocked(s *session, pr *pendingReply) {
	g.holdLocked(s, pr)
	if due := s.replyDue.Load(); due == 0 || pr.deadline < due {
		s.replyDue.Store(pr.deadline)
	}
	s.waiting.Store(true)
}

// settleSub records one upstream answer for a pending sub: the Router's
// callback.
func (g *Gateway) settleSub(s *session, pr *pendingReply, err error) {
	s.mu.Lock()
	if pr.ready {
		s.mu.Unlock()
		return // timed out, or failed on another topic already
	}
	read := false
	if err != nil {
		g.failSubLocked(s, pr, "the broker did not confirm the subscription: "+err.Error())
	} else if pr.wait--; pr.wait == 0 {
		if pr.hist != nil {
			// Live upstream: what the stream holds now is all a
			// subscriber can miss. Read it, then answer (finishSub).
			read = true
		} else {
			pr.ready = true
			switch {
			case s.m.Wire == hub.WireSSE:
				pr.frame = sseHead(s.sse) // the stream starts
			case pr.hasID:
				pr.frame = sealReply(s, hub.Codecs[s.m.Wire].AppendAck(frame.Reserve(nil), pr.id))
			}
		}
	}
	g.flushRepliesLocked(s)
	s.mu.Unlock()
	if read {
		g.readHistory(s, pr)
	}
}

// failSubLocked answers pr with unavailable and rolls its subscriptions
// back, so that a retry starts clean.
func (g *Gateway) failSubLocked(s *session, pr *pendingReply, msg string) {
	pr.ready = true
	g.subscribeFailures.Add(1)
	if s.m.Wire == hub.WireSSE {
		// The stream has not started: the answer is a status.
		pr.frame, pr.close = sseErrorResponse(&sseError{http.StatusServiceUnavailable, msg, "Retry-After: 1\r\n"}), true
	} else {
		pr.frame = sealReply(s, hub.Codecs[s.m.Wire].AppendError(frame.Reserve(nil), pr.id, pr.hasID, proto.CodeUnavailable, msg))
	}
	for _, t := range pr.fresh {
		g.leaveLocked(s, t)
	}
	pr.fresh = nil
}

// flushRepliesLocked sends every answered reply at the front of rq.
func (g *Gateway) flushRepliesLocked(s *session) {
	i := 0
	for ; i < len(s.rq) && s.rq[i].ready; i++ {
		switch pr := s.rq[i]; {
		case pr.close:
			s.conn().CloseAfter(pr.frame)
		case pr.recovers && s.sse != nil:
			if pr.frame != nil {
				_ = s.conn().EnqueueExempt(pr.frame)
			}
			s.m.Live.Store(true)
			g.endRecovering(s, pr.hist)
		case pr.recovers:
			// What the client asked to be replayed may exceed
			// -max-pending (a client cut as a slow consumer missed more
			// than that): it is queued outside the limit, bounded by
			// -max-replay instead, so the recovery is not cut again.
			if pr.frame != nil {
				_ = s.conn().EnqueueExempt(pr.frame)
			}
			g.endRecovering(s, pr.hist)
		case pr.frame != nil:
			_ = s.conn().EnqueuePrompt(pr.frame)
			if s.sse != nil {
				s.m.Live.Store(true) // the head went out
			}
		}
		s.rq[i] = nil
	}
	if i == len(s.rq) {
		s.rq = nil
		s.waiting.Store(false)
		return
	}
	s.rq = s.rq[i:]
}

// expireReplies answers every sub of s still waiting past its deadline;
// the deadline check calls it for watched sessions. It reports whether
// replies still wait.
func (g *Gateway) expireReplies(s *session, now int64) bool {
	if now < s.replyDue.Load() {
		return true // nothing due yet: no lock, no walk
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := int64(0)
	for _, pr := range s.rq {
		if !pr.ready && now >= pr.deadline {
			g.failSubLocked(s, pr, "the broker did not confirm the subscription within "+g.cfg.SubscribeTimeout.String())
		}
		if !pr.ready && (next == 0 || pr.deadline < next) {
			next = pr.deadline
		}
	}
	s.replyDue.Store(next)
	g.flushRepliesLocked(s)
	return len(s.rq) > 0
}

// deferReply keeps a reply's place in s's reply order and returns the
// function that fills it in (once), from any goroutine.
func (g *Gateway) deferReply(s *session, closeAfter bool) func([]byte) {
	pr := &pendingReply{wait: 1, deadline: math.MaxInt64, close: closeAfter}
	s.mu.Lock()
	g.awaitLocked(s, pr)
	s.mu.Unlock()
	return func(fr []byte) {
		s.mu.Lock()
		pr.ready, pr.frame = true, fr
		g.flushRepliesLocked(s)
		s.mu.Unlock()
	}
}

// publishLater queues relay (which it takes over) for the publisher;
// answer makes the reply from the result, in the connection's reply order.
func (g *Gateway) publishLater(s *session, topic string, relay []byte, closeAfter bool, answer func(broker.Position, error) []byte) {
	respond := g.deferReply(s, closeAfter)
	g.publishAsync(topic, relay, func(pos broker.Position, err error) { respond(answer(pos, err)) })
}

// publishAsync publishes relay to topic on the publisher and calls done
// with the result there. A history topic's publish is a call of its own
// (it returns a position); a plain one may share an exchange with others.
func (g *Gateway) publishAsync(topic string, relay []byte, done func(broker.Position, error)) {
	if g.isHistory(topic) {
		g.pubs.submit(topic, func() { done(g.publishRelay(context.Background(), topic, relay)) },
			func(err error) { done(broker.Position{}, err) })
		return
	}
	g.pubs.submitPublish(topic, relay, func(err error) { done(broker.Position{}, err) })
}

// subscribeDeadline is when a sub made now is answered unavailable at the latest.
func (g *Gateway) subscribeDeadline() int64 {
	return time.Now().Add(g.cfg.SubscribeTimeout).UnixMilli()
}
