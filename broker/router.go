package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/subsock/subsock/internal/shrink"
)

// RouterConfig tunes a Router; zero fields take the defaults.
type RouterConfig struct {
	// Linger is how long a topic stays subscribed upstream after its last
	// local subscriber left, so that a flapping topic does not churn the
	// broker. Default: 2s.
	Linger time.Duration
	// BatchDelay is the longest a new subscription (or an expired linger)
	// waits to be batched with others before the call. Default: 2ms.
	BatchDelay time.Duration
	// BatchSize caps the topics of one Subscribe or Unsubscribe call; a
	// full batch goes out without waiting for BatchDelay. Default: 512.
	BatchSize int
	// CallTimeout bounds each upstream call. Default: 5s.
	CallTimeout time.Duration
	// OnError, if set, receives every failed upstream call, on the
	// Router's goroutine; it must not call the Router. Nothing is retried
	// here: a Broker keeps the interest it was given and subscribes it
	// again by itself once the backbone is back.
	OnError func(error)
}

// WithDefaults returns c with each zero field set to the default documented
// on it: the configuration NewRouter uses. Callers that show defaults (the
// command's flags) take them from here, so each is written once.
func (c RouterConfig) WithDefaults() RouterConfig { return c.withDefaults() }

func (c RouterConfig) withDefaults() RouterConfig {
	if c.Linger <= 0 {
		c.Linger = 2 * time.Second
	}
	if c.BatchDelay <= 0 {
		c.BatchDelay = 2 * time.Millisecond
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 512
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 5 * time.Second
	}
	return c
}

// RouterStats counts a Router's upstream calls.
type RouterStats struct {
	Subscribes   uint64 // Subscribe calls made
	Unsubscribes uint64 // Unsubscribe calls made
	Errors       uint64 // calls that failed
}

// Router holds upstream interest for a node: Acquire when a topic gets its
// first local subscriber, Release after its last leaves. Releases are
// debounced (Linger) so a flapping topic does not churn the broker;
// (un)subscriptions are batched (many topics arriving at once become a few
// calls of up to BatchSize topics, flushed after at most BatchDelay).
// Router owns one goroutine, stopped by Close; all broker calls are made
// from it, one at a time, so they reach the broker in order.
//
// Acquire and Release are counted per topic, so an Acquire and a Release
// racing from two goroutines end in the right state whatever their order.
// They take one mutex for a map update and never wait on the network.
type Router struct {
	b      Broker
	cfg    RouterConfig
	direct bool // the broker broadcasts (see Broadcaster): nothing to route

	mu           sync.Mutex
	routes       map[string]route
	held         int       // routes that are up or queued
	pending      []string  // topics to subscribe; each has route.queued set
	pendingSince time.Time // when pending became non-empty
	lingering    []linger  // releases in deadline order (Linger is constant)
	closed       bool

	// routesHigh rebuilds routes once a storm of topics has left (see
	// shrinkLocked), since a Go map keeps the memory of its largest size.
	routesHigh shrink.Watermark

	subscribes, unsubscribes, errors atomic.Uint64

	// waiters are Await callbacks for topics whose subscribe call has not
	// returned; nil when none wait.
	waiters map[string][]func(error)

	kick   chan struct{} // cap 1: pending or lingering became non-empty, or pending is full
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type route struct {
	refs   int    // Acquires minus Releases; negative while a Release overtook its Acquire
	up     bool   // subscribed upstream, or about to be by the call under way
	live   bool   // the subscribe call for this route succeeded
	failed bool   // the last subscribe call for this route failed; the next Await calls again
	queued bool   // in Router.pending
	gen    uint32 // bumped by each first Acquire and last Release; stale lingers do not match
}

type linger struct {
	topic string
	at    time.Time
	gen   uint32
}

// NewRouter starts a Router in front of b.
func NewRouter(b Broker, cfg RouterConfig) *Router {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{
		b:      b,
		cfg:    cfg.withDefaults(),
		routes: make(map[string]route),
		kick:   make(chan struct{}, 1),
		ctx:    ctx,
		cancel: cancel,
	}
	if bc, ok := b.(Broadcaster); ok && bc.Broadcasts() {
		// Every topic reaches the node anyway: no route is booked and no
		// call is made, so a topic costs nothing here.
		r.direct = true
		return r
	}
	r.wg.Add(1)
	go r.run()
	return r
}

func (r *Router) signal() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Acquire notes one more local holder of topic. The first one makes the
// topic subscribed upstream (within BatchDelay), or cancels its pending
// release.
func (r *Router) Acquire(topic string) {
	if r.direct {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	rt := r.routes[topic]
	rt.refs++
	if rt.refs == 1 {
		rt.gen++ // cancels a lingering release
		if !rt.up && !rt.queued {
			rt.queued = true
			r.held++
			r.queueLocked(topic)
		}
	}
	// Back to 0 from below, putLocked forgets the topic: this Acquire was
	// overtaken by its Release.
	r.putLocked(topic, rt)
}

// queueLocked adds topic to the next subscribe batch.
func (r *Router) queueLocked(topic string) {
	if len(r.pending) == 0 {
		r.pendingSince = time.Now()
		r.signal()
	}
	r.pending = append(r.pending, topic)
	if len(r.pending) == r.cfg.BatchSize {
		r.signal()
	}
}

// Release notes one local holder fewer. After the last one the topic is
// unsubscribed upstream once Linger has passed without a new Acquire. A
// Release that overtakes its Acquire is counted too, and the pair cancels.
func (r *Router) Release(topic string) {
	if r.direct {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	rt := r.routes[topic]
	rt.refs--
	if rt.refs == 0 {
		rt.gen++
		if rt.up {
			if len(r.lingering) == 0 {
				r.signal()
			}
			r.lingering = append(r.lingering, linger{topic: topic, at: time.Now().Add(r.cfg.Linger), gen: rt.gen})
		}
		// A topic still queued to subscribe is dropped when the queue is
		// flushed, without any call.
	}
	r.putLocked(topic, rt)
}

// Await calls fn once topic's upstream subscription is live (nil), or once
// the call that should have made it failed (an error wrapping
// ErrUnavailable), so a node can acknowledge a subscription only once
// messages published upstream will reach it. A topic that is live, or
// that no one holds, is answered at once on the caller's goroutine; after
// a failure the next Await calls the broker again. Otherwise fn runs on the
// Router's goroutine after the call returns, with no Router lock held: it
// must be quick, and may call Acquire and Release. Await never waits.
func (r *Router) Await(topic string, fn func(error)) {
	if r.direct {
		fn(nil)
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		fn(ErrClosed)
		return
	}
	rt, ok := r.routes[topic]
	if !ok || rt.live || rt.refs <= 0 {
		r.mu.Unlock()
		fn(nil)
		return
	}
	if rt.failed && !rt.queued {
		// The broker kept the interest and restores it on reconnect, but
		// only a call that returns says it is in place: make one.
		rt.failed = false
		rt.queued = true
		r.queueLocked(topic)
		r.routes[topic] = rt
	}
	if r.waiters == nil {
		r.waiters = make(map[string][]func(error))
	}
	r.waiters[topic] = append(r.waiters[topic], fn)
	r.mu.Unlock()
}

// Ready is Await for callers that may block: it waits until topic is live
// (nil), its subscribe call failed, or ctx ends.
func (r *Router) Ready(ctx context.Context, topic string) error {
	done := make(chan error, 1)
	r.Await(topic, func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Held is the number of topics subscribed upstream, pending subscription,
// or lingering before their unsubscription.
func (r *Router) Held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held
}

// Stats returns the call counters.
func (r *Router) Stats() RouterStats {
	return RouterStats{
		Subscribes:   r.subscribes.Load(),
		Unsubscribes: r.unsubscribes.Load(),
		Errors:       r.errors.Load(),
	}
}

// Close stops the Router's goroutine and waits for it; a call under way is
// cancelled. It leaves the broker's subscriptions as they are: the broker's
// own Close drops them. Acquire and Release do nothing afterwards.
func (r *Router) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	waiters := r.waiters
	r.waiters = nil
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	for _, fns := range waiters {
		for _, fn := range fns {
			fn(ErrClosed)
		}
	}
	return nil
}

// run makes the due calls, then sleeps until the next batch is due or a
// kick says that something new arrived.
func (r *Router) run() {
	defer r.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		subs, unsubs, dropped, wait := r.due(time.Now())
		if len(dropped) > 0 {
			r.settle(dropped, nil) // nobody holds them: nothing to wait for
		}
		r.call(subs, true)
		r.call(unsubs, false)
		if len(subs) > 0 || len(unsubs) > 0 {
			continue // more may have become due during the calls
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-r.ctx.Done():
			return
		case <-r.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// due takes the subscriptions and unsubscriptions whose batch is due at now,
// the queued topics no one holds any more (dropped without a call), and
// says how long until the next batch is (0: nothing is waiting).
func (r *Router) due(now time.Time) (subs, unsubs, dropped []string, wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.pending); n > 0 {
		take := n // BatchDelay is up: everything goes
		if now.Before(r.pendingSince.Add(r.cfg.BatchDelay)) {
			take = n - n%r.cfg.BatchSize // only full batches go early
		}
		for _, t := range r.pending[:take] {
			rt := r.routes[t]
			rt.queued = false
			if rt.refs <= 0 { // acquired and released before it went out
				if !rt.up { // an up route (a retry after a failure) lingers out as usual
					r.held--
				}
				r.putLocked(t, rt)
				dropped = append(dropped, t)
				continue
			}
			rt.up = true
			r.routes[t] = rt
			subs = append(subs, t)
		}
		rest := copy(r.pending, r.pending[take:])
		clear(r.pending[rest:])
		r.pending = r.pending[:rest]
	}
	// The front's deadline plus BatchDelay gathers the releases expiring
	// close together into one call.
	if len(r.lingering) > 0 && !now.Before(r.lingering[0].at.Add(r.cfg.BatchDelay)) {
		i := 0
		for ; i < len(r.lingering) && !now.Before(r.lingering[i].at); i++ {
			l := r.lingering[i]
			rt, ok := r.routes[l.topic]
			if !ok || rt.gen != l.gen || rt.refs > 0 || !rt.up {
				continue // acquired again since
			}
			rt.up, rt.live = false, false
			r.held--
			r.putLocked(l.topic, rt)
			unsubs = append(unsubs, l.topic)
		}
		clear(r.lingering[:i])
		r.lingering = shrink.Slice(r.lingering[i:])
		if len(r.lingering) == 0 {
			r.lingering = nil
		}
		if i > 0 {
			r.shrinkLocked()
		}
	}
	var next time.Time
	if len(r.pending) > 0 {
		next = r.pendingSince.Add(r.cfg.BatchDelay)
	}
	if len(r.lingering) > 0 {
		if at := r.lingering[0].at.Add(r.cfg.BatchDelay); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if !next.IsZero() {
		wait = max(next.Sub(now), time.Nanosecond)
	}
	return subs, unsubs, dropped, wait
}

// settle records the outcome of one subscribe call for its topics and
// answers their Await callbacks, outside the lock.
func (r *Router) settle(topics []string, err error) {
	var fns []func(error)
	r.mu.Lock()
	for _, t := range topics {
		if rt, ok := r.routes[t]; ok && rt.up {
			rt.live, rt.failed = err == nil, err != nil
			r.routes[t] = rt
		}
		if w, ok := r.waiters[t]; ok {
			fns = append(fns, w...)
			delete(r.waiters, t)
		}
	}
	if len(r.waiters) == 0 {
		r.waiters = nil // a map that held a storm's waiters keeps its size
	}
	r.mu.Unlock()
	if err != nil && !errors.Is(err, ErrUnavailable) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, fn := range fns {
		fn(err)
	}
}

// putLocked stores rt, or forgets it when it holds nothing.
func (r *Router) putLocked(topic string, rt route) {
	if rt.refs == 0 && !rt.up && !rt.queued {
		delete(r.routes, topic)
		return
	}
	r.routes[topic] = rt
	r.routesHigh.Grew(len(r.routes))
}

// shrinkLocked gives back the memory of a storm of topics that has left,
// rebuilding the route map and the pending queue once they are mostly
// empty. It runs after a batch of lingers expired, where held topics
// leave: a topic passes there at most once per Linger, so a working set
// that comes and goes faster (acquired and released within one batch)
// cannot make the map be rebuilt and regrown over and over.
func (r *Router) shrinkLocked() {
	if r.routesHigh.Shrunk(len(r.routes)) {
		r.routes = shrink.Map(r.routes)
	}
	r.pending = shrink.Slice(r.pending)
}

// call sends topics upstream in calls of at most BatchSize.
func (r *Router) call(topics []string, sub bool) {
	for len(topics) > 0 {
		n := min(len(topics), r.cfg.BatchSize)
		batch := topics[:n]
		topics = topics[n:]
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.CallTimeout)
		var err error
		if sub {
			r.subscribes.Add(1)
			err = r.b.Subscribe(ctx, batch...)
			if r.ctx.Err() == nil {
				r.settle(batch, err)
			}
		} else {
			r.unsubscribes.Add(1)
			err = r.b.Unsubscribe(ctx, batch...)
		}
		cancel()
		if err != nil && r.ctx.Err() == nil { // a call cut short by Close is no failure
			r.errors.Add(1)
			if r.cfg.OnError != nil {
				r.cfg.OnError(err)
			}
		}
	}
}
