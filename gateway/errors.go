package gateway

import "errors"

var (
	// ErrShuttingDown is returned by Serve once Shutdown has begun.
	ErrShuttingDown = errors.New("gateway: shutting down")
	// ErrDrainTimeout is returned by Shutdown when connections were still
	// open at the drain deadline (they are then closed abruptly).
	ErrDrainTimeout = errors.New("gateway: drain timeout")
)
