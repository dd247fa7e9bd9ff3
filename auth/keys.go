package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
)

// Algorithms this package verifies.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
)

// publicKey is one verification key and the algorithm it serves; a key
// never verifies a token of another algorithm.
type publicKey struct {
	alg string
	key any // *rsa.PublicKey or *ecdsa.PublicKey (P-256)
}

// keySet holds public keys by kid; keys without a kid (JWKS entries may
// omit it) are tried for tokens that carry no kid.
type keySet struct {
	byKid map[string]publicKey
	all   []publicKey
}

func (s *keySet) add(kid string, k publicKey) {
	if kid != "" {
		if s.byKid == nil {
			s.byKid = make(map[string]publicKey)
		}
		s.byKid[kid] = k
	}
	s.all = append(s.all, k)
}

// lookup returns the key for kid; s may be nil.
func (s *keySet) lookup(kid string) (publicKey, bool) {
	if s == nil {
		return publicKey{}, false
	}
	k, ok := s.byKid[kid]
	return k, ok
}

// appendAlg appends the keys of s that serve alg; s may be nil.
func (s *keySet) appendAlg(dst []any, alg string) []any {
	if s == nil {
		return dst
	}
	for _, k := range s.all {
		if k.alg == alg {
			dst = append(dst, k.key)
		}
	}
	return dst
}

// has reports whether s holds a key for alg.
func (s *keySet) has(alg string) bool {
	return len(s.appendAlg(nil, alg)) > 0
}

// loadKeyFiles reads one public key per PEM file. A key's kid is the file's
// base name ("keys/2024-01.pem" -> "2024-01.pem") and, when that has an
// extension, also the name without it ("2024-01").
func loadKeyFiles(paths []string) (*keySet, error) {
	s := &keySet{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		k, err := parsePEMKey(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadKey, p, err)
		}
		base := filepath.Base(p)
		if _, dup := s.byKid[base]; dup {
			return nil, fmt.Errorf("%w: two key files named %s", ErrBadKey, base)
		}
		s.add(base, k)
		if stem := strings.TrimSuffix(base, filepath.Ext(base)); stem != base && stem != "" {
			if _, dup := s.byKid[stem]; !dup {
				s.byKid[stem] = k
			}
		}
	}
	return s, nil
}

// parsePEMKey returns the first public key in b: a PKIX "PUBLIC KEY", a
// PKCS #1 "RSA PUBLIC KEY" or the key of a "CERTIFICATE".
func parsePEMKey(b []byte) (publicKey, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return publicKey{}, fmt.Errorf("no public key PEM block")
		}
		var pub any
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				pub = c.PublicKey
			}
		default:
			continue
		}
		if err != nil {
			return publicKey{}, err
		}
		return keyFor(pub)
	}
}

// keyFor pairs a parsed public key with its algorithm.
func keyFor(pub any) (publicKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return publicKey{alg: algRS256, key: k}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return publicKey{}, fmt.Errorf("EC key on %s, only P-256 (ES256) is supported", k.Curve.Params().Name)
		}
		return publicKey{alg: algES256, key: k}, nil
	default:
		return publicKey{}, fmt.Errorf("unsupported key type %T", pub)
	}
}

// jwk is the subset of a JSON Web Key (RFC 7517, RFC 7518 section 6) this
// package reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS parses a JWK Set document. Keys this package cannot use
// (encryption keys, other key types, curves or algorithms, broken values)
// are skipped so that one odd key does not block a rotation; a document
// with no usable key at all is an error.
func parseJWKS(b []byte) (*keySet, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: JWKS: %v", ErrBadKey, err)
	}
	s := &keySet{}
	for _, j := range doc.Keys {
		if k, ok := j.key(); ok {
			s.add(j.Kid, k)
		}
	}
	if len(s.all) == 0 {
		return nil, fmt.Errorf("%w: JWKS has no RS256 or ES256 signing key", ErrBadKey)
	}
	return s, nil
}

// key converts j, reporting false for keys this package does not use.
func (j *jwk) key() (publicKey, bool) {
	if j.Use != "" && j.Use != "sig" {
		return publicKey{}, false
	}
	switch j.Kty {
	case "RSA":
		if j.Alg != "" && j.Alg != algRS256 {
			return publicKey{}, false
		}
		n, err1 := b64(j.N)
		e, err2 := b64(j.E)
		// An exponent over 2^31 is no real key and would overflow int.
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return publicKey{}, false
		}
		ev := new(big.Int).SetBytes(e).Int64()
		if ev < 3 || ev > 1<<31-1 || ev%2 == 0 {
			return publicKey{}, false
		}
		return publicKey{alg: algRS256, key: &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev)}}, true
	case "EC":
		if j.Crv != "P-256" || (j.Alg != "" && j.Alg != algES256) {
			return publicKey{}, false
		}
		x, err1 := b64(j.X)
		y, err2 := b64(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return publicKey{}, false
		}
		point := make([]byte, 0, 65)
		point = append(append(append(point, 4), x...), y...)
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return publicKey{}, false
		}
		return publicKey{alg: algES256, key: k}, true
	}
	return publicKey{}, false
}

// b64 decodes base64url, tolerating the padding some issuers add.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
