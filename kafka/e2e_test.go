package kafka_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
	"github.com/subsock/subsock/kafka"
)

const (
	numRecords = 10_000
	numTopics  = 100
)

// Two nodes over a Redis backbone, one consumer group: every record
// reaches the subscriber on each node exactly once, in order per topic,
// although the second node joins mid-stream and takes partitions over from
// the first (the revoke commits what the first published).
func TestTwoNodesExactlyOnce(t *testing.T) {
	k := testserver.Kafka(t, testserver.KafkaConfig{Topics: map[string]int{"events": 3}})
	redis := testserver.Redis(t)
	a := startNode(t, gateway.Config{Broker: redis.URL})
	b := startNode(t, gateway.Config{Broker: redis.URL})
	subA := subscribe(t, a, topicNames(numTopics))
	subB := subscribe(t, b, topicNames(numTopics))

	produce(t, newProducer(t, k), "events", 0, numRecords, numTopics)
	start := time.Now()
	cfg := testConfig(k, "events")
	ca, _ := runConsumer(t, cfg, a.g)
	eventually(t, "node a publishing", func() bool { return ca.Stats().Published >= 1000 })
	cb, _ := runConsumer(t, cfg, b.g)

	ra := subA.waitAll(t, "node a's subscriber", numRecords)
	rb := subB.waitAll(t, "node b's subscriber", numRecords)
	elapsed := time.Since(start)
	sa, sb := ca.Stats(), cb.Stats()
	t.Logf("%d records in %v (%.0f records/s); node a published %d (%d partitions now), node b %d (%d)",
		numRecords, elapsed.Round(time.Millisecond), numRecords/elapsed.Seconds(), sa.Published, sa.Assigned, sb.Published, sb.Assigned)
	for name, r := range map[string]result{"a": ra, "b": rb} {
		if r.dups != 0 || r.disorder != 0 || len(r.errs) != 0 {
			t.Errorf("subscriber on node %s: %d duplicates, %d out of order, errors %v", name, r.dups, r.disorder, r.errs)
		}
	}
	if got := sa.Published + sb.Published; got != numRecords {
		t.Errorf("published %d records in all, want %d (no record published twice)", got, numRecords)
	}
	if sb.Published == 0 || sb.Assigned == 0 {
		t.Logf("node b joined after node a had consumed everything: the takeover was not exercised")
	}
}

// A node killed with SIGKILL mid-stream (no leave, no last commit): the
// group notices after the session timeout and the surviving node takes its
// partitions over from their last commit. Every record still arrives;
// those the dead node published after its last commit arrive twice.
func TestNodeKilledMidStream(t *testing.T) {
	k := testserver.Kafka(t, testserver.KafkaConfig{Topics: map[string]int{"events": 3}})
	redis := testserver.Redis(t)
	a := startNode(t, gateway.Config{Broker: redis.URL})
	sub := subscribe(t, a, topicNames(numTopics))

	b := startChild(t, redis.URL, k.Addr, "events")
	wait(t, "the child node owning every partition", b.assigned, func(n int) bool { return n == 3 })
	ca, _ := runConsumer(t, testConfig(k, "events"), a.g)
	eventually(t, "node a owning partitions", func() bool { return ca.Stats().Assigned > 0 })
	wait(t, "the child node handing partitions over", b.assigned, func(n int) bool { return n > 0 && n < 3 })

	produce(t, newProducer(t, k), "events", 0, numRecords, numTopics)
	killedAt := wait(t, "the child node publishing", b.published, func(n int64) bool { return n >= 1500 })
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, "node a owning all partitions", func() bool { return ca.Stats().Assigned == 3 })
	tookOver := time.Since(killed)

	r := sub.waitAll(t, "the surviving node's subscriber", numRecords)
	t.Logf("child killed after publishing ~%d records; partitions taken over %v later; %d duplicates delivered (records the child published after its last commit)",
		killedAt, tookOver.Round(time.Millisecond), r.dups)
	if len(r.errs) != 0 {
		t.Errorf("bad deliveries: %v", r.errs)
	}
}

// The backbone down for 10 s mid-stream: the partitions pause on the record
// the backbone refused, the consumer reports not ready, the lag grows while
// records keep arriving in Kafka, and once Redis is back everything is
// published by itself, nothing lost.
//
// One node: with two, a record the first node publishes as soon as its own
// subscriptions are back can reach the backbone before the second node has
// resubscribed, and Redis Pub/Sub drops it for that node (at most once;
// history topics and the SDK's recovery close that gap). That is the
// backbone's guarantee, not the consumer's.
func TestBackboneDownPausesAndResumes(t *testing.T) {
	const first, total = 1000, 3000
	const outage = 10 * time.Second
	k := testserver.Kafka(t, testserver.KafkaConfig{Topics: map[string]int{"events": 3}})
	redis := testserver.Redis(t)
	n := startNode(t, gateway.Config{Broker: redis.URL, BrokerOptions: broker.Options{BackoffMax: 200 * time.Millisecond}})
	sub := subscribe(t, n, topicNames(numTopics))
	prod := newProducer(t, k)
	produce(t, prod, "events", 0, first, numTopics)

	c, _ := runConsumer(t, testConfig(k, "events"), n.g)
	reg := prometheus.NewRegistry()
	if err := c.Register(reg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first deliveries", func() bool { return sub.distinct() >= 200 })
	redis.Stop()
	stopped := time.Now()
	// The first records may all be out before Redis went: these find it gone.
	produce(t, prod, "events", first, total, numTopics)
	eventually(t, "the consumer paused and not ready", func() bool {
		return c.Stats().Paused > 0 && isErr(c.Ready(), kafka.ErrPaused)
	})
	eventually(t, "the lag to grow past the records produced during the outage", func() bool {
		return sumGauge(t, reg, "subsock_kafka_consumer_lag") >= total-first-float64(sub.distinct())
	})
	during := sub.distinct()
	// The fault is a span of time, not an event the test could await.
	time.Sleep(time.Until(stopped.Add(outage)))
	redis.Start()
	restarted := time.Now()

	r := sub.waitAll(t, "the subscriber after the outage", total)
	s := c.Stats()
	t.Logf("outage %v: %d records delivered before it, all %d within %v of the restart; %d publish retries; %d duplicates",
		outage, during, total, time.Since(restarted).Round(time.Millisecond), s.Retries, r.dups)
	if s.Retries == 0 {
		t.Error("no publish was retried: the outage did not pause the consumer")
	}
	eventually(t, "the consumer ready again", func() bool { return c.Ready() == nil && c.Stats().Paused == 0 })
	eventually(t, "the lag back to 0", func() bool { return sumGauge(t, reg, "subsock_kafka_consumer_lag") == 0 })
	if len(r.errs) != 0 {
		t.Errorf("bad deliveries: %v", r.errs)
	}
}

// sumGauge adds up every series of a gauge in reg.
func sumGauge(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

// A partition buffer far smaller than a fetch: every hand-off pauses the
// partition and every drain resumes it, and records still arrive exactly
// once and in order.
func TestSmallBufferPausesFetching(t *testing.T) {
	const total = 3000
	k := testserver.Kafka(t, testserver.KafkaConfig{Topics: map[string]int{"events": 2}})
	n := startNode(t, gateway.Config{})
	sub := subscribe(t, n, topicNames(numTopics))
	produce(t, newProducer(t, k), "events", 0, total, numTopics)
	cfg := testConfig(k, "events")
	cfg.PartitionBuffer = 8 << 10
	runConsumer(t, cfg, n.g)
	r := sub.waitAll(t, "every record", total)
	if r.dups != 0 || r.disorder != 0 {
		t.Errorf("%d duplicates, %d out of order", r.dups, r.disorder)
	}
}
