package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
)

// TokenFromRequest returns the token of an `Authorization: Bearer <token>`
// header or, when there is none, of the `token` query parameter (browsers
// cannot set headers on a WebSocket handshake). It returns "" when neither
// holds one; query may be nil.
func TokenFromRequest(h http.Header, query url.Values) string {
	if tok := bearer(h.Get("Authorization")); tok != "" {
		return tok
	}
	return strings.TrimSpace(query.Get("token"))
}

// bearer returns the credentials of a Bearer authorization value; the
// scheme is case-insensitive (RFC 7235 section 2.1).
func bearer(v string) string {
	const scheme = "bearer "
	v = strings.TrimSpace(v)
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return ""
	}
	return strings.TrimSpace(v[len(scheme):])
}

// CheckAPIKey reports whether h carries the key want, as
// `Authorization: Bearer <key>` or `X-API-Key: <key>`. An empty want means
// no key is required. The comparison takes the same time whatever the
// presented key, its length included, so timing reveals nothing about want.
func CheckAPIKey(h http.Header, want string) bool {
	if want == "" {
		return true
	}
	// Hashing first makes both sides the same length; ConstantTimeCompare
	// alone returns early on a length mismatch.
	w := sha256.Sum256([]byte(want))
	ok := 0
	for _, got := range [2]string{bearer(h.Get("Authorization")), strings.TrimSpace(h.Get("X-API-Key"))} {
		g := sha256.Sum256([]byte(got))
		ok |= subtle.ConstantTimeCompare(g[:], w[:])
	}
	return ok == 1
}
