package transport

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/spec"
)

func TestSecrets(t *testing.T) {
	s := Settings{
		Headers: []spec.WebMetricHeader{
			{Key: "Authorization", Value: "Bearer tok"},
			{Key: "X-Api-Key", Value: "key1"},
			{Key: "X-Scope-OrgID", Value: "tenant-a"},
		},
		Auth:     &spec.Authentication{BasicAuth: &spec.BasicAuthConfig{Username: "u", Password: "pw"}, OAuth2: &spec.OAuth2Config{ClientSecret: "cs"}},
		Fallback: Credentials{BearerToken: "envtok"},
	}
	got := s.Secrets()
	want := []string{"envtok", "pw", "dTpwdw==", "cs", "Bearer tok", "tok", "key1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("secrets = %q, want %q", got, want)
	}
}

func TestClientAppliesCredentialsInOrder(t *testing.T) {
	var got http.Header
	var host string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got, host = r.Header.Clone(), r.Host }))
	t.Cleanup(srv.Close)
	tests := []struct {
		name     string
		s        Settings
		wantAuth string
	}{
		{"fallback bearer", Settings{Fallback: Credentials{BearerToken: "env"}}, "Bearer env"},
		{"fallback basic", Settings{Fallback: Credentials{Username: "u", Password: "p"}}, "Basic dTpw"},
		{"metric basic over fallback", Settings{Fallback: Credentials{BearerToken: "env"}, Auth: &spec.Authentication{BasicAuth: &spec.BasicAuthConfig{Username: "u", Password: "p"}}}, "Basic dTpw"},
		{"header over everything", Settings{Fallback: Credentials{BearerToken: "env"}, Auth: &spec.Authentication{BasicAuth: &spec.BasicAuthConfig{Username: "u", Password: "p"}}, Headers: []spec.WebMetricHeader{{Key: "Authorization", Value: "Bearer h"}}}, "Bearer h"},
		{"none", Settings{}, ""},
	}
	var pool Pool
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := pool.Client(tc.s)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if a := got.Get("Authorization"); a != tc.wantAuth {
				t.Errorf("Authorization = %q, want %q", a, tc.wantAuth)
			}
		})
	}
	c, _ := pool.Client(Settings{Headers: []spec.WebMetricHeader{{Key: "Host", Value: "prom.internal"}}})
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if host != "prom.internal" {
		t.Errorf("Host = %q", host)
	}
}

func TestDescribe(t *testing.T) {
	err := &url.Error{Op: "Get", URL: "https://user:pw@h:9090/api/v1/query?query=up&token=t", Err: errors.New("dial tcp: refused")}
	if got, want := Describe(err), "GET https://h:9090/api/v1/query: dial tcp: refused"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	if got := Describe(errors.New("plain")); got != "plain" {
		t.Errorf("Describe = %q", got)
	}
}

func TestCheck(t *testing.T) {
	for name, tc := range map[string]struct {
		s       Settings
		wantErr string
	}{
		"ok":                 {Settings{}, ""},
		"sigv4":              {Settings{Auth: &spec.Authentication{Sigv4: &spec.Sigv4Config{}}}, "sigv4"},
		"junk caCert":        {Settings{CACert: "junk"}, "caCert holds no PEM certificate"},
		"placeholder caCert": {Settings{CACert: "{{args.ca}}"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			err := Check(tc.s)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Check = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
