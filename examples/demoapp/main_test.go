package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestDemoappPlaysItsVersionAndErrorRate(t *testing.T) {
	for _, tt := range []struct {
		name     string
		rate     float64
		want5xx  bool
		want2xx  bool
		requests int
	}{
		{"healthy", 0, false, true, 50},
		{"broken", 1, true, false, 50},
		{"flaky", 0.5, true, true, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(handler(config{Version: "v3", ErrorRate: tt.rate}, prometheus.NewRegistry()))
			defer srv.Close()
			var ok, bad int
			for i := 0; i < tt.requests; i++ {
				resp, err := http.Get(srv.URL + "/")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(body), `"version":"v3"`) || resp.Header.Get("X-Version") != "v3" {
					t.Fatalf("response does not carry the version: %s", body)
				}
				if resp.StatusCode == 500 {
					bad++
				} else {
					ok++
				}
			}
			if (bad > 0) != tt.want5xx || (ok > 0) != tt.want2xx {
				t.Errorf("%d ok, %d errors at error rate %v", ok, bad, tt.rate)
			}
			resp, err := http.Get(srv.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if bad > 0 && !strings.Contains(string(metrics), `demoapp_requests_total{code="500",version="v3"}`) {
				t.Errorf("metrics lack the error count:\n%s", metrics)
			}
		})
	}
}

func TestDemoappRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--error-rate", "2"}, {"--latency", "-1s"}, {"--nope"}} {
		if _, err := parse(args); err == nil {
			t.Errorf("parse(%v) accepted", args)
		}
	}
}
