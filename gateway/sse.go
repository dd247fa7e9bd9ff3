package gateway

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/subsock/subsock/gateway/httpwire"
	"github.com/subsock/subsock/gateway/hub"
	"github.com/subsock/subsock/gateway/policy"
	"github.com/subsock/subsock/proto"
)

// Server-Sent Events: GET /sse?topics=a,b is a receive-only subscription
// on the same loops, queues and writers as a WebSocket. The request is a
// sub whose "ack" is the 200 and its event-stream head: it is answered
// only once the topics are live upstream (an error before that is an HTTP
// status, as EventSource expects), then every message is one event, built
// once per message (Hub.Deliver's third wire) and shared by every stream:
//
//	id: EPOCH:OFFSET               (history topics only)
//	data: {"topic":"a","offset":42,"data":...}
//
// in HTTP/1.1 chunked framing, so proxies and curl see a well-formed body.
// Heartbeats are SSE comments; a drain ends with "event: close" and the
// last chunk; a slow consumer is cut at -max-pending like any connection.

// sseState is what an SSE stream keeps beyond a session.
type sseState struct {
	origin string // echoed in Access-Control-Allow-Origin; "" when none
	// started is set once the head is queued: heartbeats and closing
	// chunks before it would corrupt the response.
	started atomic.Bool
}

// streaming reports whether s is an SSE stream whose head is out.
func streaming(s *session) bool { return s.sse != nil && s.m.Live.Load() }

// finalFor picks what a closing connection is sent last: the WebSocket
// close frame, the SSE stream's closing chunk, or nothing for a stream
// whose head is not out (a chunk before it would garble the response) and
// for an HTTP connection.
func finalFor(s *session, wsFrame, sseFinal []byte) []byte {
	switch s.mode.Load() {
	case modeWS:
		return wsFrame
	case modeSSE:
		if streaming(s) {
			return sseFinal
		}
	}
	return nil
}

// Chunks that never change.
var (
	sseHeartbeat  = hub.SSEChunk([]byte(": ping\n\n"))
	sseCloseFinal = append(hub.SSEChunk([]byte("event: close\ndata: server shutting down\n\n")), "0\r\n\r\n"...)
	sseSlowFinal  = append(hub.SSEChunk([]byte("event: close\ndata: slow consumer\n\n")), "0\r\n\r\n"...)
	// A stream whose token expired ends cleanly; the page reconnects with
	// a fresh token (the browser client asks for one).
	sseTokenExpiredFinal = append(hub.SSEChunk([]byte("event: close\ndata: token expired\n\n")), "0\r\n\r\n"...)
)

// isSSEPath reports whether the request line targets /sse.
func isSSEPath(hdr []byte) bool { return httpwire.Targets(hdr, http.MethodGet, "/sse") }

// sseRequest is what a stream's request says, read straight from its
// header bytes: net/http's reader would cost a 4 KiB buffer per stream.
type sseRequest struct {
	query                               string
	host, origin, authz, cookie, lastID string
}

// parseSSERequest reads a GET /sse header block (complete, up to the
// blank line); ok is false when it is malformed.
func parseSSERequest(hdr []byte) (r sseRequest, ok bool) {
	line, rest, found := bytes.Cut(hdr, []byte("\r\n"))
	if !found {
		return r, false
	}
	parts := bytes.Split(line, []byte(" "))
	if len(parts) != 3 || !bytes.HasPrefix(parts[2], []byte("HTTP/1.")) {
		return r, false
	}
	if _, q, has := bytes.Cut(parts[1], []byte("?")); has {
		r.query = string(q)
	}
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(line) == 0 {
			break
		}
		k, v, has := bytes.Cut(line, []byte(":"))
		if !has || len(k) == 0 || bytes.ContainsAny(k, " \t") {
			return r, false
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Host")):
			r.host = string(v)
		case bytes.EqualFold(k, []byte("Origin")):
			r.origin = string(v)
		case bytes.EqualFold(k, []byte("Authorization")):
			r.authz = string(v)
		case bytes.EqualFold(k, []byte("Cookie")):
			if r.cookie != "" {
				r.cookie += "; " // several Cookie lines are one list
			}
			r.cookie += string(v)
		case bytes.EqualFold(k, []byte("Last-Event-ID")):
			r.lastID = string(v)
		}
	}
	return r, true
}

// sseError is a refusal before the stream starts.
type sseError struct {
	status int
	reason string
	header string // extra header lines, each ending in \r\n
}

// openSSE turns an HTTP connection into an SSE stream: origin, token,
// admission, topics, then a sub answered by the stream's head.
func (g *Gateway) openSSE(s *session, hdr []byte) {
	req, ok := parseSSERequest(hdr)
	if !ok {
		g.httpFail(s, http.StatusBadRequest, "malformed request")
		return
	}
	sub, origin, kp, serr := g.checkSSE(s, &req)
	if kp != nil {
		g.suspendHandshake(s, hdr, kp.Token)
		return
	}
	if serr != nil {
		g.upgradeRejects.Add(1)
		g.sseFail(s, serr)
		return
	}
	s.sse = &sseState{origin: origin}
	s.m.CID = g.ctl.newClientID()
	s.m.Wire = hub.WireSSE
	s.conn().SetOverflowFinal(sseSlowFinal)
	s.mode.Store(modeSSE)
	g.sseConns.Add(1)
	s.conn().SetUrgent(false)
	if perr := g.subscribe(s, sub); perr != nil {
		// Checked above; a limit reached meanwhile still gets a status.
		g.sseFail(s, &sseError{status: statusFor(perr.Code), reason: perr.Msg})
	}
}

// checkSSE runs the checks of an upgrade and parses the subscription.
func (g *Gateway) checkSSE(s *session, req *sseRequest) (sub *proto.Request, origin string, kp *policy.KeyPendingError, serr *sseError) {
	origin = req.origin
	gr, exp, ref, kp := g.sec.Identify(g.draining.Load(), policy.Request{Origin: origin, Host: req.host, Query: req.query, Authz: req.authz, Cookie: req.cookie})
	if kp != nil {
		return nil, "", kp, nil
	}
	if ref != nil {
		return nil, "", nil, &sseError{ref.Status, ref.Reason, ref.Header}
	}
	q, err := url.ParseQuery(req.query)
	if err != nil {
		return nil, "", nil, &sseError{status: http.StatusBadRequest, reason: "query: " + err.Error()}
	}
	sub = &proto.Request{Op: proto.OpSub, HasID: true}
	for _, t := range strings.Split(q.Get("topics"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			sub.Topics = append(sub.Topics, t)
		}
	}
	if len(sub.Topics) == 0 {
		return nil, "", nil, &sseError{status: http.StatusBadRequest, reason: "topics is required: /sse?topics=a,b"}
	}
	if n := len(sub.Topics); n > g.cfg.MaxTopicsPerRequest || n > g.cfg.MaxSubsPerConn {
		return nil, "", nil, &sseError{status: http.StatusBadRequest, reason: fmt.Sprintf("%d topics; the limit is %d", n, min(g.cfg.MaxTopicsPerRequest, g.cfg.MaxSubsPerConn))}
	}
	for _, t := range sub.Topics {
		if err := proto.ValidTopic(t); err != nil {
			return nil, "", nil, &sseError{status: http.StatusBadRequest, reason: err.Error()}
		}
		if perr := policy.Authorize(gr, t, false); perr != nil {
			return nil, "", nil, &sseError{status: statusFor(perr.Code), reason: perr.Msg}
		}
	}
	if sub.Since, err = g.sseSince(sub.Topics, q.Get("since"), req.lastID); err != nil {
		return nil, "", nil, &sseError{status: http.StatusBadRequest, reason: err.Error()}
	}
	if v := q.Get("last"); v != "" {
		if sub.Last, err = strconv.ParseUint(v, 10, 64); err != nil {
			return nil, "", nil, &sseError{status: http.StatusBadRequest, reason: "last must be a non-negative integer"}
		}
	}
	if ref := g.sec.Admit(time.Now()); ref != nil {
		return nil, "", nil, &sseError{ref.Status, ref.Reason, ref.Header}
	}
	s.auth = g.authStateFor(s, gr, exp)
	return sub, origin, nil, nil
}

// sseSince reads since=TOPIC:EPOCH:OFFSET,... and the browser's
// Last-Event-ID (EPOCH:OFFSET, the id of the last event it got). A browser
// reconnects with the same URL, so the id, which is newer, wins over the
// URL's since for the stream's history topic. With several history topics
// the id does not say where the others were: they are answered lost
// rather than resumed from a stale place.
func (g *Gateway) sseSince(topics []string, param, lastID string) (map[string]proto.Position, error) {
	in := func(t string) bool {
		for _, x := range topics {
			if x == t {
				return true
			}
		}
		return false
	}
	var since map[string]proto.Position
	for _, item := range strings.Split(param, ",") {
		if item == "" {
			continue
		}
		// The topic may hold ':'; the epoch and the offset do not.
		j := strings.LastIndexByte(item, ':')
		i := -1
		if j > 0 {
			i = strings.LastIndexByte(item[:j], ':')
		}
		if i <= 0 {
			return nil, fmt.Errorf("since item %q: want TOPIC:EPOCH:OFFSET", item)
		}
		off, err := strconv.ParseUint(item[j+1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("since item %q: the offset must be a non-negative integer", item)
		}
		t := item[:i]
		if !in(t) {
			return nil, fmt.Errorf("since names topic %q which is not in topics", t)
		}
		if since == nil {
			since = make(map[string]proto.Position)
		}
		since[t] = proto.Position{Offset: off, Epoch: item[i+1 : j]}
	}
	if lastID == "" {
		return since, nil
	}
	var hist []string
	for _, t := range topics {
		if _, ok := g.hist.policy(t); ok {
			hist = append(hist, t)
		}
	}
	if len(hist) == 0 {
		return since, nil
	}
	if since == nil {
		since = make(map[string]proto.Position)
	}
	j := strings.LastIndexByte(lastID, ':')
	off, err := strconv.ParseUint(lastID[j+1:], 10, 64)
	if len(hist) > 1 || j <= 0 || err != nil {
		// No epoch has this name: each topic is answered lost.
		for _, t := range hist {
			since[t] = proto.Position{Epoch: "\x00unknown"}
		}
		return since, nil
	}
	since[hist[0]] = proto.Position{Offset: off, Epoch: lastID[:j]}
	return since, nil
}

// statusFor maps a refused sub to the status an SSE request gets.
func statusFor(c proto.Code) int {
	switch c {
	case proto.CodeForbidden:
		return http.StatusForbidden
	case proto.CodeUnavailable:
		return http.StatusServiceUnavailable
	case proto.CodeTooManySubscriptions, proto.CodeTooLarge, proto.CodeInvalidTopic, proto.CodeBadRequest:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// sseFail answers an SSE request that will not start, and closes.
func (g *Gateway) sseFail(s *session, e *sseError) {
	s.done = true
	g.send(s, sseErrorResponse(e), true)
}

func sseErrorResponse(e *sseError) []byte {
	body := string(httpwire.ErrorJSON(httpwire.CodeForStatus(e.status), e.reason))
	return []byte("HTTP/1.1 " + strconv.Itoa(e.status) + " " + http.StatusText(e.status) + "\r\n" +
		"Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		e.header + "Connection: close\r\n\r\n" + body)
}

// sseHead is the answer that starts a stream: the 200, its headers, and
// a retry hint spread over 1–3 s so a restarted node's browsers do not all
// come back in the same instant (EventSource adds no jitter of its own).
func sseHead(st *sseState) []byte {
	const head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
		"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n"
	b := make([]byte, 0, len(head)+160)
	b = append(b, head...)
	if st != nil && st.origin != "" {
		b = append(b, "Access-Control-Allow-Origin: "...)
		b = append(b, st.origin...)
		b = append(b, "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"...)
	}
	// The retry chunk: "retry: NNNN\n\n" is 13 bytes (d in hex).
	b = append(b, "\r\nd\r\nretry: "...)
	b = strconv.AppendInt(b, int64(1000+rand.IntN(2000)), 10)
	return append(b, "\n\n\r\n"...)
}

// sseAnswer is a stream's answer to its sub: the head, the replayed
// events, and a lost event for each topic that asked to recover and could
// not.
func sseAnswer(s *session, replay []byte, positions []proto.TopicPosition) []byte {
	out := sseHead(s.sse)
	var lost []byte
	for _, p := range positions {
		if p.Asked && !p.Recovered {
			lost = hub.AppendLost(lost, p.Topic, p.Offset, p.Epoch)
		}
	}
	if len(lost) > 0 {
		out = append(out, hub.SSEChunk(lost)...)
	}
	return append(out, replay...)
}
