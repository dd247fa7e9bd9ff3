package kafka_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
	"github.com/subsock/subsock/kafka"
)

// TLS with a client certificate, then each SASL mechanism kfake serves:
// the consumer authenticates and delivers; a wrong password or a missing
// client certificate keeps it not ready (unreachable) and delivers nothing.
func TestTLSAndSASL(t *testing.T) {
	users := []testserver.KafkaUser{
		{Mechanism: "PLAIN", User: "plain-user", Password: "p1"},
		{Mechanism: "SCRAM-SHA-256", User: "scram256-user", Password: "p2"},
		{Mechanism: "SCRAM-SHA-512", User: "scram512-user", Password: "p3"},
	}
	topics := map[string]int{}
	for i := range users {
		topics["auth"+string(rune('0'+i))] = 1
	}
	k := testserver.Kafka(t, testserver.KafkaConfig{Topics: topics, Users: users, TLS: true, ClientCert: true})
	n := startNode(t, gateway.Config{})
	prod := newProducer(t, k, kgo.DialTLSConfig(k.TLSConfig(t)), kgo.SASL(plain.Auth{User: "plain-user", Pass: "p1"}.AsMechanism()))

	tlsCfg := kafka.TLSConfig{CAFile: k.CAFile, CertFile: k.CertFile, KeyFile: k.KeyFile}
	for i, u := range users {
		topic := "auth" + string(rune('0'+i))
		t.Run(u.Mechanism, func(t *testing.T) {
			sub := subscribe(t, n, []string{"t.0"})
			produce(t, prod, topic, 0, 1, 1)
			cfg := testConfig(k, topic)
			cfg.Group = "auth-" + u.Mechanism
			cfg.TLS = tlsCfg
			cfg.SASL = kafka.SASLConfig{Mechanism: u.Mechanism, User: u.User, Password: u.Password}
			c, _ := runConsumer(t, cfg, n.g)
			sub.waitAll(t, "the record", 1)
			eventually(t, "ready", func() bool { return c.Ready() == nil })
		})
	}

	refused := []struct {
		name   string
		mutate func(*kafka.Config)
	}{
		{"wrong password", func(c *kafka.Config) {
			c.SASL = kafka.SASLConfig{Mechanism: "SCRAM-SHA-256", User: "scram256-user", Password: "wrong"}
		}},
		{"no client certificate", func(c *kafka.Config) {
			c.TLS = kafka.TLSConfig{CAFile: k.CAFile}
			c.SASL = kafka.SASLConfig{Mechanism: "PLAIN", User: "plain-user", Password: "p1"}
		}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(k, "auth0")
			cfg.Group = "refused"
			cfg.TLS = tlsCfg
			tt.mutate(&cfg)
			c, _ := runConsumer(t, cfg, n.g)
			eventually(t, "a probe refused", func() bool {
				err := c.Ready()
				return isErr(err, kafka.ErrUnreachable) && !isErr(err, kafka.ErrNotProbed)
			})
			t.Logf("Ready: %v", c.Ready())
			if s := c.Stats(); s.Consumed != 0 {
				t.Errorf("consumed %d records without authenticating", s.Consumed)
			}
		})
	}
}

// Kafka itself down: the consumer reports unreachable within a probe or
// two, comes back by itself, and records produced after the restart
// arrive (the group's offsets survived in kfake's data directory).
func TestKafkaDownNotReady(t *testing.T) {
	k := testserver.Kafka(t, testserver.KafkaConfig{Topics: map[string]int{"events": 1}})
	n := startNode(t, gateway.Config{})
	sub := subscribe(t, n, topicNames(10))
	produce(t, newProducer(t, k), "events", 0, 10, 10)
	c, _ := runConsumer(t, testConfig(k, "events"), n.g)
	sub.waitAll(t, "the first records", 10)
	eventually(t, "ready", func() bool { return c.Ready() == nil })
	// A restarted broker may end the member's session: the group then
	// resumes from the commit, so wait for it (CommitInterval) first.
	adm := kadm.NewClient(newProducer(t, k))
	eventually(t, "the offsets committed", func() bool { return committed(adm, "g") == 10 })

	k.Stop()
	eventually(t, "not ready while Kafka is down", func() bool { return isErr(c.Ready(), kafka.ErrUnreachable) })
	k.Start()
	eventually(t, "ready after Kafka is back", func() bool { return c.Ready() == nil })
	produce(t, newProducer(t, k), "events", 10, 20, 10)
	r := sub.waitAll(t, "the records produced after the restart", 20)
	if r.dups != 0 {
		t.Errorf("%d duplicates after a Kafka restart (offsets were committed)", r.dups)
	}
}

// A node shutting down while Kafka is gone: the leave and the last commit
// cannot happen, and Close still returns well within a drain timeout.
func TestCloseWithKafkaGone(t *testing.T) {
	k := testserver.Kafka(t, testserver.KafkaConfig{Topics: map[string]int{"events": 1}})
	n := startNode(t, gateway.Config{})
	sub := subscribe(t, n, topicNames(10))
	produce(t, newProducer(t, k), "events", 0, 10, 10)
	c, stop := runConsumer(t, testConfig(k, "events"), n.g)
	sub.waitAll(t, "the records", 10)
	k.Stop()
	eventually(t, "not ready", func() bool { return isErr(c.Ready(), kafka.ErrUnreachable) })
	start := time.Now()
	stop()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Close took %v with Kafka gone", d)
	}
}
