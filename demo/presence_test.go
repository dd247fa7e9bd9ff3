package demo_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/subsock/subsock/demo"
	"github.com/subsock/subsock/demo/browsertest"
	"github.com/subsock/subsock/gateway"
)

// runConfig is what `make run` (-demo) gives the node on the memory broker: history,
// presence and join-leave events on demo.chat.
func runConfig(t *testing.T) gateway.Config {
	return gateway.Config{
		History:   chatRule(t),
		Presence:  []string{"demo.chat"},
		JoinLeave: []string{"demo.chat"},
	}
}

// roomOf returns the client ids in a page's room list, in order.
const roomOf = `[...document.querySelectorAll("#chat-members li[data-client]")].map(li => li.dataset.client)`

// selfOf is the page's own client id, once it is in its room list.
const selfOf = `document.querySelector("#chat-members li.me")?.dataset.client`

// systemLine is true when a line of the page's own in the chat log has text.
func systemLine(t *testing.T, text string) string {
	return `[...document.querySelectorAll("#chat-log li.system")].some(li => li.textContent.includes(` + js(t, text) + `))`
}

// TestDemoPresenceInChromium opens the demo page twice, in two browsers, on a node set up as
// `make run` does: each page lists both in the room, the first says the second joined and,
// once the second has sent a line, knows its name; when the second page goes, the first says
// it left and is alone in the room again.
func TestDemoPresenceInChromium(t *testing.T) {
	node := browsertest.StartNode(t, runConfig(t), map[string]http.Handler{"/": demo.Handler()})
	a := browsertest.NewTab(t)
	a.Do("open page A", 30*time.Second, chromedp.Navigate(node.URL()+"/"))
	waitLive(t, a, 1, 15*time.Second)
	a.Wait("page A alone in the room", selfOf+` !== undefined && `+roomOf+`.length === 1 && document.getElementById("chat-count").textContent === "1"`, 10*time.Second)
	aID := browsertest.Eval[string](a, selfOf)

	b := browsertest.NewTab(t)
	b.Do("open page B", 30*time.Second, chromedp.Navigate(node.URL()+"/"))
	waitLive(t, b, 1, 15*time.Second)
	b.Wait("page B's own entry", selfOf+` !== undefined`, 10*time.Second)
	bID := browsertest.Eval[string](b, selfOf)
	if aID == bID || aID == "" {
		t.Fatalf("client ids %q and %q", aID, bID)
	}
	// Each lists itself first, then the other.
	a.Wait("page B in page A's room", `JSON.stringify(`+roomOf+`) === `+js(t, js(t, []string{aID, bID})), 10*time.Second)
	b.Wait("page A in page B's room", `JSON.stringify(`+roomOf+`) === `+js(t, js(t, []string{bID, aID})), 10*time.Second)
	a.Wait("a join line on page A", systemLine(t, "joined"), 5*time.Second)
	if browsertest.Eval[bool](b, systemLine(t, "joined")) {
		t.Error("page B says someone joined: page A was there before it")
	}

	// B's chat line carries its client id: A names it.
	b.Do("name page B and send a line", 10*time.Second,
		chromedp.Evaluate[chromedp.Void](`(() => { const i = document.getElementById("chat-name"); i.value = "Bea"; i.dispatchEvent(new Event("change")); })()`),
		chromedp.SendKeys(chromedp.ID("chat-text"), "hello from B"),
		chromedp.Click(chromedp.ID("chat-send")),
	)
	a.Wait("page B named Bea in page A's room", `document.querySelector(`+js(t, `#chat-members li[data-client="`+bID+`"]`)+`)?.textContent === "Bea"`, 10*time.Second)
	a.Screenshot("two-in-the-room")

	// Closing the window closes the page. (Navigating away would not do: Chromium may keep the
	// page, sockets open, in its back-forward cache.)
	if ex := b.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions on page B: %q", ex)
	}
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Cancel(ctx); err != nil {
		t.Fatalf("closing page B's browser: %v", err)
	}
	a.Wait("a leave line on page A", systemLine(t, "Bea left"), 10*time.Second)
	a.Wait("page A alone again", `JSON.stringify(`+roomOf+`) === `+js(t, js(t, []string{aID}))+` && document.getElementById("chat-count").textContent === "1"`, 5*time.Second)
	if ex := a.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions on page A: %q", ex)
	}
}
