package bench

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/subsock/subsock/frame"
)

// discardConn is a net.Conn whose writes vanish, so a benchmark measures
// building a frame, not the kernel.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }

// benchmarkConnProcess measures a reader's pass over one read's worth of
// deliveries: frames frames of a size-byte value, as the node coalesces them.
func benchmarkConnProcess(b *testing.B, frames, size int) {
	var stream []byte
	for i := 0; i < frames; i++ {
		data := appendPayload(nil, stamp{sent: time.Now().UnixNano(), seq: uint64(i + 1)}, size)
		body := append(append([]byte(`{"op":"msg","topic":"bench.5","data":`), data...), '}')
		stream = frame.AppendFrame(stream, ws.OpText, body)
	}
	w := newWorker()
	c := &conn{w: w, idx: 3, nc: discardConn{}, buf: make([]byte, len(stream)), topics: []uint32{5},
		last: make([]uint32, 1), count: make([]uint32, 1)}
	copy(c.buf, stream)
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.r, c.n = 0, len(stream)
		if err := c.process(now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConnProcess_32x100B(b *testing.B) { benchmarkConnProcess(b, 32, 100) }
func BenchmarkConnProcess_4x1500B(b *testing.B) { benchmarkConnProcess(b, 4, 1500) }

// BenchmarkConnWrite measures one client frame out: a sub request or a pong.
func BenchmarkConnWrite(b *testing.B) {
	c := &conn{nc: discardConn{}}
	req := appendSubRequest(nil, 1, []string{"bench.1", "bench.2", "bench.3"})
	deadline := time.Now().Add(time.Hour)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := c.write(ws.OpText, req, deadline); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublish measures the WebSocket publisher's per-message cost.
func BenchmarkPublish(b *testing.B) {
	p := &wsPublisher{nc: discardConn{}}
	body := appendPayload(nil, stamp{sent: time.Now().UnixNano(), seq: 1}, 100)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := p.publish(ctx, "bench.1", body); err != nil {
			b.Fatal(err)
		}
	}
}
