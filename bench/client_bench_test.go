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

// processBench is a reader holding one read's worth of deliveries.
type processBench struct {
	c      *conn
	stream []byte
}

// newProcessBench builds frames deliveries of a size-byte value, as the
// node coalesces them into one write: WebSocket frames, or with sse the
// chunked events of an SSE stream.
func newProcessBench(frames, size int, sse bool) processBench {
	var stream []byte
	for i := 0; i < frames; i++ {
		data := appendPayload(nil, stamp{sent: time.Now().UnixNano(), seq: uint64(i + 1)}, size)
		if sse {
			stream = append(stream, chunk(`data: {"topic":"bench.5","data":`+string(data)+"}\n\n")...)
			continue
		}
		body := append(append([]byte(`{"op":"msg","topic":"bench.5","data":`), data...), '}')
		stream = frame.AppendFrame(stream, ws.OpText, body)
	}
	c := &conn{w: newWorker(), idx: 3, nc: discardConn{}, buf: make([]byte, len(stream)), topics: []uint32{5},
		last: make([]uint32, 1), count: make([]uint32, 1)}
	copy(c.buf, stream)
	if sse {
		c.sse = &sseDecoder{}
	}
	return processBench{c: c, stream: stream}
}

// benchmarkConnProcess measures a reader's pass over one read's worth of
// deliveries: frames frames (or events) of a size-byte value.
func benchmarkConnProcess(b *testing.B, frames, size int, sse bool) {
	pb := newProcessBench(frames, size, sse)
	c := pb.c
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(pb.stream)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The SSE decoder leaves the buffer as it found it: one event per
		// chunk, nothing moves.
		c.r, c.n = 0, len(pb.stream)
		var err error
		if sse {
			err = c.processSSE(now)
		} else {
			err = c.process(now)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConnProcess_32x100B(b *testing.B)    { benchmarkConnProcess(b, 32, 100, false) }
func BenchmarkConnProcess_4x1500B(b *testing.B)    { benchmarkConnProcess(b, 4, 1500, false) }
func BenchmarkConnProcessSSE_32x100B(b *testing.B) { benchmarkConnProcess(b, 32, 100, true) }
func BenchmarkConnProcessSSE_4x1500B(b *testing.B) { benchmarkConnProcess(b, 4, 1500, true) }

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
