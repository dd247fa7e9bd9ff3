package client

import "sync/atomic"

// Stats is a snapshot of one connection's figures since Dial.
type Stats struct {
	Connected     bool   // a connection is up now
	Connects      uint64 // successful handshakes, the first included
	DialFailures  uint64 // failed connection attempts
	Received      uint64 // messages read from the server
	Delivered     uint64 // handler calls
	Dropped       uint64 // messages lost to a full buffer (All)
	Coalesced     uint64 // messages skipped for a newer value of their topic (Latest)
	Published     uint64 // publishes written to the server
	Subscriptions int    // topics subscribed now
	Queued        int    // messages waiting for the handler
}

// counters are the atomics behind Stats; each is written by one goroutine
// or by callers, and read by Stats.
type counters struct {
	connects     atomic.Uint64
	dialFailures atomic.Uint64
	received     atomic.Uint64
	delivered    atomic.Uint64
	dropped      atomic.Uint64
	coalesced    atomic.Uint64
	published    atomic.Uint64
}
