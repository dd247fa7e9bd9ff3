// Package policy makes a node's security and limit decisions as plain
// functions over what a request presents: who may connect (origin, token
// or anonymity, draining), whether admission has room, what a
// connection's grants allow, whether a publish is within its rate. It
// holds the state those decisions need (key sets, origin list, admission
// counters) and touches no connection: the session layer acts on its
// answers (a status, a close code, an err reply).
package policy

import (
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

// Config holds who may connect and what each client may do.
// The zero value lets anyone connect, subscribe and publish anything.
type Config struct {
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

// JWTEnabled reports whether tokens are verified (a key source is set).
func (c Config) JWTEnabled() bool {
	return len(c.JWT.Secret) > 0 || len(c.JWT.PublicKeyFiles) > 0 || c.JWT.JWKSURL != ""
}

// Grants is what one connection may do; nil, or All, allows everything.
type Grants struct {
	Subs, Pubs auth.Patterns
	All        bool
	User       string // the token's subject; "" for anonymous connections
}

// Allows reports whether the grants let the connection subscribe to
// (pub false) or publish to (pub true) topic.
func (gr *Grants) Allows(topic string, pub bool) bool {
	if gr == nil || gr.All {
		return true
	}
	if pub {
		return gr.Pubs.Allows(topic)
	}
	return gr.Subs.Allows(topic)
}

// Policy is a node's security state and the decisions made with it.
type Policy struct {
	Cfg Config
	// JWT verifies tokens; nil when tokens are off.
	JWT *auth.JWT
	// Anon is what a connection without a token gets; nil: it is refused.
	Anon *Grants
	// Everything is the grants of an open node, shared.
	Everything *Grants
	origins    auth.Origins
	admission  *limit.Admission
}

// New checks cfg and builds the policy (a JWKS URL starts its refresher:
// Close stops it).
func New(cfg Config) (*Policy, error) {
	p := &Policy{Cfg: cfg, Everything: &Grants{All: true}}
	if auth.HasUserPlaceholder(cfg.AnonymousSubs) || auth.HasUserPlaceholder(cfg.AnonymousPubs) {
		return nil, fmt.Errorf("anonymous patterns cannot use %s: anonymous clients have no user", auth.UserPlaceholder)
	}
	anonSubs, err := auth.ParsePatterns(cfg.AnonymousSubs)
	if err != nil {
		return nil, fmt.Errorf("anonymous subs: %w", err)
	}
	anonPubs, err := auth.ParsePatterns(cfg.AnonymousPubs)
	if err != nil {
		return nil, fmt.Errorf("anonymous pubs: %w", err)
	}
	// An empty list still checks: same-host origins only, as browsers
	// expect of a WebSocket server (cross-site WebSocket hijacking).
	if p.origins, err = auth.ParseOrigins(cfg.AllowedOrigins); err != nil {
		return nil, fmt.Errorf("allowed origins: %w", err)
	}
	if cfg.JWTEnabled() {
		if p.JWT, err = auth.NewJWT(cfg.JWT); err != nil {
			return nil, fmt.Errorf("jwt: %w", err)
		}
	}
	switch {
	case p.JWT == nil && len(anonSubs) == 0 && len(anonPubs) == 0:
		p.Anon = p.Everything
	case p.JWT == nil || cfg.AllowAnonymous:
		p.Anon = &Grants{Subs: anonSubs, Pubs: anonPubs}
	}
	p.admission = limit.NewAdmission(limit.AdmissionConfig{MaxConns: cfg.MaxConns, Rate: cfg.AcceptRate, Burst: cfg.AcceptBurst})
	return p, nil
}

// Close stops the key set's refresher, if any.
func (p *Policy) Close() {
	if p.JWT != nil {
		_ = p.JWT.Close()
	}
}

// Refusal is a connection attempt turned away: the HTTP status, reason and
// extra header line(s) of the answer, and the close code that says the
// same after an upgrade (for a client that asked for refusals as close
// codes, see CloseRefusals).
type Refusal struct {
	Status int
	Reason string
	Header string // "Name: value\r\n" lines, or ""
	Code   ws.StatusCode
}

// Request is what a connection attempt presents.
type Request struct {
	Origin, Host string
	Query        string // the raw query (?token=)
	Authz        string // the Authorization header
	Cookie       string // the Cookie header
}

// Identify decides who a connection attempt is, in this order: a draining
// node refuses (503), an origin not allowed is refused (403), then the
// credentials: a token's grants and expiry, or the anonymous grants, or a
// 401. It waits on nothing: a token whose signing key is not fetched yet
// is a *KeyPendingError (the caller waits for AwaitKeys and asks again).
func (p *Policy) Identify(draining bool, r Request) (*Grants, time.Time, *Refusal, *KeyPendingError) {
	if draining {
		return nil, time.Time{}, &Refusal{http.StatusServiceUnavailable, "server shutting down; retry in 5s", "Retry-After: 5\r\n", frame.StatusTryLater}, nil
	}
	// Browsers always send Origin; a request without one is not a browser
	// and cannot be a cross-site hijack.
	if !p.origins.Allowed(r.Origin, r.Host) {
		return nil, time.Time{}, &Refusal{Status: http.StatusForbidden, Reason: "origin " + r.Origin + " not allowed (see -allowed-origins)", Code: frame.StatusDisconnected}, nil
	}
	gr, exp, err := p.authenticate(r)
	var kp *KeyPendingError
	if errors.As(err, &kp) {
		return nil, time.Time{}, nil, kp
	}
	if err != nil {
		return nil, time.Time{}, &Refusal{http.StatusUnauthorized, err.Error(), `WWW-Authenticate: Bearer realm="subsock"` + "\r\n", frame.StatusTokenExpired}, nil
	}
	return gr, exp, nil, nil
}

// Admit takes an admission slot for a connection that passed every other
// check (so a refused one never holds one), or refuses it with 503 and
// when to retry. Release gives the slot back.
func (p *Policy) Admit(now time.Time) *Refusal {
	ok, retry, reason := p.admission.Admit(now)
	if ok {
		return nil
	}
	secs := max(int(math.Ceil(retry.Seconds())), 1)
	return &Refusal{http.StatusServiceUnavailable, reason + "; retry in " + strconv.Itoa(secs) + "s", "Retry-After: " + strconv.Itoa(secs) + "\r\n", frame.StatusTryLater}
}

// Release returns an admitted connection's slot.
func (p *Policy) Release() { p.admission.Done() }

// Allowed reports whether origin may open a stream to host.
func (p *Policy) Allowed(origin, host string) bool { return p.origins.Allowed(origin, host) }

func (p *Policy) authenticate(r Request) (*Grants, time.Time, error) {
	if p.JWT == nil {
		return p.Anon, time.Time{}, nil
	}
	h := http.Header{}
	if r.Authz != "" {
		h.Set("Authorization", r.Authz)
	}
	q, _ := url.ParseQuery(r.Query)
	token := auth.TokenFromRequest(h, q)
	if token == "" && p.Cfg.TokenCookie != "" && r.Cookie != "" {
		// Browsers cannot set headers on EventSource or WebSocket: a
		// cookie of the page's origin carries the token instead.
		if c, err := http.ParseCookie(r.Cookie); err == nil {
			for _, ck := range c {
				if ck.Name == p.Cfg.TokenCookie {
					token = ck.Value
				}
			}
		}
	}
	if token == "" {
		if p.Anon != nil {
			return p.Anon, time.Time{}, nil
		}
		return nil, time.Time{}, auth.ErrNoToken
	}
	return p.Verify(token)
}

// Verify checks token without waiting on the network: a token whose key
// the node has not fetched yet fails with a *KeyPendingError.
func (p *Policy) Verify(token string) (*Grants, time.Time, error) {
	cl, err := p.JWT.VerifyCached(token)
	if errors.Is(err, auth.ErrKeyPending) {
		return nil, time.Time{}, &KeyPendingError{Token: token, err: err}
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	return &Grants{Subs: cl.Subs, Pubs: cl.Pubs, User: cl.Subject}, cl.Expires, nil
}

// KeyPendingError carries a token whose signing key must be fetched before
// it can be checked.
type KeyPendingError struct {
	Token string
	err   error
}

func (e *KeyPendingError) Error() string { return e.err.Error() }
func (e *KeyPendingError) Unwrap() error { return e.err }

// CloseRefusals reports whether a handshake's query asks for refusals as
// close codes after the upgrade (refuse=close): a browser cannot read a
// refused handshake's status, only 1006.
func CloseRefusals(query string) bool {
	if !strings.Contains(query, "refuse=") {
		return false
	}
	q, _ := url.ParseQuery(query)
	return q.Get("refuse") == "close"
}

// TruncReason keeps a close reason within the 123 bytes a close frame
// allows.
func TruncReason(r string) string {
	if len(r) > 123 {
		return r[:123]
	}
	return r
}

// ReservedPrefix starts the topics of the nodes' own control plane, which
// no client may use.
const ReservedPrefix = "_subsock."

// ErrReserved refuses a client topic in the nodes' namespace.
var ErrReserved = &proto.Error{Code: proto.CodeInvalidTopic, Msg: "topics under " + ReservedPrefix + " are reserved for the nodes"}

// Reserved reports whether topic is in the nodes' namespace.
func Reserved(topic string) bool { return strings.HasPrefix(topic, ReservedPrefix) }

// Authorize checks one topic against a connection's grants: nil, or the
// err to answer.
func Authorize(gr *Grants, topic string, pub bool) *proto.Error {
	if Reserved(topic) {
		return ErrReserved
	}
	if gr.Allows(topic, pub) {
		return nil
	}
	verb := "subscribe to"
	if pub {
		verb = "publish to"
	}
	return &proto.Error{Code: proto.CodeForbidden, Msg: "not allowed to " + verb + " " + topic}
}

// NewLimiter is a connection's publish limiter (nil: unlimited).
func (p *Policy) NewLimiter() *rate.Limiter {
	return limit.NewPublishLimiter(p.Cfg.PublishRate, p.Cfg.PublishBurst)
}

// AllowPublish takes one publish from a connection's limiter, or answers
// rate_limited.
func (p *Policy) AllowPublish(l *rate.Limiter) *proto.Error {
	if limit.Allow(l) {
		return nil
	}
	return &proto.Error{Code: proto.CodeRateLimited, Msg: fmt.Sprintf("over %g publishes per second", p.Cfg.PublishRate)}
}

// CheckAPIKey reports whether an API request carries the key (always,
// when none is set).
func (p *Policy) CheckAPIKey(h http.Header) bool { return auth.CheckAPIKey(h, p.Cfg.APIKey) }
