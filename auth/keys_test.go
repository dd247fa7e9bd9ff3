package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Test keys are generated once per test binary: RSA generation is slow
// under the race detector.
var (
	rsaKeys = sync.OnceValue(func() []*rsa.PrivateKey {
		ks := make([]*rsa.PrivateKey, 3)
		for i := range ks {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			ks[i] = k
		}
		return ks
	})
	ecKeys = sync.OnceValue(func() []*ecdsa.PrivateKey {
		ks := make([]*ecdsa.PrivateKey, 3)
		for i := range ks {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			ks[i] = k
		}
		return ks
	})
)

// signer makes tokens with one method, key and kid ("" for none).
type signer struct {
	method jwt.SigningMethod
	key    any
	kid    string
}

func (s signer) sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, claims)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	str, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return str
}

// writePEM writes pub as a PKIX PEM file named name in a temp dir.
func writePEM(t testing.TB, name string, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jwkOf renders pub as a JWK map.
func jwkOf(t testing.TB, kid string, pub any) map[string]string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": enc(b[1:33]), "y": enc(b[33:])}
	}
	t.Fatalf("no JWK for %T", pub)
	return nil
}

func jwksDoc(t testing.TB, keys ...map[string]string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksServer serves whatever document was set last and counts requests.
type jwksServer struct {
	*httptest.Server
	doc    atomic.Pointer[[]byte]
	status atomic.Int32 // 0 means 200
	hits   atomic.Int64
}

func newJWKSServer(t testing.TB, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set(doc)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if st := s.status.Load(); st != 0 {
			w.WriteHeader(int(st))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.doc.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(doc []byte) { s.doc.Store(&doc) }

func TestParseJWKS(t *testing.T) {
	rk, ek := &rsaKeys()[0].PublicKey, &ecKeys()[0].PublicKey
	rsaJWK, ecJWK := jwkOf(t, "r", rk), jwkOf(t, "e", ek)
	with := func(m map[string]string, k, v string) map[string]string {
		c := map[string]string{}
		for a, b := range m {
			c[a] = b
		}
		c[k] = v
		return c
	}
	enc := base64.RawURLEncoding.EncodeToString
	for _, tc := range []struct {
		name string
		doc  string
		kids []string // usable keys expected, by kid
		err  bool
	}{
		{"rsa and ec", string(jwksDoc(t, rsaJWK, ecJWK)), []string{"r", "e"}, false},
		{"padded base64", string(jwksDoc(t, with(rsaJWK, "e", base64.URLEncoding.EncodeToString(big.NewInt(int64(rk.E)).Bytes())))), []string{"r"}, false},
		{"encryption key skipped", string(jwksDoc(t, with(rsaJWK, "use", "enc"), ecJWK)), []string{"e"}, false},
		{"other alg skipped", string(jwksDoc(t, with(rsaJWK, "alg", "PS256"), ecJWK)), []string{"e"}, false},
		{"other curve skipped", string(jwksDoc(t, rsaJWK, with(ecJWK, "crv", "P-384"))), []string{"r"}, false},
		{"short x skipped", string(jwksDoc(t, rsaJWK, with(ecJWK, "x", enc(make([]byte, 31))))), []string{"r"}, false},
		{"point off curve skipped", string(jwksDoc(t, rsaJWK, with(ecJWK, "x", enc(make([]byte, 32))))), []string{"r"}, false},
		{"even exponent skipped", string(jwksDoc(t, with(rsaJWK, "e", "AQA"), ecJWK)), []string{"e"}, false},
		{"huge exponent skipped", string(jwksDoc(t, with(rsaJWK, "e", enc([]byte{1, 0, 0, 0, 1})), ecJWK)), []string{"e"}, false},
		{"bad base64 skipped", string(jwksDoc(t, with(rsaJWK, "n", "!!"), ecJWK)), []string{"e"}, false},
		{"okp only", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`, nil, true},
		{"empty set", `{"keys":[]}`, nil, true},
		{"not json", `<html>`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseJWKS([]byte(tc.doc))
			if tc.err {
				if !errors.Is(err, ErrBadKey) {
					t.Fatalf("err = %v, want ErrBadKey", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.all) != len(tc.kids) {
				t.Fatalf("%d keys, want %v", len(s.all), tc.kids)
			}
			for _, kid := range tc.kids {
				if _, ok := s.lookup(kid); !ok {
					t.Errorf("kid %q missing", kid)
				}
			}
		})
	}
}

func FuzzParseJWKS(f *testing.F) {
	f.Add(jwksDoc(f, jwkOf(f, "r", &rsaKeys()[0].PublicKey), jwkOf(f, "e", &ecKeys()[0].PublicKey)))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQ","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		s, err := parseJWKS(doc)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("error %v does not wrap ErrBadKey", err)
			}
			return
		}
		if len(s.all) == 0 {
			t.Fatal("no error but no keys")
		}
		for _, k := range s.all {
			switch k.key.(type) {
			case *rsa.PublicKey:
				if k.alg != algRS256 {
					t.Fatalf("RSA key for %s", k.alg)
				}
			case *ecdsa.PublicKey:
				if k.alg != algES256 {
					t.Fatalf("EC key for %s", k.alg)
				}
			default:
				t.Fatalf("key of type %T", k.key)
			}
		}
	})
}

func TestLoadKeyFiles(t *testing.T) {
	rsaPath := writePEM(t, "main.pem", &rsaKeys()[0].PublicKey)
	ecPath := writePEM(t, "ec", &ecKeys()[0].PublicKey)
	s, err := loadKeyFiles([]string{rsaPath, ecPath})
	if err != nil {
		t.Fatal(err)
	}
	for kid, alg := range map[string]string{"main.pem": algRS256, "main": algRS256, "ec": algES256} {
		k, ok := s.lookup(kid)
		if !ok || k.alg != alg {
			t.Errorf("kid %q: %+v %v, want %s", kid, k, ok, alg)
		}
	}

	dir := t.TempDir()
	pkcs1 := filepath.Join(dir, "pkcs1.pem")
	if err := os.WriteFile(pkcs1, pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKeys()[1].PublicKey)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := loadKeyFiles([]string{pkcs1}); err != nil || !s.has(algRS256) {
		t.Errorf("PKCS #1 file: %v", err)
	}

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, paths := range map[string][]string{
		"missing file":  {filepath.Join(dir, "nope.pem")},
		"no PEM block":  {garbage},
		"P-384 key":     {writePEM(t, "p384.pem", &p384.PublicKey)},
		"duplicate kid": {rsaPath, writePEM(t, "main.pem", &rsaKeys()[1].PublicKey)},
	} {
		if _, err := loadKeyFiles(paths); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: err = %v, want ErrBadKey", name, err)
		}
	}
}

// waitFor fails the test if ch yields nothing within a generous bound; it
// guards against hangs, it is not a timing assertion.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
