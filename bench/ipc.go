package bench

import "time"

// The parent talks to each worker over its stdin and stdout, one JSON object
// per line, strictly request then reply: the parent never sends a command
// before the previous one's reply has arrived.

// Commands sent to a worker.
const (
	cmdInit    = "init"    // spec: remember the assignment
	cmdConnect = "connect" // dial, upgrade and subscribe every assigned connection
	cmdStats   = "stats"   // current counters
	cmdHist    = "hist"    // one step's latency histogram
	cmdClose   = "close"   // close every connection (close frame 1000)
	cmdResult  = "result"  // final histograms and counters, then exit
	cmdCut     = "cut"     // recover: cut Cut connections, which reconnect at once
)

type command struct {
	Cmd  string      `json:"cmd"`
	Spec *workerSpec `json:"spec,omitempty"`
	Step int         `json:"step,omitempty"`
	// Cut is how many connections a cut command cuts.
	Cut int `json:"cut,omitempty"`
	// Offsets (recover) is each topic's newest published offset: a cut
	// connection has caught up once it holds its topic's; with stats, the
	// connections behind them are counted.
	Offsets []uint64 `json:"offsets,omitempty"`
}

// workerSpec is one worker's share of a run.
type workerSpec struct {
	Index int `json:"index"`
	// LocalIP is the source address of every socket (127.0.0.(2+Index)).
	LocalIP string   `json:"local_ip"`
	Targets []string `json:"targets"`
	// First and Count select the global connection indices First..First+Count-1;
	// connection i dials Targets[i % len(Targets)].
	First int `json:"first"`
	Count int `json:"count"`
	// TopicsPerConn, Topics and TopicPrefix give connection i the topics
	// PREFIX.((i*K + j) mod T) for j < K; K <= 0 subscribes to nothing.
	// With HotSubs > 0 (hol) see topicOf instead.
	TopicsPerConn int    `json:"topics_per_conn"`
	Topics        int    `json:"topics"`
	TopicPrefix   string `json:"topic_prefix"`
	HotSubs       int    `json:"hot_subs,omitempty"`
	// Transport is TransportWS or TransportSSE.
	Transport string `json:"transport"`
	// Concurrency is the number of dials in flight; Rate caps dials per
	// second (0: no cap).
	Concurrency int           `json:"concurrency"`
	Rate        float64       `json:"rate"`
	DialTimeout time.Duration `json:"dial_timeout"`
	AckTimeout  time.Duration `json:"ack_timeout"`
	// Recover makes each connection follow its topic's offsets and
	// resubscribe with since after a cut (the recover scenario; one topic
	// per connection).
	Recover bool `json:"recover,omitempty"`
	// LateJoin marks connections that subscribe while publishing runs
	// (joinstorm's members): their deliveries begin mid-stream, so their
	// sequences are not tallied into gaps.
	LateJoin bool `json:"late_join,omitempty"`
}

// topicOf is the id of connection i's j-th topic (of k, over topics): (i*k
// + j) mod topics; or, with hot > 0, topic 0 for the first hot connections
// and one small topic each, 1 .. topics-1 in turn, for the others.
func topicOf(i, j, k, topics, hot int) int {
	if hot > 0 {
		if i < hot {
			return 0
		}
		return 1 + (i-hot)%(topics-1)
	}
	return (i*k + j) % topics
}

// workerStats are a worker's counters; every field sums across workers
// except the time stamps, which take the earliest start and latest end.
type workerStats struct {
	Attempted  int64 `json:"attempted"`
	Connected  int64 `json:"connected"`  // upgrades completed
	Subscribed int64 `json:"subscribed"` // subscriptions acked
	Failed     int64 `json:"failed"`     // dial, upgrade or subscribe failures
	Open       int64 `json:"open"`       // connections open now
	Received   int64 `json:"received"`   // deliveries with a bench stamp
	// ReceivedByStep[s] counts deliveries stamped with step s.
	ReceivedByStep []int64 `json:"received_by_step,omitempty"`
	// LastRecvByStep[s] is the latest receive time (unix ns) of step s.
	LastRecvByStep []int64 `json:"last_recv_by_step,omitempty"`
	// Gaps counts sequence numbers never delivered below the highest one a
	// connection saw on a topic, Dups deliveries beyond one per sequence;
	// both are settled when a connection ends.
	Gaps       int64 `json:"gaps"`
	Dups       int64 `json:"dups"`
	Unstamped  int64 `json:"unstamped"`   // msg frames without a bench payload
	ErrReplies int64 `json:"err_replies"` // {"op":"err"} frames
	Pings      int64 `json:"pings"`
	// Joins and Leaves count the join and leave events received (topics
	// with -join-leave); LastJoin is the latest one's receive time (unix
	// ns, the latest across workers).
	Joins    int64 `json:"joins,omitempty"`
	Leaves   int64 `json:"leaves,omitempty"`
	LastJoin int64 `json:"last_join,omitempty"`
	// ServerCloses counts connections the server closed, by close code.
	ServerCloses map[int]int64 `json:"server_closes,omitempty"`
	// Errors keeps a count per distinct failure message (a few kinds).
	Errors map[string]int64 `json:"errors,omitempty"`
	// ConnectStart/ConnectEnd bracket the last connect command (unix ns):
	// first dial started, last upgrade completed; SubscribeEnd is the last ack.
	ConnectStart int64 `json:"connect_start"`
	ConnectEnd   int64 `json:"connect_end"`
	SubscribeEnd int64 `json:"subscribe_end"`
	// Recover counts the recover scenario's cuts and offsets (Gaps and
	// Dups then count offsets, as they arrive).
	Recover *recoverStats `json:"recover,omitempty"`
}

// recoverStats are a worker's recover counters; all sum across workers.
type recoverStats struct {
	Cuts              int64 `json:"cuts"`               // connections cut
	Reconnects        int64 `json:"reconnects"`         // re-upgraded and resubscribed with since
	ReconnectFailures int64 `json:"reconnect_failures"` // gave up redialling or resubscribing
	Refused           int64 `json:"refused"`            // subs with since answered err (then sent again)
	NotRecovered      int64 `json:"not_recovered"`      // acks with recovered:false (or no position)
	Skipped           int64 `json:"skipped"`            // offsets passed over by those acks
	EpochResets       int64 `json:"epoch_resets"`       // msgs announcing a new epoch
	CaughtUp          int64 `json:"caught_up"`          // cuts that caught up
	// Behind and Shortfall (stats with Offsets): connections not holding
	// their topic's newest offset, and the offsets they lack in all.
	Behind    int64 `json:"behind"`
	Shortfall int64 `json:"shortfall"`
}

func (s *recoverStats) add(o *recoverStats) {
	s.Cuts += o.Cuts
	s.Reconnects += o.Reconnects
	s.ReconnectFailures += o.ReconnectFailures
	s.Refused += o.Refused
	s.NotRecovered += o.NotRecovered
	s.Skipped += o.Skipped
	s.EpochResets += o.EpochResets
	s.CaughtUp += o.CaughtUp
	s.Behind += o.Behind
	s.Shortfall += o.Shortfall
}

// workerResult is a worker's final report.
type workerResult struct {
	Stats     workerStats `json:"stats"`
	Handshake string      `json:"handshake"` // encoded histogram, µs
	SubAck    string      `json:"sub_ack"`   // encoded histogram, µs
	Ready     string      `json:"ready"`     // encoded histogram, µs
	Latency   string      `json:"latency"`   // every step merged
	// CaughtUp (recover) is the cut → caught-up histogram, µs.
	CaughtUp string `json:"caught_up,omitempty"`
	// FailedConns are the global indices whose subscription never took effect.
	FailedConns []int `json:"failed_conns,omitempty"`
}

// replyProgress marks the unsolicited progress line a worker sends every
// second; it is not the answer to a command.
const replyProgress = "progress"

type workerReply struct {
	Type  string       `json:"type"` // the command answered, "progress" or "error"
	Err   string       `json:"err,omitempty"`
	Stats *workerStats `json:"stats,omitempty"`
	// Failed (connect) lists every connection index that failed so far.
	Failed []int         `json:"failed,omitempty"`
	Hist   string        `json:"hist,omitempty"`
	Cut    int           `json:"cut,omitempty"` // connections a cut command cut
	Result *workerResult `json:"result,omitempty"`
}

// add sums o into s.
func (s *workerStats) add(o *workerStats) {
	s.Attempted += o.Attempted
	s.Connected += o.Connected
	s.Subscribed += o.Subscribed
	s.Failed += o.Failed
	s.Open += o.Open
	s.Received += o.Received
	s.ReceivedByStep = addSlices(s.ReceivedByStep, o.ReceivedByStep, func(a, b int64) int64 { return a + b })
	s.LastRecvByStep = addSlices(s.LastRecvByStep, o.LastRecvByStep, func(a, b int64) int64 { return max(a, b) })
	s.Gaps += o.Gaps
	s.Dups += o.Dups
	s.Unstamped += o.Unstamped
	s.ErrReplies += o.ErrReplies
	s.Pings += o.Pings
	s.Joins += o.Joins
	s.Leaves += o.Leaves
	s.LastJoin = max(s.LastJoin, o.LastJoin)
	for k, v := range o.ServerCloses {
		if s.ServerCloses == nil {
			s.ServerCloses = map[int]int64{}
		}
		s.ServerCloses[k] += v
	}
	for k, v := range o.Errors {
		if s.Errors == nil {
			s.Errors = map[string]int64{}
		}
		s.Errors[k] += v
	}
	if o.Recover != nil {
		if s.Recover == nil {
			s.Recover = &recoverStats{}
		}
		s.Recover.add(o.Recover)
	}
	s.ConnectStart = minNonZero(s.ConnectStart, o.ConnectStart)
	s.ConnectEnd = max(s.ConnectEnd, o.ConnectEnd)
	s.SubscribeEnd = max(s.SubscribeEnd, o.SubscribeEnd)
}

func addSlices(a, b []int64, f func(x, y int64) int64) []int64 {
	for len(a) < len(b) {
		a = append(a, 0)
	}
	for i, v := range b {
		a[i] = f(a[i], v)
	}
	return a
}

func minNonZero(a, b int64) int64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// stepCount returns element s of v, or 0.
func stepCount(v []int64, s int) int64 {
	if s < len(v) {
		return v[s]
	}
	return 0
}
