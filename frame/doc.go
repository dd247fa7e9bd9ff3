// Package frame implements the server side of RFC 6455 framing on top of
// github.com/gobwas/ws types: parsing frame headers out of a byte slice
// without copying, enforcing the protocol rules a server must enforce
// (section 5), reassembling fragmented messages, and building the
// unmasked frames a server sends.
//
// The package starts no goroutines, logs nothing and never reaches up into
// the layers that use it.
package frame
