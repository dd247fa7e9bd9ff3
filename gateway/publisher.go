package gateway

import (
	"fmt"
	"hash/maphash"
	"runtime"
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
	turn    atomic.Uint64 // round robin of submitAny
	wg      sync.WaitGroup
}

// pubJob is one broker call: a publish, or a history read. run makes the
// call and answers; refuse answers instead when the job cannot be queued.
type pubJob struct {
	run    func()
	refuse func(error)
}

// pubQueue is each worker's queue length: with the default PublishTimeout
// a stalled backbone holds at most workers × pubQueue publishes.
const pubQueue = 1024

func newPublisher(g *Gateway) *publisher {
	_, local := g.broker.(*broker.Memory)
	p := &publisher{g: g, local: local, seed: maphash.MakeSeed()}
	if local {
		return p // no queues (their buffers are ~50 KB each) and no goroutines
	}
	n := 4 * runtime.GOMAXPROCS(0) // most of their time is spent waiting on the network
	p.queues = make([]chan pubJob, n)
	for i := range p.queues {
		q := make(chan pubJob, pubQueue)
		p.queues[i] = q
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for j := range q {
				j.run()
			}
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

func (p *publisher) submitTo(h uint64, run func(), refuse func(error)) {
	p.mu.RLock()
	var err error
	if p.stopped {
		err = fmt.Errorf("%w: node shutting down", broker.ErrUnavailable)
	} else {
		select {
		case p.queues[h%uint64(len(p.queues))] <- pubJob{run: run, refuse: refuse}:
		default:
			p.full.Add(1)
			err = fmt.Errorf("%w: too many calls waiting for the backbone", broker.ErrUnavailable)
		}
	}
	p.mu.RUnlock()
	if err != nil {
		refuse(err)
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
