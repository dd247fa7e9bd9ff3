package js_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/clients/js"
	"github.com/subsock/subsock/demo/browsertest"
	"github.com/subsock/subsock/gateway"
)

// refusalSnapshot is what testdata/refusal.js reports of a client.
type refusalSnapshot struct {
	State  string `json:"state"`
	States []struct {
		State string `json:"state"`
		Code  int    `json:"code"`
		Delay int    `json:"delay"`
		At    int64  `json:"at"` // ms since the epoch
	} `json:"states"`
	Errors []refusalError `json:"errors"`
	Sub    *struct {
		OK bool `json:"ok"`
		refusalError
	} `json:"sub"`
	Subscribed int `json:"subscribed"`
	Tokens     int `json:"tokens"` // calls of the token function
}

// refusalError is a SubsockError as the page saw it.
type refusalError struct {
	Code      string `json:"code"`
	CloseCode int    `json:"closeCode"`
	Reason    string `json:"reason"`
	At        int64  `json:"at"`
}

// upgradeRejects reads the node's subsock_upgrade_rejects_total: the WebSocket connection
// attempts it refused.
func upgradeRejects(t *testing.T, n *browsertest.Node) int {
	t.Helper()
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "subsock_upgrade_rejects_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return int(f)
		}
	}
	t.Fatalf("no subsock_upgrade_rejects_total in %s's metrics", n.Addr())
	return 0
}

// TestRefusalsInChromium drives subsock.js in a real headless Chromium against nodes that
// refuse it, counting the attempts on the nodes (testdata/refusal.js):
//   - a bad token (4001) and an origin the node does not allow (4003) reach the page as an
//     error event with the close code and reason, reject the pending subscribe, and are not
//     retried: a fixed token or none closes the client, a token function that keeps giving the
//     refused token is asked again without a new attempt, one that gives a new token at each
//     call gets at most one retry within 10 s after a 4003; a function whose second token is
//     good connects;
//   - an admission limit (4013, -max-conns 1 with the slot held) is retried after the "retry
//     in Ns" of its reason, and the retry gets in once the slot is free.
func TestRefusalsInChromium(t *testing.T) {
	anon := gateway.SecurityConfig{AnonymousSubs: []string{"test.>"}, AnonymousPubs: []string{"test.>"}}
	secret := []byte("refusal-test-secret")
	home := browsertest.StartNode(t, gateway.Config{Security: anon}, map[string]http.Handler{
		"/js/": http.StripPrefix("/js/", http.FileServerFS(js.FS())),
		"/t/":  http.StripPrefix("/t/", http.FileServer(http.Dir("testdata"))),
	})
	page := home.Addr() // the page's origin, allowed where the refusal tested is another one
	jwtSec := gateway.SecurityConfig{JWT: auth.Config{Secret: secret}, AllowedOrigins: page}
	jwtNode := browsertest.StartNode(t, gateway.Config{Security: jwtSec}, nil)
	strictSec := anon
	strictSec.AllowedOrigins = "elsewhere.example"
	strict := browsertest.StartNode(t, gateway.Config{Security: strictSec}, nil)
	busySec := anon
	busySec.AllowedOrigins, busySec.MaxConns = page, 1
	busy := browsertest.StartNode(t, gateway.Config{Security: busySec}, nil)

	good, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "browser", "exp": time.Now().Add(time.Hour).Unix(), "subs": []string{"test.>"}, "pubs": []string{"test.>"},
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}

	tab := browsertest.NewTab(t)
	tab.Do("open the page", 30*time.Second, chromedp.Navigate(home.URL()+"/t/refusal.html"))
	tab.Wait("the page's steps", `window.stepsReady === true`, 10*time.Second)
	unique := strconv.FormatInt(time.Now().UnixNano(), 36)
	open := func(name string, n *browsertest.Node, token, want string) refusalSnapshot {
		t.Helper()
		return browsertest.Eval[refusalSnapshot](tab, `steps.open(`+jsValue(t, name)+`, `+jsValue(t, "ws://"+n.Addr()+"/ws")+`, `+token+`, `+jsValue(t, "test.refusal."+name+"."+unique)+`, `+jsValue(t, want)+`)`)
	}
	// refusedWith checks that s's first error and its subscribe's rejection are code/closeCode
	// with a reason containing reason.
	refusedWith := func(t *testing.T, name string, s refusalSnapshot, code string, closeCode int, reason string) {
		t.Helper()
		e := s.Errors[0]
		if e.Code != code || e.CloseCode != closeCode || !strings.Contains(e.Reason, reason) {
			t.Errorf("%s: error event %+v, want %s with close code %d and %q in the reason", name, e, code, closeCode, reason)
		}
		if sub := s.Sub; sub == nil || sub.OK || sub.Code != code || sub.CloseCode != closeCode || sub.Reason != e.Reason {
			t.Errorf("%s: subscribe %+v, want rejected with %s, %d and the reason", name, sub, code, closeCode)
		}
	}

	t.Run("bad token and disallowed origin: no retry storm", func(t *testing.T) {
		start := time.Now()
		clients := []struct {
			name     string
			node     *browsertest.Node
			token    string // the token spec of refusal.js
			code     string
			close    int
			reason   string
			state    string // after 9 s
			attempts int    // at most, within those 9 s
		}{
			{"fixed", jwtNode, `{fixed: "not-a-token"}`, "unauthorized", 4001, "token", "closed", 1},
			{"none", jwtNode, `null`, "unauthorized", 4001, "token", "closed", 1},
			{"same", jwtNode, `{fn: ["not-a-token"]}`, "unauthorized", 4001, "token", "reconnecting", 1},
			{"origin", strict, `null`, "refused", 4003, "origin", "closed", 1},
			{"minted", strict, `{mint: true}`, "refused", 4003, "origin", "reconnecting", 2},
		}
		for _, c := range clients {
			refusedWith(t, c.name, open(c.name, c.node, c.token, "error"), c.code, c.close, c.reason)
		}
		// Nothing to wait for but time: whatever the clients would do, they do within it.
		time.Sleep(9*time.Second - time.Since(start))
		made := map[*browsertest.Node]int{}
		for _, c := range clients {
			s := browsertest.Eval[refusalSnapshot](tab, `steps.read(`+jsValue(t, c.name)+`)`)
			t.Logf("%s: state %s, %d refusals, %d token calls", c.name, s.State, len(s.Errors), s.Tokens)
			made[c.node] += len(s.Errors)
			if s.State != c.state || len(s.Errors) > c.attempts {
				t.Errorf("%s: state %s after %d refusals, want %s after at most %d", c.name, s.State, len(s.Errors), c.state, c.attempts)
			}
			if last := s.States[len(s.States)-1]; c.state == "closed" && last.Code != c.close {
				t.Errorf("%s: closed with code %d, want %d", c.name, last.Code, c.close)
			}
			if c.name == "same" && s.Tokens < 3 {
				t.Errorf("%s: the token function was called %d times: the client does not ask it again", c.name, s.Tokens)
			}
			browsertest.Eval[refusalSnapshot](tab, `steps.close(`+jsValue(t, c.name)+`)`)
		}
		for n, want := range made {
			if got := upgradeRejects(t, n); got != want {
				t.Errorf("%s refused %d attempts, the page saw %d", n.Addr(), got, want)
			}
		}
	})

	t.Run("a token function whose second token is good connects", func(t *testing.T) {
		before := upgradeRejects(t, jwtNode)
		s := open("then", jwtNode, `{fn: ["not-a-token", `+jsValue(t, good)+`]}`, "subscribed")
		refusedWith(t, "then", s, "unauthorized", 4001, "token")
		if s.State != "open" || s.Tokens != 2 || len(s.Errors) != 1 {
			t.Errorf("state %s after %d token calls and %d errors, want open after 2 and 1", s.State, s.Tokens, len(s.Errors))
		}
		if got := upgradeRejects(t, jwtNode) - before; got != 1 {
			t.Errorf("%d attempts refused, want 1", got)
		}
		browsertest.Eval[refusalSnapshot](tab, `steps.close("then")`)
	})

	t.Run("admission limit: retried after the wait", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		holder, _, _, err := ws.Dial(ctx, "ws://"+busy.Addr()+"/ws")
		if err != nil {
			t.Fatalf("taking the node's one slot: %v", err)
		}
		defer holder.Close()
		s := open("busy", busy, `null`, "error")
		refusedWith(t, "busy", s, "try_later", 4013, "retry in")
		m := regexp.MustCompile(`retry in (\d+)s`).FindStringSubmatch(s.Errors[0].Reason)
		if m == nil {
			t.Fatalf("reason %q has no retry in Ns", s.Errors[0].Reason)
		}
		wait, _ := strconv.Atoi(m[1])
		_ = holder.Close() // the slot is free for the retry
		s = browsertest.Eval[refusalSnapshot](tab, `steps.subscribed("busy", 15000)`)
		var openedAt int64
		for _, st := range s.States {
			if st.State == "open" {
				openedAt = st.At
			}
		}
		gap := time.Duration(openedAt-s.Errors[0].At) * time.Millisecond
		t.Logf("refused with %q; open %v later", s.Errors[0].Reason, gap)
		if s.State != "open" || gap < time.Duration(wait)*time.Second {
			t.Errorf("state %s %v after the refusal, want open no sooner than %ds", s.State, gap, wait)
		}
		if got := upgradeRejects(t, busy); got != 1 || len(s.Errors) != 1 {
			t.Errorf("%d attempts refused (%d errors), want 1: one retry, after the wait", got, len(s.Errors))
		}
		browsertest.Eval[refusalSnapshot](tab, `steps.close("busy")`)
	})

	if ex := tab.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions on the page: %q", ex)
	}
}
