// Command subsock runs one subsock node: a WebSocket pub/sub gateway.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/subsock/subsock/demo"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/kafka"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "subsock:", err)
		os.Exit(1)
	}
}

// list is a comma-separated flag value.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }
func (l *list) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// items returns the list's elements, as -print-config writes them.
func (l *list) items() []string { return append([]string{}, *l...) }

// historyRules is the repeatable -history flag.
type historyRules []gateway.HistoryRule

func (h *historyRules) String() string {
	parts := make([]string, len(*h))
	for i, r := range *h {
		parts[i] = r.String()
	}
	return strings.Join(parts, " ")
}

func (h *historyRules) Set(v string) error {
	r, err := gateway.ParseHistoryRule(v)
	if err != nil {
		return err
	}
	*h = append(*h, r)
	return nil
}

// items returns one string per rule, each one Set accepts.
func (h *historyRules) items() []string {
	s := make([]string, len(*h))
	for i, r := range *h {
		s[i] = r.Pattern.String() + "=" + strconv.Itoa(r.Size) + "," + formatDuration(r.TTL)
	}
	return s
}

// options is what the command line sets: the node's Config and what only
// the command itself uses.
type options struct {
	cfg                      gateway.Config
	addr                     string
	logLevel, logFormat      string
	demo, pprof              bool
	jwtSecret, jwtSecretFile string
	configFile               string
	printConfig              bool
	kafka                    kafka.Config
	kafkaPasswordFile        string
}

// newFlagSet declares every flag on o. A flag for a Config field takes its
// default from the library (gateway.Config.WithDefaults), so each default
// is written once and -h shows it; a flag whose default derives from
// another setting or from the host defaults to 0, and its help says what 0
// stands for.
func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("subsock", flag.ContinueOnError)
	def := gateway.Config{}.WithDefaults()
	cfg := &o.cfg
	fs.StringVar(&o.configFile, "config", "", "YAML file of settings keyed by flag name (deploy/subsock.example.yaml); SUBSOCK_<FLAG> variables override it, flags override both")
	fs.BoolVar(&o.printConfig, "print-config", false, "print the effective settings (file, environment and flags) as YAML -config accepts, secrets redacted, and exit")
	fs.StringVar(&o.addr, "addr", ":8080", "listen address")
	fs.IntVar(&cfg.Poller.Loops, "loops", 0, "netpoll event loops (0: one per CPU)")
	fs.IntVar(&cfg.Poller.Writers, "writers", 0, "writer goroutines that flush outbound queues (0: one per loop)")
	fs.IntVar(&cfg.Poller.ReadBufferSize, "read-buffer", def.Poller.ReadBufferSize, "bytes of input buffer kept per connection")
	fs.IntVar(&cfg.Poller.MaxWriteBytes, "max-write", def.Poller.MaxWriteBytes, "bytes one writev may carry")
	fs.IntVar(&cfg.Poller.MaxPending, "max-pending", def.Poller.MaxPending, "bytes queued per connection before it is closed as a slow consumer (1013)")
	fs.IntVar(&cfg.Poller.RecvBuffer, "recv-buffer", 0, "SO_RCVBUF per connection in bytes, which Linux doubles (0: half of -max-message, at least 4 KiB; negative: the kernel's autotuning); bounds what a flooding client gets into memory before it is cut")
	fs.IntVar(&cfg.Poller.SendBuffer, "send-buffer", def.Poller.SendBuffer, "SO_SNDBUF per connection in bytes, which Linux doubles (negative: the kernel's autotuning, up to 4 MiB); bounds the kernel memory a reader that stalls can pin beyond -max-pending")
	fs.DurationVar(&cfg.Poller.LingerTimeout, "linger", def.Poller.LingerTimeout, "how long a closing connection waits for the peer's FIN")
	fs.IntVar(&cfg.Shards, "shards", def.Shards, "registry lock stripes")
	fs.IntVar(&cfg.FanoutWorkers, "fanout-workers", 0, "fan-out workers; each topic is fanned out, in order, by one of them (0: GOMAXPROCS)")
	fs.IntVar(&cfg.FanoutQueue, "fanout-queue", def.FanoutQueue, "messages each fan-out worker may hold; a full queue makes the broker wait")
	fs.IntVar(&cfg.PublishWorkers, "publish-workers", 0, "workers making publishes' broker calls off the handlers on a network backbone, a topic always on the same one (0: 4 x GOMAXPROCS)")
	fs.IntVar(&cfg.PublishQueue, "publish-queue", def.PublishQueue, "publishes each publisher worker may hold (unavailable past it); a worker sends up to its whole queue in one exchange")
	fs.IntVar(&cfg.SmallGroup, "small-group", def.SmallGroup, "topics with at most this many local subscribers are written ahead of a larger topic's pass (negative: none)")
	fs.IntVar(&cfg.MaxMessage, "max-message", def.MaxMessage, "largest inbound message or publish body in bytes (1009 / 413 beyond)")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header", def.MaxHeaderBytes, "largest HTTP request header block in bytes (431 beyond)")
	fs.IntVar(&cfg.MaxSubsPerConn, "max-subs-per-conn", def.MaxSubsPerConn, "subscriptions per connection")
	fs.IntVar(&cfg.MaxTopicsPerRequest, "max-topics-per-request", def.MaxTopicsPerRequest, "topics in one sub or unsub request")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", def.RequestTimeout, "an HTTP request (upgrade included) or a WebSocket message must arrive within this once begun")
	fs.IntVar(&cfg.MaxInputBacklog, "max-input-backlog", 0, "unprocessed input bytes one connection may hold before it is closed with 1008 (0: 2 x -max-message)")
	fs.DurationVar(&cfg.SubscribeTimeout, "subscribe-timeout", def.SubscribeTimeout, "a sub the backbone has not confirmed within this is answered unavailable and rolled back")
	fs.DurationVar(&cfg.CloseGrace, "close-grace", def.CloseGrace, "a connection that does not take a close the node began (token expiry) within this is reset")
	fs.DurationVar(&cfg.PingInterval, "ping-interval", def.PingInterval, "how often each connection is pinged")
	fs.DurationVar(&cfg.PingTimeout, "ping-timeout", def.PingTimeout, "close a connection silent for this long (4000)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", def.DrainTimeout, "graceful shutdown limit")
	fs.DurationVar(&cfg.PublishTimeout, "publish-timeout", def.PublishTimeout, "a publish the backbone has not accepted within this gets 503 / unavailable")
	fs.StringVar(&cfg.Broker, "broker", def.Broker, "backbone: memory, redis://host:port, redis-cluster://h1:p1,h2:p2, nats://host:port")
	fs.DurationVar(&cfg.BrokerOptions.DialTimeout, "broker-dial-timeout", def.BrokerOptions.DialTimeout, "bound on each connection attempt to the backbone")
	fs.DurationVar(&cfg.BrokerOptions.Timeout, "broker-timeout", def.BrokerOptions.Timeout, "bound on a backbone round trip without a deadline of its own, and on each resubscription after a reconnect")
	fs.DurationVar(&cfg.BrokerOptions.BackoffMin, "broker-backoff-min", def.BrokerOptions.BackoffMin, "first wait between reconnect attempts; it doubles up to -broker-backoff-max")
	fs.DurationVar(&cfg.BrokerOptions.BackoffMax, "broker-backoff-max", def.BrokerOptions.BackoffMax, "longest wait between reconnect attempts")
	fs.IntVar(&cfg.BrokerOptions.QueueSize, "broker-queue", def.BrokerOptions.QueueSize, "messages NATS may hold for the node before dropping them as a slow consumer")
	fs.DurationVar(&cfg.Router.Linger, "interest-linger", def.Router.Linger, "keep upstream interest this long after a topic's last local subscriber leaves")
	fs.DurationVar(&cfg.Router.BatchDelay, "interest-batch-delay", def.Router.BatchDelay, "collect upstream (un)subscriptions this long before sending")
	fs.IntVar(&cfg.Router.BatchSize, "interest-batch-size", def.Router.BatchSize, "topics per upstream (un)subscribe call")
	fs.DurationVar(&cfg.Router.CallTimeout, "interest-call-timeout", def.Router.CallTimeout, "bound on each upstream (un)subscribe call")

	sec := &cfg.Security
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "HS256 secret for connect tokens (or $SUBSOCK_JWT_SECRET)")
	fs.StringVar(&o.jwtSecretFile, "jwt-secret-file", "", "file holding the HS256 secret")
	fs.Var((*list)(&sec.JWT.PublicKeyFiles), "jwt-public-keys", "PEM files with RS256/ES256 public keys (comma-separated)")
	fs.StringVar(&sec.JWT.JWKSURL, "jwks-url", "", "JWKS URL for RS256/ES256 keys")
	fs.DurationVar(&sec.JWT.JWKSRefresh, "jwks-refresh", def.Security.JWT.JWKSRefresh, "JWKS refresh period")
	fs.StringVar(&sec.JWT.Audience, "jwt-audience", "", "required aud claim")
	fs.StringVar(&sec.JWT.Issuer, "jwt-issuer", "", "required iss claim")
	fs.DurationVar(&sec.JWT.Leeway, "jwt-leeway", def.Security.JWT.Leeway, "clock skew allowed on exp and nbf")
	fs.BoolVar(&sec.AllowAnonymous, "allow-anonymous", false, "let clients without a token in, limited to the anonymous patterns")
	fs.Var((*list)(&sec.AnonymousSubs), "anonymous-subs", "topic patterns anonymous clients may subscribe to (comma-separated; * one segment, > the rest)")
	fs.Var((*list)(&sec.AnonymousPubs), "anonymous-pubs", "topic patterns anonymous clients may publish to")
	fs.StringVar(&sec.TokenCookie, "token-cookie", "", "name of a cookie that may carry the connect token (browsers' EventSource and WebSocket cannot set headers)")
	fs.StringVar(&sec.APIKey, "api-key", "", "key required by POST /publish (or $SUBSOCK_API_KEY)")
	fs.StringVar(&sec.AllowedOrigins, "allowed-origins", "", "allowed Origin hosts, comma-separated, or * (empty: the request's own host only)")
	fs.IntVar(&sec.MaxConns, "max-conns", 0, "open WebSocket connections (0: unlimited; 503 + Retry-After beyond)")
	fs.Float64Var(&sec.AcceptRate, "accept-rate", 0, "new WebSocket connections per second (0: unlimited; 503 + Retry-After beyond)")
	fs.IntVar(&sec.AcceptBurst, "accept-burst", 0, "connections admitted at once on top of -accept-rate (0: rate/10, at least 1)")
	fs.Float64Var(&sec.PublishRate, "publish-rate", 0, "client publishes and token refreshes per second per connection (0: unlimited)")
	fs.IntVar(&sec.PublishBurst, "publish-burst", 0, "publish token bucket depth (0: the rate, at least 1)")

	fs.Var((*historyRules)(&cfg.History), "history", "PATTERN=SIZE[,TTL]: topics matching PATTERN keep their last SIZE publications for TTL (default 10m) after the last one, with offsets and recovery; repeatable, the first match wins (e.g. -history 'chat.>=100,10m'; in $SUBSOCK_HISTORY separate rules with ;)")
	fs.Int64Var(&cfg.BrokerOptions.HistoryMemory, "history-memory", def.BrokerOptions.HistoryMemory, "bytes the memory broker keeps in all streams together; past it the least recently published streams are dropped whole")
	fs.IntVar(&cfg.MaxReplay, "max-replay", 0, "history replay bytes one connection may have queued beyond -max-pending; a recovery needing more is answered recovered:false (0: 4 x -max-pending)")
	fs.IntVar(&cfg.HistoryReadLimit, "history-read-limit", def.HistoryReadLimit, "most publications one GET /history answers")
	fs.Var((*list)(&cfg.Presence), "presence", "topic patterns with presence (who is subscribed, cluster-wide; comma-separated or repeated)")
	fs.Var((*list)(&cfg.JoinLeave), "join-leave", "topic patterns whose subscribers get join and leave events (comma-separated or repeated)")
	fs.IntVar(&cfg.JoinLeaveMax, "join-leave-max", def.JoinLeaveMax, "no join or leave events for a group larger than this across the cluster")
	fs.DurationVar(&cfg.NodeTTL, "node-ttl", def.NodeTTL, "a node that stopped announcing itself (every third of this) is forgotten by the others after this")
	fs.DurationVar(&cfg.GatherTimeout, "gather-timeout", def.GatherTimeout, "how long a cluster-wide query (presence, /api/topics) waits for the other nodes")
	kdef := kafka.Config{}.WithDefaults()
	k := &o.kafka
	fs.Var((*list)(&k.Brokers), "kafka-brokers", "Kafka seed brokers host:port, comma-separated; set: consume -kafka-topics as an event source (docs/kafka.md)")
	fs.Var((*list)(&k.Topics), "kafka-topics", "Kafka topics to consume (comma-separated)")
	fs.StringVar(&k.Group, "kafka-group", kdef.Group, "consumer group, the same on every node")
	fs.StringVar(&k.ClientID, "kafka-client-id", kdef.ClientID, "client id shown to the brokers")
	fs.StringVar(&k.TopicHeader, "kafka-topic-header", kdef.TopicHeader, "record header naming the subsock topic")
	fs.StringVar(&k.TopicTemplate, "kafka-topic-template", "", "topic of a record without the header: {key}, {topic}, {partition} (empty: the record key)")
	fs.StringVar(&k.DeadLetterTopic, "kafka-dead-letter", "", "Kafka topic for records that cannot be mapped or parsed (empty: count and skip)")
	fs.BoolVar(&k.TLS.Enable, "kafka-tls", false, "TLS to the brokers with the system CAs (implied by -kafka-tls-*)")
	fs.StringVar(&k.TLS.CAFile, "kafka-tls-ca", "", "PEM CAs to trust for the brokers")
	fs.StringVar(&k.TLS.CertFile, "kafka-tls-cert", "", "client certificate (PEM), mutual TLS")
	fs.StringVar(&k.TLS.KeyFile, "kafka-tls-key", "", "client certificate key (PEM)")
	fs.StringVar(&k.TLS.ServerName, "kafka-tls-server-name", "", "name to verify in broker certificates")
	fs.BoolVar(&k.TLS.InsecureSkipVerify, "kafka-tls-insecure", false, "accept any broker certificate (tests only)")
	fs.StringVar(&k.SASL.Mechanism, "kafka-sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.StringVar(&k.SASL.User, "kafka-sasl-user", "", "SASL user")
	fs.StringVar(&k.SASL.Password, "kafka-sasl-password", "", "SASL password (or $SUBSOCK_KAFKA_SASL_PASSWORD)")
	fs.StringVar(&o.kafkaPasswordFile, "kafka-sasl-password-file", "", "file holding the SASL password")
	fs.BoolVar(&k.StartAtEnd, "kafka-start-at-end", false, "a group without commits starts at the end of each partition")
	fs.DurationVar(&k.SessionTimeout, "kafka-session-timeout", kdef.SessionTimeout, "a crashed node's partitions move after this")
	fs.DurationVar(&k.RebalanceTimeout, "kafka-rebalance-timeout", kdef.RebalanceTimeout, "how long a rebalance waits for in-flight records and commits")
	fs.DurationVar(&k.CommitInterval, "kafka-commit-interval", kdef.CommitInterval, "how often published offsets are committed (bounds duplicates after a crash)")
	fs.DurationVar(&k.RetryMin, "kafka-retry-min", kdef.RetryMin, "first wait before retrying a record the backbone refused")
	fs.DurationVar(&k.RetryMax, "kafka-retry-max", kdef.RetryMax, "longest such wait")
	fs.IntVar(&k.PartitionBuffer, "kafka-partition-buffer", kdef.PartitionBuffer, "fetched bytes one partition may hold before its fetching pauses")
	fs.DurationVar(&k.ProbeInterval, "kafka-probe-interval", kdef.ProbeInterval, "how often end offsets are probed (lag, readiness)")
	fs.DurationVar(&k.LogInterval, "kafka-log-interval", kdef.LogInterval, "skipped records are logged at most this often")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "console", "json or console")
	fs.BoolVar(&o.demo, "demo", false, "serve the demo page at /")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go profiles at /debug/pprof/ (keep it off on public listeners)")
	return fs
}

// resolveSecrets fills the secrets a flag names indirectly, through a
// file. (SUBSOCK_JWT_SECRET and SUBSOCK_API_KEY are the environment
// layer's, as for every flag: config.go.)
func (o *options) resolveSecrets() error {
	sec := &o.cfg.Security
	secret := o.jwtSecret
	if o.jwtSecretFile != "" {
		b, err := os.ReadFile(o.jwtSecretFile)
		if err != nil {
			return err
		}
		secret = strings.TrimSpace(string(b))
	}
	if secret != "" {
		sec.JWT.Secret = []byte(secret)
	}
	if o.kafkaPasswordFile != "" {
		b, err := os.ReadFile(o.kafkaPasswordFile)
		if err != nil {
			return err
		}
		o.kafka.SASL.Password = strings.TrimSpace(string(b))
	}
	return nil
}

func run(args []string) error {
	o, fs, err := load(args, os.Environ())
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if o.printConfig {
		return printConfig(os.Stdout, fs)
	}

	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if o.configFile != "" {
		log.Info("config file loaded", zap.String("file", o.configFile))
	}
	cfg := o.cfg
	cfg.Logger = log
	if o.demo && len(cfg.History) == 0 && !strings.HasPrefix(cfg.Broker, "nats://") {
		// The demo chat shows its last lines and recovers after a restart
		// (NATS core keeps no streams: there it runs without).
		r, err := gateway.ParseHistoryRule("demo.chat=100,10m")
		if err != nil {
			return err
		}
		cfg.History = []gateway.HistoryRule{r}
	}
	if o.demo {
		// The demo chat lists who is in the room and says who comes and goes.
		if len(cfg.Presence) == 0 {
			cfg.Presence = []string{"demo.chat"}
		}
		if len(cfg.JoinLeave) == 0 {
			cfg.JoinLeave = []string{"demo.chat"}
		}
	}
	cfg = cfg.WithDefaults() // what the node runs with, for the log lines below

	g, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	if o.pprof {
		g.Handle("/debug/pprof/", http.HandlerFunc(pprof.Index))
		g.Handle("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		g.Handle("/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
		g.Handle("/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
		g.Handle("POST /debug/gc", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			runtime.GC()
			debug.FreeOSMemory()
		}))
	}
	if o.demo {
		g.Handle("/", demo.Handler())
	}
	var consumer *kafka.Consumer
	if len(o.kafka.Brokers) > 0 {
		kc := o.kafka
		kc.Logger, kc.MaxValue = log.Named("kafka"), cfg.MaxMessage
		if consumer, err = kafka.New(kc, g); err == nil {
			err = g.RegisterMetrics(consumer.Collectors()...)
		}
		if err != nil {
			_ = g.Shutdown(context.Background())
			return fmt.Errorf("kafka: %w", err)
		}
		g.AddCheck("source", consumer.Ready)
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		_ = g.Shutdown(context.Background())
		return err
	}
	// Signals are caught before the node says it listens, so that whoever
	// waits for that line may stop it with SIGTERM at once.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("subsock listening", zap.String("addr", ln.Addr().String()), zap.String("broker", cfg.Broker),
		zap.Int("loops", cfg.Poller.Loops))
	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(ln) }()
	kafkaErr := make(chan error, 1)
	if consumer != nil {
		go func() { kafkaErr <- consumer.Run(ctx) }()
	}
	select {
	case err := <-serveErr:
		if consumer != nil {
			_ = consumer.Close()
		}
		_ = g.Shutdown(context.Background())
		return err
	case err := <-kafkaErr: // only when its client cannot start
		_ = g.Shutdown(context.Background())
		<-serveErr
		return fmt.Errorf("kafka: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", zap.Duration("drain_timeout", cfg.DrainTimeout))
	if consumer != nil {
		// Commit and leave the group while the backbone is still up.
		_ = consumer.Close()
	}
	err = g.Shutdown(context.Background())
	<-serveErr
	if err != nil && !errors.Is(err, gateway.ErrDrainTimeout) {
		return err
	}
	log.Info("stopped")
	return nil
}

func newLogger(level, format string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	var zc zap.Config
	switch format {
	case "json":
		zc = zap.NewProductionConfig()
	case "console":
		zc = zap.NewDevelopmentConfig()
		zc.Development = false
	default:
		return nil, fmt.Errorf("-log-format: %q is neither json nor console", format)
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	return zc.Build()
}
