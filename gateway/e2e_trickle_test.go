package gateway_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
)

// A client that trickles its request a byte at a time is never silent, so
// the ping timeout cannot catch it; the request timeout does.
func TestE2ERequestTimeoutCutsTrickle(t *testing.T) {
	n := startNode(t, gateway.Config{
		PingInterval:   50 * time.Millisecond,
		PingTimeout:    time.Minute,
		RequestTimeout: 300 * time.Millisecond,
	})
	nc, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, nc)
		closed <- err
	}()
	req := []byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Pad: ")
	deadline := time.After(waitFor)
	for i := 0; ; i = (i + 1) % len(req) {
		select {
		case err := <-closed:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("read ended by timeout, not by the node: %v", err)
			}
			// A healthy client is still served.
			c := dialWS(t, n, codecJSON)
			c.expectAck(t, 1, envelope{{"op", "sub"}, {"id", uint64(1)}, {"topics", []string{"still.here"}}})
			return
		case <-deadline:
			t.Fatalf("a trickling request held its connection for %v", waitFor)
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := nc.Write(req[i : i+1]); err != nil {
			// The node closed the socket under us: that is the point.
			continue
		}
	}
}
