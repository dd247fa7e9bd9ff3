package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/subsock/subsock/proto"
)

// session is one live WebSocket connection. The Conn replaces it with a
// new one after it ends; requests waiting on it fail with
// ErrConnectionLost.
type session struct {
	ws           *websocket.Conn
	typ          websocket.MessageType
	writeTimeout time.Duration
	born         time.Time
	seen         atomic.Int64 // ns since born at the last inbound frame, control frames included
	inflight     atomic.Int32 // writes under way or waiting for the write lock
	written      atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]waiter // requests waiting for ack/err, by id
	ended   bool
	cause   error // why it ended; the first reason wins

	done chan struct{} // closed when the reader has returned
	gone chan struct{} // closed when the Conn has let go of it
}

func newSession(codec proto.Codec, writeTimeout time.Duration) *session {
	s := &session{
		typ:          websocket.MessageText,
		writeTimeout: writeTimeout,
		born:         time.Now(),
		pending:      make(map[uint64]waiter),
		done:         make(chan struct{}),
		gone:         make(chan struct{}),
	}
	if codec.Binary() {
		s.typ = websocket.MessageBinary
	}
	return s
}

func (s *session) touch() { s.seen.Store(int64(time.Since(s.born))) }

// silentSince reports whether nothing arrived after t (ns since born).
func (s *session) silentSince(t int64) bool { return s.seen.Load() < t }

func (s *session) now() int64 { return int64(time.Since(s.born)) }

// dial performs the handshake. A refusal becomes a *HandshakeError.
func dial(ctx context.Context, url string, opts *Options, s *session, token string) error {
	h := opts.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:   opts.HTTPClient,
		HTTPHeader:   h,
		Subprotocols: []string{opts.Codec.Name()},
		OnPingReceived: func(context.Context, []byte) bool {
			s.touch()
			return true
		},
		OnPongReceived: func(context.Context, []byte) { s.touch() },
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return handshakeError(resp)
		}
		return err
	}
	// An empty answer means the server's default, which is JSON.
	if got := ws.Subprotocol(); got != opts.Codec.Name() && (got != "" || opts.Codec.Format() != proto.FormatJSON) {
		_ = ws.CloseNow()
		return fmt.Errorf("%w: asked for %s, got %q", ErrSubprotocol, opts.Codec.Name(), got)
	}
	ws.SetReadLimit(opts.MaxMessage)
	s.ws = ws
	s.touch()
	return nil
}

func handshakeError(resp *http.Response) *HandshakeError {
	he := &HandshakeError{Status: resp.StatusCode}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		he.RetryAfter = d
	}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		he.Reason = strings.TrimSpace(string(b))
	}
	return he
}

// write sends one message; it is safe for concurrent use. It sets no
// timer of its own: the supervisor's watchdog ends a connection whose
// writes stall, which returns every blocked write.
func (s *session) write(b []byte) error {
	s.inflight.Add(1)
	err := s.ws.Write(context.Background(), s.typ, b)
	s.written.Add(1)
	s.inflight.Add(-1)
	return err
}

// writeBounded is write with its own WriteTimeout, for the supervisor
// (which is the watchdog). coder/websocket closes the connection when the
// timeout strikes mid-frame, which is what a stuck connection deserves.
func (s *session) writeBounded(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.writeTimeout)
	defer cancel()
	s.inflight.Add(1)
	err := s.ws.Write(ctx, s.typ, b)
	s.written.Add(1)
	s.inflight.Add(-1)
	if err != nil && ctx.Err() != nil {
		err = ErrWriteTimeout
	}
	return err
}

// waiter is a request waiting for its answer.
type waiter struct {
	ch chan error // capacity 1: the outcome
	// reply, when set, is called with the ack (nil on an err or a lost
	// connection) and the outcome before ch gets it, on the reader
	// goroutine, in wire order. It must return quickly.
	reply func(ack *proto.Reply, err error)
}

// register reserves id for a request; false once the session has ended.
func (s *session) register(id uint64, w waiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.pending[id] = w
	return true
}

// unregister gives up waiting for id; false when it was not waiting (its
// answer came, or the session ended, meanwhile).
func (s *session) unregister(id uint64) bool {
	s.mu.Lock()
	_, ok := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	return ok
}

// complete hands the reply (ack, or err when it is nil) to the request
// with id; false when none waits.
func (s *session) complete(id uint64, ack *proto.Reply, err error) bool {
	s.mu.Lock()
	w, ok := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if !ok {
		return false // its caller gave up waiting
	}
	w.done(ack, err)
	return true
}

func (w waiter) done(ack *proto.Reply, err error) {
	if w.reply != nil {
		w.reply(ack, err)
	}
	w.ch <- err // buffered; each id completes once
}

// kill ends the session with cause (unless it already has one) and drops
// the TCP connection without a close handshake.
func (s *session) kill(cause error) {
	s.setCause(cause)
	_ = s.ws.CloseNow()
}

func (s *session) setCause(err error) {
	s.mu.Lock()
	if s.cause == nil {
		s.cause = err
	}
	s.mu.Unlock()
}

// end marks the session over and fails every waiting request.
func (s *session) end(err error) {
	var wce websocket.CloseError
	if errors.As(err, &wce) {
		err = &CloseError{Code: int(wce.Code), Reason: wce.Reason}
	}
	s.setCause(err)
	s.mu.Lock()
	s.ended = true
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, w := range pending {
		w.done(nil, ErrConnectionLost)
	}
}

func (s *session) isEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

func (s *session) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}
