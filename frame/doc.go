// Package frame implements RFC 6455 framing on top of github.com/gobwas/ws
// types.
//
// The server side is what the gateway runs: parsing frame headers out of a
// byte slice without copying, enforcing the protocol rules a server must
// enforce (section 5), reassembling fragmented messages, and building the
// unmasked frames a server sends. The client side (client.go) is what the
// bench harness and the tests speak: masked frames out, unmasked frames in.
// AppendRawHeader writes any header, valid or not, for tests that craft the
// frames a server must refuse.
//
// The package starts no goroutines, logs nothing and never reaches up into
// the layers that use it.
package frame
