// Package gateway is a subsock node: it speaks HTTP and WebSocket on the
// poller's connections, keeps the sub-socket registry, relays publishes
// through a broker and fans each message out to the topic's group.
//
// Goroutines and callbacks:
//   - session input (HTTP requests, WebSocket frames, protocol requests)
//     runs in poller.Handler.OnData, one call at a time per connection, on
//     netpoll's handler pool;
//   - fan-out runs on whichever goroutine the broker delivers on (for the
//     memory broker, the publisher's own), holding one registry shard's
//     read lock while it enqueues the shared frame on each subscriber;
//   - the heartbeat wheel is one goroutine owned by the Gateway;
//   - session cleanup runs in poller.Handler.OnClose, which netpoll never
//     runs concurrently with OnData for the same connection.
//
// Lock order: registry shard locks before poller.Conn.mu; nothing takes a
// registry lock while holding a Conn lock.
package gateway
