package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Result is everything one run measured. Times are in milliseconds or
// seconds as the field names say; memory in bytes.
type Result struct {
	Name     string    `json:"name"`
	Scenario Scenario  `json:"scenario"`
	Params   Params    `json:"params"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Targets  []string  `json:"targets"`
	Node     *NodeInfo `json:"node,omitempty"`
	Workers  int       `json:"workers"`
	// LoadAvg is the box's 1-minute load average at the start and the end:
	// other work on the same cores skews every figure here.
	LoadAvg [2]float64 `json:"load_avg"`
	// OK is false when connections failed, deliveries were lost outside a
	// steps search, or churn did not return to the baseline.
	OK bool `json:"ok"`

	Connect    ConnectResult    `json:"connect"`
	Delivery   *DeliveryResult  `json:"delivery,omitempty"`
	Latency    Percentiles      `json:"latency"`
	LatencyCDF []CDFPoint       `json:"latency_cdf,omitempty"`
	PublishRTT Percentiles      `json:"publish_rtt"`
	Server     ServerResult     `json:"server"`
	Steps      []StepResult     `json:"steps,omitempty"`
	Churn      *ChurnResult     `json:"churn,omitempty"`
	Hol        *HolResult       `json:"hol,omitempty"`
	Recover    *RecoverResult   `json:"recover,omitempty"`
	JoinStorm  *JoinStormResult `json:"joinstorm,omitempty"`
	Kafka      *KafkaResult     `json:"kafka,omitempty"`
	// Presence is the node's presence_stats answer at the end of the run
	// (Params.PresenceStats).
	Presence *PresenceCheck `json:"presence,omitempty"`
	Samples  []Sample       `json:"samples,omitempty"`

	ServerCloses map[string]int64 `json:"server_closes,omitempty"`
	Errors       map[string]int64 `json:"errors,omitempty"`
	Notes        []string         `json:"notes,omitempty"`
}

// NodeInfo describes a node the harness spawned.
type NodeInfo struct {
	Binary string   `json:"binary"`
	Args   []string `json:"args"`
	Env    []string `json:"env,omitempty"`
	PID    int      `json:"pid"`
}

// ConnectResult covers the connect and subscribe phase (the last cycle's
// timing for churn, whose cycles are listed in ChurnResult).
type ConnectResult struct {
	Attempted  int64 `json:"attempted"`
	Connected  int64 `json:"connected"`
	Failed     int64 `json:"failed"`
	Subscribed int64 `json:"subscribed"`
	// Subscriptions is subscribed connections × topics per connection.
	Subscriptions int64 `json:"subscriptions"`
	// Seconds runs from the first dial to the last completed upgrade.
	Seconds   float64     `json:"seconds"`
	PerSec    float64     `json:"upgrades_per_sec"`
	Handshake Percentiles `json:"handshake"`
	// SubscribeSeconds runs from the first dial to the last sub ack.
	SubscribeSeconds float64     `json:"subscribe_seconds"`
	SubsPerSec       float64     `json:"subscriptions_per_sec"`
	SubAck           Percentiles `json:"sub_ack"`
	// Ready is each connection's time from its dial to its last
	// subscription's ack: the figure both transports share. An SSE
	// stream's 200 head is its ack, so its Handshake and SubAck include
	// the subscription (SubAck runs from the request written).
	Ready Percentiles `json:"ready"`
}

// DeliveryResult counts a publish phase (all steps for steps).
type DeliveryResult struct {
	Published     int64   `json:"published"`
	PublishErrors int64   `json:"publish_errors"`
	Late          int64   `json:"late_publishes"`
	PublishRate   float64 `json:"publish_rate"`
	// Expected is Σ over topics of accepted publishes × subscribed
	// connections; ServerReported sums the node's own subscriber counts
	// (the first target's, for a multi-node run).
	Expected       int64   `json:"expected"`
	ServerReported int64   `json:"server_reported"`
	Received       int64   `json:"received"`
	Lost           int64   `json:"lost"`
	LossRatio      float64 `json:"loss_ratio"`
	Gaps           int64   `json:"gaps"`
	Dups           int64   `json:"dups"`
	Unstamped      int64   `json:"unstamped"`
	// Seconds runs from the first publish to the last delivery.
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"deliveries_per_sec"`
}

// ServerResult is what the node spent.
type ServerResult struct {
	Source string `json:"source"` // where RSS and CPU were read
	// RSSBaseline is read before any client connects; RSSLoaded after the
	// connections subscribed and (idle, topics) the RSS settled.
	RSSBaseline int64   `json:"rss_baseline"`
	RSSLoaded   int64   `json:"rss_loaded"`
	RSSPerConn  float64 `json:"rss_per_conn"`
	RSSPerSub   float64 `json:"rss_per_subscription"`
	// Heap figures are go_memstats_heap_inuse_bytes from /metrics; unless
	// ForcedGC, they include garbage not yet collected.
	HeapBaseline int64   `json:"heap_baseline"`
	HeapLoaded   int64   `json:"heap_loaded"`
	HeapPerConn  float64 `json:"heap_per_conn"`
	// ForcedGC reports that the node collected garbage (POST /debug/gc)
	// before each memory reading, so heap figures are live memory.
	ForcedGC bool `json:"forced_gc"`
	// Settled reports whether RSS stopped moving (±1% for 2 s) before the
	// loaded reading; SettleSeconds is how long that took.
	Settled       bool    `json:"settled"`
	SettleSeconds float64 `json:"settle_seconds"`
	CPUConnect    CPU     `json:"cpu_connect"`
	CPUPublish    CPU     `json:"cpu_publish"`
	CPUTotal      CPU     `json:"cpu_total"`
	// ClientCPUPublish is the worker processes' CPU over the publish phase:
	// they share the box's cores with the node.
	ClientCPUPublish CPU `json:"client_cpu_publish"`
	// DeliveriesPerWrite is messages_out / write_syscalls over the publish
	// phase: how much the node's writev coalescing joined.
	DeliveriesPerWrite float64 `json:"deliveries_per_write,omitempty"`
	// Metrics is the node's registry and counters at the end.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// CPU is the node's user+system time over a wall-clock span; Percent is of
// one core.
type CPU struct {
	Seconds float64 `json:"seconds"`
	Wall    float64 `json:"wall"`
	Percent float64 `json:"percent"`
}

// StepResult is one rate of the steps scenario.
type StepResult struct {
	Step        int         `json:"step"`
	Rate        float64     `json:"rate"`
	PublishRate float64     `json:"publish_rate"`
	Published   int64       `json:"published"`
	Late        int64       `json:"late_publishes"`
	Expected    int64       `json:"expected"`
	Received    int64       `json:"received"`
	Lost        int64       `json:"lost"`
	LossRatio   float64     `json:"loss_ratio"`
	PerSec      float64     `json:"deliveries_per_sec"`
	Latency     Percentiles `json:"latency"`
	CPUPercent  float64     `json:"cpu_percent"`
	// Stop says why the search ended after this step, if it did.
	Stop string `json:"stop,omitempty"`
}

// ChurnResult is the churn scenario's cycles and its return to baseline.
type ChurnResult struct {
	Cycles []CycleResult `json:"cycles"`
	// Baseline and After are the node's subsock_connections,
	// subsock_subscriptions, subsock_topics and subsock_broker_topics.
	Baseline map[string]float64 `json:"baseline"`
	After    map[string]float64 `json:"after"`
	// Returned reports whether connections and subscriptions came back to
	// the baseline, ReturnSeconds how long after the last close.
	Returned      bool    `json:"returned"`
	ReturnSeconds float64 `json:"return_seconds"`
	RSSBaseline   int64   `json:"rss_baseline"`
	RSSAfter      int64   `json:"rss_after"`
	RSSPeak       int64   `json:"rss_peak"`
	// HeapBaseline and HeapAfter are go_memstats_heap_inuse_bytes; unless
	// the node was made to GC they hold uncollected garbage too.
	HeapBaseline int64 `json:"heap_baseline"`
	HeapAfter    int64 `json:"heap_after"`
}

// HolResult is the hol scenario's two classes of topic, measured apart,
// and the node's Redis pub/sub output buffer over the publish phase.
type HolResult struct {
	Hot   ClassResult `json:"hot"`
	Small ClassResult `json:"small"`
	Omem  OmemResult  `json:"omem"`
}

// ClassResult is one class of topics of a hol run.
type ClassResult struct {
	Topics      int     `json:"topics"`
	Subscribers int64   `json:"subscribers"`
	Rate        float64 `json:"rate"` // publishes per second asked, over the class
	Published   int64   `json:"published"`
	// PublishRate is the accepted publishes per second over the class's
	// publish phase: below Rate, the publishes ran late.
	PublishRate float64 `json:"publish_rate"`
	Late        int64   `json:"late_publishes"`
	Expected    int64   `json:"expected"`
	Received    int64   `json:"received"`
	Lost        int64   `json:"lost"`
	LossRatio   float64 `json:"loss_ratio"`
	// PerSec is deliveries per second from the first publish to the
	// class's last delivery.
	PerSec  float64     `json:"deliveries_per_sec"`
	Latency Percentiles `json:"latency"`
}

// OmemResult is the largest output buffer Redis held for the node's
// pub/sub connection(s), sampled with CLIENT LIST every 100 ms.
type OmemResult struct {
	Redis    string `json:"redis"`
	Samples  int    `json:"samples"`
	Errors   int    `json:"errors"`
	Clients  int    `json:"clients"`   // pub/sub connections seen at once
	MaxBytes int64  `json:"max_bytes"` // omem
	MaxList  int64  `json:"max_list"`  // oll: replies queued
}

// RecoverResult is the recover scenario's cuts and what each subscriber
// received across them. Delivery counts every message; Delivery.Lost is
// Lost here, and Delivery.Gaps and Dups count offsets.
type RecoverResult struct {
	Backbone    string  `json:"backbone"`
	CutEvery    float64 `json:"cut_every_s"`
	CutFraction float64 `json:"cut_fraction"`
	// Rounds of cuts ordered; Cuts connections cut in all (a connection
	// still recovering from its last cut is passed over); Reconnects
	// re-upgraded and resubscribed with since; Refused subs with since
	// the node answered with an err (each sent again after a pause);
	// ReconnectFailures gave up redialling or resubscribing.
	Rounds            int   `json:"rounds"`
	Cuts              int64 `json:"cuts"`
	Reconnects        int64 `json:"reconnects"`
	Refused           int64 `json:"refused"`
	ReconnectFailures int64 `json:"reconnect_failures"`
	// FinalOffset is the newest offset the node answered to the
	// publisher (every subscriber must end holding it).
	FinalOffset uint64 `json:"final_offset"`
	// Deliveries = Live + Replayed (msgs before a recovering sub's ack).
	Deliveries int64 `json:"deliveries"`
	Live       int64 `json:"live"`
	Replayed   int64 `json:"replayed"`
	// Lost = Gaps (offsets missing below one that arrived, or between a
	// subscriber's offset and the position of an ack that said it
	// recovered) + Tail (offsets up to FinalOffset that subscribers still
	// lacked when deliveries stopped). Dups are deliveries of an offset at
	// or below one already held. NotRecovered counts acks with
	// recovered:false (or no position), Skipped the offsets they passed
	// over; EpochResets msgs announcing that the stream lost its past.
	Lost         int64 `json:"lost"`
	Gaps         int64 `json:"gaps"`
	Tail         int64 `json:"tail"`
	Dups         int64 `json:"dups"`
	NotRecovered int64 `json:"not_recovered"`
	Skipped      int64 `json:"skipped"`
	EpochResets  int64 `json:"epoch_resets"`
	// Behind is the subscribers not caught up when the drain ended.
	Behind int64 `json:"behind"`
	// CaughtUp is the time from a cut's order to the moment its
	// connection had the ack of its sub with since and held every offset
	// up to the newest one published when the cut was ordered.
	CaughtUp Percentiles `json:"caught_up"`
	// Live latency is Result.Latency; ReplayLatency is publish → receive
	// of the replayed messages (it spans the outage).
	ReplayLatency Percentiles `json:"replay_latency"`
}

// JoinStormResult is the joinstorm scenario: members joining the member
// canary's topic, spread over the storm, and what the member canary and
// the outside canary (on a topic of its own) saw meanwhile. The member
// canary's deliveries are Result.Delivery and its latency during the
// storm Result.Latency; the outside canary's, the target, are Outside.
type JoinStormResult struct {
	// Members subscribed of Params.Conns; StormSeconds runs from the first
	// member's dial to the last member's ack, so JoinsPerSec is the rate
	// the node took them at (asked: Conns / Params.Duration).
	Members      int64   `json:"members"`
	StormSeconds float64 `json:"storm_seconds"`
	JoinsPerSec  float64 `json:"joins_per_sec"`
	// LeadSeconds and TailSeconds are the publishing before the first
	// join and after the last ack.
	LeadSeconds float64 `json:"lead_seconds"`
	TailSeconds float64 `json:"tail_seconds"`
	// JoinLeaveMax is the node's cut-off: no join event for a group above it.
	JoinLeaveMax int `json:"join_leave_max"`
	// Outside is the canary on a topic of its own, not in the storm.
	Outside *OutsideCanary `json:"outside_canary,omitempty"`
	// CanaryJoins and CanaryLeaves are the events the member canary received;
	// CanaryLastJoin is when the last join reached it, in seconds from the
	// storm's start (0: none came).
	CanaryJoins    int64   `json:"canary_joins"`
	CanaryLeaves   int64   `json:"canary_leaves"`
	CanaryLastJoin float64 `json:"canary_last_join_s"`
	// The member canary's latency by phase, by each message's scheduled send
	// time: before the first join, during the storm, after the last ack;
	// and during the storm second by second.
	Before  Percentiles   `json:"before"`
	During  Percentiles   `json:"during"`
	After   Percentiles   `json:"after"`
	Seconds []StormSecond `json:"seconds,omitempty"`
	// MemberDeliveries and MemberLatency are the members' messages from
	// their acks on; MemberJoins and MemberLeaves the events delivered to
	// them (leaves come as the members close, after the measurement).
	MemberDeliveries int64       `json:"member_deliveries"`
	MemberLatency    Percentiles `json:"member_latency"`
	MemberJoins      int64       `json:"member_joins"`
	MemberLeaves     int64       `json:"member_leaves"`
	// NodeEvents is the node's subsock_presence_events_total over lead,
	// storm and tail (join and leave deliveries it queued); NodeEventErrors
	// its subsock_presence_event_errors_total.
	NodeEvents      float64 `json:"node_events"`
	NodeEventErrors float64 `json:"node_event_errors"`
	// CPUStorm is the node's CPU from the first join to the last ack.
	CPUStorm CPU `json:"cpu_storm"`
}

// OutsideCanary is joinstorm's canary outside the storm: one subscriber
// of Topic, which no member joins, published to at Params.Rate over the
// same phases by a publisher of its own.
type OutsideCanary struct {
	Topic    string          `json:"topic"`
	Delivery *DeliveryResult `json:"delivery"`
	// Joins is the join events it received (none are owed).
	Joins   int64         `json:"joins"`
	Before  Percentiles   `json:"before"`
	During  Percentiles   `json:"during"`
	After   Percentiles   `json:"after"`
	Seconds []StormSecond `json:"seconds,omitempty"`
}

// StormSecond is one second of a storm: the canary's latency for the
// messages due in it, and the members connected at its end (the workers'
// last report by then).
type StormSecond struct {
	Second  int         `json:"second"` // from 1
	Members int64       `json:"members"`
	Latency Percentiles `json:"latency"`
}

// PresenceCheck is the node's answer to {"op":"presence_stats"} on a
// topic, asked by a client of the harness once publishing was over.
type PresenceCheck struct {
	Topic string `json:"topic"`
	// Want is the subscribers of Topic the harness had connected.
	Want    int64   `json:"want"`
	Clients int64   `json:"clients"`
	Users   int64   `json:"users"`
	Millis  float64 `json:"ms"`            // request → answer
	Err     string  `json:"err,omitempty"` // the node's err, or why there was no answer
}

// KafkaResult is the kafka scenario: records produced to a Kafka topic,
// consumed and published by the node, and its consumer lag. The
// deliveries are Result.Delivery (Published counts the records Kafka
// acknowledged) and the Kafka-to-socket latency Result.Latency.
type KafkaResult struct {
	// Brokers is the Kafka's address; Kfake reports that the harness
	// started it (a kfake process).
	Brokers string `json:"brokers"`
	Kfake   bool   `json:"kfake"`
	Topic   string `json:"topic"`
	// Partitions of Topic; PartitionsUsed took at least one record (by
	// the producer's acknowledgements).
	Partitions     int `json:"partitions"`
	PartitionsUsed int `json:"partitions_used"`
	// Keys are 0..Keys-1; Template maps them to subsock topics.
	Keys     int    `json:"keys"`
	Template string `json:"template"`
	// Assigned reports that the node owned every partition before the
	// first record, AssignSeconds how long that took once the subscribers
	// were in.
	Assigned      bool    `json:"assigned"`
	AssignSeconds float64 `json:"assign_seconds"`
	// Records asked; Produced acknowledged by Kafka; ProduceSeconds from
	// the first record handed to the producer to the last acknowledgement.
	Records        int64   `json:"records"`
	Produced       int64   `json:"produced"`
	ProduceErrors  int64   `json:"produce_errors"`
	ProduceSeconds float64 `json:"produce_seconds"`
	ProduceRate    float64 `json:"produce_rate"`
	// The node's counters' growth over the run (/metrics, every series
	// summed): records consumed, published (accepted by the backbone),
	// failed (skipped or dead-lettered) and publishes retried.
	Consumed  float64 `json:"consumed"`
	Published float64 `json:"published"`
	Failed    float64 `json:"failed"`
	Retries   float64 `json:"retries"`
	// ConsumedSeconds and PublishedSeconds run from the first record
	// produced to the poll (every 100 ms) that found the counter at
	// Produced (0: it never got there); the rates are Produced over them.
	// PeakPublishRate is the best second.
	ConsumedSeconds  float64 `json:"consumed_seconds"`
	PublishedSeconds float64 `json:"published_seconds"`
	ConsumeRate      float64 `json:"consume_rate"`
	PublishRate      float64 `json:"publish_rate"`
	PeakPublishRate  float64 `json:"peak_publish_rate"`
	// LagMax is the largest subsock_kafka_consumer_lag seen (summed over
	// partitions); LagEnd and LagPartitions the last reading and the
	// partitions it covered. LagZero reports that it came back to 0 on
	// every partition that took records, LagZeroSeconds when (from the
	// first record produced).
	LagMax         float64 `json:"lag_max"`
	LagEnd         float64 `json:"lag_end"`
	LagPartitions  int     `json:"lag_partitions"`
	LagZero        bool    `json:"lag_zero"`
	LagZeroSeconds float64 `json:"lag_zero_seconds"`
	// CPU from the first record to the lag's return (the node's is
	// Server.CPUPublish, the subscribers' Server.ClientCPUPublish): the
	// kfake process (with Kfake), the redis-server the harness started (if
	// it did), and the harness, which runs the producer.
	KafkaCPU   CPU `json:"kafka_cpu"`
	RedisCPU   CPU `json:"redis_cpu"`
	HarnessCPU CPU `json:"harness_cpu"`
	// Series is the node's counters every 100 ms from the first record.
	Series []KafkaSample `json:"series,omitempty"`
}

// KafkaSample is one poll of the node's Kafka counters, as growth since
// the run began, and the producer's acknowledged records.
type KafkaSample struct {
	T             float64 `json:"t"` // seconds from the first record produced
	Produced      int64   `json:"produced"`
	Consumed      float64 `json:"consumed"`
	Published     float64 `json:"published"`
	Failed        float64 `json:"failed,omitempty"`
	Retries       float64 `json:"retries,omitempty"`
	Lag           float64 `json:"lag"`
	LagPartitions int     `json:"lag_partitions"`
}

// CycleResult is one connect/subscribe/disconnect cycle.
type CycleResult struct {
	Connected  int64   `json:"connected"`
	Subscribed int64   `json:"subscribed"`
	Failed     int64   `json:"failed"`
	Seconds    float64 `json:"seconds"`
	PerSec     float64 `json:"upgrades_per_sec"`
}

// Sample is one reading of the sampler (every samplePeriod).
type Sample struct {
	T        float64 `json:"t"` // seconds since the start
	RSS      int64   `json:"rss"`
	CPU      float64 `json:"cpu"`        // node CPU seconds so far
	Clients  float64 `json:"client_cpu"` // worker processes' CPU seconds so far
	Open     int64   `json:"open"`
	Received int64   `json:"received"`
}

// WriteFiles writes <dir>/<name>.json and <dir>/<name>.html.
func (r *Result) WriteFiles(dir string) (jsonPath, htmlPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	jsonPath = filepath.Join(dir, r.Name+".json")
	htmlPath = filepath.Join(dir, r.Name+".html")
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	if err := writeAtomic(jsonPath, append(b, '\n')); err != nil {
		return "", "", err
	}
	h, err := RenderHTML(r)
	if err != nil {
		return "", "", err
	}
	return jsonPath, htmlPath, writeAtomic(htmlPath, h)
}

// writeAtomic writes via a .tmp file (ignored by git) and a rename, so a
// half-written report never replaces a whole one.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadResult loads a JSON result.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := new(Result)
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, path, err)
	}
	return r, nil
}
