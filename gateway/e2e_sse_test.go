package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
	"github.com/subsock/subsock/poller"
)

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// sseStream is an HTTP client reading an event stream, as EventSource
// does (net/http undoes the chunked framing).
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	done   chan struct{}
	err    error
}

func openSSE(t testing.TB, n *node, query string, header http.Header) (*sseStream, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, n.httpURL("/sse?"+query), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range header {
		req.Header[k] = v
	}
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET /sse?%s: %v", query, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		return nil, resp
	}
	st := &sseStream{resp: resp, events: make(chan sseEvent, 4096), done: make(chan struct{})}
	go st.read()
	t.Cleanup(func() { resp.Body.Close(); <-st.done })
	return st, resp
}

func (st *sseStream) read() {
	defer close(st.done)
	br := bufio.NewReader(st.resp.Body)
	var ev sseEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			st.err = err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data != nil || ev.event != "" {
				ev.data = strings.Join(data, "\n")
				st.events <- ev
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
			st.events <- sseEvent{event: "comment"}
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):])
		case strings.HasPrefix(line, "id: "):
			ev.id = line[len("id: "):]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[len("event: "):]
		case strings.HasPrefix(line, "retry: "):
		}
	}
}

// next returns the next event that is not a comment.
func (st *sseStream) next(t testing.TB) sseEvent {
	t.Helper()
	for {
		select {
		case ev := <-st.events:
			if ev.event == "comment" {
				continue
			}
			return ev
		case <-st.done:
			t.Fatalf("stream ended: %v", st.err)
		case <-time.After(waitFor):
			t.Fatalf("no event within %v", waitFor)
		}
	}
}

// sseMsg is an event's data.
type sseMsg struct {
	Topic  string          `json:"topic"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Data   json.RawMessage `json:"data"`
}

func decodeSSE(t testing.TB, ev sseEvent) sseMsg {
	t.Helper()
	var m sseMsg
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		t.Fatalf("event data %q: %v", ev.data, err)
	}
	return m
}

func TestSSEStreamsMessages(t *testing.T) {
	n := startNode(t, historyConfig(t, 100))
	hc := newHTTPClient(t)
	st, resp := openSSE(t, n, "topics=plain,chat.s", nil)
	if st == nil {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if !slicesContains(resp.TransferEncoding, "chunked") {
		t.Errorf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
	}
	// The 200 comes once the topics are live: a publish now reaches it.
	publishOK(t, hc, n, "plain", "application/json", []byte("{\n \"x\": 1\n}"))
	ev := st.next(t)
	m := decodeSSE(t, ev)
	if ev.id != "" || ev.event != "" || m.Topic != "plain" || m.Offset != 0 || string(m.Data) != `{  "x": 1 }` {
		t.Fatalf("plain event %+v → %+v", ev, m)
	}
	a := publishHist(t, hc, n, "chat.s", "hi")
	ev = st.next(t)
	m = decodeSSE(t, ev)
	if ev.id != fmt.Sprintf("%s:%d", a.Epoch, a.Offset) || m.Topic != "chat.s" || m.Offset != 1 || string(m.Data) != `"hi"` {
		t.Fatalf("history event %+v → %+v, want id %s:1", ev, m, a.Epoch)
	}
	// A MessagePack publish arrives as JSON.
	publishOK(t, hc, n, "plain", "application/msgpack", []byte{0x81, 0xa1, 'k', 0x07})
	if m := decodeSSE(t, st.next(t)); string(m.Data) != `{"k":7}` {
		t.Fatalf("msgpack publish as SSE: %s", m.Data)
	}
	if got := scrape(t, hc, n, `subsock_transport_connections{transport="sse"}`); got != 1 {
		t.Fatalf("sse connections gauge %v, want 1", got)
	}
	if s := n.g.Stats(); s.SSEStreams != 1 || s.Connections != 0 || s.Subscriptions != 2 {
		t.Fatalf("stats %+v", s)
	}
	st.resp.Body.Close()
	eventually(t, "the stream's subscriptions gone", func() bool {
		s := n.g.Stats()
		return s.SSEStreams == 0 && s.Subscriptions == 0
	})
}

func slicesContains(l []string, v string) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// TestSSEResume: a browser's automatic reconnect sends Last-Event-ID and
// resumes right after it; since= and last= work on any stream; a position
// that is gone gives event: lost and live.
func TestSSEResume(t *testing.T) {
	n := startNode(t, historyConfig(t, 5))
	hc := newHTTPClient(t)
	var epoch string
	for i := 1; i <= 8; i++ {
		epoch = publishHist(t, hc, n, "chat.r", i).Epoch
	}
	offsets := func(st *sseStream, k int) []uint64 {
		var got []uint64
		for range k {
			got = append(got, decodeSSE(t, st.next(t)).Offset)
		}
		return got
	}
	st, _ := openSSE(t, n, "topics=chat.r,plain", http.Header{"Last-Event-ID": {epoch + ":5"}})
	if got := offsets(st, 3); fmt.Sprint(got) != "[6 7 8]" {
		t.Fatalf("Last-Event-ID %s:5 replayed %v", epoch, got)
	}
	st, _ = openSSE(t, n, "topics=chat.r&since=chat.r:"+epoch+":6", nil)
	if got := offsets(st, 2); fmt.Sprint(got) != "[7 8]" {
		t.Fatalf("since 6 replayed %v", got)
	}
	st, _ = openSSE(t, n, "topics=chat.r&last=2", nil)
	if got := offsets(st, 2); fmt.Sprint(got) != "[7 8]" {
		t.Fatalf("last 2 replayed %v", got)
	}
	// A browser reconnects with the same URL: its Last-Event-ID is newer
	// than the URL's since.
	st, _ = openSSE(t, n, "topics=chat.r&since=chat.r:"+epoch+":4", http.Header{"Last-Event-ID": {epoch + ":7"}})
	if got := offsets(st, 1); fmt.Sprint(got) != "[8]" {
		t.Fatalf("since 4 with Last-Event-ID 7 replayed %v, want [8]", got)
	}
	// Two history topics: an id does not say where the other one was, so
	// both are answered lost rather than resumed from a stale place.
	publishHist(t, hc, n, "chat.q", 1)
	st, _ = openSSE(t, n, "topics=chat.r,chat.q", http.Header{"Last-Event-ID": {epoch + ":7"}})
	lost := map[string]bool{}
	for range 2 {
		ev := st.next(t)
		if ev.event != "lost" {
			t.Fatalf("two history topics with Last-Event-ID: %+v, want lost events", ev)
		}
		lost[decodeSSE(t, ev).Topic] = true
	}
	if !lost["chat.r"] || !lost["chat.q"] {
		t.Fatalf("lost events for %v, want both topics", lost)
	}
	st, _ = openSSE(t, n, "topics=chat.r", http.Header{"Last-Event-ID": {"stale:3"}})
	ev := st.next(t)
	m := decodeSSE(t, ev)
	if ev.event != "lost" || m.Topic != "chat.r" || m.Offset != 8 || m.Epoch != epoch {
		t.Fatalf("stale Last-Event-ID: %+v %+v, want event lost at 8", ev, m)
	}
	publishHist(t, hc, n, "chat.r", 9)
	if ev := st.next(t); ev.event != "" || decodeSSE(t, ev).Offset != 9 {
		t.Fatalf("live after lost: %+v", ev)
	}
}

func TestSSERefusals(t *testing.T) {
	cfg := historyConfig(t, 5)
	cfg.Security.AllowedOrigins = "good.example"
	cfg.Security.JWT.Secret = []byte("k")
	cfg.Security.AllowAnonymous = true
	cfg.Security.AnonymousSubs = []string{"open.>"}
	n := startNode(t, cfg)
	for _, tc := range []struct {
		query  string
		header http.Header
		status int
	}{
		{"", nil, http.StatusBadRequest},
		{"topics=a..b", nil, http.StatusBadRequest},
		{"topics=secret", nil, http.StatusForbidden},
		{"topics=open.a", http.Header{"Origin": {"http://evil.example"}}, http.StatusForbidden},
		{"topics=open.a&since=open.a:x", nil, http.StatusBadRequest},
		{"topics=open.a&since=other:e:1", nil, http.StatusBadRequest},
		{"topics=open.a&last=-1", nil, http.StatusBadRequest},
		{"topics=open.a&token=garbage", nil, http.StatusUnauthorized},
	} {
		st, resp := openSSE(t, n, tc.query, tc.header)
		if st != nil || resp.StatusCode != tc.status {
			t.Errorf("%q %v: status %d, want %d", tc.query, tc.header, resp.StatusCode, tc.status)
			continue
		}
		if b, _ := io.ReadAll(resp.Body); len(strings.TrimSpace(string(b))) == 0 {
			t.Errorf("%q: %d without a reason", tc.query, tc.status)
		}
	}
	// An allowed origin gets CORS headers for credentialed EventSource.
	st, resp := openSSE(t, n, "topics=open.a", http.Header{"Origin": {"http://good.example"}})
	if st == nil {
		t.Fatalf("allowed origin: %d", resp.StatusCode)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "http://good.example" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("CORS headers %v", resp.Header)
	}
}

// TestSSEDrainAndHeartbeat: comments every ping interval; a drain ends
// the stream with event: close.
func TestSSEDrainAndHeartbeat(t *testing.T) {
	n := startNode(t, gateway.Config{PingInterval: 200 * time.Millisecond, PingTimeout: 400 * time.Millisecond})
	st, _ := openSSE(t, n, "topics=a", nil)
	comments := 0
	deadline := time.After(waitFor)
	for comments < 3 {
		select {
		case ev := <-st.events:
			if ev.event == "comment" {
				comments++
			}
		case <-st.done:
			t.Fatalf("stream ended after %d heartbeats (silence must not close a stream): %v", comments, st.err)
		case <-deadline:
			t.Fatalf("%d heartbeats within %v", comments, waitFor)
		}
	}
	go func() { _ = n.shutdown() }()
	for {
		ev := st.next(t)
		if ev.event == "close" {
			break
		}
	}
	<-st.done
	if st.err != io.EOF {
		t.Fatalf("stream after close: %v, want a clean end (EOF)", st.err)
	}
}

// TestSSESlowConsumer: a stalled SSE reader is cut at -max-pending while
// 100 SSE and WebSocket subscribers of the same topic get every message.
func TestSSESlowConsumer(t *testing.T) {
	cfg := gateway.Config{Poller: poller.Config{MaxPending: 256 << 10}}
	cfg.Poller.SendBuffer = 16 << 10
	n := startNode(t, cfg)
	hc := newHTTPClient(t)

	// The stalled reader: a raw socket that sends the request and never reads.
	nc, err := (&net.Dialer{}).Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	fmt.Fprintf(nc, "GET /sse?topics=slow HTTP/1.1\r\nHost: x\r\n\r\n")
	eventually(t, "the stalled stream subscribed", func() bool { return n.g.Stats().Subscriptions == 1 })

	const each = 50
	var streams []*sseStream
	var wss []*wsClient
	for i := 0; i < each; i++ {
		st, resp := openSSE(t, n, "topics=slow", nil)
		if st == nil {
			t.Fatalf("stream %d: %d", i, resp.StatusCode)
		}
		streams = append(streams, st)
		c := dialWS(t, n, codecJSON)
		c.subscribe(t, 1, "slow")
		wss = append(wss, c)
	}
	payload := []byte(`"` + strings.Repeat("x", 16<<10) + `"`)
	const msgs = 40 // 640 KiB: past the stalled reader's 256 KiB queue
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for _, st := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < msgs; i++ {
				select {
				case ev := <-st.events:
					if ev.event == "comment" {
						i--
						continue
					}
					if !strings.Contains(ev.data, `"topic":"slow"`) {
						errs <- fmt.Errorf("event %q", ev.data)
						return
					}
				case <-time.After(waitFor):
					errs <- fmt.Errorf("SSE subscriber got %d of %d", i, msgs)
					return
				}
			}
		}()
	}
	for _, c := range wss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < msgs; i++ {
				select {
				case m := <-c.in:
					if r, err := c.codec.decodeReply(m.data); err != nil || r.op != "msg" {
						errs <- fmt.Errorf("ws got %v %v", r, err)
						return
					}
				case <-time.After(waitFor):
					errs <- fmt.Errorf("WebSocket subscriber got %d of %d", i, msgs)
					return
				}
			}
		}()
	}
	for i := 0; i < msgs; i++ {
		publishOK(t, hc, n, "slow", "application/json", payload)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, "the stalled stream cut as a slow consumer", func() bool {
		return scrape(t, hc, n, "subsock_slow_consumer_closes_total") == 1
	})
}

// TestSSETokenExpiryAndCookie: a stream authenticated by -token-cookie
// ends with event: close and the last chunk when its token expires.
func TestSSETokenExpiryAndCookie(t *testing.T) {
	cfg := gateway.Config{}
	cfg.Security.JWT.Secret = []byte("sse-secret")
	cfg.Security.TokenCookie = "subsock_token"
	n := startNode(t, cfg)
	tok := mint(t, signer{method: jwt.SigningMethodHS256, key: []byte("sse-secret")}, "", claims([]string{"feed.>"}, nil, 2*time.Second, nil))
	if st, resp := openSSE(t, n, "topics=feed.a", nil); st != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", resp.StatusCode)
	}
	if st, resp := openSSE(t, n, "topics=other", http.Header{"Cookie": {"subsock_token=" + tok}}); st != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a topic the token does not grant: %d, want 403", resp.StatusCode)
	}
	st, resp := openSSE(t, n, "topics=feed.a", http.Header{"Cookie": {"other=1; subsock_token=" + tok}})
	if st == nil {
		t.Fatalf("token in the cookie: %d", resp.StatusCode)
	}
	for {
		ev := st.next(t)
		if ev.event == "close" {
			if ev.data != "token expired" {
				t.Fatalf("close event %q", ev.data)
			}
			break
		}
	}
	<-st.done
	if st.err != io.EOF {
		t.Fatalf("stream after the token expired: %v, want a clean end", st.err)
	}
}

// TestSSENothingBeforeTheHead: heartbeats every few milliseconds and
// messages published while streams are being answered never come before a
// stream's 200 (they would make the response unreadable).
func TestSSENothingBeforeTheHead(t *testing.T) {
	srv := testserver.Redis(t)
	n := startNode(t, gateway.Config{Broker: srv.URL, PingInterval: 20 * time.Millisecond, PingTimeout: time.Minute})
	hc := newHTTPClient(t)
	stop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = publish(t, hc, n, fmt.Sprintf("head.%d", i%50), "application/json", []byte("1"))
		}
	}()
	defer func() { close(stop); <-pubDone }()
	for i := 0; i < 300; i++ {
		nc, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(nc, "GET /sse?topics=head.%d,fresh.%d HTTP/1.1\r\nHost: x\r\n\r\n", i%50, i)
		_ = nc.SetReadDeadline(time.Now().Add(waitFor))
		br := bufio.NewReader(nc)
		line, err := br.ReadString('\n')
		nc.Close()
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200 ") {
			t.Fatalf("stream %d began with %q (%v), want the status line", i, line, err)
		}
	}
}
