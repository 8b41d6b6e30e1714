package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type testOptions struct {
	URL    string `json:"url"`
	Port   int    `json:"port,omitempty"`
	Nested *struct {
		Secret string `json:"secret"`
	} `json:"nested,omitempty"`
	HTTPOptions
	IgnoredOptions
}

func TestDecodeOptions(t *testing.T) {
	for _, tc := range []struct {
		name, options, wantErr string
	}{
		{name: "empty", options: ``},
		{name: "null", options: `null`},
		{name: "known", options: `{"url":"u","port":1,"nested":{"secret":"s"}}`},
		{name: "embedded ignored options", options: `{"url":"u","retryMax":3}`},
		{name: "unknown", options: `{"url":"u","prot":1,"a":2}`, wantErr: `unknown option "a", "prot" (a test service takes url, port, nested, insecureSkipVerify, retryWaitMin`},
		{name: "unknown nested", options: `{"nested":{"secret":"s","sekret":"t"}}`, wantErr: `unknown option "sekret"`},
		{name: "wrong type, value not shown", options: `{"port":"topsecret"}`, wantErr: `option "port": want a whole number`},
		{name: "nested wrong type", options: `{"nested":{"secret":["topsecret"]}}`, wantErr: `option "nested.secret": want a string`},
		{name: "embedded option, wrong type", options: `{"insecureSkipVerify":"topsecret"}`, wantErr: `option "insecureSkipVerify": want true or false`},
		{name: "not an object", options: `"topsecret"`, wantErr: `want a mapping of option names`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o testOptions
			err := DecodeOptions(ServiceConfig{Name: "svc", Type: "test", Options: json.RawMessage(tc.options)}, &o)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeOptions: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("DecodeOptions = %v, want ErrInvalidOptions containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Errorf("error %q shows the value", err)
			}
		})
	}
}

func TestIgnoredOptionsAreLogged(t *testing.T) {
	var o testOptions
	var logs bytes.Buffer
	cfg := ServiceConfig{Name: "svc", Options: json.RawMessage(`{"retryMax":3,"idleConnTimeout":"30s"}`),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := DecodeOptions(cfg, &o); err != nil {
		t.Fatal(err)
	}
	if got := o.Set(); strings.Join(got, ",") != "retryMax,idleConnTimeout" {
		t.Errorf("Set = %v, want retryMax and idleConnTimeout", got)
	}
	if !strings.Contains(logs.String(), "retryMax") || !strings.Contains(logs.String(), "service=svc") {
		t.Errorf("logs = %q, want the ignored options and the service", logs.String())
	}
}

// validatedOptions checks itself and fills in a default.
type validatedOptions struct {
	URL  string `json:"url"`
	Port int    `json:"port"`
}

func (o *validatedOptions) Validate() error {
	if _, err := ParseHTTPURL("url", o.URL); err != nil {
		return err
	}
	if o.Port == 0 {
		o.Port = 443
	}
	return nil
}

func TestDecodeOptionsValidates(t *testing.T) {
	var o validatedOptions
	if err := DecodeOptions(ServiceConfig{Options: json.RawMessage(`{"url":"https://x.example"}`)}, &o); err != nil || o.Port != 443 {
		t.Fatalf("DecodeOptions = %v, port %d: want no error and the default port 443", err, o.Port)
	}
	err := DecodeOptions(ServiceConfig{Options: json.RawMessage(`{"url":"ftp://x.example/topsecret"}`)}, &o)
	if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), `option "url": want an absolute http or https URL`) {
		t.Errorf("DecodeOptions = %v, want ErrInvalidOptions naming the option url", err)
	}
	if err != nil && strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error %q shows the URL", err)
	}
}

func TestDoHidesTheURLPath(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	target := srv.URL + "/hooks/T0/B0/topsecret?sig=topsecret"
	srv.Close()
	req, _ := http.NewRequest(http.MethodPost, target, nil)
	_, err := Do(context.Background(), http.DefaultClient, "hooks", req)
	if err == nil || strings.Contains(err.Error(), "topsecret") || !strings.Contains(err.Error(), "hooks: POST 127.0.0.1") {
		t.Errorf("Do = %v, want an error naming the service, method and host only", err)
	}
}

func TestClientSkipsVerificationOnlyWhenAsked(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	cfg := ServiceConfig{Name: "svc"}
	for _, insecure := range []bool{false, true} {
		c, err := cfg.Client(insecure)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		if (err == nil) != insecure {
			t.Errorf("insecureSkipVerify=%v: GET = %v", insecure, err)
		}
	}
	if http.DefaultTransport.(*http.Transport).TLSClientConfig != nil && http.DefaultTransport.(*http.Transport).TLSClientConfig.InsecureSkipVerify {
		t.Error("the default transport was changed")
	}
	if _, err := (ServiceConfig{HTTPClient: &http.Client{Transport: roundTripper(nil)}}).Client(true); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("a custom transport with insecureSkipVerify = %v, want ErrInvalidOptions", err)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
