// Package registry keeps the node's subscriptions: for every topic the group
// of local subscribers (connections) interested in it, and for every
// connection its own list of topics (Set) so that closing it removes it from
// every group.
//
// The registry is lock-striped in the manner of centrifuge's hub: a fixed,
// power-of-two array of shards is picked by hashing the topic, and each shard
// holds its own RWMutex and map from topic to group. A group is a dense slice
// of subscribers, so fan-out walks contiguous memory and allocates nothing;
// once a group grows past a few dozen members it also keeps an open-addressing
// index of positions so that removal stays O(1). A topic whose last subscriber
// leaves is deleted at once, and a shard's map is rebuilt smaller once it has
// fallen under a quarter of its largest size, so memory taken by a storm of
// topics comes back when they leave (a Go map never shrinks by itself).
//
// Rules:
//   - Every Registry method is safe for concurrent use. Each call takes at most
//     one shard lock at a time and never calls out while holding a write lock.
//   - Range calls fn with the shard's read lock held: fn must return quickly
//     (enqueue, never block on I/O) and must not call back into the registry,
//     or a waiting writer deadlocks it.
//   - Topics and RemoveAll call their callbacks with no lock held.
//   - A Set is not safe for concurrent use: the connection that owns it
//     serialises access to it.
//   - Topic strings are stored, never copied. Join and Leave keep the
//     registry's copy of a topic in the Set, so one string serves the group
//     and every subscriber's Set.
//
// The package starts no goroutines, logs nothing and imports nothing from the
// layers above it.
package registry
