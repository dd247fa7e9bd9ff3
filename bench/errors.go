package bench

import "errors"

var (
	// ErrUnknownScenario is returned for a -scenario name that is not defined.
	ErrUnknownScenario = errors.New("bench: unknown scenario")
	// ErrBadParams is returned when parameters contradict each other or
	// exceed the limits of the box.
	ErrBadParams = errors.New("bench: bad parameters")
	// ErrNotLoopback is returned for a target outside 127.0.0.0/8 or ::1;
	// the harness only ever loads this machine.
	ErrNotLoopback = errors.New("bench: target is not a loopback address")
	// ErrMalformed is returned by the reply and metrics parsers for input
	// they cannot read.
	ErrMalformed = errors.New("bench: malformed input")
	// ErrWorker is returned when a worker process fails or answers out of turn.
	ErrWorker = errors.New("bench: worker failed")
	// ErrNode is returned when the node cannot be started or stops early.
	ErrNode = errors.New("bench: node failed")
)
