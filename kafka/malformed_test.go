package kafka_test

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
	"github.com/subsock/subsock/kafka"
)

// malformed is one record the node cannot publish, between good ones.
type malformed struct {
	name    string
	rec     *kgo.Record
	wantErr error // nil: the node refused it (a *proto.Error)
}

func malformedRecords(t testing.TB) []malformed {
	t.Helper()
	hdr := func(k, v string) []kgo.RecordHeader { return []kgo.RecordHeader{{Key: k, Value: []byte(v)}} }
	return []malformed{
		{"bad JSON", &kgo.Record{Key: []byte("1"), Value: []byte(`{"seq":`)}, nil},
		{"no key and no header", &kgo.Record{Value: []byte(`{"seq":100}`)}, kafka.ErrNoTopic},
		{"invalid topic in the header", &kgo.Record{Key: []byte("1"), Value: []byte(`{"seq":101}`), Headers: hdr(kafka.DefaultTopicHeader, "a..b")}, nil},
		{"reserved topic in the header", &kgo.Record{Key: []byte("1"), Value: []byte(`{"seq":102}`), Headers: hdr(kafka.DefaultTopicHeader, "_subsock.nodes")}, nil},
		{"unsupported content-type", &kgo.Record{Key: []byte("1"), Value: []byte(`{"seq":103}`), Headers: hdr("content-type", "text/plain")}, kafka.ErrContentType},
		{"value over MaxValue", &kgo.Record{Key: []byte("1"), Value: fmt.Appendf(nil, `{"seq":105,"pad":%q}`, strings.Repeat("x", 2000))}, kafka.ErrTooLarge},
		{"JSON labelled MessagePack", &kgo.Record{Key: []byte("1"), Value: []byte(`{"seq":104}`), Headers: hdr("Content-Type", "application/msgpack")}, nil},
	}
}

// Records that cannot be mapped or parsed are counted and skipped, or
// produced to the dead-letter topic, and the good records around them keep
// flowing in order; the same body runs with and without a dead-letter
// topic.
func TestMalformedRecords(t *testing.T) {
	for _, dlq := range []string{"", "dlq"} {
		name := "skip"
		if dlq != "" {
			name = "dead-letter"
		}
		t.Run(name, func(t *testing.T) { testMalformed(t, dlq) })
	}
}

func testMalformed(t *testing.T, dlq string) {
	k := testserver.Kafka(t, testserver.KafkaConfig{Topics: map[string]int{"in": 1, "dlq": 1}})
	n := startNode(t, gateway.Config{})
	sub := subscribe(t, n, topicNames(3))

	// good 0, every malformed record, good 1 (MessagePack), good 2.
	bad := malformedRecords(t)
	mp, err := msgpack.Marshal(map[string]int{"seq": 1})
	if err != nil {
		t.Fatal(err)
	}
	recs := []*kgo.Record{seqRecord("in", 0, 3)}
	for _, m := range bad {
		m.rec.Topic = "in"
		recs = append(recs, m.rec)
	}
	recs = append(recs,
		&kgo.Record{Topic: "in", Key: []byte("1"), Value: mp, Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte("application/msgpack")}}},
		seqRecord("in", 2, 3))
	prod := newProducer(t, k)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	cfg := testConfig(k, "in")
	cfg.DeadLetterTopic = dlq
	cfg.MaxValue = 1000
	c, _ := runConsumer(t, cfg, n.g)
	reg := prometheus.NewRegistry()
	if err := c.Register(reg); err != nil {
		t.Fatal(err)
	}
	r := sub.waitAll(t, "the good records", 3)
	if r.total != 3 || r.disorder != 0 {
		t.Errorf("subscriber got %d deliveries (%d out of order), want the 3 good records in order", r.total, r.disorder)
	}
	eventually(t, "every record handled", func() bool { return c.Stats().Consumed == uint64(len(recs)) })
	s := c.Stats()
	if s.Failed != uint64(len(bad)) || s.Published != 3 {
		t.Errorf("stats %+v: want %d failed, 3 published", s, len(bad))
	}
	reasons := counterByLabel(t, reg, "subsock_kafka_records_failed_total", "reason")
	want := map[string]float64{"bad_data": 2, "no_topic": 1, "bad_topic": 2, "content_type": 1, "too_large": 1}
	if !maps.Equal(reasons, want) {
		t.Errorf("failed by reason %v, want %v", reasons, want)
	}
	if dlq == "" {
		if s.DeadLettered != 0 {
			t.Errorf("%d dead-lettered without a dead-letter topic", s.DeadLettered)
		}
		return
	}
	if s.DeadLettered != uint64(len(bad)) {
		t.Errorf("%d dead-lettered, want %d", s.DeadLettered, len(bad))
	}
	got := consumeAll(t, k, dlq, len(bad))
	for i, m := range bad {
		rec := got[i]
		h := headers(rec)
		if string(rec.Value) != string(m.rec.Value) || h[kafka.HeaderSourceTopic] != "in" || h[kafka.HeaderSourceOffset] != strconv.Itoa(i+1) || h[kafka.HeaderError] == "" {
			t.Errorf("dead letter %d (%s): value %q headers %v", i, m.name, rec.Value, h)
		}
		if m.wantErr != nil && !strings.HasPrefix(h[kafka.HeaderError], m.wantErr.Error()) {
			t.Errorf("dead letter %d (%s): error header %q, want it to start with %q", i, m.name, h[kafka.HeaderError], m.wantErr)
		}
	}
}

// consumeAll reads n records of topic from the start.
func consumeAll(t testing.TB, k *testserver.KafkaServer, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := newProducer(t, k, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("%d of %d records of %s after %v", len(got), n, topic, waitFor)
		}
		got = append(got, fs.Records()...)
	}
	return got
}

// counterByLabel sums a counter's series in reg by the value of label.
func counterByLabel(t testing.TB, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	by := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					by[lp.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return by
}

func headers(r *kgo.Record) map[string]string {
	m := make(map[string]string, len(r.Headers))
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}
