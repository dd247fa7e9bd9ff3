package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/gateway/hub"
	"github.com/subsock/subsock/gateway/policy"
	"github.com/subsock/subsock/poller"
	"github.com/subsock/subsock/proto"
	"github.com/subsock/subsock/registry"
)

// Gateway is one subsock node.
type Gateway struct {
	cfg    Config
	log    *zap.Logger
	poller *poller.Server
	reg    *registry.Registry[*session]
	hub    *hub.Hub[*session] // groups and the encode-once fan-out over reg
	broker broker.Broker
	router *broker.Router
	wheel  *wheel
	// deadlines: partial input, close grace and token expiry, per tick.
	deadlines *deadlines
	api       http.Handler
	stage     *hub.Stage     // runs Hub.Deliver off the broker's goroutines
	sec       *policy.Policy // who may connect and do what
	pubs      *publisher     // broker calls of publishes, off the handlers
	hist      history
	ctl       *control // the control plane: node id, client ids, live nodes
	pres      presence // presence and join/leave rules

	counters
	wsConns  atomic.Int64
	sseConns atomic.Int64
	draining atomic.Bool

	checksMu sync.Mutex
	checks   []namedCheck         // readiness checks added by AddCheck
	metrics  *prometheus.Registry // what /metrics serves

	mu   sync.Mutex
	ln   net.Listener
	stop chan struct{}
	wg   sync.WaitGroup
}

// deliverMarked takes the fan-out stage's messages that are not plain
// relays: a history topic's publication (history.go) and a presence
// event (presence.go).
func (g *Gateway) deliverMarked(topic string, payload []byte) {
	switch payload[0] {
	case broker.StreamMark:
		g.deliverStream(topic, payload)
	case presenceMark:
		g.deliverPresence(topic, payload)
	}
}

// New builds a node and connects it to its broker. Serve starts it.
func New(cfg Config) (*Gateway, error) {
	cfg = cfg.withDefaults()
	g := &Gateway{cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), ctl: newControl()}
	sec, err := policy.New(cfg.Security)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.sec = sec
	if err := g.pres.init(cfg); err != nil {
		g.sec.Close()
		return nil, err
	}
	g.reg = registry.New[*session](registry.Config{Shards: cfg.Shards})
	g.hub = hub.New(g.reg, hub.Config{Node: g.ctl.id, SmallGroup: cfg.SmallGroup, Log: g.log, Marked: g.deliverMarked})
	g.wheel = newWheel(g)
	g.deadlines = newDeadlines(g)
	pcfg := cfg.Poller
	pcfg.OverflowFinal = slowFrame
	p, err := poller.New(pcfg, g)
	if err != nil {
		g.sec.Close()
		return nil, fmt.Errorf("gateway: poller: %w", err)
	}
	g.poller = p
	g.stage = hub.NewStage(cfg.FanoutWorkers, cfg.FanoutQueue, g.hub.Deliver)
	var b broker.Broker
	if cfg.OpenBroker != nil {
		b, err = cfg.OpenBroker(g.handle)
	} else {
		b, err = broker.Open(cfg.Broker, g.handle, cfg.BrokerOptions)
	}
	if err != nil {
		g.stage.Stop()
		_ = p.Close()
		g.sec.Close()
		return nil, fmt.Errorf("gateway: broker: %w", err)
	}
	g.broker = b
	if err := g.hist.init(cfg.History, b); err != nil {
		_ = b.Close()
		g.stage.Stop()
		_ = p.Close()
		g.sec.Close()
		return nil, err
	}
	if _, ok := b.(*broker.Memory); ok {
		// It hands over on the publisher's goroutine: see stage.
		g.stage.WaitForDelivery()
	}
	g.pubs = newPublisher(g)
	g.router = broker.NewRouter(b, cfg.Router)
	g.metrics = g.registerMetrics()
	g.api = g.routes(g.metrics)
	g.wg.Add(1)
	go func() { defer g.wg.Done(); g.wheel.run(g.stop) }()
	g.startControl()
	return g, nil
}

// Handle mounts an extra HTTP handler (for example the demo page) beside
// the API; call it before Serve.
func (g *Gateway) Handle(pattern string, h http.Handler) {
	if mux, ok := g.api.(*http.ServeMux); ok {
		mux.Handle(pattern, h)
	}
}

// Serve accepts connections on ln until Shutdown.
func (g *Gateway) Serve(ln net.Listener) error {
	g.mu.Lock()
	if g.draining.Load() {
		g.mu.Unlock()
		return ErrShuttingDown
	}
	g.ln = ln
	g.mu.Unlock()
	err := g.poller.Serve(ln)
	if g.draining.Load() {
		return ErrShuttingDown
	}
	return err
}

// Addr returns the listening address once Serve has been called.
func (g *Gateway) Addr() net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil {
		return nil
	}
	return g.ln.Addr()
}

// Shutdown stops accepting, closes every WebSocket with 1001, waits for
// the connections to go (until ctx ends or DrainTimeout passes), then
// stops every goroutine the node owns.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if g.draining.Swap(true) {
		return ErrShuttingDown
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.DrainTimeout)
	defer cancel()
	g.poller.StopAccepting()
	g.wheel.each(func(s *session) {
		s.conn().CloseAfter(finalFor(s, goingAwayFrame, sseCloseFinal))
	})
	var drainErr error
	t := time.NewTicker(10 * time.Millisecond)
	for g.poller.Stats().Conns > 0 && drainErr == nil {
		select {
		case <-ctx.Done():
			drainErr = ErrDrainTimeout
		case <-t.C:
		}
	}
	t.Stop()
	if drainErr != nil {
		g.wheel.each(func(s *session) { s.conn().Abort(nil) })
	}
	g.announce("bye") // the other nodes forget this one at once
	close(g.stop)
	g.wg.Wait()
	g.stopGathers()
	g.pubs.stop() // answers what is queued while the broker is still open
	routerErr, brokerErr := g.router.Close(), g.broker.Close()
	// Nothing hands over after the broker is closed; the connections are
	// gone, so what is still queued is dropped (and counted).
	g.stage.Stop()
	errs := []error{drainErr, routerErr, brokerErr, g.poller.Close()}
	g.sec.Close()
	return errors.Join(errs...)
}

// Stats is a snapshot of the node's main figures.
type Stats struct {
	Connections   int64  `json:"connections"`     // open WebSocket connections
	SSEStreams    int64  `json:"sse_streams"`     // open SSE streams
	TCPConns      int64  `json:"tcp_connections"` // open TCP connections, HTTP included
	Subscriptions int    `json:"subscriptions"`
	Topics        int    `json:"topics"`
	BrokerTopics  int    `json:"broker_topics"` // topics held upstream
	MessagesIn    uint64 `json:"messages_in"`
	MessagesOut   uint64 `json:"messages_out"`
	SlowCloses    uint64 `json:"slow_consumer_closes"`
	Heartbeat     uint64 `json:"heartbeat_closes"`
	Draining      bool   `json:"draining"`
}

// Stats returns the node's current figures.
func (g *Gateway) Stats() Stats {
	rs := g.reg.Stats()
	ps := g.poller.Stats()
	return Stats{
		Connections:   g.wsConns.Load(),
		SSEStreams:    g.sseConns.Load(),
		TCPConns:      ps.Conns,
		Subscriptions: rs.Subscriptions,
		Topics:        rs.Topics,
		BrokerTopics:  g.brokerTopics(),
		MessagesIn:    g.msgsIn.Load(),
		MessagesOut:   g.hub.MsgsOut.Load(),
		SlowCloses:    ps.Overflows,
		Heartbeat:     g.heartbeatCloses.Load(),
		Draining:      g.draining.Load(),
	}
}

// Publish sends data (one value in format f) to topic through the node's
// publish path, as POST /publish does: it crosses the backbone once,
// reaches every subscriber on every node, and on a history topic gets its
// place in the stream (pos). It waits for the backbone (at most
// PublishTimeout): for sources that feed the node (a Kafka consumer), not
// for netpoll handlers. It fails with an error wrapping
// broker.ErrUnavailable when the backbone cannot take it, and with a
// *proto.Error for a bad topic or data.
func (g *Gateway) Publish(ctx context.Context, topic string, f proto.Format, data []byte) (pos broker.Position, err error) {
	relay, err := g.checkPub(proto.Pub{Topic: topic, Format: f, Data: data})
	if err != nil {
		return pos, err
	}
	return g.publishRelay(ctx, topic, relay)
}

// PublishBatch is Publish for several values at once, for sources that
// feed the node faster than one round trip each (a Kafka consumer): the
// ones to plain topics cross the backbone in one exchange (in order, so a
// topic's keep theirs), each to a history topic in a call of its own (it
// gets a place in the stream). errs (as long as pubs) gets each one's
// result, as Publish would give it: nil, a *proto.Error for a bad topic or
// data, or an error wrapping broker.ErrUnavailable. With a backbone that
// cannot batch (the in-process one), each is published in turn.
func (g *Gateway) PublishBatch(ctx context.Context, pubs []proto.Pub, errs []error) {
	bp, _ := g.broker.(broker.BatchPublisher)
	var msgs []broker.Message
	var idx []int // pubs index of each of msgs
	for i, p := range pubs {
		relay, err := g.checkPub(p)
		errs[i] = err
		switch {
		case err != nil:
		case bp == nil || g.isHistory(p.Topic):
			_, errs[i] = g.publishRelay(ctx, p.Topic, relay)
		default:
			msgs = append(msgs, broker.Message{Topic: p.Topic, Payload: relay})
			idx = append(idx, i)
		}
	}
	if len(msgs) == 0 {
		return
	}
	batchErrs := make([]error, len(msgs))
	g.sendBatch(ctx, bp, msgs, batchErrs)
	for k, i := range idx {
		errs[i] = batchErrs[k]
	}
}

// isHistory reports whether topic keeps history (a -history rule matches).
func (g *Gateway) isHistory(topic string) bool {
	_, ok := g.hist.policy(topic)
	return ok
}

// checkPub refuses what Publish refuses and returns p in relay form.
func (g *Gateway) checkPub(p proto.Pub) ([]byte, error) {
	if err := proto.ValidTopic(p.Topic); err != nil {
		return nil, err
	}
	if policy.Reserved(p.Topic) {
		return nil, policy.ErrReserved
	}
	if !p.Format.Valid() {
		return nil, &proto.Error{Code: proto.CodeBadRequest, Msg: "unknown format " + p.Format.String()}
	}
	if err := proto.ValidData(p.Data, p.Format); err != nil {
		return nil, &proto.Error{Code: proto.CodeBadRequest, Msg: "data is not one " + p.Format.String() + " value: " + err.Error()}
	}
	return hub.AppendRelay(make([]byte, 0, 1+len(p.Data)), p.Format, p.Data), nil
}

// RegisterMetrics adds collectors (a Kafka consumer's) to /metrics. Call
// it before Serve.
func (g *Gateway) RegisterMetrics(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := g.metrics.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// AddCheck adds a readiness check: /readyz (and /healthz) answer 503
// "degraded" with name and the error while check returns one. For what
// feeds the node from outside (a Kafka consumer). Call it before Serve.
func (g *Gateway) AddCheck(name string, check func() error) {
	g.checksMu.Lock()
	g.checks = append(g.checks, namedCheck{name, check})
	g.checksMu.Unlock()
}

type namedCheck struct {
	name  string
	check func() error
}

// failedCheck returns the first added check that fails, as "name: error".
func (g *Gateway) failedCheck() string {
	g.checksMu.Lock()
	defer g.checksMu.Unlock()
	for _, c := range g.checks {
		if err := c.check(); err != nil {
			return c.name + ": " + err.Error()
		}
	}
	return ""
}
