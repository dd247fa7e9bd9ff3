package gateway

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/time/rate"

	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/gateway/hub"
	"github.com/subsock/subsock/gateway/policy"
	"github.com/subsock/subsock/proto"
)

// SecurityConfig holds who may connect and what each client may do (see
// policy.Config). The zero value lets anyone connect, subscribe and
// publish anything.
type SecurityConfig = policy.Config

// This file applies the policy's decisions to sessions: a handshake
// refused or upgraded, a connection's grants, limiter and token expiry, a
// request answered forbidden or rate_limited.

// reject builds a handshake refusal with a status and a reason.
func reject(ref *policy.Refusal) error {
	opts := []ws.RejectOption{ws.RejectionStatus(ref.Status), ws.RejectionReason(ref.Reason)}
	if ref.Header != "" {
		opts = append(opts, ws.RejectionHeader(ws.HandshakeHeaderString(ref.Header)))
	}
	return ws.RejectConnectionError(opts...)
}

// beforeUpgrade runs the policy's checks (draining, origin, token, then
// admission, so a refused client never holds an admission slot). A client
// that asks (?refuse=close) is upgraded and then closed with a code that
// says why: a browser cannot read a refused handshake's status.
func (g *Gateway) beforeUpgrade(s *session, hc *handshakeChecks) (ws.HandshakeHeader, error) {
	closeOpt := policy.CloseRefusals(hc.query)
	refuse := func(ref *policy.Refusal) error {
		if closeOpt {
			hc.closeWith = frame.AppendClose(nil, ref.Code, policy.TruncReason(ref.Reason))
			return nil
		}
		return reject(ref)
	}
	gr, exp, ref, kp := g.sec.Identify(g.draining.Load(), hc.request())
	if kp != nil {
		return nil, kp // the handshake is answered once the key is fetched
	}
	if ref == nil {
		ref = g.sec.Admit(time.Now())
	}
	if ref != nil {
		return nil, refuse(ref)
	}
	if closeOpt {
		hc.closeWith = nil
	}
	s.auth = g.authStateFor(s, gr, exp)
	return nil, nil
}

// authStateFor is the state of an admitted connection with grants gr and
// a token expiring at exp (zero: never).
func (g *Gateway) authStateFor(s *session, gr *policy.Grants, exp time.Time) *authState {
	st := &authState{grants: gr, admitted: true, limiter: g.sec.NewLimiter()}
	if !exp.IsZero() {
		g.deadlines.setExpiry(s, exp.UnixMilli())
	}
	if gr != g.sec.Everything || st.limiter != nil {
		return st
	}
	return admittedOnly
}

// authState is per connection; connections of an open node share one.
type authState struct {
	grants   *policy.Grants
	limiter  *rate.Limiter
	admitted bool
}

var admittedOnly = &authState{admitted: true}

// authorize checks one topic against the connection's grants.
func (g *Gateway) authorize(s *session, topic string, pub bool) *proto.Error {
	var gr *policy.Grants
	if s.auth != nil {
		gr = s.auth.grants
	}
	return policy.Authorize(gr, topic, pub)
}

func (g *Gateway) allowPublish(s *session) *proto.Error {
	if s.auth == nil {
		return nil
	}
	return g.sec.AllowPublish(s.auth.limiter)
}

// refreshAuth replaces the connection's token in band. Subscriptions the
// new token no longer allows are dropped and named in an err reply.
func (g *Gateway) refreshAuth(s *session, token string) *proto.Error {
	if g.sec.JWT == nil {
		return &proto.Error{Code: proto.CodeBadRequest, Msg: "this node does not use tokens"}
	}
	gr, exp, err := g.sec.Verify(token)
	var kp *policy.KeyPendingError
	if errors.As(err, &kp) {
		// Fetched in the background; the client's retry finds the key.
		g.sec.JWT.AwaitKeys(token, g.cfg.RequestTimeout, func() {})
		return &proto.Error{Code: proto.CodeUnavailable, Msg: "the token's signing key is being fetched; retry"}
	}
	if err != nil {
		return &proto.Error{Code: proto.CodeForbidden, Msg: err.Error()}
	}
	st := &authState{grants: gr, admitted: true}
	if s.auth != nil {
		st.limiter = s.auth.limiter
	}
	s.auth = st
	if exp.IsZero() {
		g.deadlines.setExpiry(s, 0)
	} else {
		g.deadlines.setExpiry(s, exp.UnixMilli())
	}
	var dropped []string
	s.mu.Lock()
	s.subs.Range(func(t string) bool {
		if !gr.Allows(t, false) {
			dropped = append(dropped, t)
		}
		return true
	})
	for _, t := range dropped {
		g.leaveLocked(s, t)
	}
	s.mu.Unlock()
	if len(dropped) > 0 {
		g.reply(s, hub.Codecs[s.m.Wire].AppendError(frame.Reserve(nil), 0, false, proto.CodeForbidden,
			"unsubscribed, not allowed by the new token: "+strings.Join(dropped, " ")))
	}
	return nil
}

// checkAPIKey guards the server API.
func (g *Gateway) checkAPIKey(r *http.Request) bool { return g.sec.CheckAPIKey(r.Header) }

// releaseAdmission returns a closed connection's admission slot.
func (g *Gateway) releaseAdmission(s *session) {
	if s.auth != nil && s.auth.admitted {
		g.sec.Release()
	}
}
