package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Config configures a Consumer. Zero fields take the documented defaults;
// Brokers and Topics are required.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topics are the Kafka topics to consume.
	Topics []string
	// Group is the consumer group; every node of one deployment joins the
	// same group, so each partition is consumed by one node. Default:
	// "subsock".
	Group string
	// ClientID names the client to the brokers. Default: "subsock".
	ClientID string

	// TopicHeader is the record header naming the subsock topic; when a
	// record has it, it wins. Default: "subsock-topic".
	TopicHeader string
	// TopicTemplate maps a record without the header: {key}, {topic} (the
	// Kafka topic) and {partition} are replaced, e.g. "prices.{key}". A
	// template with {key} cannot map a record without a key. Empty: the
	// record key itself is the subsock topic.
	TopicTemplate string
	// MaxValue caps a record's value: a larger one fails (reason
	// too_large), as a POST /publish body over the node's MaxMessage gets
	// 413. Set it to the node's MaxMessage. Default: 64 KiB.
	MaxValue int
	// DeadLetterTopic, when set, receives every record that cannot be
	// mapped or parsed, with its key, value and headers and the headers
	// subsock-error, subsock-source-topic, subsock-source-partition and
	// subsock-source-offset. Empty: such records are counted and skipped.
	DeadLetterTopic string

	// TLS: set Enable (or any file) to dial the brokers with TLS.
	TLS TLSConfig
	// SASL authenticates to the brokers (after TLS when both are set).
	SASL SASLConfig

	// StartAtEnd makes a group without committed offsets start at the end
	// of each partition (only new records) rather than at the beginning.
	StartAtEnd bool
	// SessionTimeout: a node silent for this long (a crash) loses its
	// partitions to the others; heartbeats go every tenth of it. The
	// brokers bound it (group.min.session.timeout.ms, 6s in Kafka).
	// Default: 10s.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the group waits for members to finish
	// in-flight records and commit during a rebalance. Default: 30s.
	RebalanceTimeout time.Duration
	// CommitInterval is how often offsets of published records are
	// committed; a node that crashes republishes at most this much.
	// Default: 1s.
	CommitInterval time.Duration
	// RetryMin and RetryMax bound the wait between attempts at a record
	// the backbone refused as unavailable (and at a dead-letter produce),
	// doubling from min to max. Default: 50ms and 2s.
	RetryMin, RetryMax time.Duration
	// PartitionBuffer is how many bytes of fetched records (keys, values,
	// headers and ~100 bytes of bookkeeping each) one partition may hold
	// before its fetching is paused; above franz-go's fetch of at most
	// 1 MiB per partition, so that only a partition falling behind pauses.
	// Default: 4 MiB.
	PartitionBuffer int
	// ProbeInterval is how often the consumer asks the brokers for the
	// partitions' end offsets: the lag metric and the reachability that
	// Ready reports. Default: 2s.
	ProbeInterval time.Duration
	// LogInterval bounds how often skipped records are logged (with a
	// count); every one is counted in the metrics. Default: 10s.
	LogInterval time.Duration
	// Logger receives the consumer's logs; franz-go's own go to it as well,
	// its info level at debug. Default: zap.NewNop().
	Logger *zap.Logger
}

// TLSConfig configures TLS to the brokers. Enable with no CAFile trusts the
// system roots.
type TLSConfig struct {
	Enable bool
	// CAFile is a PEM bundle of the CAs to trust instead of the system's.
	CAFile string
	// CertFile and KeyFile are a client certificate (mutual TLS).
	CertFile, KeyFile string
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string
	// InsecureSkipVerify accepts any certificate: for tests only.
	InsecureSkipVerify bool
}

func (t TLSConfig) enabled() bool {
	return t.Enable || t.CAFile != "" || t.CertFile != "" || t.InsecureSkipVerify
}

// SASLConfig configures SASL authentication.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: none.
	Mechanism string
	User      string
	Password  string
}

// Mechanisms are the SASL mechanisms SASLConfig takes.
var Mechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// fetchMaxWait bounds how long a fetch waits for new records, and so how
// long a resumed partition may wait to be fetched again.
const fetchMaxWait = 250 * time.Millisecond

// DefaultTopicHeader is TopicHeader's default.
const DefaultTopicHeader = "subsock-topic"

// WithDefaults returns c with every zero field set to its default: the
// configuration New runs with, and where flags take their defaults.
func (c Config) WithDefaults() Config {
	if c.Group == "" {
		c.Group = "subsock"
	}
	if c.ClientID == "" {
		c.ClientID = "subsock"
	}
	if c.TopicHeader == "" {
		c.TopicHeader = DefaultTopicHeader
	}
	if c.MaxValue <= 0 {
		c.MaxValue = 64 << 10
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.RebalanceTimeout <= 0 {
		c.RebalanceTimeout = 30 * time.Second
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 50 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 2 * time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.PartitionBuffer <= 0 {
		c.PartitionBuffer = 4 << 20
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = 2 * time.Second
	}
	if c.LogInterval <= 0 {
		c.LogInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// validate checks c (with defaults) and returns what it cannot run with.
func (c Config) validate() error {
	if len(c.Brokers) == 0 {
		return ErrNoBrokers
	}
	if len(c.Topics) == 0 {
		return ErrNoTopics
	}
	if c.DeadLetterTopic != "" && slices.Contains(c.Topics, c.DeadLetterTopic) {
		return fmt.Errorf("%w: %q", ErrDeadLetterLoop, c.DeadLetterTopic)
	}
	if _, err := parseTemplate(c.TopicTemplate); err != nil {
		return err
	}
	if m := c.SASL.Mechanism; m != "" && !slices.Contains(Mechanisms, strings.ToUpper(m)) {
		return fmt.Errorf("%w: %q (want one of %s)", ErrBadSASL, m, strings.Join(Mechanisms, ", "))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("%w: a client certificate needs both CertFile and KeyFile", ErrBadTLS)
	}
	return nil
}

// clientOpts are the franz-go options for c, the group callbacks aside.
// It reads the TLS files, so a wrong path fails New, not a dial later.
func (c Config) clientOpts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.ConsumerGroup(c.Group),
		kgo.ConsumeTopics(c.Topics...),
		kgo.SessionTimeout(c.SessionTimeout),
		kgo.HeartbeatInterval(c.SessionTimeout / 10),
		kgo.RebalanceTimeout(c.RebalanceTimeout),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(c.CommitInterval),
		kgo.BlockRebalanceOnPoll(),
		// A resumed partition is fetched again only once the fetch in
		// flight to its broker returns, which, with nothing new on the
		// others, takes the whole wait: keep it short, since partitions
		// pause whenever their buffer fills or the backbone refuses.
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.WithLogger(zapLogger{c.Logger}),
	}
	if c.StartAtEnd {
		opts = append(opts, kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	} else {
		opts = append(opts, kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	}
	if c.TLS.enabled() {
		tc, err := c.TLS.build()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if m := c.SASL.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (t TLSConfig) build() (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // documented as for tests
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadTLS, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: no certificate in %s", ErrBadTLS, t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadTLS, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (s SASLConfig) mechanism() sasl.Mechanism {
	switch strings.ToUpper(s.Mechanism) {
	case "PLAIN":
		return plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism()
	}
	return nil
}

// zapLogger passes franz-go's logs to zap; its info (connections, group
// joins) goes to debug, so a node at info logs nothing per rebalance step.
type zapLogger struct{ l *zap.Logger }

func (z zapLogger) Level() kgo.LogLevel {
	switch {
	case z.l.Core().Enabled(zap.DebugLevel):
		return kgo.LogLevelInfo
	case z.l.Core().Enabled(zap.WarnLevel):
		return kgo.LogLevelWarn
	case z.l.Core().Enabled(zap.ErrorLevel):
		return kgo.LogLevelError
	}
	return kgo.LogLevelNone
}

func (z zapLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	fields := make([]zap.Field, 0, len(keyvals)/2)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fields = append(fields, zap.Any(fmt.Sprint(keyvals[i]), keyvals[i+1]))
	}
	switch level {
	case kgo.LogLevelError:
		z.l.Error(msg, fields...)
	case kgo.LogLevelWarn:
		z.l.Warn(msg, fields...)
	default:
		z.l.Debug(msg, fields...)
	}
}
