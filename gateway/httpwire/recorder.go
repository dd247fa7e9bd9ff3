package httpwire

import (
	"bytes"
	"net/http"
	"strconv"
)

// Recorder is a minimal http.ResponseWriter that buffers one response.
type Recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
	// Later, when a handler sets it (see Later), is called once the
	// request's place in the connection's reply order is kept, with the
	// function that writes the answer when it is known.
	Later func(respond func(write func(http.ResponseWriter)))
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{h: make(http.Header)} }

func (r *Recorder) Header() http.Header { return r.h }

func (r *Recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *Recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}

// Response serialises the status line, headers and body. A HEAD answer
// carries the headers a GET would, Content-Length included, and no body
// (RFC 9110 section 9.3.2): a body would be read as the next response.
func (r *Recorder) Response(keepAlive, head bool) []byte {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var b bytes.Buffer
	b.Grow(128 + r.body.Len())
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(r.status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(r.status))
	b.WriteString("\r\n")
	r.h.Del("Content-Length")
	r.h.Del("Transfer-Encoding")
	if keepAlive {
		r.h.Set("Connection", "keep-alive")
	} else {
		r.h.Set("Connection", "close")
	}
	r.h.Set("Content-Length", strconv.Itoa(r.body.Len()))
	_ = r.h.Write(&b)
	b.WriteString("\r\n")
	if !head {
		b.Write(r.body.Bytes())
	}
	return b.Bytes()
}

// Later answers a request when work calls back, without a goroutine
// waiting: on a Recorder (the node's own connections) work runs once the
// request's place in the reply order is kept and the answer is queued
// when respond is called; on any other ResponseWriter (tests, a node
// embedded behind net/http) the caller's goroutine waits for it.
func Later(w http.ResponseWriter, work func(respond func(write func(http.ResponseWriter)))) {
	if rec, ok := w.(*Recorder); ok {
		rec.Later = work
		return
	}
	done := make(chan func(http.ResponseWriter), 1)
	work(func(write func(http.ResponseWriter)) { done <- write })
	(<-done)(w)
}
