package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/proto"
)

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, proto.Format, []byte) (broker.Position, error) {
	return broker.Position{}, nil
}

func TestNewRejects(t *testing.T) {
	ok := Config{Brokers: []string{"127.0.0.1:1"}, Topics: []string{"a"}}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   error
	}{
		{"no brokers", func(c *Config) { c.Brokers = nil }, ErrNoBrokers},
		{"no topics", func(c *Config) { c.Topics = nil }, ErrNoTopics},
		{"dead letters consumed", func(c *Config) { c.DeadLetterTopic = "a" }, ErrDeadLetterLoop},
		{"bad template", func(c *Config) { c.TopicTemplate = "x.{y}" }, ErrBadTemplate},
		{"bad SASL mechanism", func(c *Config) { c.SASL.Mechanism = "GSSAPI" }, ErrBadSASL},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c.pem" }, ErrBadTLS},
		{"missing CA file", func(c *Config) { c.TLS.CAFile = "/nonexistent/ca.pem" }, ErrBadTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			if _, err := New(cfg, nopPublisher{}); !errors.Is(err, tt.want) {
				t.Errorf("New: %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := New(ok, nil); !errors.Is(err, ErrNoPublisher) {
		t.Errorf("New with a nil Publisher: %v", err)
	}
	if _, err := New(Config{Brokers: ok.Brokers, Topics: ok.Topics, SASL: SASLConfig{Mechanism: "scram-sha-512", User: "u"}}, nopPublisher{}); err != nil {
		t.Errorf("lower-case mechanism: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Group != "subsock" || c.TopicHeader != DefaultTopicHeader || c.ClientID != "subsock" || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
	if c.SessionTimeout <= 0 || c.CommitInterval <= 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.PartitionBuffer <= 0 || c.ProbeInterval <= 0 || c.LogInterval <= 0 || c.RebalanceTimeout <= 0 {
		t.Errorf("a duration or size left zero: %+v", c)
	}
}

// Close before Run, twice, and a Run after Close.
func TestLifecycleWithoutKafka(t *testing.T) {
	c, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topics: []string{"a"}}, nopPublisher{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Ready before Run: %v", err)
	}
	c.Close()
	c.Close()
	if err := c.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}

// With the brokers unreachable, the consumer reports it, and Close still
// returns promptly (no group to leave, nothing to commit).
func TestCloseWithBrokersDown(t *testing.T) {
	c, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topics: []string{"a"}, ProbeInterval: 50 * time.Millisecond}, nopPublisher{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Ready()
		if errors.Is(err, ErrUnreachable) && !errors.Is(err, errNotProbed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ready = %v, want unreachable", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	c.Close()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	t.Logf("Close took %v", time.Since(start))
}
