package local

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestProbeCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Header.Get("X-Probe") != "yes" || r.Host != "app.local" {
				http.Error(w, "headers not sent", http.StatusBadRequest)
			}
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	headers := http.Header{"X-Probe": {"yes"}, "Host": {"app.local"}}
	httpProbe := func(path string) *probe {
		return &probe{http: true, scheme: "http", path: path, headers: headers, port: portRef{port: true}, timeout: 5 * time.Second}
	}
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	for _, tc := range []struct {
		name  string
		probe *probe
		port  int
		want  string // "" for success
	}{
		{"200 with headers and host", httpProbe("/ok"), port, ""},
		{"a redirect is a success", httpProbe("/moved"), port, ""},
		{"503", httpProbe("/down"), port, "HTTP probe failed with status code 503"},
		{"fixed port wins over PORT", &probe{http: true, scheme: "http", path: "/ok", headers: headers, port: portRef{number: port}, timeout: 5 * time.Second}, 1, ""},
		{"nothing listening", httpProbe("/ok"), closedPort, "connection refused"},
		{"tcp open", &probe{port: portRef{port: true}, timeout: 5 * time.Second}, port, ""},
		{"tcp closed", &probe{port: portRef{port: true}, timeout: 5 * time.Second}, closedPort, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.probe.check(context.Background(), "127.0.0.1", tc.port)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("failed: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
