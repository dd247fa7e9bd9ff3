package gateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/gateway/httpwire"
	"github.com/subsock/subsock/gateway/hub"
	"github.com/subsock/subsock/gateway/policy"
	"github.com/subsock/subsock/poller"
	"github.com/subsock/subsock/proto"
)

// Presence: who is subscribed to a topic, cluster-wide. Nothing is stored
// for it: a node's members of a topic are its subscribers in the registry,
// and a query gathers every live node's over the control plane (each node
// answers on its own reply topic; the asker waits for every node it knows
// of, at most GatherTimeout). So presence costs nothing per subscription
// or per message, a node that dies takes its members with it at once (it
// no longer answers; it is forgotten within 30 s), and no backbone keeps
// state that could leak. The price is a cluster round trip per query.
//
// Join and leave: on a topic matching a -join-leave rule, a node publishes
// an event on the topic itself (so only the nodes with subscribers get it)
// when one of its connections joins or leaves, and each node delivers it to
// its other subscribers, built once per wire. An event carries its node's
// member count and the group's size as its node knows it; each node sums
// the latest counts it heard, takes the larger of that and the sender's
// figure (a node that got its first member late has not heard the
// others), and no event is sent or delivered while the group is above
// JoinLeaveMax, so a join storm into a large group does not become
// members² messages. A node that gets its first member of such a topic
// asks every node for its count first (a gather), since it heard none of
// the events before. The figure is then as fresh as the last event of each
// node: a bound on the storm, not an exact count.

// presenceMark is the first byte of a join or leave event on a topic.
const presenceMark = 0xFE

// presence holds the rules and the counts of join-leave topics.
type presence struct {
	on, joinLeave auth.Patterns
	max           int

	mu     sync.Mutex
	counts map[string]map[string]int // join-leave topic → node → its member count
	seeded map[string]bool           // topics whose counts were asked of every node
}

func (p *presence) init(cfg Config) error {
	var err error
	if p.on, err = auth.ParsePatterns(cfg.Presence); err != nil {
		return fmt.Errorf("gateway: -presence: %w", err)
	}
	if p.joinLeave, err = auth.ParsePatterns(cfg.JoinLeave); err != nil {
		return fmt.Errorf("gateway: -join-leave: %w", err)
	}
	p.max = cfg.JoinLeaveMax
	p.counts = make(map[string]map[string]int)
	p.seeded = make(map[string]bool)
	return nil
}

// announces reports whether topic has join and leave events.
func (p *presence) announces(topic string) bool {
	return len(p.joinLeave) > 0 && p.joinLeave.Allows(topic)
}

// appendPresenceEvent builds a join ('j') or leave ('l') event of client
// cid on node, with the node's member count after it and the group's size
// as the node knows it.
func appendPresenceEvent(dst []byte, kind byte, count, total int, node string, cid uint64, user string) []byte {
	dst = append(dst, presenceMark, kind)
	dst = binary.BigEndian.AppendUint32(dst, uint32(count))
	dst = binary.BigEndian.AppendUint32(dst, uint32(total))
	dst = append(dst, byte(len(node)))
	dst = append(dst, node...)
	dst = binary.BigEndian.AppendUint64(dst, cid)
	return append(dst, user...)
}

// memberEvent announces that s joined (kind 'j') or left ('l') topic, if
// the topic has join-leave events and the node's group is not too large.
// It never waits on the network: a network broker's publish is queued.
func (g *Gateway) memberEvent(s *session, topic string, kind byte) {
	if !g.pres.announces(topic) {
		return
	}
	cid, user := s.m.CID, userOf(s)
	if !g.pres.isSeeded(topic) {
		g.startGather(gatherCount, topic, "", func(r gatherResult) {
			g.pres.seed(topic, r.Counts, g.ctl.id)
			g.sendMemberEvent(topic, kind, cid, user)
		})
		return
	}
	g.sendMemberEvent(topic, kind, cid, user)
}

// sendMemberEvent publishes a join or leave unless the group is too large.
func (g *Gateway) sendMemberEvent(topic string, kind byte, cid uint64, user string) {
	n := g.reg.Count(topic)
	total := g.pres.heard(topic, g.ctl.id, n, 0, g.ctl.id, n)
	if total > g.pres.max || (kind == 'l' && total+1 > g.pres.max) {
		return
	}
	ev := appendPresenceEvent(nil, kind, n, total, g.ctl.id, cid, user)
	publish := func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.PublishTimeout)
		defer cancel()
		if err := g.broker.Publish(ctx, topic, ev); err != nil {
			g.presenceErrors.Add(1)
		}
	}
	if g.pubs.inline() {
		publish()
		return
	}
	g.pubs.submit(topic, publish, func(error) { g.presenceErrors.Add(1) })
}

// deliverPresence fans a join or leave event out to the topic's local
// subscribers, the member itself left out.
func (g *Gateway) deliverPresence(topic string, payload []byte) {
	const head = 2 + 4 + 4 + 1
	if len(payload) < head+8 {
		return
	}
	kind := payload[1]
	count := int(binary.BigEndian.Uint32(payload[2:]))
	theirs := int(binary.BigEndian.Uint32(payload[6:]))
	nl := int(payload[10])
	if len(payload) < head+nl+8 {
		return
	}
	node := string(payload[head : head+nl])
	cid := binary.BigEndian.Uint64(payload[head+nl:])
	user := string(payload[head+nl+8:])
	total := g.pres.heard(topic, node, count, theirs, g.ctl.id, g.reg.Count(topic))
	if total > g.pres.max {
		return
	}
	client := node + "-" + strconv.FormatUint(cid, 36)
	var frames [hub.NWires][]byte
	sent := uint64(0)
	g.reg.Range(topic, func(s *session) bool {
		if node == g.ctl.id && s.m.CID == cid {
			return true // its own join or leave
		}
		if s.m.Wire == hub.WireSSE && !s.m.Live.Load() {
			return true // the stream's head is not out yet
		}
		fr := frames[s.m.Wire]
		if fr == nil {
			fr = buildPresenceEvent(s.m.Wire, kind, topic, client, user)
			frames[s.m.Wire] = fr
		}
		sent++
		if s.conn().Enqueue(fr) == poller.ErrOverflow {
			g.log.Debug("closed a slow consumer on a presence event")
		}
		return true
	})
	g.presenceEvents.Add(sent)
}

// heard records node's member count of topic and returns the group's size
// across the cluster as this node knows it: its own count plus the latest
// each other node announced, or the sender's figure (theirs) when larger.
func (p *presence) heard(topic, node string, count, theirs int, self string, local int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.counts[topic]
	if node != self {
		if m == nil {
			m = make(map[string]int)
			p.counts[topic] = m
		}
		m[node] = count
	}
	total := local
	for n, c := range m {
		if n != self {
			total += c
		}
	}
	return max(total, theirs)
}

// forget drops what was heard of topic once this node has no subscriber
// left: it hears no more events of it.
func (p *presence) forget(topic string) {
	p.mu.Lock()
	delete(p.counts, topic)
	delete(p.seeded, topic)
	p.mu.Unlock()
}

func (p *presence) isSeeded(topic string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seeded[topic]
}

// seed records every other node's count of topic, as a gather found them.
func (p *presence) seed(topic string, counts map[string]int, self string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.counts[topic]
	if m == nil {
		m = make(map[string]int, len(counts))
		p.counts[topic] = m
	}
	for n, c := range counts {
		if n != self {
			m[n] = c
		}
	}
	p.seeded[topic] = true
}

// forgetNode drops a node that left from every count.
func (p *presence) forgetNode(node string) {
	p.mu.Lock()
	for _, m := range p.counts {
		delete(m, node)
	}
	p.mu.Unlock()
}

// buildPresenceEvent returns a join or leave as a ready frame for wire w.
func buildPresenceEvent(w uint8, kind byte, topic, client, user string) []byte {
	if w == hub.WireSSE {
		name := "join"
		if kind == 'l' {
			name = "leave"
		}
		b := append([]byte("event: "+name+"\n"+`data: {"topic":`), strconv.Quote(topic)...)
		b = append(append(b, `,"client":`...), strconv.Quote(client)...)
		b = append(append(b, `,"user":`...), strconv.Quote(user)...)
		return hub.SSEChunk(append(b, "}\n\n"...))
	}
	c := hub.Codecs[w]
	b := frame.Reserve(make([]byte, 0, frame.MaxHeaderSize+len(topic)+len(client)+len(user)+48))
	if kind == 'j' {
		b = c.AppendJoin(b, topic, client, user)
	} else {
		b = c.AppendLeave(b, topic, client, user)
	}
	op := ws.OpText
	if c.Binary() {
		op = ws.OpBinary
	}
	return frame.Seal(b, op)
}

// ---------------------------------------------------------------- gathers

// gatherKind is what a gather collects from every node.
type gatherKind string

const (
	gatherPresence gatherKind = "presence"
	gatherTopics   gatherKind = "topics"
	gatherCount    gatherKind = "count" // each node's member count of a topic
)

// gatherResult is what the nodes answered, merged.
type gatherResult struct {
	Members []proto.Member `json:"members,omitempty"`
	Topics  map[string]int `json:"topics,omitempty"`
	Counts  map[string]int `json:"counts,omitempty"` // node → count
}

// merge adds one node's answer.
func (r *gatherResult) merge(o gatherResult) {
	r.Members = append(r.Members, o.Members...)
	for n, c := range o.Counts {
		if r.Counts == nil {
			r.Counts = make(map[string]int)
		}
		r.Counts[n] = c
	}
	if len(o.Topics) > 0 {
		if r.Topics == nil {
			r.Topics = make(map[string]int, len(o.Topics))
		}
		for t, n := range o.Topics {
			r.Topics[t] += n
		}
	}
}

// gather is one query waiting for the nodes' answers.
type gather struct {
	want  map[string]bool // nodes that have not answered
	res   gatherResult
	done  func(gatherResult)
	timer *time.Timer
}

// localAnswer is this node's part of a gather.
func (g *Gateway) localAnswer(kind gatherKind, topic string, pattern auth.Pattern) gatherResult {
	var r gatherResult
	switch kind {
	case gatherPresence:
		g.reg.Range(topic, func(s *session) bool {
			r.Members = append(r.Members, proto.Member{Client: g.clientID(s), User: userOf(s)})
			return true
		})
	case gatherCount:
		r.Counts = map[string]int{g.ctl.id: g.reg.Count(topic)}
	case gatherTopics:
		r.Topics = make(map[string]int)
		g.reg.Topics(func(t string) bool {
			if !policy.Reserved(t) && (pattern.String() == "" || pattern.Match(t)) {
				if n := g.reg.Count(t); n > 0 {
					r.Topics[t] = n
				}
			}
			return true
		})
	}
	return r
}

// startGather asks every live node and calls done once each answered, or
// at GatherTimeout with what arrived (a node that does not answer has
// died or stalled). done runs on a control or timer goroutine, once.
func (g *Gateway) startGather(kind gatherKind, topic, pattern string, done func(gatherResult)) {
	var pat auth.Pattern
	if pattern != "" {
		pat, _ = auth.ParsePattern(pattern) // checked by the caller
	}
	local := g.localAnswer(kind, topic, pat)
	g.ctl.prune(time.Now(), g.cfg.NodeTTL)
	g.ctl.mu.Lock()
	if len(g.ctl.nodes) == 0 {
		g.ctl.mu.Unlock()
		done(local)
		return
	}
	g.ctl.req++
	id := g.ctl.req
	ga := &gather{want: make(map[string]bool, len(g.ctl.nodes)), res: local, done: done}
	for n := range g.ctl.nodes {
		ga.want[n] = true
	}
	g.ctl.gathers[id] = ga
	ga.timer = time.AfterFunc(g.cfg.GatherTimeout, func() { g.finishGather(id) })
	g.ctl.mu.Unlock()
	m := ctlMsg{Cmd: "gather", Kind: string(kind), Topic: topic, Pattern: pattern, Req: id}
	send := func() {
		if err := g.publishControl(m); err != nil {
			g.finishGather(id) // answer with what this node knows
		}
	}
	if g.pubs.inline() {
		send()
		return
	}
	g.pubs.submit(ctlTopic, send, func(error) { g.finishGather(id) })
}

// finishGather answers gather id with what it has, once.
func (g *Gateway) finishGather(id uint64) {
	g.ctl.mu.Lock()
	ga := g.ctl.gathers[id]
	delete(g.ctl.gathers, id)
	g.ctl.mu.Unlock()
	if ga != nil {
		ga.timer.Stop()
		ga.done(ga.res)
	}
}

// answerGather runs a gather another node asked for and sends this node's
// answer to that node's reply topic, off the fan-out worker.
func (g *Gateway) answerGather(m ctlMsg) {
	var pat auth.Pattern
	if m.Pattern != "" {
		var err error
		if pat, err = auth.ParsePattern(m.Pattern); err != nil {
			return
		}
	}
	res := g.localAnswer(gatherKind(m.Kind), m.Topic, pat)
	reply := ctlMsg{Cmd: "answer", Req: m.Req, Result: &res}
	send := func() { _ = g.publishControlTo(replyTopic(m.From), reply) }
	if g.pubs.inline() {
		send()
		return
	}
	g.pubs.submit(ctlTopic, send, func(error) {})
}

// onAnswer merges one node's answer into its gather.
func (g *Gateway) onAnswer(m ctlMsg) {
	if m.Result == nil {
		return
	}
	g.ctl.mu.Lock()
	ga := g.ctl.gathers[m.Req]
	complete := false
	if ga != nil && ga.want[m.From] {
		delete(ga.want, m.From)
		ga.res.merge(*m.Result)
		complete = len(ga.want) == 0
	}
	g.ctl.mu.Unlock()
	if complete {
		g.finishGather(m.Req)
	}
}

// stopGathers answers every gather still waiting (Shutdown).
func (g *Gateway) stopGathers() {
	g.ctl.mu.Lock()
	ids := make([]uint64, 0, len(g.ctl.gathers))
	for id := range g.ctl.gathers {
		ids = append(ids, id)
	}
	g.ctl.mu.Unlock()
	for _, id := range ids {
		g.finishGather(id)
	}
}

// presenceOp answers a presence or presence_stats request of s, after the
// gather, in the connection's reply order.
func (g *Gateway) presenceOp(s *session, req *proto.Request) *proto.Error {
	if perr := g.authorize(s, req.Topic, false); perr != nil {
		return perr
	}
	if len(g.pres.on) == 0 || !g.pres.on.Allows(req.Topic) {
		return &proto.Error{Code: proto.CodeNotEnabled, Msg: "presence is not enabled on " + req.Topic + ": no -presence rule matches it"}
	}
	codec, id, stats := hub.Codecs[s.m.Wire], req.ID, req.Op == proto.OpPresenceStats
	answer := g.deferReply(s, false)
	g.startGather(gatherPresence, req.Topic, "", func(r gatherResult) {
		if stats {
			clients, users := presenceCounts(r.Members)
			answer(sealReply(s, codec.AppendPresenceStatsAck(frame.Reserve(nil), id, clients, users)))
			return
		}
		sortMembers(r.Members)
		answer(sealReply(s, codec.AppendPresenceAck(frame.Reserve(nil), id, r.Members)))
	})
	return nil
}

// presenceCounts returns the number of members and of distinct users.
func presenceCounts(ms []proto.Member) (clients, users int) {
	seen := make(map[string]struct{}, len(ms))
	for _, m := range ms {
		seen[m.User] = struct{}{}
	}
	return len(ms), len(seen)
}

func sortMembers(ms []proto.Member) {
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].User != ms[j].User {
			return ms[i].User < ms[j].User
		}
		return ms[i].Client < ms[j].Client
	})
}

// handlePresence is GET /api/presence?topic=T and /api/presence_stats?topic=T.
func (g *Gateway) handlePresence(w http.ResponseWriter, r *http.Request) {
	if !g.apiGuard(w, r, nil) {
		return
	}
	topic, ok := topicParam(w, r)
	if !ok {
		return
	}
	if len(g.pres.on) == 0 || !g.pres.on.Allows(topic) {
		httpwire.Error(w, http.StatusBadRequest, proto.CodeNotEnabled, "presence is not enabled on "+topic+": no -presence rule matches it")
		return
	}
	stats := strings.HasSuffix(r.URL.Path, "_stats")
	httpwire.Later(w, func(respond func(func(http.ResponseWriter))) {
		g.startGather(gatherPresence, topic, "", func(res gatherResult) {
			respond(func(w http.ResponseWriter) {
				if stats {
					clients, users := presenceCounts(res.Members)
					httpwire.WriteJSON(w, http.StatusOK, map[string]any{"topic": topic, "clients": clients, "users": users})
					return
				}
				sortMembers(res.Members)
				if res.Members == nil {
					res.Members = []proto.Member{}
				}
				type member struct {
					Client string `json:"client"`
					User   string `json:"user"`
				}
				out := make([]member, len(res.Members))
				for i, m := range res.Members {
					out[i] = member{m.Client, m.User}
				}
				httpwire.WriteJSON(w, http.StatusOK, map[string]any{"topic": topic, "presence": out})
			})
		})
	})
}

// handleTopics is GET /api/topics[?pattern=P][&after=T][&limit=N]: the
// topics with a subscriber anywhere in the cluster, with their subscriber
// counts, in name order, a page at a time (after: the last topic of the
// previous page).
func (g *Gateway) handleTopics(w http.ResponseWriter, r *http.Request) {
	if !g.apiGuard(w, r, nil) {
		return
	}
	q := r.URL.Query()
	pattern := q.Get("pattern")
	if pattern != "" {
		if _, err := auth.ParsePattern(pattern); err != nil {
			httpwire.APIError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			httpwire.APIError(w, http.StatusBadRequest, "limit must be an integer from 1 to 1000")
			return
		}
		limit = n
	}
	after := q.Get("after")
	httpwire.Later(w, func(respond func(func(http.ResponseWriter))) {
		g.startGather(gatherTopics, "", pattern, func(res gatherResult) {
			names := make([]string, 0, len(res.Topics))
			for t := range res.Topics {
				if t > after {
					names = append(names, t)
				}
			}
			sort.Strings(names)
			more := len(names) > limit
			if more {
				names = names[:limit]
			}
			type entry struct {
				Topic       string `json:"topic"`
				Subscribers int    `json:"subscribers"`
			}
			out := make([]entry, len(names))
			for i, t := range names {
				out[i] = entry{t, res.Topics[t]}
			}
			body := map[string]any{"topics": out}
			if more {
				body["next"] = names[len(names)-1]
			}
			respond(func(w http.ResponseWriter) { httpwire.WriteJSON(w, http.StatusOK, body) })
		})
	})
}
