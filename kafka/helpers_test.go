package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
	"github.com/subsock/subsock/kafka"
)

// The gateway is what the consumer publishes through in production.
var _ kafka.BatchPublisher = (*gateway.Gateway)(nil)

// waitFor bounds every wait; generous for -race on two shared cores. It is
// a deadline, never a sleep.
const waitFor = 30 * time.Second

// ---------------------------------------------------------------- nodes

// node is one in-process subsock node on a loopback port.
type node struct {
	g    *gateway.Gateway
	addr string
}

func startNode(t testing.TB, cfg gateway.Config) *node {
	t.Helper()
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = g.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = g.Shutdown(ctx)
		<-served
	})
	return &node{g: g, addr: ln.Addr().String()}
}

// testConfig is a consumer configuration for tests: quick to notice a
// dead member (yet not so quick that a node starved of CPU under -race
// loses its partitions) and quick to probe.
func testConfig(k *testserver.KafkaServer, topics ...string) kafka.Config {
	return kafka.Config{
		Brokers:        []string{k.Addr},
		Topics:         topics,
		Group:          "g",
		TopicTemplate:  "t.{key}",
		SessionTimeout: 3 * time.Second,
		CommitInterval: 200 * time.Millisecond,
		ProbeInterval:  200 * time.Millisecond,
		RetryMax:       500 * time.Millisecond,
	}
}

// runConsumer starts a consumer on pub and closes it when the test ends
// (or earlier, through the returned stop).
func runConsumer(t testing.TB, cfg kafka.Config, pub kafka.Publisher) (*kafka.Consumer, func()) {
	t.Helper()
	c, err := kafka.New(cfg, pub)
	if err != nil {
		t.Fatalf("kafka.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			c.Close()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- subscriber

// subscriber is one WebSocket client subscribed to topics, counting every
// delivery by its payload's seq.
type subscriber struct {
	mu       sync.Mutex
	counts   map[int]int
	last     map[string]int // topic → last seq, for order
	disorder int
	total    int
	errs     []string
}

type envelope struct {
	Op     string          `json:"op"`
	ID     int             `json:"id"`
	Topic  string          `json:"topic"`
	Offset uint64          `json:"offset"`
	Data   json.RawMessage `json:"data"`
	Code   string          `json:"code"`
	Msg    string          `json:"msg"`
}

type payload struct {
	Seq int `json:"seq"`
}

func subscribe(t testing.TB, n *node, topics []string) *subscriber {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+n.addr+"/ws", &websocket.DialOptions{Subprotocols: []string{"subsock.v1.json"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(1 << 20)
	req, _ := json.Marshal(map[string]any{"op": "sub", "id": 1, "topics": topics})
	if err := conn.Write(ctx, websocket.MessageText, req); err != nil {
		t.Fatalf("sub: %v", err)
	}
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for the sub ack: %v", err)
		}
		var e envelope
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("bad envelope %q: %v", b, err)
		}
		if e.Op == "ack" && e.ID == 1 {
			break
		}
		if e.Op == "err" {
			t.Fatalf("sub refused: %s %s", e.Code, e.Msg)
		}
	}
	s := &subscriber{counts: make(map[int]int), last: make(map[string]int)}
	rctx, rcancel := context.WithCancel(context.Background())
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			_, b, err := conn.Read(rctx)
			if err != nil {
				return
			}
			s.take(b)
		}
	}()
	t.Cleanup(func() {
		rcancel()
		conn.Close(websocket.StatusNormalClosure, "")
		<-read
	})
	return s
}

func (s *subscriber) take(b []byte) {
	var e envelope
	var p payload
	err := json.Unmarshal(b, &e)
	if err == nil && e.Op == "msg" {
		err = json.Unmarshal(e.Data, &p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		s.errs = append(s.errs, fmt.Sprintf("%q: %v", b, err))
		return
	case e.Op != "msg":
		return
	}
	s.counts[p.Seq]++
	s.total++
	if last, ok := s.last[e.Topic]; ok && p.Seq <= last && s.counts[p.Seq] == 1 {
		s.disorder++
	}
	s.last[e.Topic] = max(s.last[e.Topic], p.Seq)
}

// result is what a subscriber received of seqs 0..n-1.
type result struct {
	distinct, total, missing, dups, disorder int
	firstMissing                             []int
	errs                                     []string
}

func (s *subscriber) result(n int) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := result{distinct: len(s.counts), total: s.total, disorder: s.disorder, errs: s.errs}
	for seq := range n {
		switch c := s.counts[seq]; {
		case c == 0:
			r.missing++
			if len(r.firstMissing) < 10 {
				r.firstMissing = append(r.firstMissing, seq)
			}
		case c > 1:
			r.dups += c - 1
		}
	}
	return r
}

func (s *subscriber) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counts)
}

// waitAll waits until the subscriber has seen every seq below n.
func (s *subscriber) waitAll(t testing.TB, what string, n int) result {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		r := s.result(n)
		if r.missing == 0 {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d records missing after %v (first %v)", what, r.missing, n, waitFor, r.firstMissing)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- producer

func newProducer(t testing.TB, k *testserver.KafkaServer, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Addr), kgo.ProducerLinger(time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// seqRecord is record seq of topic: key seq%topics maps it to t.<key>
// through the template; every other record names its topic in the header
// instead (under another key, which hashes to the same partition's peers
// no less evenly).
func seqRecord(kafkaTopic string, seq, topics int) *kgo.Record {
	key := strconv.Itoa(seq % topics)
	r := &kgo.Record{Topic: kafkaTopic, Key: []byte(key), Value: fmt.Appendf(nil, `{"seq":%d,"pad":"0123456789abcdef"}`, seq)}
	if seq%2 == 1 {
		r.Headers = []kgo.RecordHeader{{Key: kafka.DefaultTopicHeader, Value: []byte("t." + key)}}
	}
	return r
}

// produce sends records from..to-1 in batches and waits for each batch.
func produce(t testing.TB, cl *kgo.Client, kafkaTopic string, from, to, topics int) {
	t.Helper()
	const batch = 500
	for i := from; i < to; i += batch {
		recs := make([]*kgo.Record, 0, batch)
		for seq := i; seq < min(i+batch, to); seq++ {
			recs = append(recs, seqRecord(kafkaTopic, seq, topics))
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		err := cl.ProduceSync(ctx, recs...).FirstErr()
		cancel()
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

func topicNames(n int) []string {
	ts := make([]string, n)
	for i := range ts {
		ts[i] = "t." + strconv.Itoa(i)
	}
	return ts
}

// committed is the sum of the group's committed offsets.
func committed(adm *kadm.Client, group string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return -1
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	return sum
}

// isErr reports whether err is target, for readiness polls.
func isErr(err, target error) bool { return errors.Is(err, target) }
