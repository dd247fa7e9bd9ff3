package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gobwas/ws"

	"github.com/subsock/subsock/proto"
)

var headerEnd = []byte("\r\n\r\n")

// handleHTTP serves one HTTP/1.1 request from the front of b, or returns 0
// while the request is incomplete. Requests are served in order on the
// connection (pipelining works); /ws upgrades it to WebSocket.
func (g *Gateway) handleHTTP(s *session, b []byte) int {
	end := bytes.Index(b, headerEnd)
	if end < 0 || end+len(headerEnd) > g.cfg.MaxHeaderBytes {
		if len(b) > g.cfg.MaxHeaderBytes {
			g.httpFail(s, http.StatusRequestHeaderFieldsTooLarge, "request header block exceeds the limit")
			return len(b)
		}
		return 0
	}
	hdr := b[:end+len(headerEnd)]
	if isUpgradePath(hdr) {
		g.upgrade(s, hdr)
		return len(hdr)
	}
	if isSSEPath(hdr) {
		g.openSSE(s, hdr)
		return len(b) // a stream has no further requests; input is dropped
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(hdr)))
	if err != nil {
		g.httpFail(s, http.StatusBadRequest, "malformed request: "+err.Error())
		return len(b)
	}
	if len(req.TransferEncoding) > 0 {
		g.httpFail(s, http.StatusLengthRequired, "chunked bodies are not accepted; send Content-Length")
		return len(b)
	}
	cl := req.ContentLength
	if cl < 0 {
		cl = 0
	}
	if cl > int64(g.cfg.MaxMessage) {
		g.httpFail(s, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body of %d bytes exceeds the %d-byte limit", cl, g.cfg.MaxMessage))
		return len(b)
	}
	total := len(hdr) + int(cl)
	if len(b) < total {
		return 0
	}
	req.Body = io.NopCloser(bytes.NewReader(b[len(hdr):total]))
	req.RemoteAddr = s.conn().RemoteAddr()
	rec := newRecorder()
	g.api.ServeHTTP(rec, req)
	keep := !req.Close && req.ProtoAtLeast(1, 1) && !g.draining.Load()
	if !keep {
		s.done = true
	}
	if fn := rec.async; fn != nil {
		answer := g.deferReply(s, !keep)
		fn(func(write func(http.ResponseWriter)) {
			ans := newRecorder()
			write(ans)
			answer(ans.response(keep, false))
		})
		return total
	}
	if lj := rec.later; lj != nil {
		respond := func(write func(http.ResponseWriter)) []byte {
			ans := newRecorder()
			write(ans)
			return ans.response(keep, false)
		}
		g.later(s, lj.topic, !keep, func() []byte { return respond(lj.run()) },
			func(err error) []byte { return respond(func(w http.ResponseWriter) { lj.refuse(w, err) }) })
		return total
	}
	g.send(s, rec.response(keep, req.Method == http.MethodHead), !keep)
	return total
}

// isUpgradePath reports whether the request line targets /ws.
func isUpgradePath(hdr []byte) bool {
	sp := bytes.IndexByte(hdr, ' ')
	if sp < 0 {
		return false
	}
	target := hdr[sp+1:]
	if e := bytes.IndexAny(target, " ?\r"); e >= 0 {
		target = target[:e]
	}
	return string(target) == "/ws"
}

// httpFail answers with status and reason, then closes the connection.
func (g *Gateway) httpFail(s *session, status int, reason string) {
	rec := newRecorder()
	apiError(rec, status, reason)
	s.done = true
	g.send(s, rec.response(false, false), true)
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
	var kp *keyPendingError
	if errors.As(err, &kp) {
		g.suspendHandshake(s, hdr, kp.token)
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
	g.sec.jwt.AwaitKeys(token, g.cfg.RequestTimeout, func() { g.resumeHandshake(s) })
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

// recorder is a minimal http.ResponseWriter that buffers one response.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
	later  *laterCall // set by a handler whose answer waits on the broker
	// async, when set, is called once the request's place in the reply
	// order is kept, with the function that writes the answer later.
	async func(respond func(write func(http.ResponseWriter)))
}

// laterCall is a handler's broker call, made on the publisher's worker for
// topic rather than on the handler: run makes it and returns what writes
// the response; refuse writes the response when it cannot be queued.
type laterCall struct {
	topic  string
	run    func() func(http.ResponseWriter)
	refuse func(http.ResponseWriter, error)
}

func newRecorder() *recorder { return &recorder{h: make(http.Header)} }

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}

// response serialises the status line, headers and body. A HEAD answer
// carries the headers a GET would, Content-Length included, and no body
// (RFC 9110 section 9.3.2): a body would be read as the next response.
func (r *recorder) response(keepAlive, head bool) []byte {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var b bytes.Buffer
	b.Grow(128 + r.body.Len())
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(r.status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(r.status))
	b.WriteString("\r\n")
	r.h.Del("Content-Length")
	r.h.Del("Transfer-Encoding")
	if keepAlive {
		r.h.Set("Connection", "keep-alive")
	} else {
		r.h.Set("Connection", "close")
	}
	r.h.Set("Content-Length", strconv.Itoa(r.body.Len()))
	_ = r.h.Write(&b)
	b.WriteString("\r\n")
	if !head {
		b.Write(r.body.Bytes())
	}
	return b.Bytes()
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
