package gateway_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/subsock/subsock/auth"
	"github.com/subsock/subsock/gateway"
)

// ---------------------------------------------------------------- tokens

// secSecret is the HS256 secret of the token tests' nodes.
var secSecret = []byte("subsock-e2e-secret-0123456789abcdef")

// signer is a signing method and the private key (or secret) it uses.
type signer struct {
	method jwt.SigningMethod
	key    any
}

var hs256 = signer{jwt.SigningMethodHS256, secSecret}

// claims builds a token's claims: subject, subs and pubs grants, and an
// expiry ttl from now (none when ttl is 0). extra adds or overrides claims.
func claims(subs, pubs []string, ttl time.Duration, extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "e2e"}
	if subs != nil {
		c["subs"] = subs
	}
	if pubs != nil {
		c["pubs"] = pubs
	}
	if ttl != 0 {
		c["exp"] = time.Now().Add(ttl).Unix()
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// mint signs c with s, naming kid in the header unless it is empty.
func mint(t testing.TB, s signer, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	out, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatalf("signing a %s token: %v", s.method.Alg(), err)
	}
	return out
}

// mintNone builds an unsigned token (alg "none").
func mintNone(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	out, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tamper rewrites a signed token's claims with edit and keeps the original
// signature: what a client trying to widen its own grants would send.
func tamper(t testing.TB, token string, edit func(jwt.MapClaims)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", token, len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.MapClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	edit(c)
	raw, err = json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

// flipSignature changes one character in the middle of the signature.
func flipSignature(token string) string {
	i := strings.LastIndexByte(token, '.') + 10
	c := byte('A')
	if token[i] == 'A' {
		c = 'B'
	}
	return token[:i] + string(c) + token[i+1:]
}

func genRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func genEC(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writePublicPEM writes pub as a PKIX PEM file named name in dir and
// returns its path and contents.
func writePublicPEM(t testing.TB, dir, name string, pub any) (string, []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// serveJWKS serves a JWK Set holding pub (a P-256 key) under kid, as an
// identity provider would; the server outlives every node started after it.
func serveJWKS(t testing.TB, kid string, pub *ecdsa.PublicKey) (string, []byte) {
	t.Helper()
	pt, err := pub.Bytes() // 0x04 || X || Y, each 32 bytes
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	doc, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
		"x": enc(pt[1:33]), "y": enc(pt[33:]),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/.well-known/jwks.json", doc
}

// ---------------------------------------------------------------- handshakes

// secHTTP dials WebSocket handshakes. Keep-alives are off so a refused
// handshake's connection, which the node closes, is never reused.
var secHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// hello is how a test client presents itself at the upgrade.
type hello struct {
	token  string // sent as ?token=
	bearer string // sent as Authorization: Bearer
	authz  string // a raw Authorization value, when bearer is empty
	origin string
	codec  wireCodec // zero: JSON
}

func queryToken(tok string) hello  { return hello{token: tok} }
func bearerToken(tok string) hello { return hello{bearer: tok} }

// refusal is a handshake the node answered with something other than 101.
type refusal struct {
	status int
	header http.Header
	body   string
}

// tryDial performs the upgrade; on 101 it returns a running client, on any
// other status the refusal. A failure to reach the node fails the test.
func tryDial(t testing.TB, n *node, h hello) (*wsClient, *refusal) {
	t.Helper()
	c := h.codec
	if c.name == "" {
		c = codecJSON
	}
	u := n.wsURL()
	if h.token != "" {
		u += "?token=" + url.QueryEscape(h.token)
	}
	opts := &websocket.DialOptions{HTTPClient: secHTTP, HTTPHeader: http.Header{}}
	if c.offer != "" {
		opts.Subprotocols = []string{c.offer}
	}
	switch {
	case h.bearer != "":
		opts.HTTPHeader.Set("Authorization", "Bearer "+h.bearer)
	case h.authz != "":
		opts.HTTPHeader.Set("Authorization", h.authz)
	}
	if h.origin != "" {
		opts.HTTPHeader.Set("Origin", h.origin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
			t.Fatalf("dial %s: %v", u, err)
		}
		body, _ := io.ReadAll(resp.Body)
		return nil, &refusal{status: resp.StatusCode, header: resp.Header, body: string(body)}
	}
	if got := conn.Subprotocol(); got != c.want {
		t.Fatalf("negotiated subprotocol %q, want %q", got, c.want)
	}
	return runClient(t, conn, c), nil
}

// runClient starts the reader of a connected client, as dialWS does.
func runClient(t testing.TB, conn *websocket.Conn, c wireCodec) *wsClient {
	t.Helper()
	conn.SetReadLimit(1 << 20)
	rctx, stop := context.WithCancel(context.Background())
	cl := &wsClient{t: t, codec: c, conn: conn, in: make(chan wsMsg, 1024), done: make(chan struct{}), stop: stop}
	go cl.read(rctx)
	t.Cleanup(cl.close)
	return cl
}

// mustDial connects or fails the test with the refusal.
func mustDial(t testing.TB, n *node, h hello) *wsClient {
	t.Helper()
	cl, ref := tryDial(t, n, h)
	if ref != nil {
		t.Fatalf("handshake refused: %d %q", ref.status, ref.body)
	}
	return cl
}

// expectRefused asserts the node refuses the upgrade with status and a
// body that contains reason.
func expectRefused(t testing.TB, n *node, h hello, status int, reason string) *refusal {
	t.Helper()
	cl, ref := tryDial(t, n, h)
	if ref == nil {
		cl.close()
		t.Fatalf("handshake accepted, want %d (%s)", status, reason)
	}
	if ref.status != status || !strings.Contains(ref.body, reason) {
		t.Fatalf("handshake refused with %d %q, want %d with %q", ref.status, ref.body, status, reason)
	}
	return ref
}

// ---------------------------------------------------------------- replies

// expectErr sends env and waits for an err reply with id and code.
func expectErr(t testing.TB, cl *wsClient, id uint64, code string, env envelope) reply {
	t.Helper()
	cl.sendEnv(t, env)
	r := cl.next(t)
	if r.op != "err" || !r.hasID || r.id != id || r.code != code || r.msg == "" {
		t.Fatalf("reply to %v: %v, want err id %d code %s with a message", env, r, id, code)
	}
	return r
}

// expectPong proves the connection is still open and served: a ping is
// answered after everything sent before it.
func expectPong(t testing.TB, cl *wsClient, id uint64) {
	t.Helper()
	cl.sendEnv(t, envelope{{"op", "ping"}, {"id", id}})
	if r := cl.next(t); r.op != "pong" || r.id != id {
		t.Fatalf("ping %d: %v, want pong %d", id, r, id)
	}
}

// expectMsg waits for the next message and checks its topic and data.
func expectMsg(t testing.TB, cl *wsClient, topic string, data any) {
	t.Helper()
	if r := cl.next(t); r.op != "msg" || r.topic != topic || r.data != data {
		t.Fatalf("got %v, want msg on %s with %v", r, topic, data)
	}
}

// expectAckAndMsg publishes data on topic, to which cl is subscribed, and
// waits for both the ack and the message, which may come in either order.
func expectAckAndMsg(t testing.TB, cl *wsClient, id uint64, topic string, data any) {
	t.Helper()
	cl.sendEnv(t, pub(id, topic, data))
	gotAck, gotMsg := false, false
	for !gotAck || !gotMsg {
		r := cl.next(t)
		switch {
		case r.op == "ack" && r.id == id && !gotAck:
			gotAck = true
		case r.op == "msg" && r.topic == topic && r.data == data && !gotMsg:
			gotMsg = true
		default:
			t.Fatalf("publishing to %s: got %v, want ack %d and the message", topic, r, id)
		}
	}
}

func sub(id uint64, topics ...string) envelope {
	return envelope{{"op", "sub"}, {"id", id}, {"topics", topics}}
}

func pub(id uint64, topic string, data any) envelope {
	return envelope{{"op", "pub"}, {"id", id}, {"topic", topic}, {"data", data}}
}

func authEnv(id uint64, token string) envelope {
	return envelope{{"op", "auth"}, {"id", id}, {"token", token}}
}

func jwtNode(t testing.TB, jc auth.Config, sec gateway.SecurityConfig) *node {
	t.Helper()
	sec.JWT = jc
	return startNode(t, gateway.Config{Security: sec})
}

// ---------------------------------------------------------------- tests

// TestE2ESecurityTokens: the handshake accepts a valid HS256 token in the
// query or the Authorization header and refuses with 401 every token that
// is forged, altered, stale or meant for someone else.
func TestE2ESecurityTokens(t *testing.T) {
	const aud, iss = "subsock", "https://issuer.test"
	n := jwtNode(t, auth.Config{Secret: secSecret, Audience: aud, Issuer: iss}, gateway.SecurityConfig{})
	std := jwt.MapClaims{"aud": aud, "iss": iss}
	with := func(extra jwt.MapClaims) jwt.MapClaims {
		c := claims([]string{"tok.*"}, nil, time.Hour, std)
		for k, v := range extra {
			if v == nil {
				delete(c, k)
				continue
			}
			c[k] = v
		}
		return c
	}
	good := mint(t, hs256, "", with(nil))
	rsaKey := genRSA(t)
	cases := []struct {
		name   string
		hello  hello
		status int    // 101 or the refusal
		reason string // in the refusal's body
	}{
		{"query", queryToken(good), 101, ""},
		{"bearer", bearerToken(good), 101, ""},
		{"bearer_scheme_any_case", hello{authz: "bEaReR " + good}, 101, ""},
		{"no_exp_is_accepted", queryToken(mint(t, hs256, "", with(jwt.MapClaims{"exp": nil}))), 101, ""},
		{"no_token", hello{}, 401, "no token"},
		{"basic_auth_is_no_token", hello{authz: "Basic ZTJlOmUyZQ=="}, 401, "no token"},
		{"garbage", queryToken("not-a-token"), 401, "malformed"},
		{"tampered_claims", queryToken(tamper(t, good, func(c jwt.MapClaims) { c["subs"] = []string{">"} })), 401, "invalid signature"},
		{"tampered_expiry", bearerToken(tamper(t, good, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(1000 * time.Hour).Unix() })), 401, "invalid signature"},
		{"tampered_signature", queryToken(flipSignature(good)), 401, "invalid signature"},
		{"other_secret", queryToken(mint(t, signer{jwt.SigningMethodHS256, []byte("another secret, same length....")}, "", with(nil))), 401, "invalid signature"},
		{"expired", queryToken(mint(t, hs256, "", with(jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}))), 401, "token expired"},
		{"not_yet_valid", queryToken(mint(t, hs256, "", with(jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()}))), 401, "not valid yet"},
		{"alg_none", queryToken(mintNone(t, with(nil))), 401, "algorithm not allowed"},
		{"alg_none_bearer", bearerToken(mintNone(t, with(nil))), 401, "algorithm not allowed"},
		{"alg_rs256_on_hs256_node", queryToken(mint(t, signer{jwt.SigningMethodRS256, rsaKey}, "", with(nil))), 401, "algorithm not allowed"},
		{"alg_hs512", queryToken(mint(t, signer{jwt.SigningMethodHS512, secSecret}, "", with(nil))), 401, "algorithm not allowed"},
		{"wrong_audience", queryToken(mint(t, hs256, "", with(jwt.MapClaims{"aud": "someone-else"}))), 401, "wrong audience"},
		{"no_audience", queryToken(mint(t, hs256, "", with(jwt.MapClaims{"aud": nil}))), 401, "wrong audience"},
		{"wrong_issuer", queryToken(mint(t, hs256, "", with(jwt.MapClaims{"iss": "https://evil.test"}))), 401, "wrong issuer"},
		{"no_issuer", queryToken(mint(t, hs256, "", with(jwt.MapClaims{"iss": nil}))), 401, "wrong issuer"},
		{"bad_subs_pattern", queryToken(mint(t, hs256, "", with(jwt.MapClaims{"subs": []string{"a.>.b"}}))), 401, "bad topic pattern"},
		{"subs_wrong_type", queryToken(mint(t, hs256, "", with(jwt.MapClaims{"subs": "tok.*"}))), 401, "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status != http.StatusSwitchingProtocols {
				ref := expectRefused(t, n, tc.hello, tc.status, tc.reason)
				if got := ref.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Fatalf("401 with WWW-Authenticate %q, want a Bearer challenge", got)
				}
				return
			}
			cl := mustDial(t, n, tc.hello)
			// The token's grants are in force: tok.* but nothing else.
			cl.subscribe(t, 1, "tok.a")
			expectErr(t, cl, 2, "forbidden", sub(2, "other.a"))
		})
	}
	// Refused handshakes hold no connection.
	eventually(t, "the accepted clients to go", func() bool { return n.g.Stats().Connections == 0 })
}

// TestE2ESecurityKeySources: RS256 tokens verified with a PEM public key
// file and ES256 tokens verified with a key from a JWKS server are
// accepted; forged, unknown-key and algorithm-confusion tokens are not.
func TestE2ESecurityKeySources(t *testing.T) {
	rsaKey, ecKey := genRSA(t), genEC(t)
	pemPath, pemBytes := writePublicPEM(t, t.TempDir(), "rs1.pem", &rsaKey.PublicKey)
	jwksURL, jwksDoc := serveJWKS(t, "es1", &ecKey.PublicKey)
	rs256 := signer{jwt.SigningMethodRS256, rsaKey}
	es256 := signer{jwt.SigningMethodES256, ecKey}
	for _, src := range []struct {
		name     string
		cfg      auth.Config
		good     signer
		kid      string
		impostor signer   // same algorithm, a key the node does not know
		otherAlg signer   // the other asymmetric algorithm
		public   []byte   // public key material an attacker could use as an HMAC secret
		aliases  []string // other kids naming the key
	}{
		{"rs256_pem_file", auth.Config{PublicKeyFiles: []string{pemPath}}, rs256, "rs1",
			signer{jwt.SigningMethodRS256, genRSA(t)}, es256, pemBytes, []string{"rs1.pem"}},
		{"es256_jwks", auth.Config{JWKSURL: jwksURL}, es256, "es1",
			signer{jwt.SigningMethodES256, genEC(t)}, rs256, jwksDoc, nil},
	} {
		t.Run(src.name, func(t *testing.T) {
			n := jwtNode(t, src.cfg, gateway.SecurityConfig{})
			c := claims([]string{"keys.*"}, []string{"keys.*"}, time.Hour, nil)
			type keyCase struct {
				name   string
				token  string
				reason string // "" when the token must be accepted
			}
			cases := []keyCase{
				{"with_kid", mint(t, src.good, src.kid, c), ""},
				{"without_kid", mint(t, src.good, "", c), ""},
				{"impostor_same_kid", mint(t, src.impostor, src.kid, c), "invalid signature"},
				{"impostor_no_kid", mint(t, src.impostor, "", c), "invalid signature"},
				{"unknown_kid", mint(t, src.good, "nobody", c), "unknown signing key"},
				{"other_algorithm_same_kid", mint(t, src.otherAlg, src.kid, c), "algorithm not allowed"},
				// The classic confusion: HMAC keyed with the public key.
				{"hs256_keyed_with_public_key", mint(t, signer{jwt.SigningMethodHS256, src.public}, src.kid, c), "algorithm not allowed"},
				{"alg_none", mintNone(t, c), "algorithm not allowed"},
			}
			for _, kid := range src.aliases {
				cases = append(cases, keyCase{"kid_" + kid, mint(t, src.good, kid, c), ""})
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					if tc.reason != "" {
						expectRefused(t, n, bearerToken(tc.token), 401, tc.reason)
						return
					}
					cl := mustDial(t, n, bearerToken(tc.token))
					cl.subscribe(t, 1, "keys.a")
					expectAckAndMsg(t, cl, 2, "keys.a", "signed")
				})
			}
		})
	}
}

// TestE2ESecurityGrants: sub and pub outside the token's patterns are
// refused with forbidden, the rest of the request has no effect, and the
// connection stays usable. "*" is one segment, ">" one or more.
func TestE2ESecurityGrants(t *testing.T) {
	n := jwtNode(t, auth.Config{Secret: secSecret}, gateway.SecurityConfig{})
	hc := newHTTPClient(t)
	tok := mint(t, hs256, "", claims(
		[]string{"prices.*", "user.42.>", "alerts"},
		[]string{"chat.*", "user.42.>"}, time.Hour, nil))
	for _, c := range bothCodecs {
		t.Run(c.name, func(t *testing.T) {
			cl := mustDial(t, n, hello{token: tok, codec: c})
			const ok, forbidden, invalid = "", "forbidden", "invalid_topic"
			cases := []struct {
				env  envelope
				code string // ok: acknowledged
			}{
				{sub(1, "prices.AAPL"), ok},
				{sub(2, "prices.AAPL.bid"), forbidden}, // * is one segment
				{sub(3, "prices"), forbidden},          // and not zero
				{sub(4, "user.42.inbox"), ok},
				{sub(5, "user.42.inbox.urgent"), ok}, // > is the rest
				{sub(6, "user.42"), forbidden},       // > needs one segment
				{sub(7, "user.43.inbox"), forbidden},
				{sub(8, "alerts"), ok},
				{sub(9, "alerts.fire"), forbidden},
				{sub(10, "chat.lobby"), forbidden}, // pubs grant no subscription
				{sub(11, "prices.MSFT", "secrets.key"), forbidden},
				// Wildcards are not topics: a grant cannot be widened by
				// subscribing to a pattern it matches.
				{sub(12, "prices.*"), invalid},
				{sub(13, "user.42.>"), invalid},
				{sub(14, ">"), invalid},
				{pub(20, "chat.lobby", 1), ok},
				{pub(21, "chat.lobby.x", 1), forbidden},
				{pub(22, "prices.AAPL", 1), forbidden}, // subs grant no publish
				{pub(23, "user.42.out", 1), ok},
				{pub(24, "user.4.out", 1), forbidden},
				{pub(25, "chat.*", 1), invalid},
			}
			subs := 0
			for i, tc := range cases {
				id := tc.env[1].v.(uint64)
				if tc.code != ok {
					r := expectErr(t, cl, id, tc.code, tc.env)
					if tc.code == forbidden && !strings.Contains(r.msg, "not allowed") {
						t.Fatalf("forbidden message %q does not say why", r.msg)
					}
					expectPong(t, cl, 1000+uint64(i))
					continue
				}
				cl.expectAck(t, id, tc.env)
				if tc.env[0].v == "sub" {
					subs++
				}
			}
			// A request with one forbidden topic subscribed to none of them.
			if got := publishOK(t, hc, n, "prices.MSFT", c.contentType, c.encodeValue(t, "x")); got != 0 {
				t.Fatalf("prices.MSFT has %d subscribers after a refused request", got)
			}
			// Refused publishes were not delivered: the subscriber's next
			// message is the one published after them.
			if got := publishOK(t, hc, n, "user.42.inbox", c.contentType, c.encodeValue(t, "after")); got != 1 {
				t.Fatalf("user.42.inbox has %d subscribers, want 1", got)
			}
			expectMsg(t, cl, "user.42.inbox", "after")
			if got := n.g.Stats().Subscriptions; got != subs {
				t.Fatalf("node holds %d subscriptions, want the %d allowed", got, subs)
			}
			cl.close()
			eventually(t, "the client to go", func() bool { return n.g.Stats().Connections == 0 })
		})
	}
}

// TestE2ESecurityAnonymous: with -allow-anonymous a client without a token
// gets the anonymous patterns only (and a bad token is refused, not
// downgraded); without JWT the anonymous patterns bind every client.
func TestE2ESecurityAnonymous(t *testing.T) {
	anon := gateway.SecurityConfig{AllowAnonymous: true, AnonymousSubs: []string{"public.>"}}
	for _, tc := range []struct {
		name string
		jwt  auth.Config
	}{
		{"jwt_allow_anonymous", auth.Config{Secret: secSecret}},
		{"no_jwt", auth.Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := jwtNode(t, tc.jwt, anon)
			cl := mustDial(t, n, hello{})
			cl.subscribe(t, 1, "public.news")
			cl.subscribe(t, 2, "public.news.sport")
			expectErr(t, cl, 3, "forbidden", sub(3, "private.x"))
			expectErr(t, cl, 4, "forbidden", sub(4, "public")) // > needs a segment
			expectErr(t, cl, 5, "forbidden", pub(5, "public.news", "no anonymous pubs"))
			expectPong(t, cl, 6)

			if len(tc.jwt.Secret) == 0 {
				// Nothing to refresh on a node without tokens.
				r := expectErr(t, cl, 7, "bad_request", authEnv(7, mint(t, hs256, "", claims([]string{">"}, nil, time.Hour, nil))))
				if !strings.Contains(r.msg, "tokens") {
					t.Fatalf("auth on a tokenless node: %q", r.msg)
				}
				expectErr(t, cl, 8, "forbidden", sub(8, "private.x"))
				return
			}
			// A bad token is refused outright, never treated as none.
			expectRefused(t, n, queryToken(flipSignature(mint(t, hs256, "", claims([]string{">"}, nil, time.Hour, nil)))), 401, "invalid signature")
			// A token holder gets the token's grants, not the anonymous ones.
			priv := mint(t, hs256, "", claims([]string{"private.>"}, nil, time.Hour, nil))
			holder := mustDial(t, n, queryToken(priv))
			holder.subscribe(t, 1, "private.x")
			expectErr(t, holder, 2, "forbidden", sub(2, "public.news"))
			// An anonymous client may log in in band; its anonymous
			// subscriptions that the token does not cover are dropped.
			cl.sendEnv(t, authEnv(9, priv))
			if r := cl.next(t); r.op != "err" || r.hasID || r.code != "forbidden" ||
				!strings.Contains(r.msg, "public.news") || !strings.Contains(r.msg, "public.news.sport") {
				t.Fatalf("after logging in: %v, want an err without id naming public.news and public.news.sport", r)
			}
			if r := cl.next(t); r.op != "ack" || r.id != 9 {
				t.Fatalf("after logging in: %v, want ack 9", r)
			}
			cl.subscribe(t, 10, "private.x")
		})
	}
	t.Run("jwt_without_allow_anonymous", func(t *testing.T) {
		n := jwtNode(t, auth.Config{Secret: secSecret}, gateway.SecurityConfig{AnonymousSubs: []string{"public.>"}})
		expectRefused(t, n, hello{}, 401, "no token")
	})
}

// TestE2ESecurityRefresh: an in-band token refresh that widens the grants
// allows new topics at once; one that narrows them drops the subscriptions
// no longer allowed, says so before the ack, and stops their delivery. A
// refused refresh leaves the grants as they were.
func TestE2ESecurityRefresh(t *testing.T) {
	n := jwtNode(t, auth.Config{Secret: secSecret}, gateway.SecurityConfig{})
	hc := newHTTPClient(t)
	for _, c := range bothCodecs {
		t.Run(c.name, func(t *testing.T) {
			tok := func(subs ...string) string { return mint(t, hs256, "", claims(subs, nil, time.Hour, nil)) }
			cl := mustDial(t, n, hello{bearer: tok("a.*"), codec: c})
			cl.subscribe(t, 1, "a.1", "a.2")
			expectErr(t, cl, 2, "forbidden", sub(2, "b.1"))

			// Widen.
			cl.expectAck(t, 3, authEnv(3, tok("a.*", "b.*")))
			cl.subscribe(t, 4, "b.1")

			// Refused refreshes change nothing.
			expectErr(t, cl, 5, "forbidden", authEnv(5, tamper(t, tok("a.*"), func(cl jwt.MapClaims) { cl["subs"] = []string{">"} })))
			expectErr(t, cl, 6, "forbidden", authEnv(6, mint(t, hs256, "", claims([]string{">"}, nil, -time.Minute, nil))))
			expectErr(t, cl, 7, "forbidden", authEnv(7, mintNone(t, claims([]string{">"}, nil, time.Hour, nil))))
			expectErr(t, cl, 8, "forbidden", sub(8, "c.1"))
			if got := n.g.Stats().Subscriptions; got != 3 {
				t.Fatalf("%d subscriptions after refused refreshes, want 3", got)
			}

			// Narrow: a.1 and a.2 go, b.1 stays.
			cl.sendEnv(t, authEnv(9, tok("b.*")))
			r := cl.next(t)
			if r.op != "err" || r.hasID || r.code != "forbidden" ||
				!strings.Contains(r.msg, "a.1") || !strings.Contains(r.msg, "a.2") || strings.Contains(r.msg, "b.1") {
				t.Fatalf("narrowing refresh: %v, want an err without id naming a.1 and a.2 only", r)
			}
			if r := cl.next(t); r.op != "ack" || r.id != 9 {
				t.Fatalf("narrowing refresh: %v, want ack 9 after the err", r)
			}
			if got := n.g.Stats().Subscriptions; got != 1 {
				t.Fatalf("%d subscriptions after narrowing, want 1", got)
			}
			if got := publishOK(t, hc, n, "a.1", c.contentType, c.encodeValue(t, "dropped")); got != 0 {
				t.Fatalf("a.1 still has %d subscribers", got)
			}
			if got := publishOK(t, hc, n, "b.1", c.contentType, c.encodeValue(t, "kept")); got != 1 {
				t.Fatalf("b.1 has %d subscribers, want 1", got)
			}
			expectMsg(t, cl, "b.1", "kept") // nothing from a.1 before it
			expectErr(t, cl, 10, "forbidden", sub(10, "a.1"))
			cl.close()
			eventually(t, "the client to go", func() bool { return n.g.Stats().Connections == 0 })
		})
	}
}

// TestE2ESecurityTokenExpiry: a connection whose token expires is closed
// with 4001 once the heartbeat wheel visits it; one that refreshed in time
// stays open past the old expiry.
func TestE2ESecurityTokenExpiry(t *testing.T) {
	const ping = 100 * time.Millisecond // the wheel checks expiry once per interval
	n := startNode(t, gateway.Config{PingInterval: ping, Security: gateway.SecurityConfig{JWT: auth.Config{Secret: secSecret}}})
	hc := newHTTPClient(t)
	// exp has one-second precision: this one falls 2–3 s from now, time
	// enough for both handshakes on a loaded machine.
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second)
	short := mint(t, hs256, "", jwt.MapClaims{"subs": []string{">"}, "exp": exp.Unix()})
	lapsing := mustDial(t, n, queryToken(short))
	refreshed := mustDial(t, n, queryToken(short))
	lapsing.subscribe(t, 1, "exp.a")
	refreshed.subscribe(t, 1, "exp.a")
	refreshed.expectAck(t, 2, authEnv(2, mint(t, hs256, "", claims([]string{">"}, nil, time.Hour, nil))))

	code := lapsing.closeStatus(t)
	closedAt := time.Now()
	var ce websocket.CloseError
	if code != 4001 || !errors.As(lapsing.err, &ce) || ce.Reason != "token expired" {
		t.Fatalf("lapsing client ended with %v, want close 4001 \"token expired\"", lapsing.err)
	}
	if closedAt.Before(exp) {
		t.Fatalf("closed at %v, before the token's expiry %v", closedAt, exp)
	}
	t.Logf("closed %v after the expiry (ping interval %v)", closedAt.Sub(exp).Round(time.Millisecond), ping)

	// The refreshed client survives several wheel turns past the old exp.
	for i := uint64(10); time.Now().Before(exp.Add(5 * ping)); i++ {
		expectPong(t, refreshed, i)
	}
	if got := publishOK(t, hc, n, "exp.a", "application/json", []byte(`"still here"`)); got != 1 {
		t.Fatalf("exp.a has %d subscribers, want only the refreshed client", got)
	}
	expectMsg(t, refreshed, "exp.a", "still here")
	if got := scrape(t, hc, n, "subsock_token_expiry_closes_total"); got != 1 {
		t.Fatalf("subsock_token_expiry_closes_total = %v, want 1", got)
	}
}

// TestE2ESecurityAPIKey: POST /publish needs the API key as a Bearer token
// or in X-API-Key; WebSocket clients are not asked for it.
func TestE2ESecurityAPIKey(t *testing.T) {
	const key = "k-0123456789"
	n := startNode(t, gateway.Config{Security: gateway.SecurityConfig{APIKey: key}})
	hc := newHTTPClient(t)
	cl := dialWS(t, n, codecJSON)
	cl.subscribe(t, 1, "api.a")
	delivered := 0
	for _, tc := range []struct {
		name   string
		header map[string]string
		status int
	}{
		{"none", nil, 401},
		{"wrong_bearer", map[string]string{"Authorization": "Bearer wrong"}, 401},
		{"wrong_x_api_key", map[string]string{"X-API-Key": "wrong"}, 401},
		{"prefix_of_key", map[string]string{"X-API-Key": key[:len(key)-1]}, 401},
		{"key_with_suffix", map[string]string{"X-API-Key": key + "0"}, 401},
		{"basic_scheme", map[string]string{"Authorization": "Basic " + key}, 401},
		{"in_query_is_not_accepted", map[string]string{"?": "api_key=" + key}, 401},
		{"bearer", map[string]string{"Authorization": "Bearer " + key}, 200},
		{"bearer_any_case", map[string]string{"Authorization": "bearer " + key}, 200},
		{"x_api_key", map[string]string{"X-API-Key": key}, 200},
		{"wrong_bearer_right_x_api_key", map[string]string{"Authorization": "Bearer wrong", "X-API-Key": key}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := n.httpURL("/publish?topic=api.a")
			if q, ok := tc.header["?"]; ok {
				u += "&" + q
			}
			req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(`"`+tc.name+`"`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tc.header {
				if k != "?" {
					req.Header.Set(k, v)
				}
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("POST /publish: %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status == 401 {
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("401 without a Bearer challenge: %v", resp.Header)
				}
				return
			}
			delivered++
			expectMsg(t, cl, "api.a", tc.name)
		})
	}
	// Refused publishes reached nobody: the next message is a fresh one.
	req, _ := http.NewRequest(http.MethodPost, n.httpURL("/publish?topic=api.a"), strings.NewReader(`"last"`))
	req.Header.Set("X-API-Key", key)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	expectMsg(t, cl, "api.a", "last")
	if delivered != 4 {
		t.Fatalf("%d publishes accepted, want 4", delivered)
	}
}

// TestE2ESecurityOrigins: the Origin allow-list, and the same-host default
// that stops cross-site WebSocket hijacking.
func TestE2ESecurityOrigins(t *testing.T) {
	const self = "SELF" // stands for the node's own http://host:port
	for _, node := range []struct {
		allowed string
		cases   []struct {
			origin string
			status int
		}
	}{
		{"", []struct {
			origin string
			status int
		}{
			{"", 101},
			{self, 101},
			{"https://evil.example", 403},
			{"http://127.0.0.1:1", 403}, // same host, other port
			{"http://localhost", 403},
			{"null", 403},
		}},
		{"app.example.com", []struct {
			origin string
			status int
		}{
			{"https://app.example.com", 101},
			{"http://APP.Example.com", 101},
			{"", 101},
			{self, 101},
			{"https://evil.example", 403},
			{"https://app.example.com.evil.example", 403},
			{"https://evil-app.example.com", 403},
			{"https://app.example.com:8443", 403},
			{"https://app.example.com@evil.example", 403},
			{"null", 403},
		}},
		{"app.example.com, other.example:8443", []struct {
			origin string
			status int
		}{
			{"https://other.example:8443", 101},
			{"https://other.example", 403},
			{"https://app.example.com", 101},
		}},
		{"*", []struct {
			origin string
			status int
		}{
			{"https://evil.example", 101},
			{"null", 101},
		}},
	} {
		t.Run("allowed="+node.allowed, func(t *testing.T) {
			n := startNode(t, gateway.Config{Security: gateway.SecurityConfig{AllowedOrigins: node.allowed}})
			for _, tc := range node.cases {
				origin := tc.origin
				if origin == self {
					origin = "http://" + n.addr
				}
				t.Run(strconv.Quote(tc.origin), func(t *testing.T) {
					if tc.status == 403 {
						expectRefused(t, n, hello{origin: origin}, 403, "-allowed-origins")
						return
					}
					cl := mustDial(t, n, hello{origin: origin})
					expectPong(t, cl, 1)
				})
			}
		})
	}
}

// TestE2ESecurityMaxConns: past -max-conns the upgrade gets 503 with a
// Retry-After; a slot frees when a client leaves.
func TestE2ESecurityMaxConns(t *testing.T) {
	const max = 3
	n := startNode(t, gateway.Config{Security: gateway.SecurityConfig{MaxConns: max}})
	hc := newHTTPClient(t)
	var open []*wsClient
	for range max {
		open = append(open, mustDial(t, n, hello{}))
	}
	for range 3 {
		ref := expectRefused(t, n, hello{}, 503, "too many connections")
		ra, err := strconv.Atoi(ref.header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 5 {
			t.Fatalf("Retry-After %q, want whole seconds in [1, 5]", ref.header.Get("Retry-After"))
		}
	}
	// The HTTP API is not a WebSocket connection and is not capped.
	if got := publishOK(t, hc, n, "cap.a", "application/json", []byte(`1`)); got != 0 {
		t.Fatalf("publish reached %d", got)
	}
	open[0].close()
	eventually(t, "the node to see the client go", func() bool { return n.g.Stats().Connections == max-1 })
	expectPong(t, mustDial(t, n, hello{}), 1)
	expectRefused(t, n, hello{}, 503, "too many connections")
	if got := scrape(t, hc, n, "subsock_upgrade_rejects_total"); got != 4 {
		t.Fatalf("subsock_upgrade_rejects_total = %v, want 4", got)
	}
}

// TestE2ESecurityPublishRate: a client flooding publishes past
// -publish-rate gets rate_limited for the excess, which is not delivered,
// while another client's publishes all go through.
func TestE2ESecurityPublishRate(t *testing.T) {
	const rate, flood, calm = 50, 300, 40 // calm fits in its own burst of 50
	n := startNode(t, gateway.Config{Security: gateway.SecurityConfig{PublishRate: rate}})
	hc := newHTTPClient(t)
	watcher := dialWS(t, n, codecJSON)
	watcher.subscribe(t, 1, "rate.flood", "rate.calm", "rate.end")
	flooder := dialWS(t, n, codecMsgpack)
	other := dialWS(t, n, codecJSON)

	start := time.Now()
	for i := range flood {
		flooder.sendEnv(t, pub(uint64(i+1), "rate.flood", i))
		if i%(flood/calm) == 0 && i/(flood/calm) < calm {
			other.sendEnv(t, pub(uint64(i/(flood/calm)+1), "rate.calm", i))
		}
	}
	acked, limited := 0, 0
	for i := range flood {
		r := flooder.next(t)
		switch {
		case r.op == "ack" && r.id == uint64(i+1):
			acked++
		case r.op == "err" && r.id == uint64(i+1) && r.code == "rate_limited":
			limited++
			if !strings.Contains(r.msg, "50") {
				t.Fatalf("rate_limited message %q does not give the rate", r.msg)
			}
		default:
			t.Fatalf("flood reply %d: %v, want ack or rate_limited", i+1, r)
		}
	}
	elapsed := time.Since(start)
	for i := range calm {
		if r := other.next(t); r.op != "ack" || r.id != uint64(i+1) {
			t.Fatalf("calm client's publish %d: %v, want ack", i+1, r)
		}
	}
	t.Logf("flood of %d in %v: %d accepted, %d rate_limited", flood, elapsed.Round(time.Millisecond), acked, limited)
	// The bucket starts full (burst = rate) and refills at rate.
	if limited == 0 || acked < rate || float64(acked) > rate+rate*elapsed.Seconds()+1 {
		t.Fatalf("%d accepted, %d limited in %v at %d/s", acked, limited, elapsed, rate)
	}
	publishOK(t, hc, n, "rate.end", "application/json", []byte(`"end"`))
	got := map[string]int{}
	for {
		r := watcher.next(t)
		if r.op != "msg" {
			t.Fatalf("watcher got %v", r)
		}
		if r.topic == "rate.end" {
			break
		}
		got[r.topic]++
	}
	if got["rate.flood"] != acked || got["rate.calm"] != calm {
		t.Fatalf("delivered %v, want %d flood and %d calm", got, acked, calm)
	}
}

// TestE2ESecurityLimits: per-request and per-connection limits answer with
// their error codes and leave the connection usable; an oversized message
// closes it with 1009.
func TestE2ESecurityLimits(t *testing.T) {
	const maxTopics, maxSubs, maxMessage = 4, 6, 1024
	n := startNode(t, gateway.Config{MaxTopicsPerRequest: maxTopics, MaxSubsPerConn: maxSubs, MaxMessage: maxMessage})
	hc := newHTTPClient(t)
	topics := func(prefix string, k int) []string {
		out := make([]string, k)
		for i := range out {
			out[i] = fmt.Sprintf("%s.%d", prefix, i)
		}
		return out
	}
	for _, c := range bothCodecs {
		t.Run(c.name, func(t *testing.T) {
			cl := dialWS(t, n, c)
			expectErr(t, cl, 1, "too_large", sub(1, topics("lim", maxTopics+1)...))
			expectErr(t, cl, 2, "too_large", envelope{{"op", "unsub"}, {"id", 2}, {"topics", topics("lim", maxTopics+1)}})
			if got := n.g.Stats().Subscriptions; got != 0 {
				t.Fatalf("%d subscriptions after a too_large sub", got)
			}
			cl.subscribe(t, 3, topics("lim", maxTopics)...)
			cl.subscribe(t, 4, topics("more", maxSubs-maxTopics)...)
			expectErr(t, cl, 5, "too_many_subscriptions", sub(5, "one.more"))
			expectErr(t, cl, 6, "too_many_subscriptions", sub(6, "lim.0", "one.more")) // all or nothing
			cl.subscribe(t, 7, "lim.0", "more.0")                                      // held ones cost nothing
			expectPong(t, cl, 8)
			if got := publishOK(t, hc, n, "one.more", c.contentType, c.encodeValue(t, 1)); got != 0 {
				t.Fatalf("one.more has %d subscribers", got)
			}

			// A message of exactly maxMessage bytes is served...
			var env envelope
			for pad := maxMessage; ; pad-- { // string headers grow with the length
				env = pub(9, "lim.0", strings.Repeat("p", pad))
				if len(c.encode(t, env)) == maxMessage {
					break
				}
			}
			expectAckAndMsg(t, cl, 9, "lim.0", env[3].v)
			// ...one byte more closes the connection with 1009.
			cl.send(t, append(c.encode(t, env), make([]byte, 1)...))
			if code := cl.closeStatus(t); code != websocket.StatusMessageTooBig {
				t.Fatalf("oversized message: connection ended with %v (%v), want 1009", code, cl.err)
			}
			eventually(t, "the closed client's subscriptions to go", func() bool { return n.g.Stats().Subscriptions == 0 })
		})
	}
	status, body := publish(t, hc, n, "lim.0", "application/json", []byte(`"`+strings.Repeat("x", maxMessage)+`"`))
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized POST /publish: %d %q, want 413", status, body)
	}
}

// TestE2ESecurityAdmissionStorm: 5,000 clients connect at once against an
// admission rate of 1,000/s. Each refused client waits as its 503's
// Retry-After says and tries again; all get in, and none hangs.
func TestE2ESecurityAdmissionStorm(t *testing.T) {
	const clients, rate = 5000, 1000
	// attemptTimeout bounds one connect and handshake; stormDeadline is
	// the hang guard for the whole storm, far above the ~5 s it needs.
	const attemptTimeout, stormDeadline = 10 * time.Second, 60 * time.Second
	n := startNode(t, gateway.Config{Security: gateway.SecurityConfig{AcceptRate: rate}})
	var (
		retries  atomic.Int64
		maxTries atomic.Int64
		waits    [8]atomic.Int64 // refusals by Retry-After seconds (last: 7 and more)
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
	)
	start := time.Now()
	deadline := start.Add(stormDeadline)
	for i := range clients {
		wg.Go(func() {
			tries, err := stormClient(n.addr, deadline, attemptTimeout, func(wait int) {
				retries.Add(1)
				waits[min(wait, len(waits)-1)].Add(1)
			})
			for m := maxTries.Load(); int64(tries) > m && !maxTries.CompareAndSwap(m, int64(tries)); m = maxTries.Load() {
			}
			if err != nil {
				mu.Lock()
				failures = append(failures, fmt.Errorf("client %d after %d attempts: %w", i, tries, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	var hist []string
	for s := range waits {
		if v := waits[s].Load(); v > 0 {
			hist = append(hist, fmt.Sprintf("%ds:%d", s, v))
		}
	}
	t.Logf("%d clients admitted at %d/s in %v (the rate needs %v): %d retries honoured (%.2f attempts per client, at most %d); Retry-After values %v",
		clients-len(failures), rate, took.Round(time.Millisecond), time.Duration(clients/rate)*time.Second,
		retries.Load(), float64(int64(clients)+retries.Load())/clients, maxTries.Load(), strings.Join(hist, " "))
	if len(failures) > 0 {
		t.Fatalf("%d of %d clients never got in; first: %v", len(failures), clients, failures[0])
	}
	if retries.Load() == 0 {
		t.Fatalf("no client was refused: the admission rate was not applied")
	}
	eventually(t, "every storm connection to close", func() bool { return n.g.Stats().TCPConns == 0 })
}

// stormClient connects until admitted, honouring each refusal's
// Retry-After, and closes the connection once upgraded. onRetry is told
// each wait.
func stormClient(addr string, deadline time.Time, attemptTimeout time.Duration, onRetry func(int)) (int, error) {
	for tries := 1; ; tries++ {
		status, retryAfter, err := stormAttempt(addr, attemptTimeout)
		switch {
		case err != nil:
			return tries, err
		case status == http.StatusSwitchingProtocols:
			return tries, nil
		case status != http.StatusServiceUnavailable:
			return tries, fmt.Errorf("handshake status %d", status)
		}
		wait, err := strconv.Atoi(retryAfter)
		if err != nil || wait < 1 {
			return tries, fmt.Errorf("503 with Retry-After %q, want whole seconds", retryAfter)
		}
		onRetry(wait)
		d := time.Duration(wait) * time.Second
		if time.Now().Add(d).After(deadline) {
			return tries, fmt.Errorf("told to wait %v past the storm's deadline", d)
		}
		// This wait is the behaviour under test (a client honouring the
		// hint), not synchronisation.
		time.Sleep(d)
	}
}

// stormAttempt makes one raw upgrade request and returns the status and
// Retry-After of the answer.
func stormAttempt(addr string, timeout time.Duration) (int, string, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, "", err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(timeout))
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		return 0, "", errors.New("503 without Retry-After")
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}
