package frame

import (
	"errors"

	"github.com/gobwas/ws"
)

// ErrShort reports that the input does not yet hold a whole frame header
// or payload; the caller keeps the bytes and waits for more.
var ErrShort = errors.New("frame: need more data")

// CloseError is a violation that ends the connection. Code is the status
// the server sends in its close frame (RFC 6455 section 7.4.1).
type CloseError struct {
	Code   ws.StatusCode
	Reason string
}

func (e *CloseError) Error() string { return "frame: " + e.Reason }

func protocolError(reason string) *CloseError {
	return &CloseError{Code: ws.StatusProtocolError, Reason: reason}
}

// The violations are values so that checking them allocates nothing.
var (
	ErrUnmasked          = protocolError("client frame is not masked")
	ErrMasked            = protocolError("server frame is masked")
	ErrRsv               = protocolError("reserved bits set without a negotiated extension")
	ErrReservedOpCode    = protocolError("reserved opcode")
	ErrControlTooLong    = protocolError("control frame payload over 125 bytes")
	ErrControlFragmented = protocolError("fragmented control frame")
	ErrUnexpectedCont    = protocolError("continuation frame without a message to continue")
	ErrExpectedCont      = protocolError("new data frame inside a fragmented message")
	ErrCloseLength       = protocolError("close frame with a 1-byte payload")
	ErrCloseCode         = protocolError("invalid close status code")
	ErrCloseUTF8         = &CloseError{Code: ws.StatusInvalidFramePayloadData, Reason: "close reason is not valid UTF-8"}
	ErrTooBig            = &CloseError{Code: ws.StatusMessageTooBig, Reason: "message exceeds the size limit"}
	ErrInvalidUTF8       = &CloseError{Code: ws.StatusInvalidFramePayloadData, Reason: "text message is not valid UTF-8"}
)
