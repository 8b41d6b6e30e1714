package notify

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCheckResponseClassifiesForDelivery(t *testing.T) {
	resp := func(code int, retryAfter, body string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: code, Header: h, Body: io.NopCloser(strings.NewReader(body))}
	}
	for _, tc := range []struct {
		name      string
		resp      *http.Response
		permanent bool
		after     time.Duration
		hasAfter  bool
		text      string
	}{
		{name: "200 is delivered", resp: resp(200, "", "")},
		{name: "204 is delivered", resp: resp(204, "", "")},
		{name: "429 waits its Retry-After", resp: resp(429, "7", "slow down"), after: 7 * time.Second, hasAfter: true, text: "hooks answered 429 Too Many Requests: slow down"},
		{name: "429 without Retry-After backs off", resp: resp(429, "", "")},
		{name: "503 is retried", resp: resp(503, "", "maintenance"), text: "maintenance"},
		{name: "408 is retried", resp: resp(408, "", "")},
		{name: "404 is final", resp: resp(404, "", "no such hook"), permanent: true, text: "404 Not Found: no such hook"},
		{name: "401 is final", resp: resp(401, "", ""), permanent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckResponse("hooks", tc.resp)
			if tc.resp.StatusCode < 300 {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tc.resp.StatusCode {
				t.Fatalf("err = %v, want a StatusError %d", err, tc.resp.StatusCode)
			}
			if IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v", IsPermanent(err), tc.permanent)
			}
			d, ok := RetryDelay(err)
			if ok != tc.hasAfter || d != tc.after {
				t.Errorf("RetryDelay = %s, %v; want %s, %v", d, ok, tc.after, tc.hasAfter)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err = %q, want it to contain %q", err, tc.text)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30", 30 * time.Second, true},
		{"0", 0, true},
		{"Sun, 06 Dec 2026 12:01:00 GMT", time.Minute, true},
		{"Sun, 06 Dec 2026 11:00:00 GMT", 0, true},
		{"", 0, false},
		{"-3", 0, false},
		{"soon", 0, false},
	} {
		got, ok := ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
