// Package datadogtest is a Datadog for tests: the two endpoints of
// Datadog's documented API that the datadog metric provider uses, served by
// an httptest server that checks every request as Datadog does.
//
//   - GET /api/v1/query?from=<s>&to=<s>&query=<q> (query timeseries
//     points; from and to in Unix seconds) answers a MetricsQueryResponse:
//     {"status":"ok","series":[{"pointlist":[[ms,value],...],...}],...}.
//   - POST /api/v2/query/scalar with a ScalarFormulaQueryRequest
//     ({"data":{"type":"scalar_request","attributes":{"from":ms,"to":ms,
//     "queries":[{"data_source":"metrics","name":..,"query":..,
//     "aggregator":..}],"formulas":[{"formula":..}]}}}) answers a
//     ScalarFormulaQueryResponse: {"data":{"type":"scalar_response",
//     "attributes":{"columns":[{"name":..,"type":"number","values":[..]}]}}}.
//
// A request without the right DD-API-KEY and DD-APPLICATION-KEY headers is
// answered 403 {"errors":["Forbidden"]}; a malformed one 400 with
// {"errors":[...]}; a wrong method 405. What a well-formed request gets is
// the Answer set last (Server.Answer): series or columns, nulls, an empty
// result, an error status with Datadog's error body, a 429 with Datadog's
// X-RateLimit-* headers, or no answer until the client gives up.
package datadogtest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// Paths of the endpoints served.
const (
	PathV1 = "/api/v1/query"
	PathV2 = "/api/v2/query/scalar"
)

// Aggregators are the values Datadog accepts in a scalar query's
// aggregator.
var Aggregators = []string{"avg", "min", "max", "sum", "last", "percentile", "mean", "l2norm", "area"}

// Series is one v1 time series: its points' values, spread evenly over the
// queried window. A nil value is a null point.
type Series struct {
	Metric string
	Scope  string
	Values []*float64
}

// Column is one column of a v2 scalar response. Type is "number" (the
// default: Values) or "group" (Groups, the tag values of each row).
type Column struct {
	Name   string
	Type   string
	Values []*float64
	Groups [][]string
}

// Answer is what the server answers to a well-formed, authenticated query.
// The zero Answer is an empty result: no series (v1), no columns (v2).
type Answer struct {
	// Series answers v1 queries.
	Series []Series
	// Columns answer v2 queries.
	Columns []Column
	// QueryError is Datadog's report of a query it could not run with
	// status 200: v1's "status":"error" and "error", v2's top-level
	// "errors".
	QueryError string
	// Status, when set and not 200, answers with Datadog's error body
	// {"errors": Errors}; 429 adds the X-RateLimit-* headers, with
	// RateLimitReset the seconds until the limit resets.
	Status         int
	Errors         []string
	RateLimitReset int
	// Raw, when set, is the body sent as is, with Status (default 200).
	Raw string
	// EchoKeys adds the request's API and application keys to the error
	// body, as a careless proxy might: the provider must not repeat them.
	EchoKeys bool
	// Hang holds the request until the client gives up (or the test
	// ends): a timeout.
	Hang bool
}

// Request is a query the server received with valid keys.
type Request struct {
	Method, Path string
	// V1: the query string's parameters.
	Query    string
	From, To int64
	// V2: the decoded body.
	Scalar *ScalarRequest
}

// ScalarRequest is the body of a v2 scalar query.
type ScalarRequest struct {
	Data struct {
		Type       string `json:"type"`
		Attributes struct {
			From     int64           `json:"from"`
			To       int64           `json:"to"`
			Queries  []ScalarQuery   `json:"queries"`
			Formulas []ScalarFormula `json:"formulas"`
		} `json:"attributes"`
	} `json:"data"`
}

// ScalarQuery is one query of a ScalarRequest.
type ScalarQuery struct {
	DataSource string `json:"data_source"`
	Name       string `json:"name"`
	Query      string `json:"query"`
	Aggregator string `json:"aggregator"`
}

// ScalarFormula is one formula of a ScalarRequest.
type ScalarFormula struct {
	Formula string `json:"formula"`
}

// Server is a running fake Datadog.
type Server struct {
	// URL is the server's base URL, the provider's address.
	URL string
	// APIKey and AppKey are the keys it accepts.
	APIKey, AppKey string

	mu       sync.Mutex
	answer   Answer
	requests []Request
	done     chan struct{}
}

// Keys the server accepts unless Start is told otherwise.
const (
	DefaultAPIKey = "dd-api-0123456789abcdef0123456789abcdef"
	DefaultAppKey = "dd-app-0123456789abcdef0123456789abcdef01234567"
)

// Start serves the fake until the test ends, accepting apiKey and appKey
// (DefaultAPIKey and DefaultAppKey when empty).
func Start(t testing.TB, apiKey, appKey string) *Server {
	t.Helper()
	if apiKey == "" {
		apiKey = DefaultAPIKey
	}
	if appKey == "" {
		appKey = DefaultAppKey
	}
	s := &Server{APIKey: apiKey, AppKey: appKey, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc(PathV1, s.v1)
	mux.HandleFunc(PathV2, s.v2)
	srv := httptest.NewServer(mux)
	s.URL = srv.URL
	t.Cleanup(func() {
		close(s.done)
		srv.Close()
	})
	return s
}

// Answer sets what every later well-formed query gets.
func (s *Server) Answer(a Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer = a
}

// Requests returns the authenticated, well-formed queries received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Float returns a pointer to f, for Series and Column values.
func Float(f float64) *float64 { return &f }

func (s *Server) current(r Request) Answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
	return s.answer
}

// authorized answers 403 unless r carries both keys, as Datadog does.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("DD-API-KEY") == s.APIKey && r.Header.Get("DD-APPLICATION-KEY") == s.AppKey {
		return true
	}
	writeErrors(w, http.StatusForbidden, "Forbidden")
	return false
}

func (s *Server) v1(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeErrors(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	if !s.authorized(w, r) {
		return
	}
	q := r.URL.Query()
	from, err1 := strconv.ParseInt(q.Get("from"), 10, 64)
	to, err2 := strconv.ParseInt(q.Get("to"), 10, 64)
	switch {
	case q.Get("query") == "":
		writeErrors(w, http.StatusBadRequest, "Missing required parameter: query")
		return
	case err1 != nil || err2 != nil:
		writeErrors(w, http.StatusBadRequest, "from and to must be Unix timestamps in seconds")
		return
	case from >= to:
		writeErrors(w, http.StatusBadRequest, "from must be before to")
		return
	case to > 1e11:
		writeErrors(w, http.StatusBadRequest, "to is in milliseconds; this endpoint takes seconds")
		return
	}
	a := s.current(Request{Method: r.Method, Path: r.URL.Path, Query: q.Get("query"), From: from, To: to})
	if s.failed(w, r, a) {
		return
	}
	resp := map[string]any{
		"status": "ok", "res_type": "time_series", "resp_version": 1,
		"query": q.Get("query"), "from_date": from * 1000, "to_date": to * 1000,
		"series": v1Series(a.Series, from*1000, to*1000), "group_by": []string{}, "message": "",
	}
	if a.QueryError != "" {
		resp["status"], resp["error"], resp["series"] = "error", a.QueryError, []any{}
	}
	writeJSON(w, http.StatusOK, resp)
}

func v1Series(series []Series, fromMs, toMs int64) []map[string]any {
	out := make([]map[string]any, 0, len(series))
	for i, s := range series {
		points := make([][2]any, len(s.Values))
		for j, v := range s.Values {
			ts := fromMs
			if n := len(s.Values); n > 1 {
				ts = fromMs + (toMs-fromMs)*int64(j)/int64(n-1)
			}
			var value any
			if v != nil {
				value = *v
			}
			points[j] = [2]any{float64(ts), value}
		}
		out = append(out, map[string]any{
			"metric": s.Metric, "display_name": s.Metric, "scope": s.Scope, "expression": s.Metric,
			"pointlist": points, "start": fromMs, "end": toMs, "length": len(points),
			"aggr": nil, "unit": nil, "tag_set": []string{}, "query_index": i,
		})
	}
	return out
}

func (s *Server) v2(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeErrors(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	if !s.authorized(w, r) {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeErrors(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeErrors(w, http.StatusBadRequest, "cannot read the body")
		return
	}
	var req ScalarRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeErrors(w, http.StatusBadRequest, "Malformed JSON: "+err.Error())
		return
	}
	if msg := checkScalar(&req); msg != "" {
		writeErrors(w, http.StatusBadRequest, msg)
		return
	}
	a := s.current(Request{Method: r.Method, Path: r.URL.Path, Scalar: &req})
	if s.failed(w, r, a) {
		return
	}
	columns := make([]map[string]any, 0, len(a.Columns))
	for _, c := range a.Columns {
		col := map[string]any{"name": c.Name, "type": c.Type}
		switch c.Type {
		case "group":
			col["values"] = c.Groups
		default:
			col["type"] = "number"
			values := make([]any, len(c.Values))
			for i, v := range c.Values {
				if v != nil {
					values[i] = *v
				}
			}
			col["values"] = values
			col["meta"] = map[string]any{"unit": nil}
		}
		columns = append(columns, col)
	}
	resp := map[string]any{"data": map[string]any{
		"type":       "scalar_response",
		"attributes": map[string]any{"columns": columns},
	}}
	if a.QueryError != "" {
		resp["errors"] = a.QueryError
	}
	writeJSON(w, http.StatusOK, resp)
}

// checkScalar returns what Datadog would reject in a scalar request, or "".
func checkScalar(req *ScalarRequest) string {
	attr := req.Data.Attributes
	switch {
	case req.Data.Type != "scalar_request":
		return fmt.Sprintf("data.type must be scalar_request, not %q", req.Data.Type)
	case attr.From >= attr.To:
		return "from must be before to"
	case attr.To < 1e11:
		return "from and to are in milliseconds"
	case len(attr.Queries) == 0:
		return "at least one query is required"
	}
	names := map[string]bool{}
	for _, q := range attr.Queries {
		switch {
		case q.DataSource != "metrics":
			return fmt.Sprintf("data_source %q is not supported for scalar metrics queries", q.DataSource)
		case q.Name == "" || q.Query == "":
			return "every query needs a name and a query"
		case !slices.Contains(Aggregators, q.Aggregator):
			return fmt.Sprintf("aggregator %q is not one of %v", q.Aggregator, Aggregators)
		case names[q.Name]:
			return fmt.Sprintf("query name %q is used twice", q.Name)
		}
		names[q.Name] = true
	}
	for _, f := range attr.Formulas {
		if f.Formula == "" {
			return "a formula must not be empty"
		}
	}
	return ""
}

// failed answers r as a failure if a says so, and reports whether it did.
func (s *Server) failed(w http.ResponseWriter, r *http.Request, a Answer) bool {
	if a.Hang {
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return true
	}
	status := a.Status
	if status == 0 {
		status = http.StatusOK
	}
	if a.Raw != "" {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, a.Raw)
		return true
	}
	if status == http.StatusOK {
		return false
	}
	errs := slices.Clone(a.Errors)
	if len(errs) == 0 {
		errs = []string{http.StatusText(status)}
	}
	if a.EchoKeys {
		errs = append(errs, "key "+r.Header.Get("DD-API-KEY")+" with application key "+r.Header.Get("DD-APPLICATION-KEY"))
	}
	if status == http.StatusTooManyRequests {
		h := w.Header()
		h.Set("X-RateLimit-Limit", "100")
		h.Set("X-RateLimit-Period", "60")
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Reset", strconv.Itoa(a.RateLimitReset))
		h.Set("X-RateLimit-Name", "query_metrics")
	}
	writeErrors(w, status, errs...)
	return true
}

// writeErrors answers with Datadog's error body, {"errors": [...]}.
func writeErrors(w http.ResponseWriter, status int, errs ...string) {
	writeJSON(w, status, map[string]any{"errors": errs})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
