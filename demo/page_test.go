package demo_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/subsock/subsock/demo"
	"github.com/subsock/subsock/demo/browsertest"
	"github.com/subsock/subsock/gateway"
)

// js quotes v as a JavaScript literal.
func js(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitLive waits until both of the page's connections are open, have been opened `opens`
// times, and have had their subscription confirmed by the server.
func waitLive(t *testing.T, tab *browsertest.Tab, opens int, timeout time.Duration) {
	t.Helper()
	for _, name := range []string{"ticker", "chat"} {
		sel := `#status-` + name + `[data-state="open"][data-live="true"][data-opens="` + strconv.Itoa(opens) + `"]`
		tab.Wait(name+" connection live (open #"+strconv.Itoa(opens)+")", `document.querySelector(`+js(t, sel)+`) !== null`, timeout)
	}
}

// publishUntil publishes body to topic from the backend until cond holds in the page. A node
// acks a sub before its upstream interest is in place (the broker Router batches Acquire), so
// the first publish after a (re)subscription can miss the page; the test is about the page,
// so it waits that window out instead of racing it.
func publishUntil(t *testing.T, tab *browsertest.Tab, node *browsertest.Node, topic, body, what, cond string) {
	t.Helper()
	for range 20 {
		// After a navigation the previous page's sockets may still be closing: at least one.
		if n := node.Publish(topic, body); n < 1 {
			t.Errorf("publish to %s reached %d subscribers on the node, want the page's", topic, n)
		}
		if tab.Poll(cond, 500*time.Millisecond) == nil {
			return
		}
	}
	tab.Wait(what, cond, time.Millisecond) // fails, with a screenshot
}

func tickerPrice(t *testing.T, symbol string) string {
	return `document.querySelector(` + js(t, `#ticker [data-symbol="`+symbol+`"] .price`) + `)?.textContent`
}

// TestDemoPageInChromium drives the demo page in a real headless Chromium against a real node
// set up as `make run` does (memory broker; history, presence and join-leave for demo.chat): a
// backend publish shows on the ticker, a chat message goes round trip, its writer alone in the
// room, the node's figures are charted, and after the node restarts on the same address the
// page reconnects, resubscribes, says the chat's history was lost (a memory node's streams do
// not survive it) and shows new publishes.
func TestDemoPageInChromium(t *testing.T) {
	// examples/browser is served from another origin, as an application's own site would be:
	// the node must allow that origin for WebSockets and serves /js/ with CORS.
	example := httptest.NewServer(http.FileServer(http.Dir(filepath.Join("..", "examples", "browser"))))
	t.Cleanup(example.Close)
	cfg := runConfig(t)
	cfg.Security = gateway.SecurityConfig{AllowedOrigins: strings.TrimPrefix(example.URL, "http://")}
	node := browsertest.StartNode(t, cfg, map[string]http.Handler{"/": demo.Handler()})
	tab := browsertest.NewTab(t)
	tab.Do("open the page", 30*time.Second,
		chromedp.EmulateViewport(1440, 1000),
		chromedp.Navigate(node.URL()+"/"),
	)
	waitLive(t, tab, 1, 15*time.Second)

	// Ticker: a backend publish appears on the page.
	publishUntil(t, tab, node, "demo.ticker", `{"symbol":"ACME","price":12.5}`, "ACME at 12.50 on the ticker", tickerPrice(t, "ACME")+` === "12.50"`)
	tab.Wait("the message on the tape", `document.querySelector("#tape li .json")?.textContent === `+js(t, `{"symbol":"ACME","price":12.5}`), 5*time.Second)

	// Chat: typed on the page, published with ack, delivered back to the page.
	msg := "hello from chromedp, " + time.Now().Format(time.RFC3339Nano)
	tab.Do("send a chat message", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("chat-text"), msg),
		chromedp.Click(chromedp.ID("chat-send")),
	)
	chatHas := func(text string) string {
		return `[...document.querySelectorAll("#chat-log .text")].some(e => e.textContent === ` + js(t, text) + `)`
	}
	tab.Wait("the chat message to come back", chatHas(msg), 10*time.Second)
	tab.Wait("the page alone in the room", `document.querySelectorAll("#chat-members li.me").length === 1 && document.getElementById("chat-count").textContent === "1"`, 5*time.Second)
	tab.Wait("the input cleared after the ack", `document.getElementById("chat-text").value === "" && document.getElementById("chat-error").textContent === ""`, 5*time.Second)

	// Node figures: /stats is sampled every second and charted.
	tab.Wait("2 connections in the figures", `document.getElementById("kpi-Connections").textContent === "2"`, 10*time.Second)
	tab.Wait("the connections chart to plot 2", `Chart.getChart("chart-conns").data.datasets[0].data.at(-1) === 2`, 10*time.Second)

	// Restart the node on the same address: both connections get 1001, back off, reconnect
	// and resubscribe.
	addr := node.Addr()
	node.Restart()
	if node.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", node.Addr(), addr)
	}
	waitLive(t, tab, 2, 30*time.Second)
	publishUntil(t, tab, node, "demo.ticker", `{"symbol":"ACME","price":13.75}`, "ACME at 13.75 after the restart", tickerPrice(t, "ACME")+` === "13.75"`)
	tab.Wait("a rise shown since 12.50", `document.querySelector('#ticker [data-symbol="ACME"] .chg')?.textContent.startsWith("▲ +")`, 5*time.Second)
	msg2 := "still here after the restart"
	tab.Do("send a chat message after the restart", 10*time.Second,
		chromedp.SendKeys(chromedp.ID("chat-text"), msg2),
		chromedp.Click(chromedp.ID("chat-send")),
	)
	tab.Wait("the second chat message to come back", chatHas(msg2), 10*time.Second)
	tab.Wait("the restart in the events list", `[...document.querySelectorAll("#events li")].some(e => e.textContent.includes("dropped (1001"))`, 5*time.Second)
	tab.Wait("the lost chat history in the events list", `[...document.querySelectorAll("#events li")].some(e => e.textContent.includes("chat: demo.chat not recovered"))`, 5*time.Second)
	tab.Wait("the lost lines noted in the chat", `[...document.querySelectorAll("#chat-log li.system")].some(e => e.textContent.includes("lines were lost"))`, 5*time.Second)

	// The demo feed publishes from the page; the rates chart shows the traffic.
	tab.Do("start the demo feed", 10*time.Second, chromedp.Click(chromedp.ID("feed")))
	tab.Wait("40 ticks received", `Number(document.getElementById("tick-count").textContent.replace(/\D/g, "")) >= 40`, 30*time.Second)
	tab.Wait("a non-zero out rate charted", `Chart.getChart("chart-rates").data.datasets[1].data.some(v => v > 0)`, 10*time.Second)
	tab.Wait("several symbols on the ticker", `document.querySelectorAll("#ticker .tile").length >= 4`, 10*time.Second)
	tab.Screenshot("demo")
	tab.Do("stop the demo feed", 10*time.Second, chromedp.Click(chromedp.ID("feed")))

	// The same page on the MessagePack subprotocol.
	tab.Do("open the page with ?protocol=msgpack", 30*time.Second, chromedp.Navigate(node.URL()+"/?protocol=msgpack"))
	waitLive(t, tab, 1, 15*time.Second)
	tab.Wait("msgpack negotiated", `document.querySelector("#status-ticker .detail").textContent.startsWith("msgpack")`, 5*time.Second)
	publishUntil(t, tab, node, "demo.ticker", `{"symbol":"GLOBEX","price":48.25}`, "GLOBEX at 48.25 over msgpack", tickerPrice(t, "GLOBEX")+` === "48.25"`)

	// examples/browser/index.html on its own origin imports the client from the node's /js/
	// and talks to its /ws.
	tab.Do("open examples/browser/index.html", 30*time.Second, chromedp.Navigate(example.URL+"/?node="+node.Addr()))
	tab.Wait("the example to connect", `document.getElementById("status")?.dataset.state === "open"`, 15*time.Second)
	tab.Do("publish from the example's form", 10*time.Second, chromedp.Click(chromedp.CSS("#send button")))
	tab.Wait("the example's publish acked", `document.getElementById("result").textContent === "acked"`, 10*time.Second)
	tab.Wait("the example to receive its own publish", `document.querySelector("#log li")?.textContent.includes(`+js(t, `demo.ticker {"symbol":"ACME","price":12.5}`)+`)`, 10*time.Second)

	if ex := tab.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions on the page: %q", ex)
	}
}
