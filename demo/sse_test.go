package demo_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/subsock/subsock/demo"
	"github.com/subsock/subsock/demo/browsertest"
	"github.com/subsock/subsock/gateway"
)

// tickerVia is an expression true when the ticker's pill is live over via ("sse", "json"),
// opened opens times.
func tickerVia(t *testing.T, via string, opens int) string {
	sel := `#status-ticker[data-state="open"][data-live="true"][data-opens="` + strconv.Itoa(opens) + `"]`
	return `document.querySelector(` + js(t, sel) + `)?.querySelector(".detail").textContent.startsWith(` + js(t, via) + `) === true`
}

// TestDemoTickerOverSSEInChromium switches the demo page's ticker between a WebSocket and
// Server-Sent Events in a real headless Chromium: over SSE a backend publish shows on the
// ticker, the node counts the stream, a node restart is ridden out by the browser's own
// reconnect, and the demo feed (published over the chat's WebSocket) reaches it; switching
// back puts the ticker on a WebSocket again; ?ticker=sse opens the page on SSE.
func TestDemoTickerOverSSEInChromium(t *testing.T) {
	node := browsertest.StartNode(t, gateway.Config{History: chatRule(t)}, map[string]http.Handler{"/": demo.Handler()})
	tab := browsertest.NewTab(t)
	tab.Do("open the page", 30*time.Second, chromedp.Navigate(node.URL()+"/"))
	waitLive(t, tab, 1, 15*time.Second)
	tab.Wait("the ticker on a WebSocket", tickerVia(t, "json", 1), 5*time.Second)

	tab.Do("switch the ticker to SSE", 10*time.Second, chromedp.Click(`#transport button[data-transport="sse"]`))
	tab.Wait("the ticker live over SSE", tickerVia(t, "sse", 1), 15*time.Second)
	if s := node.Gateway().Stats(); s.SSEStreams != 1 || s.Connections != 1 {
		t.Errorf("the node holds %d SSE streams and %d WebSockets, want 1 and 1 (the chat's)", s.SSEStreams, s.Connections)
	}
	tab.Wait("the SSE stream in the figures", `document.getElementById("kpi-SSEStreams").textContent === "1" && document.getElementById("kpi-Connections").textContent === "1"`, 10*time.Second)
	tab.Wait("?ticker=sse in the address", `new URLSearchParams(location.search).get("ticker") === "sse"`, 5*time.Second)
	publishUntil(t, tab, node, "demo.ticker", `{"symbol":"ACME","price":12.5}`, "ACME at 12.50 over SSE", tickerPrice(t, "ACME")+` === "12.50"`)

	// A restart: the stream gets event: close and the browser reconnects by itself.
	node.Restart()
	waitLive(t, tab, 2, 30*time.Second)
	tab.Wait("the ticker back over SSE", tickerVia(t, "sse", 2), 5*time.Second)
	tab.Wait("the drain in the events list", `[...document.querySelectorAll("#events li")].some(e => e.textContent.includes("ticker: dropped (server shutting down); the browser reconnects"))`, 5*time.Second)
	publishUntil(t, tab, node, "demo.ticker", `{"symbol":"ACME","price":13.75}`, "ACME at 13.75 after the restart", tickerPrice(t, "ACME")+` === "13.75"`)

	// The feed cannot publish over a receive-only stream: it uses the chat's WebSocket.
	ticks := browsertest.Eval[int](tab, `Number(document.getElementById("tick-count").textContent.replace(/\D/g, ""))`)
	tab.Do("start the demo feed", 10*time.Second, chromedp.Click(chromedp.ID("feed")))
	tab.Wait("20 more ticks over SSE", `Number(document.getElementById("tick-count").textContent.replace(/\D/g, "")) >= `+js(t, ticks+20), 20*time.Second)
	tab.Do("stop the demo feed", 10*time.Second, chromedp.Click(chromedp.ID("feed")))
	tab.Screenshot("ticker-sse")

	tab.Do("switch the ticker back to a WebSocket", 10*time.Second, chromedp.Click(`#transport button[data-transport="ws"]`))
	tab.Wait("the ticker live over a WebSocket", tickerVia(t, "json", 1), 15*time.Second)
	tab.Wait("the SSE stream gone from the node", `document.getElementById("kpi-SSEStreams").textContent === "0" && document.getElementById("kpi-Connections").textContent === "2"`, 10*time.Second)
	publishUntil(t, tab, node, "demo.ticker", `{"symbol":"ACME","price":14.5}`, "ACME at 14.50 over a WebSocket", tickerPrice(t, "ACME")+` === "14.50"`)

	tab.Do("open the page with ?ticker=sse", 30*time.Second, chromedp.Navigate(node.URL()+"/?ticker=sse"))
	waitLive(t, tab, 1, 15*time.Second)
	tab.Wait("the ticker over SSE from the start", tickerVia(t, "sse", 1), 5*time.Second)
	if pressed := browsertest.Eval[string](tab, `document.querySelector('#transport button[aria-pressed="true"]').dataset.transport`); pressed != "sse" {
		t.Errorf("the toggle shows %q, want sse", pressed)
	}
	publishUntil(t, tab, node, "demo.ticker", `{"symbol":"GLOBEX","price":48.25}`, "GLOBEX at 48.25 over SSE", tickerPrice(t, "GLOBEX")+` === "48.25"`)

	if ex := tab.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions on the page: %q", ex)
	}
}
