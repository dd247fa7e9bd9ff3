// Package httpwire is the node's byte-level HTTP/1.1: it finds a request's
// head in a connection's input, parses it with the limits a node enforces,
// records one handler's response in memory and serialises it (keep-alive,
// HEAD), lets a handler answer later without a goroutine, and writes the
// JSON errors every HTTP answer of subsock uses. It knows nothing of
// sessions, sockets or brokers: the session layer feeds it bytes and
// queues the bytes it returns.
package httpwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

var headerEnd = []byte("\r\n\r\n")

// ErrHeadTooLarge: no complete head within the limit.
var ErrHeadTooLarge = errors.New("request header block exceeds the limit")

// Head returns the request head at the front of b, through its blank line,
// or nil while it is incomplete. Past max bytes without one it fails with
// ErrHeadTooLarge.
func Head(b []byte, max int) ([]byte, error) {
	end := bytes.Index(b, headerEnd)
	if end < 0 || end+len(headerEnd) > max {
		if len(b) > max {
			return nil, ErrHeadTooLarge
		}
		return nil, nil
	}
	return b[:end+len(headerEnd)], nil
}

// Targets reports whether the head's request line has method (any method
// when "") and a target whose path is path (the query left aside). It
// reads the bytes in place, before any parsing.
func Targets(hdr []byte, method, path string) bool {
	sp := bytes.IndexByte(hdr, ' ')
	if sp < 0 || (method != "" && string(hdr[:sp]) != method) {
		return false
	}
	target := hdr[sp+1:]
	if e := bytes.IndexAny(target, " ?\r"); e >= 0 {
		target = target[:e]
	}
	return string(target) == path
}

// readers recycles the bufio.Readers http.ReadRequest needs: one per
// request would be 4 KiB of garbage per publish.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}

// Refusal is a request the node answers with an error status and closes:
// malformed, chunked, or with a body past the limit.
type Refusal struct {
	Status int
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

// ReadRequest parses hdr (from Head) and, once b (which begins with hdr)
// holds the whole Content-Length body, returns the request with its body
// and the bytes it took; with the body still short it returns nil and 0.
// A request it will not serve is a *Refusal: a malformed head (400), a
// chunked body (411: bodies are read whole, with their length known
// first) or a body over maxBody (413).
func ReadRequest(hdr, b []byte, maxBody int) (*http.Request, int, error) {
	br := readers.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(hdr))
	req, err := http.ReadRequest(br)
	// The request keeps nothing of br: its body is replaced below (and
	// http.ReadRequest's would only read hdr, which has none).
	br.Reset(nil)
	readers.Put(br)
	if err != nil {
		return nil, 0, &Refusal{http.StatusBadRequest, "malformed request: " + err.Error()}
	}
	if len(req.TransferEncoding) > 0 {
		return nil, 0, &Refusal{http.StatusLengthRequired, "chunked bodies are not accepted; send Content-Length"}
	}
	cl := max(req.ContentLength, 0)
	if cl > int64(maxBody) {
		return nil, 0, &Refusal{http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes exceeds the %d-byte limit", cl, maxBody)}
	}
	total := len(hdr) + int(cl)
	if len(b) < total {
		return nil, 0, nil
	}
	req.Body = io.NopCloser(bytes.NewReader(b[len(hdr):total]))
	return req, total, nil
}

// KeepAlive reports whether the connection stays open after req's answer.
func KeepAlive(req *http.Request) bool { return !req.Close && req.ProtoAtLeast(1, 1) }
