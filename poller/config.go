package poller

import (
	"runtime"
	"time"

	"go.uber.org/zap"
)

// Config tunes the poller. The zero value is usable; each zero field takes
// the default documented on it.
type Config struct {
	// Loops is the number of netpoll event loops (epoll instances).
	// Default: runtime.NumCPU(). netpoll's own default is 1 on small hosts.
	Loops int
	// ReadBufferSize is the input buffer netpoll keeps per connection; it is
	// the first cost of an idle connection. Larger messages still work,
	// netpoll grows the buffer while they are read. Default: 256 (a
	// subscription request fits; 512 costs ~0.3 KiB more per idle connection).
	ReadBufferSize int
	// Writers is the number of goroutines that write queued frames.
	// Default: Loops.
	Writers int
	// MaxPending caps the bytes queued for one connection; a connection that
	// passes it is aborted (see OverflowFinal). Default: 1 MiB.
	MaxPending int
	// MaxWriteBytes caps what one writev sends, so a connection with a deep
	// queue does not monopolise its writer. Default: 256 KiB.
	MaxWriteBytes int
	// SendBuffer, when positive, sets SO_SNDBUF on every accepted socket.
	// The kernel's autotuning (0, the default) lets a stalled reader pin up
	// to tcp_wmem's maximum (4 MiB) of kernel memory; a small buffer bounds
	// that, at the cost of more writev calls for fast readers of large
	// messages.
	SendBuffer int
	// RecvBuffer, when positive, sets SO_RCVBUF on the listener, inherited
	// by every accepted socket. It bounds how much a peer can have in
	// flight towards the node, and so how much netpoll (which reads every
	// readable socket, with no way to pause one) takes from a flooding
	// peer before its handler can cut it off. Default: 0 (the kernel's
	// autotuning, up to tcp_rmem's maximum, 6 MiB).
	RecvBuffer int
	// OverflowFinal is written, best effort, to a connection whose queue
	// overflowed, just before it is closed (a WebSocket close frame).
	OverflowFinal []byte
	// Logger receives netpoll's own log lines, a warning when the linked
	// netpoll version was not verified (see compat.go), and a failure of
	// the writable-socket waiter. Default: zap.NewNop().
	Logger *zap.Logger
	// LingerTimeout bounds how long a gracefully closed connection waits for
	// the peer to close its side after our final bytes. Default: 2s.
	LingerTimeout time.Duration
}

// WithDefaults returns c with each zero field set to the default documented
// on it: the configuration New runs with. Callers that show defaults (the
// command's flags) take them from here, so each is written once.
func (c Config) WithDefaults() Config { return c.withDefaults() }

func (c Config) withDefaults() Config {
	if c.Loops <= 0 {
		c.Loops = runtime.NumCPU()
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = 256
	}
	if c.Writers <= 0 {
		c.Writers = c.Loops
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 1 << 20
	}
	if c.MaxWriteBytes <= 0 {
		c.MaxWriteBytes = 256 << 10
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.LingerTimeout <= 0 {
		c.LingerTimeout = 2 * time.Second
	}
	return c
}
