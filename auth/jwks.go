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
	lastEarly time.Time     // guarded by sem
	onRefresh func(error)   // test hook, called after every periodic refresh

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
	if k.stop != nil {
		k.stop()
	}
	k.wg.Wait()
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
	if !k.lastEarly.IsZero() && now.Sub(k.lastEarly) < earlyRefreshGap {
		return false
	}
	k.lastEarly = now
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
