// Package gateway is a subsock node: the session layer (HTTP, WebSocket
// and SSE on the poller's connections, request dispatch, ordered async
// replies), the publisher, history, presence and the control plane. It
// composes three parts of its own, each a package with one-way
// dependencies: hub (groups, the fan-out stage, encode-once delivery),
// httpwire (byte-level HTTP) and policy (security and limit decisions).
// docs/architecture.md maps the files.
//
// Goroutines and callbacks (no handler ever waits on the network):
//   - session input (HTTP requests, WebSocket frames, protocol requests)
//     runs in poller.Handler.OnData, one call at a time per connection, on
//     netpoll's handler pool, under session.proc; a handshake parked for a
//     JWKS refresh is resumed under the same lock by the refresh goroutine;
//   - answers that wait on the backbone (sub acks, publish results) fill
//     the session's ordered reply queue from the Router's goroutine or a
//     publisher worker (reply.go, publisher.go);
//   - fan-out runs on the stage's workers (hub/stage.go), a topic always on the
//     same one, holding one registry shard's read lock while it enqueues
//     the shared frame on each subscriber;
//   - the heartbeat wheel is one goroutine owned by the Gateway; every tick
//     it also checks the deadlines (deadline.go);
//   - session cleanup runs in poller.Handler.OnClose, which netpoll never
//     runs concurrently with OnData for the same connection.
//
// Lock order: session.proc, then session.mu, then registry shard locks,
// then broker.Router's lock; deadlines.mu may be held while taking
// session.mu. Registry shard locks come before poller.Conn.mu; nothing
// takes a registry lock while holding a Conn lock.
package gateway
