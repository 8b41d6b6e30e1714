package datadogtest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServerChecksRequests: the fake refuses what Datadog refuses, so a
// provider that forgets a key or sends a malformed query fails its tests.
func TestServerChecksRequests(t *testing.T) {
	srv := Start(t, "", "")
	good := `{"data":{"type":"scalar_request","attributes":{"from":1700000000000,"to":1700000300000,` +
		`"queries":[{"data_source":"metrics","name":"a","query":"avg:x{*}","aggregator":"avg"}],"formulas":[]}}}`
	keys := map[string]string{"DD-API-KEY": srv.APIKey, "DD-APPLICATION-KEY": srv.AppKey}
	for _, tc := range []struct {
		name, method, path, body string
		headers                  map[string]string
		want                     int
		wantBody                 string
	}{
		{"v1 with keys", http.MethodGet, PathV1 + "?query=avg:x{*}&from=1700000000&to=1700000300", "", keys, 200, `"status":"ok"`},
		{"v1 without keys", http.MethodGet, PathV1 + "?query=avg:x{*}&from=1700000000&to=1700000300", "", nil, 403, `{"errors":["Forbidden"]}`},
		{"v1 without the app key", http.MethodGet, PathV1 + "?query=avg:x{*}&from=1700000000&to=1700000300", "", map[string]string{"DD-API-KEY": srv.APIKey}, 403, "Forbidden"},
		{"v1 in milliseconds", http.MethodGet, PathV1 + "?query=avg:x{*}&from=1700000000000&to=1700000300000", "", keys, 400, "milliseconds"},
		{"v1 without query", http.MethodGet, PathV1 + "?from=1700000000&to=1700000300", "", keys, 400, "query"},
		{"v1 POST", http.MethodPost, PathV1, "", keys, 405, "Method Not Allowed"},
		{"v2 with keys", http.MethodPost, PathV2, good, keys, 200, `"type":"scalar_response"`},
		{"v2 without keys", http.MethodPost, PathV2, good, nil, 403, "Forbidden"},
		{"v2 in seconds", http.MethodPost, PathV2, strings.NewReplacer("1700000000000", "1700000000", "1700000300000", "1700000300").Replace(good), keys, 400, "milliseconds"},
		{"v2 empty aggregator", http.MethodPost, PathV2, strings.Replace(good, `"avg"}`, `""}`, 1), keys, 400, "aggregator"},
		{"v2 GET", http.MethodGet, PathV2, "", keys, 405, "Method Not Allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("%s %s = %d %s; want %d with %s", tc.method, tc.path, resp.StatusCode, body, tc.want, tc.wantBody)
			}
		})
	}
}
