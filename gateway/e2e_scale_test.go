package gateway_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
)

// The scale test's clients live in a child process (this test binary run
// again with helperEnv set): one process may hold 20,000 descriptors, so
// 10,000 clients and their 10,000 server sockets cannot share one.
const (
	helperEnv      = "SUBSOCK_E2E_HELPER"
	helperAddrEnv  = "SUBSOCK_E2E_ADDR"
	helperConnsEnv = "SUBSOCK_E2E_CONNS"

	scaleTopicsPerConn = 10
	scaleTopics        = 1000
)

// TestE2EScale: 10,000 idle subscribed connections cost the node no
// goroutine each, and when their process dies the registry empties.
func TestE2EScale(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections from a child process; skipped with -short")
	}
	const conns = 10_000
	n := startNode(t, gateway.Config{})

	child := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	child.Env = append(os.Environ(), helperEnv+"=scale", helperAddrEnv+"="+n.addr, helperConnsEnv+"="+strconv.Itoa(conns))
	var stderr syncBuffer
	child.Stderr = &stderr
	// The child waits on stdin, so it also ends if this process dies.
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	lines := make(chan string, 1)
	go func() {
		// Reading stdout to its end before Wait, as exec requires.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		exitErr = child.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = child.Process.Kill()
		_ = stdin.Close()
		<-exited
	})

	select {
	case line := <-lines:
		if line != "ready "+strconv.Itoa(conns) {
			t.Fatalf("child: %q\n%s", line, stderr.String())
		}
	case <-exited:
		t.Fatalf("child exited (%v) before it was ready\n%s", exitErr, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("child not ready within a minute (%+v)", n.g.Stats())
	}
	st := n.g.Stats()
	if st.Connections != conns || st.Subscriptions != conns*scaleTopicsPerConn || st.Topics != scaleTopics {
		t.Fatalf("stats %+v, want %d connections, %d subscriptions, %d topics",
			st, conns, conns*scaleTopicsPerConn, scaleTopics)
	}

	// (a) Idle connections hold no goroutines: after the burst of
	// handshakes the node's transient goroutines drain away.
	deadline := time.Now().Add(waitFor)
	for runtime.NumGoroutine() >= 100 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines with %d idle connections, want < 100:\n%s",
				runtime.NumGoroutine(), conns, goroutineSummary())
		}
		<-time.After(10 * time.Millisecond)
	}
	t.Logf("%d goroutines with %d idle connections and %d subscriptions", runtime.NumGoroutine(), conns, st.Subscriptions)

	// (b) The client process dies without a word; the node notices every
	// connection and forgets every subscription.
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	var last gateway.Stats
	deadline = time.Now().Add(3 * waitFor)
	for {
		last = n.g.Stats()
		if last.Connections == 0 && last.TCPConns == 0 && last.Subscriptions == 0 && last.Topics == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the clients died the node still holds %+v", time.Since(killed).Round(time.Millisecond), last)
		}
		<-time.After(10 * time.Millisecond)
	}
	t.Logf("registry empty %v after the clients died", time.Since(killed).Round(time.Millisecond))
}

// goroutineSummary counts goroutines by the function at the top of
// their stack, for a failure message.
func goroutineSummary() string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		ls := strings.Split(g, "\n")
		if len(ls) > 1 {
			counts[ls[1]]++
		}
	}
	var out []string
	for f, c := range counts {
		out = append(out, fmt.Sprintf("%6d %s", c, f))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return strings.Join(out, "\n")
}

// TestHelperProcess is the scale test's client process; it does nothing
// unless started by TestE2EScale.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "scale" {
		t.Skip("the client process of TestE2EScale")
	}
	conns, err := strconv.Atoi(os.Getenv(helperConnsEnv))
	if err != nil {
		fmt.Printf("bad %s: %v\n", helperConnsEnv, err)
		os.Exit(2)
	}
	held, err := dialScaleClients(os.Getenv(helperAddrEnv), conns)
	if err != nil {
		fmt.Printf("failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("ready %d\n", len(held))
	// Hold the connections until the parent kills us or goes away.
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range held {
		_ = c.Close()
	}
}

// dialScaleClients opens conns WebSocket connections to addr, each
// subscribed to scaleTopicsPerConn topics, and returns them once every
// subscription is acknowledged. A few workers do the dialling: the race
// detector allows 8,128 live goroutines, too few for one per connection.
func dialScaleClients(addr string, conns int) ([]net.Conn, error) {
	held, err := dialEach(conns, 32, func(i int) (net.Conn, error) { return dialScaleClient(addr, i) })
	if err != nil {
		for _, c := range held {
			if c != nil {
				_ = c.Close()
			}
		}
		return nil, err
	}
	return held, nil
}

// dialScaleClient connects client i and subscribes it to its topics:
// topic k of client i is (i + 100k) mod scaleTopics, so every topic has
// the same number of subscribers.
func dialScaleClient(addr string, i int) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(waitFor))
	br, err := handshake(nc, addr, "")
	if err != nil {
		nc.Close()
		return nil, err
	}
	topics := make([]string, scaleTopicsPerConn)
	for k := range topics {
		topics[k] = "scale." + strconv.Itoa((i+100*k)%scaleTopics)
	}
	req, _ := json.Marshal(map[string]any{"op": "sub", "id": i, "topics": topics})
	if _, err := nc.Write(frame(opText, req)); err != nil {
		nc.Close()
		return nil, err
	}
	for {
		f, err := readFrame(br)
		if err != nil {
			nc.Close()
			return nil, err
		}
		if f.op == opPing {
			continue
		}
		r, err := codecJSON.decodeReply(f.payload)
		if err != nil || r.op != "ack" || r.id != uint64(i) {
			nc.Close()
			return nil, errors.Join(fmt.Errorf("sub reply %q", f.payload), err)
		}
		break
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}
