package limit

import (
	"math"

	"golang.org/x/time/rate"
)

// NewPublishLimiter returns one connection's publish token bucket:
// perSecond publishes a second with bursts of burst (0 means
// max(1, perSecond)). It returns nil when perSecond <= 0, so connections
// of a node without a publish limit carry no limiter; check it with Allow.
func NewPublishLimiter(perSecond float64, burst int) *rate.Limiter {
	if !(perSecond > 0) {
		return nil
	}
	if burst <= 0 {
		burst = int(math.Max(1, math.Min(perSecond, math.MaxInt32)))
	}
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}

// Allow reports whether l admits one more publish now. A nil l allows
// everything; *rate.Limiter itself does not accept a nil receiver.
func Allow(l *rate.Limiter) bool {
	return l == nil || l.Allow()
}
