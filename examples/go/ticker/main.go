// Command ticker is a micro-socket client: prices arrive on one connection
// with the Latest policy (a slow screen only ever draws the newest price),
// alerts on another with the All policy (every alert is shown, none is
// silently lost), each with its own backoff. With -feed (the default) a
// third socket publishes simulated prices and alerts, so a bare node from
// `make run` has traffic to show; the demo page's "Start demo feed" button
// (topic demo.ticker) shows up here too.
//
//	make run                        # in one terminal: a node on :8080
//	go run ./examples/go/ticker     # in another
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/subsock/subsock/client"
	"github.com/subsock/subsock/proto"
)

// Tick is a price update.
type Tick struct {
	Symbol string  `json:"symbol" msgpack:"symbol"`
	Price  float64 `json:"price" msgpack:"price"`
	Seq    uint64  `json:"seq" msgpack:"seq"`
}

// Alert is a large move.
type Alert struct {
	Symbol string  `json:"symbol" msgpack:"symbol"`
	Move   float64 `json:"move_pct" msgpack:"move_pct"`
	Text   string  `json:"text" msgpack:"text"`
}

func main() {
	url := flag.String("url", "ws://localhost:8080/ws", "node WebSocket URL")
	symbols := flag.String("symbols", "AAPL,MSFT,GOOG,NVDA", "comma-separated symbols")
	feed := flag.Bool("feed", true, "publish simulated prices and alerts on a third socket")
	rate := flag.Duration("every", 5*time.Millisecond, "interval between simulated ticks per symbol")
	render := flag.Duration("render", 250*time.Millisecond, "time the price screen takes per update (a slow handler)")
	msgpack := flag.Bool("msgpack", false, "use the MessagePack subprotocol")
	flag.Parse()
	if err := run(*url, strings.Split(*symbols, ","), *feed, *rate, *render, *msgpack); err != nil {
		log.Fatal(err)
	}
}

func run(url string, symbols []string, feed bool, every, render time.Duration, useMsgpack bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var codec proto.Codec = proto.JSON
	if useMsgpack {
		codec = proto.Msgpack
	}
	report := func(socket string) func(error) {
		return func(err error) { log.Printf("[%s] %v", socket, err) }
	}
	// Every socket is declared here, each with the policy its data needs.
	decl := map[string]client.SocketConfig{
		"prices": {URL: url, Options: client.Options{Codec: codec, Policy: client.Latest,
			Backoff: client.Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}, OnError: report("prices")}},
		"alerts": {URL: url, Options: client.Options{Codec: codec, Policy: client.All, Buffer: 1024,
			Backoff: client.Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second}, OnError: report("alerts")}},
	}
	if feed {
		decl["feed"] = client.SocketConfig{URL: url, Options: client.Options{Codec: codec, OnError: report("feed")}}
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ss, err := client.Open(dialCtx, decl)
	cancel()
	if err != nil {
		return fmt.Errorf("is a node running (make run)? %w", err)
	}
	defer ss.Close()

	showTick := func(m client.Message) {
		var t Tick
		if err := m.Decode(&t); err != nil {
			log.Printf("[prices] %s: %v", m.Topic, err)
			return
		}
		fmt.Printf("%-8s %10.2f  (%s, tick %d)\n", t.Symbol, t.Price, m.Topic, t.Seq)
		time.Sleep(render) // stands for a slow screen; Latest skips what it missed
	}
	// demo.ticker is what the demo page of `make run` publishes with its
	// "Start demo feed" button.
	topics := []string{"demo.ticker"}
	for _, sym := range symbols {
		topics = append(topics, "prices."+sym)
	}
	for _, topic := range topics {
		if err := ss.Get("prices").Subscribe(ctx, topic, showTick); err != nil {
			return err
		}
	}
	err = ss.Get("alerts").Subscribe(ctx, "alerts", func(m client.Message) {
		var a Alert
		if err := m.Decode(&a); err != nil {
			log.Printf("[alerts] %v", err)
			return
		}
		fmt.Printf("ALERT %-5s %+.2f%%  %s\n", a.Symbol, a.Move, a.Text)
	})
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	if feed {
		wg.Go(func() { simulate(ctx, ss.Get("feed"), symbols, every) })
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			for _, name := range ss.Names() {
				s := ss.Stats()[name]
				log.Printf("[%s] connected=%v connects=%d received=%d delivered=%d coalesced=%d dropped=%d published=%d",
					name, s.Connected, s.Connects, s.Received, s.Delivered, s.Coalesced, s.Dropped, s.Published)
			}
		}
	}
}

// simulate publishes a random walk per symbol and an alert on each large
// move, until ctx ends.
func simulate(ctx context.Context, feed *client.Conn, symbols []string, every time.Duration) {
	price := make(map[string]float64, len(symbols))
	open := make(map[string]float64, len(symbols))
	for _, s := range symbols {
		price[s] = 100 + rand.Float64()*100
		open[s] = price[s]
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range symbols {
			seq++
			p := price[s] * (1 + rand.NormFloat64()*0.001)
			price[s] = math.Round(p*100) / 100
			if err := feed.Publish(ctx, "prices."+s, Tick{Symbol: s, Price: price[s], Seq: seq}); err != nil {
				return // ctx ended (reconnects are waited out inside Publish)
			}
			if move := (price[s] - open[s]) / open[s] * 100; math.Abs(move) >= 1 {
				_ = feed.Publish(ctx, "alerts", Alert{Symbol: s, Move: move, Text: fmt.Sprintf("moved %+.2f%% to %.2f", move, price[s])})
				open[s] = price[s]
			}
		}
	}
}
