package client

import "sync"

// outcome is what a queue did with one message.
type outcome uint8

const (
	queued    outcome = iota
	coalesced         // replaced an older value the handler had not seen (Latest)
	dropped           // the queue was full (All)
)

// queue stands between the reader, which must never block, and the
// handler goroutine. push is called by the reader only; run by the
// handler goroutine only.
type queue interface {
	push(m Message) outcome
	// run calls deliver for each message until stop is closed; a message
	// being delivered when stop closes is finished first.
	run(stop <-chan struct{}, deliver func(Message))
	// pending is the number of messages waiting.
	pending() int
}

var (
	_ queue = (*allQueue)(nil)
	_ queue = (*latestQueue)(nil)
)

func newQueue(p Policy, buffer int) queue {
	if p == Latest {
		return newLatestQueue()
	}
	return &allQueue{ch: make(chan Message, buffer)}
}

// allQueue keeps every message, in order, up to its capacity.
type allQueue struct{ ch chan Message }

func (q *allQueue) push(m Message) outcome {
	select {
	case q.ch <- m:
		return queued
	default:
		return dropped
	}
}

func (q *allQueue) run(stop <-chan struct{}, deliver func(Message)) {
	for {
		select {
		case <-stop:
			return
		case m := <-q.ch:
			deliver(m)
		}
	}
}

func (q *allQueue) pending() int { return len(q.ch) }

// latestQueue keeps one message per topic, the newest; topics are served
// in the order their first unseen message arrived, so a busy topic cannot
// starve the others.
type latestQueue struct {
	mu    sync.Mutex
	slot  map[string]Message // newest unseen message per topic
	order []string           // topics with a slot, oldest first, from head
	head  int
	wake  chan struct{} // capacity 1: "there may be work"
}

func newLatestQueue() *latestQueue {
	return &latestQueue{slot: make(map[string]Message), wake: make(chan struct{}, 1)}
}

func (q *latestQueue) push(m Message) outcome {
	q.mu.Lock()
	_, had := q.slot[m.Topic]
	q.slot[m.Topic] = m
	if !had {
		q.order = append(q.order, m.Topic)
	}
	q.mu.Unlock()
	if had {
		return coalesced
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return queued
}

// next takes the oldest topic's newest message.
func (q *latestQueue) next() (Message, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.order) {
		q.order, q.head = q.order[:0], 0
		return Message{}, false
	}
	t := q.order[q.head]
	q.order[q.head] = ""
	q.head++
	m := q.slot[t]
	delete(q.slot, t)
	return m, true
}

func (q *latestQueue) run(stop <-chan struct{}, deliver func(Message)) {
	for {
		select {
		case <-stop:
			return
		case <-q.wake:
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			m, ok := q.next()
			if !ok {
				break
			}
			deliver(m)
		}
	}
}

func (q *latestQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.slot)
}
