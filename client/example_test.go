package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/subsock/subsock/client"
	"github.com/subsock/subsock/proto"
)

// Micro sockets: each concern gets its own connection, token, retry and
// delivery policy, declared in one place.
func ExampleOpen() {
	ctx := context.Background()
	url := "ws://localhost:8080/ws"
	paymentsToken := func(ctx context.Context) (string, error) { return "a JWT from your auth service", nil }
	ss, err := client.Open(ctx, map[string]client.SocketConfig{
		"prices": {URL: url, Options: client.Options{Policy: client.Latest, Codec: proto.Msgpack,
			Backoff: client.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}}},
		"payments": {URL: url, Options: client.Options{Policy: client.All, Buffer: 1024, Token: paymentsToken, AckPublish: true}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer ss.Close()

	err = ss.Get("prices").Subscribe(ctx, "prices.AAPL", func(m client.Message) {
		var tick struct{ Price float64 }
		if m.Decode(&tick) == nil {
			fmt.Println("AAPL", tick.Price) // a slow screen only ever sees the newest price
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	// Acked: a refusal comes back as a *client.ServerError with its code.
	if err := ss.Get("payments").Publish(ctx, "payments.settled", map[string]any{"id": 42}); err != nil {
		log.Print(err)
	}
}

func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://localhost:8080/ws", client.Options{
		OnError:      func(err error) { log.Print(err) },           // drops, failed attempts, refusals without a caller
		OnDisconnect: func(err error) { log.Print("down: ", err) }, // "... (next attempt in 180ms)"
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe(ctx, "alerts", func(m client.Message) { fmt.Printf("%s: %s\n", m.Topic, m.Data) }); err != nil {
		log.Fatal(err)
	}
}

// History: on a topic the node keeps a stream for (-history 'chat.>=100,10m'),
// a reconnect resumes where the handler left off, and OnRecover says when
// that was not possible.
func ExampleConn_SubscribeWith() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "ws://localhost:8080/ws", client.Options{
		OnRecover: func(r client.Recovery) {
			if !r.Recovered {
				log.Printf("%s: messages lost before offset %d; reload the room", r.Topic, r.Offset)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// The last 50 messages first, then live ones: each offset once, in order.
	err = c.SubscribeWith(ctx, "chat.room1", func(m client.Message) {
		fmt.Printf("#%d %s\n", m.Offset, m.Data)
	}, client.SubscribeOptions{Last: 50})
	if err != nil {
		log.Fatal(err)
	}
}

// Presence: on a topic the node has presence and join-leave events for
// (-presence 'room.>' -join-leave 'room.>'), the list once subscribed,
// then the others as they come and go.
func ExampleConn_Presence() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "ws://localhost:8080/ws", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	err = c.SubscribeWith(ctx, "room.1", func(m client.Message) {}, client.SubscribeOptions{
		OnJoin:  func(m client.Member) { log.Printf("%s (%s) joined", m.User, m.Client) },
		OnLeave: func(m client.Member) { log.Printf("%s (%s) left", m.User, m.Client) },
	})
	if err != nil {
		log.Fatal(err)
	}
	members, err := c.Presence(ctx, "room.1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(members), "in the room")
	// Typing indicators go to everyone else, not back to this Conn.
	_ = c.PublishWith(ctx, "room.1", map[string]bool{"typing": true}, client.PublishOptions{NoEcho: true})
}
