package demo_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/subsock/subsock/demo"
)

func TestHandler(t *testing.T) {
	h := demo.Handler()
	tests := []struct {
		name     string
		method   string
		path     string
		status   int
		ctype    string // prefix
		contains string
		cors     bool
	}{
		{name: "page", method: "GET", path: "/", status: 200, ctype: "text/html", contains: `src="app.js"`},
		{name: "page by name", method: "GET", path: "/index.html", status: 200, ctype: "text/html", contains: "node console"},
		{name: "app", method: "GET", path: "/app.js", status: 200, ctype: "text/javascript", contains: "from './js/subsock.js'"},
		{name: "style", method: "GET", path: "/style.css", status: 200, ctype: "text/css"},
		{name: "chart.js", method: "GET", path: "/vendor/chart.umd.min.js", status: 200, ctype: "text/javascript", contains: "Chart.js v4.6.1"},
		{name: "client", method: "GET", path: "/js/subsock.js", status: 200, ctype: "text/javascript", contains: "export function connect", cors: true},
		{name: "msgpack module", method: "GET", path: "/js/vendor/msgpack/index.mjs", status: 200, ctype: "text/javascript", contains: "export { encode }", cors: true},
		{name: "msgpack nested module", method: "GET", path: "/js/vendor/msgpack/utils/utf8.mjs", status: 200, ctype: "text/javascript", cors: true},
		{name: "head", method: "HEAD", path: "/", status: 200, ctype: "text/html"},
		{name: "missing", method: "GET", path: "/nope.js", status: 404},
		{name: "no directory listing", method: "GET", path: "/vendor/", status: 404},
		{name: "no go source", method: "GET", path: "/js/embed.go", status: 404},
		{name: "post", method: "POST", path: "/", status: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("%s %s: status %d, want %d", tc.method, tc.path, rec.Code, tc.status)
			}
			if tc.status != 200 {
				return
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
				t.Errorf("Content-Type %q, want %s...", ct, tc.ctype)
			}
			if tc.contains != "" && !strings.Contains(rec.Body.String(), tc.contains) {
				t.Errorf("body does not contain %q", tc.contains)
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin") == "*"; got != tc.cors {
				t.Errorf("CORS header present: %v, want %v", got, tc.cors)
			}
			if rec.Header().Get("ETag") == "" {
				t.Error("no ETag")
			}
		})
	}
}

func TestHandlerRevalidates(t *testing.T) {
	h := demo.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/vendor/chart.umd.min.js", nil))
	etag := rec.Header().Get("ETag")
	if rec.Code != http.StatusOK || etag == "" {
		t.Fatalf("first GET: %d, ETag %q", rec.Code, etag)
	}
	req := httptest.NewRequest("GET", "/vendor/chart.umd.min.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Fatalf("conditional GET: %d with %d bytes, want 304 and none", rec.Code, rec.Body.Len())
	}
}
