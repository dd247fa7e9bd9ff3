package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gobwas/ws"

	"github.com/subsock/subsock/gateway/httpwire"
	"github.com/subsock/subsock/gateway/policy"
	"github.com/subsock/subsock/proto"
)

// handleHTTP serves one HTTP/1.1 request from the front of b, or returns 0
// while the request is incomplete. Requests are served in order on the
// connection (pipelining works); /ws upgrades it to WebSocket, /sse turns
// it into an event stream.
func (g *Gateway) handleHTTP(s *session, b []byte) int {
	hdr, err := httpwire.Head(b, g.cfg.MaxHeaderBytes)
	if err != nil {
		g.httpFail(s, http.StatusRequestHeaderFieldsTooLarge, err.Error())
		return len(b)
	}
	if hdr == nil {
		return 0
	}
	if httpwire.Targets(hdr, "", "/ws") {
		g.upgrade(s, hdr)
		return len(hdr)
	}
	if isSSEPath(hdr) {
		g.openSSE(s, hdr)
		return len(b) // a stream has no further requests; input is dropped
	}
	req, total, err := httpwire.ReadRequest(hdr, b, g.cfg.MaxMessage)
	var ref *httpwire.Refusal
	if errors.As(err, &ref) {
		g.httpFail(s, ref.Status, ref.Reason)
		return len(b)
	}
	if req == nil {
		return 0
	}
	req.RemoteAddr = s.conn().RemoteAddr()
	rec := httpwire.NewRecorder()
	g.api.ServeHTTP(rec, req)
	keep := httpwire.KeepAlive(req) && !g.draining.Load()
	if !keep {
		s.done = true
	}
	if work := rec.Later; work != nil {
		answer := g.deferReply(s, !keep)
		work(func(write func(http.ResponseWriter)) {
			ans := httpwire.NewRecorder()
			write(ans)
			answer(ans.Response(keep, false))
		})
		return total
	}
	g.send(s, rec.Response(keep, req.Method == http.MethodHead), !keep)
	return total
}

// httpFail answers with status and reason, then closes the connection.
func (g *Gateway) httpFail(s *session, status int, reason string) {
	rec := httpwire.NewRecorder()
	httpwire.APIError(rec, status, reason)
	s.done = true
	g.send(s, rec.Response(false, false), true)
}

// upgrade performs the WebSocket handshake with gobwas/ws over exactly the
// header bytes, so nothing after them is read by mistake.
func (g *Gateway) upgrade(s *session, hdr []byte) {
	var out bytes.Buffer
	var hc handshakeChecks
	u := ws.Upgrader{
		Protocol: func(p []byte) bool {
			_, ok := proto.ForSubprotocol(string(p))
			return ok
		},
		OnRequest: func(uri []byte) error { return hc.onRequest(uri) },
		OnHost:    func(h []byte) error { hc.host = string(h); return nil },
		OnHeader:  func(k, v []byte) error { return hc.onHeader(k, v) },
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			return g.beforeUpgrade(s, &hc)
		},
	}
	hs, err := u.Upgrade(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(hdr), &out})
	var kp *policy.KeyPendingError
	if errors.As(err, &kp) {
		g.suspendHandshake(s, hdr, kp.Token)
		return
	}
	if err != nil {
		g.upgradeRejects.Add(1)
		s.done = true
		g.send(s, out.Bytes(), true)
		return
	}
	if hc.closeWith != nil {
		// Refused, and told so in a way a browser can read: the 101,
		// then a close frame with the code and the reason.
		g.upgradeRejects.Add(1)
		s.done = true
		g.send(s, append(out.Bytes(), hc.closeWith...), true)
		return
	}
	codec := uint8(0)
	if c, ok := proto.ForSubprotocol(hs.Protocol); ok && c.Format() == proto.FormatMsgpack {
		codec = 1
	}
	s.m.Wire = codec
	s.m.CID = g.ctl.newClientID()
	s.mode.Store(modeWS)
	g.wsConns.Add(1)
	g.send(s, out.Bytes(), false)
	s.conn().SetUrgent(false) // the 101 went ahead; the frames take their turn
}

// suspendHandshake parks an upgrade whose token names a signing key the
// node has not fetched yet, instead of fetching it in the handler: the
// request is kept, later input waits unprocessed in s.in (bounded by
// MaxInputBacklog, and by RequestTimeout like any unfinished request), and
// the handshake runs again, answered 101 or 401, once the JWKS refresh
// returns.
func (g *Gateway) suspendHandshake(s *session, hdr []byte, token string) {
	s.hold = append([]byte(nil), hdr...)
	s.suspended = true
	g.keyWaits.Add(1)
	g.sec.JWT.AwaitKeys(token, g.cfg.RequestTimeout, func() { g.resumeHandshake(s) })
}

// resumeHandshake runs on the JWKS refresh goroutine; s.proc keeps it
// apart from OnData.
func (g *Gateway) resumeHandshake(s *session) {
	s.proc.Lock()
	defer s.proc.Unlock()
	if !s.suspended || s.done || s.conn().Closing() {
		return
	}
	hdr := s.hold
	s.hold, s.suspended = nil, false
	if isSSEPath(hdr) {
		g.openSSE(s, hdr)
		return
	}
	g.upgrade(s, hdr)
	if s.suspended || s.done || len(s.in) == 0 {
		g.trackPartial(s, true, false)
		return
	}
	// Frames that arrived while the handshake waited.
	used := g.process(s, s.in)
	g.keepRest(s, s.in, used, false)
	g.trackPartial(s, used > 0, false)
}

// handshakeChecks collects what the upgrade request carries for the
// admission and auth checks made before the 101 is sent.
type handshakeChecks struct {
	query  string
	host   string
	origin string
	authz  string
	cookie string
	// closeWith, when set, is a refusal to send as a close frame right
	// after the upgrade (the client asked: refuse=close).
	closeWith []byte
}

// request is what the policy judges of the handshake.
func (h *handshakeChecks) request() policy.Request {
	return policy.Request{Origin: h.origin, Host: h.host, Query: h.query, Authz: h.authz, Cookie: h.cookie}
}

func (h *handshakeChecks) onRequest(uri []byte) error {
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		h.query = string(uri[i+1:])
	}
	return nil
}

func (h *handshakeChecks) onHeader(k, v []byte) error {
	switch {
	case strings.EqualFold(string(k), "Origin"):
		h.origin = string(v)
	case strings.EqualFold(string(k), "Authorization"):
		h.authz = string(v)
	case strings.EqualFold(string(k), "Cookie"):
		h.cookie = string(v)
	}
	return nil
}
