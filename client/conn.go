package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/subsock/subsock/proto"
)

// Conn is one micro socket: a WebSocket connection to a node that
// reconnects by itself and keeps its subscriptions across connections.
// Its methods are safe for concurrent use.
type Conn struct {
	url    string
	opts   Options
	codec  proto.Codec
	log    *zap.Logger
	q      queue
	bufs   sync.Pool // *[]byte envelope buffers
	nextID atomic.Uint64
	stats  counters

	ctx         context.Context // ends at Close
	cancel      context.CancelFunc
	closeOnce   sync.Once
	superDone   chan struct{} // the supervisor has returned
	stopHandler chan struct{}
	handlerDone chan struct{}

	subsMu sync.RWMutex
	subs   map[string]*subscription

	streamMu    sync.Mutex
	streams     map[string]*stream // positions of history topics (history.go)
	recoverWake chan struct{}      // capacity 1: a gap waits for the supervisor
	roomWanted  atomic.Bool        // a recovery waits for the handler queue to drain

	mu    sync.Mutex
	sess  *session      // the current connection; nil between connections
	up    chan struct{} // closed once sess is set; replaced when it goes
	last  error         // the last failed attempt, for Dial's error
	fatal error         // why the Conn stopped by itself (ErrDisconnected, ErrUnauthorized, ErrForbidden); nil before
}

type subscription struct {
	h Handler
	// onJoin and onLeave are SubscribeOptions' (nil when not given).
	onJoin, onLeave func(Member)
	// acked: a node has acknowledged the topic once, so reconnections
	// renew it. Until then its Subscribe call does, on each connection,
	// with its own options (a Last the resubscription would lose).
	acked atomic.Bool
}

// Dial opens a connection to the node at rawURL (ws://host:port/ws). It
// retries with the backoff policy until a handshake succeeds, ctx ends, or
// the server refuses for a reason retrying cannot fix (an HTTP 4xx other
// than 408/429, or the subprotocol). A 401 or 403 (ErrUnauthorized,
// ErrForbidden) is retried only with another token: after the backoff
// Dial asks Options.Token again, and returns the refusal when there is no
// provider or it gives the same token. After that first connection, the
// Conn reconnects by itself until Close, or until such a refusal stops it
// (see Err).
func Dial(ctx context.Context, rawURL string, opts Options) (*Conn, error) {
	if err := checkURL(rawURL); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	cctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		url:         rawURL,
		opts:        opts,
		codec:       opts.Codec,
		log:         opts.Logger,
		q:           newQueue(opts.Policy, opts.Buffer),
		ctx:         cctx,
		cancel:      cancel,
		superDone:   make(chan struct{}),
		stopHandler: make(chan struct{}),
		handlerDone: make(chan struct{}),
		subs:        make(map[string]*subscription),
		streams:     make(map[string]*stream),
		recoverWake: make(chan struct{}, 1),
		up:          make(chan struct{}),
	}
	c.bufs.New = func() any { b := make([]byte, 0, 256); return &b }
	first := make(chan error, 1)
	go c.handle()
	go c.supervise(first)
	select {
	case err := <-first:
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		return c, nil
	case <-ctx.Done():
		last := c.lastErr()
		_ = c.Close()
		if last != nil {
			return nil, fmt.Errorf("client: dial %s: %w; last attempt: %w", rawURL, ctx.Err(), last)
		}
		return nil, fmt.Errorf("client: dial %s: %w", rawURL, ctx.Err())
	}
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return fmt.Errorf("%w: %q: the scheme must be ws or wss", ErrBadURL, raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: %q has no host", ErrBadURL, raw)
	}
	return nil
}

// Subscribe routes topic's messages to h and waits for the server's ack;
// the subscription is renewed on every reconnect until Unsubscribe. A
// second Subscribe of the same topic replaces the handler. If the server
// refuses, the error is a *ServerError (invalid_topic, forbidden,
// too_many_subscriptions, ...) and nothing changes. A connection lost
// while waiting is retried on the next one, within ctx.
//
// On a topic with history (see Recovery) the Conn keeps its position and
// delivers each offset once, in order, across reconnects and gaps.
func (c *Conn) Subscribe(ctx context.Context, topic string, h Handler) error {
	return c.SubscribeWith(ctx, topic, h, SubscribeOptions{})
}

// SubscribeWith is Subscribe with per-call options: the last publications
// of a history topic delivered first (SubscribeOptions.Last). They are
// queued for h, ahead of the live messages, by the time it returns.
func (c *Conn) SubscribeWith(ctx context.Context, topic string, h Handler, o SubscribeOptions) error {
	if h == nil {
		return ErrNilHandler
	}
	sub := &subscription{h: h, onJoin: o.OnJoin, onLeave: o.OnLeave}
	// The handler is in place before the sub leaves, so a replay sent
	// ahead of the ack is delivered, not dropped as unsubscribed.
	c.subsMu.Lock()
	if c.ctx.Err() != nil {
		c.subsMu.Unlock()
		return c.stopErr()
	}
	prev := c.subs[topic]
	if prev != nil && prev.acked.Load() {
		sub.acked.Store(true) // a new handler for a topic held already
	}
	c.subs[topic] = sub
	c.subsMu.Unlock()
	req := proto.Request{Op: proto.OpSub, Topics: []string{topic}}
	if o.Last > 0 {
		req.Last = uint64(o.Last)
	}
	for {
		s, err := c.session(ctx)
		if err == nil {
			r := req // callOn sets the id; each attempt gets its own
			err = c.callOn(ctx, s, &r, false)
		}
		if errors.Is(err, ErrConnectionLost) && c.ctx.Err() == nil {
			continue
		}
		if err != nil {
			c.rollback(topic, sub, prev)
			return err
		}
		sub.acked.Store(true)
		if s.isEnded() {
			// The connection ended after the ack, and its successor may
			// have been resubscribed before acked was set.
			c.renew(topic)
		}
		return nil
	}
}

// renew subscribes topic on the live connection, from its position, and
// waits for the answer (bounded as the supervisor's own subs). Without a
// live connection there is nothing to do: the next one renews it.
func (c *Conn) renew(topic string) {
	if s := c.current(); s != nil {
		one := []string{topic}
		_ = c.subscribeOn(s, one, c.sinceFor(one))
	}
}

// rollback undoes a failed Subscribe unless another one replaced it since.
func (c *Conn) rollback(topic string, sub, prev *subscription) {
	c.subsMu.Lock()
	if c.subs[topic] != sub {
		c.subsMu.Unlock()
		return
	}
	if prev != nil {
		c.subs[topic] = prev
		c.subsMu.Unlock()
		return
	}
	delete(c.subs, topic)
	c.subsMu.Unlock()
	c.forgetStream(topic)
	// The request may have reached the server before ctx ended; take it
	// back without waiting (no id: an unsub of a topic not held is a no-op).
	if s := c.current(); s != nil {
		_ = c.send(s, &proto.Request{Op: proto.OpUnsub, Topics: []string{topic}}, false)
	}
}

// Unsubscribe stops topic's deliveries at once (queued messages for it are
// discarded) and waits for the server's ack while a connection is up.
func (c *Conn) Unsubscribe(ctx context.Context, topic string) error {
	c.subsMu.Lock()
	_, had := c.subs[topic]
	delete(c.subs, topic)
	c.subsMu.Unlock()
	if !had {
		return nil
	}
	c.forgetStream(topic)
	s := c.current()
	if s == nil {
		return nil // the next connection will not resubscribe it
	}
	err := c.callOn(ctx, s, &proto.Request{Op: proto.OpUnsub, Topics: []string{topic}}, false)
	if errors.Is(err, ErrConnectionLost) {
		return nil
	}
	return err
}

// Publish sends v to topic, encoded with the connection's codec (a Raw
// value is sent as is). It waits for a connection if none is up. With
// Options.AckPublish, or when ctx has a deadline, it also waits for the
// server's answer and returns its refusal as a *ServerError; otherwise a
// refusal reaches Options.OnError.
func (c *Conn) Publish(ctx context.Context, topic string, v any) error {
	return c.PublishWith(ctx, topic, v, PublishOptions{})
}

// PublishOptions are per-call settings of PublishWith. The zero value is a
// plain Publish.
type PublishOptions struct {
	// NoEcho keeps the message from this Conn's own subscription to topic
	// ("echo":false); every other subscriber, on every node, gets it. On a
	// history topic the Conn counts the message's offset as seen (the
	// request always asks for the ack that carries it), so its absence
	// from the Conn's stream is no gap to recover.
	NoEcho bool
}

// PublishWith is Publish with per-call options.
func (c *Conn) PublishWith(ctx context.Context, topic string, v any, o PublishOptions) error {
	data, err := encodeValue(v, c.codec.Format())
	if err != nil {
		return err
	}
	req := &proto.Request{Op: proto.OpPub, Topic: topic, Data: data, NoEcho: o.NoEcho}
	_, deadline := ctx.Deadline()
	wait := deadline || c.opts.AckPublish
	if wait && !o.NoEcho {
		return c.call(ctx, req)
	}
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	if o.NoEcho {
		return c.publishNoEcho(ctx, s, req, wait)
	}
	if err := c.send(s, req, false); err != nil {
		s.kill(err)
		return fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	c.stats.published.Add(1)
	return nil
}

// publishNoEcho sends a pub with "echo":false on s. It always carries an
// id: on a history topic the ack's offset is one the Conn will not see
// (see echoPub). Without wait, a refusal goes to OnError.
func (c *Conn) publishNoEcho(ctx context.Context, s *session, req *proto.Request, wait bool) error {
	done := c.echoPub(s, req.Topic)
	reply := func(ack *proto.Reply, err error) {
		if done != nil {
			done(ack, err)
		}
		var se *ServerError
		if !wait && errors.As(err, &se) {
			se.Op, se.Topic = req.Op.String(), req.Topic
			c.opts.OnError(se)
		}
	}
	if wait {
		return c.exchange(ctx, s, req, false, reply)
	}
	return c.start(s, req, false, waiter{ch: make(chan error, 1), reply: reply})
}

// Refresh fetches a token from Options.Token and hands it to the server
// in band ({"op":"auth"}), before the current one expires (the server
// closes with 4001 when it does). Subscriptions the new token no longer
// allows are dropped by the server and reported to OnError.
func (c *Conn) Refresh(ctx context.Context) error {
	if c.opts.Token == nil {
		return ErrNoToken
	}
	tok, err := c.opts.Token(ctx)
	if err != nil {
		return fmt.Errorf("client: token: %w", err)
	}
	return c.call(ctx, &proto.Request{Op: proto.OpAuth, Token: tok})
}

// Close ends the connection with a close handshake (1000), stops every
// goroutine of the Conn and waits for them, the handler goroutine
// included; messages still queued are discarded. It must not be called
// from a Handler. Calls after the first return nil.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		<-c.superDone
		close(c.stopHandler)
		<-c.handlerDone
	})
	return nil
}

// Done is closed when the Conn has stopped for good: after Close, when the
// server disconnected it, or when it refused the Conn's credentials (see
// Err). Close must still be called.
func (c *Conn) Done() <-chan struct{} { return c.ctx.Done() }

// Err is nil while the Conn runs. Once Done is closed it says why:
// ErrClosed after Close; an error matching ErrDisconnected (and a
// *CloseError with code 4003) when a backend had the server disconnect
// it; or a *HandshakeError matching ErrUnauthorized (401) or ErrForbidden
// (403) when a reconnection was refused and Options.Token gave no other
// token (or there is no provider). Calls then return that error.
func (c *Conn) Err() error {
	if c.ctx.Err() == nil {
		return nil
	}
	return c.stopErr()
}

// stopErr is what calls return once the Conn has stopped.
func (c *Conn) stopErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fatal != nil {
		return c.fatal
	}
	return ErrClosed
}

// Stats returns the connection's current figures.
func (c *Conn) Stats() Stats {
	s := c.current()
	c.subsMu.RLock()
	n := len(c.subs)
	c.subsMu.RUnlock()
	return Stats{
		Connected:     s != nil,
		Connects:      c.stats.connects.Load(),
		DialFailures:  c.stats.dialFailures.Load(),
		Received:      c.stats.received.Load(),
		Delivered:     c.stats.delivered.Load(),
		Dropped:       c.stats.dropped.Load(),
		Coalesced:     c.stats.coalesced.Load(),
		Published:     c.stats.published.Load(),
		Subscriptions: n,
		Queued:        c.q.pending(),
	}
}

// ackedTopics returns the subscribed topics a node has acknowledged,
// sorted.
func (c *Conn) ackedTopics() []string {
	c.subsMu.RLock()
	ts := make([]string, 0, len(c.subs))
	for t, sub := range c.subs {
		if sub.acked.Load() {
			ts = append(ts, t)
		}
	}
	c.subsMu.RUnlock()
	sort.Strings(ts)
	return ts
}

// current returns the live session, or nil.
func (c *Conn) current() *session {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil || s.isEnded() {
		return nil
	}
	return s
}

// session waits for a live connection.
func (c *Conn) session(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, up := c.sess, c.up
		c.mu.Unlock()
		if c.ctx.Err() != nil {
			return nil, c.stopErr()
		}
		wait := up
		if s != nil {
			if !s.isEnded() {
				return s, nil
			}
			wait = s.gone
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, c.stopErr()
		}
	}
}

// call sends req with a fresh id on the live connection and waits for
// the server's answer.
func (c *Conn) call(ctx context.Context, req *proto.Request) error {
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	return c.callOn(ctx, s, req, false)
}

// callOn is call on a given session; bounded is for the supervisor's own
// requests (see send).
func (c *Conn) callOn(ctx context.Context, s *session, req *proto.Request, bounded bool) error {
	return c.exchange(ctx, s, req, bounded, nil)
}

// query sends req on the live connection and waits for its ack, which it
// hands to read on the reader goroutine first (read must not block).
func (c *Conn) query(ctx context.Context, req *proto.Request, read func(ack *proto.Reply)) error {
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	return c.exchange(ctx, s, req, false, func(ack *proto.Reply, _ error) {
		if ack != nil {
			read(ack)
		}
	})
}

// exchange is callOn with a reply hook (see waiter). A request with a
// hook stays registered when ctx ends, so that the hook runs once
// whatever happens: with the answer, or ErrConnectionLost.
func (c *Conn) exchange(ctx context.Context, s *session, req *proto.Request, bounded bool, reply func(*proto.Reply, error)) error {
	w := waiter{ch: make(chan error, 1), reply: reply}
	if err := c.start(s, req, bounded, w); err != nil {
		return err
	}
	select {
	case err := <-w.ch:
		var se *ServerError
		if errors.As(err, &se) {
			se.Op = req.Op.String()
			if req.Topic != "" {
				se.Topic = req.Topic
			} else if len(req.Topics) == 1 {
				se.Topic = req.Topics[0]
			}
		}
		if errors.Is(err, ErrConnectionLost) && c.ctx.Err() != nil {
			return c.stopErr()
		}
		return err
	case <-ctx.Done():
		if reply == nil {
			s.unregister(req.ID)
		}
		return ctx.Err()
	}
}

// start registers w under a fresh id for req and sends it on s, without
// waiting for the answer. When it fails, w's hook has run (or never will
// be registered) and w.ch is left empty.
func (c *Conn) start(s *session, req *proto.Request, bounded bool, w waiter) error {
	id := c.nextID.Add(1)
	req.ID, req.HasID = id, true
	if !s.register(id, w) {
		if w.reply != nil {
			w.reply(nil, ErrConnectionLost)
		}
		return ErrConnectionLost
	}
	if err := c.send(s, req, bounded); err != nil {
		if s.unregister(id) && w.reply != nil {
			w.reply(nil, ErrConnectionLost)
		}
		s.kill(err)
		return fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	if req.Op == proto.OpPub {
		c.stats.published.Add(1)
	}
	return nil
}

// send encodes req and writes it. Callers' writes rely on the
// supervisor's stall watchdog, which keeps them free of per-write timers;
// the supervisor's own writes (bounded) carry WriteTimeout themselves,
// since it cannot watch itself.
func (c *Conn) send(s *session, req *proto.Request, bounded bool) error {
	bp := c.bufs.Get().(*[]byte)
	b := c.codec.AppendRequest((*bp)[:0], req)
	var err error
	if bounded {
		err = s.writeBounded(b)
	} else {
		err = s.write(b)
	}
	if cap(b) <= 64<<10 {
		*bp = b
		c.bufs.Put(bp)
	}
	return err
}

func (c *Conn) lastErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
