// Command sub subscribes to topics on a subsock node and prints every
// message: the smallest possible client, with no SDK, to show the protocol.
//
//	go run ./examples/go/sub -url ws://localhost:8080/ws prices.AAPL alerts
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

func main() {
	url := flag.String("url", "ws://localhost:8080/ws", "node WebSocket URL")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: sub [-url ws://host:port/ws] topic...")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *url, flag.Args()); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "sub:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url string, topics []string) error {
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"subsock.v1.json"}})
	if err != nil {
		return err
	}
	defer c.CloseNow()
	if err := wsjson.Write(ctx, c, map[string]any{"op": "sub", "id": 1, "topics": topics}); err != nil {
		return err
	}
	for {
		var m struct {
			Op    string          `json:"op"`
			Topic string          `json:"topic"`
			Data  json.RawMessage `json:"data"`
			Code  string          `json:"code"`
			Msg   string          `json:"msg"`
		}
		if err := wsjson.Read(ctx, c, &m); err != nil {
			return err
		}
		switch m.Op {
		case "msg":
			fmt.Printf("%s %s\n", m.Topic, m.Data)
		case "ack":
			fmt.Fprintf(os.Stderr, "subscribed to %v\n", topics)
		case "err":
			return fmt.Errorf("%s: %s", m.Code, m.Msg)
		}
	}
}
