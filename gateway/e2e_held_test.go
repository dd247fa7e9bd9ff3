package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/subsock/subsock/broker"
	"github.com/subsock/subsock/gateway"
)

// hangingBroker never confirms a subscription: the backbone is stalled.
type hangingBroker struct{ broker.Broker }

func (hangingBroker) Subscribe(ctx context.Context, _ ...string) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestE2EHeldRepliesBounded: replies waiting behind a sub the backbone
// has not confirmed are memory the client controls; past the bound the
// connection is closed with 1008 instead of holding them all.
func TestE2EHeldRepliesBounded(t *testing.T) {
	n := startNode(t, gateway.Config{OpenBroker: func(h broker.Handler) (broker.Broker, error) {
		return hangingBroker{broker.NewMemoryBus().Attach(h)}, nil
	}})
	r := dialRaw(t, n, "subsock.v1.json")
	var b bytes.Buffer
	b.Write(frame(opText, []byte(`{"op":"sub","id":1,"topics":["held.t"]}`)))
	for i := range 2000 {
		b.Write(frame(opText, []byte(fmt.Sprintf(`{"op":"ping","id":%d}`, i+2))))
	}
	r.write(t, b.Bytes())
	code, reason := r.readClose(t)
	if code != 1008 || reason != "too many requests waiting for the backbone" {
		t.Fatalf("close %d %q, want 1008 for too many held replies", code, reason)
	}
	// Others are served meanwhile.
	c := dialWS(t, n, codecJSON)
	c.sendEnv(t, envelope{{"op", "ping"}, {"id", 9}})
	if rp := c.next(t); rp.op != "pong" || rp.id != 9 {
		t.Fatalf("another client got %v, want pong 9", rp)
	}
}
