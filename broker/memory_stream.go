package broker

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/subsock/subsock/internal/shrink"
)

// Memory history. A bus keeps every stream of its nodes in memHistory:
// streamShards lock stripes picked by a hash of the topic, each a map and
// a list of its streams from the most to the least recently published. A
// publish takes its stripe's lock for the lookup only; the offset is given
// and the Handlers called under the stream's own lock, so that delivery
// order is offset order and publishes on different topics run side by
// side.
//
// A stream is dropped whole (its topic starts again at a new epoch) when
// it expired, or when the bus holds more than its cap (SetHistoryMemory)
// and it is the least recently published. Expired streams are reclaimed
// without a goroutine: an expired stream found by a publish or a read
// starts afresh in place, each publish drops up to two expired streams at
// the old end of its stripe's list, and HistoryStats sweeps every stripe.
//
// Locks, in the order they may be taken:
//
//	memStream.mu -> streamShard.mu -> (nothing)
//	memStream.mu -> MemoryBus.mu (read)
//	memHistory.evictMu -> streamShard.mu
//
// A stripe's lock is held only briefly, and while holding it a stream's
// lock is only ever tried (TryLock), never waited for: a stream that is
// busy is not dropped then. Handlers run under memStream.mu only.

const (
	streamShards = 64
	// streamPubBytes and streamBytes are what a publication and a stream
	// count for beyond their payload and topic, for the cap: roughly the
	// entry in the ring with its stream-form header, and the stream's
	// struct, map entry and epoch.
	streamPubBytes = 64
	streamBytes    = 256
	// defaultHistoryMemory is the cap of a bus's streams unless set.
	defaultHistoryMemory = 256 << 20
	// sweepPerPublish bounds the expired streams a publish drops.
	sweepPerPublish = 2
)

// memHistory is a bus's streams.
type memHistory struct {
	seed    maphash.Seed
	origin  time.Time    // the clock below is monotonic nanoseconds since
	limit   atomic.Int64 // the byte cap
	bytes   atomic.Int64 // held by every stream, overheads included
	streams atomic.Int64
	evictMu sync.Mutex // one eviction at a time; taken with no other lock held
	shards  [streamShards]streamShard
}

// streamShard is one lock stripe, padded to two cache lines as the
// registry's are.
type streamShard struct {
	mu sync.Mutex
	m  map[string]*memStream
	// newest and oldest end the list of the stripe's streams, ordered by
	// touched.
	newest, oldest *memStream
	high           shrink.Watermark // rebuilds m once a storm of topics has left
	_              [128 - 40]byte
}

// memStream is one topic's stream.
type memStream struct {
	topic string

	// Guarded by the stripe's mu.
	newer, older *memStream
	touched      int64 // clock at the last publish (or creation), for the list
	ttl          int64 // nanoseconds the stream outlives touched; 0: no expiry

	mu     sync.Mutex
	dead   bool // dropped from its stripe: look the topic up again
	epoch  string
	offset uint64 // of the last publication; 0 while none
	last   int64  // clock at the last publish or (re)creation
	keep   int64  // nanoseconds the stream outlives last; 0: no expiry
	size   int    // publications kept (Size of the last publish)
	held   int    // publications in ring
	// ring holds offset o at (o-1) % size, grown up to size as offsets
	// first reach each slot; slots of offsets not held are empty.
	ring  []streamEntry
	bytes int64 // counted in memHistory.bytes
}

// streamEntry is a publication in stream form, as Handlers got it.
type streamEntry struct {
	b  []byte
	at int // where the payload starts in b
}

func (e *streamEntry) payload() []byte { return e.b[e.at:] }

func (e *streamEntry) cost() int64 { return int64(len(e.b)-e.at) + streamPubBytes }

func (h *memHistory) init() {
	h.seed = maphash.MakeSeed()
	h.origin = time.Now()
	h.limit.Store(defaultHistoryMemory)
}

func (h *memHistory) now() int64 { return int64(time.Since(h.origin)) }

func (h *memHistory) shard(topic string) *streamShard {
	return &h.shards[maphash.String(h.seed, topic)%streamShards]
}

// lookup returns topic's stream, made if there is none. A publish
// (publish true) moves it to the newest end of the list and drops up to
// sweepPerPublish expired streams from the oldest end.
func (h *memHistory) lookup(topic string, now int64, p StreamPolicy, publish bool) *memStream {
	sh := h.shard(topic)
	ttl := int64(p.TTL)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.m[topic]
	switch {
	case s == nil:
		s = &memStream{topic: topic, epoch: newEpoch(), last: now, keep: ttl, bytes: streamBytes + int64(len(topic))}
		h.bytes.Add(s.bytes)
		h.streams.Add(1)
		if sh.m == nil {
			sh.m = make(map[string]*memStream)
		}
		sh.m[topic] = s
		sh.high.Grew(len(sh.m))
	case !publish:
		return s
	case sh.newest != s:
		sh.unlinkLocked(s)
	}
	s.touched, s.ttl = now, ttl
	if sh.newest != s {
		sh.pushLocked(s)
	}
	if publish {
		for range sweepPerPublish {
			o := sh.oldest
			if o == s || !o.expiredAt(now) || !h.dropLocked(sh, o) {
				break
			}
		}
	}
	return s
}

// touch moves s, which its caller holds locked, to the newest end: it
// starts afresh on a read.
func (h *memHistory) touch(s *memStream, now int64) {
	sh := h.shard(s.topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.unlinkLocked(s)
	s.touched, s.ttl = now, s.keep
	sh.pushLocked(s)
}

func (sh *streamShard) pushLocked(s *memStream) {
	s.newer, s.older = nil, sh.newest
	if sh.newest != nil {
		sh.newest.newer = s
	} else {
		sh.oldest = s
	}
	sh.newest = s
}

func (sh *streamShard) unlinkLocked(s *memStream) {
	if s.newer != nil {
		s.newer.older = s.older
	} else {
		sh.newest = s.older
	}
	if s.older != nil {
		s.older.newer = s.newer
	} else {
		sh.oldest = s.newer
	}
	s.newer, s.older = nil, nil
}

// expiredAt tells from the list's fields (stripe lock held) whether s
// expired.
func (s *memStream) expiredAt(now int64) bool { return s.ttl > 0 && now-s.touched > s.ttl }

// dropLocked removes s from sh, unless s is busy, and frees what it holds;
// a caller that still holds s finds it dead and looks the topic up again.
func (h *memHistory) dropLocked(sh *streamShard, s *memStream) bool {
	if !s.mu.TryLock() {
		return false
	}
	defer s.mu.Unlock()
	sh.unlinkLocked(s)
	delete(sh.m, s.topic)
	if sh.high.Shrunk(len(sh.m)) {
		sh.m = shrink.Map(sh.m)
	}
	s.dead = true
	s.ring, s.held = nil, 0
	h.bytes.Add(-s.bytes)
	h.streams.Add(-1)
	s.bytes = 0
	return true
}

// trim drops the least recently published streams while the bus holds
// more than its cap. Its caller holds no lock.
func (h *memHistory) trim() {
	if h.bytes.Load() <= h.limit.Load() {
		return
	}
	h.evictMu.Lock()
	defer h.evictMu.Unlock()
	var busy [streamShards]bool // stripes whose streams were all busy
	for h.bytes.Load() > h.limit.Load() {
		// The least recently published stream of the bus is the oldest of
		// some stripe.
		best, at := -1, int64(0)
		for i := range h.shards {
			sh := &h.shards[i]
			if busy[i] {
				continue
			}
			sh.mu.Lock()
			if o := sh.oldest; o != nil && (best < 0 || o.touched < at) {
				best, at = i, o.touched
			}
			sh.mu.Unlock()
		}
		if best < 0 {
			return // nothing left that can be dropped now; the next publish tries again
		}
		sh := &h.shards[best]
		sh.mu.Lock()
		dropped := false
		for s := sh.oldest; s != nil && !dropped; s = s.newer {
			dropped = h.dropLocked(sh, s)
		}
		sh.mu.Unlock()
		busy[best] = !dropped
	}
}

// sweep drops the expired streams found from the oldest end of every
// stripe. A stream with a longer TTL shields those behind it until it
// expires itself or they are touched.
func (h *memHistory) sweep() {
	now := h.now()
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for sh.oldest != nil && sh.oldest.expiredAt(now) && h.dropLocked(sh, sh.oldest) {
			// dropped; the next one is now the oldest
		}
		sh.mu.Unlock()
	}
}

// expired tells whether s (locked) outlived its TTL.
func (s *memStream) expired(now int64) bool { return s.keep > 0 && now-s.last > s.keep }

// resetLocked starts s afresh: a new epoch, no publications.
func (h *memHistory) resetLocked(s *memStream, now int64, p StreamPolicy) {
	var freed int64
	for i := range s.ring {
		if s.ring[i].b != nil {
			freed += s.ring[i].cost()
		}
	}
	s.bytes -= freed
	h.bytes.Add(-freed)
	s.ring, s.held, s.offset = nil, 0, 0
	s.epoch = newEpoch()
	s.last, s.keep = now, int64(p.TTL)
}

// resizeLocked keeps the last size publications of s in a ring of size.
func (h *memHistory) resizeLocked(s *memStream, size int) {
	ring := make([]streamEntry, min(s.offset, uint64(size)))
	keep := min(s.held, size)
	var freed int64
	for k := range s.held {
		o := s.offset - uint64(s.held) + 1 + uint64(k)
		e := s.ring[(o-1)%uint64(s.size)]
		if k < s.held-keep {
			freed += e.cost()
			continue
		}
		ring[(o-1)%uint64(size)] = e
	}
	s.bytes -= freed
	h.bytes.Add(-freed)
	s.ring, s.size, s.held = ring, size, keep
}

// appendLocked gives payload the next offset and keeps it, in stream form,
// which it returns (valid while s stays locked).
func (h *memHistory) appendLocked(s *memStream, payload []byte, p StreamPolicy, now int64) []byte {
	if p.Size != s.size {
		h.resizeLocked(s, p.Size)
	}
	o := s.offset + 1
	i := int((o - 1) % uint64(s.size))
	if i == len(s.ring) {
		s.ring = append(s.ring, streamEntry{})
	}
	e := &s.ring[i]
	var delta int64
	if s.held == s.size {
		delta -= e.cost()
	} else {
		s.held++
	}
	// The slot's buffer is reused: its publication's Handlers returned and
	// readers copied it, under this lock. One much larger than needed is
	// let go, so a burst of big payloads does not stay.
	need := 1 + 20 + 1 + len(s.epoch) + 1 + len(payload)
	buf := e.b[:0]
	if cap(buf) < need || cap(buf) > 2*need+64 {
		buf = make([]byte, 0, need)
	}
	buf = AppendStream(buf, Position{Offset: o, Epoch: s.epoch}, payload)
	e.b, e.at = buf, len(buf)-len(payload)
	delta += e.cost()
	s.bytes += delta
	h.bytes.Add(delta)
	s.offset, s.last, s.keep = o, now, int64(p.TTL)
	return buf
}

// readLocked returns the publications q asks for, copied.
func (s *memStream) readLocked(q StreamQuery) []Publication {
	if q.Limit <= 0 || s.held == 0 {
		return nil
	}
	first := s.offset - uint64(s.held) + 1
	from := first
	switch {
	case q.Last > 0:
		if uint64(q.Last) < uint64(s.held) {
			from = s.offset - uint64(q.Last) + 1
		}
	case q.Since >= s.offset:
		return nil
	case q.Since >= first:
		from = q.Since + 1
	}
	n := int(min(uint64(q.Limit), s.offset-from+1))
	pubs := make([]Publication, n)
	total := 0
	for k := range pubs {
		o := from + uint64(k)
		total += len(s.ring[(o-1)%uint64(s.size)].payload())
	}
	buf := make([]byte, 0, total) // one allocation for every payload
	for k := range pubs {
		o := from + uint64(k)
		start := len(buf)
		buf = append(buf, s.ring[(o-1)%uint64(s.size)].payload()...)
		pubs[k] = Publication{Offset: o, Payload: buf[start:len(buf):len(buf)]}
	}
	return pubs
}

var _ Streamer = (*Memory)(nil)

// PublishStream gives payload the next offset of topic's stream on the
// bus, keeps a copy and calls the Handler of every subscribed node with it
// in stream form, under the stream's lock (see Streamer). It fails with
// ErrUnavailable while the bus is stopped.
func (m *Memory) PublishStream(ctx context.Context, topic string, payload []byte, p StreamPolicy) (Position, error) {
	if err := ctx.Err(); err != nil {
		return Position{}, err
	}
	p = p.normalized()
	h := &m.bus.hist
	now := h.now()
	for {
		s := h.lookup(topic, now, p, true)
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			continue
		}
		// Who gets it is read under the stream's lock, as a script on
		// Redis sees the subscribers of the moment it publishes.
		m.bus.mu.RLock()
		closed, down, subs := m.closed, m.bus.down, m.bus.topics[topic]
		if single := m.bus.single; single != nil && !single.closed {
			subs = []*Memory{single} // no allocation: it does not escape
		}
		m.bus.mu.RUnlock()
		if closed || down != nil {
			s.mu.Unlock()
			h.trim() // the lookup may have made the stream
			if closed {
				return Position{}, ErrClosed
			}
			return Position{}, m.unavailable(down)
		}
		if s.expired(now) {
			h.resetLocked(s, now, p)
		}
		msg := h.appendLocked(s, payload, p, now)
		pos := Position{Offset: s.offset, Epoch: s.epoch}
		m.stats.published.Add(1)
		for _, sub := range subs {
			sub.stats.received.Add(1)
			sub.h(topic, msg)
		}
		s.mu.Unlock()
		h.trim()
		return pos, nil
	}
}

// ReadStream returns the position of topic's stream on the bus and the
// publications q asks for. It fails with ErrUnavailable while the bus is
// stopped.
func (m *Memory) ReadStream(ctx context.Context, topic string, q StreamQuery, p StreamPolicy) (Position, []Publication, error) {
	if err := ctx.Err(); err != nil {
		return Position{}, nil, err
	}
	m.bus.mu.RLock()
	closed, down := m.closed, m.bus.down
	m.bus.mu.RUnlock()
	if closed {
		return Position{}, nil, ErrClosed
	}
	if down != nil {
		return Position{}, nil, m.unavailable(down)
	}
	p = p.normalized()
	h := &m.bus.hist
	now := h.now()
	for {
		s := h.lookup(topic, now, p, false)
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			continue
		}
		if s.expired(now) {
			h.resetLocked(s, now, p)
			h.touch(s, now)
		}
		pos := Position{Offset: s.offset, Epoch: s.epoch}
		pubs := s.readLocked(q)
		s.mu.Unlock()
		h.trim()
		return pos, pubs, nil
	}
}

// SetHistoryMemory caps the bytes the bus's streams hold (see
// HistoryStats); past it the least recently published streams are dropped
// whole. n <= 0 sets the default, 256 MiB.
func (bus *MemoryBus) SetHistoryMemory(n int64) {
	if n <= 0 {
		n = defaultHistoryMemory
	}
	bus.hist.limit.Store(n)
	bus.hist.trim()
}

// HistoryStats reports the streams the bus holds and the bytes they count
// for against its cap: each publication's payload plus 64 bytes, and each
// stream's topic plus 256 bytes. It drops expired streams first.
func (bus *MemoryBus) HistoryStats() (streams int, bytes int64) {
	bus.hist.sweep()
	return int(bus.hist.streams.Load()), bus.hist.bytes.Load()
}

// HistoryStats reports the streams of m's bus (see MemoryBus.HistoryStats).
func (m *Memory) HistoryStats() (streams int, bytes int64) { return m.bus.HistoryStats() }
