package client

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestBackoffJitter(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		n        int
		ceil     time.Duration
	}{
		{"first", 100 * time.Millisecond, 10 * time.Second, 0, 100 * time.Millisecond},
		{"third", 100 * time.Millisecond, 10 * time.Second, 2, 400 * time.Millisecond},
		{"capped", 100 * time.Millisecond, time.Second, 8, time.Second},
		{"shift overflow", time.Second, time.Minute, 200, time.Minute},
		{"huge n below 63", time.Hour, 2 * time.Hour, 62, 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Backoff{Min: tt.min, Max: tt.max}
			lo, hi := tt.ceil, time.Duration(0)
			for range 2000 {
				d := b.jitter(tt.n)
				if d < 0 || d >= tt.ceil {
					t.Fatalf("jitter(%d) = %v, want [0, %v)", tt.n, d, tt.ceil)
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			// Full jitter covers the whole window, not a band near its top.
			if lo > tt.ceil/4 || hi < tt.ceil*3/4 {
				t.Fatalf("2000 draws span only [%v, %v] of [0, %v)", lo, hi, tt.ceil)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	const min, max = 100 * time.Millisecond, 10 * time.Second
	b := Backoff{Min: min, Max: max}
	tests := []struct {
		name   string
		n      int
		err    error
		lo, hi time.Duration // want lo <= d < hi
	}{
		{"network error", 0, errors.New("connection refused"), 0, min},
		{"network error, 3rd", 2, errors.New("connection refused"), 0, 4 * min},
		{"heartbeat timeout 4000", 0, &CloseError{Code: 4000}, 0, min},
		{"token expired 4001", 0, &CloseError{Code: 4001}, 0, min},
		{"going away 1001", 0, &CloseError{Code: 1001}, min, min + 2*min},
		{"restart 1012", 0, &CloseError{Code: 1012}, min, min + 2*min},
		{"slow consumer 1013", 0, &CloseError{Code: 1013}, min, min + 2*min},
		{"slow consumer 1013, 2nd", 1, &CloseError{Code: 1013}, min, min + 4*min},
		{"wrapped 1001", 0, errors.Join(errors.New("x"), &CloseError{Code: 1001}), min, 3 * min},
		{"503 Retry-After", 0, &HandshakeError{Status: 503, RetryAfter: 3 * time.Second}, 3 * time.Second, 3*time.Second + min},
		{"503 bare", 0, &HandshakeError{Status: 503}, min, 3 * min},
		{"429 bare", 0, &HandshakeError{Status: http.StatusTooManyRequests}, min, 3 * min},
		{"401", 0, &HandshakeError{Status: 401}, 0, min},
		{"capped", 30, &CloseError{Code: 1001}, min, min + max},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 1000 {
				if d := b.delay(tt.n, tt.err); d < tt.lo || d >= tt.hi {
					t.Fatalf("delay(%d, %v) = %v, want [%v, %v)", tt.n, tt.err, d, tt.lo, tt.hi)
				}
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"5", 5 * time.Second, true},
		{" 1 ", time.Second, true},
		{"0", 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"99999999999", 0, false},
		{"soon", 0, false},
		{"Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Sun, 01 Mar 2026 11:00:00 GMT", 0, false}, // in the past
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			got, ok := parseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", " 7", "", "x", "-3", "Sun, 01 Mar 2026 12:00:30 GMT", "Sunday, 01-Mar-26 12:00:30 GMT", "18446744073709551616"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseRetryAfter(s, now)
		if d < 0 || (!ok && d != 0) {
			t.Fatalf("parseRetryAfter(%q) = %v, %v", s, d, ok)
		}
		if ok && d%time.Second == 0 {
			// A delay-seconds value prints back to itself.
			if n, err := strconv.ParseUint(s, 10, 32); err == nil && time.Duration(n)*time.Second != d {
				t.Fatalf("parseRetryAfter(%q) = %v", s, d)
			}
		}
	})
}
