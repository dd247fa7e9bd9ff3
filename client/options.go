package client

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/subsock/subsock/proto"
)

// Policy is how a Conn hands messages to its handlers when they fall
// behind the network.
type Policy uint8

const (
	// All delivers every message in order through a queue of
	// Options.Buffer messages; a message that finds the queue full is
	// dropped, counted in Stats.Dropped and reported to Options.OnError
	// with ErrBufferFull. For notifications that must each be seen.
	All Policy = iota
	// Latest keeps, per topic, only the newest message the handler has not
	// seen yet: a slow handler skips straight to the current value, and
	// Stats.Coalesced counts the skipped ones. For prices and gauges.
	Latest
)

func (p Policy) String() string {
	switch p {
	case All:
		return "all"
	case Latest:
		return "latest"
	}
	return "policy(?)"
}

// Backoff bounds the wait between connection attempts. The n-th consecutive
// failure waits a uniformly random time in [0, min(Max, Min·2^n)) ("full
// jitter"); server hints add to it (see the package doc).
type Backoff struct {
	Min time.Duration // default 100ms
	Max time.Duration // default 30s; never below Min
}

// Options configures one connection. The zero value is usable: JSON, no
// token, policy All with a 256-message buffer. Every field is per socket:
// Dial takes one Options, and Open one per socket, embedded in SocketConfig.
// A zero field means the default given beside it, which Dial fills in.
type Options struct {
	// Codec picks the subprotocol: proto.JSON (default) or proto.Msgpack.
	Codec proto.Codec
	// Token, when set, is called before every connection attempt; its
	// result is sent as "Authorization: Bearer <token>". Refresh also
	// calls it. An error counts as a failed attempt. After a 401 or 403
	// the Conn dials again only if it gives a token other than the one
	// refused; without it, such a refusal stops the Conn (see Conn.Err).
	Token func(ctx context.Context) (string, error)
	// Header is added to every handshake request.
	Header http.Header
	// HTTPClient performs the handshake. Default: http.DefaultClient.
	HTTPClient *http.Client
	// Backoff bounds the waits between connection attempts.
	Backoff Backoff
	// DialTimeout bounds one handshake. Default: 10s.
	DialTimeout time.Duration
	// WriteTimeout: when writes are waiting and none has completed for
	// this long, the connection is ended (ErrWriteTimeout) and replaced.
	// Default: 10s.
	WriteTimeout time.Duration
	// PingInterval is how often an app-level {"op":"ping"} is sent.
	// Default: 20s; negative turns the client-side check off.
	PingInterval time.Duration
	// PingTimeout: when nothing at all arrives within this long of a
	// ping, the server is taken as gone and the client reconnects.
	// Default: 10s.
	PingTimeout time.Duration
	// Policy is the delivery policy (All by default).
	Policy Policy
	// Buffer is the All policy's queue length. Default: 256.
	Buffer int
	// AckPublish makes every Publish wait for the server's ack (Publish
	// also waits when its ctx has a deadline).
	AckPublish bool
	// MaxMessage caps one inbound message. Default: 1 MiB.
	MaxMessage int64
	// OnError receives what no call can return: dropped messages
	// (ErrBufferFull), failed connection attempts (a *RetryError wrapping
	// the failure, e.g. a *HandshakeError), server errors without a
	// request id, resubscriptions the server refused, no-echo publishes
	// refused while nobody waited, subscriptions the server removed
	// (an *UnsubscribedError), and the refusal (ErrUnauthorized,
	// ErrForbidden, not wrapped in a *RetryError) that stopped the Conn.
	OnError func(error)
	// OnConnect is called each time a connection is ready: the handshake
	// is done and every subscription has been renewed (or its refusal
	// reported to OnError).
	OnConnect func()
	// OnDisconnect is called with the reason each time a connection that
	// completed its handshake ends: a *RetryError wrapping the cause (a
	// *CloseError when the server closed it, ErrServerSilent, ...) with
	// the wait before the next attempt; ErrClosed after Close; or, when the
	// server disconnected the client (4003), an error matching
	// ErrDisconnected, after which the Conn stops (see Conn.Err).
	OnDisconnect func(err error)
	// OnRecover is called once per history topic for each attempt to get
	// back what it missed: the resubscription after a reconnect, the
	// recovery of a gap, and a message telling that the stream lost its
	// past (Recovered false). An attempt whose replay did not all fit in
	// the delivery buffer goes on once the handler has caught up, and is
	// reported when complete. It is called from the reader goroutine, so
	// it must return quickly; the messages recovered are queued for the
	// handler by then.
	OnRecover func(r Recovery)
	// Logger receives connection events. Default: none.
	Logger *zap.Logger
}

const (
	defaultBackoffMin   = 100 * time.Millisecond
	defaultBackoffMax   = 30 * time.Second
	defaultDialTimeout  = 10 * time.Second
	defaultWriteTimeout = 10 * time.Second
	defaultPingInterval = 20 * time.Second
	defaultPingTimeout  = 10 * time.Second
	defaultBuffer       = 256
	defaultMaxMessage   = 1 << 20
)

func (o Options) withDefaults() Options {
	if o.Codec == nil {
		o.Codec = proto.JSON
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Backoff.Min <= 0 {
		o.Backoff.Min = defaultBackoffMin
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = defaultBackoffMax
	}
	if o.Backoff.Max < o.Backoff.Min {
		o.Backoff.Max = o.Backoff.Min
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.PingInterval == 0 {
		o.PingInterval = defaultPingInterval
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = defaultPingTimeout
	}
	if o.Buffer <= 0 {
		o.Buffer = defaultBuffer
	}
	if o.MaxMessage <= 0 {
		o.MaxMessage = defaultMaxMessage
	}
	if o.OnError == nil {
		o.OnError = func(error) {}
	}
	if o.OnConnect == nil {
		o.OnConnect = func() {}
	}
	if o.OnDisconnect == nil {
		o.OnDisconnect = func(error) {}
	}
	if o.OnRecover == nil {
		o.OnRecover = func(Recovery) {}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}
