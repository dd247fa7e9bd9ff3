package gateway

import (
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/poller"
)

// Config configures a Gateway. Zero fields take the documented defaults.
type Config struct {
	// Poller tunes event loops, buffers and the outbound queue
	// (MaxPending, default 1 MiB). Its defaults are poller.Config's, except
	// for the socket buffers, which a node bounds: SendBuffer 0 means
	// 64 KiB and RecvBuffer 0 means MaxMessage/2 (at least 4 KiB); a
	// negative one leaves that buffer to the kernel's autotuning.
	Poller poller.Config
	// Shards is the number of registry lock stripes. Default: 64.
	Shards int
	// FanoutWorkers is the number of fan-out workers: the broker hands
	// each message over and each topic's messages are fanned out, in order,
	// by the one worker its name hashes to. Default: GOMAXPROCS.
	FanoutWorkers int
	// FanoutQueue is how many messages each fan-out worker may hold; a
	// hand-off to a full queue waits (back-pressure onto the broker, see
	// stage) and is counted. Default: 1024.
	FanoutQueue int
	// PublishWorkers is the number of publisher workers: they make the
	// broker calls of publishes (WebSocket and HTTP) off the handlers on a
	// network backbone, a topic always on the same one. Default: 4 ×
	// GOMAXPROCS (they mostly wait on the network).
	PublishWorkers int
	// PublishQueue is how many publishes (and history reads) each
	// publisher worker may hold; one past it is answered unavailable at
	// once and counted (subsock_publish_queue_full_total), and a worker
	// sends up to its whole queue in one exchange. Default: 1024.
	PublishQueue int
	// SmallGroup is the largest group (local subscribers of a topic) whose
	// messages are written promptly: between the writes of a pass under
	// way over a larger group's sockets rather than after it (see
	// poller.Conn.EnqueuePrompt), so a per-user topic is not delayed by a
	// hot topic's fan-out. Negative: none. Default: 64.
	SmallGroup int
	// MaxMessage caps an inbound WebSocket message and an HTTP publish body.
	// Default: 64 KiB.
	MaxMessage int
	// MaxHeaderBytes caps an HTTP request's header block. Default: 8 KiB.
	MaxHeaderBytes int
	// MaxSubsPerConn caps one connection's subscriptions. Default: 1000.
	MaxSubsPerConn int
	// MaxTopicsPerRequest caps the topics of one sub/unsub. Default: 256.
	MaxTopicsPerRequest int
	// RequestTimeout bounds how long one HTTP request (the upgrade included)
	// or one WebSocket message may take to arrive once it has begun, so a
	// client trickling bytes cannot hold a connection and its partial
	// input. It is checked at every wheel tick (PingInterval/64). Default: 10s.
	RequestTimeout time.Duration
	// MaxInputBacklog caps the bytes a connection may have received and not
	// yet processed. netpoll (v0.7) reads every readable socket with no way
	// to pause one, so a connection past the cap is closed with 1008 rather
	// than throttled. Default: 2 × MaxMessage, room for a maximal message in
	// assembly and one complete behind it; a larger cap only lets a flooder
	// make the node execute more of its backlog before it is cut.
	MaxInputBacklog int
	// CloseGrace bounds a close the node started for a reason of its own
	// (token expiry): a peer that does not read the close frame within it
	// is reset. Default: 2s.
	CloseGrace time.Duration
	// SubscribeTimeout bounds how long a sub waits for the backbone to
	// confirm its upstream subscription; past it the client gets
	// unavailable and the subscription is rolled back. Checked every wheel
	// tick. Default: 5s.
	SubscribeTimeout time.Duration
	// PingInterval is how often the server pings each connection. Default: 25s.
	PingInterval time.Duration
	// PingTimeout closes a connection silent for this long. Default: 60s.
	PingTimeout time.Duration
	// DrainTimeout bounds graceful shutdown. Default: 10s.
	DrainTimeout time.Duration
	// PublishTimeout bounds one publish (HTTP POST /publish or WebSocket
	// pub) waiting for the backbone to accept it; past it the publisher
	// gets 503 / unavailable rather than a hang (the message may still be
	// delivered). Default: 2s.
	PublishTimeout time.Duration
	// Broker is the backbone URL (see broker.Open). Default: "memory".
	Broker string
	// OpenBroker, when set, builds the broker instead of Broker: for
	// embedding a node beside a broker its host already runs.
	OpenBroker func(broker.Handler) (broker.Broker, error)
	// BrokerOptions are passed to broker.Open; their defaults are
	// broker.Options', with the Logger named "broker" under Logger.
	BrokerOptions broker.Options
	// Router tunes interest routing (linger, batching); its defaults are
	// broker.RouterConfig's.
	Router broker.RouterConfig
	// Security: tokens, permissions, origins and admission limits. The
	// JWT defaults are auth.Config's.
	Security SecurityConfig
	// History lists the topics that keep a stream (offsets, recovery,
	// GET /history); the first rule whose pattern matches a topic applies.
	// Topics that match none have no history and pay nothing for it. The
	// broker must keep streams (memory, Redis, Redis Cluster): New fails
	// with ErrNoHistory otherwise.
	History []HistoryRule
	// MaxReplay caps the history replay bytes one connection may have
	// queued beyond Poller.MaxPending (a client cut as a slow consumer
	// missed more than MaxPending). A recovery (since) that needs more
	// gets recovered:false; a last K replay keeps its newest publications
	// that fit. Default: 4 × Poller.MaxPending.
	MaxReplay int
	// HistoryReadLimit caps the publications one GET /history answers.
	// Default: 1000.
	HistoryReadLimit int
	// Presence lists topic patterns with presence: the presence and
	// presence_stats requests (and GET /api/presence) answer who is
	// subscribed across the cluster. Others answer not_enabled.
	Presence []string
	// JoinLeave lists topic patterns whose subscribers receive join and
	// leave events as members come and go, on every node.
	JoinLeave []string
	// JoinLeaveMax: no join or leave events are sent for a group larger
	// than this across the cluster. Default: 1000.
	JoinLeaveMax int
	// GatherTimeout bounds how long a cluster-wide query (presence,
	// GET /api/topics) waits for the other nodes' answers; a node that has
	// not answered by then is left out. Default: 500ms.
	GatherTimeout time.Duration
	// NodeTTL is how long a node that stopped announcing itself (it does
	// every NodeTTL/3) stays listed by the others (GET /api/nodes) and
	// waited for by their gathers. Default: 30s.
	NodeTTL time.Duration
	// Logger receives the node's logs. Default: zap.NewNop().
	Logger *zap.Logger
}

// WithDefaults returns c with each zero field set to its documented
// default, the nested Poller, BrokerOptions, Router and Security.JWT
// included: the configuration New runs with. This is the one place a
// default is written; cmd/subsock's flags take theirs from it.
func (c Config) WithDefaults() Config { return c.withDefaults() }

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Shards <= 0 {
		c.Shards = 64
	}
	if c.FanoutWorkers <= 0 {
		c.FanoutWorkers = runtime.GOMAXPROCS(0)
	}
	if c.FanoutQueue <= 0 {
		c.FanoutQueue = 1024
	}
	if c.PublishWorkers <= 0 {
		c.PublishWorkers = 4 * runtime.GOMAXPROCS(0)
	}
	if c.PublishQueue <= 0 {
		c.PublishQueue = 1024
	}
	if c.SmallGroup == 0 {
		c.SmallGroup = 64
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = 64 << 10
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 8 << 10
	}
	if c.MaxSubsPerConn <= 0 {
		c.MaxSubsPerConn = 1000
	}
	if c.MaxTopicsPerRequest <= 0 {
		c.MaxTopicsPerRequest = 256
	}
	if c.MaxInputBacklog <= 0 {
		c.MaxInputBacklog = 2 * c.MaxMessage
	}
	if c.SubscribeTimeout <= 0 {
		c.SubscribeTimeout = 5 * time.Second
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = 2 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 60 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 2 * time.Second
	}
	if c.MaxReplay <= 0 {
		c.MaxReplay = 4 * c.Poller.WithDefaults().MaxPending
	}
	if c.JoinLeaveMax <= 0 {
		c.JoinLeaveMax = 1000
	}
	if c.NodeTTL <= 0 {
		c.NodeTTL = 30 * time.Second
	}
	if c.GatherTimeout <= 0 {
		c.GatherTimeout = 500 * time.Millisecond
	}
	if c.HistoryReadLimit <= 0 {
		c.HistoryReadLimit = 1000
	}
	if c.Broker == "" {
		c.Broker = "memory"
	}
	if c.Poller.SendBuffer == 0 {
		// Kernel autotuning lets a reader that stalls pin up to 4 MiB of
		// unsent bytes, on top of MaxPending; 64 KiB (doubled by Linux)
		// keeps most of a slow consumer's backlog in the queue MaxPending
		// bounds, so it is cut in time.
		c.Poller.SendBuffer = 64 << 10
	}
	if c.Poller.RecvBuffer == 0 {
		// Linux doubles SO_RCVBUF, so this leaves room for one maximal
		// message in flight: a flooder then gets little into memory
		// before OnData sees its backlog and cuts it.
		c.Poller.RecvBuffer = max(c.MaxMessage/2, 4<<10)
	}
	if c.Poller.Logger == nil {
		c.Poller.Logger = c.Logger.Named("poller")
	}
	c.Poller = c.Poller.WithDefaults()
	if c.BrokerOptions.Logger == nil {
		c.BrokerOptions.Logger = c.Logger.Named("broker")
	}
	c.BrokerOptions = c.BrokerOptions.WithDefaults()
	c.Router = c.Router.WithDefaults()
	c.Security.JWT = c.Security.JWT.WithDefaults()
	return c
}
