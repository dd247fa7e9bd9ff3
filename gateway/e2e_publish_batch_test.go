package gateway_test

import (
	"fmt"
	"net/http"
	"testing"
)

// TestE2EPublishOrderThroughBatches floods one topic from several
// connections at once over each network backbone, so the topic's
// publisher worker finds many publishes queued and sends them as batches:
// every publish is answered in order (ack, or unavailable from a full
// queue), and the subscriber gets every acked message exactly once, each
// publisher's in the order it sent them, and nothing else.
func TestE2EPublishOrderThroughBatches(t *testing.T) {
	const publishers, each = 8, 300
	for _, bb := range backbones {
		if bb.name == "memory" {
			continue // publishes inline: no worker, no batch
		}
		t.Run(bb.name, func(t *testing.T) {
			cfg, _, _, _ := bb.start(t)
			n := startNode(t, cfg())
			const topic = "batch.order"
			sub := dialWS(t, n, codecJSON)
			sub.subscribe(t, 1, topic)
			pubs := make([]*wsClient, publishers)
			for i := range pubs {
				pubs[i] = dialWS(t, n, codecJSON)
			}
			for seq := range each {
				for p, c := range pubs {
					c.sendEnv(t, envelope{{"op", "pub"}, {"id", uint64(seq + 1)}, {"topic", topic}, {"data", map[string]any{"p": p, "s": seq}}})
				}
			}
			// Each publish is answered, in order: ack, or unavailable when its
			// worker's bounded queue was full (the flood may fill it). Exactly
			// the acked ones must arrive.
			acked := make([][]int, publishers)
			refused := 0
			for p, c := range pubs {
				for seq := range each {
					r := c.next(t)
					switch {
					case r.id != uint64(seq+1):
						t.Fatalf("publisher %d: reply %v to request %d (out of order)", p, r, seq+1)
					case r.op == "ack":
						acked[p] = append(acked[p], seq)
					case r.op == "err" && r.code == "unavailable":
						refused++
					default:
						t.Fatalf("publisher %d: reply %v", p, r)
					}
				}
			}
			total := 0
			for _, a := range acked {
				total += len(a)
			}
			next := make([]int, publishers)
			for got := 0; got < total; got++ {
				r := sub.next(t)
				m, ok := r.data.(map[string]any)
				if r.op != "msg" || !ok {
					t.Fatalf("message %d: %v", got, r)
				}
				p, s := int(m["p"].(int64)), int(m["s"].(int64))
				if next[p] >= len(acked[p]) || s != acked[p][next[p]] {
					t.Fatalf("publisher %d: got message %d, want the acked %v[%d] (lost, duplicated, reordered or not acked)", p, s, acked[p], next[p])
				}
				next[p]++
			}
			hc := newHTTPClient(t)
			batches := scrape(t, hc, n, "subsock_publish_batches_total")
			in := scrape(t, hc, n, "subsock_messages_in_total")
			t.Logf("%.0f publishes in %.0f exchanges with the backbone (%.1f per exchange); %d refused with a full queue",
				in, batches, in/batches, refused)
			if batches < 1 || batches > in {
				t.Fatalf("subsock_publish_batches_total = %v for %v publishes", batches, in)
			}
			if code, _ := publish(t, hc, n, topic, "application/json", []byte(fmt.Sprint(publishers*each))); code != http.StatusOK {
				t.Fatalf("HTTP publish after the flood: %d", code)
			}
			if r := sub.next(t); r.op != "msg" {
				t.Fatalf("after the flood: %v", r)
			}
		})
	}
}
