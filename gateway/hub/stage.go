package hub

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Stage is the node's fan-out stage: the broker hands each message to it
// (Handle is the broker.Handler) and returns to its backbone at once; the
// stage's own workers run the fan-out (the deliver func, Hub.Deliver for a
// plain message). So one topic with
// thousands of subscribers no longer holds up every other topic behind a
// backbone's single reader, and the enqueueing of several topics runs on
// several cores.
//
// Each topic maps to one worker by hash, and each worker takes its bounded
// queue in order, so a topic's messages reach every connection in the
// order the broker handed them over. A large group is not split across
// workers: per-connection order would then need a barrier per message,
// and an enqueue pass costs little beside the writers' writev (see
// BenchmarkDeliver), so there is nothing measurable to win.
//
// The broker.Handler contract lends the payload only for the call (the
// WebSocket publish path even recycles its buffer), so a message queued
// and left is a copy: one allocation per message, none per subscriber.
//
// The memory broker calls the Handler on the publisher's own goroutine;
// there the hand-off waits until its message has been fanned out
// (synchronous, set by waitForDelivery). That keeps what a single node
// promised before the stage: a publish is answered once its fan-out is
// queued, so a reply sent after it on a subscriber's connection follows
// the message. It needs no copy (the payload is lent until the wait ends)
// and is back-pressure by construction, while the messages of a topic are
// still fanned out by its one worker, in one order for every subscriber.
//
// A full queue blocks the hand-off: back-pressure, never a silent drop.
// Every wait is counted (subsock_fanout_queue_full_total) and timed
// (subsock_fanout_blocked_seconds_total). What back-pressure does depends on
// who hands over:
//   - memory broker: the publisher's own goroutine waits (it waits for the
//     fan-out anyway), so a publisher faster than the fan-out is slowed to
//     its pace rather than losing messages;
//   - Redis: rueidis's reader of the subscription connection waits and
//     stops reading (replies to SUBSCRIBEs on it wait too); Redis keeps
//     what follows in the connection's output buffer (CLIENT LIST omem)
//     and, past client-output-buffer-limit pubsub, disconnects the node,
//     which the broker reports as a lost connection (Health non-nil,
//     broker_errors_total, a resubscription);
//   - NATS: the broker's dispatcher waits; its queue (Options.QueueSize)
//     fills, then nats.go drops as a slow consumer, counted in
//     broker_errors_total.
//
// Dropping at the stage instead would lose messages while /healthz reads
// healthy; waiting lets a burst be absorbed first by the queue, then by the
// backbone's own buffer, and makes a node that cannot keep up visible
// where operators already look (/healthz, broker errors) — and the stage's
// own counters say where the wait was.
//
// Shutdown: Stop runs after the broker is closed, which is after every
// connection has been drained or aborted, so no subscriber is left for a
// queued message: what is still queued is dropped and counted
// (subsock_fanout_dropped_total), as is a hand-off that arrives once the
// stage has stopped (a memory-bus publish racing Close); a synchronous
// hand-off whose message is dropped returns then.
//
// Goroutines: Handle runs on the broker's goroutine(s) (several at once for
// the memory broker: one per publisher); each worker is a goroutine owned
// by the stage, started by NewStage and ended by Stop. Locks: Handle holds
// mu's read lock while queueing (never while waiting for delivery), Stop
// takes it to shut hand-offs out; deliver (on a worker) takes registry
// and Conn locks, never mu.
type Stage struct {
	deliver func(topic string, payload []byte)
	seed    maphash.Seed
	queues  []chan stageMsg // one per worker

	mu       sync.RWMutex
	stopped  bool          // guarded by mu: no hand-off is queued after it
	done     chan struct{} // closed by stop: workers exit, waiting hand-offs give up
	stopOnce sync.Once
	wg       sync.WaitGroup

	// synchronous makes each hand-off wait for its message's fan-out.
	synchronous atomic.Bool

	Full    atomic.Uint64 // hand-offs that found their queue full and waited
	Blocked atomic.Int64  // nanoseconds the hand-offs spent waiting
	Dropped atomic.Uint64 // messages dropped at shutdown
}

// stageMsg is one message waiting for fan-out: payload is the stage's copy,
// or for a synchronous hand-off the broker's own bytes, and done (then
// non-nil) is signalled once the message is fanned out or dropped.
type stageMsg struct {
	topic   string
	payload []byte
	done    chan struct{}
}

// donePool recycles the completion channels of synchronous hand-offs.
var donePool = sync.Pool{New: func() any { return make(chan struct{}, 1) }}

// NewStage starts workers goroutines, each with a queue of queue messages,
// running deliver.
func NewStage(workers, queue int, deliver func(topic string, payload []byte)) *Stage {
	s := &Stage{
		deliver: deliver,
		seed:    maphash.MakeSeed(),
		queues:  make([]chan stageMsg, workers),
		done:    make(chan struct{}),
	}
	for i := range s.queues {
		s.queues[i] = make(chan stageMsg, queue)
	}
	s.wg.Add(workers)
	for _, q := range s.queues {
		go s.run(q)
	}
	return s
}

// worker returns the index of topic's worker.
func (s *Stage) worker(topic string) int {
	return int(maphash.String(s.seed, topic) % uint64(len(s.queues)))
}

// Shape returns the stage's worker count and each worker's queue length.
func (s *Stage) Shape() (workers, queue int) { return len(s.queues), cap(s.queues[0]) }

// Synchronous reports whether hand-offs wait for their fan-out.
func (s *Stage) Synchronous() bool { return s.synchronous.Load() }

// Stopped reports whether Stop has ended the workers.
func (s *Stage) Stopped() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// WaitForDelivery makes every later hand-off synchronous: it returns once
// its message has been fanned out (for the memory broker, see stage).
func (s *Stage) WaitForDelivery() { s.synchronous.Store(true) }

// Handle is the broker.Handler: it queues the message on its topic's
// worker, waiting while that queue is full (see stage).
func (s *Stage) Handle(topic string, payload []byte) {
	if len(payload) == 0 {
		return
	}
	m := stageMsg{topic: topic}
	if s.synchronous.Load() {
		m.payload, m.done = payload, donePool.Get().(chan struct{})
	} else {
		m.payload = bytes.Clone(payload)
	}
	if s.enqueue(m) && m.done != nil {
		<-m.done
	}
	if m.done != nil {
		donePool.Put(m.done)
	}
}

// enqueue puts m on its worker's queue, waiting for room; it reports false
// when the stage has stopped and m was dropped.
func (s *Stage) enqueue(m stageMsg) bool {
	q := s.queues[s.worker(m.topic)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.stopped {
		s.Dropped.Add(1)
		return false
	}
	select {
	case q <- m:
		return true
	default:
	}
	s.Full.Add(1)
	t0 := time.Now()
	defer func() { s.Blocked.Add(int64(time.Since(t0))) }()
	select {
	case q <- m:
		return true
	case <-s.done:
		s.Dropped.Add(1)
		return false
	}
}

// run is one worker: it fans out its queue's messages in order until stop.
func (s *Stage) run(q <-chan stageMsg) {
	defer s.wg.Done()
	for {
		// Checked first, so that once stop is called a worker finishes at
		// most the message in hand (select picks among ready cases at random).
		select {
		case <-s.done:
			return
		default:
		}
		select {
		case m := <-q:
			s.deliver(m.topic, m.payload)
			if m.done != nil {
				m.done <- struct{}{}
			}
		case <-s.done:
			return
		}
	}
}

// Queued is the number of messages waiting in every queue.
func (s *Stage) Queued() int {
	n := 0
	for _, q := range s.queues {
		n += len(q)
	}
	return n
}

// Stop ends every worker, waits for them and drops (counting) what is
// still queued. It is idempotent.
func (s *Stage) Stop() {
	s.stopOnce.Do(func() {
		// Closing done first releases any hand-off waiting on a full queue,
		// so that taking mu below cannot wait on one.
		close(s.done)
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		s.wg.Wait()
		for _, q := range s.queues {
			for len(q) > 0 {
				if m := <-q; m.done != nil {
					m.done <- struct{}{}
				}
				s.Dropped.Add(1)
			}
		}
	})
}
