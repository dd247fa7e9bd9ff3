package js_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/clients/js"
	"github.com/subsock/subsock/demo/browsertest"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
)

// sseMessage is one message a stream of testdata/sse.js delivered.
type sseMessage struct {
	Data   json.RawMessage `json:"data"`
	Topic  string          `json:"topic"`
	Offset *uint64         `json:"offset"`
	Epoch  *string         `json:"epoch"` // sse() streams
	ID     string          `json:"id"`    // bare EventSources: the event's lastEventId
}

// sseSnapshot is what testdata/sse.js reports of a stream.
type sseSnapshot struct {
	Messages   []sseMessage     `json:"messages"`
	Lost       []map[string]any `json:"lost"`
	Errors     []string         `json:"errors"`
	States     []string         `json:"states"`
	Opens      int              `json:"opens"`
	ReadyState *int             `json:"readyState"`
	Made       int              `json:"made"` // EventSources the page has made so far
}

// of returns the messages on topic.
func (s sseSnapshot) of(topic string) []sseMessage {
	var out []sseMessage
	for _, m := range s.Messages {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// checkSequence checks that msgs are offsets 1..last once each, in order, carrying 1..last.
func checkSequence(t *testing.T, name string, msgs []sseMessage, last int) {
	t.Helper()
	offsets := make([]uint64, len(msgs))
	for i, m := range msgs {
		if m.Offset != nil {
			offsets[i] = *m.Offset
		}
	}
	want := make([]uint64, last)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(offsets, want) {
		t.Errorf("%s: offsets %v, want 1..%d once each, in order", name, compact(offsets), last)
		return
	}
	for i, m := range msgs {
		if string(m.Data) != strconv.Itoa(i+1) {
			t.Errorf("%s: message %d carries %s, want %d", name, i+1, m.Data, i+1)
			return
		}
	}
}

// TestSSEInChromium drives sse() and bare EventSources in a real headless Chromium against
// real nodes on one Redis, with history for test.h.>, through the steps of testdata/sse.js:
//   - a message published with POST /publish reaches the page's stream, with its offset and
//     epoch on a history topic;
//   - the page's node stops while another node of the same Redis keeps publishing, then
//     starts again: the browser reconnects by itself (Last-Event-ID) and every offset comes
//     exactly once, in order, to sse() and to a bare EventSource alike, and to an sse() of
//     two history topics, which reopens itself with since;
//   - a stream whose token expires reopens itself with a fresh token, again losing nothing;
//   - a page on another origin streams from a node that allows that origin (with
//     credentials), and is refused by one that does not: an error, and nothing delivered.
func TestSSEInChromium(t *testing.T) {
	redis := testserver.Redis(t)
	rules := historyRule(t, "test.h.>=10000,1m")
	anon := gateway.SecurityConfig{AnonymousSubs: []string{"test.>"}, AnonymousPubs: []string{"test.>"}}
	secret := []byte("sse-test-secret")
	files := map[string]http.Handler{
		"/js/":   http.StripPrefix("/js/", http.FileServerFS(js.FS())),
		"/t/":    http.StripPrefix("/t/", http.FileServer(http.Dir("testdata"))),
		"/token": tokenHandler(t, secret),
	}
	// The application's own site, on another origin (another port), serving the same page.
	mux := http.NewServeMux()
	for p, h := range files {
		mux.Handle(p, h)
	}
	site := httptest.NewServer(mux)
	t.Cleanup(site.Close)
	sec := anon
	sec.AllowedOrigins = strings.TrimPrefix(site.URL, "http://")
	home := browsertest.StartNode(t, gateway.Config{Broker: redis.URL, History: rules, Security: sec}, files)
	poster := browsertest.StartNode(t, gateway.Config{Broker: redis.URL, History: rules, Security: anon}, nil)
	strict := browsertest.StartNode(t, gateway.Config{Security: anon}, nil) // same-origin pages only
	// Tokens from the page's node; the wheel visits each connection every PingInterval, so
	// expiry is acted on within half a second.
	jwtNode := browsertest.StartNode(t, gateway.Config{
		PingInterval: 500 * time.Millisecond,
		History:      rules,
		Security:     gateway.SecurityConfig{JWT: auth.Config{Secret: secret}, AllowedOrigins: home.Addr()},
	}, nil)

	tab := browsertest.NewTab(t)
	tab.Do("open the page", 30*time.Second, chromedp.Navigate(home.URL()+"/t/sse.html"))
	tab.Wait("the page's steps", `window.stepsReady === true`, 10*time.Second)
	unique := strconv.FormatInt(time.Now().UnixNano(), 36)

	t.Run("POST /publish reaches the stream", func(t *testing.T) {
		plain, hist := "test.sse.plain."+unique, "test.h.sse."+unique
		browsertest.Eval[sseSnapshot](tab, `steps.open("one", "/sse", {topics: `+jsValue(t, []string{plain, hist})+`})`)
		// The 200 comes once the topics are live upstream: the first publish must arrive.
		if n := home.Publish(plain, `{"x":1}`); n != 1 {
			t.Errorf("publish reached %d subscribers, want the page's stream", n)
		}
		got := browsertest.Eval[sseSnapshot](tab, `steps.until("one", 1)`)
		if m := got.Messages[0]; m.Topic != plain || string(m.Data) != `{"x":1}` || m.Offset != nil || m.Epoch != nil {
			t.Errorf("plain message %+v, want {x:1} on %s without offset or epoch", m, plain)
		}
		home.Publish(hist, `"a"`)
		home.Publish(hist, `"b"`)
		got = browsertest.Eval[sseSnapshot](tab, `steps.until("one", 3)`)
		a, b := got.Messages[1], got.Messages[2]
		if a.Topic != hist || string(a.Data) != `"a"` || a.Offset == nil || *a.Offset != 1 || a.Epoch == nil || *a.Epoch == "" {
			t.Errorf("first history message %+v, want \"a\" at offset 1 with an epoch", a)
		}
		if b.Topic != hist || string(b.Data) != `"b"` || b.Offset == nil || *b.Offset != 2 || b.Epoch == nil || a.Epoch == nil || *b.Epoch != *a.Epoch {
			t.Errorf("second history message %+v, want \"b\" at offset 2 in the same epoch", b)
		}
		if len(got.Messages) != 3 || len(got.Lost) != 0 || len(got.Errors) != 0 {
			t.Errorf("stream got %+v", got)
		}
		browsertest.Eval[sseSnapshot](tab, `steps.close("one")`)
	})

	t.Run("node restart: the browser reconnects, every offset once", func(t *testing.T) {
		topic, other := "test.h.restart."+unique, "test.h.restart2."+unique
		browsertest.Eval[sseSnapshot](tab, `steps.open("resume", "/sse", {topics: [`+jsValue(t, topic)+`]})`)
		browsertest.Eval[sseSnapshot](tab, `steps.raw("raw", "/sse?topics=`+topic+`")`)
		// Two history topics: Last-Event-ID cannot say where both stand, so this one reopens
		// itself with since.
		browsertest.Eval[sseSnapshot](tab, `steps.open("pair", "/sse", {topics: `+jsValue(t, []string{topic, other})+`})`)
		made := browsertest.Eval[sseSnapshot](tab, `steps.read("raw")`).Made
		next := 1
		publish := func(upTo int) {
			for ; next <= upTo; next++ {
				poster.Publish(topic, strconv.Itoa(next))
				poster.Publish(other, strconv.Itoa(next))
			}
		}
		publish(30)
		for _, name := range []string{"resume", "raw", "pair"} {
			browsertest.Eval[sseSnapshot](tab, `steps.until("`+name+`", `+map[bool]string{true: "60", false: "30"}[name == "pair"]+`)`)
		}
		home.Stop() // the streams get event: close and end
		publish(60) // while the page's node is down
		home.Start()
		// Publications keep coming while the streams reconnect and resume (the replay meets
		// the live stream), and a little after: at most 400 in all.
		reopened := `["resume", "raw", "pair"].every(n => steps.read(n).opens >= 2)`
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for after := 0; after < 10 && next <= 400; {
			<-tick.C
			publish(next)
			if after > 0 || browsertest.Eval[bool](tab, reopened) {
				after++
			}
		}
		last := next - 1
		for _, name := range []string{"resume", "raw", "pair"} {
			n := last
			if name == "pair" {
				n = 2 * last
			}
			got := browsertest.Eval[sseSnapshot](tab, `steps.until("`+name+`", `+strconv.Itoa(n)+`, 20000).catch(e => steps.read("`+name+`"))`)
			t.Logf("%s: %d messages, %d opens, states %q, errors %q", name, len(got.Messages), got.Opens, got.States, got.Errors)
			if name == "pair" {
				checkSequence(t, name+" "+topic, got.of(topic), last)
				checkSequence(t, name+" "+other, got.of(other), last)
			} else {
				checkSequence(t, name, got.Messages, last)
			}
			if got.Opens < 2 || len(got.Lost) != 0 {
				t.Errorf("%s: %d opens, lost events %v; want a reconnect and nothing lost", name, got.Opens, got.Lost)
			}
			if name == "pair" {
				t.Logf("the page made %d EventSources after the first ones", got.Made-made)
			}
			browsertest.Eval[sseSnapshot](tab, `steps.close("`+name+`")`)
		}
	})

	t.Run("token expiry: a fresh token, resumed from the position", func(t *testing.T) {
		topic := "test.h.jwt." + unique
		// Tokens live 1-2 s (exp is in whole seconds). The node cuts the stream at expiry, the
		// browser's reconnect with the same URL is refused (401) and the stream reopens itself
		// with a fresh token and since.
		token := `() => (window.tokens = (window.tokens ?? 0) + 1, fetch("/token?ttl=2").then(r => r.text()))`
		browsertest.Eval[sseSnapshot](tab, `steps.open("jwt", `+jsValue(t, jwtNode.URL()+"/sse")+`, {topics: [`+jsValue(t, topic)+`], token: `+token+`})`)
		next := 1
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for after := 0; after < 10 && next <= 400; next++ {
			<-tick.C
			jwtNode.Publish(topic, strconv.Itoa(next))
			if after > 0 || browsertest.Eval[bool](tab, `steps.read("jwt").opens >= 2`) {
				after++
			}
		}
		last := next - 1
		got := browsertest.Eval[sseSnapshot](tab, `steps.until("jwt", `+strconv.Itoa(last)+`).catch(e => steps.read("jwt"))`)
		tokens := browsertest.Eval[int](tab, `window.tokens`)
		t.Logf("%d messages, %d tokens fetched, states %q, errors %q", len(got.Messages), tokens, got.States, got.Errors)
		checkSequence(t, "jwt", got.Messages, last)
		if got.Opens < 2 || tokens < 2 || len(got.Lost) != 0 {
			t.Errorf("%d opens, %d tokens fetched, lost events %v; want a fresh token and nothing lost", got.Opens, tokens, got.Lost)
		}
		browsertest.Eval[sseSnapshot](tab, `steps.close("jwt")`)
	})

	tab.Do("open the page on another origin", 30*time.Second, chromedp.Navigate(site.URL+"/t/sse.html"))
	tab.Wait("the page's steps", `window.stepsReady === true`, 10*time.Second)

	t.Run("another origin, allowed", func(t *testing.T) {
		topic := "test.sse.cors." + unique
		browsertest.Eval[sseSnapshot](tab, `steps.open("cors", `+jsValue(t, home.URL()+"/sse")+`, {topics: [`+jsValue(t, topic)+`], withCredentials: true})`)
		if n := home.Publish(topic, `"across origins"`); n != 1 {
			t.Errorf("publish reached %d subscribers, want the page's stream", n)
		}
		got := browsertest.Eval[sseSnapshot](tab, `steps.until("cors", 1)`)
		if len(got.Messages) != 1 || string(got.Messages[0].Data) != `"across origins"` || len(got.Errors) != 0 {
			t.Errorf("cross-origin stream got %+v", got)
		}
		browsertest.Eval[sseSnapshot](tab, `steps.close("cors")`)
	})

	t.Run("another origin, not allowed", func(t *testing.T) {
		topic := "test.sse.refused." + unique
		got := browsertest.Eval[sseSnapshot](tab, `steps.open("refused", `+jsValue(t, strict.URL()+"/sse")+`, {topics: [`+jsValue(t, topic)+`]}, "error")`)
		raw := browsertest.Eval[sseSnapshot](tab, `steps.raw("rawRefused", `+jsValue(t, strict.URL()+"/sse?topics="+topic)+`, "error")`)
		t.Logf("sse(): states %q, errors %q; bare EventSource: errors %q, readyState %v", got.States, got.Errors, raw.Errors, *raw.ReadyState)
		if n := strict.Publish(topic, `"not for you"`); n != 0 {
			t.Errorf("publish reached %d subscribers, want none", n)
		}
		if s := strict.Gateway().Stats(); s.SSEStreams != 0 || s.Subscriptions != 0 {
			t.Errorf("the node holds %d streams, %d subscriptions; want none", s.SSEStreams, s.Subscriptions)
		}
		got = browsertest.Eval[sseSnapshot](tab, `steps.close("refused")`)
		raw = browsertest.Eval[sseSnapshot](tab, `steps.close("rawRefused")`)
		if got.Opens != 0 || len(got.Messages) != 0 || raw.Opens != 0 || len(raw.Messages) != 0 {
			t.Errorf("refused streams opened or got messages: sse() %+v, bare %+v", got, raw)
		}
		if !strings.HasPrefix(got.Errors[0], "unavailable: ") {
			t.Errorf("sse() error %q, want unavailable", got.Errors[0])
		}
	})

	if ex := tab.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions on the page: %q", ex)
	}
}

// jsValue quotes v as a JavaScript literal.
func jsValue(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
