package bench

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRecordOf(t *testing.T) {
	tests := []struct {
		i, keys int
		key     int
		seq     uint64
	}{
		{0, 100, 0, 1},
		{99, 100, 99, 1},
		{100, 100, 0, 2},
		{199999, 100, 99, 2000},
		{5, 1, 0, 6},
	}
	for _, tt := range tests {
		if key, seq := recordOf(tt.i, tt.keys); key != tt.key || seq != tt.seq {
			t.Errorf("recordOf(%d, %d) = %d, %d; want %d, %d", tt.i, tt.keys, key, seq, tt.key, tt.seq)
		}
	}
	// Every key's sequence runs 1, 2, 3 … with no gap, as the subscribers
	// tally them.
	last := make([]uint64, 7)
	for i := range 700 {
		key, seq := recordOf(i, 7)
		if seq != last[key]+1 {
			t.Fatalf("record %d: key %d seq %d after %d", i, key, seq, last[key])
		}
		last[key] = seq
	}
}

func TestKafkaNodeArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"none named", []string{"-loops", "2"},
			[]string{"-loops", "2", "-kafka-brokers", "127.0.0.1:9092", "-kafka-topics", "events", "-kafka-topic-template", "events.{key}"}},
		{"brokers named", []string{"--kafka-brokers=127.0.0.1:1"},
			[]string{"--kafka-brokers=127.0.0.1:1", "-kafka-topics", "events", "-kafka-topic-template", "events.{key}"}},
		{"all named", []string{"-kafka-brokers", "a:1", "-kafka-topics", "x", "-kafka-topic-template", "{topic}.{key}"},
			[]string{"-kafka-brokers", "a:1", "-kafka-topics", "x", "-kafka-topic-template", "{topic}.{key}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.args)
			got := kafkaNodeArgs(in, "127.0.0.1:9092", "events", "events")
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if !slices.Equal(in, tt.args) {
				t.Fatalf("the caller's flags changed: %q", in)
			}
		})
	}
}

func TestFirstBroker(t *testing.T) {
	for in, want := range map[string]string{"": "", "127.0.0.1:9092": "127.0.0.1:9092", " 127.0.0.1:1 , 127.0.0.1:2": "127.0.0.1:1"} {
		if got := firstBroker(in); got != want {
			t.Errorf("firstBroker(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckKafkaTopic(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"events", true},
		{"a.b_c-D9", true},
		{"", false},
		{".", false},
		{"..", false},
		{"a b", false},
		{"a/b", false},
		{strings.Repeat("x", 249), true},
		{strings.Repeat("x", 250), false},
	}
	for _, tt := range tests {
		err := checkKafkaTopic(tt.name)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrBadParams)) {
			t.Errorf("checkKafkaTopic(%.20q) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestNormalizeKafka(t *testing.T) {
	p, err := Params{Scenario: ScenarioKafka, Spawn: "bin/subsock"}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if p.Conns != 1000 || p.TopicsPerConn != 1 || p.Topics != 100 || p.TopicPrefix != "events" || p.Records != 200000 ||
		p.KafkaTopic != "events" || p.KafkaPartitions != 6 || p.RedisServer != "redis-server" || p.Rate != 0 || p.Kafka != "" {
		t.Fatalf("defaults %+v", p)
	}
	if !p.usesRedis() || p.Timeout <= 2*time.Minute {
		t.Fatalf("usesRedis %v, timeout %v", p.usesRedis(), p.Timeout)
	}
	// The spawned node's own Kafka is the one produced to.
	p, err = Params{Scenario: ScenarioKafka, Spawn: "bin/subsock", SpawnArgs: []string{"-kafka-brokers", "127.0.0.1:7,127.0.0.1:8"}}.Normalize()
	if err != nil || p.Kafka != "127.0.0.1:7" {
		t.Fatalf("kafka %q, %v", p.Kafka, err)
	}
	p, err = Params{Scenario: ScenarioKafka, Targets: []string{testTarget}, Kafka: "127.0.0.1:9092", Rate: 5000, Records: 10}.Normalize()
	if err != nil || p.Records != 10 || p.Rate != 5000 {
		t.Fatalf("explicit %+v, %v", p, err)
	}
}

func TestNormalizeKafkaErrors(t *testing.T) {
	ok := func() Params { return Params{Scenario: ScenarioKafka, Spawn: "bin/subsock", Conns: 100, Topics: 10} }
	tests := []struct {
		name string
		edit func(*Params)
		want error
	}{
		{"records outside kafka", func(p *Params) { p.Scenario = ScenarioLatency }, ErrBadParams},
		{"kafka flag outside kafka", func(p *Params) { *p = Params{Scenario: ScenarioLatency, Spawn: "s", Kafka: "127.0.0.1:1"} }, ErrBadParams},
		{"negative rate", func(p *Params) { p.Rate = -1 }, ErrBadParams},
		{"no subscriptions", func(p *Params) { p.TopicsPerConn = -1 }, ErrBadParams},
		{"running node without kafka", func(p *Params) { p.Spawn, p.Targets = "", []string{testTarget} }, ErrBadParams},
		{"remote kafka", func(p *Params) { p.Kafka = "10.0.0.1:9092" }, ErrNotLoopback},
		{"bad topic", func(p *Params) { p.KafkaTopic = "a b" }, ErrBadParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok()
			if tt.name == "records outside kafka" {
				p.Records = 10
			}
			tt.edit(&p)
			if _, err := p.Normalize(); !errors.Is(err, tt.want) {
				t.Fatalf("Normalize() = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := ok().Normalize(); err != nil {
		t.Fatalf("the base case must be valid: %v", err)
	}
}

func TestParseSeriesSums(t *testing.T) {
	body := []byte(`# HELP subsock_kafka_consumer_lag Records after the last one handled.
# TYPE subsock_kafka_consumer_lag gauge
subsock_kafka_consumer_lag{partition="0",topic="events"} 10
subsock_kafka_consumer_lag{partition="1",topic="events"} 5 1700000000000
subsock_kafka_consumer_lag{partition="2",topic="ev}ents \"x\""} 0
subsock_kafka_records_published_total{topic="events"} 1.5e+06
subsock_kafka_partitions_assigned 3
subsock_connections 12
go_goroutines 40
`)
	m, err := parseSeriesSums(body, "subsock_kafka_")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]seriesSum{
		"subsock_kafka_consumer_lag":            {Sum: 15, N: 3},
		"subsock_kafka_records_published_total": {Sum: 1.5e6, N: 1},
		"subsock_kafka_partitions_assigned":     {Sum: 3, N: 1},
	}
	if len(m) != len(want) {
		t.Fatalf("got %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %+v, want %+v", k, m[k], v)
		}
	}
	for _, bad := range []string{
		"subsock_kafka_x{topic=\"a\" 1\n",
		"subsock_kafka_x{topic=\"a\"}\n",
		"subsock_kafka_x{topic=\"a\"} one\n",
		"subsock_kafka_x\n",
	} {
		if _, err := parseSeriesSums([]byte(bad), "subsock_kafka_"); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseSeriesSums(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestKafkaSampleOf(t *testing.T) {
	base := map[string]seriesSum{metricKafkaConsumed: {Sum: 100, N: 1}, metricKafkaPublished: {Sum: 90, N: 1}}
	m := map[string]seriesSum{
		metricKafkaConsumed: {Sum: 600, N: 1}, metricKafkaPublished: {Sum: 590, N: 1},
		metricKafkaFailed: {Sum: 2, N: 2}, metricKafkaLag: {Sum: 40, N: 6},
	}
	s := kafkaSampleOf(m, base, 1500*time.Millisecond, 1000)
	want := KafkaSample{T: 1.5, Produced: 1000, Consumed: 500, Published: 500, Failed: 2, Lag: 40, LagPartitions: 6}
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
}

func TestKafkaRates(t *testing.T) {
	series := []KafkaSample{
		{T: 0, Lag: 0},
		{T: 0.5, Consumed: 100, Published: 50, Lag: 900},
		{T: 1.0, Consumed: 600, Published: 500, Lag: 500},
		{T: 1.5, Consumed: 1000, Published: 800, Lag: 200},
		{T: 2.0, Consumed: 1000, Published: 1000, Lag: 0},
	}
	kr := kafkaRates(series, 1000)
	// Best second: 0.5 → 1.5 (750/s) and 1.0 → 2.0 (500/s), 0 → 1.0 (500/s).
	if kr.consumedAt != 1.5 || kr.publishedAt != 2.0 || kr.lagMax != 900 || kr.peak != 750 {
		t.Fatalf("got %+v", kr)
	}
	if kr := kafkaRates(series, 5000); kr.consumedAt != 0 || kr.publishedAt != 0 {
		t.Fatalf("never reached: %+v", kr)
	}
	if kr := kafkaRates(series[:2], 10); kr.peak != 0 {
		t.Fatalf("no window of a second: %+v", kr)
	}
}

func TestLagZero(t *testing.T) {
	tests := []struct {
		name string
		s    KafkaSample
		want bool
	}{
		{"caught up", KafkaSample{Published: 100, Lag: 0, LagPartitions: 6}, true},
		{"more partitions report", KafkaSample{Published: 100, Lag: 0, LagPartitions: 8}, true},
		{"lag left", KafkaSample{Published: 100, Lag: 1, LagPartitions: 6}, false},
		{"not all published", KafkaSample{Published: 99, Lag: 0, LagPartitions: 6}, false},
		{"a partition not reporting", KafkaSample{Published: 100, Lag: 0, LagPartitions: 5}, false},
	}
	for _, tt := range tests {
		if got := lagZero(tt.s, 100, 6); got != tt.want {
			t.Errorf("%s: lagZero = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestJudgeKafka(t *testing.T) {
	good := func() (*KafkaResult, *DeliveryResult) {
		return &KafkaResult{Records: 1000, Produced: 1000, Consumed: 1000, Published: 1000, PartitionsUsed: 6,
				LagZero: true, LagPartitions: 6, ProduceRate: 5000, PublishRate: 5000},
			&DeliveryResult{Published: 1000, Expected: 10000, Received: 10000}
	}
	tests := []struct {
		name  string
		edit  func(k *KafkaResult, d *DeliveryResult)
		ok    bool
		notes []string
	}{
		{"met", func(*KafkaResult, *DeliveryResult) {}, true, nil},
		{"produce short", func(k *KafkaResult, _ *DeliveryResult) { k.Produced, k.Published = 990, 990 }, false, []string{"acknowledged 990 of 1000"}},
		{"not all published", func(k *KafkaResult, _ *DeliveryResult) { k.Published = 900 }, false, []string{"published 900 of the 1000"}},
		{"failed records", func(k *KafkaResult, _ *DeliveryResult) { k.Failed = 3 }, false, []string{"failed 3 records"}},
		{"lag left", func(k *KafkaResult, _ *DeliveryResult) { k.LagZero, k.LagEnd = false, 12 }, false, []string{"did not return to 0"}},
		{"gaps", func(_ *KafkaResult, d *DeliveryResult) { d.Gaps = 4 }, false, []string{"4 sequence numbers"}},
		{"dups", func(_ *KafkaResult, d *DeliveryResult) { d.Dups = 4 }, true, []string{"4 deliveries were duplicates"}},
		{"republished", func(k *KafkaResult, _ *DeliveryResult) { k.Published = 1010 }, true, []string{"published 1010 records for 1000"}},
		{"retries", func(k *KafkaResult, _ *DeliveryResult) { k.Retries = 2 }, true, []string{"refused 2 publishes"}},
		{"backlog", func(k *KafkaResult, _ *DeliveryResult) { k.ProduceRate = 50000 }, true, []string{"latency includes the wait"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, d := good()
			tt.edit(k, d)
			r := &runner{p: Params{Scenario: ScenarioKafka}, res: &Result{Kafka: k, Delivery: d}}
			if ok := r.judgeKafka(); ok != tt.ok {
				t.Errorf("ok %v, want %v (notes %q)", ok, tt.ok, r.res.Notes)
			}
			if len(r.res.Notes) != len(tt.notes) {
				t.Fatalf("notes %q, want %q", r.res.Notes, tt.notes)
			}
			for i, n := range tt.notes {
				if !strings.Contains(r.res.Notes[i], n) {
					t.Errorf("note %q lacks %q", r.res.Notes[i], n)
				}
			}
		})
	}
}

func TestKafkaFiguresAndSummary(t *testing.T) {
	r := sampleResult(ScenarioKafka)
	var b bytes.Buffer
	PrintFigures(&b, r)
	out := b.String()
	for _, want := range []string{
		"latency, produce → socket", "topic events, 6 partitions (6 took records) on 127.0.0.1:9092 (kfake, started by the harness); keys 0..99 → events.{key}",
		"200000 of 200000 records acknowledged in 0.30 s", "200000 records, all by 15.30 s (13072 records/s, best second 15000/s)",
		"max 180000 · back to 0 at 15.30 s", "redis-server 11%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("figures lack %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := WriteSummary(&b, []*Result{r}); err != nil {
		t.Fatal(err)
	}
	out = b.String()
	for _, want := range []string{"| 13072 (kafka) |", "**kafka** (records produced to Kafka",
		"| [kafka](kafka.html) | 6 | 1000 × 100 | 200000 | 666667 | 13158 | 13072 (15000) | 130000 | 2000000 / 2000000 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}
