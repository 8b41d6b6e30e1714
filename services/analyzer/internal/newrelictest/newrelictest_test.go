package newrelictest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

const argoQuery = `query (
  $query: Nrql!, 
  $accountId: Int!,
  $timeout: Seconds!
)
{
  actor {
    account(id: $accountId) {
      nrql(query: $query, timeout: $timeout) {
        results
      }
    }
  }
}
`

// TestChecks: the server refuses what NerdGraph refuses, so a provider
// that forgets the key or sends another query fails its tests.
func TestChecks(t *testing.T) {
	srv := Start(t, Options{APIKey: "NRAK-KEY", AccountID: 7})
	srv.Answer(Rows(map[string]any{"count": 1}))
	body := func(query string, vars map[string]any) string {
		b, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
		return string(b)
	}
	good := map[string]any{"query": "SELECT count(*) FROM Transaction", "accountId": 7, "timeout": 5}
	for _, tc := range []struct {
		name, method, path, key, contentType, body string
		wantStatus                                 int
		wantBody                                   string
	}{
		{"Argo Rollouts' query", "POST", Path, "NRAK-KEY", "application/json", body(argoQuery, good), 200, `"results":[{"count":1}]`},
		{"no key", "POST", Path, "", "application/json", body(argoQuery, good), 401, `"error_code":"BAD_API_KEY"`},
		{"a wrong key", "POST", Path, "NRAK-OTHER", "application/json", body(argoQuery, good), 401, "Bad API Key"},
		{"GET", "GET", Path, "NRAK-KEY", "", "", 405, "POST"},
		{"another path", "POST", "/v2/graphql", "NRAK-KEY", "application/json", body(argoQuery, good), 404, ""},
		{"not JSON", "POST", Path, "NRAK-KEY", "text/plain", "query", 400, "Content-Type"},
		{"another query", "POST", Path, "NRAK-KEY", "application/json", body(`{ actor { user { name } } }`, good), 400, "does not match"},
		{"no timeout", "POST", Path, "NRAK-KEY", "application/json",
			body(argoQuery, map[string]any{"query": "SELECT 1", "accountId": 7}), 400, "timeout"},
		{"another account", "POST", Path, "NRAK-KEY", "application/json",
			body(argoQuery, map[string]any{"query": "SELECT 1", "accountId": 8, "timeout": 5}), 200, "Not authorized to access account 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.key != "" {
				req.Header.Set("API-Key", tc.key)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus || !strings.Contains(string(got), tc.wantBody) {
				t.Fatalf("%d %s; want %d with %q", resp.StatusCode, got, tc.wantStatus, tc.wantBody)
			}
		})
	}
}

func TestFailures(t *testing.T) {
	srv := Start(t, Options{APIKey: "NRAK-KEY", AccountID: 7})
	for _, tc := range []struct {
		name       string
		answer     Answer
		wantStatus int
		wantRetry  string
		wantBody   string
	}{
		{"rate limited", RateLimited(), 429, "30", `"errorClass":"TOO_MANY_REQUESTS"`},
		{"server error", ServerError(), 500, "", `"errorClass":"SERVER_ERROR"`},
		{"null results", Answer{NullResults: true}, 200, "", `"results":null`},
		{"no rows", Rows(), 200, "", `"results":[]`},
		{"errors only", Answer{Errors: []GraphQLError{{Message: "bad NRQL"}}}, 200, "", `{"data":null,"errors":[{"extensions":{},"message":"bad NRQL"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.Answer(tc.answer)
			b, _ := json.Marshal(map[string]any{"query": argoQuery, "variables": map[string]any{"query": "SELECT 1", "accountId": 7, "timeout": 5}})
			req, _ := http.NewRequest("POST", srv.NerdGraphURL(), strings.NewReader(string(b)))
			req.Header.Set("API-Key", "NRAK-KEY")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus || resp.Header.Get("Retry-After") != tc.wantRetry || !strings.Contains(string(got), tc.wantBody) {
				t.Fatalf("%d (Retry-After %q) %s; want %d (%q) with %s", resp.StatusCode, resp.Header.Get("Retry-After"), got, tc.wantStatus, tc.wantRetry, tc.wantBody)
			}
			reqs := srv.Requests()
			if last := reqs[len(reqs)-1]; last.NRQL != "SELECT 1" || last.AccountID != 7 || last.Timeout != 5 || last.Status != tc.wantStatus {
				t.Fatalf("recorded %+v", last)
			}
		})
	}
}
