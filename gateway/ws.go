package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/zap"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/gateway/hub"
	"github.com/subsock/subsock/proto"
)

// Frames that never change are built once and shared by every connection.
var (
	pingFrame         = frame.AppendFrame(nil, ws.OpPing, nil)
	slowFrame         = frame.AppendClose(nil, frame.StatusTryAgainLater, "slow consumer")
	heartbeatFrame    = frame.AppendClose(nil, frame.StatusHeartbeatTimeout, "heartbeat timeout")
	goingAwayFrame    = frame.AppendClose(nil, ws.StatusGoingAway, "server shutting down")
	normalFrame       = frame.AppendClose(nil, ws.StatusNormalClosure, "")
	tokenExpiredFrame = frame.AppendClose(nil, frame.StatusTokenExpired, "token expired")
)

// handleFrame handles one frame from the front of b, or returns 0 while it
// is incomplete.
func (g *Gateway) handleFrame(s *session, b []byte) int {
	h, hn, err := frame.ParseHeader(b)
	if errors.Is(err, frame.ErrShort) {
		return 0
	}
	if err == nil {
		err = s.asm.Check(h, g.cfg.MaxMessage)
	}
	if err != nil {
		g.failWS(s, err)
		return len(b)
	}
	if int64(len(b)-hn) < h.Length {
		return 0
	}
	n := hn + int(h.Length)
	payload := b[hn:n]
	ws.Cipher(payload, h.Mask, 0)
	switch h.OpCode {
	case ws.OpClose:
		code, _, err := frame.ParseClose(payload)
		if err != nil {
			g.failWS(s, err)
			return n
		}
		// Echo the peer's status (section 5.5.1); 1005 cannot be sent.
		reply := normalFrame
		if code != ws.StatusNoStatusRcvd {
			reply = frame.AppendClose(nil, code, "")
		}
		s.done = true
		s.conn().CloseAfter(reply)
	case ws.OpPing:
		_ = s.conn().EnqueuePrompt(frame.AppendFrame(nil, ws.OpPong, payload))
	case ws.OpPong:
	default:
		op, msg, done, err := s.asm.Push(h, payload)
		if err != nil {
			g.failWS(s, err)
			return n
		}
		if done {
			g.handleMessage(s, op, msg)
		}
	}
	return n
}

// failWS closes the connection with the status a violation calls for.
func (g *Gateway) failWS(s *session, err error) {
	var ce *frame.CloseError
	if !errors.As(err, &ce) {
		ce = &frame.CloseError{Code: ws.StatusProtocolError, Reason: err.Error()}
	}
	if ce := g.log.Check(zap.DebugLevel, "closing connection"); ce != nil {
		ce.Write(zap.String("remote", s.conn().RemoteAddr()), zap.Error(err))
	}
	g.protocolCloses.Add(1)
	s.done = true
	s.conn().CloseAfter(frame.AppendClose(nil, ce.Code, ce.Reason))
}

// handleMessage runs one protocol request. msg may alias the input buffer.
func (g *Gateway) handleMessage(s *session, _ ws.OpCode, msg []byte) {
	codec := hub.Codecs[s.m.Wire]
	var req proto.Request
	if err := codec.DecodeRequest(msg, &req); err != nil {
		var pe *proto.Error
		if !errors.As(err, &pe) {
			pe = &proto.Error{Code: proto.CodeBadRequest, Msg: err.Error()}
		}
		g.reply(s, codec.AppendError(frame.Reserve(nil), pe.ID, pe.HasID, pe.Code, pe.Msg))
		return
	}
	var perr *proto.Error
	switch {
	case expired(s):
		// The 4001 close may still wait behind a full socket; nothing the
		// connection asks for is served meanwhile.
		perr = errTokenExpired
	case req.Op == proto.OpSub:
		// Answered when the backbone confirms, never waited for here.
		if perr = g.subscribe(s, &req); perr == nil {
			return
		}
	case req.Op == proto.OpUnsub:
		perr = g.unsubscribe(s, req.Topics)
	case req.Op == proto.OpPub:
		var async bool
		if perr, async = g.publishFromClient(s, &req); async {
			return
		}
	case req.Op == proto.OpPing:
		g.reply(s, codec.AppendPong(frame.Reserve(nil), req.ID, req.HasID))
		return
	case req.Op == proto.OpInfo:
		g.reply(s, codec.AppendInfoAck(frame.Reserve(nil), req.ID, g.clientID(s), userOf(s), g.ctl.id))
		return
	case req.Op == proto.OpPresence || req.Op == proto.OpPresenceStats:
		if perr = g.presenceOp(s, &req); perr == nil {
			return // answered once the nodes have
		}
	case req.Op == proto.OpAuth:
		// A signature check costs CPU: refreshes share the publish bucket.
		if perr = g.allowPublish(s); perr == nil {
			perr = g.refreshAuth(s, req.Token)
		}
	default:
		perr = &proto.Error{Code: proto.CodeUnknownOp, Msg: fmt.Sprintf("op %q is not a request", req.Op.String())}
	}
	switch {
	case perr != nil:
		g.reply(s, codec.AppendError(frame.Reserve(nil), req.ID, req.HasID, perr.Code, perr.Msg))
	case req.HasID:
		g.reply(s, codec.AppendAck(frame.Reserve(nil), req.ID))
	}
}

var errTokenExpired = &proto.Error{Code: proto.CodeForbidden, Msg: "token expired"}

// expired reports whether s's token has expired.
func expired(s *session) bool {
	exp := s.exp.Load()
	return exp != 0 && time.Now().UnixMilli() >= exp
}

// checkTopicCount bounds the topics of one sub or unsub request.
func (g *Gateway) checkTopicCount(topics []string) *proto.Error {
	if len(topics) > g.cfg.MaxTopicsPerRequest {
		return &proto.Error{Code: proto.CodeTooLarge,
			Msg: fmt.Sprintf("%d topics in one request; the limit is %d", len(topics), g.cfg.MaxTopicsPerRequest)}
	}
	return nil
}

// subscribe joins the topics at once and queues the request's reply in the
// connection's reply order; the Router answers it once every topic is live
// upstream (ack), or it fails (unavailable, the new subscriptions rolled
// back). It returns an error only for a request refused outright.
func (g *Gateway) subscribe(s *session, req *proto.Request) *proto.Error {
	topics := req.Topics
	if err := g.checkTopicCount(topics); err != nil {
		return err
	}
	for _, t := range topics {
		if err := g.authorize(s, t, false); err != nil {
			return err
		}
	}
	s.mu.Lock()
	fresh := 0
	for _, t := range topics {
		if !s.subs.Has(t) {
			fresh++
		}
	}
	if s.subs.Len()+fresh > g.cfg.MaxSubsPerConn {
		s.mu.Unlock()
		return &proto.Error{Code: proto.CodeTooManySubscriptions,
			Msg: fmt.Sprintf("subscribing would exceed %d subscriptions per connection", g.cfg.MaxSubsPerConn)}
	}
	pr := &pendingReply{wait: len(topics), deadline: g.subscribeDeadline(), id: req.ID, hasID: req.HasID}
	if pr.hist = g.planHistory(s, req); pr.hist != nil {
		startRecovering(s, pr.hist)
	}
	for _, t := range topics {
		if s.subs.Has(t) {
			continue
		}
		// Join stores the registry's copy of the topic in s.subs, so the
		// bytes are held once however many connections subscribe.
		if _, first := g.reg.Join(t, s, &s.subs); first {
			g.router.Acquire(t)
		}
		pr.fresh = append(pr.fresh, t)
	}
	g.awaitLocked(s, pr)
	s.mu.Unlock()
	g.deadlines.watchSession(s)
	for _, t := range pr.fresh {
		g.memberEvent(s, t, 'j')
	}
	for _, t := range topics {
		g.router.Await(t, func(err error) { g.settleSub(s, pr, err) })
	}
	return nil
}

func (g *Gateway) unsubscribe(s *session, topics []string) *proto.Error {
	if err := g.checkTopicCount(topics); err != nil {
		return err
	}
	s.mu.Lock()
	for _, t := range topics {
		g.leaveLocked(s, t)
	}
	s.mu.Unlock()
	return nil
}

// leaveLocked drops one subscription of s; s.mu is held.
func (g *Gateway) leaveLocked(s *session, topic string) {
	if !s.subs.Has(topic) {
		return
	}
	_, last := g.reg.Leave(topic, s, &s.subs)
	if last {
		g.router.Release(topic)
	}
	forgetStream(s, topic)
	g.memberEvent(s, topic, 'l')
	if last && g.pres.announces(topic) {
		g.pres.forget(topic)
	}
}

// publishFromClient runs a pub; async reports that its reply will come
// from the publisher (see publisher.go) rather than from the caller.
func (g *Gateway) publishFromClient(s *session, req *proto.Request) (perr *proto.Error, async bool) {
	if err := g.authorize(s, req.Topic, true); err != nil {
		return err, false
	}
	if err := g.allowPublish(s); err != nil {
		return err, false
	}
	// req.Data aliases the input buffer, so the relay form is a copy; a
	// broker never keeps a payload past Publish (nor a Handler past its
	// return), so the copy's buffer is reused.
	bp := relayPool.Get().(*[]byte)
	var relay []byte
	if req.NoEcho {
		relay = hub.AppendRelayNoEcho((*bp)[:0], hub.Codecs[s.m.Wire].Format(), g.ctl.id, s.m.CID, req.Data)
	} else {
		relay = hub.AppendRelay((*bp)[:0], hub.Codecs[s.m.Wire].Format(), req.Data)
	}
	release := func() {
		if cap(relay) <= maxPooledRelay {
			*bp = relay[:0]
			relayPool.Put(bp)
		}
	}
	if !g.pubs.inline() {
		id, hasID, codec := req.ID, req.HasID, hub.Codecs[s.m.Wire]
		g.publishLater(s, req.Topic, relay, false, func(pos broker.Position, err error) []byte {
			release()
			if err != nil {
				g.publishErrors.Add(1)
				pe := publishError(err)
				return sealReply(s, codec.AppendError(frame.Reserve(nil), id, hasID, pe.Code, pe.Msg))
			}
			if !hasID {
				return nil
			}
			return sealReply(s, appendPubAck(codec, id, pos))
		})
		return nil, true
	}
	pos, err := g.publishRelay(context.Background(), req.Topic, relay)
	release()
	if err != nil {
		g.publishErrors.Add(1)
		return publishError(err), false
	}
	if req.HasID && pos.Epoch != "" {
		g.reply(s, appendPubAck(hub.Codecs[s.m.Wire], req.ID, pos))
		return nil, true
	}
	return nil, false
}

// appendPubAck builds the ack of a pub: with its place in the stream on a
// history topic (pos set), plain otherwise.
func appendPubAck(c proto.Codec, id uint64, pos broker.Position) []byte {
	if pos.Epoch == "" {
		return c.AppendAck(frame.Reserve(nil), id)
	}
	return c.AppendPubAck(frame.Reserve(nil), id, pos.Offset, pos.Epoch)
}

// relayPool recycles the relay copies of WebSocket publishes.
var relayPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledRelay keeps buffers past the default -max-message out of the pool.
const maxPooledRelay = 64<<10 + 1

// publishError maps a publish failure to its protocol error.
func publishError(err error) *proto.Error {
	if errors.Is(err, broker.ErrUnavailable) {
		return &proto.Error{Code: proto.CodeUnavailable, Msg: err.Error()}
	}
	return &proto.Error{Code: proto.CodeInternal, Msg: err.Error()}
}
