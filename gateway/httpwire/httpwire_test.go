package httpwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHeadAndTargets(t *testing.T) {
	full := "POST /publish?topic=a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
	for _, tt := range []struct {
		in      string
		max     int
		wantHdr int // length of the head; 0: none yet
		wantErr error
	}{
		{full, 1024, len(full) - 2, nil},
		{full[:20], 1024, 0, nil},
		{full, 30, 0, ErrHeadTooLarge},
		{full[:25], 30, 0, nil}, // short of the limit, incomplete: wait
	} {
		hdr, err := Head([]byte(tt.in), tt.max)
		if !errors.Is(err, tt.wantErr) || len(hdr) != tt.wantHdr {
			t.Errorf("Head(%.20q…, %d) = %d bytes, %v; want %d, %v", tt.in, tt.max, len(hdr), err, tt.wantHdr, tt.wantErr)
		}
	}
	for _, tt := range []struct {
		hdr, method, path string
		want              bool
	}{
		{"GET /ws HTTP/1.1\r\n", "", "/ws", true},
		{"GET /ws?token=x HTTP/1.1\r\n", "", "/ws", true},
		{"GET /wss HTTP/1.1\r\n", "", "/ws", false},
		{"POST /sse HTTP/1.1\r\n", "GET", "/sse", false},
		{"GET /sse?topics=a HTTP/1.1\r\n", "GET", "/sse", true},
		{"garbage", "", "/ws", false},
	} {
		if got := Targets([]byte(tt.hdr), tt.method, tt.path); got != tt.want {
			t.Errorf("Targets(%q, %q, %q) = %v", tt.hdr, tt.method, tt.path, got)
		}
	}
}

func TestReadRequest(t *testing.T) {
	read := func(in string, max int) (*http.Request, int, error) {
		hdr, err := Head([]byte(in), 8192)
		if err != nil || hdr == nil {
			t.Fatalf("no head in %q", in)
		}
		return ReadRequest(hdr, []byte(in), max)
	}
	req, n, err := read("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET", 10)
	if err != nil || req == nil || n != len("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc") {
		t.Fatalf("complete request: %v, %d, %v", req, n, err)
	}
	if body, _ := io.ReadAll(req.Body); string(body) != "abc" || !KeepAlive(req) {
		t.Fatalf("body %q, keep-alive %v", body, KeepAlive(req))
	}
	if req, n, err := read("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab", 10); req != nil || n != 0 || err != nil {
		t.Fatalf("short body: %v, %d, %v; want to wait", req, n, err)
	}
	for in, status := range map[string]int{
		"NONSENSE\r\n\r\n": http.StatusBadRequest,
		"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n": http.StatusLengthRequired,
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n":         http.StatusRequestEntityTooLarge,
	} {
		var ref *Refusal
		if _, _, err := read(in, 10); !errors.As(err, &ref) || ref.Status != status {
			t.Errorf("%q: %v, want a %d refusal", in, err, status)
		}
	}
	// A header line longer than the pooled reader's buffer is read whole.
	long := strings.Repeat("t", 6000)
	req, _, err = read("GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+long+"\r\n\r\n", 0)
	if err != nil || req.Header.Get("Authorization") != "Bearer "+long {
		t.Fatalf("long header: %v, %d bytes", err, len(req.Header.Get("Authorization")))
	}
	if req, _, _ := read("GET / HTTP/1.0\r\n\r\n", 0); KeepAlive(req) {
		t.Error("HTTP/1.0 without keep-alive kept alive")
	}
}

// A HEAD answer has a GET's headers, Content-Length included, and no body;
// a close is said; a JSON error carries its code and the headers a client
// needs to act on it.
func TestRecorderResponse(t *testing.T) {
	rec := NewRecorder()
	APIError(rec, http.StatusServiceUnavailable, "backbone down")
	for _, head := range []bool{false, true} {
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(rec.Response(false, head))), &http.Request{Method: map[bool]string{false: "GET", true: "HEAD"}[head]})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !resp.Close {
			t.Fatalf("status %d, Retry-After %q, close %v", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close)
		}
		want := `{"error":{"code":"unavailable","message":"backbone down"}}` + "\n"
		if head && (len(body) != 0 || resp.ContentLength != int64(len(want))) {
			t.Fatalf("HEAD: body %q, Content-Length %d", body, resp.ContentLength)
		}
		if !head && string(body) != want {
			t.Fatalf("body %q, want %q", body, want)
		}
	}
	rec = NewRecorder()
	Error(rec, http.StatusUnauthorized, CodeUnauthorized, "no key")
	if !strings.Contains(string(rec.Response(true, false)), "Www-Authenticate: Bearer") {
		t.Fatal("401 without WWW-Authenticate")
	}
}

// Later on a Recorder only records the work; elsewhere the caller waits
// for its answer.
func TestLater(t *testing.T) {
	rec := NewRecorder()
	Later(rec, func(respond func(func(http.ResponseWriter))) { t.Fatal("work ran on a Recorder") })
	if rec.Later == nil {
		t.Fatal("Later not recorded")
	}
	w := httptest.NewRecorder()
	Later(w, func(respond func(func(http.ResponseWriter))) {
		go respond(func(w http.ResponseWriter) { w.WriteHeader(http.StatusTeapot) })
	})
	if w.Code != http.StatusTeapot {
		t.Fatalf("status %d", w.Code)
	}
}

// FuzzReadRequest: any bytes are taken apart without panic, and a request
// it returns never claims more bytes than it was given.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("POST /publish?topic=a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add([]byte("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, err := Head(b, 1024)
		if err != nil || hdr == nil {
			return
		}
		req, n, err := ReadRequest(hdr, b, 1024)
		if req != nil && (err != nil || n < len(hdr) || n > len(b)) {
			t.Fatalf("request with n=%d of %d bytes, err %v", n, len(b), err)
		}
	})
}

// BenchmarkReadRequest is one POST /publish taken apart, as the node does
// for every HTTP publish.
func BenchmarkReadRequest(b *testing.B) {
	in := []byte("POST /publish?topic=bench.1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"price\":101}")
	b.ReportAllocs()
	for b.Loop() {
		hdr, _ := Head(in, 8192)
		if req, _, err := ReadRequest(hdr, in, 65536); err != nil || req == nil {
			b.Fatal(err)
		}
	}
}
