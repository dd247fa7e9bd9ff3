package client

import (
	"errors"
	"fmt"
	"sort"

	"github.com/subsock/subsock/proto"
)

// History. A topic the node keeps a stream for (its -history rules) has
// an offset on every message: 1, 2, ... per topic, with no gaps. The Conn
// keeps, per such topic, the offset of the last message it handed to the
// handler queue and the stream's epoch (the position), and from them:
//   - resubscribes with since on every new connection, so the node replays
//     what was published meanwhile before live messages resume;
//   - drops a message it already has (a replay overlapping live traffic);
//   - on a gap in the live stream (a message lost to a full delivery
//     buffer, or a node that skipped one), stops taking the topic's
//     messages and has the supervisor unsubscribe and resubscribe it with
//     since on the same connection;
//   - reports each recovery's outcome to Options.OnRecover.
//
// The reader decides on every message and applies every ack's positions,
// in wire order, so a replay, its ack and the live messages after it are
// judged in the order the node sent them. The supervisor sends the subs;
// it is woken through recoverWake. Nothing here blocks the reader.
//
// A publication of the Conn's own with "echo":false (PublishOptions.NoEcho)
// is a hole in its stream that is no gap: the pub's ack carries its offset,
// which the Conn counts as seen (own). The ack and the messages published
// after it travel separately, so a message beyond the hole can arrive
// first: while such pubs are in flight on the connection, a message after
// a gap is held, and judged once their acks are in.
//
// Locks: streamMu guards streams. It may be held while taking subsMu (read),
// a session's lock and the queue's lock, never the other way round.

// Recovery is the outcome of one attempt to get back what a history topic
// missed: after a reconnect, after a gap, or when a message tells that the
// stream lost its past (a new epoch).
type Recovery struct {
	Topic string
	// Recovered is true when nothing was lost: every publication after the
	// Conn's position was delivered or is queued for the handler. False
	// means the node no longer held them (history too short, or a new
	// epoch); delivery goes on from Offset.
	Recovered bool
	// Offset and Epoch are the topic's position once the attempt ended:
	// the last publication the handler has, or will get before live ones.
	Offset uint64
	Epoch  string
}

// SubscribeOptions are per-call settings of SubscribeWith. The zero value
// is a plain Subscribe.
type SubscribeOptions struct {
	// Last asks the node for the last Last publications of a history
	// topic, delivered before the live ones. It applies to the first
	// subscription only: after a reconnect the Conn resumes from its
	// position instead. Ignored on a topic without history.
	Last int
	// OnJoin and OnLeave are called when another connection subscribes
	// to the topic or leaves it (unsubscribes, disconnects), on any node,
	// if the topic has join-leave events (the node's -join-leave; none
	// for groups above -join-leave-max). The Conn's own comings and goings
	// are not reported, and neither are the members already there: ask
	// Presence. They are called from the reader goroutine, in the order
	// the server sent them, so they must return quickly (as OnRecover);
	// they are not ordered with the Handler's messages.
	OnJoin, OnLeave func(Member)
}

// stream is the Conn's position in one history topic.
type stream struct {
	epoch string
	last  uint64 // the last offset queued for the handler
	// known: epoch and last come from the node (an ack's position), so
	// gaps and duplicates can be told; before the first ack the replay of
	// SubscribeOptions.Last is taken as it comes.
	known bool
	// recovering: a sub with since is owed (wanted) or on its way; only
	// the next offset (a replayed one) is taken until its ack.
	recovering bool
	wanted     bool // the supervisor has yet to send it

	// own holds the offsets of the Conn's no-echo publications beyond
	// last, in ownEpoch; last moves over them as it reaches them.
	own      map[uint64]struct{}
	ownEpoch string
	// pubs counts the no-echo publications sent on pubSess whose answer
	// has not come; held, the messages of pubSess after a gap, kept until
	// pubs is 0.
	pubSess *session
	pubs    int
	held    []heldMessage
}

// heldMessage is a message kept while no-echo publications are in flight.
type heldMessage struct {
	m     Message
	epoch string
}

// maxHeld bounds the messages a stream holds; beyond it the gap is
// recovered as any other.
const maxHeld = 1024

// absorbOwn moves last over the Conn's own offsets that follow it, and
// forgets those it has passed.
func (st *stream) absorbOwn() {
	if len(st.own) == 0 || !st.known {
		return
	}
	if st.ownEpoch != st.epoch {
		clear(st.own)
		return
	}
	for {
		if _, ok := st.own[st.last+1]; !ok {
			break
		}
		delete(st.own, st.last+1)
		st.last++
	}
	for o := range st.own {
		if o <= st.last {
			delete(st.own, o)
		}
	}
}

// isOwn reports whether offset is one of the Conn's no-echo publications.
func (st *stream) isOwn(offset uint64) bool {
	_, ok := st.own[offset]
	return ok && st.known && st.ownEpoch == st.epoch
}

// effects is what judging messages asks for once streamMu is let go; the
// common case, one message queued, costs no allocation.
type effects struct {
	coalesced, dropped int
	recs               []Recovery
	wake               bool
}

// apply reports what judging did, streamMu not held.
func (c *Conn) apply(topic string, e *effects) {
	for range e.coalesced {
		c.counted(topic, coalesced)
	}
	for range e.dropped {
		c.counted(topic, dropped)
	}
	for _, r := range e.recs {
		c.opts.OnRecover(r)
	}
	if e.wake {
		poke(c.recoverWake)
	}
}

// streamLocked returns topic's stream, making it. streamMu is held.
func (c *Conn) streamLocked(topic string) *stream {
	st := c.streams[topic]
	if st == nil {
		st = &stream{}
		c.streams[topic] = st
	}
	return st
}

// subscribed reports whether topic has a handler.
func (c *Conn) subscribed(topic string) bool {
	c.subsMu.RLock()
	_, ok := c.subs[topic]
	c.subsMu.RUnlock()
	return ok
}

// forgetStream drops topic's position: it is no longer subscribed, or is
// subscribed anew.
func (c *Conn) forgetStream(topic string) {
	c.streamMu.Lock()
	delete(c.streams, topic)
	c.streamMu.Unlock()
}

// enqueueStream is enqueue for a message of a history topic that arrived
// on s, epoch being the one it carries (set only when the stream's epoch
// changed). Called by the reader only.
func (c *Conn) enqueueStream(s *session, m Message, epoch string) {
	var e effects
	c.streamMu.Lock()
	if !c.subscribed(m.Topic) {
		c.streamMu.Unlock()
		return // unsubscribed while the message was on its way
	}
	st := c.streamLocked(m.Topic)
	if st.pubSess != s {
		st.held = nil // the recovery of a new connection replays them
	}
	if st.pubSess == s && st.pubs > 0 && (len(st.held) > 0 || st.gapAt(m.Offset, epoch)) {
		// Perhaps no gap: the hole may be a no-echo publication of
		// this Conn whose ack is on its way.
		if len(st.held) < maxHeld {
			st.held = append(st.held, heldMessage{m, epoch})
			c.streamMu.Unlock()
			return
		}
		st.held = nil
		if !st.recovering {
			st.recovering, st.wanted, e.wake = true, true, true
		}
	}
	c.judgeLocked(st, m, epoch, &e)
	c.streamMu.Unlock()
	c.apply(m.Topic, &e)
}

// gapAt reports whether a live message at offset would be a gap.
func (st *stream) gapAt(offset uint64, epoch string) bool {
	return st.known && !st.recovering && (epoch == "" || epoch == st.epoch) && offset > st.last+1
}

// judgeLocked decides on one message of st: queue it, drop it as a
// duplicate, or start the recovery of a gap. streamMu is held.
func (c *Conn) judgeLocked(st *stream, m Message, epoch string, e *effects) {
	take := false
	switch {
	case st.recovering:
		// Live messages the old subscription still sends lie beyond the
		// gap; the replay starts right after the position.
		take = epoch == "" && m.Offset == st.last+1
	case !st.known:
		take = m.Offset > st.last
		if take && epoch != "" {
			st.epoch = epoch
		}
	case epoch != "" && epoch != st.epoch:
		// The stream lost its past: what was between is gone for good.
		take = true
		st.epoch = epoch
		clear(st.own)
		e.recs = append(e.recs, Recovery{Topic: m.Topic, Offset: m.Offset, Epoch: epoch})
	case m.Offset <= st.last:
		// Already queued (a replay overlapping the live stream).
	case m.Offset > st.last+1:
		st.recovering, st.wanted, e.wake = true, true, true
	default:
		take = true
	}
	if take && st.isOwn(m.Offset) {
		// A replay of the Conn's own no-echo publication: seen.
		st.last = m.Offset
		st.absorbOwn()
		return
	}
	if !take {
		return
	}
	out := c.q.push(m)
	switch out {
	case coalesced:
		e.coalesced++
	case dropped:
		e.dropped++
	}
	if out == dropped {
		// The position stays, so the message comes back in a recovery
		// once the handler has caught up: one owed now, or, during a
		// replay, the one its ack finds short.
		if st.known && !st.recovering {
			st.recovering, st.wanted, e.wake = true, true, true
		}
		return
	}
	st.last = m.Offset
	st.absorbOwn()
}

// echoPub notes a no-echo publication to topic about to go out on s, and
// returns what its answer must run (nil when topic is not subscribed:
// there is no stream to keep whole).
func (c *Conn) echoPub(s *session, topic string) func(*proto.Reply, error) {
	c.streamMu.Lock()
	defer c.streamMu.Unlock()
	if !c.subscribed(topic) || s.isEnded() {
		return nil
	}
	st := c.streamLocked(topic)
	if st.pubSess != s {
		// Whatever pubSess held belongs to a connection that has ended.
		st.pubSess, st.pubs, st.held = s, 0, nil
	}
	st.pubs++
	return func(ack *proto.Reply, err error) { c.echoDone(topic, st, s, ack, err) }
}

// echoDone takes the answer to a no-echo publication of st sent on s: an
// ack's offset is the Conn's own, and once no such publication is in
// flight the messages held meanwhile are judged. It runs on s's reader,
// except for a publication that never left (ErrConnectionLost), which
// judges nothing.
func (c *Conn) echoDone(topic string, st *stream, s *session, ack *proto.Reply, err error) {
	var e effects
	c.streamMu.Lock()
	if c.streams[topic] != st {
		c.streamMu.Unlock()
		return // unsubscribed meanwhile
	}
	if st.pubSess == s {
		st.pubs--
		if errors.Is(err, ErrConnectionLost) {
			st.pubs, st.held = 0, nil
		}
	}
	if ack != nil && ack.Offset > 0 && ack.Epoch != "" && !(st.known && st.epoch == ack.Epoch && ack.Offset <= st.last) {
		if st.own == nil || st.ownEpoch != ack.Epoch {
			st.own, st.ownEpoch = make(map[uint64]struct{}), ack.Epoch
		}
		st.own[ack.Offset] = struct{}{}
		st.absorbOwn()
	}
	if st.pubSess == s && st.pubs == 0 && len(st.held) > 0 {
		held := st.held
		st.held = nil
		for _, h := range held {
			c.judgeLocked(st, h.m, h.epoch, &e)
		}
	}
	c.streamMu.Unlock()
	c.apply(topic, &e)
}

// settle applies the positions of a sub's ack; called by the reader,
// before the ack completes its request.
func (c *Conn) settle(ps []proto.TopicPosition) {
	var recs []Recovery
	wake := false
	c.streamMu.Lock()
	for _, tp := range ps {
		if !c.subscribed(tp.Topic) {
			continue
		}
		st := c.streamLocked(tp.Topic)
		switch {
		case tp.Asked:
			st.recovering = false
			if tp.Recovered && st.known && st.epoch == tp.Epoch {
				if st.last < tp.Offset {
					// The replay did not all reach the queue (it was
					// full), or the node had nothing to replay: again.
					st.recovering, st.wanted, wake = true, true, true
					continue
				}
				recs = append(recs, Recovery{Topic: tp.Topic, Recovered: true, Offset: st.last, Epoch: st.epoch})
				continue
			}
			st.epoch, st.last, st.known = tp.Epoch, tp.Offset, true
			st.absorbOwn()
			recs = append(recs, Recovery{Topic: tp.Topic, Offset: st.last, Epoch: tp.Epoch})
		case !st.known:
			st.epoch, st.last, st.known = tp.Epoch, tp.Offset, true
			st.absorbOwn()
		case st.recovering:
			// The ack of another sub of the topic; the recovery's own
			// ack settles it.
		case st.epoch != tp.Epoch:
			st.epoch, st.last = tp.Epoch, tp.Offset
			st.absorbOwn()
			recs = append(recs, Recovery{Topic: tp.Topic, Offset: st.last, Epoch: tp.Epoch})
		case st.last < tp.Offset:
			st.recovering, st.wanted, wake = true, true, true
		}
	}
	c.streamMu.Unlock()
	for _, r := range recs {
		c.opts.OnRecover(r)
	}
	if wake {
		poke(c.recoverWake)
	}
}

// sinceFor returns the positions to resubscribe topics from on a new
// connection and marks those topics recovering; nil when none has one.
func (c *Conn) sinceFor(topics []string) map[string]proto.Position {
	var since map[string]proto.Position
	c.streamMu.Lock()
	for _, t := range topics {
		st := c.streams[t]
		if st == nil || !st.known {
			continue
		}
		if since == nil {
			since = make(map[string]proto.Position)
		}
		since[t] = proto.Position{Offset: st.last, Epoch: st.epoch}
		st.recovering, st.wanted = true, false
	}
	c.streamMu.Unlock()
	return since
}

// takeWanted returns the topics with a gap to recover, sorted, and their
// positions, and marks their recovery as sent.
func (c *Conn) takeWanted() ([]string, map[string]proto.Position) {
	c.streamMu.Lock()
	defer c.streamMu.Unlock()
	var topics []string
	for t, st := range c.streams {
		if st.wanted {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return nil, nil
	}
	sort.Strings(topics)
	since := make(map[string]proto.Position, len(topics))
	for _, t := range topics {
		st := c.streams[t]
		st.wanted = false
		since[t] = proto.Position{Offset: st.last, Epoch: st.epoch}
	}
	return topics, since
}

// rewant marks topics' recoveries as owed again after the node refused
// them; the supervisor retries at its next tick.
func (c *Conn) rewant(topics []string) {
	c.streamMu.Lock()
	for _, t := range topics {
		if st := c.streams[t]; st != nil && st.recovering {
			st.wanted = true
		}
	}
	c.streamMu.Unlock()
}

// roomWait reports whether the handler queue is too full for a recovery
// to be worth sending: its replay would be dropped again. The handler
// goroutine wakes the supervisor once it has drained half (roomFreed).
func (c *Conn) roomWait() bool {
	full := func() bool { return c.opts.Policy == All && c.q.pending() > c.opts.Buffer/2 }
	if !full() {
		return false
	}
	c.roomWanted.Store(true)
	// Checked again after the flag is up, so a drain in between is seen.
	if !full() && c.roomWanted.CompareAndSwap(true, false) {
		return false
	}
	return true
}

// roomFreed runs on the handler goroutine after each delivery.
func (c *Conn) roomFreed() {
	if c.roomWanted.Load() && c.q.pending() <= c.opts.Buffer/2 && c.roomWanted.CompareAndSwap(true, false) {
		poke(c.recoverWake)
	}
}

// recoverGaps is the supervisor's side of a gap: for each topic that has
// one, an unsub and a sub with since on the same connection, so that the
// node replays from the position. It reports whether s is still up.
func (c *Conn) recoverGaps(s *session) bool {
	if c.roomWait() {
		return true
	}
	topics, since := c.takeWanted()
	for len(topics) > 0 {
		batch := topics[:min(len(topics), resubBatch)]
		topics = topics[len(batch):]
		// A topic unsubscribed meanwhile is dropped from the batch: the
		// sub would take it back on the node.
		live := batch[:0:0]
		for _, t := range batch {
			if c.subscribed(t) {
				live = append(live, t)
			}
		}
		if len(live) == 0 {
			continue
		}
		// Without an id: its answer (an ack, or nothing for a topic not
		// held) is of no use, and the sub behind it is read after it.
		if err := c.send(s, &proto.Request{Op: proto.OpUnsub, Topics: live}, true); err != nil {
			s.kill(err)
			return false
		}
		sinceLive := make(map[string]proto.Position, len(live))
		for _, t := range live {
			sinceLive[t] = since[t]
		}
		err := c.subscribeOn(s, live, sinceLive)
		var se *ServerError
		switch {
		case err == nil:
			c.dropUnsubscribed(s, live)
		case errors.As(err, &se):
			c.opts.OnError(fmt.Errorf("client: recovering %v: %w", live, err))
			c.rewant(live)
		default:
			return false
		}
	}
	return !s.isEnded()
}

// dropUnsubscribed takes back on the node the topics of a recovery that
// were unsubscribed while it was on its way.
func (c *Conn) dropUnsubscribed(s *session, topics []string) {
	var gone []string
	for _, t := range topics {
		if !c.subscribed(t) {
			gone = append(gone, t)
		}
	}
	if len(gone) > 0 {
		_ = c.send(s, &proto.Request{Op: proto.OpUnsub, Topics: gone}, true)
	}
}

// hasWanted reports whether a recovery is owed (after a refusal, retried
// at the supervisor's tick).
func (c *Conn) hasWanted() bool {
	c.streamMu.Lock()
	defer c.streamMu.Unlock()
	for _, st := range c.streams {
		if st.wanted {
			return true
		}
	}
	return false
}

// poke wakes the goroutine waiting on ch, a channel of capacity 1, without
// blocking: a wake already pending covers this one.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
