package registry

import "math/bits"

// DefaultShards is the number of lock stripes used when Config.Shards is 0.
const DefaultShards = 64

// maxShards bounds Config.Shards; more stripes than this only cost memory.
const maxShards = 1 << 16

// Config configures a Registry. The zero value is ready to use.
type Config struct {
	// Shards is the number of lock stripes. 0 means DefaultShards; other
	// values are rounded up to a power of two and capped at 65536.
	Shards int
}

// shardCount returns the effective, power-of-two number of shards.
func (c Config) shardCount() int {
	n := c.Shards
	switch {
	case n <= 0:
		return DefaultShards
	case n >= maxShards:
		return maxShards
	}
	return 1 << bits.Len(uint(n-1))
}
