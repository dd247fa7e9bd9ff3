package auth

import (
	"net/http"
	"net/url"
	"testing"
)

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestTokenFromRequest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h     http.Header
		query url.Values
		want  string
	}{
		{"bearer", header("Authorization", "Bearer abc.def.ghi"), nil, "abc.def.ghi"},
		{"scheme case", header("Authorization", "bEaReR abc"), nil, "abc"},
		{"extra spaces", header("Authorization", "  Bearer   abc  "), nil, "abc"},
		{"query", http.Header{}, url.Values{"token": {"q.r.s"}}, "q.r.s"},
		{"header wins", header("Authorization", "Bearer h"), url.Values{"token": {"q"}}, "h"},
		{"basic falls back to query", header("Authorization", "Basic dXNlcjpwYXNz"), url.Values{"token": {"q"}}, "q"},
		{"bearer without token", header("Authorization", "Bearer "), url.Values{"token": {"q"}}, "q"},
		{"scheme only", header("Authorization", "Bearer"), nil, ""},
		{"prefix lookalike", header("Authorization", "Bearerabc"), nil, ""},
		{"nothing", http.Header{}, url.Values{}, ""},
		{"nil query", http.Header{}, nil, ""},
		{"empty query value", http.Header{}, url.Values{"token": {""}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TokenFromRequest(tc.h, tc.query); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckAPIKey(t *testing.T) {
	const key = "k-123456"
	for _, tc := range []struct {
		name string
		h    http.Header
		want string
		ok   bool
	}{
		{"no key required", http.Header{}, "", true},
		{"no key required, one sent", header("X-API-Key", "whatever"), "", true},
		{"bearer", header("Authorization", "Bearer "+key), key, true},
		{"x-api-key", header("X-API-Key", key), key, true},
		{"x-api-key lower case", header("x-api-key", key), key, true},
		{"wrong bearer, right x-api-key", header("Authorization", "Bearer nope", "X-API-Key", key), key, true},
		{"missing", http.Header{}, key, false},
		{"wrong", header("X-API-Key", "k-123457"), key, false},
		{"prefix", header("X-API-Key", key[:4]), key, false},
		{"longer", header("Authorization", "Bearer "+key+"x"), key, false},
		{"empty", header("X-API-Key", ""), key, false},
		{"basic scheme", header("Authorization", "Basic "+key), key, false},
		{"case matters", header("X-API-Key", "K-123456"), key, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckAPIKey(tc.h, tc.want); got != tc.ok {
				t.Fatalf("got %v, want %v", got, tc.ok)
			}
		})
	}
}
