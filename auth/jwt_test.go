package auth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testAud = "subsock"
	testIss = "https://issuer.test"
)

// verifierCase is one key source; the shared body runs against each.
type verifierCase struct {
	name string
	// setup returns the key part of the Config, a signer the verifier
	// accepts and one with the same algorithm and kid but another key.
	setup func(t *testing.T) (cfg Config, good, other signer)
}

func verifierCases() []verifierCase {
	return []verifierCase{
		{"HS256 secret", func(t *testing.T) (Config, signer, signer) {
			return Config{Secret: []byte("s3cret-s3cret-s3cret-s3cret-s3cr")},
				signer{jwt.SigningMethodHS256, []byte("s3cret-s3cret-s3cret-s3cret-s3cr"), ""},
				signer{jwt.SigningMethodHS256, []byte("another-secret-another-secret-00"), ""}
		}},
		{"RS256 file with kid", func(t *testing.T) (Config, signer, signer) {
			return Config{PublicKeyFiles: []string{writePEM(t, "main.pem", &rsaKeys()[0].PublicKey)}},
				signer{jwt.SigningMethodRS256, rsaKeys()[0], "main"},
				signer{jwt.SigningMethodRS256, rsaKeys()[1], "main"}
		}},
		{"RS256 file without kid", func(t *testing.T) (Config, signer, signer) {
			return Config{PublicKeyFiles: []string{writePEM(t, "main.pem", &rsaKeys()[0].PublicKey)}},
				signer{jwt.SigningMethodRS256, rsaKeys()[0], ""},
				signer{jwt.SigningMethodRS256, rsaKeys()[1], ""}
		}},
		{"ES256 file", func(t *testing.T) (Config, signer, signer) {
			return Config{PublicKeyFiles: []string{writePEM(t, "ec.pem", &ecKeys()[0].PublicKey)}},
				signer{jwt.SigningMethodES256, ecKeys()[0], "ec.pem"},
				signer{jwt.SigningMethodES256, ecKeys()[1], "ec.pem"}
		}},
		{"RS256 JWKS", func(t *testing.T) (Config, signer, signer) {
			srv := newJWKSServer(t, jwksDoc(t, jwkOf(t, "r1", &rsaKeys()[0].PublicKey), jwkOf(t, "e1", &ecKeys()[0].PublicKey)))
			return Config{JWKSURL: srv.URL},
				signer{jwt.SigningMethodRS256, rsaKeys()[0], "r1"},
				signer{jwt.SigningMethodRS256, rsaKeys()[1], "r1"}
		}},
		{"ES256 JWKS", func(t *testing.T) (Config, signer, signer) {
			srv := newJWKSServer(t, jwksDoc(t, jwkOf(t, "r1", &rsaKeys()[0].PublicKey), jwkOf(t, "e1", &ecKeys()[0].PublicKey)))
			return Config{JWKSURL: srv.URL},
				signer{jwt.SigningMethodES256, ecKeys()[0], "e1"},
				signer{jwt.SigningMethodES256, ecKeys()[1], "e1"}
		}},
	}
}

func TestVerifier(t *testing.T) {
	for _, vc := range verifierCases() {
		t.Run(vc.name, func(t *testing.T) { testVerifier(t, vc) })
	}
}

// claims returns a valid claim set with the given overrides; a nil
// override deletes the claim.
func claims(over map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":  "u1",
		"aud":  testAud,
		"iss":  testIss,
		"exp":  time.Now().Add(time.Hour).Unix(),
		"subs": []string{"prices.*"},
		"pubs": []string{"user.u1.>"},
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func testVerifier(t *testing.T, vc verifierCase) {
	cfg, good, other := vc.setup(t)
	cfg.Audience, cfg.Issuer = testAud, testIss
	j, err := NewJWT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	var v Verifier = j

	valid := good.sign(t, claims(nil))
	parts := strings.Split(valid, ".")
	widened := good.sign(t, claims(map[string]any{"subs": []string{">"}}))
	forged := parts[0] + "." + strings.Split(widened, ".")[1] + "." + parts[2]
	sig := []byte(parts[2])
	if sig[len(sig)/2] == 'A' {
		sig[len(sig)/2] = 'B'
	} else {
		sig[len(sig)/2] = 'A'
	}
	badSig := parts[0] + "." + parts[1] + "." + string(sig)
	none := signer{jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good.kid}.sign(t, claims(nil))

	for _, tc := range []struct {
		name  string
		token string
		err   error
		check func(t *testing.T, c *Claims)
	}{
		{"valid", valid, nil, func(t *testing.T, c *Claims) {
			if c.Subject != "u1" {
				t.Errorf("Subject = %q", c.Subject)
			}
			if d := time.Until(c.Expires); d < 50*time.Minute || d > time.Hour {
				t.Errorf("Expires in %v", d)
			}
			if !c.Subs.Allows("prices.btc") || c.Subs.Allows("user.u1.x") {
				t.Errorf("Subs = %v", c.Subs)
			}
			if !c.Pubs.Allows("user.u1.inbox") || c.Pubs.Allows("prices.btc") {
				t.Errorf("Pubs = %v", c.Pubs)
			}
		}},
		{"no exp", good.sign(t, claims(map[string]any{"exp": nil})), nil, func(t *testing.T, c *Claims) {
			if !c.Expires.IsZero() {
				t.Errorf("Expires = %v, want zero", c.Expires)
			}
		}},
		{"aud list", good.sign(t, claims(map[string]any{"aud": []string{"other", testAud}})), nil, nil},
		{"no grants", good.sign(t, claims(map[string]any{"subs": nil, "pubs": nil})), nil, func(t *testing.T, c *Claims) {
			if c.Subs != nil || c.Pubs != nil || c.Subs.Allows("a") {
				t.Errorf("Subs %v Pubs %v, want nil", c.Subs, c.Pubs)
			}
		}},
		{"empty", "", ErrNoToken, nil},
		{"garbage", "not-a-token", ErrMalformed, nil},
		{"bad base64", "a.b.c", ErrMalformed, nil},
		{"subs not an array", good.sign(t, claims(map[string]any{"subs": "prices.*"})), ErrMalformed, nil},
		{"exp not a number", good.sign(t, claims(map[string]any{"exp": "tomorrow"})), ErrMalformed, nil},
		{"payload swapped", forged, ErrSignature, nil},
		{"signature flipped", badSig, ErrSignature, nil},
		{"other key", other.sign(t, claims(nil)), ErrSignature, nil},
		{"expired", good.sign(t, claims(map[string]any{"exp": time.Now().Add(-time.Minute).Unix()})), ErrExpired, nil},
		{"not yet valid", good.sign(t, claims(map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})), ErrNotYetValid, nil},
		{"alg none", none, ErrAlgorithm, nil},
		{"alg none unsigned", b64url(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + ".", ErrAlgorithm, nil},
		{"unknown alg", b64url(`{"alg":"HS999","typ":"JWT"}`) + "." + parts[1] + "." + parts[2], ErrAlgorithm, nil},
		{"wrong audience", good.sign(t, claims(map[string]any{"aud": "someone-else"})), ErrAudience, nil},
		{"missing audience", good.sign(t, claims(map[string]any{"aud": nil})), ErrAudience, nil},
		{"missing issuer", good.sign(t, claims(map[string]any{"iss": nil})), ErrIssuer, nil},
		{"wrong issuer", good.sign(t, claims(map[string]any{"iss": "https://evil.test"})), ErrIssuer, nil},
		{"bad sub pattern", good.sign(t, claims(map[string]any{"subs": []string{"ok", "a.>.b"}})), ErrBadPattern, nil},
		{"bad pub pattern", good.sign(t, claims(map[string]any{"pubs": []string{"a..b"}})), ErrBadPattern, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || c != nil {
					t.Fatalf("Verify = %+v, %v; want %v", c, err, tc.err)
				}
				if !strings.Contains(err.Error(), "auth: ") {
					t.Fatalf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestAlgorithmConfusion(t *testing.T) {
	rsaPub := &rsaKeys()[0].PublicKey
	der, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	srv := newJWKSServer(t, jwksDoc(t, jwkOf(t, "r1", rsaPub), jwkOf(t, "e1", &ecKeys()[0].PublicKey)))

	for _, tc := range []struct {
		name  string
		cfg   Config
		token string
	}{
		// The classic attack: the public key, which anyone has, used as
		// an HMAC secret against a verifier that only holds RSA keys.
		{"HS256 with the public PEM as secret", Config{PublicKeyFiles: []string{writePEM(t, "main.pem", rsaPub)}},
			signer{jwt.SigningMethodHS256, pemBytes, "main"}.sign(t, claims(nil))},
		{"HS256 with the public DER as secret", Config{PublicKeyFiles: []string{writePEM(t, "main.pem", rsaPub)}},
			signer{jwt.SigningMethodHS256, der, ""}.sign(t, claims(nil))},
		{"HS256 to JWKS", Config{JWKSURL: srv.URL},
			signer{jwt.SigningMethodHS256, pemBytes, "r1"}.sign(t, claims(nil))},
		{"ES256 to RS256 files", Config{PublicKeyFiles: []string{writePEM(t, "main.pem", rsaPub)}},
			signer{jwt.SigningMethodES256, ecKeys()[0], "main"}.sign(t, claims(nil))},
		{"ES256 naming an RSA kid", Config{JWKSURL: srv.URL},
			signer{jwt.SigningMethodES256, ecKeys()[0], "r1"}.sign(t, claims(nil))},
		{"RS256 naming an EC kid", Config{JWKSURL: srv.URL},
			signer{jwt.SigningMethodRS256, rsaKeys()[0], "e1"}.sign(t, claims(nil))},
		{"RS256 naming an EC file kid", Config{Secret: []byte("k"), PublicKeyFiles: []string{writePEM(t, "ec.pem", &ecKeys()[0].PublicKey), writePEM(t, "rsa.pem", rsaPub)}},
			signer{jwt.SigningMethodRS256, rsaKeys()[0], "ec"}.sign(t, claims(nil))},
		{"RS384 to RS256 files", Config{PublicKeyFiles: []string{writePEM(t, "main.pem", rsaPub)}},
			signer{jwt.SigningMethodRS384, rsaKeys()[0], "main"}.sign(t, claims(nil))},
		{"PS256 to RS256 files", Config{PublicKeyFiles: []string{writePEM(t, "main.pem", rsaPub)}},
			signer{jwt.SigningMethodPS256, rsaKeys()[0], "main"}.sign(t, claims(nil))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := NewJWT(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			if c, err := j.Verify(context.Background(), tc.token); !errors.Is(err, ErrAlgorithm) {
				t.Fatalf("Verify = %+v, %v; want ErrAlgorithm", c, err)
			}
		})
	}
}

func TestUnknownKid(t *testing.T) {
	for _, vc := range verifierCases() {
		t.Run(vc.name, func(t *testing.T) {
			cfg, good, _ := vc.setup(t)
			if good.method == jwt.SigningMethodHS256 {
				t.Skip("HS256 has one key and ignores kid")
			}
			j, err := NewJWT(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			good.kid = "no-such-key"
			if _, err := j.Verify(context.Background(), good.sign(t, claims(nil))); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("err = %v, want ErrUnknownKey", err)
			}
		})
	}
}

func TestLeeway(t *testing.T) {
	sec := []byte("leeway-secret")
	s := signer{jwt.SigningMethodHS256, sec, ""}
	expired := s.sign(t, claims(map[string]any{"exp": time.Now().Add(-10 * time.Second).Unix()}))
	early := s.sign(t, claims(map[string]any{"nbf": time.Now().Add(10 * time.Second).Unix()}))
	for _, tc := range []struct {
		leeway time.Duration
		want   bool
	}{{0, false}, {time.Minute, true}} {
		j, err := NewJWT(Config{Secret: sec, Leeway: tc.leeway})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{expired, early} {
			if _, err := j.Verify(context.Background(), tok); (err == nil) != tc.want {
				t.Errorf("leeway %v: err = %v", tc.leeway, err)
			}
		}
	}
}

func TestNewJWTErrors(t *testing.T) {
	bad := newJWKSServer(t, []byte(`{"keys":[]}`))
	down := newJWKSServer(t, nil)
	down.status.Store(http.StatusInternalServerError)
	for _, tc := range []struct {
		name string
		cfg  Config
		err  error // nil: any error
	}{
		{"no key source", Config{Audience: "x"}, ErrNoKeySource},
		{"missing key file", Config{PublicKeyFiles: []string{"/nonexistent/key.pem"}}, ErrBadKey},
		{"JWKS without keys", Config{JWKSURL: bad.URL}, ErrBadKey},
		{"JWKS server error", Config{JWKSURL: down.URL}, nil},
		{"JWKS bad URL", Config{JWKSURL: "http://[::1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := NewJWT(tc.cfg)
			if err == nil {
				j.Close()
				t.Fatal("NewJWT succeeded")
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

// refreshes returns a hook for newJWT and the channel it reports on. The
// hook only delivers while the test is receiving, so every value received
// comes from a refresh that finished after the receive began.
func refreshes(t *testing.T) (func(error), <-chan error) {
	ch := make(chan error)
	return func(err error) {
		select {
		case ch <- err:
		default:
		}
	}, ch
}

func TestJWKSPeriodicRotation(t *testing.T) {
	r1 := signer{jwt.SigningMethodRS256, rsaKeys()[0], "r1"}
	r2 := signer{jwt.SigningMethodRS256, rsaKeys()[1], "r2"}
	e2 := signer{jwt.SigningMethodES256, ecKeys()[1], "e2"}
	srv := newJWKSServer(t, jwksDoc(t, jwkOf(t, "r1", &rsaKeys()[0].PublicKey)))
	hook, refreshed := refreshes(t)
	j, err := newJWT(Config{JWKSURL: srv.URL, JWKSRefresh: 5 * time.Millisecond}, hook)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	if _, err := j.Verify(ctx, r1.sign(t, claims(nil))); err != nil {
		t.Fatal(err)
	}

	srv.set(jwksDoc(t, jwkOf(t, "r2", &rsaKeys()[1].PublicKey), jwkOf(t, "e2", &ecKeys()[1].PublicKey)))
	// The second refresh reported started after the first one ended, so
	// after the swap.
	for range 2 {
		if err := waitFor(t, refreshed, "a JWKS refresh"); err != nil {
			t.Fatal(err)
		}
	}
	// The periodic refresh, not an early one, installed the new keys.
	for _, kid := range []string{"r2", "e2"} {
		if _, ok := j.jwks.keys.Load().lookup(kid); !ok {
			t.Fatalf("kid %s missing after two periodic refreshes", kid)
		}
	}
	for _, s := range []signer{r2, e2} {
		if _, err := j.Verify(ctx, s.sign(t, claims(nil))); err != nil {
			t.Fatalf("kid %s after rotation: %v", s.kid, err)
		}
	}
	// Only a refresh can drop a key.
	if _, err := j.Verify(ctx, r1.sign(t, claims(nil))); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("retired kid r1: err = %v, want ErrUnknownKey", err)
	}
}

func TestJWKSEarlyRefresh(t *testing.T) {
	srv := newJWKSServer(t, jwksDoc(t, jwkOf(t, "r1", &rsaKeys()[0].PublicKey)))
	j, err := NewJWT(Config{JWKSURL: srv.URL, JWKSRefresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("NewJWT fetched %d times, want 1", n)
	}
	srv.set(jwksDoc(t, jwkOf(t, "r1", &rsaKeys()[0].PublicKey), jwkOf(t, "r2", &rsaKeys()[1].PublicKey)))
	tok := signer{jwt.SigningMethodRS256, rsaKeys()[1], "r2"}.sign(t, claims(nil))

	// Many clients presenting the new kid at once cause one fetch.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			_, err := j.Verify(context.Background(), tok)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("new kid: %v", err)
		}
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (initial + one early refresh)", n)
	}

	// Made-up kids do not reach the key server again within the gap.
	for i := range 5 {
		bogus := signer{jwt.SigningMethodRS256, rsaKeys()[2], "bogus" + string(rune('a'+i))}.sign(t, claims(nil))
		if _, err := j.Verify(context.Background(), bogus); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("bogus kid: err = %v, want ErrUnknownKey", err)
		}
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("%d fetches after bogus kids, want still 2", n)
	}
}

func TestJWKSEarlyRefreshHonoursContext(t *testing.T) {
	srv := newJWKSServer(t, jwksDoc(t, jwkOf(t, "r1", &rsaKeys()[0].PublicKey)))
	j, err := NewJWT(Config{JWKSURL: srv.URL, JWKSRefresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tok := signer{jwt.SigningMethodRS256, rsaKeys()[1], "r2"}.sign(t, claims(nil))
	if _, err := j.Verify(ctx, tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("%d fetches with a cancelled context, want 1", n)
	}
}

func TestJWKSFailedRefreshKeepsKeys(t *testing.T) {
	srv := newJWKSServer(t, jwksDoc(t, jwkOf(t, "r1", &rsaKeys()[0].PublicKey)))
	hook, refreshed := refreshes(t)
	j, err := newJWT(Config{JWKSURL: srv.URL, JWKSRefresh: 5 * time.Millisecond}, hook)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	srv.status.Store(http.StatusBadGateway)
	for range 2 {
		if err := waitFor(t, refreshed, "a failed refresh"); err == nil {
			t.Fatal("refresh against a 502 reported no error")
		}
	}
	if _, err := j.Verify(context.Background(), signer{jwt.SigningMethodRS256, rsaKeys()[0], "r1"}.sign(t, claims(nil))); err != nil {
		t.Fatalf("keys lost after a failed refresh: %v", err)
	}
}

func TestCloseStopsRefresherMidFetch(t *testing.T) {
	doc := jwksDoc(t, jwkOf(t, "r1", &rsaKeys()[0].PublicKey))
	blocked := make(chan struct{}, 1)
	var first sync.Once
	srv := newJWKSServer(t, doc)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served := false
		first.Do(func() { _, _ = w.Write(doc); served = true })
		if served {
			return
		}
		select {
		case blocked <- struct{}{}:
		default:
		}
		<-r.Context().Done() // hang until the client gives up
	})
	j, err := NewJWT(Config{JWKSURL: srv.URL, JWKSRefresh: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, blocked, "the refresher to be mid-fetch")
	closed := make(chan error, 1)
	go func() { closed <- j.Close() }()
	if err := waitFor(t, closed, "Close to return"); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Verify keeps working with the last keys.
	if _, err := j.Verify(context.Background(), signer{jwt.SigningMethodRS256, rsaKeys()[0], "r1"}.sign(t, claims(nil))); err != nil {
		t.Fatal(err)
	}
}

func TestStaticKeysNeedNoGoroutine(t *testing.T) {
	j, err := NewJWT(Config{Secret: []byte("x"), PublicKeyFiles: []string{writePEM(t, "k.pem", &ecKeys()[0].PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	if j.jwks != nil {
		t.Fatal("JWKS machinery built without a JWKSURL")
	}
	if want := []string{algHS256, algES256}; strings.Join(j.algs, ",") != strings.Join(want, ",") {
		t.Fatalf("algs = %v, want %v", j.algs, want)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkVerifyHS256(b *testing.B) {
	sec := []byte("bench-secret-bench-secret-bench!")
	j, err := NewJWT(Config{Secret: sec, Audience: testAud, Issuer: testIss})
	if err != nil {
		b.Fatal(err)
	}
	tok := signer{jwt.SigningMethodHS256, sec, ""}.sign(b, claims(nil))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := j.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// VerifyCached never fetches: a kid the set lacks is ErrKeyPending, many
// AwaitKeys callers share one refresh (one goroutine, one fetch), and once
// it has run a kid still unknown is ErrUnknownKey, not pending again.
func TestVerifyCachedAndAwaitKeys(t *testing.T) {
	srv := newJWKSServer(t, jwksDoc(t, jwkOf(t, "r1", &rsaKeys()[0].PublicKey)))
	j, err := NewJWT(Config{JWKSURL: srv.URL, JWKSRefresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	srv.set(jwksDoc(t, jwkOf(t, "r1", &rsaKeys()[0].PublicKey), jwkOf(t, "r2", &rsaKeys()[1].PublicKey)))
	tok := signer{jwt.SigningMethodRS256, rsaKeys()[1], "r2"}.sign(t, claims(nil))
	if _, err := j.VerifyCached(tok); !errors.Is(err, ErrKeyPending) {
		t.Fatalf("VerifyCached with a new kid = %v, want ErrKeyPending", err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("VerifyCached fetched: %d fetches, want 1 (NewJWT's)", n)
	}
	const callers = 50
	done := make(chan struct{}, callers)
	for range callers {
		j.AwaitKeys(tok, 5*time.Second, func() { done <- struct{}{} })
	}
	for i := range callers {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d AwaitKeys callbacks ran", i, callers)
		}
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("%d fetches for %d waiters, want 2 (initial + one refresh)", n, callers)
	}
	if _, err := j.VerifyCached(tok); err != nil {
		t.Fatalf("VerifyCached after the refresh: %v", err)
	}
	bogus := signer{jwt.SigningMethodRS256, rsaKeys()[2], "bogus"}.sign(t, claims(nil))
	if _, err := j.VerifyCached(bogus); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a made-up kid right after a refresh = %v, want ErrUnknownKey", err)
	}
	// After Close, a waiter is answered at once.
	_ = j.Close()
	called := false
	j.AwaitKeys(tok, time.Second, func() { called = true })
	if !called {
		t.Fatal("AwaitKeys after Close did not call back")
	}
}
