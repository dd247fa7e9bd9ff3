package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/subsock/subsock/broker"
)

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

// deliver is the fan-out stage's work for one message: a history
// topic's publication (history.go) and a presence event (presence.go)
// carry a mark byte and take their own way; a plain relay payload goes to
// the hub, which builds it once per wire and queues it on every local
// subscriber.
func (g *Gateway) deliver(topic string, payload []byte) {
	if len(payload) == 0 {
		return
	}
	switch payload[0] {
	case broker.StreamMark:
		g.deliverStream(topic, payload)
	case presenceMark:
		g.deliverPresence(topic, payload)
	default:
		g.hub.Deliver(topic, payload)
	}
}
