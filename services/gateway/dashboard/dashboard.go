// Package dashboard is the gateway's web dashboard: static files embedded
// in the binary (no CDN, no network access at run time, no Node toolchain
// to build), reading the gateway's /api/v1 and its status-event stream.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Handler serves the dashboard's files.
func Handler() http.Handler {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err)
	}
	return http.FileServer(http.FS(sub))
}
