package gateway

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/subsock/subsock/broker"
)

// publisher makes the broker calls of publishes, WebSocket and HTTP, off
// the netpoll handlers: a Publish to Redis or NATS waits for the server
// (up to PublishTimeout), and a handler must never wait. A request takes a
// place in its connection's reply order, a job goes to a worker, and the
// worker's answer fills the place in (see reply.go).
//
// A topic maps to one worker, so one connection's publishes to a topic
// reach the backbone in the order they were sent. Each worker's queue is
// bounded; a publish that finds it full is answered unavailable at once
// and counted (subsock_publish_queue_full_total): a stalled backbone then
// costs a bounded queue, not a goroutine per publisher.
//
// The in-process memory broker never waits, so its publishes stay on the
// handler (no hop, no reordering against replies already made).
type publisher struct {
	g       *Gateway
	local   bool // the in-process broker: publishes stay inline, no workers
	seed    maphash.Seed
	queues  []chan pubJob
	mu      sync.RWMutex // read-held while queueing, so stop never closes a queue under a send
	stopped bool
	full    atomic.Uint64
	batches atomic.Uint64 // exchanges that carried plain publishes (publishBatch calls)
	turn    atomic.Uint64 // round robin of submitAny
	wg      sync.WaitGroup
	batcher broker.BatchPublisher // nil: every publish is a call of its own
}

// pubJob is one broker call: a publish, or a history read. run makes the
// call and answers; refuse answers instead when the job cannot be queued.
// A plain publish (no history) to a broker that takes batches carries its
// message instead of run (see submitPublish): the worker sends it with
// the other such publishes it finds queued, in one exchange.
type pubJob struct {
	run    func()
	refuse func(error)

	topic string
	relay []byte
	done  func(error) // the publish's answer
}

func newPublisher(g *Gateway) *publisher {
	_, local := g.broker.(*broker.Memory)
	bp, _ := g.broker.(broker.BatchPublisher)
	p := &publisher{g: g, local: local, batcher: bp, seed: maphash.MakeSeed()}
	if local {
		return p // no queues (their buffers are ~50 KB each) and no goroutines
	}
	n := g.cfg.PublishWorkers
	p.queues = make([]chan pubJob, n)
	for i := range p.queues {
		q := make(chan pubJob, g.cfg.PublishQueue)
		p.queues[i] = q
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.work(q)
		}()
	}
	return p
}

// inline reports whether publishes run on the caller's goroutine: the
// in-process broker never waits.
func (p *publisher) inline() bool { return p.local }

// submit queues a broker call on topic's worker; run makes it there, or
// refuse runs at once with an error when the queue is full or the node is
// stopping.
func (p *publisher) submit(topic string, run func(), refuse func(error)) {
	p.submitTo(maphash.String(p.seed, topic), run, refuse)
}

// submitAny queues a call that needs no order with others (a history
// read) on the next worker in turn, so a crowd of readers of one topic (a
// node's clients coming back after a restart) is spread over them all.
func (p *publisher) submitAny(run func(), refuse func(error)) {
	p.submitTo(p.turn.Add(1), run, refuse)
}

// submitPublish queues a plain publish (relay form, no history) on
// topic's worker; done gets its result there, or at once when it cannot be
// queued. With a broker that takes batches it shares an exchange with
// the publishes queued beside it.
func (p *publisher) submitPublish(topic string, relay []byte, done func(error)) {
	if p.batcher == nil {
		p.submit(topic, func() {
			_, err := p.g.publishRelay(context.Background(), topic, relay)
			done(err)
		}, done)
		return
	}
	p.queue(maphash.String(p.seed, topic), pubJob{topic: topic, relay: relay, done: done, refuse: done})
}

func (p *publisher) submitTo(h uint64, run func(), refuse func(error)) {
	p.queue(h, pubJob{run: run, refuse: refuse})
}

func (p *publisher) queue(h uint64, j pubJob) {
	p.mu.RLock()
	var err error
	if p.stopped {
		err = fmt.Errorf("%w: node shutting down", broker.ErrUnavailable)
	} else {
		select {
		case p.queues[h%uint64(len(p.queues))] <- j:
		default:
			p.full.Add(1)
			err = fmt.Errorf("%w: too many calls waiting for the backbone", broker.ErrUnavailable)
		}
	}
	p.mu.RUnlock()
	if err != nil {
		j.refuse(err)
	}
}

// work is a worker's loop. It takes a job and whatever else is queued
// behind it (up to its queue's length), and runs them in queue order: each run of
// consecutive publishes is one exchange with the backbone, so a worker's
// throughput grows with its backlog instead of being one round trip per
// publish. Order per topic holds: a topic has one worker, and a batch is
// answered before the next job starts.
func (p *publisher) work(q <-chan pubJob) {
	var (
		jobs []pubJob
		msgs []broker.Message
		errs []error
	)
	for j := range q {
		jobs = append(jobs[:0], j)
	fill:
		// A worker sends at most its whole queue at once, so a burst drains
		// at the pace of the backbone's round trips rather than being
		// refused (a stalled backbone answers the batch as one, within one
		// timeout).
		for len(jobs) < cap(q) {
			select {
			case j, ok := <-q:
				if !ok {
					break fill
				}
				jobs = append(jobs, j)
			default:
				break fill
			}
		}
		for i := 0; i < len(jobs); {
			if jobs[i].run != nil {
				jobs[i].run()
				i++
				continue
			}
			k := i
			for k < len(jobs) && jobs[k].run == nil {
				k++
			}
			msgs, errs = p.g.publishBatch(p.batcher, jobs[i:k], msgs, errs)
			p.batches.Add(1)
			i = k
		}
		clear(jobs)
		clear(msgs)
	}
}

// stop answers what is queued (each within PublishTimeout) and stops the
// workers. Called once, after the connections are gone.
func (p *publisher) stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	for _, q := range p.queues {
		close(q)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// publishRelay sends a payload already in relay form (see hub.AppendRelay).
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
// publisher worker's, see publisher.work): one exchange with the backbone
// for them all (sendBatch), then each job's answer. msgs and errs are the
// worker's scratch, returned for reuse.
func (g *Gateway) publishBatch(bp broker.BatchPublisher, jobs []pubJob, msgs []broker.Message, errs []error) ([]broker.Message, []error) {
	msgs, errs = msgs[:0], scratchErrs(errs, len(jobs))
	for _, j := range jobs {
		msgs = append(msgs, broker.Message{Topic: j.topic, Payload: j.relay})
	}
	g.sendBatch(context.Background(), bp, msgs, errs)
	for i, j := range jobs {
		j.done(errs[i])
	}
	return msgs, errs
}

// scratchErrs returns errs resized to n, cleared.
func scratchErrs(errs []error, n int) []error {
	if cap(errs) < n {
		return make([]error, n)
	}
	errs = errs[:n]
	clear(errs)
	return errs
}

// sendBatch publishes msgs (relay form, no history topic) in one exchange
// under publishRelay's rules: the broker healthy first, at most
// PublishTimeout, every failure read as broker.ErrUnavailable (503 /
// unavailable). errs gets each message's result.
func (g *Gateway) sendBatch(ctx context.Context, bp broker.BatchPublisher, msgs []broker.Message, errs []error) {
	g.msgsIn.Add(uint64(len(msgs)))
	if err := g.broker.Health(); err != nil {
		g.publishRejects.Add(uint64(len(msgs)))
		for i := range msgs {
			errs[i] = asUnavailable(err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.PublishTimeout)
	defer cancel()
	bp.PublishBatch(ctx, msgs, errs)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	for i, err := range errs[:len(msgs)] {
		if err != nil && timedOut {
			g.publishTimeouts.Add(1)
		}
		errs[i] = asUnavailable(err)
	}
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
