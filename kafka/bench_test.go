package kafka_test

import (
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
)

// Records per second from Kafka to a WebSocket subscriber: a node with a
// joined consumer on 3 partitions, b.N records produced to 100 topics and
// timed until the subscriber has every one. Run with a count, e.g.
// go test -run '^$' -bench KafkaToSubscriber -benchtime 20000x ./kafka
func BenchmarkKafkaToSubscriber_Memory(b *testing.B) { benchKafkaToSubscriber(b, false) }
func BenchmarkKafkaToSubscriber_Redis(b *testing.B)  { benchKafkaToSubscriber(b, true) }

func benchKafkaToSubscriber(b *testing.B, redis bool) {
	k := testserver.Kafka(b, testserver.KafkaConfig{Topics: map[string]int{"events": 3}})
	cfg := gateway.Config{}
	if redis {
		cfg.Broker = testserver.Redis(b).URL
	}
	n := startNode(b, cfg)
	sub := subscribe(b, n, topicNames(numTopics))
	c, _ := runConsumer(b, testConfig(k, "events"), n.g)
	eventually(b, "the consumer owning every partition", func() bool { return c.Stats().Assigned == 3 })
	prod := newProducer(b, k)

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	produce(b, prod, "events", 0, b.N, numTopics)
	r := sub.waitAll(b, "every record", b.N)
	elapsed := time.Since(start)
	b.StopTimer()
	if r.dups != 0 {
		b.Errorf("%d duplicates", r.dups)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
}
