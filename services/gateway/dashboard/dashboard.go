// Package dashboard is the gateway's web dashboard: static files embedded
// in the binary (no CDN, no network access at run time, no Node toolchain
// to build), reading the gateway's /api/v1 and its status-event stream.
//
// The page is plain HTML, CSS and JavaScript modules (static/): app.js
// routes the URL's hash, list.js, rollout.js and experiments.js are the
// pages (rows.js keeps a list page's rows live), api.js talks to the API,
// charts.js draws the SVG charts.
// docs/dashboard.md describes what a user sees.
package dashboard

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
	"time"
)

//go:embed static
var files embed.FS

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the dashboard's files: index.html at "/", every other
// file by its name, 404 for anything else (no directory listings). Each
// answer carries an ETag and Cache-Control: no-cache, so a browser
// revalidates (a cheap 304) and never runs a page older than the binary.
func Handler() http.Handler {
	byPath := map[string]file{}
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = http.DetectContentType(body)
		}
		byPath[strings.TrimPrefix(p, "static")] = file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := r.URL.Path
		if p == "/" {
			p = "/index.html"
		}
		f, ok := byPath[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, p, time.Time{}, bytes.NewReader(f.body))
	})
}
