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
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/subsock/subsock/demo"
	"github.com/subsock/subsock/gateway"
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

func run(args []string) error {
	fs := flag.NewFlagSet("subsock", flag.ContinueOnError)
	var cfg gateway.Config
	addr := fs.String("addr", ":8080", "listen address")
	fs.IntVar(&cfg.Poller.Loops, "loops", runtime.NumCPU(), "netpoll event loops")
	fs.IntVar(&cfg.Poller.Writers, "writers", 0, "writer goroutines that flush outbound queues (0: one per loop)")
	fs.IntVar(&cfg.Poller.ReadBufferSize, "read-buffer", 256, "bytes of input buffer kept per connection")
	fs.IntVar(&cfg.Poller.MaxWriteBytes, "max-write", 256<<10, "bytes one writev may carry")
	fs.IntVar(&cfg.Poller.MaxPending, "max-pending", 1<<20, "bytes queued per connection before it is closed as a slow consumer (1013)")
	fs.IntVar(&cfg.Poller.RecvBuffer, "recv-buffer", 0, "SO_RCVBUF per connection in bytes, which Linux doubles (0: half of -max-message); bounds what a flooding client gets into memory before it is cut")
	fs.IntVar(&cfg.Poller.SendBuffer, "send-buffer", 0, "SO_SNDBUF per connection in bytes, which Linux doubles (0: 64 KiB); bounds the kernel memory a reader that stalls can pin beyond -max-pending")
	fs.DurationVar(&cfg.Poller.LingerTimeout, "linger", 2*time.Second, "how long a closing connection waits for the peer's FIN")
	fs.IntVar(&cfg.Shards, "shards", 64, "registry lock stripes")
	fs.IntVar(&cfg.FanoutWorkers, "fanout-workers", 0, "fan-out workers; each topic is fanned out, in order, by one of them (0: GOMAXPROCS)")
	fs.IntVar(&cfg.FanoutQueue, "fanout-queue", 0, "messages each fan-out worker may hold; a full queue makes the broker wait (0: 1024)")
	fs.IntVar(&cfg.MaxMessage, "max-message", 64<<10, "largest inbound message or publish body in bytes (1009 / 413 beyond)")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header", 8<<10, "largest HTTP request header block in bytes (431 beyond)")
	fs.IntVar(&cfg.MaxSubsPerConn, "max-subs-per-conn", 1000, "subscriptions per connection")
	fs.IntVar(&cfg.MaxTopicsPerRequest, "max-topics-per-request", 256, "topics in one sub or unsub request")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 10*time.Second, "an HTTP request (upgrade included) or a WebSocket message must arrive within this once begun")
	fs.IntVar(&cfg.MaxInputBacklog, "max-input-backlog", 0, "unprocessed input bytes one connection may hold before it is closed with 1008 (0: 2 x -max-message)")
	fs.DurationVar(&cfg.SubscribeTimeout, "subscribe-timeout", 5*time.Second, "a sub the backbone has not confirmed within this is answered unavailable and rolled back")
	fs.DurationVar(&cfg.CloseGrace, "close-grace", 2*time.Second, "a connection that does not take a close the node began (token expiry) within this is reset")
	fs.DurationVar(&cfg.PingInterval, "ping-interval", 25*time.Second, "how often each connection is pinged")
	fs.DurationVar(&cfg.PingTimeout, "ping-timeout", 60*time.Second, "close a connection silent for this long (4000)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 10*time.Second, "graceful shutdown limit")
	fs.DurationVar(&cfg.PublishTimeout, "publish-timeout", 2*time.Second, "a publish the backbone has not accepted within this gets 503 / unavailable")
	fs.StringVar(&cfg.Broker, "broker", "memory", "backbone: memory, redis://host:port, redis-cluster://h1:p1,h2:p2, nats://host:port")
	fs.DurationVar(&cfg.Router.Linger, "interest-linger", 2*time.Second, "keep upstream interest this long after a topic's last local subscriber leaves")
	fs.DurationVar(&cfg.Router.BatchDelay, "interest-batch-delay", 2*time.Millisecond, "collect upstream (un)subscriptions this long before sending")
	fs.IntVar(&cfg.Router.BatchSize, "interest-batch-size", 512, "topics per upstream (un)subscribe call")

	sec := &cfg.Security
	var jwtSecret, jwtSecretFile string
	var pubKeys, anonSubs, anonPubs list
	fs.StringVar(&jwtSecret, "jwt-secret", "", "HS256 secret for connect tokens (or $SUBSOCK_JWT_SECRET)")
	fs.StringVar(&jwtSecretFile, "jwt-secret-file", "", "file holding the HS256 secret")
	fs.Var(&pubKeys, "jwt-public-keys", "PEM files with RS256/ES256 public keys (comma-separated)")
	fs.StringVar(&sec.JWT.JWKSURL, "jwks-url", "", "JWKS URL for RS256/ES256 keys")
	fs.DurationVar(&sec.JWT.JWKSRefresh, "jwks-refresh", 5*time.Minute, "JWKS refresh period")
	fs.StringVar(&sec.JWT.Audience, "jwt-audience", "", "required aud claim")
	fs.StringVar(&sec.JWT.Issuer, "jwt-issuer", "", "required iss claim")
	fs.DurationVar(&sec.JWT.Leeway, "jwt-leeway", 0, "clock skew allowed on exp and nbf")
	fs.BoolVar(&sec.AllowAnonymous, "allow-anonymous", false, "let clients without a token in, limited to the anonymous patterns")
	fs.Var(&anonSubs, "anonymous-subs", "topic patterns anonymous clients may subscribe to (comma-separated; * one segment, > the rest)")
	fs.Var(&anonPubs, "anonymous-pubs", "topic patterns anonymous clients may publish to")
	fs.StringVar(&sec.APIKey, "api-key", "", "key required by POST /publish (or $SUBSOCK_API_KEY)")
	fs.StringVar(&sec.AllowedOrigins, "allowed-origins", "", "allowed Origin hosts, comma-separated, or *")
	fs.IntVar(&sec.MaxConns, "max-conns", 0, "open WebSocket connections (0: unlimited; 503 + Retry-After beyond)")
	fs.Float64Var(&sec.AcceptRate, "accept-rate", 0, "new WebSocket connections per second (0: unlimited; 503 + Retry-After beyond)")
	fs.IntVar(&sec.AcceptBurst, "accept-burst", 0, "connections admitted at once on top of -accept-rate (0: rate/10, at least 1)")
	fs.Float64Var(&sec.PublishRate, "publish-rate", 0, "client publishes and token refreshes per second per connection (0: unlimited)")
	fs.IntVar(&sec.PublishBurst, "publish-burst", 0, "publish token bucket depth (0: the rate)")

	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "console", "json or console")
	serveDemo := fs.Bool("demo", false, "serve the demo page at /")
	debugPprof := fs.Bool("pprof", false, "serve Go profiles at /debug/pprof/ (keep it off on public listeners)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if jwtSecret == "" {
		jwtSecret = os.Getenv("SUBSOCK_JWT_SECRET")
	}
	if jwtSecretFile != "" {
		b, err := os.ReadFile(jwtSecretFile)
		if err != nil {
			return err
		}
		jwtSecret = strings.TrimSpace(string(b))
	}
	if jwtSecret != "" {
		sec.JWT.Secret = []byte(jwtSecret)
	}
	if sec.APIKey == "" {
		sec.APIKey = os.Getenv("SUBSOCK_API_KEY")
	}
	sec.JWT.PublicKeyFiles = pubKeys
	sec.AnonymousSubs, sec.AnonymousPubs = anonSubs, anonPubs

	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	cfg.Logger = log

	g, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	if *debugPprof {
		g.Handle("/debug/pprof/", http.HandlerFunc(pprof.Index))
		g.Handle("/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		g.Handle("/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
		g.Handle("/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
		g.Handle("POST /debug/gc", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			runtime.GC()
			debug.FreeOSMemory()
		}))
	}
	if *serveDemo {
		g.Handle("/", demo.Handler())
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		_ = g.Shutdown(context.Background())
		return err
	}
	log.Info("subsock listening", zap.String("addr", ln.Addr().String()), zap.String("broker", cfg.Broker),
		zap.Int("loops", cfg.Poller.Loops))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(ln) }()
	select {
	case err := <-serveErr:
		_ = g.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", zap.Duration("drain_timeout", cfg.DrainTimeout))
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
