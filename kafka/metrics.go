package kafka

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the consumer's Prometheus collectors. Per-topic children are
// looked up once per partition, not per record.
type metrics struct {
	consumed, published, retries, deadLettered *prometheus.CounterVec // by Kafka topic
	failed                                     *prometheus.CounterVec // by Kafka topic and reason
	rebalances                                 *prometheus.CounterVec // by event
	commitErrors, fetchErrors                  prometheus.Counter
	state                                      stateCollector
}

func newMetrics() *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "subsock_kafka_" + name, Help: help}, labels)
	}
	return &metrics{
		consumed:     counter("records_consumed_total", "Records taken from Kafka.", "topic"),
		published:    counter("records_published_total", "Records the backbone accepted (published to subsock).", "topic"),
		failed:       counter("records_failed_total", "Records skipped or dead-lettered: reason no_topic, content_type, too_large, bad_topic or bad_data.", "topic", "reason"),
		deadLettered: counter("records_dead_lettered_total", "Failed records produced to the dead-letter topic.", "topic"),
		retries:      counter("publish_retries_total", "Publishes of a record refused as unavailable by the backbone, and retried.", "topic"),
		rebalances:   counter("rebalances_total", "Group rebalance callbacks: event assigned, revoked or lost.", "event"),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "subsock_kafka_commit_errors_total", Help: "Offset commits on revoke that failed (the next owner republishes from the last commit)."}),
		fetchErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "subsock_kafka_fetch_errors_total", Help: "Errors returned by fetches."}),
	}
}

// Collectors returns the consumer's Prometheus collectors, to register in
// the node's registry (names subsock_kafka_*): records consumed,
// published, failed (by reason) and dead-lettered per Kafka topic, publish
// retries, rebalances, commit and fetch errors, and, read at scrape time,
// the lag per owned partition, owned and paused partitions and whether the
// brokers answer.
func (c *Consumer) Collectors() []prometheus.Collector {
	m := c.m
	return []prometheus.Collector{m.consumed, m.published, m.failed, m.deadLettered, m.retries, m.rebalances, m.commitErrors, m.fetchErrors, m.state}
}

// Register registers Collectors in reg.
func (c *Consumer) Register(reg prometheus.Registerer) error {
	for _, col := range c.Collectors() {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}

var (
	lagDesc = prometheus.NewDesc("subsock_kafka_consumer_lag",
		"Records of an owned partition after the last one this node handled (before the first: after the group's commit), against the newest end offset seen.",
		[]string{"topic", "partition"}, nil)
	assignedDesc = prometheus.NewDesc("subsock_kafka_partitions_assigned",
		"Partitions this node owns in the group.", nil, nil)
	pausedDesc = prometheus.NewDesc("subsock_kafka_partitions_paused",
		"Owned partitions whose fetching is paused because the backbone refuses their next record.", nil, nil)
	reachableDesc = prometheus.NewDesc("subsock_kafka_reachable",
		"1 while the brokers answered the last probe, 0 otherwise.", nil, nil)
)

// stateCollector reads the consumer's current state at scrape time.
type stateCollector struct{ c *Consumer }

func (s stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- assignedDesc
	ch <- pausedDesc
	ch <- reachableDesc
}

func (s stateCollector) Collect(ch chan<- prometheus.Metric) {
	c := s.c
	type lag struct {
		k tp
		n int64
	}
	c.mu.Lock()
	lags := make([]lag, 0, len(c.parts))
	for k, p := range c.parts {
		end, haveEnd := c.ends[k]
		committed, haveCommit := c.committed[k]
		if n, ok := p.lag(end, committed, haveEnd, haveCommit); ok {
			lags = append(lags, lag{k, n})
		}
	}
	assigned := len(c.parts)
	reachable := c.probeErr == nil
	c.mu.Unlock()
	for _, l := range lags {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(l.n), l.k.topic, strconv.Itoa(int(l.k.part)))
	}
	ch <- prometheus.MustNewConstMetric(assignedDesc, prometheus.GaugeValue, float64(assigned))
	ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, float64(c.pausedBackbone.Load()))
	r := 0.0
	if reachable {
		r = 1
	}
	ch <- prometheus.MustNewConstMetric(reachableDesc, prometheus.GaugeValue, r)
}
