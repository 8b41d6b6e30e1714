package promserver

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

func TestConfigDefaultsAndValidate(t *testing.T) {
	var c Config
	c.DataDir = "data"
	c.Defaults()
	if c.Listen != DefaultListen || c.ScrapeInterval != DefaultScrapeInterval || c.Retention != DefaultRetention || c.Logger == nil {
		t.Fatalf("Defaults = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate after Defaults: %v", err)
	}

	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir is required"},
		{"listen without port", func(c *Config) { c.Listen = "localhost" }, `Listen "localhost"`},
		{"listen with a named port", func(c *Config) { c.Listen = "localhost:http" }, "numeric port"},
		{"negative interval", func(c *Config) { c.ScrapeInterval = -time.Second }, "ScrapeInterval -1s"},
		{"sub-millisecond interval", func(c *Config) { c.ScrapeInterval = time.Microsecond }, "at least 1ms"},
		{"negative retention", func(c *Config) { c.Retention = -time.Hour }, "Retention -1h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{DataDir: "data"}
			c.Defaults()
			tc.change(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want ErrInvalidConfig mentioning %q", err, tc.want)
			}
		})
	}
}

func TestTargetLabelSet(t *testing.T) {
	for _, tc := range []struct {
		name    string
		target  Target
		want    model.LabelSet
		wantErr string
	}{
		{
			name:   "url and labels",
			target: Target{URL: "http://127.0.0.1:8080/metrics", Labels: map[string]string{"job": "proxy", "rollout": "web"}},
			want: model.LabelSet{
				"__address__": "127.0.0.1:8080", "__scheme__": "http", "__metrics_path__": "/metrics",
				"job": "proxy", "rollout": "web",
			},
		},
		{
			name:   "default path and query parameters",
			target: Target{URL: "https://app.local:9443?format=text"},
			want: model.LabelSet{
				"__address__": "app.local:9443", "__scheme__": "https", "__metrics_path__": "/metrics",
				"__param_format": "text",
			},
		},
		{
			name:   "escaped path",
			target: Target{URL: "http://h:1/a%20b/metrics"},
			want:   model.LabelSet{"__address__": "h:1", "__scheme__": "http", "__metrics_path__": "/a b/metrics"},
		},
		{name: "not http", target: Target{URL: "ftp://h:1/metrics"}, wantErr: "scheme must be http or https"},
		{name: "no host", target: Target{URL: "http:///metrics"}, wantErr: "no host"},
		{name: "credentials", target: Target{URL: "http://u:p@h:1/metrics"}, wantErr: "credentials"},
		{name: "unparsable", target: Target{URL: "http://h:1/%zz"}, wantErr: "invalid URL escape"},
		{name: "reserved label", target: Target{URL: "http://h:1/", Labels: map[string]string{"__address__": "x"}}, wantErr: "reserved"},
		{name: "bad label value", target: Target{URL: "http://h:1/", Labels: map[string]string{"job": "\xff"}}, wantErr: "not valid UTF-8"},
		{name: "empty label name", target: Target{URL: "http://h:1/", Labels: map[string]string{"": "x"}}, wantErr: "invalid label name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.target.labelSet()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("labels %v, want %v", got, tc.want)
			}
		})
	}
}
