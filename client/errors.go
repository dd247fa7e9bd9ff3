package client

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/subsock/subsock/proto"
)

var (
	// ErrClosed is returned by calls on a Conn (or Sockets) after Close.
	ErrClosed = errors.New("client: closed")
	// ErrConnectionLost means the connection dropped before the server
	// answered; a publish may or may not have been applied.
	ErrConnectionLost = errors.New("client: connection lost before the reply")
	// ErrBufferFull is reported through Options.OnError each time the All
	// policy drops a message because the handler is Buffer messages behind.
	// On a history topic the message is not lost: the Conn recovers it
	// once the handler has caught up (see Recovery).
	ErrBufferFull = errors.New("client: delivery buffer full, message dropped")
	// ErrServerSilent ends a connection on which nothing arrived within
	// PingTimeout of an app-level ping.
	ErrServerSilent = errors.New("client: server silent past the ping timeout")
	// ErrWriteTimeout ends a connection on which writes made no progress
	// for WriteTimeout.
	ErrWriteTimeout = errors.New("client: write stalled past the write timeout")
	// ErrBadURL is returned by Dial for a URL that is not ws://, wss://,
	// http:// or https://.
	ErrBadURL = errors.New("client: bad URL")
	// ErrNoToken is returned by Refresh when Options.Token is nil.
	ErrNoToken = errors.New("client: no token provider")
	// ErrSubprotocol means the server did not accept the requested codec.
	ErrSubprotocol = errors.New("client: server refused the subprotocol")
	// ErrNilHandler is returned by Subscribe without a handler.
	ErrNilHandler = errors.New("client: nil handler")
	// ErrNoSockets is returned by Open for an empty declaration.
	ErrNoSockets = errors.New("client: no sockets declared")
	// ErrUndecodable is reported through OnError for a server message the
	// codec cannot read; the connection stays up.
	ErrUndecodable = errors.New("client: undecodable server message")
	// ErrDisconnected ends a Conn the server disconnected (close code 4003)
	// because a backend asked it to (POST /api/disconnect): the Conn does
	// not reconnect. Conn.Err, OnDisconnect and every later call return an
	// error matching it, which also wraps the *CloseError.
	ErrDisconnected = errors.New("client: disconnected by the server")
	// ErrUnsubscribed matches an *UnsubscribedError.
	ErrUnsubscribed = errors.New("client: subscription removed by the server")
	// ErrUnauthorized matches a *HandshakeError with status 401: no token,
	// or one the server does not accept (invalid, expired). The Conn tries
	// again only with another token from Options.Token; otherwise Dial
	// returns the error, or a connected Conn stops with it (see Conn.Err).
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrForbidden matches a *HandshakeError with status 403: the server
	// refuses the connection itself (its Origin is not allowed). It is
	// treated as ErrUnauthorized is, and in addition the Conn makes at most
	// one more attempt within 10s of a 403.
	ErrForbidden = errors.New("client: forbidden")

	// errSameToken: Options.Token gave the token the server just refused.
	errSameToken = errors.New("client: the token provider gave the refused token again")
)

// UnsubscribedError is reported through OnError when the server removed a
// subscription because a backend asked it to (POST /api/unsubscribe). The
// Conn has dropped the topic: it is not renewed on reconnect, and its
// queued messages are discarded. Subscribing again is the application's
// call (the server may well refuse it).
type UnsubscribedError struct {
	Topic string
}

func (e *UnsubscribedError) Error() string {
	return "client: server removed the subscription to " + strconv.Quote(e.Topic)
}

// Is makes errors.Is(err, ErrUnsubscribed) hold.
func (e *UnsubscribedError) Is(target error) bool { return target == ErrUnsubscribed }

// ServerError is the server's refusal of one request (an err reply).
type ServerError struct {
	Op    string     // the request: "sub", "unsub", "pub", "auth", "info", "presence", "presence_stats"; empty when unsolicited
	Topic string     // the topic of a pub or a presence query, or of a sub retried alone after a reconnect
	Code  proto.Code // machine-readable reason, e.g. proto.CodeInvalidTopic
	Msg   string     // human-readable detail from the server
}

func (e *ServerError) Error() string {
	op := e.Op
	if op == "" {
		op = "request"
	}
	s := "client: server refused " + op
	if e.Topic != "" {
		s += " " + strconv.Quote(e.Topic)
	}
	return s + ": " + string(e.Code) + ": " + e.Msg
}

// HandshakeError is an HTTP refusal of the WebSocket upgrade. One with
// status 401 matches ErrUnauthorized, one with 403 ErrForbidden.
type HandshakeError struct {
	Status int // HTTP status, e.g. 503 at a server limit, 401 for a bad token
	// RetryAfter is the server's Retry-After hint (0 when absent); the
	// next attempt waits at least this long.
	RetryAfter time.Duration
	Reason     string // the start of the response body
}

func (e *HandshakeError) Error() string {
	s := fmt.Sprintf("client: handshake refused: %d %s", e.Status, http.StatusText(e.Status))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.RetryAfter > 0 {
		s += " (retry after " + e.RetryAfter.String() + ")"
	}
	return s
}

// Is makes errors.Is(err, ErrUnauthorized) hold for a 401 and
// errors.Is(err, ErrForbidden) for a 403.
func (e *HandshakeError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	}
	return false
}

// temporary reports whether another attempt may succeed without a change
// on the client side: overload, timeouts and server faults.
func (e *HandshakeError) temporary() bool {
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// CloseError is how the server closed a connection: the WebSocket close
// code and reason (1001 shutdown, 1013 slow consumer, 4000 heartbeat
// timeout, 4001 token expired, ...). OnDisconnect receives it.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("client: closed by server: %d %s", e.Code, e.Reason)
}

// RetryError is what OnError (a failed attempt) and OnDisconnect (a
// dropped connection) receive when the Conn is about to wait before its
// next connection attempt. errors.Is and errors.As see through it to Err.
type RetryError struct {
	Err      error
	Wait     time.Duration // until the next attempt
	Failures int           // failures counted into Wait (a connection shorter than Backoff.Max does not reset them)
}

func (e *RetryError) Error() string {
	return e.Err.Error() + " (next attempt in " + e.Wait.Round(time.Millisecond).String() + ")"
}

func (e *RetryError) Unwrap() error { return e.Err }
