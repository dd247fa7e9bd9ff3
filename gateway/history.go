package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/gateway/httpwire"
	"github.com/subsock/subsock/gateway/hub"
	"github.com/subsock/subsock/poller"
	"github.com/subsock/subsock/proto"
)

// History: topics matching a HistoryRule have a stream on the backbone
// (broker.Streamer), so every publication carries an offset and a client
// that reconnects gets what it missed. A node adds three things:
//   - publishes on a history topic go through PublishStream, which answers
//     the publication's position (offset, epoch);
//   - each connection remembers, per history topic, the last offset it was
//     sent and the epoch, so a message reaches it at most once, in order;
//   - a sub on a history topic reads the stream (its position, and the
//     publications the client asked for with since or last), sends them
//     before the ack, and holds the live messages that arrive meanwhile
//     until the ack is out, dropping those it already replayed.
//
// Topics without history take none of these paths: Hub.Deliver checks one
// byte (broker.StreamMark) and a session without history topics holds one
// nil pointer.

// HistoryRule gives the topics matching Pattern a stream of Size
// publications, kept for TTL after the last one.
type HistoryRule struct {
	Pattern auth.Pattern
	Size    int
	TTL     time.Duration
}

// Limits on a rule: a stream is replayed whole into one connection's queue.
const (
	maxHistorySize    = 100_000
	defaultHistoryTTL = 10 * time.Minute
)

var (
	// ErrBadHistoryRule reports a -history value that does not parse.
	ErrBadHistoryRule = errors.New("gateway: bad history rule")
	// ErrNoHistory is returned by New when History is set and the broker
	// keeps no streams (NATS core).
	ErrNoHistory = errors.New("gateway: history needs a broker that keeps streams (memory, redis, redis-cluster); NATS core keeps none")
)

// ParseHistoryRule parses PATTERN=SIZE[,TTL], as in
// "chat.>=100,10m" or "prices.*=1,1h"; TTL defaults to 10m.
func ParseHistoryRule(s string) (HistoryRule, error) {
	bad := func(why string) (HistoryRule, error) {
		return HistoryRule{}, fmt.Errorf("%w %q: %s", ErrBadHistoryRule, s, why)
	}
	eq := strings.LastIndexByte(s, '=')
	if eq < 0 {
		return bad("want PATTERN=SIZE[,TTL]")
	}
	p, err := auth.ParsePattern(s[:eq])
	if err != nil {
		return bad(err.Error())
	}
	sizeStr, ttlStr, hasTTL := strings.Cut(s[eq+1:], ",")
	size, err := strconv.Atoi(sizeStr)
	if err != nil || size < 1 || size > maxHistorySize {
		return bad(fmt.Sprintf("SIZE must be an integer from 1 to %d", maxHistorySize))
	}
	ttl := defaultHistoryTTL
	if hasTTL {
		if ttl, err = time.ParseDuration(ttlStr); err != nil || ttl <= 0 {
			return bad("TTL must be a positive duration such as 10m")
		}
	}
	return HistoryRule{Pattern: p, Size: size, TTL: ttl}, nil
}

// String formats r as ParseHistoryRule reads it.
func (r HistoryRule) String() string {
	return r.Pattern.String() + "=" + strconv.Itoa(r.Size) + "," + r.TTL.String()
}

// history is the node's part: the rules and the broker's streams.
type history struct {
	rules   []HistoryRule
	streams broker.Streamer // nil when rules is empty

	recovered, notRecovered, replayed, heldOverflows, replayOverBudget atomic.Uint64
}

func (h *history) init(rules []HistoryRule, b broker.Broker) error {
	if len(rules) == 0 {
		return nil
	}
	st, ok := b.(broker.Streamer)
	if !ok {
		return ErrNoHistory
	}
	h.rules, h.streams = rules, st
	return nil
}

// policy returns how topic's stream is kept; ok is false for a topic
// without history.
func (h *history) policy(topic string) (p broker.StreamPolicy, ok bool) {
	for i := range h.rules {
		if r := &h.rules[i]; r.Pattern.Match(topic) {
			return broker.StreamPolicy{Size: r.Size, TTL: r.TTL}, true
		}
	}
	return p, false
}

// sessionStreams is a connection's state for its history topics, made at
// its first one.
type sessionStreams struct {
	// mu is a leaf lock: deliverStream takes it under a registry shard's
	// read lock, so nothing that holds it takes session.mu or a registry
	// lock (the Conn's own lock, in Enqueue, is a leaf too).
	mu sync.Mutex
	m  map[string]*streamState
}

// streamState is one history topic of one connection.
type streamState struct {
	epoch      string // of the last offset sent
	last       uint64 // the last offset sent (or the position acknowledged)
	recovering bool   // the sub's ack is not out yet: live messages are held
	held       []heldMsg
	heldBytes  int
}

// heldMsg is a live message that arrived while its sub was recovering.
type heldMsg struct {
	offset  uint64
	epoch   string
	fr, efr []byte // the frame, and the one carrying the epoch
}

// streamsOf returns s's history state, making it; s.mu is held.
func streamsOf(s *session) *sessionStreams {
	if s.hist == nil {
		s.hist = &sessionStreams{m: make(map[string]*streamState)}
	}
	return s.hist
}

// forgetStream drops s's state for topic once it is unsubscribed.
func forgetStream(s *session, topic string) {
	if h := s.hist; h != nil {
		h.mu.Lock()
		delete(h.m, topic)
		h.mu.Unlock()
	}
}

// deliverStream fans out one publication of a history topic: Hub.Deliver for
// payloads in stream form. Each frame is built once per codec; each
// connection gets it unless it already has that offset, and holds it while
// its sub is recovering.
func (g *Gateway) deliverStream(topic string, payload []byte) {
	start := time.Now()
	off, ep, relay, ok := broker.ParseStream(payload)
	if !ok || len(relay) == 0 {
		return
	}
	f, data, skip, ok := hub.SplitRelay(relay, g.ctl.id)
	if !ok {
		return
	}
	var frames, eframes [hub.NWires][]byte
	var failed [hub.NWires]bool
	var epoch string // ep as a string, made at most once
	epochStr := func() string {
		if epoch == "" {
			epoch = string(ep)
		}
		return epoch
	}
	build := func(c uint8, withEpoch bool) []byte {
		if failed[c] {
			return nil
		}
		cache := &frames[c]
		if withEpoch {
			cache = &eframes[c]
		}
		if *cache == nil {
			b, err := hub.BuildStreamFor(c, topic, off, epochStr(), withEpoch, f, data)
			if err != nil {
				failed[c] = true
				g.hub.ConvertErrors.Add(1)
				return nil
			}
			*cache = b
		}
		return *cache
	}
	var sent, slow uint64
	var prompt bool
	g.reg.RangeSized(topic, func(n int) { prompt = g.hub.Prompt(n) }, func(s *session) bool {
		h := s.hist
		if skip != 0 && s.m.CID == skip {
			// Its publisher asked not to get it back; the offset still
			// counts as sent, so it is no gap.
			if h != nil {
				h.mu.Lock()
				if st := h.m[topic]; st != nil && !st.recovering && st.epoch == string(ep) && off > st.last {
					st.last = off
				}
				h.mu.Unlock()
			}
			return true
		}
		if h == nil {
			return true // joined before its state was made: cannot happen
		}
		h.mu.Lock()
		st := h.m[topic]
		var fr []byte
		switch {
		case st == nil:
		case st.recovering:
			if fr, efr := build(s.m.Wire, false), build(s.m.Wire, true); fr != nil {
				g.holdLiveLocked(s, st, heldMsg{offset: off, epoch: epochStr(), fr: fr, efr: efr})
			}
		case st.epoch != string(ep):
			// The stream lost its past since this connection's position:
			// the epoch on the message tells the client so.
			fr = build(s.m.Wire, true)
			st.epoch, st.last = epochStr(), off
		case off <= st.last:
			// Sent already (replayed before the ack).
		default:
			fr = build(s.m.Wire, false)
			st.last = off
		}
		if fr != nil {
			sent++
			if hub.Enqueue(&s.m, fr, prompt) == poller.ErrOverflow {
				slow++
			}
		}
		h.mu.Unlock()
		return true
	})
	g.hub.MsgsOut.Add(sent)
	g.hub.Fanout.Observe(time.Since(start).Seconds())
	if slow > 0 {
		if ce := g.log.Check(zap.InfoLevel, "closed slow consumers"); ce != nil {
			ce.Write(zap.String("topic", topic), zap.Uint64("count", slow))
		}
	}
}

// holdLiveLocked keeps a live message until the sub's ack is out; a
// connection whose held messages pass MaxPending is a slow consumer, as it
// would be had they been queued. h.mu is held.
func (g *Gateway) holdLiveLocked(s *session, st *streamState, m heldMsg) {
	if st.heldBytes+len(m.fr) > g.cfg.Poller.MaxPending {
		g.hist.heldOverflows.Add(1)
		s.conn().Abort(finalFor(s, slowFrame, sseSlowFinal))
		return
	}
	st.held = append(st.held, m)
	st.heldBytes += len(m.fr)
}

// subHistory is the history part of one sub: its history topics, what the
// client asked to recover, and the positions once read.
type subHistory struct {
	topics []histTopic
	since  map[string]proto.Position
	last   uint64
}

type histTopic struct {
	name   string
	policy broker.StreamPolicy
	fresh  bool // joined by this sub: replayed and held; else already subscribed
	pos    broker.Position
	pubs   []broker.Publication
}

// planHistory returns the history part of a sub, nil when none of its
// topics has history. s.mu is held.
func (g *Gateway) planHistory(s *session, req *proto.Request) *subHistory {
	if len(g.hist.rules) == 0 {
		return nil
	}
	var sh *subHistory
	for _, t := range req.Topics {
		pol, ok := g.hist.policy(t)
		if !ok {
			continue
		}
		if sh == nil {
			sh = &subHistory{since: req.Since, last: req.Last}
		}
		dup := false
		for _, ht := range sh.topics {
			dup = dup || ht.name == t
		}
		if !dup {
			sh.topics = append(sh.topics, histTopic{name: t, policy: pol, fresh: !s.subs.Has(t)})
		}
	}
	return sh
}

// startRecovering marks sh's fresh topics as recovering, before they are
// joined, so that the live messages that reach them are held. s.mu is held.
func startRecovering(s *session, sh *subHistory) {
	h := streamsOf(s)
	h.mu.Lock()
	for _, ht := range sh.topics {
		if ht.fresh {
			h.m[ht.name] = &streamState{recovering: true}
		}
	}
	h.mu.Unlock()
}

// query is what the sub reads of one topic's stream.
func (sh *subHistory) query(ht *histTopic) broker.StreamQuery {
	if !ht.fresh {
		return broker.StreamQuery{}
	}
	if p, ok := sh.since[ht.name]; ok {
		return broker.StreamQuery{Since: p.Offset, Limit: ht.policy.Size}
	}
	if sh.last > 0 {
		n := int(min(sh.last, uint64(ht.policy.Size)))
		return broker.StreamQuery{Last: n, Limit: n}
	}
	return broker.StreamQuery{}
}

// readHistory reads the streams of a sub whose topics are all live
// upstream, then answers it (finishSub). The in-process broker answers at
// once; a network one is read on a publisher worker.
func (g *Gateway) readHistory(s *session, pr *pendingReply) {
	sh := pr.hist
	read := func() {
		var err error
		for i := range sh.topics {
			ht := &sh.topics[i]
			ctx, cancel := context.WithTimeout(context.Background(), g.cfg.BrokerOptions.Timeout)
			ht.pos, ht.pubs, err = g.hist.streams.ReadStream(ctx, ht.name, sh.query(ht), ht.policy)
			cancel()
			if err != nil {
				break
			}
		}
		g.finishSub(s, pr, err)
	}
	if g.pubs.inline() {
		read()
		return
	}
	g.pubs.submitAny(read, func(err error) { g.finishSub(s, pr, err) })
}

// finishSub answers a sub with history once its streams are read: the
// replayed publications, then the ack with the positions. The topics stay
// recovering until flushRepliesLocked sends that, after every reply before
// it.
func (g *Gateway) finishSub(s *session, pr *pendingReply, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pr.ready {
		return // timed out meanwhile
	}
	if err != nil {
		g.failSubLocked(s, pr, "reading the topic's history: "+asUnavailable(err).Error())
		g.flushRepliesLocked(s)
		return
	}
	h := streamsOf(s)
	var out []byte
	positions := make([]proto.TopicPosition, 0, len(pr.hist.topics))
	// A replay is queued outside -max-pending (see flushRepliesLocked);
	// -max-replay bounds what one connection may have queued that way.
	budget := g.cfg.MaxReplay - s.conn().Exempt()
	h.mu.Lock()
	for i := range pr.hist.topics {
		ht := &pr.hist.topics[i]
		tp := proto.TopicPosition{Topic: ht.name, Offset: ht.pos.Offset, Epoch: ht.pos.Epoch}
		since, asked := pr.hist.since[ht.name]
		tp.Asked = asked
		st := h.m[ht.name]
		switch {
		case st == nil:
			// Unsubscribed meanwhile: the position is the stream's.
		case !ht.fresh:
			// Already subscribed on this connection: no replay, the
			// connection's own position stands.
			// Whole only if the client has everything this connection sent.
			tp.Offset, tp.Epoch = st.last, st.epoch
			tp.Recovered = asked && since.Epoch == st.epoch && since.Offset >= st.last
		default:
			replay := ht.pubs
			if asked {
				tp.Recovered = canRecover(since, ht.pos, ht.pubs)
				if !tp.Recovered {
					replay = nil
				}
			}
			frames, size := g.replayFrames(s, ht, replay)
			if size > budget {
				g.hist.replayOverBudget.Add(1)
				if asked {
					// All of it or nothing: the client reloads instead.
					frames, size, tp.Recovered = nil, 0, false
				} else {
					frames, size = newestWithin(frames, budget) // last K: the newest that fit
				}
			}
			budget -= size
			for _, fr := range frames {
				out = append(out, fr...)
			}
			g.hist.replayed.Add(uint64(len(frames)))
			st.epoch, st.last = ht.pos.Epoch, ht.pos.Offset
		}
		if asked {
			if tp.Recovered {
				g.hist.recovered.Add(1)
			} else {
				g.hist.notRecovered.Add(1)
			}
		}
		positions = append(positions, tp)
	}
	h.mu.Unlock()
	switch {
	case s.m.Wire == hub.WireSSE:
		out = sseAnswer(s, out, positions)
	case pr.hasID:
		out = append(out, sealReply(s, hub.Codecs[s.m.Wire].AppendAckPositions(frame.Reserve(nil), pr.id, positions))...)
	}
	pr.ready, pr.frame, pr.recovers = true, out, true
	if len(out) == 0 {
		pr.frame = nil
	}
	g.flushRepliesLocked(s)
}

// replayFrames builds the frames of a replay for s's wire, and their size.
func (g *Gateway) replayFrames(s *session, ht *histTopic, pubs []broker.Publication) ([][]byte, int) {
	frames := make([][]byte, 0, len(pubs))
	size := 0
	for _, p := range pubs {
		if len(p.Payload) == 0 {
			continue
		}
		f, data, _, ok := hub.SplitRelay(p.Payload, g.ctl.id)
		if !ok {
			continue
		}
		fr, err := hub.BuildStreamFor(s.m.Wire, ht.name, p.Offset, ht.pos.Epoch, false, f, data)
		if err != nil {
			g.hub.ConvertErrors.Add(1)
			continue
		}
		frames = append(frames, fr)
		size += len(fr)
	}
	return frames, size
}

// newestWithin keeps the newest frames whose sizes sum to at most budget.
func newestWithin(frames [][]byte, budget int) ([][]byte, int) {
	size, i := 0, len(frames)
	for i > 0 && size+len(frames[i-1]) <= budget {
		i--
		size += len(frames[i])
	}
	return frames[i:], size
}

// canRecover reports whether the stream read still holds everything after
// since: same epoch, and either nothing was published since or the first
// publication held is the one right after it.
func canRecover(since proto.Position, pos broker.Position, pubs []broker.Publication) bool {
	switch {
	case since.Epoch != pos.Epoch || since.Offset > pos.Offset:
		return false
	case since.Offset == pos.Offset:
		return true
	default:
		return len(pubs) > 0 && pubs[0].Offset == since.Offset+1 && pubs[len(pubs)-1].Offset == pos.Offset
	}
}

// endRecovering runs as a sub's ack is queued: what was held for its fresh
// topics follows it, minus what the replay already sent. s.mu is held.
func (g *Gateway) endRecovering(s *session, sh *subHistory) {
	h := s.hist
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ht := range sh.topics {
		st := h.m[ht.name]
		if !ht.fresh || st == nil || !st.recovering {
			continue
		}
		for _, m := range st.held {
			var fr []byte
			switch {
			case m.epoch != st.epoch:
				fr, st.epoch, st.last = m.efr, m.epoch, m.offset
			case m.offset <= st.last:
				continue
			default:
				fr, st.last = m.fr, m.offset
			}
			_ = s.conn().Enqueue(fr)
		}
		st.recovering, st.held, st.heldBytes = false, nil, 0
	}
}

// historyAnswer is the body of GET /history.
type historyAnswer struct {
	Topic        string          `json:"topic"`
	Epoch        string          `json:"epoch"`
	Offset       uint64          `json:"offset"`
	Publications []historyRecord `json:"publications"`
}

type historyRecord struct {
	Offset uint64          `json:"offset"`
	Data   json.RawMessage `json:"data"`
}

// handleHistory is GET /history?topic=T[&since=N][&limit=L]: the
// publications a topic's stream holds after since, oldest first, at most
// limit (default 100), as JSON.
func (g *Gateway) handleHistory(w http.ResponseWriter, r *http.Request) {
	if !g.checkAPIKey(r) {
		httpwire.APIError(w, http.StatusUnauthorized, "missing or wrong API key")
		return
	}
	q := r.URL.Query()
	topic, ok := topicParam(w, r)
	if !ok {
		return
	}
	pol, ok := g.hist.policy(topic)
	if !ok {
		httpwire.Error(w, http.StatusBadRequest, proto.CodeNotEnabled, fmt.Sprintf("topic %q has no history: no -history rule matches it", topic))
		return
	}
	sq := broker.StreamQuery{Limit: 100}
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			httpwire.APIError(w, http.StatusBadRequest, "since must be a non-negative integer offset")
			return
		}
		sq.Since = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > g.cfg.HistoryReadLimit {
			httpwire.APIError(w, http.StatusBadRequest, fmt.Sprintf("limit must be an integer from 0 to %d", g.cfg.HistoryReadLimit))
			return
		}
		sq.Limit = n
	}
	read := func() func(http.ResponseWriter) {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.BrokerOptions.Timeout)
		defer cancel()
		pos, pubs, err := g.hist.streams.ReadStream(ctx, topic, sq, pol)
		return func(w http.ResponseWriter) { g.answerHistory(w, topic, pos, pubs, err) }
	}
	g.brokerLater(w, topic, read, func(w http.ResponseWriter, err error) {
		g.answerHistory(w, topic, broker.Position{}, nil, err)
	})
}

func (g *Gateway) answerHistory(w http.ResponseWriter, topic string, pos broker.Position, pubs []broker.Publication, err error) {
	if err != nil {
		httpwire.APIError(w, http.StatusServiceUnavailable, "reading history failed: "+asUnavailable(err).Error())
		return
	}
	ans := historyAnswer{Topic: topic, Epoch: pos.Epoch, Offset: pos.Offset, Publications: make([]historyRecord, 0, len(pubs))}
	for _, p := range pubs {
		if len(p.Payload) == 0 {
			continue
		}
		f, raw, _, ok := hub.SplitRelay(p.Payload, g.ctl.id)
		if !ok {
			continue
		}
		data, err := proto.Convert(raw, f, proto.FormatJSON)
		if err != nil {
			g.hub.ConvertErrors.Add(1)
			continue
		}
		if len(data) == 0 {
			data = []byte("null")
		}
		ans.Publications = append(ans.Publications, historyRecord{Offset: p.Offset, Data: data})
	}
	httpwire.WriteJSON(w, http.StatusOK, ans)
}
