// Command kfake serves a Kafka cluster of one broker on 127.0.0.1, for tests
// and scripts/kafka-demo.sh: franz-go's kfake (the Kafka wire protocol in
// Go) behind flags. It is a test helper, not part of the release binary;
// internal/testserver builds and starts it as it starts redis-server.
//
//	kfake -port 9092 -topic prices=3 -topic dlq=1 \
//	      [-user SCRAM-SHA-256:name:pass] [-tls-cert c.pem -tls-key k.pem [-tls-client-ca ca.pem]] \
//	      [-data-dir DIR]
//
// It prints its listen address once it accepts connections and stops on
// SIGINT or SIGTERM.
//
// "kfake produce" is the demo's producer: a bounded run of records.
//
//	kfake produce -brokers 127.0.0.1:9092 -topic prices -keys eur,usd -n 20 -every 250ms [-value RAW]
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// list is a repeatable flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	run := serve
	if len(os.Args) > 1 && os.Args[1] == "produce" {
		os.Args = append(os.Args[:1], os.Args[2:]...)
		run = produce
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
}

func serve() error {
	var topics, users list
	port := flag.Int("port", 9092, "port to listen on (127.0.0.1)")
	flag.Var(&topics, "topic", "NAME=PARTITIONS: a topic created at start (repeatable)")
	flag.Var(&users, "user", "MECHANISM:USER:PASSWORD: a SASL user, PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (repeatable); any enables SASL")
	certFile := flag.String("tls-cert", "", "serve TLS with this certificate (PEM)")
	keyFile := flag.String("tls-key", "", "the certificate's key (PEM)")
	clientCA := flag.String("tls-client-ca", "", "require client certificates signed by this CA (PEM)")
	dataDir := flag.String("data-dir", "", "keep topics, records and group offsets here across restarts")
	minSession := flag.Duration("group-min-session", 100*time.Millisecond, "smallest consumer group session timeout accepted")
	logLevel := flag.String("log-level", "none", "none, error, warn, info or debug (to stderr)")
	flag.Parse()

	opts := []kfake.Opt{
		kfake.Ports(*port),
		kfake.GroupMinSessionTimeout(*minSession),
		kfake.WithLogger(kfake.BasicLogger(os.Stderr, level(*logLevel))),
	}
	for _, t := range topics {
		name, n, ok := strings.Cut(t, "=")
		p, err := strconv.Atoi(n)
		if !ok || name == "" || err != nil || p < 1 {
			return fmt.Errorf("-topic %q: want NAME=PARTITIONS", t)
		}
		opts = append(opts, kfake.SeedTopics(int32(p), name))
	}
	for _, u := range users {
		parts := strings.SplitN(u, ":", 3)
		if len(parts) != 3 {
			return fmt.Errorf("-user %q: want MECHANISM:USER:PASSWORD", u)
		}
		opts = append(opts, kfake.Superuser(parts[0], parts[1], parts[2]))
	}
	if len(users) > 0 {
		opts = append(opts, kfake.EnableSASL())
	}
	if *certFile != "" {
		tc, err := serverTLS(*certFile, *keyFile, *clientCA)
		if err != nil {
			return err
		}
		opts = append(opts, kfake.TLS(tc))
	}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}

	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	for _, a := range c.ListenAddrs() {
		fmt.Println(a)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	<-sigs
	c.Close()
	return nil
}

// produce sends n records to topic, one every interval, keys taken in
// turn: a JSON value {"n":i,"price":p} unless -value gives the raw bytes.
func produce() error {
	brokers := flag.String("brokers", "127.0.0.1:9092", "seed brokers, comma-separated")
	topic := flag.String("topic", "prices", "topic to produce to")
	keys := flag.String("keys", "eur,usd", "record keys, comma-separated, used in turn")
	n := flag.Int("n", 20, "records to produce")
	every := flag.Duration("every", 250*time.Millisecond, "interval between records")
	value := flag.String("value", "", "raw value of every record instead of the JSON one")
	flag.Parse()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ks := strings.Split(*keys, ",")
	for i := range *n {
		v := []byte(*value)
		if *value == "" {
			v = fmt.Appendf(nil, `{"n":%d,"price":%.2f}`, i, 100+float64(i%7)*1.25)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cl.ProduceSync(ctx, &kgo.Record{Topic: *topic, Key: []byte(ks[i%len(ks)]), Value: v}).FirstErr()
		cancel()
		if err != nil {
			return err
		}
		fmt.Printf("produced %s key=%s %s\n", *topic, ks[i%len(ks)], v)
		if i+1 < *n {
			time.Sleep(*every)
		}
	}
	return nil
}

func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("-tls-client-ca: no certificate in " + clientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

func level(s string) kfake.LogLevel {
	switch strings.ToLower(s) {
	case "debug":
		return kfake.LogLevelDebug
	case "info":
		return kfake.LogLevelInfo
	case "warn":
		return kfake.LogLevelWarn
	case "error":
		return kfake.LogLevelError
	}
	return kfake.LogLevelNone
}
