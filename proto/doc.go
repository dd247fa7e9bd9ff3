// Package proto implements the subsock wire protocol v1: the request and
// reply envelopes a client and the gateway exchange inside WebSocket
// messages, in two codecs chosen by the Sec-WebSocket-Protocol handshake
// header (subsock.v1.json in text frames, subsock.v1.msgpack in binary
// frames), the topic rules, and the conversion of published values between
// JSON and MessagePack. docs/protocol.md is the contract for client authors.
//
// Decoders are strict and never panic: a bad request yields an *Error whose
// Code is what the server sends back. Encoders append to the caller's buffer
// and allocate nothing else, so the fan-out path can build a message once
// and share the bytes among subscribers.
//
// The package starts no goroutines and logs nothing.
package proto
