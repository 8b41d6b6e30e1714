package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestExitCodeFollowsStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			io.WriteString(w, "ready")
		case "/moved":
			http.Redirect(w, r, "/nowhere", http.StatusFound)
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"ready", []string{srv.URL + "/readyz"}, 0},
		{"redirect is success", []string{srv.URL + "/moved"}, 0},
		{"not ready", []string{srv.URL + "/other"}, 1},
		{"unreachable", []string{"--timeout", "500ms", "http://127.0.0.1:1/readyz"}, 1},
		{"no url", nil, 2},
		{"bad flag", []string{"--bogus", srv.URL}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			if got := run(tt.args, &stderr); got != tt.want {
				t.Errorf("exit %d, want %d; stderr: %s", got, tt.want, stderr.String())
			}
		})
	}
}
