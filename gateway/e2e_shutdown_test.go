package gateway_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/subsock/subsock/gateway"
)

// TestE2EShutdown: Shutdown says 1001 to every WebSocket, waits for them
// to go, returns nil, and the node takes no new connections.
func TestE2EShutdown(t *testing.T) {
	n := startNode(t, gateway.Config{DrainTimeout: 5 * time.Second})
	hc := newHTTPClient(t)
	var clients []*wsClient
	for _, c := range allCodecs {
		cl := dialWS(t, n, c)
		cl.subscribe(t, 1, "down."+c.name)
		clients = append(clients, cl)
	}
	raw := dialRaw(t, n, "")
	raw.write(t, frame(opText, []byte(`{"op":"sub","id":1,"topics":["down.raw"]}`)))
	expectRawReply(t, raw, "ack", 1)
	// An idle keep-alive HTTP connection is closed too.
	if status, _ := get(t, hc, n, "/healthz"); status != http.StatusOK {
		t.Fatalf("GET /healthz: %d", status)
	}

	done := make(chan error, 1)
	go func() { done <- n.shutdown() }()

	for _, cl := range clients {
		if code := cl.closeStatus(t); code != websocket.StatusGoingAway {
			t.Errorf("%s client closed with %v (%v), want 1001", cl.codec.name, code, cl.err)
		}
	}
	code, reason := raw.readClose(t)
	if code != 1001 {
		t.Errorf("raw client closed with %d %q, want 1001", code, reason)
	}
	raw.expectEOF(t)
	raw.write(t, frame(opClose, closePayload(1001, "")))
	_ = raw.nc.Close()

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v, want nil", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("Shutdown did not return within %v", waitFor)
	}
	select {
	case <-n.served:
		if !errors.Is(n.serveErr, gateway.ErrShuttingDown) {
			t.Errorf("Serve returned %v, want ErrShuttingDown", n.serveErr)
		}
	case <-time.After(waitFor):
		t.Fatalf("Serve did not return after Shutdown")
	}
	if st := n.g.Stats(); st.Connections != 0 || st.TCPConns != 0 || st.Subscriptions != 0 || st.Topics != 0 {
		t.Errorf("stats after Shutdown: %+v, want all zero", st)
	}
	if nc, err := net.DialTimeout("tcp", n.addr, time.Second); err == nil {
		nc.Close()
		t.Fatalf("a new connection was accepted after Shutdown")
	}
	if err := n.g.Shutdown(t.Context()); !errors.Is(err, gateway.ErrShuttingDown) {
		t.Errorf("second Shutdown: %v, want ErrShuttingDown", err)
	}
}

// TestE2EBinarySIGTERM builds cmd/subsock, serves a client with it and
// stops it with SIGTERM: the client gets 1001 and the process exits 0
// within the drain timeout.
func TestE2EBinarySIGTERM(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build cmd/subsock: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "subsock")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command(goBin, append(args, "github.com/subsock/subsock/cmd/subsock")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	const drain = 5 * time.Second
	var stderr syncBuffer
	p := exec.Command(bin, "-addr", addr, "-drain-timeout", drain.String(), "-log-format", "json", "-log-level", "debug")
	p.Stderr = &stderr
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = p.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.Process.Kill()
		select {
		case <-exited:
		case <-time.After(waitFor):
			t.Errorf("subsock did not exit after SIGKILL")
		}
	})

	n := &node{addr: addr}
	hc := newHTTPClient(t)
	deadline := time.Now().Add(waitFor)
	for {
		resp, err := hc.Get(n.httpURL("/healthz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("subsock exited before serving: %v\n%s", exitErr, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("subsock did not serve /healthz within %v", waitFor)
		}
	}
	hc.CloseIdleConnections()

	cl := dialWS(t, n, codecJSON)
	cl.subscribe(t, 1, "bin.topic")
	if got := publishOK(t, hc, n, "bin.topic", "application/json", []byte(`"from the binary"`)); got != 1 {
		t.Fatalf("publish reached %d subscribers, want 1", got)
	}
	if r := cl.next(t); r.op != "msg" || r.data != "from the binary" {
		t.Fatalf("got %v, want the message", r)
	}
	hc.CloseIdleConnections()

	// A client that resets mid-request: whatever netpoll logs about it
	// must come out as JSON like the node's own lines.
	rst, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rst.Write([]byte("POST /publish?topic=bin.topic HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\"")); err != nil {
		t.Fatal(err)
	}
	_ = rst.(*net.TCPConn).SetLinger(0)
	_ = rst.Close()

	sent := time.Now()
	if err := p.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := cl.closeStatus(t); code != websocket.StatusGoingAway {
		t.Errorf("client closed with %v (%v), want 1001", code, cl.err)
	}
	select {
	case <-exited:
		if exitErr != nil {
			t.Fatalf("subsock exited with %v after SIGTERM, want status 0\n%s", exitErr, stderr.String())
		}
	case <-time.After(time.Until(sent.Add(drain))):
		t.Fatalf("subsock still running %v after SIGTERM (drain timeout)\n%s", drain, stderr.String())
	}
	netpollLines := 0
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("-log-format json printed a line that is not JSON: %q (%v)", line, err)
		}
		if entry["logger"] == "poller.netpoll" {
			netpollLines++
		}
	}
	t.Logf("%d log lines, %d from netpoll", strings.Count(stderr.String(), "\n"), netpollLines)
}

// syncBuffer collects a child's output; it may be read while the child
// still writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
