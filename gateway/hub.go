package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/zap"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/poller"
	"github.com/subsock/subsock/proto"
)

// A relay payload is what crosses the broker: one format byte, then the
// data exactly as the publisher sent it. Each node converts it at most once
// per codec in use. appendRelay appends it to dst.
func appendRelay(dst []byte, f proto.Format, data []byte) []byte {
	return append(append(dst, byte(f)), data...)
}

// relayNoEcho marks the format byte of a pub sent with "echo":false: the
// publishing connection (its node's id, then its client number) follows,
// and is left out of the delivery.
const relayNoEcho = 0x40

// appendRelayNoEcho is appendRelay for a pub whose own connection (cid on
// node) must not get it.
func appendRelayNoEcho(dst []byte, f proto.Format, node string, cid uint64, data []byte) []byte {
	dst = append(dst, byte(f)|relayNoEcho, byte(len(node)))
	dst = append(dst, node...)
	dst = binary.BigEndian.AppendUint64(dst, cid)
	return append(dst, data...)
}

// splitRelay reads a relay payload: its format and data, and the client
// number of the connection to leave out when it is one of this node's
// (0: none). ok is false for a payload too short to be one.
func (g *Gateway) splitRelay(relay []byte) (f proto.Format, data []byte, skip uint64, ok bool) {
	if len(relay) == 0 {
		return 0, nil, 0, false
	}
	f = proto.Format(relay[0] &^ relayNoEcho)
	if relay[0]&relayNoEcho == 0 {
		return f, relay[1:], 0, true
	}
	if len(relay) < 2 || len(relay) < 2+int(relay[1])+8 {
		return 0, nil, 0, false
	}
	node := relay[2 : 2+int(relay[1])]
	cid := binary.BigEndian.Uint64(relay[2+len(node):])
	if string(node) == g.ctl.id {
		skip = cid
	}
	return f, relay[2+len(node)+8:], skip, true
}

// publishRelay sends a payload already in relay form (see appendRelay).
// Every publish, HTTP or WebSocket, passes here, so this is where its
// answer is made to agree with /healthz: it succeeds only if the broker
// is healthy (connected, every held topic subscribed) and accepts the
// message within PublishTimeout; otherwise the error wraps
// broker.ErrUnavailable (503 / unavailable). On a history topic the
// backbone appends it to the topic's stream and pos is its place there;
// elsewhere pos is zero.
func (g *Gateway) publishRelay(ctx context.Context, topic string, relay []byte) (pos broker.Position, err error) {
	g.msgsIn.Add(1)
	// While the broker reconnects or resubscribes, a message the backbone
	// accepted would not come back to this node's subscribers: fail at
	// once, as /healthz does, rather than answer 200 for a lost message.
	if err := g.broker.Health(); err != nil {
		g.publishRejects.Add(1)
		return pos, asUnavailable(err)
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.PublishTimeout)
	defer cancel()
	if pol, ok := g.hist.policy(topic); ok {
		pos, err = g.hist.streams.PublishStream(ctx, topic, relay, pol)
	} else {
		err = g.broker.Publish(ctx, topic, relay)
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		g.publishTimeouts.Add(1)
	}
	return pos, asUnavailable(err)
}

// publishBatch is publishRelay for a batch of plain publishes (a
// publisher worker's, see publisher.work): one health check, one timeout
// and one exchange with the backbone for them all, then each job's answer.
// msgs and errs are the worker's scratch, returned for reuse.
func (g *Gateway) publishBatch(bp broker.BatchPublisher, jobs []pubJob, msgs []broker.Message, errs []error) ([]broker.Message, []error) {
	n := len(jobs)
	g.msgsIn.Add(uint64(n))
	msgs = msgs[:0]
	if cap(errs) < n {
		errs = make([]error, n)
	}
	errs = errs[:n]
	clear(errs)
	if err := g.broker.Health(); err != nil {
		g.publishRejects.Add(uint64(n))
		for i := range errs {
			errs[i] = err
		}
	} else {
		for _, j := range jobs {
			msgs = append(msgs, broker.Message{Topic: j.topic, Payload: j.relay})
		}
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.PublishTimeout)
		bp.PublishBatch(ctx, msgs, errs)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			for _, err := range errs {
				if err != nil {
					g.publishTimeouts.Add(1)
				}
			}
		}
		cancel()
	}
	for i, j := range jobs {
		j.done(asUnavailable(errs[i]))
	}
	return msgs, errs
}

// asUnavailable makes a broker failure (a timeout, a closed broker while
// draining) read as broker.ErrUnavailable, the one error the publish paths
// map to 503 / unavailable.
func asUnavailable(err error) error {
	if err == nil || errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrBadTopic) {
		return err
	}
	return fmt.Errorf("%w: %w", broker.ErrUnavailable, err)
}

// deliver fans one message out: it builds the message once per codec in
// use and queues the same bytes on every local subscriber. It runs on a
// fan-out stage worker (see stage), never on a broker's goroutine, and
// subsock_fanout_duration_seconds times one such pass.
func (g *Gateway) deliver(topic string, payload []byte) {
	if len(payload) == 0 {
		return
	}
	if payload[0] == broker.StreamMark {
		g.deliverStream(topic, payload)
		return
	}
	if payload[0] == presenceMark {
		g.deliverPresence(topic, payload)
		return
	}
	start := time.Now()
	f, data, skip, ok := g.splitRelay(payload)
	if !ok {
		return
	}
	// Each codec's frame is built when its first subscriber is reached, so
	// a topic whose subscribers all use JSON never pays for MessagePack.
	var frames [nWires][]byte
	var failed [nWires]bool
	var slow uint64
	// A small group's messages jump the writers' passes over large ones.
	prompt := g.cfg.SmallGroup > 0 && g.reg.Count(topic) <= g.cfg.SmallGroup
	n := g.reg.Range(topic, func(s *session) bool {
		if skip != 0 && s.cid == skip {
			return true // its publisher asked not to get it back
		}
		// codec is read for the frame anyway; only a stream reads s.sse.
		if s.codec == wireSSE && !s.sse.started.Load() {
			return true // a stream whose 200 is not out yet: not subscribed yet
		}
		fr := frames[s.codec]
		if fr == nil {
			if failed[s.codec] {
				return true
			}
			b, err := buildFor(s.codec, topic, f, data)
			if err != nil {
				failed[s.codec] = true
				g.convertErrors.Add(1)
				if ce := g.log.Check(zap.DebugLevel, "message not representable"); ce != nil {
					ce.Write(zap.String("topic", topic), zap.String("wire", wireName(s.codec)), zap.Error(err))
				}
				return true
			}
			frames[s.codec], fr = b, b
		}
		if enqueue(s.c, fr, prompt) == poller.ErrOverflow {
			slow++
		}
		return true
	})
	g.msgsOut.Add(uint64(n))
	g.fanout.Observe(time.Since(start).Seconds())
	if slow > 0 {
		if ce := g.log.Check(zap.InfoLevel, "closed slow consumers"); ce != nil {
			ce.Write(zap.String("topic", topic), zap.Uint64("count", slow))
		}
	}
}

// enqueue queues a delivery's shared bytes on c, promptly for a small
// group (see Config.SmallGroup).
func enqueue(c *poller.Conn, b []byte, prompt bool) error {
	if prompt {
		return c.EnqueuePrompt(b)
	}
	return c.Enqueue(b)
}

// buildFor returns the ready bytes of a message for wire w: a codec's
// WebSocket frame, or an SSE chunk.
func buildFor(w uint8, topic string, f proto.Format, data []byte) ([]byte, error) {
	if w == wireSSE {
		return buildSSE(topic, 0, "", false, false, f, data)
	}
	return buildMessage(codecs[w], topic, f, data)
}

// buildStreamFor is buildFor for a publication of a history topic; lost
// says the stream's epoch changed since the connection's position.
func buildStreamFor(w uint8, topic string, offset uint64, epoch string, lost bool, f proto.Format, data []byte) ([]byte, error) {
	if w == wireSSE {
		return buildSSE(topic, offset, epoch, true, lost, f, data)
	}
	if !lost {
		epoch = ""
	}
	return buildStreamMessage(codecs[w], topic, offset, epoch, f, data)
}

// wireName names wire w for logs.
func wireName(w uint8) string {
	if w == wireSSE {
		return "sse"
	}
	return codecs[w].Name()
}

// buildMessage returns a ready frame carrying the message in c's format.
func buildMessage(c proto.Codec, topic string, f proto.Format, data []byte) ([]byte, error) {
	data, err := proto.Convert(data, f, c.Format())
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, frame.MaxHeaderSize+len(topic)+len(data)+32)
	b = c.AppendMessage(frame.Reserve(b), topic, data)
	op := ws.OpText
	if c.Binary() {
		op = ws.OpBinary
	}
	return frame.Seal(b, op), nil
}
