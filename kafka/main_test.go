package kafka_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/kafka"
)

// The test binary doubles as a subsock node with a consumer, for the test
// that kills a node with SIGKILL: with SUBSOCK_TEST_NODE set it runs
// childNode instead of the tests.
const (
	envNode    = "SUBSOCK_TEST_NODE"    // the Redis URL; set: run as a node
	envBrokers = "SUBSOCK_TEST_BROKERS" // Kafka seed broker
	envTopic   = "SUBSOCK_TEST_TOPIC"   // Kafka topic to consume
)

func TestMain(m *testing.M) {
	if redisURL := os.Getenv(envNode); redisURL != "" {
		if err := childNode(redisURL, os.Getenv(envBrokers), os.Getenv(envTopic)); err != nil {
			fmt.Fprintln(os.Stderr, "child node:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childNode is a node (no listener: it only publishes) with a consumer in
// group "g". It prints "published N assigned M" every 10 ms until stdin
// closes or it is killed.
func childNode(redisURL, brokers, topic string) error {
	g, err := gateway.New(gateway.Config{Broker: redisURL})
	if err != nil {
		return err
	}
	c, err := kafka.New(kafka.Config{
		Brokers:        []string{brokers},
		Topics:         []string{topic},
		Group:          "g",
		TopicTemplate:  "t.{key}",
		SessionTimeout: 1500 * time.Millisecond,
		CommitInterval: 200 * time.Millisecond,
		ProbeInterval:  200 * time.Millisecond,
	}, g)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			s := c.Stats()
			fmt.Printf("published %d assigned %d\n", s.Published, s.Assigned)
		}
	}
}

// child is a node running in a subprocess.
type child struct {
	cmd       *exec.Cmd
	published chan int64 // latest count, buffered 1
	assigned  chan int
}

func startChild(t testing.TB, redisURL, brokers, topic string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envNode+"="+redisURL, envBrokers+"="+brokers, envTopic+"="+topic)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child node: %v", err)
	}
	c := &child{cmd: cmd, published: make(chan int64, 1), assigned: make(chan int, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 4 || f[0] != "published" {
				continue
			}
			p, _ := strconv.ParseInt(f[1], 10, 64)
			a, _ := strconv.Atoi(f[3])
			replace(c.published, p)
			replace(c.assigned, a)
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return c
}

// replace puts v in a one-slot channel, dropping what it held.
func replace[T any](ch chan T, v T) {
	select {
	case <-ch:
	default:
	}
	ch <- v
}

// wait returns the first value from ch that satisfies ok.
func wait[T any](t testing.TB, what string, ch chan T, ok func(T) bool) T {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case v := <-ch:
			if ok(v) {
				return v
			}
		case <-timeout:
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
	}
}
