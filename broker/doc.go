// Package broker is the seam between a subsock node and the backbone that
// carries publishes between nodes: Redis Pub/Sub, Redis Cluster sharded
// Pub/Sub (SPUBLISH/SSUBSCRIBE, Redis >= 7), NATS core, or an in-process
// bus for a single node and for tests.
//
// A node delivers to its local subscribers only what comes back from the
// broker, never what it publishes directly; so every node, the publisher
// included, delivers a message exactly once (as far as the backbone itself
// delivers it once: see below).
//
// # Guarantees
//
// Every backbone here is at-most-once: Redis Pub/Sub and sharded Pub/Sub
// keep nothing for a subscriber that is not connected, and NATS core is
// fire-and-forget. A message published while a node's subscription
// connection is down is lost for that node. Order is kept per topic and
// publisher connection while nothing fails.
//
// A Publish that cannot reach the backbone fails with ErrUnavailable (with
// the cause wrapped); it is never buffered for later. After a lost
// connection the broker reconnects by itself with backoff, resubscribes
// every topic it holds and counts a reconnect; Health is non-nil meanwhile.
//
// # History
//
// Memory, Redis and Redis Cluster brokers also implement Streamer (see
// stream.go): a topic with history gets an offset per publication from the
// backbone and keeps its last publications, under an epoch that changes
// whenever that past is lost. Redis keeps a stream as two keys in the
// topic's slot and does each call as one script (redis_stream.go); memory
// keeps them on the bus, under a byte cap (memory_stream.go).
//
// # Callback rules
//
// The Handler runs on the broker's own goroutine: rueidis's reader of the
// subscription connection (one per Redis node), the NATS dispatcher, or,
// for Memory, the publisher's goroutine. It must return quickly: while it
// runs, no other message of that connection is read. It must not call
// Subscribe, Unsubscribe or Close of the broker that called it (Publish is
// allowed; on Memory, PublishStream and ReadStream are not, see Streamer).
// payload is read-only and valid only until the handler returns.
//
// # Interest
//
// A broker receives only topics it has been told to Subscribe. Router sits
// in front of it: it debounces and batches the first-subscriber and
// last-subscriber transitions of a node into few (un)subscribe calls.
package broker
