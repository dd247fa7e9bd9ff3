package kafka

import "errors"

// Configuration errors, returned by New.
var (
	ErrNoPublisher    = errors.New("kafka: nil Publisher")
	ErrNoBrokers      = errors.New("kafka: no brokers")
	ErrNoTopics       = errors.New("kafka: no topics to consume")
	ErrDeadLetterLoop = errors.New("kafka: the dead-letter topic is also consumed")
	ErrBadTemplate    = errors.New("kafka: bad topic template")
	ErrBadSASL        = errors.New("kafka: bad SASL mechanism")
	ErrBadTLS         = errors.New("kafka: bad TLS configuration")
)

// Lifecycle errors.
var (
	// ErrClosed is returned by Run after Close.
	ErrClosed = errors.New("kafka: consumer closed")
	// ErrRunning is returned by a second Run.
	ErrRunning = errors.New("kafka: consumer already running")
)

// Readiness, as Ready reports it.
var (
	ErrNotRunning  = errors.New("kafka: not running")
	ErrUnreachable = errors.New("kafka: brokers unreachable")
	// ErrPaused: partitions wait for the backbone to take their next record.
	ErrPaused = errors.New("kafka: paused, the backbone is unavailable")
)

// Record errors: why a record was skipped (or dead-lettered).
var (
	// ErrNoTopic: the record has no topic header and the mapping needs a
	// key it does not have (or there is no template and no key).
	ErrNoTopic = errors.New("kafka: record maps to no topic")
	// ErrContentType: a content-type header other than JSON or MessagePack.
	ErrContentType = errors.New("kafka: unsupported content-type")
	// ErrTooLarge: a value over MaxValue.
	ErrTooLarge = errors.New("kafka: record value too large")
)
