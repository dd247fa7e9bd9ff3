// Package demo serves the demo page: a live ticker (topic demo.ticker, over a WebSocket or
// Server-Sent Events at the flip of a toggle), a small chat (topic demo.chat) on the browser
// client, and charts of the node's own figures from GET /stats.
// Everything is embedded, Chart.js included, so the page works offline.
package demo

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/subsock/subsock/clients/js"
)

//go:embed static
var static embed.FS

// file is one embedded file, ready to serve.
type file struct {
	body  []byte
	ctype string
	etag  string
}

// site maps a URL path to its file; built once, on first use.
var site = sync.OnceValue(func() map[string]*file {
	m := make(map[string]*file)
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	add(m, sub, "/")
	add(m, js.FS(), "/js/")
	m["/"] = m["/index.html"]
	return m
})

// add indexes every file of fsys under prefix.
func add(m map[string]*file, fsys fs.FS, prefix string) {
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = http.DetectContentType(b)
		}
		m[prefix+p] = &file{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic(err) // embedded files cannot fail to read
	}
}

// Handler serves the page at / and the browser client at /js/ (subsock.js and its vendored
// MessagePack module). Mount it on a node with gateway.Handle("/", demo.Handler()); the page
// talks to that node's /ws, /sse, /stats and /healthz.
func Handler() http.Handler {
	files := site()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag)
		// Revalidate every time: the ETag makes that a 304, and a new build is seen at once.
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if strings.HasPrefix(r.URL.Path, "/js/") {
			// The client is a public module that pages on other origins import.
			h.Set("Access-Control-Allow-Origin", "*")
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(f.body))
	})
}
