package js_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/clients/js"
	"github.com/subsock/subsock/demo/browsertest"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/proto"
)

// result is one case of testdata/harness.js.
type result struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	Err  string `json:"err"`
	MS   int    `json:"ms"`
}

// TestClientInChromium runs the in-browser suite of subsock.js (testdata/harness.js) in a real
// headless Chromium against real nodes: an open one that serves the module and the harness,
// keeps history for test.h.>, has presence and join-leave events on test.p.> and refuses
// anonymous access outside test.>; one that requires tokens, with presence on test.p.> too and
// the server API (which the harness reaches through /admin/ on its own node, as a backend
// would); and a WebSocket server that never answers (for the heartbeat). Each case becomes a
// subtest.
func TestClientInChromium(t *testing.T) {
	secret := []byte("browser-test-secret")
	const apiKey = "browser-test-api-key"
	presence := []string{"test.p.>"}
	var jwtNode *browsertest.Node
	node := browsertest.StartNode(t, gateway.Config{
		Security: gateway.SecurityConfig{AnonymousSubs: []string{"test.>"}, AnonymousPubs: []string{"test.>"}},
		History:  historyRule(t, "test.h.>=1000,1m"),
		Presence: presence, JoinLeave: presence,
	}, map[string]http.Handler{
		"/js/":    http.StripPrefix("/js/", http.FileServerFS(js.FS())),
		"/t/":     http.StripPrefix("/t/", http.FileServer(http.Dir("testdata"))),
		"/token":  tokenHandler(t, secret),
		"/admin/": adminHandler(t, func() *browsertest.Node { return jwtNode }, apiKey),
	})
	// Tokens expire fast and the wheel visits each connection every PingInterval, so
	// expiry (4001) is noticed within half a second. The harness page is served by the
	// other node, so that origin must be allowed.
	jwtNode = browsertest.StartNode(t, gateway.Config{
		PingInterval: 500 * time.Millisecond,
		Security: gateway.SecurityConfig{
			JWT:            auth.Config{Secret: secret},
			AllowedOrigins: node.Addr(),
			APIKey:         apiKey,
		},
		Presence: presence, JoinLeave: presence,
	}, nil)
	silent := startSilentServer(t)

	page := node.URL() + "/t/harness.html?jwt=" + jwtNode.Addr() + "&silent=" + silent
	if only := os.Getenv("SUBSOCK_JS_ONLY"); only != "" {
		// Debugging aid: run the cases whose name contains this text.
		page += "&only=" + url.QueryEscape(only)
	}
	tab := browsertest.NewTab(t)
	tab.Do("open the harness", 30*time.Second, chromedp.Navigate(page))
	tab.Wait("the in-browser suite to finish", `window.__results !== undefined`, 3*time.Minute)
	results := browsertest.Eval[[]result](tab, `window.__results`)
	cases := browsertest.Eval[int](tab, `window.__cases`)
	if os.Getenv("SUBSOCK_JS_ONLY") == "" && (len(results) != cases || cases < 10) {
		t.Fatalf("%d results for %d cases", len(results), cases)
	}
	for _, r := range results {
		t.Run(r.Name, func(t *testing.T) {
			t.Logf("%d ms", r.MS)
			if !r.OK {
				t.Error(r.Err)
			}
		})
	}
	t.Run("validTopic agrees with proto.ValidTopic", func(t *testing.T) {
		topics := []string{
			"a", "a.b", "prices.AAPL", "a*b", "a>b", "*a", "a.*b.c", "~!@#$%^&()_+{}|:<>?", strings.Repeat("x", 256),
			"", ".", "a.", ".a", "a..b", "a b", "a\tb", "*", ">", "a.*", "a.>", "*.a", "a.>.b", strings.Repeat("x", 257),
			"caf\u00e9", "a\x7fb", "a\x00", strings.Repeat("a.", 128)[:255],
		}
		in, err := json.Marshal(topics)
		if err != nil {
			t.Fatal(err)
		}
		got := browsertest.Eval[[]bool](tab, `import("/js/subsock.js").then(m => `+string(in)+`.map(t => m.validTopic(t) === null))`)
		for i, topic := range topics {
			if want := proto.ValidTopic(topic) == nil; got[i] != want {
				t.Errorf("topic %q: valid in JS %v, in Go %v", topic, got[i], want)
			}
		}
	})
	if ex := tab.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions in the harness: %q", ex)
	}
}

// tokenHandler issues HS256 tokens allowing test.> for ?ttl= seconds to user ?sub= (default
// "browser"), as an application's backend would.
func tokenHandler(t *testing.T, secret []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ttl, err := strconv.Atoi(r.URL.Query().Get("ttl"))
		if err != nil || ttl <= 0 {
			http.Error(w, "ttl: want whole seconds", http.StatusBadRequest)
			return
		}
		sub := r.URL.Query().Get("sub")
		if sub == "" {
			sub = "browser"
		}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub":  sub,
			"exp":  time.Now().Add(time.Duration(ttl) * time.Second).Unix(),
			"subs": []string{"test.>"},
			"pubs": []string{"test.>"},
		}).SignedString(secret)
		if err != nil {
			t.Errorf("signing a token: %v", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, tok)
	})
}

// adminHandler forwards POST /admin/<action> to the node's POST /api/<action> with the API
// key, as an application's backend would call the server API; the page never sees the key.
func adminHandler(t *testing.T, node func() *browsertest.Node, key string) http.Handler {
	client := &http.Client{Timeout: 10 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action := strings.TrimPrefix(r.URL.Path, "/admin/")
		if r.Method != http.MethodPost || (action != "disconnect" && action != "unsubscribe") {
			http.Error(w, "POST /admin/disconnect or /admin/unsubscribe", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 4096))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// The node takes no chunked bodies: a byte slice gets a Content-Length.
		req, err := http.NewRequest(http.MethodPost, node().URL()+"/api/"+action, bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("admin %s: %v", action, err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}

// startSilentServer accepts WebSocket handshakes (any subprotocol), sends one pong (a client
// takes its first frame as the sign that it was let in) and then reads and discards
// everything, answering nothing: the peer a client's heartbeat must detect.
func startSilentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by the cleanup
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				_ = c.Close()
				return
			}
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				u := ws.Upgrader{Protocol: func([]byte) bool { return true }}
				if _, err := u.Upgrade(c); err != nil {
					return
				}
				if err := ws.WriteFrame(c, ws.NewTextFrame([]byte(`{"op":"pong"}`))); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
