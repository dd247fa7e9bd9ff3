package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
)

// spreadClient records one client's reconnection: when it planned each
// attempt (the moment it chose a wait, plus the wait), when its TCP dials
// started (through its own transport) and when it was ready again.
type spreadClient struct {
	c        *Conn
	mu       sync.Mutex
	planned  []time.Time
	dials    []time.Time
	readyAt  []time.Time
	unwanted []string // disconnects after the restart's
}

func (sc *spreadClient) options(b Backoff, back func()) Options {
	d := &net.Dialer{}
	plan := func(err error) {
		var re *RetryError
		if errors.As(err, &re) {
			sc.mu.Lock()
			sc.planned = append(sc.planned, time.Now().Add(re.Wait))
			sc.mu.Unlock()
		}
	}
	return Options{
		Backoff: b,
		HTTPClient: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				sc.mu.Lock()
				sc.dials = append(sc.dials, time.Now())
				sc.mu.Unlock()
				return d.DialContext(ctx, network, addr)
			},
		}},
		OnError: plan,
		OnConnect: func() {
			sc.mu.Lock()
			sc.readyAt = append(sc.readyAt, time.Now())
			n := len(sc.readyAt)
			sc.mu.Unlock()
			if n == 2 {
				back()
			}
		},
		OnDisconnect: func(err error) {
			plan(err)
			sc.mu.Lock()
			if len(sc.readyAt) > 1 {
				sc.unwanted = append(sc.unwanted, err.Error())
			}
			sc.mu.Unlock()
		},
	}
}

// lastBefore returns the last instant in ts before limit.
func lastBefore(ts []time.Time, limit time.Time) time.Time {
	last := ts[0]
	for _, x := range ts {
		if x.After(limit) {
			break
		}
		last = x
	}
	return last
}

// spread summarises instants as offsets from t0.
type spread struct {
	offsets []time.Duration
	busiest int // most instants within one window
}

func newSpread(t0 time.Time, at []time.Time, window time.Duration) spread {
	s := spread{offsets: make([]time.Duration, len(at))}
	for i, x := range at {
		s.offsets[i] = x.Sub(t0)
	}
	slices.Sort(s.offsets)
	for i, j := 0, 0; i < len(s.offsets); i++ {
		for s.offsets[i]-s.offsets[j] >= window {
			j++
		}
		s.busiest = max(s.busiest, i-j+1)
	}
	return s
}

func (s spread) q(p float64) time.Duration {
	return s.offsets[int(p*float64(len(s.offsets)-1))].Round(time.Millisecond)
}

func (s spread) span() time.Duration { return s.offsets[len(s.offsets)-1] - s.offsets[0] }

func (s spread) String() string {
	return fmt.Sprintf("first %v, p10 %v, p50 %v, p90 %v, last %v; span %v",
		s.q(0), s.q(0.1), s.q(0.5), s.q(0.9), s.q(1), s.span().Round(time.Millisecond))
}

// TestReconnectSpread restarts a node under 1,000 clients and measures
// when they come back: full jitter must spread them out rather than
// return them as one herd. The planned instants are the policy's own
// choice; dial and ready instants also carry the scheduling delays of a
// busy machine, so only loose bounds hold for them.
func TestReconnectSpread(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections")
	}
	const (
		clients = 1000
		window  = 10 * time.Millisecond
	)
	backoff := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	n := startNode(t, "", gateway.Config{})
	scs := make([]*spreadClient, clients)
	var back sync.WaitGroup
	back.Add(clients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	var dialErr atomic.Value
	for i := range scs {
		sc := &spreadClient{}
		scs[i] = sc
		opts := sc.options(backoff, back.Done)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := Dial(ctx, n.url(), opts)
			if err == nil {
				sc.c = c
				err = c.Subscribe(ctx, "spread", func(Message) {})
			}
			if err != nil {
				dialErr.Store(err)
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, sc := range scs {
			if sc.c != nil {
				wg.Go(func() { _ = sc.c.Close() })
			}
		}
		wg.Wait()
	})
	if err := dialErr.Load(); err != nil {
		t.Fatal(err)
	}
	if got := n.publish(t, "spread", 1); got != clients {
		t.Fatalf("%d subscribers, want %d", got, clients)
	}

	restart := time.Now()
	n.stop()
	down := time.Since(restart)
	n2 := startNode(t, n.addr, gateway.Config{})
	allBack := make(chan struct{})
	go func() { back.Wait(); close(allBack) }()
	select {
	case <-allBack:
	case <-time.After(60 * time.Second):
		t.Fatal("not every client came back within a minute")
	}

	var planned, dials, ready []time.Time
	var failures uint64
	for _, sc := range scs {
		sc.mu.Lock()
		r := sc.readyAt[1]
		planned = append(planned, lastBefore(sc.planned, r))
		dials = append(dials, lastBefore(sc.dials, r))
		ready = append(ready, r)
		if len(sc.unwanted) > 0 {
			t.Logf("NOTE: a client lost its new connection again: %q", sc.unwanted)
		}
		sc.mu.Unlock()
		failures += sc.c.Stats().DialFailures
	}
	// A server-side figure, logged: the node's registry, not the client,
	// decides it, and the tests of resubscription are in TestRestartResubscribes.
	subs := n2.publish(t, "spread", 1)
	pl := newSpread(restart, planned, window)
	dl := newSpread(restart, dials, window)
	rd := newSpread(restart, ready, window)
	t.Logf("%d clients, Backoff %v..%v; the old node took %v to shut down; %d refused attempts; the new node counts %d subscribers",
		clients, backoff.Min, backoff.Max, down.Round(time.Millisecond), failures, subs)
	t.Logf("planned (successful attempt), from the restart: %v; busiest %v: %d clients", pl, window, pl.busiest)
	t.Logf("dialled   (successful attempt), from the restart: %v; busiest %v: %d clients", dl, window, dl.busiest)
	t.Logf("ready     (resubscribed),       from the restart: %v; busiest %v: %d clients", rd, window, rd.busiest)

	// A close with 1001 is never followed by an immediate reconnect.
	if dl.offsets[0] < backoff.Min {
		t.Errorf("a client dialled again %v after the restart began, before Backoff.Min %v", dl.offsets[0], backoff.Min)
	}
	// Full jitter draws each wait uniformly from windows hundreds of
	// milliseconds wide, so a few percent land in any 10ms (more just
	// after the new node comes up, when every pending plan succeeds); a
	// herd would put nearly all of them in one.
	if pl.busiest > clients/4 {
		t.Errorf("%d of %d clients planned their attempt within one %v window", pl.busiest, clients, window)
	}
	if dl.busiest > clients/2 {
		t.Errorf("%d of %d clients dialled within one %v window", dl.busiest, clients, window)
	}
	if pl.span() < backoff.Min || dl.span() < backoff.Min {
		t.Errorf("attempts spread over only %v (planned) / %v (dialled)", pl.span(), dl.span())
	}
}
