package bench

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// The recover scenario's client side. A connection subscribes to its one
// history topic with an id and takes its position from the ack; from then
// on it follows the topic's offsets (offsetTracker). A cut command marks it
// (requestCut, on the worker's command goroutine) and pokes its read
// deadline; its reader, the goroutine that owns the connection, then drops
// the socket without a close frame, dials again at once and resubscribes
// with since {last offset, epoch}. The node replays what was missed before
// the ack. The connection has caught up once that ack is in and it holds
// the newest offset the node had answered to the publisher when the cut
// was ordered; the time from the order to that moment is recorded.

// Connection states, in recoverState.state.
const (
	recDialing    int32 = iota // the first sub is not acked yet
	recUp                      // following live; may be cut
	recCut                     // a cut is ordered; the reader has not acted yet
	recRecovering              // resubscribed with since; not caught up yet
	recGone                    // the reader has ended
)

// recoverReplayStep is the step under which replayed messages are
// recorded, so live latency (step 0) stays apart from replays, whose
// publish-to-receive time spans the outage.
const recoverReplayStep = 1

// recoverState is a recover connection's offset bookkeeping. The reader
// owns every field but the atomics, which the worker's command goroutine
// reads (state, last) or sets before ordering a cut (cutAt, target).
type recoverState struct {
	topic string // the connection's one topic
	// epoch is the stream's, from the last ack or msg that named one;
	// raw JSON string contents, sent back as they came.
	epoch   []byte
	tr      offsetTracker
	subID   uint64 // id of the current sub request
	acked   bool   // the current sub's ack has arrived
	retries int    // subs with since sent again since the cut

	state  atomic.Int32
	last   atomic.Uint64 // tr.last
	cutAt  atomic.Int64  // unix ns of the cut order
	target atomic.Uint64 // newest offset published when the cut was ordered
}

// offsetTracker checks one subscriber's offsets on one topic: the node
// sends a topic's offsets in increasing order with no gap and never one
// twice, so each delivery is judged as it arrives. Pure accounting; the
// counters are moved out by worker.absorb.
type offsetTracker struct {
	last  uint64 // the newest offset held
	known bool   // last is set (by an ack's position or a msg)
	// gaps: offsets never delivered below one that was (lost); dups:
	// deliveries at or below last; notRecovered: acks saying
	// recovered:false; skipped: the offsets those acks passed over;
	// epochResets: msgs announcing that the stream lost its past.
	gaps, dups, notRecovered, skipped, epochResets int64
}

// msg accounts a delivery of off; newEpoch is set when the msg carried an
// epoch (the stream lost its past and continues from off).
func (t *offsetTracker) msg(off uint64, newEpoch bool) {
	switch {
	case newEpoch:
		t.epochResets++
		t.last, t.known = off, true
	case !t.known:
		t.last, t.known = off, true
	case off == t.last+1:
		t.last = off
	case off > t.last+1:
		t.gaps += int64(off - t.last - 1)
		t.last = off
	default:
		t.dups++
	}
}

// ack accounts the position of a sub's ack: pos is the last offset the
// subscriber will have received before live messages continue. Offsets
// between last and pos were neither replayed nor will they come live:
// lost when the node said it recovered, skipped when it said it could not
// (the client then continues from pos). A pos below last means the node
// will send again what the client holds; those count as dups on arrival.
func (t *offsetTracker) ack(pos uint64, rec recovery) {
	if rec == recoveryFalse {
		t.notRecovered++
		if t.known && pos > t.last {
			t.skipped += int64(pos - t.last)
		}
		t.last, t.known = pos, true
		return
	}
	switch {
	case !t.known:
		t.last, t.known = pos, true
	case pos > t.last:
		t.gaps += int64(pos - t.last)
		t.last = pos
	}
}

// errNoHistory fails a recover connection whose first ack has no
// position: the node keeps no history for the topic.
var errNoHistory = errors.New("bench: sub acked without a position (no -history for the topic)")

// errClosing ends a reconnect that the worker's close overtook.
var errClosing = errors.New("bench: closing")

// appendSubSince builds {"op":"sub","id":N,"topics":["T"],
// "since":{"T":{"offset":L,"epoch":"E"}}}; epoch is raw JSON string
// contents as the node sent them.
func appendSubSince(dst []byte, id uint64, topic string, offset uint64, epoch []byte) []byte {
	dst = appendSubRequest(dst, id, []string{topic})
	dst = dst[:len(dst)-1] // reopen the object
	dst = append(dst, `,"since":{"`...)
	dst = append(dst, topic...)
	dst = append(dst, `":{"offset":`...)
	dst = strconv.AppendUint(dst, offset, 10)
	dst = append(dst, `,"epoch":"`...)
	dst = append(dst, epoch...)
	return append(dst, `"}}}`...)
}

// requestCut orders the cut of an up-to-date connection; target is its
// topic's newest published offset. It reports false for a connection that
// is not up (still recovering from an earlier cut, or gone). It runs on
// the worker's command goroutine, the only one that orders cuts.
func (c *conn) requestCut(now int64, target uint64) bool {
	rc := c.rc
	if rc == nil || rc.state.Load() != recUp {
		return false
	}
	// The reader leaves recUp only for recGone, so cutAt and target are
	// not in use when they are set here.
	rc.cutAt.Store(now)
	rc.target.Store(target)
	if !rc.state.CompareAndSwap(recUp, recCut) {
		return false
	}
	c.ncMu.Lock()
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	c.ncMu.Unlock()
	return true
}

// Redial attempts after a cut, subs with since sent again after an err,
// and the pause before the first retry (doubled after each).
const (
	reconnectAttempts = 5
	resubAttempts     = 5
	reconnectBackoff  = 100 * time.Millisecond
)

// reconnect performs an ordered cut on the reader's goroutine: it drops
// the socket with no close frame, dials again and sends the sub with
// since. Bytes read but not processed are dropped with the socket; the
// node replays them.
func (c *conn) reconnect() error {
	rc := c.rc
	// A reset rather than a FIN: abrupt, and the client's port is free at
	// once (no TIME_WAIT for thousands of cuts a minute).
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.nc.Close()
	var (
		nc  net.Conn
		buf []byte
		err error
	)
	pause := reconnectBackoff
	for attempt := 1; ; attempt++ {
		if c.closing.Load() {
			return errClosing
		}
		if nc, buf, err = c.w.upgrade(c.idx); err == nil {
			break
		}
		if attempt == reconnectAttempts {
			// The reader notes this last error as it ends.
			c.w.rc.reconnectFailures.Add(1)
			return fmt.Errorf("bench: reconnect after a cut: %w", err)
		}
		c.w.noteError(err)
		time.Sleep(pause)
		pause *= 2
	}
	c.ncMu.Lock()
	c.nc = nc
	c.ncMu.Unlock()
	c.r, c.n, c.closeSent = 0, 0, false
	c.reserve(len(buf))
	c.n = copy(c.buf, buf)
	if c.closing.Load() {
		return errClosing
	}
	rc.acked, rc.retries = false, 0
	rc.state.Store(recRecovering)
	if err := c.sendSince(); err != nil {
		return err
	}
	c.w.rc.reconnects.Add(1)
	return nil
}

// sendSince sends the sub with since {last offset, epoch} under a new id.
func (c *conn) sendSince() error {
	rc := c.rc
	rc.subID++
	req := appendSubSince(nil, rc.subID, rc.topic, rc.tr.last, rc.epoch)
	return c.write(ws.OpText, req, time.Now().Add(c.w.spec.AckTimeout))
}

// recoverRefused handles an err answering the current sub with since: the
// node could not serve it (unavailable: a retry starts clean, says the
// protocol), so it is counted and sent again, as a client would, after a
// pause, up to resubAttempts times; then the connection stays behind and
// its missing offsets count as lost.
func (c *conn) recoverRefused(r *reply) error {
	rc := c.rc
	if !r.hasID || r.id != rc.subID || rc.state.Load() != recRecovering || rc.acked {
		return nil
	}
	c.w.rc.refused.Add(1)
	if rc.retries == resubAttempts {
		c.w.rc.reconnectFailures.Add(1)
		return nil
	}
	time.Sleep(reconnectBackoff << rc.retries)
	rc.retries++
	return c.sendSince()
}

// recoverAck handles an ack on a recover connection and reports whether
// the generic path should count it (the first subscription's).
func (c *conn) recoverAck(r *reply, now time.Time) bool {
	rc := c.rc
	if !r.hasID || r.id != rc.subID {
		return true
	}
	first := rc.state.Load() == recDialing
	if !r.hasPos {
		if first {
			c.subFailed, c.subErr = true, errNoHistory
			return false
		}
		// Nothing tells where the stream is: as good as recovered:false.
		c.w.rc.notRecovered.Add(1)
		c.w.noteError(errNoHistory)
		return false
	}
	rc.tr.ack(r.pos.offset, r.pos.recovered)
	if len(r.pos.epoch) > 0 {
		rc.epoch = append(rc.epoch[:0], r.pos.epoch...)
	}
	rc.acked = true
	rc.last.Store(rc.tr.last)
	c.w.absorb(&rc.tr)
	if first {
		rc.state.Store(recUp)
		return true
	}
	c.checkCaughtUp(now)
	return false
}

// recoverMsg accounts a msg's offset and reports whether it is a replay
// (it came before the ack of a sub with since).
func (c *conn) recoverMsg(r *reply, now time.Time) (replay bool) {
	rc := c.rc
	newEpoch := len(r.epoch) > 0
	if newEpoch {
		rc.epoch = append(rc.epoch[:0], r.epoch...)
	}
	rc.tr.msg(r.offset, newEpoch)
	rc.last.Store(rc.tr.last)
	c.w.absorb(&rc.tr)
	if rc.state.Load() != recRecovering {
		return false
	}
	if !rc.acked {
		return true
	}
	c.checkCaughtUp(now)
	return false
}

// checkCaughtUp records the cut's duration once the recovering sub is
// acked and the connection holds the cut's target offset.
func (c *conn) checkCaughtUp(now time.Time) {
	rc := c.rc
	if !rc.acked || rc.tr.last < rc.target.Load() {
		return
	}
	c.w.caughtUp(time.Duration(now.UnixNano() - rc.cutAt.Load()))
	rc.state.Store(recUp)
}
