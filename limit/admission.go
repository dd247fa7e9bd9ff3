package limit

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Reasons Admit gives for a refusal; the gateway sends them to the client.
const (
	ReasonTooManyConns = "too many connections"
	ReasonRateExceeded = "connection rate exceeded"
)

const (
	// connsRetryBase and connsRetryJitter bound the wait suggested when the
	// node is full: nobody knows when a slot frees, so a few seconds,
	// spread so that refused clients do not come back together.
	connsRetryBase   = 2 * time.Second
	connsRetryJitter = 3 * time.Second
	// maxCrowdWait caps the spread of retries under the rate limit, so a
	// huge storm is told to come back within minutes, not hours.
	maxCrowdWait = 5 * time.Minute
)

// AdmissionConfig bounds new connections; zero fields mean unlimited.
type AdmissionConfig struct {
	// MaxConns caps open connections. 0 is unlimited.
	MaxConns int
	// Rate caps new connections per second. 0 is unlimited.
	Rate float64
	// Burst is how many connections may arrive at once on top of Rate.
	// Default: max(1, Rate/10).
	Burst int
}

// Admission guards new connections: a cap on open connections and a rate
// of new ones. A refused client gets a retry delay with jitter so that a
// reconnect storm (every client of a restarted node at once) spreads out
// over the time the rate needs to admit it, instead of coming back in
// lockstep and being refused again.
type Admission struct {
	max  int64 // 0: no cap
	open atomic.Int64

	lim      *rate.Limiter // nil: no rate limit
	interval time.Duration // 1/Rate

	mu sync.Mutex // serialises the bucket and the crowd estimate
	// crowdEnd is when the clients refused so far will all have been
	// admitted at Rate: each refusal queues one more interval behind it.
	crowdEnd time.Time

	randN func(n int64) int64 // uniform in [0, n); tests seed it
}

// NewAdmission applies cfg's defaults.
func NewAdmission(cfg AdmissionConfig) *Admission {
	a := &Admission{randN: rand.Int64N}
	if cfg.MaxConns > 0 {
		a.max = int64(cfg.MaxConns)
	}
	if cfg.Rate > 0 && !math.IsInf(cfg.Rate, 1) {
		burst := cfg.Burst
		if burst <= 0 {
			burst = int(math.Max(1, cfg.Rate/10))
		}
		a.lim = rate.NewLimiter(rate.Limit(cfg.Rate), burst)
		// Capped so a rate of one per hour or less cannot overflow the
		// delays computed from it; such clients just come back sooner.
		a.interval = time.Duration(math.Min(float64(time.Second)/cfg.Rate, float64(maxCrowdWait)))
	}
	return a
}

// Admit reserves a slot for a new connection arriving at now. When it
// refuses, retryAfter is how long the client should wait and reason says
// why (ReasonTooManyConns or ReasonRateExceeded). A refusal consumes
// nothing: neither a connection slot nor a rate token.
func (a *Admission) Admit(now time.Time) (ok bool, retryAfter time.Duration, reason string) {
	if a.max > 0 {
		for {
			n := a.open.Load()
			if n >= a.max {
				return false, connsRetryBase + a.jitter(connsRetryJitter), ReasonTooManyConns
			}
			if a.open.CompareAndSwap(n, n+1) {
				break
			}
		}
	} else {
		a.open.Add(1)
	}
	if a.lim != nil {
		if admitted, wait := a.admitRate(now); !admitted {
			a.open.Add(-1)
			return false, wait, ReasonRateExceeded
		}
	}
	return true, 0, ""
}

// admitRate takes a token or says how long to wait: the bucket's own
// delay plus jitter up to the time the waiting crowd needs to get in. The
// jitter falls in the back half of that window, as the clients refused
// before this one were sent to the front: drawing from the whole window
// would pile the early part of a storm onto its first seconds (see
// TestReconnectStorm).
func (a *Admission) admitRate(now time.Time) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lim.AllowN(now, 1) {
		return true, 0
	}
	delay := time.Duration((1 - a.lim.TokensAt(now)) * float64(a.interval))
	if delay < 0 {
		delay = 0
	}
	if a.crowdEnd.Before(now) {
		a.crowdEnd = now
	}
	a.crowdEnd = a.crowdEnd.Add(a.interval)
	if a.crowdEnd.Sub(now) > maxCrowdWait {
		a.crowdEnd = now.Add(maxCrowdWait)
	}
	crowd := a.crowdEnd.Sub(now)
	return false, delay + crowd/2 + a.jitter(crowd-crowd/2)
}

// jitter is uniform in [0, d].
func (a *Admission) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(a.randN(int64(d) + 1))
}

// Done releases the slot of a connection admitted earlier. It panics when
// called more often than Admit succeeded, which is a bug in the caller
// that would otherwise silently raise the cap.
func (a *Admission) Done() {
	if a.open.Add(-1) < 0 {
		a.open.Add(1)
		panic("limit: Admission.Done without a matching Admit")
	}
}

// Open returns the number of admitted connections not yet Done.
func (a *Admission) Open() int { return int(a.open.Load()) }
