package client

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/gateway"
)

// countHandshakes returns an HTTP client that counts the handshake
// requests it sends in n: every connection attempt that reached the node.
func countHandshakes(n *atomic.Int32) *http.Client {
	return &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		n.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// signed is a token of testSecret for user, allowed room.>, expiring at exp.
func signed(t testing.TB, user string, exp time.Time) string {
	t.Helper()
	grants := []string{"room.>"}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "exp": exp.Unix(), "subs": grants, "pubs": grants,
	}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokens is a provider that hands out list in turn, then its last forever,
// counting its calls.
func tokens(calls *atomic.Int32, list ...string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		i := int(calls.Add(1)) - 1
		return list[min(i, len(list)-1)], nil
	}
}

// TestUnauthorized: a 401 is retried only with another token from
// Options.Token; without one, Dial fails after a single attempt, and a
// connected Conn stops instead of reconnecting.
func TestUnauthorized(t *testing.T) {
	// The wheel visits each connection every PingInterval: expiry is acted
	// on within 200ms.
	n := startNode(t, "", gateway.Config{
		PingInterval: 200 * time.Millisecond,
		Security:     gateway.SecurityConfig{JWT: auth.Config{Secret: testSecret}},
	})
	fast := Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	good := signed(t, "ann", time.Now().Add(time.Hour))
	bearer := http.Header{"Authorization": {"Bearer not-a-token"}}

	for _, tc := range []struct {
		name     string
		header   http.Header
		tokens   []string // Options.Token hands these out in turn; nil: no provider
		attempts int32
		calls    int32
		ok       bool
	}{
		{"no token", nil, nil, 1, 0, false},
		{"a fixed bad token", bearer, nil, 1, 0, false},
		{"the provider gives the same bad token", nil, []string{"bad"}, 1, 2, false},
		{"the provider gives a good token on its second call", nil, []string{"bad", good}, 2, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var attempts, calls atomic.Int32
			opts := Options{Header: tc.header, Backoff: fast, HTTPClient: countHandshakes(&attempts)}
			if tc.tokens != nil {
				opts.Token = tokens(&calls, tc.tokens...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, n.url(), opts)
			if ctx.Err() != nil {
				t.Fatalf("Dial waited for its deadline: %v", err)
			}
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Info(ctxFor(t)); err != nil {
					t.Fatal(err)
				}
			} else {
				var he *HandshakeError
				if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &he) || he.Status != http.StatusUnauthorized || he.Reason == "" {
					t.Fatalf("Dial: %v, want ErrUnauthorized with a 401 HandshakeError and its reason", err)
				}
				if errors.Is(err, ErrForbidden) {
					t.Fatalf("%v matches ErrForbidden", err)
				}
			}
			if a, k := attempts.Load(), calls.Load(); a != tc.attempts || k != tc.calls {
				t.Fatalf("%d handshakes, %d token calls; want %d and %d", a, k, tc.attempts, tc.calls)
			}
		})
	}

	t.Run("refused on reconnect: the Conn stops", func(t *testing.T) {
		// The provider keeps a token that expires: the node closes with
		// 4001, and refuses the reconnection with the same token.
		var attempts, calls atomic.Int32
		errs := make(chan error, 16)
		c := openConn(t, n.url(), Options{
			Token:      tokens(&calls, signed(t, "bob", time.Now().Add(2*time.Second))),
			Backoff:    fast,
			HTTPClient: countHandshakes(&attempts),
			OnError:    func(err error) { notify(errs, err) },
		})
		mustSubscribe(t, c, "room.1", func(Message) {})
		await(t, c.Done(), "the Conn to stop")
		if err := c.Err(); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Err() = %v, want ErrUnauthorized", err)
		}
		var re *RetryError
		last := await(t, (<-chan error)(errs), "OnError")
		for len(errs) > 0 {
			last = <-errs
		}
		if !errors.Is(last, ErrUnauthorized) || errors.As(last, &re) {
			t.Fatalf("OnError's last = %v, want the refusal, with no retry planned", last)
		}
		if err := c.Subscribe(ctxFor(t), "room.2", func(Message) {}); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Subscribe after the stop: %v", err)
		}
		// Once the supervisor has returned, no attempt can follow.
		await(t, (<-chan struct{})(c.superDone), "the supervisor to return")
		if a, k := attempts.Load(), calls.Load(); a != 2 || k != 3 {
			t.Fatalf("%d handshakes, %d token calls; want 2 (the connection, the refused one) and 3", a, k)
		}
	})
}

// TestForbiddenOrigin: a 403 (an Origin the node does not allow) stops
// Dial at once without a token provider, and with one that gives a new
// token at each call it is retried at most once within 10s.
func TestForbiddenOrigin(t *testing.T) {
	n := startNode(t, "", gateway.Config{Security: gateway.SecurityConfig{AllowedOrigins: "good.example"}})
	fast := Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	evil := http.Header{"Origin": {"http://evil.example"}}

	t.Run("no token provider", func(t *testing.T) {
		var attempts atomic.Int32
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := Dial(ctx, n.url(), Options{Header: evil, Backoff: fast, HTTPClient: countHandshakes(&attempts)})
		var he *HandshakeError
		if !errors.Is(err, ErrForbidden) || !errors.As(err, &he) || he.Status != http.StatusForbidden || he.Reason == "" {
			t.Fatalf("Dial: %v, want ErrForbidden with a 403 HandshakeError and its reason", err)
		}
		if ctx.Err() != nil || attempts.Load() != 1 {
			t.Fatalf("%d handshakes (deadline: %v), want 1", attempts.Load(), ctx.Err())
		}
	})

	t.Run("a new token each call", func(t *testing.T) {
		var attempts, calls atomic.Int32
		mint := func(context.Context) (string, error) { return strconv.Itoa(int(calls.Add(1))), nil }
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := Dial(ctx, n.url(), Options{Header: evil, Token: mint, Backoff: fast, HTTPClient: countHandshakes(&attempts)})
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrForbidden) {
			t.Fatalf("Dial: %v, want its deadline with ErrForbidden as the last attempt", err)
		}
		if a := attempts.Load(); a != 2 {
			t.Fatalf("%d handshakes within 3s, want 2: one retry with the new token, then none before 10s", a)
		}
	})

	t.Run("an allowed origin", func(t *testing.T) {
		c := openConn(t, n.url(), Options{Header: http.Header{"Origin": {"http://good.example"}}})
		if _, err := c.Info(ctxFor(t)); err != nil {
			t.Fatal(err)
		}
	})
}
