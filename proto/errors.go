package proto

import (
	"errors"
	"strconv"
)

// Error is a protocol-level rejection of one request: Code and Msg are what
// the err reply carries. ID and HasID are filled whenever the request's id
// could be read, even if the rest of the envelope was bad, so the reply can
// name the request it answers.
type Error struct {
	Code  Code
	Msg   string
	ID    uint64
	HasID bool
}

func (e *Error) Error() string { return "proto: " + string(e.Code) + ": " + e.Msg }

// Sentinel errors for values (ValidData, Convert); the *DataError that wraps
// them says where and why.
var (
	// ErrMalformed: the bytes are not exactly one well-formed value.
	ErrMalformed = errors.New("proto: malformed value")
	// ErrNonStringKey: a MessagePack map has a key that is not a string,
	// which JSON cannot express.
	ErrNonStringKey = errors.New("proto: map key is not a string")
	// ErrUnrepresentable: the value is well formed but has no equivalent in
	// the other format (NaN or infinite floats, numbers beyond float64,
	// MessagePack extension types other than timestamps).
	ErrUnrepresentable = errors.New("proto: value has no equivalent in the other format")
	// ErrTooDeep: arrays and maps nest deeper than MaxDepth.
	ErrTooDeep = errors.New("proto: value nested too deeply")
	// ErrFormat: the Format is neither FormatJSON nor FormatMsgpack.
	ErrFormat = errors.New("proto: unknown format")
)

// MaxDepth bounds how deeply arrays and maps may nest in a value, so that
// a small hostile message cannot drive the recursive walkers arbitrarily deep.
const MaxDepth = 1000

// DataError locates a problem in a value. errors.Is matches its sentinel.
type DataError struct {
	Err    error  // one of the sentinels above
	Offset int    // byte offset in the input where the problem was found
	Reason string // what is wrong, for people
}

func (e *DataError) Error() string {
	return e.Err.Error() + ": " + e.Reason + " at offset " + strconv.Itoa(e.Offset)
}

func (e *DataError) Unwrap() error { return e.Err }

func dataErr(sentinel error, off int, reason string) *DataError {
	return &DataError{Err: sentinel, Offset: off, Reason: reason}
}
