package gateway_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/gateway"
)

// gatedJWKS is an identity provider whose key rotation can be held: while
// gate is set, a fetch blocks until it is opened.
type gatedJWKS struct {
	url  string
	doc  atomic.Pointer[[]byte]
	gate atomic.Pointer[chan struct{}]
	hits atomic.Int64
}

func newGatedJWKS(t testing.TB) *gatedJWKS {
	t.Helper()
	g := &gatedJWKS{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.hits.Add(1)
		if ch := g.gate.Load(); ch != nil {
			select {
			case <-*ch:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*g.doc.Load())
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL + "/jwks.json"
	return g
}

// set publishes the keys (kid -> P-256 public key).
func (g *gatedJWKS) set(t testing.TB, keys map[string]*ecdsa.PublicKey) {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	var list []map[string]string
	for kid, pub := range keys {
		pt, err := pub.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, map[string]string{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
			"kid": kid, "x": enc(pt[1:33]), "y": enc(pt[33:])})
	}
	doc, err := json.Marshal(map[string]any{"keys": list})
	if err != nil {
		t.Fatal(err)
	}
	g.doc.Store(&doc)
}

// TestE2EHandshakeWaitsForKeysOffHandler: upgrades whose token names a kid
// the node has not fetched yet are parked, not served by a handler blocked
// on the key server. While the key server hangs, the node keeps answering
// other clients, holds no goroutine per parked handshake, and each parked
// connection's pipelined sub waits behind its handshake; once the key
// arrives every handshake is answered 101 and its sub acknowledged, and a
// made-up kid gets 401.
func TestE2EHandshakeWaitsForKeysOffHandler(t *testing.T) {
	const parked = 200
	old, rotated := genEC(t), genEC(t)
	idp := newGatedJWKS(t)
	idp.set(t, map[string]*ecdsa.PublicKey{"old": &old.PublicKey})
	n := startNode(t, gateway.Config{Security: gateway.SecurityConfig{JWT: auth.Config{JWKSURL: idp.url, JWKSRefresh: time.Hour}}})
	hc := newHTTPClient(t)

	live := mustDial(t, n, queryToken(mint(t, signer{jwt.SigningMethodES256, old}, "old", claims([]string{">"}, nil, time.Hour, nil))))
	live.subscribe(t, 1, "kw.live")

	// The provider rotates, but its next answer hangs until the gate opens.
	idp.set(t, map[string]*ecdsa.PublicKey{"old": &old.PublicKey, "new": &rotated.PublicKey})
	gate := make(chan struct{})
	idp.gate.Store(&gate)
	fresh := mint(t, signer{jwt.SigningMethodES256, rotated}, "new", claims([]string{">"}, nil, time.Hour, nil))

	baseGoroutines := runtime.NumGoroutine()
	conns := make([]net.Conn, parked)
	for i := range conns {
		nc, err := net.DialTimeout("tcp", n.addr, waitFor)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		// The upgrade and a sub behind it, in one write.
		req := keyWaitUpgrade(n.addr, fresh) + string(frame(opText, []byte(fmt.Sprintf(`{"op":"sub","id":7,"topics":["kw.%d"]}`, i))))
		if _, err := io.WriteString(nc, req); err != nil {
			t.Fatal(err)
		}
		conns[i] = nc
	}
	eventually(t, "every handshake to be parked", func() bool {
		return scrape(t, hc, n, "subsock_handshake_key_waits_total") == parked
	})
	// The node still serves everyone else, with one refresh goroutine for
	// all the parked handshakes.
	for i := uint64(0); i < 5; i++ {
		start := time.Now()
		expectPong(t, live, 100+i)
		t.Logf("ping while %d handshakes wait for the key server: %v", parked, time.Since(start).Round(time.Microsecond))
	}
	grew := runtime.NumGoroutine() - baseGoroutines
	t.Logf("goroutines: %d before the parked handshakes, %+d with %d parked", baseGoroutines, grew, parked)
	if grew > 20 {
		t.Fatalf("%d goroutines more with %d handshakes parked: something waits per connection", grew, parked)
	}
	for _, nc := range conns[:10] {
		_ = nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		var b [1]byte
		if k, err := nc.Read(b[:]); k != 0 || !isTimeout(err) {
			t.Fatalf("a parked handshake was answered before the key arrived: %d bytes, %v", k, err)
		}
	}

	hitsParked := idp.hits.Load()
	close(gate)
	var wg sync.WaitGroup
	errs := make(chan error, parked)
	for i, nc := range conns {
		wg.Go(func() {
			if err := keyWaitExpectUpgradeAndAck(nc, 7); err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := idp.hits.Load(); got != 2 {
		t.Errorf("the key server was asked %d times (%d while the handshakes were parked), want 2 (start + one refresh for all %d handshakes)", got, hitsParked, parked)
	}
	if got := publishOK(t, hc, n, "kw.3", "application/json", []byte(`"after rotation"`)); got != 1 {
		t.Fatalf("publish to kw.3 reached %d subscribers, want 1", got)
	}

	// A kid the provider never published: 401 once the refresh is spent.
	bogus := mint(t, signer{jwt.SigningMethodES256, genEC(t)}, "bogus", claims([]string{">"}, nil, time.Hour, nil))
	if _, ref := tryDial(t, n, queryToken(bogus)); ref == nil || ref.status != http.StatusUnauthorized {
		t.Fatalf("made-up kid: refusal %+v, want 401", ref)
	}
}

func keyWaitUpgrade(host, token string) string {
	var k [16]byte
	_, _ = rand.Read(k[:])
	return "GET /ws?token=" + token + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(k[:]) + "\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: subsock.v1.json\r\n\r\n"
}

// keyWaitExpectUpgradeAndAck reads a 101 and then the ack of sub id.
func keyWaitExpectUpgradeAndAck(nc net.Conn, id uint64) error {
	_ = nc.SetReadDeadline(time.Now().Add(waitFor))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("status %d, want 101", resp.StatusCode)
	}
	for {
		f, err := readFrame(br)
		if err != nil {
			return err
		}
		if f.op == opPing {
			continue
		}
		r, err := codecJSON.decodeReply(f.payload)
		if err != nil || r.op != "ack" || r.id != id {
			return fmt.Errorf("reply %q (%v), want ack %d", f.payload, err, id)
		}
		return nil
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
