package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
)

func TestRestartResubscribes(t *testing.T) {
	n := startNode(t, "", gateway.Config{})
	ready := make(chan struct{}, 8)
	disconnects := make(chan error, 8)
	c := openConn(t, n.url(), Options{
		Backoff:      Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond},
		OnConnect:    func() { notify(ready, struct{}{}) },
		OnDisconnect: func(err error) { notify(disconnects, err) },
	})
	await(t, ready, "the first connection")
	prices, alerts, news := newInbox(), newInbox(), newInbox()
	mustSubscribe(t, c, "prices.AAPL", prices.handler)
	mustSubscribe(t, c, "alerts", alerts.handler)
	waitRoute(t, viaHTTP(t, n, "prices.AAPL"), prices, "prices.AAPL")
	waitRoute(t, viaHTTP(t, n, "alerts"), alerts, "alerts")

	n.stop()
	var ce *CloseError
	if err := await(t, disconnects, "the disconnect"); !errors.As(err, &ce) || ce.Code != 1001 {
		t.Fatalf("disconnected with %v, want close 1001", err)
	}
	// A Subscribe made while the node is down waits for the next connection.
	subscribed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		subscribed <- c.Subscribe(ctx, "news", news.handler)
	}()
	if c.Stats().Connected {
		t.Fatal("Stats says connected while the node is down")
	}

	n2 := startNode(t, n.addr, gateway.Config{})
	await(t, ready, "the reconnection")
	if err := await(t, subscribed, "the pending Subscribe"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		topic string
		in    inbox
	}{{"prices.AAPL", prices}, {"alerts", alerts}, {"news", news}} {
		if got := n2.publish(t, tc.topic, payload{N: 0, Probe: true}); got != 1 {
			t.Fatalf("%s has %d subscribers on the new node, want 1", tc.topic, got)
		}
		waitRoute(t, viaHTTP(t, n2, tc.topic), tc.in, tc.topic)
		n2.publish(t, tc.topic, payload{N: 7, Text: tc.topic})
		if m, p := tc.in.next(t); m.Topic != tc.topic || p.N != 7 {
			t.Fatalf("after the restart %s delivered %s %+v", tc.topic, m.Topic, p)
		}
	}
	if st := c.Stats(); st.Connects != 2 || st.Subscriptions != 3 || !st.Connected {
		t.Fatalf("stats %+v", st)
	}
}
