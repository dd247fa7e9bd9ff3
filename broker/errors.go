package broker

import "errors"

var (
	// ErrUnavailable reports that the backbone cannot be reached; the error
	// returned wraps it together with the cause.
	ErrUnavailable = errors.New("broker: backbone unavailable")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("broker: closed")
	// ErrBadURL reports a URL that Open does not understand.
	ErrBadURL = errors.New("broker: bad URL")
	// ErrBadTopic reports a topic that the backbone cannot carry as is
	// (NATS: empty, whitespace, an empty token, or a wildcard token).
	ErrBadTopic = errors.New("broker: topic not valid on this backbone")
	// ErrNilHandler is returned by Open without a Handler.
	ErrNilHandler = errors.New("broker: nil handler")
)
