package poller

import "errors"

var (
	// ErrClosed is returned by Enqueue once a connection is closing or closed.
	ErrClosed = errors.New("poller: connection closed")
	// ErrOverflow is returned by the Enqueue that overflowed the queue; the
	// connection is then aborted. Later calls return ErrClosed.
	ErrOverflow = errors.New("poller: outbound queue overflow")
	// ErrServerClosed is returned by Serve after Shutdown.
	ErrServerClosed = errors.New("poller: server closed")
)
