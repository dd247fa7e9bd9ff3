package gateway

import (
	"context"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/zap"

	"github.com/subsock/subsock/frame"
	"github.com/subsock/subsock/poller"
	"github.com/subsock/subsock/proto"
)

// A relay payload is what crosses the broker: one format byte, then the
// data exactly as the publisher sent it. Each node converts it at most once
// per codec in use.
func encodeRelay(f proto.Format, data []byte) []byte {
	b := make([]byte, 0, 1+len(data))
	b = append(b, byte(f))
	return append(b, data...)
}

// publish sends one message into the backbone; local subscribers get it
// when it comes back through deliver, so every node, this one included,
// delivers it exactly once.
func (g *Gateway) publish(ctx context.Context, topic string, f proto.Format, data []byte) error {
	g.msgsIn.Add(1)
	return g.broker.Publish(ctx, topic, encodeRelay(f, data))
}

// deliver is the broker's handler: it builds the message once per codec in
// use and queues the same bytes on every local subscriber.
func (g *Gateway) deliver(topic string, payload []byte) {
	if len(payload) == 0 {
		return
	}
	start := time.Now()
	f, data := proto.Format(payload[0]), payload[1:]
	var frames [len(codecs)][]byte
	for i, c := range codecs {
		if g.codecConns[i].Load() == 0 {
			continue
		}
		b, err := buildMessage(c, topic, f, data)
		if err != nil {
			g.convertErrors.Add(1)
			if ce := g.log.Check(zap.DebugLevel, "message not representable"); ce != nil {
				ce.Write(zap.String("topic", topic), zap.String("codec", c.Name()), zap.Error(err))
			}
			continue
		}
		frames[i] = b
	}
	var slow uint64
	n := g.reg.Range(topic, func(s *session) bool {
		if fr := frames[s.codec]; fr != nil {
			if s.c.Enqueue(fr) == poller.ErrOverflow {
				slow++
			}
		}
		return true
	})
	g.msgsOut.Add(uint64(n))
	g.fanout.Observe(time.Since(start).Seconds())
	if slow > 0 {
		if ce := g.log.Check(zap.InfoLevel, "closed slow consumers"); ce != nil {
			ce.Write(zap.String("topic", topic), zap.Uint64("count", slow))
		}
	}
}

// buildMessage returns a ready frame carrying the message in c's format.
func buildMessage(c proto.Codec, topic string, f proto.Format, data []byte) ([]byte, error) {
	data, err := proto.Convert(data, f, c.Format())
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, frame.MaxHeaderSize+len(topic)+len(data)+32)
	b = c.AppendMessage(frame.Reserve(b), topic, data)
	op := ws.OpText
	if c.Binary() {
		op = ws.OpBinary
	}
	return frame.Seal(b, op), nil
}
