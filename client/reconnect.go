package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"

	"github.com/subsock/subsock/proto"
)

// resubBatch is how many topics one resubscription request carries; well
// under the server's per-request limit (256 by default).
const resubBatch = 100

// forbiddenWindow: after a 403, at most one more attempt within it.
const forbiddenWindow = 10 * time.Second

// supervise is the Conn's connection loop: connect, resubscribe, watch
// the connection, back off, again, until Close. first receives the outcome
// of the first connection for Dial.
func (c *Conn) supervise(first chan<- error) {
	defer close(c.superDone)
	failures := 0
	connected := false
	// A refusal of the credentials (401, 403) holds until Options.Token
	// gives another token: the same one would only be refused again, by
	// every client of a misconfigured application at once.
	var (
		refused   error     // the refusal that holds; nil: none
		refusedOf string    // the token it refused
		forbidden time.Time // the last 403
		notBefore time.Time // two 403s within forbiddenWindow: no attempt before this
	)
	for {
		s := newSession(c.codec, c.opts.WriteTimeout)
		var prev *string
		if refused != nil {
			prev = &refusedOf
		}
		token, err := c.connect(s, prev)
		if c.ctx.Err() != nil {
			if err == nil {
				_ = s.ws.CloseNow()
			}
			return
		}
		if errors.Is(err, errSameToken) {
			c.giveUp(first, connected, refused)
			return
		}
		if err != nil {
			c.stats.dialFailures.Add(1)
			c.mu.Lock()
			c.last = err
			c.mu.Unlock()
			if credentialsRefused(err) {
				if c.opts.Token == nil {
					c.giveUp(first, connected, err)
					return
				}
				refused, refusedOf = err, token
				if errors.Is(err, ErrForbidden) {
					now := time.Now()
					if now.Sub(forbidden) < forbiddenWindow {
						notBefore = forbidden.Add(forbiddenWindow)
					}
					forbidden = now
				}
			} else if !connected && permanent(err) {
				first <- err
				return
			}
			d := max(c.opts.Backoff.delay(failures, err), time.Until(notBefore))
			c.opts.OnError(&RetryError{Err: err, Wait: d, Failures: failures + 1})
			c.log.Debug("connection attempt failed", zap.String("url", c.url), zap.Error(err), zap.Duration("retry_in", d))
			failures++
			if !c.sleep(d) {
				return
			}
			continue
		}
		refused = nil
		c.stats.connects.Add(1)
		c.attach(s)
		if !connected {
			connected = true
			first <- nil
		}
		go c.read(s)
		if c.resubscribe(s) {
			c.log.Info("connected", zap.String("url", c.url), zap.Int("failures_before", failures))
			c.opts.OnConnect()
		}
		c.watch(s)
		cause := s.err()
		c.detach(s)
		if c.ctx.Err() != nil {
			c.opts.OnDisconnect(ErrClosed)
			return
		}
		if disconnected(cause) {
			// A backend had the server end this client: coming back
			// unchanged would only be refused again, or undo its decision.
			err := fmt.Errorf("%w: %w", ErrDisconnected, cause)
			c.halt(err)
			c.log.Info("disconnected by the server; not reconnecting", zap.String("url", c.url), zap.Error(cause))
			c.opts.OnDisconnect(err)
			return
		}
		// A connection that outlived the longest wait was a success; one
		// that did not keeps the failure count growing, so a server that
		// accepts and drops at once is not hammered.
		if time.Since(s.born) >= c.opts.Backoff.Max {
			failures = 0
		}
		d := c.opts.Backoff.delay(failures, cause)
		c.opts.OnDisconnect(&RetryError{Err: cause, Wait: d, Failures: failures})
		c.log.Info("disconnected", zap.String("url", c.url), zap.Error(cause), zap.Duration("retry_in", d))
		failures++
		if !c.sleep(d) {
			return
		}
	}
}

// giveUp ends the supervisor's attempts for err, which nothing on this
// side can fix: Dial returns it before the first connection; after it, the
// Conn stops (Done, Err) and OnError receives it.
func (c *Conn) giveUp(first chan<- error, connected bool, err error) {
	if !connected {
		first <- err
		return
	}
	c.halt(err)
	c.log.Info("refused by the server; not reconnecting", zap.String("url", c.url), zap.Error(err))
	c.opts.OnError(err)
}

// halt stops the Conn by itself: err is what Err and every call return.
func (c *Conn) halt(err error) {
	c.mu.Lock()
	c.fatal = err
	c.mu.Unlock()
	c.cancel()
}

// credentialsRefused reports a handshake refused for who the client is
// (401, 403) rather than for the server's state.
func credentialsRefused(err error) bool {
	return errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden)
}

// disconnected reports a close with 4003: a backend asked the server to
// disconnect this client (POST /api/disconnect).
func disconnected(err error) bool {
	var ce *CloseError
	return errors.As(err, &ce) && ce.Code == closeDisconnected
}

// closeDisconnected is the close code of a server-side disconnect.
const closeDisconnected = 4003

// permanent reports failures retrying cannot fix, which Dial returns at
// once rather than retrying until its ctx ends.
func permanent(err error) bool {
	var he *HandshakeError
	if errors.As(err, &he) {
		return !he.temporary()
	}
	return errors.Is(err, ErrSubprotocol)
}

// sleep waits d; false when the Conn closed meanwhile.
func (c *Conn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// connect fetches a token and performs the handshake with it; it returns
// the token. When refused is set (the server refused that token) it
// dials only with another one, and fails with errSameToken otherwise.
func (c *Conn) connect(s *session, refused *string) (string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.DialTimeout)
	defer cancel()
	token := ""
	if c.opts.Token != nil {
		t, err := c.opts.Token(ctx)
		if err != nil {
			return "", fmt.Errorf("client: token: %w", err)
		}
		token = t
	}
	if refused != nil && token == *refused {
		return token, errSameToken
	}
	return token, dial(ctx, c.url, &c.opts, s, token)
}

// attach makes s the live connection and wakes callers waiting for one.
func (c *Conn) attach(s *session) {
	c.mu.Lock()
	c.sess = s
	close(c.up)
	c.mu.Unlock()
}

// detach lets go of an ended s; callers that saw it wait for the next.
func (c *Conn) detach(s *session) {
	c.mu.Lock()
	c.sess = nil
	c.up = make(chan struct{})
	c.mu.Unlock()
	close(s.gone)
}

// watch returns once s has ended (its reader returned), ending it first
// when the server falls silent or a write stalls. It sends the app-level
// pings: some failures (a dead NAT mapping, a frozen host) never reset the
// TCP connection, so a server that sends nothing within PingTimeout of a
// ping is taken as gone. It recovers the gaps the reader finds in history
// topics (recoverGaps). And it is the write watchdog: a write under way
// with no write completed for WriteTimeout (checked every WriteTimeout/2)
// ends the connection, which unblocks every writer.
func (c *Conn) watch(s *session) {
	stall := time.NewTicker(max(c.opts.WriteTimeout/2, time.Millisecond))
	defer stall.Stop()
	var ping <-chan time.Time
	var pt *time.Timer
	if c.opts.PingInterval > 0 {
		pt = time.NewTimer(c.opts.PingInterval)
		defer pt.Stop()
		ping = pt.C
	}
	sentAt := int64(-1) // when the unanswered ping went out; -1: none
	written, progressAt := s.written.Load(), s.now()
	end := func(cause error) {
		s.kill(cause)
		<-s.done
	}
	for {
		select {
		case <-s.done:
			return
		case <-c.ctx.Done():
			c.closeSession(s)
			return
		case <-c.recoverWake:
			if !c.recoverGaps(s) {
				if c.ctx.Err() != nil {
					c.closeSession(s)
				} else {
					end(ErrConnectionLost)
				}
				return
			}
		case <-stall.C:
			if c.hasWanted() {
				poke(c.recoverWake) // a recovery the node refused: again
			}
			w := s.written.Load()
			if w != written || s.inflight.Load() == 0 {
				written, progressAt = w, s.now()
				continue
			}
			if time.Duration(s.now()-progressAt) >= c.opts.WriteTimeout {
				end(ErrWriteTimeout)
				return
			}
		case <-ping:
			if sentAt >= 0 {
				if s.silentSince(sentAt) {
					end(ErrServerSilent)
					return
				}
				sentAt = -1
				pt.Reset(max(c.opts.PingInterval-c.opts.PingTimeout, 0))
				continue
			}
			sentAt = s.now()
			if err := c.send(s, &proto.Request{Op: proto.OpPing}, true); err != nil {
				end(err)
				return
			}
			pt.Reset(c.opts.PingTimeout)
		}
	}
}

// closeSession ends s with a close handshake and waits for its reader.
func (c *Conn) closeSession(s *session) {
	s.setCause(ErrClosed)
	_ = s.ws.Close(websocket.StatusNormalClosure, "")
	<-s.done
}

// read is s's reader goroutine: it decodes every frame, completes waiting
// requests and queues messages, and never blocks on a handler.
func (c *Conn) read(s *session) {
	defer close(s.done)
	format := c.codec.Format()
	for {
		_, b, err := s.ws.Read(context.Background())
		if err != nil {
			s.end(err)
			return
		}
		s.touch()
		var r proto.Reply
		if err := c.codec.DecodeReply(b, &r); err != nil {
			c.opts.OnError(fmt.Errorf("%w: %w", ErrUndecodable, err))
			continue
		}
		switch r.Op {
		case proto.OpMsg:
			c.stats.received.Add(1)
			m := Message{Topic: r.Topic, Data: r.Data, Offset: r.Offset, format: format}
			if r.Offset == 0 {
				c.enqueue(m)
			} else {
				c.enqueueStream(s, m, r.Epoch)
			}
		case proto.OpAck:
			if len(r.Positions) > 0 {
				c.settle(r.Positions)
			}
			if r.HasID {
				s.complete(r.ID, &r, nil)
			}
		case proto.OpErr:
			se := &ServerError{Code: r.Code, Msg: r.Msg}
			if !r.HasID || !s.complete(r.ID, nil, se) {
				c.opts.OnError(se)
			}
		case proto.OpJoin, proto.OpLeave:
			c.memberEvent(r.Op == proto.OpJoin, r.Topic, Member{Client: r.Client, User: r.User})
		case proto.OpUnsubscribed:
			c.unsubscribedByServer(r.Topic)
		}
	}
}

// enqueue hands m to the handler goroutine through the policy's queue.
func (c *Conn) enqueue(m Message) {
	if !c.subscribed(m.Topic) {
		return // unsubscribed while the message was on its way
	}
	c.counted(m.Topic, c.q.push(m))
}

// counted records what the queue did with a message of topic.
func (c *Conn) counted(topic string, out outcome) {
	switch out {
	case coalesced:
		c.stats.coalesced.Add(1)
	case dropped:
		c.stats.dropped.Add(1)
		c.opts.OnError(fmt.Errorf("%w: topic %q", ErrBufferFull, topic))
	}
}

// handle is the handler goroutine.
func (c *Conn) handle() {
	defer close(c.handlerDone)
	c.q.run(c.stopHandler, func(m Message) {
		c.subsMu.RLock()
		sub := c.subs[m.Topic]
		c.subsMu.RUnlock()
		if sub != nil {
			c.stats.delivered.Add(1)
			sub.h(m)
		}
		c.roomFreed()
	})
}

// resubscribe renews every acknowledged subscription on a fresh
// connection (a Subscribe still waiting renews its own), in batches,
// history topics from their positions (since). A batch the server refuses
// is retried topic by topic so one topic the server no longer allows does
// not cost the others, and each refusal is reported to OnError (the
// handler stays registered; the next connection tries again). It reports
// whether s is still up.
func (c *Conn) resubscribe(s *session) bool {
	topics := c.ackedTopics()
	for len(topics) > 0 {
		batch := topics[:min(len(topics), resubBatch)]
		topics = topics[len(batch):]
		err := c.subscribeOn(s, batch, c.sinceFor(batch))
		var se *ServerError
		switch {
		case err == nil:
		case !errors.As(err, &se):
			return false // the connection ended; the next one starts over
		case len(batch) == 1:
			c.opts.OnError(se)
		default:
			for _, t := range batch {
				one := []string{t}
				err := c.subscribeOn(s, one, c.sinceFor(one))
				if errors.As(err, &se) {
					c.opts.OnError(se)
				} else if err != nil {
					return false
				}
			}
		}
	}
	return !s.isEnded()
}

// subscribeOn sends one sub on s, recovering the topics in since, and
// waits for its answer; a server that does not answer within DialTimeout
// is taken as gone.
func (c *Conn) subscribeOn(s *session, topics []string, since map[string]proto.Position) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.DialTimeout)
	defer cancel()
	err := c.callOn(ctx, s, &proto.Request{Op: proto.OpSub, Topics: topics, Since: since}, true)
	if errors.Is(err, context.DeadlineExceeded) {
		s.kill(ErrServerSilent)
	}
	return err
}
