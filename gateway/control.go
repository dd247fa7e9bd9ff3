package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/gateway/httpwire"
	"github.com/subsock/subsock/gateway/hub"
	"github.com/subsock/subsock/gateway/policy"
	"github.com/subsock/subsock/proto"
)

// The control plane: nodes talk to each other over the backbone itself, on
// topics clients cannot use (policy.ReservedPrefix). Every node holds interest in
// ctlTopic from its start; a command published there (a backend asked to
// disconnect a user, ...) reaches every node, the one that received the
// request included, and each acts on its own connections. Each node also
// announces itself there every nodeBeat, so every node knows the live
// nodes (GET /api/nodes): one that stops announcing is forgotten after
// Config.NodeTTL (it announces every third of that); one that shuts down
// says so at once.

const (
	ctlTopic = policy.ReservedPrefix + "ctl"
)

// NodeInfo is one live node as GET /api/nodes lists it.
type NodeInfo struct {
	ID            string  `json:"id"`
	Addr          string  `json:"addr"`
	Connections   int64   `json:"connections"`
	SSEStreams    int64   `json:"sse_streams"`
	Subscriptions int     `json:"subscriptions"`
	Uptime        float64 `json:"uptime_seconds"`
	Version       string  `json:"version"`
}

// ctlMsg is one control-plane message, JSON on the backbone.
type ctlMsg struct {
	Cmd     string        `json:"cmd"` // node, bye, disconnect, unsubscribe, gather, answer
	From    string        `json:"from"`
	User    string        `json:"user,omitempty"`
	Client  string        `json:"client,omitempty"`
	Topic   string        `json:"topic,omitempty"`
	Node    *NodeInfo     `json:"node,omitempty"`
	Req     uint64        `json:"req,omitempty"`     // a gather's number on its node
	Kind    string        `json:"kind,omitempty"`    // what a gather collects
	Pattern string        `json:"pattern,omitempty"` // a topics gather's filter
	Result  *gatherResult `json:"result,omitempty"`  // an answer
}

// replyTopic is where the answers to node's gathers go.
func replyTopic(node string) string { return policy.ReservedPrefix + "node." + node }

// control is the node's part of the control plane.
type control struct {
	id      string // this node's id: short, random
	start   time.Time
	version string
	clients atomic.Uint64 // client ids handed out

	mu      sync.Mutex
	nodes   map[string]nodeSeen // the other live nodes
	held    int                 // control topics held upstream (0 when the broker broadcasts)
	req     uint64              // the last gather's number
	gathers map[uint64]*gather  // gathers waiting for answers
}

type nodeSeen struct {
	info NodeInfo
	at   time.Time
}

func newControl() *control {
	var b [5]byte
	_, _ = rand.Read(b[:])
	id := strconv.FormatUint(uint64(b[0])<<32|uint64(b[1])<<24|uint64(b[2])<<16|uint64(b[3])<<8|uint64(b[4]), 36)
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return &control{id: id, start: time.Now(), version: v, nodes: make(map[string]nodeSeen), gathers: make(map[uint64]*gather)}
}

// brokerTopics is the clients' topics held upstream, the node's own
// control topics left out.
func (g *Gateway) brokerTopics() int { return max(0, g.router.Held()-g.ctl.held) }

// newClientID names a connection: unique across the cluster (the node's
// id, then a counter), short.
func (c *control) newClientID() uint64 { return c.clients.Add(1) }

// clientID is the id of s as clients and the API see it.
func (g *Gateway) clientID(s *session) string {
	return g.ctl.id + "-" + strconv.FormatUint(s.m.CID, 36)
}

// userOf is the token subject of s ("" for anonymous connections).
func userOf(s *session) string {
	if s.auth == nil || s.auth.grants == nil {
		return ""
	}
	return s.auth.grants.User
}

// startControl holds interest in the control topic and starts the
// announcements; the goroutine is the node's (stopped by Shutdown).
func (g *Gateway) startControl() {
	g.router.Acquire(ctlTopic)
	g.router.Acquire(replyTopic(g.ctl.id))
	// Counted apart from the clients' topics (none is held yet: New).
	g.ctl.held = g.router.Held()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		// Announce once the control topics are live, so the answers of the
		// nodes that learn of this one reach it.
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.SubscribeTimeout)
		go func() {
			select {
			case <-g.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		_ = g.router.Ready(ctx, ctlTopic)
		_ = g.router.Ready(ctx, replyTopic(g.ctl.id))
		cancel()
		t := time.NewTicker(g.cfg.NodeTTL / 3)
		defer t.Stop()
		g.announce("node")
		for {
			select {
			case <-g.stop:
				return
			case <-t.C:
				g.announce("node")
				for _, gone := range g.ctl.prune(time.Now(), g.cfg.NodeTTL) {
					g.pres.forgetNode(gone)
				}
			}
		}
	}()
}

// announceSoon announces this node without waiting on the network here
// (onControl runs on the broker's goroutine).
func (g *Gateway) announceSoon() {
	if g.pubs.inline() {
		g.announce("node")
		return
	}
	g.pubs.submit(ctlTopic, func() { g.announce("node") }, func(error) {})
}

// announce publishes this node's figures (cmd "node") or its departure
// ("bye").
func (g *Gateway) announce(cmd string) {
	info := g.nodeInfo()
	_ = g.publishControl(ctlMsg{Cmd: cmd, Node: &info})
}

func (g *Gateway) nodeInfo() NodeInfo {
	st := g.Stats()
	addr := ""
	if a := g.Addr(); a != nil {
		addr = a.String()
	}
	return NodeInfo{ID: g.ctl.id, Addr: addr, Connections: st.Connections, SSEStreams: st.SSEStreams,
		Subscriptions: st.Subscriptions, Uptime: time.Since(g.ctl.start).Seconds(), Version: g.ctl.version}
}

// publishControl sends m to every node, this one included.
func (g *Gateway) publishControl(m ctlMsg) error { return g.publishControlTo(ctlTopic, m) }

// publishControlTo sends m on a control topic.
func (g *Gateway) publishControlTo(topic string, m ctlMsg) error {
	m.From = g.ctl.id
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.PublishTimeout)
	defer cancel()
	return asUnavailable(g.broker.Publish(ctx, topic, b))
}

// handle is the broker.Handler: control messages are run at once, on the
// broker's goroutine (on the publisher's with the in-process broker, which
// delivers synchronously: a gather's answers then arrive before its
// publish returns, and no fan-out worker waits for itself); everything
// else goes to the fan-out stage.
func (g *Gateway) handle(topic string, payload []byte) {
	if policy.Reserved(topic) {
		g.onControl(topic, payload)
		return
	}
	g.stage.Handle(topic, payload)
}

// onControl runs a control message.
func (g *Gateway) onControl(topic string, payload []byte) {
	var m ctlMsg
	if err := json.Unmarshal(payload, &m); err != nil {
		g.hub.ConvertErrors.Add(1)
		return
	}
	if topic == replyTopic(g.ctl.id) {
		if m.Cmd == "answer" {
			g.onAnswer(m)
		}
		return
	}
	if topic != ctlTopic {
		return
	}
	switch m.Cmd {
	case "node":
		if m.Node != nil && m.From != g.ctl.id {
			g.ctl.mu.Lock()
			_, known := g.ctl.nodes[m.From]
			g.ctl.nodes[m.From] = nodeSeen{info: *m.Node, at: time.Now()}
			g.ctl.mu.Unlock()
			if !known {
				// A node that just started learns of this one now rather
				// than at its next announcement.
				g.announceSoon()
			}
		}
	case "bye":
		g.ctl.mu.Lock()
		delete(g.ctl.nodes, m.From)
		g.ctl.mu.Unlock()
		g.pres.forgetNode(m.From)
	case "gather":
		if m.From != g.ctl.id {
			g.answerGather(m)
		}
	case "disconnect":
		g.disconnectLocal(m.User, m.Client)
	case "unsubscribe":
		g.unsubscribeLocal(m.User, m.Topic)
	}
}

// prune forgets the nodes not heard from within ttl and returns them.
func (c *control) prune(now time.Time, ttl time.Duration) (gone []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, n := range c.nodes {
		if now.Sub(n.at) > ttl {
			delete(c.nodes, id)
			gone = append(gone, id)
		}
	}
	return gone
}

// Frames of server actions.
var (
	disconnectFrame    = frame.AppendClose(nil, frame.StatusDisconnected, "disconnected by server")
	sseDisconnectFinal = append(hub.SSEChunk([]byte("event: close\ndata: disconnected by server\n\n")), "0\r\n\r\n"...)
)

// matches reports whether s is the connection a command names: by client
// id, or every connection of a user.
func (g *Gateway) matches(s *session, user, client string) bool {
	m := s.mode.Load()
	if m != modeWS && m != modeSSE {
		return false
	}
	if client != "" {
		return g.clientID(s) == client
	}
	return user != "" && userOf(s) == user
}

// disconnectLocal closes this node's connections of user (or the one with
// the client id) with 4003; it walks every connection, which costs a
// pass over the node but no index per connection for a rare command.
func (g *Gateway) disconnectLocal(user, client string) {
	g.wheel.each(func(s *session) {
		if !g.matches(s, user, client) {
			return
		}
		g.serverDisconnects.Add(1)
		s.conn().CloseAfter(finalFor(s, disconnectFrame, sseDisconnectFinal))
	})
}

// unsubscribeLocal removes topic from this node's connections of user and
// tells each, so its client does not subscribe again.
func (g *Gateway) unsubscribeLocal(user, topic string) {
	g.wheel.each(func(s *session) {
		if !g.matches(s, user, "") {
			return
		}
		s.mu.Lock()
		had := s.subs.Has(topic)
		g.leaveLocked(s, topic)
		s.mu.Unlock()
		if !had {
			return
		}
		g.serverUnsubscribes.Add(1)
		if s.mode.Load() == modeSSE {
			if !streaming(s) {
				return // its sub is answered without the topic's messages
			}
			b := append([]byte(`event: unsubscribed`+"\n"+`data: {"topic":`), strconv.Quote(topic)...)
			_ = s.conn().Enqueue(hub.SSEChunk(append(b, "}\n\n"...)))
			return
		}
		g.reply(s, hub.Codecs[s.m.Wire].AppendUnsubscribed(frame.Reserve(nil), topic))
	})
}

// ---------------------------------------------------------------- HTTP API

// apiGuard checks the API key and reads a JSON body into v; it answers
// the request itself and returns false when it cannot go on.
func (g *Gateway) apiGuard(w http.ResponseWriter, r *http.Request, v any) bool {
	if !g.checkAPIKey(r) {
		httpwire.APIError(w, http.StatusUnauthorized, "missing or wrong API key")
		return false
	}
	if v == nil {
		return true
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpwire.APIError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

// apiLater runs call off the handler when the broker may wait (see
// publisher), answering in the connection's reply order; inline on the
// in-process broker.
func (g *Gateway) apiLater(w http.ResponseWriter, topic string, call func() func(http.ResponseWriter)) {
	g.brokerLater(w, topic, call, func(w http.ResponseWriter, err error) {
		httpwire.APIError(w, http.StatusServiceUnavailable, err.Error())
	})
}

// brokerLater makes an HTTP handler's broker call on topic's publisher
// worker rather than on the handler (see httpwire.Later); refuse answers
// when it cannot be queued. Inline on the in-process broker, which never
// waits.
func (g *Gateway) brokerLater(w http.ResponseWriter, topic string, call func() func(http.ResponseWriter), refuse func(http.ResponseWriter, error)) {
	if g.pubs.inline() {
		call()(w)
		return
	}
	httpwire.Later(w, func(respond func(func(http.ResponseWriter))) {
		g.pubs.submit(topic, func() { respond(call()) },
			func(err error) { respond(func(w http.ResponseWriter) { refuse(w, err) }) })
	})
}

type targetBody struct {
	User   string `json:"user"`
	Client string `json:"client"`
	Topic  string `json:"topic"`
}

// handleDisconnect is POST /api/disconnect {"user":U} or {"client":C}.
func (g *Gateway) handleDisconnect(w http.ResponseWriter, r *http.Request) {
	var b targetBody
	if !g.apiGuard(w, r, &b) {
		return
	}
	if (b.User == "") == (b.Client == "") || b.Topic != "" {
		httpwire.APIError(w, http.StatusBadRequest, `want exactly one of "user" and "client"`)
		return
	}
	g.apiLater(w, ctlTopic, func() func(http.ResponseWriter) {
		err := g.publishControl(ctlMsg{Cmd: "disconnect", User: b.User, Client: b.Client})
		return func(w http.ResponseWriter) { answerCommand(w, err) }
	})
}

// handleUnsubscribe is POST /api/unsubscribe {"user":U,"topic":T}.
func (g *Gateway) handleUnsubscribe(w http.ResponseWriter, r *http.Request) {
	var b targetBody
	if !g.apiGuard(w, r, &b) {
		return
	}
	if b.User == "" || b.Client != "" {
		httpwire.APIError(w, http.StatusBadRequest, `want "user" and "topic"`)
		return
	}
	if err := proto.ValidTopic(b.Topic); err != nil {
		httpwire.RequestError(w, http.StatusBadRequest, err)
		return
	}
	g.apiLater(w, ctlTopic, func() func(http.ResponseWriter) {
		err := g.publishControl(ctlMsg{Cmd: "unsubscribe", User: b.User, Topic: b.Topic})
		return func(w http.ResponseWriter) { answerCommand(w, err) }
	})
}

// answerCommand answers a command sent to every node: 202, since each
// node acts on its own connections as the command reaches it.
func answerCommand(w http.ResponseWriter, err error) {
	if err != nil {
		httpwire.APIError(w, http.StatusServiceUnavailable, "sending the command to the nodes: "+err.Error())
		return
	}
	httpwire.WriteJSON(w, http.StatusAccepted, map[string]bool{"sent": true})
}

type broadcastBody struct {
	Topics []string        `json:"topics"`
	Data   json.RawMessage `json:"data"`
}

// handleBroadcast is POST /api/broadcast {"topics":[...],"data":...}: one
// payload to many topics, put in relay form once; it answers the local
// subscribers per topic, as POST /publish does.
func (g *Gateway) handleBroadcast(w http.ResponseWriter, r *http.Request) {
	var b broadcastBody
	if !g.apiGuard(w, r, &b) {
		return
	}
	if len(b.Topics) == 0 || len(b.Data) == 0 {
		httpwire.APIError(w, http.StatusBadRequest, `want "topics" (non-empty) and "data"`)
		return
	}
	if len(b.Topics) > g.cfg.MaxTopicsPerRequest {
		httpwire.APIError(w, http.StatusBadRequest, fmt.Sprintf("%d topics; the limit is %d", len(b.Topics), g.cfg.MaxTopicsPerRequest))
		return
	}
	for _, t := range b.Topics {
		if err := proto.ValidTopic(t); err != nil {
			httpwire.RequestError(w, http.StatusBadRequest, err)
			return
		}
		if policy.Reserved(t) {
			httpwire.RequestError(w, http.StatusBadRequest, policy.ErrReserved)
			return
		}
	}
	relay := hub.AppendRelay(nil, proto.FormatJSON, b.Data)
	g.apiLater(w, b.Topics[0], func() func(http.ResponseWriter) {
		type result struct {
			Subscribers int    `json:"subscribers"`
			Offset      uint64 `json:"offset,omitempty"`
			Epoch       string `json:"epoch,omitempty"`
			Error       string `json:"error,omitempty"`
		}
		out := make(map[string]result, len(b.Topics))
		failed := 0
		for _, t := range b.Topics {
			pos, err := g.publishRelay(context.Background(), t, relay)
			if err != nil {
				failed++
				g.publishErrors.Add(1)
				out[t] = result{Error: err.Error()}
				continue
			}
			out[t] = result{Subscribers: g.reg.Count(t), Offset: pos.Offset, Epoch: pos.Epoch}
		}
		return func(w http.ResponseWriter) {
			status := http.StatusOK
			if failed == len(b.Topics) {
				status = http.StatusServiceUnavailable
				w.Header().Set("Retry-After", "1")
			}
			httpwire.WriteJSON(w, status, map[string]any{"topics": out})
		}
	})
}

// handleNodes is GET /api/nodes: every live node, this one first.
func (g *Gateway) handleNodes(w http.ResponseWriter, r *http.Request) {
	if !g.apiGuard(w, r, nil) {
		return
	}
	g.ctl.prune(time.Now(), g.cfg.NodeTTL)
	nodes := []NodeInfo{g.nodeInfo()}
	g.ctl.mu.Lock()
	for _, n := range g.ctl.nodes {
		nodes = append(nodes, n.info)
	}
	g.ctl.mu.Unlock()
	sort.Slice(nodes[1:], func(i, j int) bool { return nodes[1+i].ID < nodes[1+j].ID })
	httpwire.WriteJSON(w, http.StatusOK, map[string]any{"nodes": nodes})
}
