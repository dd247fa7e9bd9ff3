package poller

import "errors"

var (
	// ErrClosed is returned by Enqueue once a connection is closing or closed.
	ErrClosed = errors.New("poller: connection closed")
	// ErrOverflow is returned by the Enqueue that overflowed the queue; the
	// connection is then aborted. Later calls return ErrClosed.
	ErrOverflow = errors.New("poller: outbound queue overflow")
	// ErrConfigConflict is returned by New when netpoll was already set up
	// by an earlier Server with other Loops or ReadBufferSize: netpoll's
	// settings are process-wide and read once.
	ErrConfigConflict = errors.New("poller: netpoll already configured with other loops or read buffer size")
	// ErrServerClosed is returned by Serve after Shutdown.
	ErrServerClosed = errors.New("poller: server closed")
)
