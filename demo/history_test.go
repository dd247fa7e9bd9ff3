package demo_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/subsock/subsock/demo"
	"github.com/subsock/subsock/demo/browsertest"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
)

// chatRule is the history rule a node started with -demo adds for the chat.
func chatRule(t *testing.T) []gateway.HistoryRule {
	t.Helper()
	r, err := gateway.ParseHistoryRule("demo.chat=100,10m")
	if err != nil {
		t.Fatal(err)
	}
	return []gateway.HistoryRule{r}
}

// chatLine publishes line i of the test's chat to node.
func chatLine(t *testing.T, node *browsertest.Node, i int) {
	t.Helper()
	node.Publish("demo.chat", fmt.Sprintf(`{"name":"bot","text":"line %d","ts":%d}`, i, time.Now().UnixMilli()))
}

// chatLines is the page's chat log: the text and the offset of each line, notes of the page's
// own included (offset "").
const chatLines = `[...document.querySelectorAll("#chat-log li")].map(li => [li.querySelector(".text")?.textContent ?? li.textContent, li.dataset.offset ?? ""])`

// TestDemoChatHistoryInChromium runs the demo page on one of two nodes sharing a Redis, with
// the chat's history rule, and posts the chat's lines through the other: the page opens with
// the last 50 lines, and when its node is stopped and started again while lines keep coming,
// it ends up with every line exactly once, in order, and no line reported lost.
func TestDemoChatHistoryInChromium(t *testing.T) {
	redis := testserver.Redis(t)
	cfg := gateway.Config{Broker: redis.URL, History: chatRule(t)}
	page := browsertest.StartNode(t, cfg, map[string]http.Handler{"/": demo.Handler()})
	poster := browsertest.StartNode(t, cfg, nil)

	for i := 1; i <= 60; i++ {
		chatLine(t, poster, i)
	}
	tab := browsertest.NewTab(t)
	tab.Do("open the page", 30*time.Second, chromedp.Navigate(page.URL()+"/"))
	waitLive(t, tab, 1, 15*time.Second)
	want := func(from, to int) [][2]string {
		var w [][2]string
		for i := from; i <= to; i++ {
			w = append(w, [2]string{"line " + strconv.Itoa(i), strconv.Itoa(i)})
		}
		return w
	}
	check := func(what string, lines [][2]string) {
		t.Helper()
		last := js(t, lines[len(lines)-1][0])
		tab.Wait(what, chatLines+`.some(([text]) => text === `+last+`)`, 15*time.Second)
		if got := browsertest.Eval[[][2]string](tab, chatLines); !slices.Equal(got, lines) {
			t.Fatalf("%s: the chat shows %q\nwant %q", what, got, lines)
		}
	}
	check("the last 50 lines on load", want(11, 60))

	next := 61
	for ; next <= 70; next++ {
		chatLine(t, poster, next)
	}
	page.Stop()
	tab.Wait("the chat connection dropped", `document.querySelector("#status-chat").dataset.state === "reconnecting"`, 10*time.Second)
	for ; next <= 90; next++ {
		chatLine(t, poster, next) // while the page's node is down
	}
	page.Start()
	// Lines keep coming while the page reconnects and resumes (the replay meets the live
	// stream), and a little after. At most 60, so what the page misses fits in the stream.
	live := `document.querySelector('#status-chat[data-state="open"][data-live="true"][data-opens="2"]') !== null`
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for after := 0; after < 10 && next <= 150; next++ {
		<-tick.C
		chatLine(t, poster, next)
		if after > 0 || browsertest.Eval[bool](tab, live) {
			after++
		}
	}
	waitLive(t, tab, 2, 15*time.Second)
	check("every line once, in order, after the restart", want(11, next-1))
	tab.Wait("the recovery in the events list", `[...document.querySelectorAll("#events li")].some(e => e.textContent.includes("chat: demo.chat recovered"))`, 5*time.Second)
	tab.Screenshot("chat-history")
	if ex := tab.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions on the page: %q", ex)
	}
}
