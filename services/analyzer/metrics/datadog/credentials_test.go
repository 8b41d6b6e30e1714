package datadog

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// TestReadCredentials covers the address's default, which the fake server
// cannot: a default address would send the test to Datadog.
func TestReadCredentials(t *testing.T) {
	for _, tc := range []struct {
		name        string
		secretName  string
		address     func() (string, error)
		wantAddress string
		wantErr     string
	}{
		{"no address key", "", func() (string, error) { return "", fmt.Errorf("x: %w", metrics.ErrSecretNotFound) }, DefaultAddress, ""},
		{"an empty address", "", func() (string, error) { return " ", nil }, DefaultAddress, ""},
		{"the EU site", "dd-eu", func() (string, error) { return "https://api.datadoghq.eu", nil }, "https://api.datadoghq.eu", ""},
		{"an unreadable Secret", "", func() (string, error) { return "", fmt.Errorf("x: %w", metrics.ErrSecretForbidden) }, "", "datadog address: x: secret not readable"},
		{"credentials in the address", "", func() (string, error) { return "https://u:p@api.datadoghq.com", nil }, "", "must be an http or https URL without credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantSecret := tc.secretName
			if wantSecret == "" {
				wantSecret = DefaultSecret
			}
			req := metrics.Request{
				Secret: func(_ context.Context, name, key string) (string, error) {
					if name != wantSecret {
						t.Errorf("read secret %q; want %q", name, wantSecret)
					}
					return "value-of-" + key, nil
				},
				Setting: func(_ context.Context, name, key string) (string, error) {
					if name != wantSecret || key != KeyAddress {
						t.Errorf("read setting %q/%q; want %q/%q", name, key, wantSecret, KeyAddress)
					}
					return tc.address()
				},
			}
			c, err := readCredentials(context.Background(), req, tc.secretName)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.address.String() != tc.wantAddress || c.apiKey != "value-of-api-key" || c.appKey != "value-of-app-key" {
				t.Errorf("credentials = %q, %q, %s; want the keys and %s", c.apiKey, c.appKey, c.address, tc.wantAddress)
			}
		})
	}
}
