// Package kafka feeds a subsock node from Kafka: a consumer group member
// per node that publishes every record through the node's own publish path
// (Gateway.Publish), so a record crosses the backbone once and reaches every
// subscriber on every node once. Kafka is a source of events here, never the
// relay between nodes (see docs/kafka.md).
//
// A record's subsock topic is its TopicHeader header, else the
// TopicTemplate expanded, else its key; its value is the payload, JSON
// unless a content-type header says application/msgpack. A record that
// maps to no topic, or that the node refuses (bad topic, bad data), is
// counted, logged at most once per LogInterval, and skipped, or produced
// to DeadLetterTopic: it never blocks its partition.
//
// Delivery is at least once. A partition's offsets are committed only for
// records the backbone accepted (or skipped): records are marked
// (franz-go's AutoCommitMarks) after Publish returns, marks are committed
// every CommitInterval and on every revoke, after the revoked partitions
// finished their in-flight record. While the backbone is unavailable the
// partition's fetching is paused and the same record retried with backoff:
// the lag grows, nothing is skipped. A node that crashes leaves its
// uncommitted records (at most CommitInterval's worth) to the next owner,
// which publishes them again.
//
// Goroutines, all started by Run and stopped before it returns:
//   - Run's own goroutine polls franz-go and hands each partition's records
//     to that partition's queue, never blocking (BlockRebalanceOnPoll holds
//     rebalances off only for the hand-off);
//   - one goroutine per owned partition publishes its records in offset
//     order, one at a time (order per partition is kept on the backbone);
//   - one prober asks the brokers for end offsets and the group's commits
//     every ProbeInterval (lag and reachability);
//   - franz-go's own, ended by closing its client.
//
// Callback rules: the group callbacks (assigned, revoked, lost) run on
// franz-go's group goroutine, one at a time, while no poll hands records
// over. They take Consumer.mu briefly and wait, without it, for the revoked
// partitions' goroutines to finish the record in hand (at most the
// Publisher's timeout). A partition goroutine takes only its own
// partition.mu, never Consumer.mu. Lock order: Consumer.mu, then
// partition.mu (the poll loop's hand-off).
//
// The package logs only to the *zap.Logger in Config and nothing per record
// at info.
package kafka
