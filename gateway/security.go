package gateway

import (
	"github.com/subsock/subsock/gateway/hub"

	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/time/rate"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/limit"
	"github.com/subsock/subsock/proto"
)

// SecurityConfig holds who may connect and what each client may do.
// The zero value lets anyone connect, subscribe and publish anything.
type SecurityConfig struct {
	// JWT verifies connect tokens when any key source is set.
	JWT auth.Config
	// AllowAnonymous lets clients without a token in when JWT is on; they
	// get AnonymousSubs / AnonymousPubs.
	AllowAnonymous bool
	// AnonymousSubs / AnonymousPubs are the patterns anonymous clients may
	// use. With JWT on, an empty list grants nothing. With JWT off, leaving
	// both empty grants everything; setting either restricts both (an empty
	// one then grants nothing).
	AnonymousSubs, AnonymousPubs []string
	// TokenCookie names a cookie that may carry the connect token (for
	// EventSource and WebSocket from browsers, which cannot set headers);
	// ?token= and Authorization: Bearer still come first. Empty: none.
	TokenCookie string
	// APIKey, when set, is required by POST /publish.
	APIKey string
	// AllowedOrigins is a comma-separated allow-list of Origin hosts, or *.
	// Empty: only same-host origins (and clients that send no Origin).
	AllowedOrigins string
	// MaxConns caps open WebSocket connections; 0 is unlimited.
	MaxConns int
	// AcceptRate caps new WebSocket connections per second; 0 is unlimited.
	AcceptRate float64
	// AcceptBurst is how many may arrive at once on top of AcceptRate.
	// Default: AcceptRate/10, at least 1.
	AcceptBurst int
	// PublishRate caps each client's publishes and in-band token refreshes
	// (both cost the node CPU) per second; 0 is unlimited.
	PublishRate float64
	// PublishBurst is the token bucket depth. Default: max(1, PublishRate).
	PublishBurst int
}

func (c SecurityConfig) jwtEnabled() bool {
	return len(c.JWT.Secret) > 0 || len(c.JWT.PublicKeyFiles) > 0 || c.JWT.JWKSURL != ""
}

type security struct {
	cfg        SecurityConfig
	jwt        *auth.JWT
	anon       *grants // nil: anonymous clients are refused
	origins    auth.Origins
	admission  *limit.Admission
	everything *grants
}

// grants is what one connection may do; nil patterns allow everything.
type grants struct {
	subs, pubs auth.Patterns
	all        bool
	user       string // the token's subject; "" for anonymous connections
}

func (gr *grants) allows(topic string, pub bool) bool {
	if gr == nil || gr.all {
		return true
	}
	if pub {
		return gr.pubs.Allows(topic)
	}
	return gr.subs.Allows(topic)
}

func (sec *security) init(cfg SecurityConfig) error {
	sec.cfg = cfg
	sec.everything = &grants{all: true}
	if cfg.jwtEnabled() {
		j, err := auth.NewJWT(cfg.JWT)
		if err != nil {
			return fmt.Errorf("gateway: jwt: %w", err)
		}
		sec.jwt = j
	}
	if auth.HasUserPlaceholder(cfg.AnonymousSubs) || auth.HasUserPlaceholder(cfg.AnonymousPubs) {
		sec.close()
		return fmt.Errorf("gateway: anonymous patterns cannot use %s: anonymous clients have no user", auth.UserPlaceholder)
	}
	anonSubs, err := auth.ParsePatterns(cfg.AnonymousSubs)
	if err != nil {
		sec.close()
		return fmt.Errorf("gateway: anonymous subs: %w", err)
	}
	anonPubs, err := auth.ParsePatterns(cfg.AnonymousPubs)
	if err != nil {
		sec.close()
		return fmt.Errorf("gateway: anonymous pubs: %w", err)
	}
	switch {
	case sec.jwt == nil && len(anonSubs) == 0 && len(anonPubs) == 0:
		sec.anon = sec.everything
	case sec.jwt == nil || cfg.AllowAnonymous:
		sec.anon = &grants{subs: anonSubs, pubs: anonPubs}
	}
	// An empty list still checks: same-host origins only, as browsers
	// expect of a WebSocket server (cross-site WebSocket hijacking).
	o, err := auth.ParseOrigins(cfg.AllowedOrigins)
	if err != nil {
		sec.close()
		return fmt.Errorf("gateway: allowed origins: %w", err)
	}
	sec.origins = o
	sec.admission = limit.NewAdmission(limit.AdmissionConfig{MaxConns: cfg.MaxConns, Rate: cfg.AcceptRate, Burst: cfg.AcceptBurst})
	return nil
}

func (sec *security) close() {
	if sec.jwt != nil {
		_ = sec.jwt.Close()
	}
}

// reject builds a handshake refusal with a status and a reason.
func reject(status int, reason string, header string) error {
	opts := []ws.RejectOption{ws.RejectionStatus(status), ws.RejectionReason(reason)}
	if header != "" {
		opts = append(opts, ws.RejectionHeader(ws.HandshakeHeaderString(header)))
	}
	return ws.RejectConnectionError(opts...)
}

// beforeUpgrade runs the origin, token and admission checks, in that
// order, so a refused client never holds an admission slot.
func (g *Gateway) beforeUpgrade(s *session, hc *handshakeChecks) (ws.HandshakeHeader, error) {
	sec := &g.sec
	// A browser cannot read the status of a refused handshake: it only
	// sees 1006. A client that asks (?refuse=close) is upgraded and then
	// closed with a code that says why (see refuseAfterUpgrade).
	closeOpt := closeRefusals(hc.query)
	refuse := func(status int, reason, header string, code ws.StatusCode) error {
		if closeOpt {
			hc.closeWith = frame.AppendClose(nil, code, truncReason(reason))
			return nil
		}
		return reject(status, reason, header)
	}
	if g.draining.Load() {
		return nil, refuse(http.StatusServiceUnavailable, "server shutting down; retry in 5s", "Retry-After: 5\r\n", frame.StatusTryLater)
	}
	// Browsers always send Origin; a request without one is not a browser
	// and cannot be a cross-site hijack.
	if !sec.origins.Allowed(hc.origin, hc.host) {
		return nil, refuse(http.StatusForbidden, "origin "+hc.origin+" not allowed (see -allowed-origins)", "", frame.StatusDisconnected)
	}
	gr, exp, err := g.authenticate(hc)
	var kp *keyPendingError
	if errors.As(err, &kp) {
		return nil, kp // the handshake is answered once the key is fetched
	}
	if err != nil {
		return nil, refuse(http.StatusUnauthorized, err.Error(), `WWW-Authenticate: Bearer realm="subsock"`+"\r\n", frame.StatusTokenExpired)
	}
	ok, retry, reason := sec.admission.Admit(time.Now())
	if !ok {
		secs := int(math.Ceil(retry.Seconds()))
		if secs < 1 {
			secs = 1
		}
		return nil, refuse(http.StatusServiceUnavailable, reason+"; retry in "+strconv.Itoa(secs)+"s", "Retry-After: "+strconv.Itoa(secs)+"\r\n", frame.StatusTryLater)
	}
	if closeOpt {
		hc.closeWith = nil
	}
	s.auth = g.authStateFor(s, gr, exp)
	return nil, nil
}

// closeRefusals reports whether the handshake's query asks for refusals
// as close codes (refuse=close).
func closeRefusals(query string) bool {
	if !strings.Contains(query, "refuse=") {
		return false
	}
	q, _ := url.ParseQuery(query)
	return q.Get("refuse") == "close"
}

// truncReason keeps a close reason within the 123 bytes a close frame
// allows.
func truncReason(r string) string {
	if len(r) > 123 {
		return r[:123]
	}
	return r
}

// authStateFor is the state of an admitted connection with grants gr and
// a token expiring at exp (zero: never).
func (g *Gateway) authStateFor(s *session, gr *grants, exp time.Time) *authState {
	sec := &g.sec
	st := &authState{grants: gr, admitted: true}
	st.limiter = limit.NewPublishLimiter(sec.cfg.PublishRate, sec.cfg.PublishBurst)
	if !exp.IsZero() {
		g.deadlines.setExpiry(s, exp.UnixMilli())
	}
	if gr != sec.everything || st.limiter != nil {
		return st
	}
	return admittedOnly
}

// authState is per connection; connections of an open node share one.
type authState struct {
	grants   *grants
	limiter  *rate.Limiter
	admitted bool
}

var admittedOnly = &authState{admitted: true}

func (g *Gateway) authenticate(hc *handshakeChecks) (*grants, time.Time, error) {
	sec := &g.sec
	if sec.jwt == nil {
		return sec.anon, time.Time{}, nil
	}
	h := http.Header{}
	if hc.authz != "" {
		h.Set("Authorization", hc.authz)
	}
	q, _ := url.ParseQuery(hc.query)
	token := auth.TokenFromRequest(h, q)
	if token == "" && sec.cfg.TokenCookie != "" && hc.cookie != "" {
		// Browsers cannot set headers on EventSource or WebSocket: a
		// cookie of the page's origin carries the token instead.
		if c, err := http.ParseCookie(hc.cookie); err == nil {
			for _, ck := range c {
				if ck.Name == sec.cfg.TokenCookie {
					token = ck.Value
				}
			}
		}
	}
	if token == "" {
		if sec.anon != nil {
			return sec.anon, time.Time{}, nil
		}
		return nil, time.Time{}, auth.ErrNoToken
	}
	return g.verify(token)
}

// verify checks token without waiting on the network: a token whose key
// the node has not fetched yet fails with a *keyPendingError.
func (g *Gateway) verify(token string) (*grants, time.Time, error) {
	cl, err := g.sec.jwt.VerifyCached(token)
	if errors.Is(err, auth.ErrKeyPending) {
		return nil, time.Time{}, &keyPendingError{token: token, err: err}
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	return &grants{subs: cl.Subs, pubs: cl.Pubs, user: cl.Subject}, cl.Expires, nil
}

// keyPendingError carries a token whose signing key must be fetched
// before it can be checked; the handshake waits for it (see suspend).
type keyPendingError struct {
	token string
	err   error
}

func (e *keyPendingError) Error() string { return e.err.Error() }
func (e *keyPendingError) Unwrap() error { return e.err }

// authorize checks one topic against the connection's grants.
func (g *Gateway) authorize(s *session, topic string, pub bool) *proto.Error {
	if reserved(topic) {
		return errReserved
	}
	if s.auth == nil || s.auth.grants.allows(topic, pub) {
		return nil
	}
	verb := "subscribe to"
	if pub {
		verb = "publish to"
	}
	return &proto.Error{Code: proto.CodeForbidden, Msg: "not allowed to " + verb + " " + topic}
}

func (g *Gateway) allowPublish(s *session) *proto.Error {
	if s.auth == nil || limit.Allow(s.auth.limiter) {
		return nil
	}
	return &proto.Error{Code: proto.CodeRateLimited, Msg: fmt.Sprintf("over %g publishes per second", g.sec.cfg.PublishRate)}
}

// refreshAuth replaces the connection's token in band. Subscriptions the
// new token no longer allows are dropped and named in an err reply.
func (g *Gateway) refreshAuth(s *session, token string) *proto.Error {
	if g.sec.jwt == nil {
		return &proto.Error{Code: proto.CodeBadRequest, Msg: "this node does not use tokens"}
	}
	gr, exp, err := g.verify(token)
	var kp *keyPendingError
	if errors.As(err, &kp) {
		// Fetched in the background; the client's retry finds the key.
		g.sec.jwt.AwaitKeys(token, g.cfg.RequestTimeout, func() {})
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
		if !gr.allows(t, false) {
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

// checkAPIKey guards the publish API.
func (g *Gateway) checkAPIKey(r *http.Request) bool {
	return auth.CheckAPIKey(r.Header, g.sec.cfg.APIKey)
}

// releaseAdmission returns a closed connection's admission slot.
func (g *Gateway) releaseAdmission(s *session) {
	if s.auth != nil && s.auth.admitted {
		g.sec.admission.Done()
	}
}
