package gateway

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// counters are plain atomics on the hot paths; Prometheus reads them
// through CounterFuncs at scrape time.
type counters struct {
	msgsIn             atomic.Uint64
	heartbeatCloses    atomic.Uint64
	protocolCloses     atomic.Uint64
	upgradeRejects     atomic.Uint64
	tokenExpiries      atomic.Uint64
	publishErrors      atomic.Uint64
	publishRejects     atomic.Uint64 // refused at once: the broker was not healthy
	publishTimeouts    atomic.Uint64 // not accepted by the backbone within PublishTimeout
	inputOverflows     atomic.Uint64
	requestTimeouts    atomic.Uint64
	graceResets        atomic.Uint64
	subscribeFailures  atomic.Uint64
	keyWaits           atomic.Uint64
	serverDisconnects  atomic.Uint64 // connections closed by POST /api/disconnect
	serverUnsubscribes atomic.Uint64 // subscriptions removed by POST /api/unsubscribe
	presenceEvents     atomic.Uint64 // join and leave deliveries
	presenceErrors     atomic.Uint64 // join and leave events the backbone did not take
}

func (g *Gateway) registerMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "subsock_" + name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "subsock_" + name, Help: help}, f))
	}
	u := func(a *atomic.Uint64) func() float64 { return func() float64 { return float64(a.Load()) } }

	gauge("connections", "Open WebSocket connections.", func() float64 { return float64(g.wsConns.Load()) })
	gauge("broker_healthy", "1 while the backbone is connected and every held topic subscribed (/readyz ok), 0 otherwise.", func() float64 {
		if g.broker.Health() != nil {
			return 0
		}
		return 1
	})
	gauge("draining", "1 once the node is shutting down (it still answers /metrics on connections already open).", func() float64 {
		if g.draining.Load() {
			return 1
		}
		return 0
	})
	for tr, n := range map[string]*atomic.Int64{"websocket": &g.wsConns, "sse": &g.sseConns} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "subsock_transport_connections",
			Help: "Open subscriber connections by transport.", ConstLabels: prometheus.Labels{"transport": tr}},
			func() float64 { return float64(n.Load()) }))
	}
	gauge("tcp_connections", "Open TCP connections, HTTP included.", func() float64 { return float64(g.poller.Stats().Conns) })
	gauge("subscriptions", "Subscriptions held on this node.", func() float64 { return float64(g.reg.Stats().Subscriptions) })
	gauge("topics", "Topics with at least one local subscriber.", func() float64 { return float64(g.reg.Stats().Topics) })
	gauge("broker_topics", "Topics this node holds interest in upstream.", func() float64 { return float64(g.brokerTopics()) })
	counter("messages_in_total", "Messages published through this node.", u(&g.msgsIn))
	counter("messages_out_total", "Deliveries queued to local subscribers.", u(&g.hub.MsgsOut))
	counter("bytes_out_total", "Bytes written to sockets.", func() float64 { return float64(g.poller.Stats().BytesOut) })
	counter("write_syscalls_total", "writev calls; deliveries per call shows coalescing.", func() float64 { return float64(g.poller.Stats().Writes) })
	counter("slow_consumer_closes_total", "Connections closed with 1013 for an overflowing queue.", func() float64 { return float64(g.poller.Stats().Overflows) })
	counter("heartbeat_closes_total", "Connections closed for silence past the ping timeout.", u(&g.heartbeatCloses))
	counter("protocol_closes_total", "Connections closed for protocol violations.", u(&g.protocolCloses))
	counter("upgrade_rejects_total", "WebSocket upgrades refused.", u(&g.upgradeRejects))
	counter("convert_errors_total", "Messages not representable in a subscriber's codec.", u(&g.hub.ConvertErrors))
	counter("token_expiry_closes_total", "Connections closed with 4001 on token expiry.", u(&g.tokenExpiries))
	counter("input_overflow_closes_total", "Connections closed with 1008 for unprocessed input past -max-input-backlog, or for more than 1,024 requests waiting behind one the backbone has not answered.", u(&g.inputOverflows))
	counter("request_timeout_closes_total", "Connections cut for a frame or HTTP request not completed within -request-timeout.", u(&g.requestTimeouts))
	counter("handshake_key_waits_total", "Upgrades that waited for a JWKS refresh (a token naming an unknown kid).", u(&g.keyWaits))
	counter("subscribe_failures_total", "Subscriptions answered unavailable: the backbone failed or did not confirm within -subscribe-timeout.", u(&g.subscribeFailures))
	counter("history_recovered_total", "Subscriptions that asked to recover (since) and got every publication they missed.", u(&g.hist.recovered))
	counter("history_not_recovered_total", "Subscriptions that asked to recover and could not (another epoch, or the stream no longer holds the offset): recovered:false.", u(&g.hist.notRecovered))
	counter("history_replayed_total", "Publications replayed from history to subscribers before their ack.", u(&g.hist.replayed))
	counter("history_replay_over_budget_total", "Replays larger than -max-replay allows: a since answered recovered:false, or a last K cut to its newest publications.", u(&g.hist.replayOverBudget))
	counter("history_held_overflow_closes_total", "Connections closed with 1013 because the live messages held while their sub was recovering passed -max-pending.", u(&g.hist.heldOverflows))
	if hs, ok := g.broker.(interface{ HistoryStats() (int, int64) }); ok {
		gauge("history_streams", "Streams the in-process broker holds.", func() float64 { n, _ := hs.HistoryStats(); return float64(n) })
		gauge("history_bytes", "Bytes the in-process broker holds in streams (capped by -history-memory).", func() float64 { _, b := hs.HistoryStats(); return float64(b) })
	}
	counter("server_disconnects_total", "Connections closed with 4003 because a backend asked (POST /api/disconnect).", u(&g.serverDisconnects))
	counter("server_unsubscribes_total", "Subscriptions removed because a backend asked (POST /api/unsubscribe).", u(&g.serverUnsubscribes))
	counter("presence_events_total", "Join and leave events queued to local subscribers.", u(&g.presenceEvents))
	counter("presence_event_errors_total", "Join and leave events the backbone did not accept.", u(&g.presenceErrors))
	counter("close_grace_resets_total", "Connections reset because they did not take a close frame within -close-grace.", u(&g.graceResets))
	counter("publish_errors_total", "Publishes refused because the broker failed.", u(&g.publishErrors))
	counter("publish_unavailable_total", "Publishes refused at once because the broker was reconnecting or resubscribing (/healthz 503).", u(&g.publishRejects))
	counter("publish_batches_total", "Exchanges with the backbone that carried plain publishes: publishes / batches is how many a publisher worker sent at once.", u(&g.pubs.batches))
	counter("publish_queue_full_total", "Publishes answered unavailable because their publisher worker's queue was full (a stalled backbone).", u(&g.pubs.full))
	counter("publish_timeouts_total", "Publishes the backbone did not accept within -publish-timeout.", u(&g.publishTimeouts))
	counter("broker_errors_total", "Broker errors.", func() float64 { return float64(g.broker.Stats().Errors) })
	counter("broker_reconnects_total", "Broker reconnections.", func() float64 { return float64(g.broker.Stats().Reconnects) })
	gauge("fanout_queued", "Messages waiting in the fan-out stage's queues.", func() float64 { return float64(g.stage.Queued()) })
	counter("fanout_queue_full_total", "Broker hand-offs that found their fan-out worker's queue full and waited (back-pressure onto the broker).", u(&g.stage.Full))
	counter("fanout_blocked_seconds_total", "Time broker hand-offs spent waiting for room in a full fan-out queue.", func() float64 { return float64(g.stage.Blocked.Load()) / 1e9 })
	counter("fanout_dropped_total", "Messages the fan-out stage dropped at shutdown: still queued, or handed over after it stopped.", u(&g.stage.Dropped))
	reg.MustRegister(g.hub.Fanout)
	return reg
}
