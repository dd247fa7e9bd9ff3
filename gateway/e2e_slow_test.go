package gateway_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/poller"
)

// TestE2ESlowConsumer: one subscriber never reads; its queue overflows and
// it is closed as a slow consumer, while 100 readers on the same topic get
// every message in order.
//
// The kernel absorbs a few MiB for the stalled socket before the node's
// queue even grows, so messages are 8 KiB: ~2.7 MB then takes a few
// hundred messages rather than thousands, which keeps the test quick
// under -race.
func TestE2ESlowConsumer(t *testing.T) {
	const (
		readers  = 100
		size     = 8 << 10
		batch    = 6     // messages in flight: 48 KiB, below MaxPending even if no reader reads
		maxMsgs  = 5_000 // give up if the stalled client is never closed (~40 MB)
		topic    = "slow.feed"
		tailMsgs = 4 * batch // published after the close, to see delivery go on
	)
	n := startNode(t, gateway.Config{Poller: poller.Config{MaxPending: 64 << 10}})
	hc := newHTTPClient(t)

	// The stalled subscriber asks for a small receive buffer so that the
	// kernel absorbs little of what the node sends it.
	d := &net.Dialer{Timeout: waitFor, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	stalled := dialRawWith(t, n, "", d)
	stalled.write(t, frame(opText, []byte(`{"op":"sub","id":1,"topics":["`+topic+`"]}`)))
	expectRawReply(t, stalled, "ack", 1)

	// The readers check order as they go and report each batch's end.
	reached := make(chan int, 2*readers)
	failed := make(chan error, readers)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range readers {
		c, _, err := websocket.Dial(ctx, n.wsURL(), nil)
		if err != nil {
			t.Fatalf("reader %d: %v", i, err)
		}
		t.Cleanup(func() { _ = c.CloseNow() })
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"op":"sub","id":1,"topics":["`+topic+`"]}`)); err != nil {
			t.Fatal(err)
		}
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reader %d sub: %v", i, err)
		}
		if r, err := codecJSON.decodeReply(b); err != nil || r.op != "ack" || r.id != 1 {
			t.Fatalf("reader %d sub: %v %v, want ack 1", i, r, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for want := 0; ; want++ {
				_, b, err := c.Read(ctx)
				if err != nil {
					if ctx.Err() == nil {
						failed <- fmt.Errorf("reader %d at message %d: %w", i, want, err)
					}
					return
				}
				if seq, ok := slowSeq(b, topic); !ok || seq != want {
					failed <- fmt.Errorf("reader %d: got %.80q (%d bytes), want message %d", i, b, len(b), want)
					return
				}
				if want%batch == batch-1 {
					reached <- i
				}
			}
		}()
	}
	if st := n.g.Stats(); st.Subscriptions != readers+1 {
		t.Fatalf("stats %+v, want %d subscriptions", st, readers+1)
	}

	pad := strings.Repeat("x", size-32)
	seq, closedAt := 0, -1
	for seq < maxMsgs && (closedAt < 0 || seq < closedAt+tailMsgs) {
		for range batch {
			got := publishOK(t, hc, n, topic, "application/json", fmt.Appendf(nil, `{"seq":%d,"pad":"%s"}`, seq, pad))
			if got != readers && got != readers+1 {
				t.Fatalf("message %d reached %d subscribers, want %d or %d", seq, got, readers+1, readers)
			}
			seq++
		}
		for range readers {
			select {
			case <-reached:
			case err := <-failed:
				t.Fatal(err)
			case <-time.After(waitFor):
				t.Fatalf("readers did not all get message %d within %v", seq-1, waitFor)
			}
		}
		if closedAt < 0 && n.g.Stats().SlowCloses > 0 {
			closedAt = seq
		}
	}
	if closedAt < 0 {
		t.Fatalf("the stalled subscriber was not closed after %d messages of 8 KiB (MaxPending 64 KiB)", seq)
	}
	t.Logf("stalled subscriber closed after %d messages; %d delivered in order to each of %d readers", closedAt, seq, readers)

	eventually(t, "the slow consumer to leave the registry", func() bool {
		st := n.g.Stats()
		return st.Subscriptions == readers && st.Connections == readers && st.SlowCloses == 1
	})
	if got := scrape(t, hc, n, "subsock_slow_consumer_closes_total"); got != 1 {
		t.Fatalf("subsock_slow_consumer_closes_total = %v, want 1", got)
	}
	if got := publishOK(t, hc, n, "slow.other", "application/json", []byte(`1`)); got != 0 {
		t.Fatalf("unrelated topic has %d subscribers", got)
	}

	// What reached the stalled client is whole frames, in order, and a
	// close frame (if the node could still write one) says 1013.
	_ = stalled.nc.SetReadDeadline(time.Now().Add(waitFor))
	for want := 0; ; want++ {
		f, err := readFrame(stalled.br)
		if err != nil {
			t.Logf("stalled client read %d messages, then %v", want, err)
			break
		}
		if f.op == opClose {
			if len(f.payload) < 2 || binary.BigEndian.Uint16(f.payload) != 1013 {
				t.Fatalf("stalled client's close frame %q, want status 1013", f.payload)
			}
			break
		}
		if f.op == opPing {
			want--
			continue
		}
		if seq, ok := slowSeq(f.payload, topic); !ok || seq != want {
			t.Fatalf("stalled client's message %d: %.80q (%d bytes)", want, f.payload, len(f.payload))
		}
	}
}

// slowSeq checks that b is a whole JSON msg on topic carrying
// {"seq":N,"pad":...} and returns N. Decoding 8 KiB of JSON per delivery
// would dominate the test under -race, so only the parts that can go wrong
// are parsed: the envelope, the topic, the seq and the end of the value.
func slowSeq(b []byte, topic string) (int, bool) {
	var m struct {
		Op, Topic string
		Data      json.RawMessage
	}
	i := bytes.Index(b, []byte(`"seq":`))
	if i < 0 || !bytes.HasSuffix(b, []byte(`"}}`)) {
		return 0, false
	}
	j := i + len(`"seq":`)
	k := j + bytes.IndexByte(b[j:], ',')
	if k < j {
		return 0, false
	}
	seq, err := strconv.Atoi(string(b[j:k]))
	if err != nil {
		return 0, false
	}
	// The envelope without the long data value.
	head := append(append([]byte(nil), b[:i]...), []byte(`"seq":0}}`)...)
	if err := json.Unmarshal(head, &m); err != nil || m.Op != "msg" || m.Topic != topic {
		return 0, false
	}
	return seq, true
}
