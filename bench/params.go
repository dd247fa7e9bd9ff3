package bench

import (
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Scenario names a standard workload.
type Scenario string

// The named scenarios (-scenario).
const (
	// ScenarioIdle holds N connections × K topics idle and measures the
	// node's memory per connection.
	ScenarioIdle Scenario = "idle"
	// ScenarioConnect opens N connections as fast as the node accepts them
	// (no subscriptions) and reports upgrades per second.
	ScenarioConnect Scenario = "connect"
	// ScenarioLatency publishes at a low fixed rate to N subscribers of one
	// topic.
	ScenarioLatency Scenario = "latency"
	// ScenarioFanout is a sustained fan-out: a fixed, higher rate to N
	// subscribers of one topic.
	ScenarioFanout Scenario = "fanout"
	// ScenarioSteps raises the rate step by step until deliveries are lost
	// or p99 passes the limit.
	ScenarioSteps Scenario = "steps"
	// ScenarioTopics spreads many subscriptions per connection over many
	// topics and publishes across all of them.
	ScenarioTopics Scenario = "topics"
	// ScenarioChurn connects, subscribes and disconnects in cycles, then
	// checks that the node's registry and memory return to the baseline.
	ScenarioChurn Scenario = "churn"
	// ScenarioHol is head-of-line blocking on a Redis backbone: one hot
	// topic with HotSubs subscribers at Rate, beside Topics-1 small topics
	// of one subscriber each at SmallRate apiece; the small topics'
	// latency is reported apart from the hot one's, and the node's Redis
	// pub/sub output buffer (CLIENT LIST omem) is sampled.
	ScenarioHol Scenario = "hol"
	// ScenarioRecover publishes at Rate to N subscribers of a history
	// topic while every CutEvery a CutFraction of the connections is cut
	// and recovers with since; every subscriber must end with every
	// offset exactly once. Backbone picks the node's broker.
	ScenarioRecover Scenario = "recover"
	// ScenarioJoinStorm is a join storm on a presence + join-leave topic:
	// a canary subscribes to PREFIX.0 while Rate publishes a second go to
	// it, then Conns connections subscribe to the same topic, spread
	// evenly over Duration; the canary's latency during the storm and the
	// join events it receives are what count.
	ScenarioJoinStorm Scenario = "joinstorm"
	// ScenarioKafka is Kafka as an event source: Conns subscribers over
	// Topics topics PREFIX.<key>, then Records records produced to a Kafka
	// topic (a kfake the harness starts) with keys 0..Topics-1, which the
	// node consumes and publishes to PREFIX.{key}; its records/s, the
	// deliveries, Kafka-to-socket latency and the consumer lag are what
	// count.
	ScenarioKafka Scenario = "kafka"
)

// Scenarios lists every scenario in the order of the standard set.
var Scenarios = []Scenario{ScenarioIdle, ScenarioConnect, ScenarioLatency, ScenarioFanout, ScenarioSteps, ScenarioTopics, ScenarioChurn, ScenarioHol, ScenarioRecover, ScenarioJoinStorm, ScenarioKafka}

// publishes reports whether the scenario has a publish phase.
func (s Scenario) publishes() bool {
	switch s {
	case ScenarioLatency, ScenarioFanout, ScenarioSteps, ScenarioTopics, ScenarioHol, ScenarioRecover, ScenarioJoinStorm:
		return true
	}
	return false
}

// Transports of the subscribers (-transport).
const (
	// TransportWS subscribes over WebSocket with op sub.
	TransportWS = "ws"
	// TransportSSE opens GET /sse?topics=… streams: one request per
	// connection with every topic, answered by the 200 once they are live.
	TransportSSE = "sse"
)

// Backbones of the recover scenario (-backbone).
const (
	BackboneMemory = "memory"
	BackboneRedis  = "redis"
)

// usesRedis reports whether a spawned node of these parameters gets a
// Redis the harness starts (see runner.startRedis).
func (p *Params) usesRedis() bool {
	return p.Scenario == ScenarioHol || p.Scenario == ScenarioKafka || (p.Scenario == ScenarioRecover && p.Backbone == BackboneRedis)
}

// Limits of this box: one process may hold 20,000 open files.
const (
	// MaxConnsPerWorker caps the sockets of one worker process.
	MaxConnsPerWorker = 15000
	// MaxConnsPerNode caps the connections the harness opens to one node.
	MaxConnsPerNode = 19000
	// maxWorkers bounds the source addresses 127.0.0.2 .. 127.0.0.(1+maxWorkers).
	maxWorkers = 250
)

// Params describe one run. A zero field takes the scenario's default (see
// scenarioDefaults); Normalize fills them in.
type Params struct {
	Scenario Scenario `json:"scenario"`
	// Targets are ws:// URLs of running nodes; clients are spread over them
	// round-robin and publishes go to the first. Empty with Spawn set: the
	// spawned node's address.
	Targets []string `json:"targets"`
	// Spawn is the node binary to start (so its PID is known); SpawnArgs are
	// its flags and SpawnEnv extra KEY=VALUE environment (GOGC, GOMEMLIMIT).
	Spawn     string   `json:"spawn,omitempty"`
	SpawnArgs []string `json:"spawn_args,omitempty"`
	SpawnEnv  []string `json:"spawn_env,omitempty"`
	// PID of an already running node whose /proc entry to read; 0 reads the
	// process_* figures of /metrics instead.
	PID int `json:"pid,omitempty"`

	// Conns is the number of client connections (per cycle for churn).
	Conns int `json:"conns"`
	// TopicsPerConn is K, the topics each connection subscribes to.
	// -1 means none (the connect scenario).
	TopicsPerConn int `json:"topics_per_conn"`
	// Topics is T, the topics in play; connection i subscribes to
	// (i*K + j) mod T for j < K, so each topic has N*K/T subscribers.
	Topics      int    `json:"topics"`
	TopicPrefix string `json:"topic_prefix"`
	// Transport is how the subscribers connect: TransportWS (default) or
	// TransportSSE (not for connect, which subscribes to nothing, nor
	// recover, whose resubscriptions are WebSocket subs with since).
	Transport string `json:"transport"`

	// Rate is publishes per second (the first step's rate for steps).
	Rate float64 `json:"rate"`
	// Duration is the publish phase (or how long idle connections are held;
	// for joinstorm, the storm: the span the joins are spread over).
	Duration time.Duration `json:"duration_ns"`
	// StepDuration, StepFactor and MaxSteps shape the steps scenario:
	// rate_n = Rate * StepFactor^n for at most MaxSteps steps.
	StepDuration time.Duration `json:"step_duration_ns"`
	StepFactor   float64       `json:"step_factor"`
	MaxSteps     int           `json:"max_steps"`
	// P99Limit and LossLimit end the steps scenario: a step whose p99 passes
	// P99Limit or whose loss ratio passes LossLimit is the last. LossLimit < 0
	// means zero tolerance (the default). For joinstorm P99Limit is the
	// target: the canary's p99 during the storm must stay below it.
	P99Limit  time.Duration `json:"p99_limit_ns"`
	LossLimit float64       `json:"loss_limit"`
	// Cycles is the number of connect/subscribe/disconnect cycles (churn).
	Cycles int `json:"cycles"`
	// HotSubs (hol) is how many connections subscribe to the hot topic,
	// PREFIX.0, published at Rate; each other connection takes one small
	// topic, PREFIX.1 .. PREFIX.(Topics-1), each published at SmallRate.
	HotSubs   int     `json:"hot_subs,omitempty"`
	SmallRate float64 `json:"small_rate,omitempty"`
	// Redis (hol) is the host:port of the node's Redis, whose CLIENT LIST
	// the harness samples; with Spawn and no -broker among the node's
	// flags, the harness starts RedisServer on a free loopback port itself
	// and points the node at it.
	Redis       string `json:"redis,omitempty"`
	RedisServer string `json:"redis_server,omitempty"`
	// Backbone (recover) is the spawned node's broker: "memory", or
	// "redis" for a redis-server the harness starts as for hol.
	Backbone string `json:"backbone,omitempty"`
	// CutEvery and CutFraction (recover): every CutEvery, CutFraction of
	// the connections are cut and resubscribe with since.
	CutEvery    time.Duration `json:"cut_every_ns,omitempty"`
	CutFraction float64       `json:"cut_fraction,omitempty"`
	// HistorySize (recover) is the SIZE of the -history rule the harness
	// gives a spawned node for PREFIX.>: it must cover the longest outage
	// (Rate × the slowest reconnect).
	HistorySize int `json:"history_size,omitempty"`
	// JoinLeaveMax (joinstorm) is the node's -join-leave-max: the canary
	// may receive at most this many join events, since none are sent for a
	// larger group. Default: the spawned node's flag, else the node's
	// default, 1000.
	JoinLeaveMax int `json:"join_leave_max,omitempty"`
	// NoPresence (joinstorm) is the control run: the same storm with no
	// presence or join-leave rule added to the spawned node, so nothing
	// is expected of the events and no presence_stats is asked; set beside
	// the run with them, it tells the feature's cost from the fan-out's.
	NoPresence bool `json:"no_presence,omitempty"`
	// PresenceStats asks the node, once publishing is over, for the
	// presence_stats of PREFIX.0 from a client of the harness's own; the
	// answer must count every subscriber connected. Always on for
	// joinstorm, and for a spawned node whose flags name -presence.
	PresenceStats bool `json:"presence_stats,omitempty"`
	// Records (kafka) is how many records are produced, keyed 0..Topics-1
	// in turn, so record i goes to PREFIX.(i mod Topics); Rate, when set,
	// paces them (records per second), else they go as fast as the
	// producer can.
	Records int `json:"records,omitempty"`
	// Kafka (kafka) is the host:port of a running Kafka (loopback) holding
	// KafkaTopic; empty with Spawn: the spawned node's -kafka-brokers, or a
	// kfake (Kfake, default: go build of internal/testserver/kfake) the
	// harness starts on a free loopback port with KafkaTopic of
	// KafkaPartitions partitions. A spawned node is given -kafka-brokers,
	// -kafka-topics KafkaTopic and -kafka-topic-template 'PREFIX.{key}'
	// unless its flags name them.
	Kafka           string `json:"kafka,omitempty"`
	KafkaTopic      string `json:"kafka_topic,omitempty"`
	KafkaPartitions int    `json:"kafka_partitions,omitempty"`
	Kfake           string `json:"kfake,omitempty"`

	// PayloadSize is the approximate JSON size of each published value.
	PayloadSize int `json:"payload_size"`
	// PublishVia is "http" (POST /publish, keep-alive) or "ws" (op pub).
	PublishVia string `json:"publish_via"`
	// Publishers is the number of HTTP publishes in flight at once; the node
	// answers a publish after queueing its fan-out, so one sender alone would
	// cap the rate at 1/round-trip.
	Publishers int    `json:"publishers"`
	APIKey     string `json:"-"`

	// Workers is the number of client processes; 0: enough for
	// MaxConnsPerWorker each (at least two when N > 1000, so both cores read).
	Workers int `json:"workers"`
	// ConnectConcurrency is the number of dials in flight per worker.
	ConnectConcurrency int `json:"connect_concurrency"`
	// ConnectRate caps new connections per second over all workers; 0: none.
	ConnectRate float64 `json:"connect_rate"`
	// DialTimeout bounds one TCP connect + upgrade; AckTimeout the wait for a
	// sub's ack.
	DialTimeout time.Duration `json:"dial_timeout_ns"`
	AckTimeout  time.Duration `json:"ack_timeout_ns"`
	// SettleTimeout bounds the wait for the node's RSS to settle before a
	// memory reading; DrainTimeout the wait for in-flight deliveries (which
	// also ends after drainQuiet without a delivery).
	SettleTimeout time.Duration `json:"settle_timeout_ns"`
	DrainTimeout  time.Duration `json:"drain_timeout_ns"`
	// Timeout bounds the whole run.
	Timeout time.Duration `json:"timeout_ns"`

	// Out is the directory for <Name>.json and <Name>.html; empty writes nothing.
	Out  string `json:"-"`
	Name string `json:"name"`
	// Quiet turns off the per-second progress line.
	Quiet bool `json:"-"`
	// CPUProfile and HeapProfile are files for the node's CPU profile over
	// the publish phase and its heap profile with every connection open;
	// both need a node started with -pprof.
	CPUProfile  string `json:"-"`
	HeapProfile string `json:"-"`
}

// scenarioDefaults are the per-scenario values of fields left zero.
func scenarioDefaults(s Scenario) Params {
	base := Params{
		Scenario:           s,
		TopicPrefix:        "bench",
		Transport:          TransportWS,
		PayloadSize:        64,
		PublishVia:         "http",
		Publishers:         128,
		ConnectConcurrency: 64,
		DialTimeout:        10 * time.Second,
		AckTimeout:         10 * time.Second,
		SettleTimeout:      15 * time.Second,
		DrainTimeout:       30 * time.Second,
		StepDuration:       3 * time.Second,
		StepFactor:         1.5,
		MaxSteps:           8,
		P99Limit:           time.Second,
		LossLimit:          -1,
	}
	switch s {
	case ScenarioIdle:
		base.Conns, base.TopicsPerConn, base.Duration = 15000, 10, 3*time.Second
	case ScenarioConnect:
		base.Conns, base.TopicsPerConn, base.ConnectConcurrency = 15000, -1, 128
	case ScenarioLatency:
		base.Conns, base.TopicsPerConn, base.Topics, base.Rate, base.Duration = 10000, 1, 1, 1, 10*time.Second
	case ScenarioFanout:
		base.Conns, base.TopicsPerConn, base.Topics, base.Rate, base.Duration = 10000, 1, 1, 150, 10*time.Second
	case ScenarioSteps:
		base.Conns, base.TopicsPerConn, base.Topics, base.Rate = 5000, 1, 1, 50
	case ScenarioTopics:
		base.Conns, base.TopicsPerConn, base.Rate, base.Duration = 15000, 100, 200, 10*time.Second
	case ScenarioChurn:
		base.Conns, base.TopicsPerConn, base.Cycles = 2000, 10, 5
	case ScenarioHol:
		// 10,000 × 100/s = 1M deliveries/s on the hot topic; 1,000 small
		// topics × 10/s = 10,000 publishes/s of one delivery each.
		base.Conns, base.TopicsPerConn, base.HotSubs = 11000, 1, 10000
		base.Rate, base.SmallRate, base.Duration = 100, 10, 10*time.Second
		base.DrainTimeout = 10 * time.Second
		base.RedisServer = "redis-server"
	case ScenarioRecover:
		// 10 % of 10,000 connections cut every second for 30 s, 20 msg/s:
		// 2000 publications of history cover an outage of 100 s.
		base.Conns, base.TopicsPerConn, base.Topics, base.Rate, base.Duration = 10000, 1, 1, 20, 30*time.Second
		base.CutEvery, base.CutFraction, base.HistorySize = time.Second, 0.1, 2000
		base.Backbone, base.RedisServer = BackboneMemory, "redis-server"
		base.DrainTimeout = 15 * time.Second
	case ScenarioJoinStorm:
		// Issue 13: 10,000 joins in 5 s on a presence + join-leave topic
		// while its canary subscriber keeps p99 under 50 ms at 20 msg/s.
		base.Conns, base.TopicsPerConn, base.Topics, base.Rate, base.Duration = 10000, 1, 1, 20, 5*time.Second
		base.TopicPrefix, base.P99Limit, base.JoinLeaveMax = "storm", 50*time.Millisecond, defaultJoinLeaveMax
		base.DrainTimeout = 10 * time.Second
	case ScenarioKafka:
		// Issue 15: 200,000 records keyed over 100 topics of 10
		// subscribers each, 2,000,000 deliveries, on a Redis backbone.
		base.Conns, base.TopicsPerConn, base.Topics, base.TopicPrefix = 1000, 1, 100, "events"
		base.Records, base.KafkaTopic, base.KafkaPartitions = 200000, "events", 6
		base.RedisServer = "redis-server"
		base.DrainTimeout = 30 * time.Second
	}
	return base
}

// Normalize fills zero fields with the scenario's defaults and checks the
// result. It returns ErrUnknownScenario, ErrBadParams or ErrNotLoopback.
func (p Params) Normalize() (Params, error) {
	if p.Scenario == "" {
		p.Scenario = ScenarioLatency
	}
	known := false
	for _, s := range Scenarios {
		known = known || s == p.Scenario
	}
	if !known {
		return p, fmt.Errorf("%w: %q (have %s)", ErrUnknownScenario, p.Scenario, scenarioList())
	}
	d := scenarioDefaults(p.Scenario)
	setInt(&p.Conns, d.Conns)
	setInt(&p.TopicsPerConn, d.TopicsPerConn)
	if p.TopicsPerConn < 0 {
		p.TopicsPerConn = -1
	}
	if p.Scenario == ScenarioHol {
		if p.HotSubs == 0 {
			p.HotSubs = min(d.HotSubs, p.Conns-1)
		}
		setFloat(&p.SmallRate, d.SmallRate)
		setStr(&p.RedisServer, d.RedisServer)
		if p.Topics == 0 {
			p.Topics = 1 + p.Conns - p.HotSubs
		}
	}
	if p.Topics == 0 {
		// Default: ten subscribers per topic, or one topic for the fan-outs.
		p.Topics = d.Topics
		if p.Topics == 0 && p.TopicsPerConn > 0 {
			p.Topics = max(p.TopicsPerConn, p.Conns*p.TopicsPerConn/10)
			if p.Scenario == ScenarioTopics {
				p.Topics = max(p.TopicsPerConn, p.Conns)
			}
		}
	}
	if p.Scenario == ScenarioRecover {
		setStr(&p.Backbone, d.Backbone)
		setStr(&p.RedisServer, d.RedisServer)
		setDur(&p.CutEvery, d.CutEvery)
		setFloat(&p.CutFraction, d.CutFraction)
		setInt(&p.HistorySize, d.HistorySize)
	}
	setStr(&p.TopicPrefix, d.TopicPrefix)
	setStr(&p.Transport, d.Transport)
	setFloat(&p.Rate, d.Rate)
	setDur(&p.Duration, d.Duration)
	setDur(&p.StepDuration, d.StepDuration)
	setFloat(&p.StepFactor, d.StepFactor)
	setInt(&p.MaxSteps, d.MaxSteps)
	setDur(&p.P99Limit, d.P99Limit)
	if p.LossLimit == 0 {
		p.LossLimit = d.LossLimit
	}
	setInt(&p.Cycles, d.Cycles)
	setInt(&p.PayloadSize, d.PayloadSize)
	setStr(&p.PublishVia, d.PublishVia)
	setInt(&p.Publishers, d.Publishers)
	setInt(&p.ConnectConcurrency, d.ConnectConcurrency)
	setDur(&p.DialTimeout, d.DialTimeout)
	setDur(&p.AckTimeout, d.AckTimeout)
	setDur(&p.SettleTimeout, d.SettleTimeout)
	setDur(&p.DrainTimeout, d.DrainTimeout)
	if p.Scenario == ScenarioJoinStorm {
		if p.JoinLeaveMax == 0 {
			p.JoinLeaveMax = d.JoinLeaveMax
			if n, err := strconv.Atoi(flagValue(p.SpawnArgs, "join-leave-max")); err == nil {
				p.JoinLeaveMax = n
			}
		}
		if p.ConnectRate == 0 && p.Duration > 0 {
			// The storm: every join spread evenly over Duration.
			p.ConnectRate = float64(p.Conns) / p.Duration.Seconds()
		}
		p.PresenceStats = !p.NoPresence
	}
	if p.Spawn != "" && flagValue(p.SpawnArgs, "presence") != "" {
		p.PresenceStats = true
	}
	if p.Scenario == ScenarioKafka {
		setInt(&p.Records, d.Records)
		setStr(&p.KafkaTopic, d.KafkaTopic)
		setInt(&p.KafkaPartitions, d.KafkaPartitions)
		setStr(&p.RedisServer, d.RedisServer)
		if p.Kafka == "" && p.Spawn != "" {
			p.Kafka = firstBroker(flagValue(p.SpawnArgs, "kafka-brokers"))
		}
	}
	if p.Name == "" {
		p.Name = string(p.Scenario)
	}
	if p.Workers == 0 {
		p.Workers = (p.Conns + MaxConnsPerWorker - 1) / MaxConnsPerWorker
		if p.Conns > 1000 {
			p.Workers = max(p.Workers, 2)
		}
	}
	if p.Timeout == 0 {
		p.Timeout = p.defaultTimeout()
	}
	return p, p.check()
}

// defaultTimeout is a generous bound on a run of these parameters.
func (p Params) defaultTimeout() time.Duration {
	t := 60*time.Second + p.SettleTimeout*2 + p.DrainTimeout + p.Duration
	switch p.Scenario {
	case ScenarioSteps:
		t += time.Duration(p.MaxSteps) * (p.StepDuration + p.DrainTimeout)
	case ScenarioChurn:
		t += time.Duration(p.Cycles) * 30 * time.Second
	case ScenarioKafka:
		// Building kfake, the group's first assignment, and the records
		// at no less than 5,000 a second.
		t += 2*time.Minute + time.Duration(p.Records)*time.Second/5000
		if p.Rate > 0 {
			t += time.Duration(float64(p.Records) / p.Rate * float64(time.Second))
		}
	}
	return t
}

func (p Params) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadParams}, a...)...)
	}
	switch {
	case p.Conns < 1:
		return bad("-conns must be at least 1")
	case p.TopicsPerConn > 0 && p.Topics < p.TopicsPerConn:
		return bad("-topics (%d) must be at least -topics-per-conn (%d)", p.Topics, p.TopicsPerConn)
	case p.Scenario.publishes() && p.TopicsPerConn <= 0:
		return bad("scenario %s publishes, so connections must subscribe (-topics-per-conn > 0)", p.Scenario)
	case p.Scenario.publishes() && (p.Rate <= 0 || math.IsInf(p.Rate, 0) || math.IsNaN(p.Rate)):
		return bad("-rate must be a positive number")
	case p.Scenario.publishes() && p.Scenario != ScenarioSteps && p.Duration <= 0:
		return bad("-duration must be positive")
	case p.Scenario == ScenarioSteps && (p.StepFactor <= 1 || p.MaxSteps < 1 || p.StepDuration <= 0):
		return bad("steps need -step-factor > 1, -max-steps >= 1 and -step-duration > 0")
	case p.Scenario == ScenarioChurn && p.Cycles < 1:
		return bad("-cycles must be at least 1")
	case p.Scenario == ScenarioHol && (p.TopicsPerConn != 1 || p.HotSubs < 1 || p.HotSubs >= p.Conns || p.Topics < 2):
		return bad("hol needs -topics-per-conn 1, 1 <= -hot-subs < -conns and -topics >= 2")
	case p.Scenario == ScenarioHol && (p.SmallRate <= 0 || math.IsInf(p.SmallRate, 0) || math.IsNaN(p.SmallRate)):
		return bad("-small-rate must be a positive number")
	case p.Scenario != ScenarioHol && p.HotSubs != 0:
		return bad("-hot-subs is for the hol scenario")
	case p.Scenario == ScenarioRecover && p.TopicsPerConn != 1:
		return bad("recover needs -topics-per-conn 1")
	case p.Scenario == ScenarioRecover && p.Backbone != BackboneMemory && p.Backbone != BackboneRedis:
		return bad("-backbone must be memory or redis, not %q", p.Backbone)
	case p.Scenario == ScenarioRecover && !(p.CutFraction > 0 && p.CutFraction <= 1):
		return bad("-cut-fraction must be within (0, 1]")
	case p.Scenario == ScenarioRecover && p.CutEvery <= 0:
		return bad("-cut-every must be positive")
	case p.Scenario == ScenarioRecover && p.HistorySize < 1:
		return bad("-history-size must be at least 1")
	case p.Scenario == ScenarioRecover && p.PublishVia != "http":
		return bad("recover publishes over http: the node's answer carries each publication's offset")
	case p.Scenario != ScenarioRecover && (p.Backbone != "" || p.CutEvery != 0 || p.CutFraction != 0 || p.HistorySize != 0):
		return bad("-backbone, -cut-every, -cut-fraction and -history-size are for the recover scenario")
	case p.Scenario == ScenarioJoinStorm && (p.TopicsPerConn != 1 || p.Topics != 1):
		return bad("joinstorm needs -topics-per-conn 1 and -topics 1: every member joins the canary's topic")
	case p.Scenario == ScenarioJoinStorm && p.Transport != TransportWS:
		return bad("joinstorm's members and canary are WebSocket clients (-transport ws)")
	case p.Scenario == ScenarioJoinStorm && (p.JoinLeaveMax < 1 || p.P99Limit <= 0):
		return bad("joinstorm needs -join-leave-max >= 1 and -p99-limit > 0")
	case p.Scenario != ScenarioJoinStorm && (p.JoinLeaveMax != 0 || p.NoPresence):
		return bad("-join-leave-max and -no-presence are for the joinstorm scenario")
	case p.Scenario == ScenarioKafka && (p.TopicsPerConn < 1 || p.Records < 1 || p.KafkaPartitions < 1):
		return bad("kafka needs -topics-per-conn >= 1, -records >= 1 and -kafka-partitions >= 1")
	case p.Scenario == ScenarioKafka && (p.Rate < 0 || math.IsInf(p.Rate, 0) || math.IsNaN(p.Rate)):
		return bad("-rate (kafka: records per second, 0 for as fast as the producer can) must be a number >= 0")
	case p.Scenario == ScenarioKafka && p.Spawn == "" && p.Kafka == "":
		return bad("kafka against a running node needs -kafka, the address of the Kafka it consumes")
	case p.Scenario != ScenarioKafka && (p.Records != 0 || p.Kafka != "" || p.KafkaTopic != "" || p.KafkaPartitions != 0 || p.Kfake != ""):
		return bad("-records, -kafka, -kafka-topic, -kafka-partitions and -kfake are for the kafka scenario")
	case p.Transport != TransportWS && p.Transport != TransportSSE:
		return bad("-transport must be ws or sse, not %q", p.Transport)
	case p.Transport == TransportSSE && (p.Scenario == ScenarioConnect || p.Scenario == ScenarioRecover):
		return bad("-transport sse is not for %s (an SSE stream must name its topics; recover resubscribes with WebSocket subs)", p.Scenario)
	case p.Transport == TransportSSE && (p.TopicsPerConn < 1 || p.TopicsPerConn > maxTopicsPerSub):
		return bad("-transport sse names every topic in one request: -topics-per-conn must be within 1..%d", maxTopicsPerSub)
	case p.Transport == TransportSSE && strings.Contains(p.TopicPrefix, ","):
		return bad("-transport sse separates topics with commas: -topic-prefix %q cannot hold one", p.TopicPrefix)
	case p.Workers < 1 || p.Workers > maxWorkers:
		return bad("-workers must be within 1..%d", maxWorkers)
	case ceilDiv(p.Conns, p.Workers) > MaxConnsPerWorker:
		return bad("%d connections over %d workers exceeds %d sockets per worker", p.Conns, p.Workers, MaxConnsPerWorker)
	case p.PublishVia != "http" && p.PublishVia != "ws":
		return bad("-publish-via must be http or ws, not %q", p.PublishVia)
	case p.Publishers < 1:
		return bad("-publishers must be at least 1")
	case p.PayloadSize < 0 || p.PayloadSize > 60<<10:
		return bad("-size must be within 0..61440")
	case p.ConnectConcurrency < 1:
		return bad("-connect-concurrency must be at least 1")
	case len(p.Targets) == 0 && p.Spawn == "":
		return bad("give -target or -spawn")
	case len(p.Targets) > 0 && p.Spawn != "":
		return bad("-target and -spawn exclude each other")
	case p.Spawn != "" && len(p.Targets) > 1:
		return bad("-spawn starts one node")
	}
	if err := checkPrefix(p.TopicPrefix); err != nil {
		return err
	}
	if p.Redis != "" {
		if err := checkTarget("ws://" + p.Redis); err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
	}
	if p.Kafka != "" {
		if err := checkTarget("ws://" + p.Kafka); err != nil {
			return fmt.Errorf("-kafka: %w", err)
		}
	}
	if p.Scenario == ScenarioKafka {
		if err := checkKafkaTopic(p.KafkaTopic); err != nil {
			return err
		}
	}
	for _, t := range p.Targets {
		if err := checkTarget(t); err != nil {
			return err
		}
	}
	nodes := max(1, len(p.Targets))
	if ceilDiv(p.Conns, nodes) > MaxConnsPerNode {
		return bad("%d connections over %d node(s) exceeds %d per node", p.Conns, nodes, MaxConnsPerNode)
	}
	return nil
}

// checkPrefix keeps PREFIX.<n> a valid topic that needs no JSON escaping.
func checkPrefix(prefix string) error {
	if prefix == "" || len(prefix) > 240 {
		return fmt.Errorf("%w: -topic-prefix must be 1..240 bytes", ErrBadParams)
	}
	for _, seg := range strings.Split(prefix, ".") {
		if seg == "" || seg == "*" || seg == ">" {
			return fmt.Errorf("%w: -topic-prefix %q has an empty or wildcard segment", ErrBadParams, prefix)
		}
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Errorf("%w: -topic-prefix %q: byte %q is not allowed", ErrBadParams, prefix, c)
		}
	}
	return nil
}

// checkTarget accepts ws:// URLs whose host is a loopback IP or localhost.
func checkTarget(t string) error {
	u, err := url.Parse(t)
	if err != nil {
		return fmt.Errorf("%w: target %q: %v", ErrBadParams, t, err)
	}
	if u.Scheme != "ws" {
		return fmt.Errorf("%w: target %q: only ws:// is supported", ErrBadParams, t)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q", ErrNotLoopback, t)
	}
	return nil
}

// NewFlagSet registers every parameter as a flag writing into p. Node flags
// for -spawn follow a "--" on the command line (see ParseArgs).
func NewFlagSet(name string, p *Params) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Func("scenario", "workload: "+scenarioList(), func(v string) error { p.Scenario = Scenario(v); return nil })
	fs.Func("target", "ws:// URL of a running node; repeat or comma-separate for several (clients round-robin, publishes to the first)",
		func(v string) error { p.Targets = appendList(p.Targets, v); return nil })
	fs.StringVar(&p.Spawn, "spawn", "", "start this node binary (flags for it after --) and measure it through its PID")
	fs.Func("spawn-env", "KEY=VALUE environment for the spawned node, e.g. GOMEMLIMIT=2GiB; repeat or comma-separate",
		func(v string) error { p.SpawnEnv = appendList(p.SpawnEnv, v); return nil })
	fs.IntVar(&p.PID, "pid", 0, "PID of the running -target node, for /proc readings (default: its /metrics)")
	fs.IntVar(&p.Conns, "conns", 0, "client connections (per cycle for churn); default per scenario")
	fs.IntVar(&p.TopicsPerConn, "topics-per-conn", 0, "topics each connection subscribes to (K); -1: none")
	fs.IntVar(&p.Topics, "topics", 0, "topics in play (T); connection i takes (i*K+j) mod T")
	fs.StringVar(&p.TopicPrefix, "topic-prefix", "", "topic names are PREFIX.<n> (default bench)")
	fs.StringVar(&p.Transport, "transport", "", "subscribers' transport: ws (op sub on a WebSocket) or sse (GET /sse?topics=…, one stream per connection); default ws")
	fs.Float64Var(&p.Rate, "rate", 0, "publishes per second (steps: the first step's rate; kafka: records per second, 0 for as fast as the producer can)")
	fs.DurationVar(&p.Duration, "duration", 0, "publish phase, or how long idle connections are held; joinstorm: the span the joins are spread over")
	fs.DurationVar(&p.StepDuration, "step-duration", 0, "steps: length of each step (default 3s)")
	fs.Float64Var(&p.StepFactor, "step-factor", 0, "steps: rate multiplier per step (default 1.5)")
	fs.IntVar(&p.MaxSteps, "max-steps", 0, "steps: most steps (default 8)")
	fs.DurationVar(&p.P99Limit, "p99-limit", 0, "steps: stop after a step whose p99 passes this (default 1s); joinstorm: the canary's p99 target during the storm (default 50ms)")
	fs.Float64Var(&p.LossLimit, "loss-limit", 0, "steps: stop after a step losing more than this fraction (default: any loss)")
	fs.IntVar(&p.Cycles, "cycles", 0, "churn: connect/subscribe/disconnect cycles (default 5)")
	fs.IntVar(&p.HotSubs, "hot-subs", 0, "hol: connections on the hot topic; the others take one small topic each (default 10000)")
	fs.Float64Var(&p.SmallRate, "small-rate", 0, "hol: publishes per second to each small topic (default 10)")
	fs.StringVar(&p.Redis, "redis", "", "hol: host:port of the node's Redis, to sample CLIENT LIST omem (default: started by the harness for a -spawn node)")
	fs.StringVar(&p.RedisServer, "redis-server", "", "hol, kafka, recover -backbone redis: redis-server binary the harness starts when -redis is not given (default redis-server)")
	fs.StringVar(&p.Backbone, "backbone", "", "recover: the spawned node's broker, memory or redis (a redis-server the harness starts); default memory")
	fs.DurationVar(&p.CutEvery, "cut-every", 0, "recover: how often connections are cut (default 1s)")
	fs.Float64Var(&p.CutFraction, "cut-fraction", 0, "recover: the part of the connections cut each time (default 0.1)")
	fs.IntVar(&p.JoinLeaveMax, "join-leave-max", 0, "joinstorm: the node's -join-leave-max, the most join events the canary may get (default: the spawned node's flag, else 1000)")
	fs.BoolVar(&p.NoPresence, "no-presence", false, "joinstorm: a control run, the same storm on a node given no -presence or -join-leave rule (no join event expected, no presence_stats)")
	fs.BoolVar(&p.PresenceStats, "presence-stats", false, "ask the node for presence_stats of PREFIX.0 once publishing is over and check it counts every subscriber (on for joinstorm and for a -spawn node with -presence)")
	fs.IntVar(&p.HistorySize, "history-size", 0, "recover: publications of history the spawned node keeps for PREFIX.> (-history PREFIX.>=SIZE,10m; default 2000)")
	fs.IntVar(&p.Records, "records", 0, "kafka: records to produce, keyed 0..topics-1 in turn (default 200000)")
	fs.StringVar(&p.Kafka, "kafka", "", "kafka: host:port of a running Kafka holding -kafka-topic (default: the spawned node's -kafka-brokers, else a kfake the harness starts)")
	fs.StringVar(&p.KafkaTopic, "kafka-topic", "", "kafka: the Kafka topic produced to and consumed (default events)")
	fs.IntVar(&p.KafkaPartitions, "kafka-partitions", 0, "kafka: partitions of the topic in the kfake the harness starts (default 6)")
	fs.StringVar(&p.Kfake, "kfake", "", "kafka: kfake binary the harness starts (default: go build of internal/testserver/kfake)")
	fs.IntVar(&p.PayloadSize, "size", 0, "approximate bytes of each published JSON value (default 64)")
	fs.StringVar(&p.PublishVia, "publish-via", "", "http (POST /publish) or ws (op pub); default http")
	fs.IntVar(&p.Publishers, "publishers", 0, "concurrent HTTP publishers, each with its own keep-alive connection (default 128)")
	fs.StringVar(&p.APIKey, "api-key", "", "API key for POST /publish, if the node requires one")
	fs.IntVar(&p.Workers, "workers", 0, "client processes (default: enough for 15000 sockets each, at least 2 above 1000 conns)")
	fs.IntVar(&p.ConnectConcurrency, "connect-concurrency", 0, "dials in flight per worker")
	fs.Float64Var(&p.ConnectRate, "connect-rate", 0, "new connections per second over all workers (0: unlimited; joinstorm: -conns / -duration)")
	fs.DurationVar(&p.DialTimeout, "dial-timeout", 0, "bound on one connect + upgrade (default 10s)")
	fs.DurationVar(&p.AckTimeout, "ack-timeout", 0, "bound on the wait for a subscription's ack (default 10s)")
	fs.DurationVar(&p.SettleTimeout, "settle-timeout", 0, "longest wait for the node's RSS to settle (default 15s)")
	fs.DurationVar(&p.DrainTimeout, "drain-timeout", 0, "longest wait for in-flight deliveries after publishing; it also ends after 2s without one (default 30s)")
	fs.DurationVar(&p.Timeout, "timeout", 0, "bound on the whole run (default: derived from the parameters)")
	fs.StringVar(&p.Out, "out", "", "directory for NAME.json and NAME.html (empty: none)")
	fs.StringVar(&p.Name, "name", "", "result file name (default: the scenario)")
	fs.BoolVar(&p.Quiet, "quiet", false, "no progress line on stderr")
	fs.StringVar(&p.CPUProfile, "cpuprofile", "", "save the node's CPU profile over the publish phase here (node needs -pprof)")
	fs.StringVar(&p.HeapProfile, "heapprofile", "", "save the node's heap profile, after a GC, with every connection open (node needs -pprof)")
	return fs
}

// ParseArgs parses harness flags, then takes everything after a "--" as the
// spawned node's flags, and normalizes the result.
func ParseArgs(fs *flag.FlagSet, p *Params, args []string) error {
	var node []string
	for i, a := range args {
		if a == "--" {
			args, node = args[:i], args[i+1:]
			break
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (node flags go after --)", ErrBadParams, fs.Arg(0))
	}
	if len(node) > 0 && p.Spawn == "" {
		return fmt.Errorf("%w: node flags after -- need -spawn", ErrBadParams)
	}
	p.SpawnArgs = append(p.SpawnArgs, node...)
	n, err := p.Normalize()
	if err != nil {
		return err
	}
	*p = n
	return nil
}

func scenarioList() string {
	names := make([]string, len(Scenarios))
	for i, s := range Scenarios {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func appendList(dst []string, v string) []string {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			dst = append(dst, s)
		}
	}
	return dst
}

func setInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

func setFloat(v *float64, d float64) {
	if *v == 0 {
		*v = d
	}
}

func setDur(v *time.Duration, d time.Duration) {
	if *v == 0 {
		*v = d
	}
}

func setStr(v *string, d string) {
	if *v == "" {
		*v = d
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
