package gateway_test

import (
	"encoding/binary"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
)

// TestE2EHeartbeat: raw clients that go silent (they do not even answer
// pings) are closed with 4000 and forgotten by the registry, while a
// coder/websocket client, which answers pings, stays past several timeouts.
func TestE2EHeartbeat(t *testing.T) {
	const interval, timeout = 200 * time.Millisecond, time.Second
	n := startNode(t, gateway.Config{PingInterval: interval, PingTimeout: timeout})
	hc := newHTTPClient(t)

	live := dialWS(t, n, codecMsgpack)
	live.subscribe(t, 1, "hb.live", "hb.shared")
	liveSince := time.Now()

	bare := dialRaw(t, n, "") // sends nothing at all after the handshake
	bareSince := time.Now()
	sub := dialRaw(t, n, "subsock.v1.json")
	sub.write(t, frame(opText, []byte(`{"op":"sub","id":1,"topics":["hb.silent","hb.shared"]}`)))
	expectRawReply(t, sub, "ack", 1)
	subSince := time.Now()
	if st := n.g.Stats(); st.Subscriptions != 4 || st.Topics != 3 || st.Connections != 3 {
		t.Fatalf("stats before silence: %+v, want 3 connections, 4 subscriptions, 3 topics", st)
	}

	for _, c := range []struct {
		name  string
		r     *rawConn
		since time.Time
	}{{"bare", bare, bareSince}, {"subscribed", sub, subSince}} {
		pings, code := readUntilGone(t, c.r)
		silence := time.Since(c.since)
		if code != 4000 && code != -1 {
			t.Fatalf("%s client closed with %d, want 4000 (or no close frame)", c.name, code)
		}
		// The node stamps input with its wheel's clock, which may lag a
		// tick; a close a whole interval early would still be a bug.
		if silence < timeout-interval {
			t.Fatalf("%s client closed after %v of silence, before the %v timeout", c.name, silence, timeout)
		}
		if pings == 0 {
			t.Fatalf("%s client was never pinged in %v (interval %v)", c.name, silence, interval)
		}
	}
	eventually(t, "the silent clients to leave the registry", func() bool {
		st := n.g.Stats()
		return st.Connections == 1 && st.Subscriptions == 2 && st.Topics == 2 && st.Heartbeat == 2
	})
	if got := publishOK(t, hc, n, "hb.silent", "application/json", []byte(`1`)); got != 0 {
		t.Fatalf("publish to the closed client's topic reached %d subscribers, want 0", got)
	}
	if got := scrape(t, hc, n, "subsock_heartbeat_closes_total"); got != 2 {
		t.Fatalf("subsock_heartbeat_closes_total = %v, want 2", got)
	}

	// The live client has answered every ping: it outlives several timeouts.
	<-time.After(time.Until(liveSince.Add(3*timeout + interval)))
	live.sendEnv(t, envelope{{"op", "ping"}, {"id", 5}})
	if r := live.next(t); r.op != "pong" || r.id != 5 {
		t.Fatalf("live client after %v: %v, want pong 5", time.Since(liveSince), r)
	}
	if got := publishOK(t, hc, n, "hb.shared", "application/json", []byte(`"alive"`)); got != 1 {
		t.Fatalf("publish to hb.shared reached %d subscribers, want 1", got)
	}
	if r := live.next(t); r.op != "msg" || r.topic != "hb.shared" || r.data != "alive" {
		t.Fatalf("live client got %v, want the hb.shared message", r)
	}
	if st := n.g.Stats(); st.Heartbeat != 2 || st.Connections != 1 {
		t.Fatalf("stats %+v: the live client was closed by the heartbeat", st)
	}
}

// readUntilGone reads a silent client's frames without ever answering:
// it counts the server's pings and returns the close code, or -1 when the
// connection ended without a close frame.
func readUntilGone(t testing.TB, r *rawConn) (pings, code int) {
	t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(waitFor))
	for {
		f, err := readFrame(r.br)
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
			return pings, -1
		case err != nil:
			t.Fatalf("silent client: %v (after %d pings)", err, pings)
		case f.op == opPing:
			pings++
		case f.op == opClose:
			if len(f.payload) < 2 {
				t.Fatalf("close frame %q without a status", f.payload)
			}
			// A silent peer is aborted: the close frame is followed by a
			// reset (SO_LINGER 0), so its kernel buffers go at once.
			if _, err := readFrame(r.br); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
				t.Fatalf("after the close frame: %v, want a reset", err)
			}
			return pings, int(binary.BigEndian.Uint16(f.payload))
		default:
			t.Fatalf("silent client got opcode %#x %q", f.op, f.payload)
		}
	}
}
