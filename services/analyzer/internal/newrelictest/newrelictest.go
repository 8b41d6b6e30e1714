// Package newrelictest is New Relic's NerdGraph for tests: the one call the
// newRelic metric provider makes, `POST /graphql` with the NRQL query
//
//	query ($query: Nrql!, $accountId: Int!, $timeout: Seconds!) {
//	  actor { account(id: $accountId) { nrql(query: $query, timeout: $timeout) { results } } }
//	}
//
// answered as NerdGraph answers it: {"data":{"actor":{"account":{"nrql":
// {"results":[...]}}}}}. The server checks what NerdGraph checks and what the
// provider must send: the user key in the API-Key header (else 401 with
// NerdGraph's BAD_API_KEY error), a JSON body with that query and its
// variables (else 400), the account (else NerdGraph's GraphQL error for an
// account the key may not read). Tests choose the rows or a failure (GraphQL
// errors, 429 with Retry-After, 500, a slow answer) with Server.Answer, and
// read what was asked with Server.Requests.
package newrelictest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Path is NerdGraph's endpoint; Server.URL + Path is the profile's
// base-url-nerdgraph.
const Path = "/graphql"

// Options shape the server.
type Options struct {
	// APIKey is the user key the server accepts (required).
	APIKey string
	// AccountID is the account the key may query (required).
	AccountID int
}

// GraphQLError is one entry of a NerdGraph answer's "errors".
type GraphQLError struct {
	Message string `json:"message"`
	// ErrorClass is extensions.errorClass: "TOO_MANY_REQUESTS",
	// "TIMEOUT", "SERVER_ERROR", ...
	ErrorClass string `json:"-"`
	// ErrorCode is extensions.error_code: "BAD_API_KEY".
	ErrorCode string `json:"-"`
}

func (e GraphQLError) MarshalJSON() ([]byte, error) {
	ext := map[string]string{}
	if e.ErrorClass != "" {
		ext["errorClass"] = e.ErrorClass
	}
	if e.ErrorCode != "" {
		ext["error_code"] = e.ErrorCode
	}
	return json.Marshal(map[string]any{"message": e.Message, "extensions": ext})
}

// Answer is how the server answers the queries that pass its checks.
type Answer struct {
	// Results are the rows, the "results" list. Nil with no Errors is an
	// empty list; set NullResults for "results": null.
	Results     []map[string]any
	NullResults bool
	// Errors are GraphQL errors, sent with "data": null (or with the rows
	// when Results is set).
	Errors []GraphQLError
	// Status is the HTTP status (default 200).
	Status int
	// RetryAfter is sent as the Retry-After header when set.
	RetryAfter string
	// Body, when set, is sent as it is instead of a NerdGraph answer.
	Body string
	// Delay holds the answer back that long, or until the client gives
	// up: a slow NerdGraph.
	Delay time.Duration
}

// Rows is the Answer of a query that returned rows.
func Rows(rows ...map[string]any) Answer { return Answer{Results: rows} }

// RateLimited is NerdGraph refusing a query over the account's rate
// limit: HTTP 429 with a TOO_MANY_REQUESTS error and a Retry-After.
func RateLimited() Answer {
	return Answer{
		Status: http.StatusTooManyRequests, RetryAfter: "30",
		Errors: []GraphQLError{{Message: "Too many requests: NRQL query rate limit exceeded", ErrorClass: "TOO_MANY_REQUESTS"}},
	}
}

// ServerError is NerdGraph failing: HTTP 500 with a SERVER_ERROR error.
func ServerError() Answer {
	return Answer{
		Status: http.StatusInternalServerError,
		Errors: []GraphQLError{{Message: "An internal error occurred", ErrorClass: "SERVER_ERROR"}},
	}
}

// Request is one query the server answered or refused.
type Request struct {
	// APIKey is the API-Key header as sent.
	APIKey string
	// UserAgent is the User-Agent header.
	UserAgent string
	// NRQL, AccountID and Timeout are the query's variables.
	NRQL      string
	AccountID int
	Timeout   int64
	// Status is the HTTP status the server answered with; 0 when the
	// client gave up before a slow answer.
	Status int
}

// Server is a NerdGraph serving one account.
type Server struct {
	*httptest.Server
	opts Options

	mu       sync.Mutex
	answer   Answer
	requests []Request
}

// Start serves NerdGraph until the test ends. It answers every query with
// no rows until Answer says otherwise.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.APIKey == "" || o.AccountID == 0 {
		t.Fatal("newrelictest: Options.APIKey and Options.AccountID are required")
	}
	s := &Server{opts: o}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// NerdGraphURL is the URL to set as the profile's base-url-nerdgraph.
func (s *Server) NerdGraphURL() string { return s.URL + Path }

// Answer sets the answer to the next queries.
func (s *Server) Answer(a Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer = a
}

// Requests returns the requests to Path so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// graphQLRequest is the body NerdGraph takes.
type graphQLRequest struct {
	Query     string         `json:"query"`
	Variables map[string]any `json:"variables"`
}

// The parts of the provider's query the server insists on, whitespace
// collapsed.
var wantQuery = []*regexp.Regexp{
	regexp.MustCompile(`\$query: Nrql!`),
	regexp.MustCompile(`\$accountId: Int!`),
	regexp.MustCompile(`\$timeout: Seconds!?`),
	regexp.MustCompile(`actor \{ account\(id: \$accountId\) \{ nrql\(query: \$query, timeout: \$timeout\) \{ [^}]*\bresults\b`),
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path {
		http.NotFound(w, r)
		return
	}
	rec := Request{APIKey: r.Header.Get("API-Key"), UserAgent: r.Header.Get("User-Agent")}
	status := s.handle(w, r, &rec)
	rec.Status = status
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

// handle answers one request to Path and returns the status it sent.
func (s *Server) handle(w http.ResponseWriter, r *http.Request, rec *Request) int {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeErrors(w, http.StatusMethodNotAllowed, "", GraphQLError{Message: "NerdGraph takes POST"})
	}
	if rec.APIKey != s.opts.APIKey {
		return writeErrors(w, http.StatusUnauthorized, "", GraphQLError{Message: "Bad API Key or no API Key provided", ErrorCode: "BAD_API_KEY"})
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return writeErrors(w, http.StatusBadRequest, "", GraphQLError{Message: fmt.Sprintf("Content-Type %q is not application/json", ct)})
	}
	var body graphQLRequest
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		return writeErrors(w, http.StatusBadRequest, "", GraphQLError{Message: "request body is not JSON: " + err.Error()})
	}
	if problem := s.check(body, rec); problem != "" {
		return writeErrors(w, http.StatusBadRequest, "", GraphQLError{Message: problem})
	}
	if rec.AccountID != s.opts.AccountID {
		return writeGraphQL(w, http.StatusOK, "", map[string]any{"actor": map[string]any{"account": nil}},
			GraphQLError{Message: fmt.Sprintf("Not authorized to access account %d", rec.AccountID)})
	}

	s.mu.Lock()
	a := s.answer
	s.mu.Unlock()
	if a.Delay > 0 {
		timer := time.NewTimer(a.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return 0 // the client gave up
		}
	}
	status := a.Status
	if status == 0 {
		status = http.StatusOK
	}
	if a.Body != "" {
		if a.RetryAfter != "" {
			w.Header().Set("Retry-After", a.RetryAfter)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(a.Body))
		return status
	}
	var data any
	if a.Results != nil || a.NullResults || len(a.Errors) == 0 {
		results := any(a.Results)
		if a.Results == nil && !a.NullResults {
			results = []any{}
		}
		data = map[string]any{"actor": map[string]any{"account": map[string]any{"nrql": map[string]any{"results": results}}}}
	}
	return writeGraphQL(w, status, a.RetryAfter, data, a.Errors...)
}

// check returns what is wrong with the query, or "".
func (s *Server) check(body graphQLRequest, rec *Request) string {
	q := strings.Join(strings.Fields(body.Query), " ")
	q = strings.NewReplacer("( ", "(", " )", ")").Replace(q)
	for _, re := range wantQuery {
		if !re.MatchString(q) {
			return fmt.Sprintf("query %q does not match %s", q, re)
		}
	}
	nrql, ok := body.Variables["query"].(string)
	if !ok || strings.TrimSpace(nrql) == "" {
		return "variable query must be a non-empty NRQL string"
	}
	rec.NRQL = nrql
	account, ok := integer(body.Variables["accountId"])
	if !ok {
		return "variable accountId must be an Int"
	}
	rec.AccountID = int(account)
	timeout, ok := integer(body.Variables["timeout"])
	if !ok || timeout < 0 {
		return "variable timeout must be a non-negative number of Seconds"
	}
	rec.Timeout = timeout
	return ""
}

func integer(v any) (int64, bool) {
	f, ok := v.(float64)
	if !ok || f != float64(int64(f)) {
		return 0, false
	}
	return int64(f), true
}

func writeErrors(w http.ResponseWriter, status int, retryAfter string, errs ...GraphQLError) int {
	return writeGraphQL(w, status, retryAfter, nil, errs...)
}

func writeGraphQL(w http.ResponseWriter, status int, retryAfter string, data any, errs ...GraphQLError) int {
	w.Header().Set("Content-Type", "application/json")
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	out := map[string]any{"data": data}
	if len(errs) > 0 {
		out["errors"] = errs
	}
	_ = json.NewEncoder(w).Encode(out)
	return status
}
