package client

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"

	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/proto"
)

var benchCodecs = []proto.Codec{proto.JSON, proto.Msgpack}

// BenchmarkPublishAck is the round trip of one acked publish.
func BenchmarkPublishAck(b *testing.B) {
	for _, codec := range benchCodecs {
		b.Run(codec.Format().String(), func(b *testing.B) {
			n := startNode(b, "", gateway.Config{})
			c := openConn(b, n.url(), Options{Codec: codec, AckPublish: true})
			v := payload{N: 1, Text: "hello"}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Publish(ctx, "bench.ack", v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeliver is publish-to-handler throughput through a node:
// unacked publishes on one socket, a handler on another, at most a
// window of messages in flight so the All buffer never overflows.
func BenchmarkDeliver(b *testing.B) {
	for _, codec := range benchCodecs {
		b.Run(codec.Format().String(), func(b *testing.B) {
			const window = 256
			n := startNode(b, "", gateway.Config{})
			var got atomic.Int64
			progress := make(chan struct{}, 1)
			probes := newInbox()
			sub := openConn(b, n.url(), Options{Codec: codec, Buffer: 2 * window})
			mustSubscribe(b, sub, "bench.deliver", func(m Message) {
				if bytes.Contains(m.Data, []byte("probe")) {
					probes <- m
					return
				}
				got.Add(1)
				notify(progress, struct{}{})
			})
			pub := openConn(b, n.url(), Options{Codec: codec})
			waitRoute(b, viaConn(pub, "bench.deliver"), probes, "bench.deliver")
			data := Raw(mustEncode(b, payload{N: 1, Text: "hello"}, codec.Format()))
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for int64(i)-got.Load() >= window {
					<-progress
				}
				if err := pub.Publish(ctx, "bench.deliver", data); err != nil {
					b.Fatal(err)
				}
			}
			for got.Load() < int64(b.N) {
				<-progress
			}
			b.StopTimer()
			if st := sub.Stats(); st.Dropped != 0 {
				b.Fatalf("dropped %d", st.Dropped)
			}
		})
	}
}

func mustEncode(b *testing.B, v any, f proto.Format) []byte {
	data, err := encodeValue(v, f)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
