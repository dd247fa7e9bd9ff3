package registry

// groupThresholds: a linear scan of a few dozen pointers beats hashing.
var groupThresholds = thresholds{above: 32, below: 16}

// group is the set of subscribers of one topic.
type group[S comparable] struct {
	// topic is the key the shard map holds for this group, kept so Join can
	// hand the same string to every subscriber's Set.
	topic string
	subs  dense[S]
}
