package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/gateway/hub"
	"github.com/subsock/subsock/poller"
	"github.com/subsock/subsock/proto"
)

// benchmarkDeliver measures one message's fan-out to subs real WebSocket
// subscribers (loopback sockets drained by reader goroutines): encoding
// once per codec, the registry walk and one Enqueue per subscriber. The
// allocs/op figure does not grow with subs: nothing is allocated per
// subscriber; allocs/delivery reports it divided out.
func benchmarkDeliver(b *testing.B, subs int) {
	// A deep queue allowance: the writers drain behind the benchmark loop.
	g, err := New(Config{PingInterval: time.Hour, PingTimeout: 2 * time.Hour, Poller: poller.Config{MaxPending: 64 << 20}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	defer func() { _ = g.Shutdown(context.Background()) }()

	const topic = "bench.fanout"
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	sub := frame.AppendMaskedFrame(nil, ws.OpText, []byte(`{"op":"sub","id":1,"topics":["`+topic+`"]}`), [4]byte{1, 2, 3, 4})
	for i := 0; i < subs; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			b.Fatalf("upgrade %d: %v", i, err)
		}
		if _, err := c.Write(sub); err != nil {
			b.Fatal(err)
		}
		go func() { _, _ = io.Copy(io.Discard, br) }()
	}
	for g.reg.Count(topic) < subs {
		time.Sleep(time.Millisecond)
	}
	data := []byte(`{"price":101.25,"symbol":"ACME"}`)
	payload := hub.AppendRelay(nil, proto.FormatJSON, data)
	fr, _ := hub.BuildMessage(proto.JSON, topic, proto.FormatJSON, data)
	perMsg := uint64(len(fr) * subs)
	// Each message is written out before the next, as when the writers keep
	// up; so the figures are the fan-out's own, not a growing backlog's.
	drained := func(want uint64) {
		for g.poller.Stats().BytesOut < want {
			time.Sleep(50 * time.Microsecond)
		}
	}
	base := g.poller.Stats().BytesOut
	g.hub.Deliver(topic, payload) // warm the queues
	drained(base + perMsg)
	b.ReportAllocs()
	b.ResetTimer()
	var inDeliver time.Duration
	for i := 0; i < b.N; i++ {
		want := g.poller.Stats().BytesOut + perMsg
		t0 := time.Now()
		g.hub.Deliver(topic, payload)
		inDeliver += time.Since(t0)
		drained(want)
	}
	b.StopTimer()
	b.ReportMetric(float64(inDeliver.Nanoseconds())/float64(b.N*subs), "ns-enqueue/delivery")
	b.ReportMetric(float64(b.N*subs)/b.Elapsed().Seconds(), "deliveries/s")
}

func BenchmarkDeliver_100Subs(b *testing.B)  { benchmarkDeliver(b, 100) }
func BenchmarkDeliver_1000Subs(b *testing.B) { benchmarkDeliver(b, 1000) }
func BenchmarkDeliver_5000Subs(b *testing.B) { benchmarkDeliver(b, 5000) }
