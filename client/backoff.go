package client

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// jitter is the full-jitter wait after n consecutive failures: uniform in
// [0, min(Max, Min·2^n)).
func (b Backoff) jitter(n int) time.Duration {
	ceil := b.Max
	if n < 62 {
		if c := b.Min << n; c > 0 && c < ceil && c>>n == b.Min {
			ceil = c
		}
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil)
}

// delay is the wait before the next attempt after n consecutive failures,
// the last of which was err.
func (b Backoff) delay(n int, err error) time.Duration {
	var he *HandshakeError
	if errors.As(err, &he) {
		if he.RetryAfter > 0 {
			// At least what the server asked, and spread beyond it so the
			// clients it refused together do not return together.
			return he.RetryAfter + b.jitter(n)
		}
		if he.temporary() {
			return b.Min + b.jitter(n+1)
		}
	}
	var ce *CloseError
	if errors.As(err, &ce) && serverAskedToWait(ce.Code) {
		return b.Min + b.jitter(n+1)
	}
	return b.jitter(n)
}

// serverAskedToWait reports close codes by which the server says it is
// going away or overloaded: reconnecting at once would only add to a herd.
func serverAskedToWait(code int) bool {
	switch code {
	case 1001, 1012, 1013: // going away, service restart, try again later
		return true
	}
	return false
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date
// (RFC 9110 section 10.2.3). Dates in the past and garbage give false.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, false
}
