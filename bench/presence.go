package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/gobwas/ws"
)

// Presence (docs/protocol.md, "Identity, presence and join/leave"): a run
// whose node has presence on PREFIX.0 ends by asking the node, from a
// WebSocket client of the harness's own, for {"op":"presence_stats"} on
// it. The node gathers the answer from every node, so its count of
// clients must equal the subscribers the harness connected: the proof
// that presence was on and saw them all.

// checkPresence asks for PREFIX.0's presence_stats and records the answer
// in Result.Presence; judgePresence weighs it.
func (r *runner) checkPresence(ctx context.Context) {
	topic := r.p.TopicPrefix + ".0"
	pc := &PresenceCheck{Topic: topic}
	if len(r.subs) > 0 {
		pc.Want = r.subs[0]
	}
	r.res.Presence = pc
	t0 := time.Now()
	clients, users, err := askPresenceStats(ctx, r.p.Targets[0], topic, r.p.AckTimeout)
	pc.Millis = float64(time.Since(t0).Microseconds()) / 1000
	if err != nil {
		pc.Err = err.Error()
		return
	}
	pc.Clients, pc.Users = int64(clients), int64(users)
}

// judgePresence reports whether the node's presence_stats counted every
// subscriber the harness connected, noting why not.
func (r *runner) judgePresence() bool {
	pc := r.res.Presence
	switch {
	case pc.Err != "":
		r.note(fmt.Sprintf("presence_stats on %s got no count: %s", pc.Topic, pc.Err))
		return false
	case pc.Clients != pc.Want:
		r.note(fmt.Sprintf("presence_stats on %s counted %d clients, the harness had %d subscribers connected", pc.Topic, pc.Clients, pc.Want))
		return false
	}
	return true
}

// appendPresenceStatsRequest builds {"op":"presence_stats","id":N,"topic":"T"};
// topic names are checked by Params.
func appendPresenceStatsRequest(dst []byte, id uint64, topic string) []byte {
	dst = append(dst, `{"op":"presence_stats","id":`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `,"topic":"`...)
	dst = append(dst, topic...)
	return append(dst, `"}`...)
}

// presenceStatsID is the id of the one request a presence client sends.
const presenceStatsID = 1

// askPresenceStats opens a WebSocket to target, sends presence_stats for
// topic and returns the counts of the node's ack (an err answer is an
// error naming its code and message). The connection subscribes to
// nothing, so it is not among the clients counted. All of it is bounded
// by timeout.
func askPresenceStats(ctx context.Context, target, topic string, timeout time.Duration) (clients, users uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := ws.Dialer{Timeout: timeout, Protocols: []string{Subprotocol}}
	nc, br, _, err := d.Dial(ctx, target)
	if err != nil {
		return 0, 0, err
	}
	c := &conn{nc: nc, buf: make([]byte, readBufSize)}
	if br != nil {
		c.reserve(br.Buffered())
		c.n, _ = br.Read(c.buf)
		ws.PutReader(br)
	}
	defer c.closeQuietly()
	deadline := time.Now().Add(timeout)
	if err := c.write(ws.OpText, appendPresenceStatsRequest(nil, presenceStatsID, topic), deadline); err != nil {
		return 0, 0, err
	}
	if err := nc.SetReadDeadline(deadline); err != nil {
		return 0, 0, err
	}
	for {
		for c.r < c.n {
			h, payload, ok, err := c.nextFrame()
			if err != nil {
				return 0, 0, err
			}
			if !ok {
				break
			}
			switch h.OpCode {
			case ws.OpPing:
				if err := c.write(ws.OpPong, payload, deadline); err != nil {
					return 0, 0, err
				}
			case ws.OpClose:
				return 0, 0, fmt.Errorf("%w before answering presence_stats", errServerClose)
			case ws.OpText, ws.OpBinary:
				var rep reply
				if err := parseReply(payload, &rep); err != nil {
					return 0, 0, err
				}
				if !rep.hasID || rep.id != presenceStatsID {
					continue
				}
				switch {
				case rep.kind == replyErr:
					return 0, 0, fmt.Errorf("err %s: %s", rep.code, rep.text)
				case rep.kind == replyAck && rep.hasCounts:
					return rep.clients, rep.users, nil
				}
				return 0, 0, fmt.Errorf("%w: presence_stats answer %q", ErrMalformed, payload)
			}
		}
		if err := c.fill(); err != nil {
			return 0, 0, err
		}
	}
}

// closeQuietly ends a short-lived client connection: a close frame, a
// moment for the node's echo, then the socket.
func (c *conn) closeQuietly() {
	if c.write(ws.OpClose, closePayload(1000), time.Now().Add(time.Second)) == nil &&
		c.nc.SetReadDeadline(time.Now().Add(time.Second)) == nil {
		var b [64]byte
		for {
			if _, err := c.nc.Read(b[:]); err != nil {
				break
			}
		}
	}
	_ = c.nc.Close()
}
