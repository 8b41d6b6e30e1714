package newrelic

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/newrelic/newrelic-client-go/v2/pkg/nrdb"
)

func TestConvert(t *testing.T) {
	for _, tc := range []struct {
		name       string
		results    []nrdb.NRDBResult
		wantResult any
		wantValue  string
		wantErr    error
	}{
		{name: "nil", results: nil, wantErr: ErrNoResults},
		{name: "no row", results: []nrdb.NRDBResult{}, wantErr: ErrNoResults},
		{name: "one empty row", results: []nrdb.NRDBResult{{}}, wantErr: ErrNoResults},
		{name: "one null row", results: []nrdb.NRDBResult{nil}, wantErr: ErrNoResults},
		{
			name:       "one row",
			results:    []nrdb.NRDBResult{{"count": 3.0, "average.duration": nil}},
			wantResult: map[string]any{"count": 3.0, "average.duration": nil},
			wantValue:  `{"average.duration":null,"count":3}`,
		},
		{
			name:       "a nested value (percentile)",
			results:    []nrdb.NRDBResult{{"percentile.duration": map[string]any{"95": 0.4}}},
			wantResult: map[string]any{"percentile.duration": map[string]any{"95": 0.4}},
			wantValue:  `{"percentile.duration":{"95":0.4}}`,
		},
		{
			name:       "several rows, one of them null",
			results:    []nrdb.NRDBResult{{"count": 1.0}, nil},
			wantResult: []any{map[string]any{"count": 1.0}, map[string]any(nil)},
			wantValue:  `[{"count":1},null]`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			result, value, err := convert(tc.results)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v; want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(result, tc.wantResult) || value != tc.wantValue {
				t.Fatalf("convert = %#v, %s; want %#v, %s", result, value, tc.wantResult, tc.wantValue)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	const target = "POST https://api.newrelic.com/graphql"
	many := `{"errors":[{"message":"a"},{"message":"b"},{"message":"c"},{"message":"d"},{"message":"e"}]}`
	for _, tc := range []struct {
		name string
		a    answer
		want string
	}{
		{"refused", answer{err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")},
			target + ": dial tcp 127.0.0.1:1: connect: connection refused"},
		{"deadline", answer{err: fmt.Errorf("reading the answer: %w", context.DeadlineExceeded)},
			"New Relic did not answer within 15s (" + target + ")"},
		{"too large", answer{tooLarge: true, status: 200}, "NerdGraph's answer to " + target + " is too large"},
		{"GraphQL errors, the first three", answer{status: 200, body: []byte(many)}, "NerdGraph error: a; b; c; and 2 more"},
		{"a long message is trimmed", answer{status: 200, body: []byte(`{"errors":[{"message":"` + strings.Repeat("x", 400) + `"}]}`)},
			"NerdGraph error: " + strings.Repeat("x", maxMessageRunes) + "…"},
		{"whitespace is collapsed", answer{status: 200, body: []byte(`{"errors":[{"message":"line one\n\tline two"}]}`)},
			"NerdGraph error: line one line two"},
		{"no message", answer{status: 503, body: []byte(`upstream unavailable`)}, "NerdGraph answered HTTP 503 Service Unavailable"},
		{"BAD_API_KEY in a 200", answer{status: 200, body: []byte(`{"errors":[{"message":"Bad API Key","extensions":{"error_code":"BAD_API_KEY"}}]}`)},
			`NerdGraph error: Bad API Key; check key personal-api-key of the Secret "nr"`},
		{"429 without Retry-After", answer{status: 429, body: []byte(`{}`)},
			"NerdGraph answered HTTP 429 Too Many Requests; New Relic's rate limit: the metric's consecutiveErrorLimit decides whether to try again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.a.target = target
			if got := describe(&tc.a, 15*time.Second, "nr"); got != tc.want {
				t.Fatalf("describe:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestParseProfileValues(t *testing.T) {
	for _, s := range []string{"", "0", "-3", "12a", "1.5"} {
		if _, err := parseAccountID(s); err == nil {
			t.Errorf("parseAccountID(%q) accepted", s)
		}
	}
	if id, err := parseAccountID(" 42 "); err != nil || id != 42 {
		t.Errorf("parseAccountID(42) = %d, %v", id, err)
	}
	for in, want := range map[string]string{"": "US", "us": "US", "EU": "EU", "Eu": "EU", "jp": "JP"} {
		if got, err := parseRegion(in); err != nil || string(got) != want {
			t.Errorf("parseRegion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := parseRegion("mars"); err == nil {
		t.Error("parseRegion accepted mars")
	}
	for _, s := range []string{"api.newrelic.com/graphql", "ftp://x/graphql", "https://"} {
		if _, err := parseBaseURL(s); err == nil {
			t.Errorf("parseBaseURL(%q) accepted", s)
		}
	}
}
