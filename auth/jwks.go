package auth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxJWKSBytes bounds the document read from the key server.
	maxJWKSBytes = 1 << 20
	// earlyRefreshGap is the least time between two refreshes triggered by
	// unknown kids, so tokens with made-up kids cannot hammer the key server.
	earlyRefreshGap = 10 * time.Second
)

// jwks keeps the key set of a JWKS URL fresh. The refresher goroutine and
// early refreshes from Verify take turns through sem, so at most one fetch
// runs at a time.
type jwks struct {
	url    string
	client *http.Client
	keys   atomic.Pointer[keySet]

	sem       chan struct{} // holds one token while a fetch runs
	lastEarly atomic.Int64  // unix ns of the last early refresh; written under sem
	onRefresh func(error)   // test hook, called after every periodic refresh

	// Handshakes waiting on an early refresh share one goroutine (see
	// refreshAsync), so a burst of unknown kids costs one fetch, not one
	// goroutine each.
	amu     sync.Mutex
	asyncOn bool     // the refresh goroutine runs
	waiters []func() // called when it returns
	closed  bool

	stop context.CancelFunc
	wg   sync.WaitGroup
}

func newJWKS(url string, client *http.Client, onRefresh func(error)) *jwks {
	return &jwks{url: url, client: client, sem: make(chan struct{}, 1), onRefresh: onRefresh}
}

// start runs the periodic refresh until close.
func (k *jwks) start(every time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	k.stop = cancel
	k.wg.Go(func() { k.run(ctx, every) })
}

func (k *jwks) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case <-ctx.Done():
			return
		case k.sem <- struct{}{}:
		}
		// A failed refresh keeps the previous keys: an unreachable key
		// server must not lock every client out.
		err := k.fetch(ctx)
		<-k.sem
		if k.onRefresh != nil {
			k.onRefresh(err)
		}
	}
}

func (k *jwks) close() {
	k.amu.Lock()
	k.closed = true
	k.amu.Unlock()
	if k.stop != nil {
		k.stop()
	}
	k.wg.Wait()
}

// earlyAllowed reports whether an early refresh may run now (see
// earlyRefreshGap).
func (k *jwks) earlyAllowed(now time.Time) bool {
	last := k.lastEarly.Load()
	return last == 0 || now.Sub(time.Unix(0, last)) >= earlyRefreshGap
}

// mayBring reports whether waiting could bring an unknown kid: an early
// refresh is allowed now, or one is under way that the caller can join.
func (k *jwks) mayBring(now time.Time) bool {
	if k.earlyAllowed(now) {
		return true
	}
	k.amu.Lock()
	defer k.amu.Unlock()
	return k.asyncOn
}

// refreshAsync refreshes the set for kid on a goroutine the jwks owns and
// then calls done; callers arriving while it runs join it. done may run on
// the caller's goroutine (after close).
func (k *jwks) refreshAsync(kid string, timeout time.Duration, done func()) {
	k.amu.Lock()
	if k.closed {
		k.amu.Unlock()
		done()
		return
	}
	k.waiters = append(k.waiters, done)
	if k.asyncOn {
		k.amu.Unlock()
		return
	}
	k.asyncOn = true
	k.wg.Add(1)
	k.amu.Unlock()
	go func() {
		defer k.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		k.refreshFor(ctx, kid)
		cancel()
		k.amu.Lock()
		fns := k.waiters
		k.waiters, k.asyncOn = nil, false
		k.amu.Unlock()
		for _, fn := range fns {
			fn()
		}
	}()
}

// refreshFor fetches the key set early because a token names kid, which
// the current set lacks. It reports whether the set now has kid; it
// fetches at most once per earlyRefreshGap.
func (k *jwks) refreshFor(ctx context.Context, kid string) bool {
	select {
	case <-ctx.Done():
		return false
	case k.sem <- struct{}{}:
	}
	defer func() { <-k.sem }()
	if _, ok := k.keys.Load().lookup(kid); ok {
		return true // another caller's refresh brought it
	}
	now := time.Now()
	if !k.earlyAllowed(now) {
		return false
	}
	k.lastEarly.Store(now.UnixNano())
	if k.fetch(ctx) != nil {
		return false
	}
	_, ok := k.keys.Load().lookup(kid)
	return ok
}

// fetch downloads and installs the key set; the caller holds sem.
func (k *jwks) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fmt.Errorf("%w: JWKS URL: %v", ErrBadKey, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("auth: fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("auth: fetching JWKS: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("auth: fetching JWKS: %w", err)
	}
	if len(b) > maxJWKSBytes {
		return fmt.Errorf("%w: JWKS larger than %d bytes", ErrBadKey, maxJWKSBytes)
	}
	s, err := parseJWKS(b)
	if err != nil {
		return err
	}
	k.keys.Store(s)
	return nil
}
