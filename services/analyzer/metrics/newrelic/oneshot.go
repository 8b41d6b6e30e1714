package newrelic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/services/analyzer/metrics/transport"
)

// oneShot is the http.RoundTripper the New Relic client sends through, one
// per measurement. It exists because newrelic-client-go v2.98.0 retries on
// its own and offers no option to stop it: go-retryablehttp retries
// transport errors, 429 and 5xx answers up to 3 times with a backoff of
// 1 to 30 seconds, the client retries GraphQL TIMEOUT and SERVER_ERROR
// answers with a time.Sleep of its own, and the context given to a query
// never reaches the request (the client drops the copy that
// retryablehttp's Request.WithContext returns).
//
// oneShot lets exactly one request out, bound to the measurement's
// context, and keeps New Relic's answer. A clean answer (2xx, JSON, no
// GraphQL error but deprecation notices) goes to the client to decode. Any
// other answer, or a failure to get one, is kept for the provider to
// report, and the client is handed a stand-in: a 400 with an empty JSON
// body, which it neither retries nor waits on, so Query returns at once.
// Retrying is the metric's consecutiveErrorLimit's job.
type oneShot struct {
	ctx  context.Context
	base http.RoundTripper
	max  int64

	mu   sync.Mutex
	sent bool
	got  *answer
}

// answer is what New Relic said to the one request, or why it said
// nothing.
type answer struct {
	// target is the method and URL without user info or query string.
	target string
	// err is the failure to get an answer (refused, timed out, unreadable).
	err error
	// tooLarge is an answer larger than the provider's limit.
	tooLarge   bool
	status     int
	statusText string
	retryAfter string
	body       []byte
}

func (o *oneShot) RoundTrip(req *http.Request) (*http.Response, error) {
	o.mu.Lock()
	first := !o.sent
	o.sent = true
	o.mu.Unlock()
	if !first {
		// Never reached: a stand-in is never retried. Refuse without
		// sending, should the client change.
		closeBody(req)
		return standIn(req), nil
	}
	a := o.exchange(req)
	o.mu.Lock()
	o.got = a
	o.mu.Unlock()
	if a.clean() {
		return &http.Response{
			Status:        a.statusText,
			StatusCode:    a.status,
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        http.Header{"Content-Type": {"application/json"}},
			Body:          io.NopCloser(bytes.NewReader(a.body)),
			ContentLength: int64(len(a.body)),
			Request:       req,
		}, nil
	}
	return standIn(req), nil
}

// reply returns what the one request got, or nil when none was sent.
func (o *oneShot) reply() *answer {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.got
}

// exchange sends req once, in o's context, and reads the whole answer.
func (o *oneShot) exchange(req *http.Request) *answer {
	a := &answer{target: req.Method + " " + transport.SafeURL(req.URL)}
	resp, err := o.base.RoundTrip(req.WithContext(o.ctx))
	if err != nil {
		a.err = err
		return a
	}
	defer func() { _ = resp.Body.Close() }()
	a.status, a.statusText = resp.StatusCode, resp.Status
	a.retryAfter = resp.Header.Get("Retry-After")
	body, err := io.ReadAll(io.LimitReader(resp.Body, o.max+1))
	switch {
	case err != nil:
		a.err = fmt.Errorf("reading the answer: %w", err)
	case int64(len(body)) > o.max:
		a.tooLarge = true
	default:
		a.body = body
	}
	return a
}

// clean reports whether the client may decode a: a 2xx JSON answer whose
// GraphQL errors, if any, are all deprecation notices (which the client
// ignores).
func (a *answer) clean() bool {
	if a.err != nil || a.tooLarge || a.status < 200 || a.status > 299 {
		return false
	}
	g, ok := parseGraphQL(a.body)
	return ok && len(g.failures()) == 0
}

// graphQLAnswer is the part of a NerdGraph answer the provider reads when
// New Relic refused a query.
type graphQLAnswer struct {
	Errors []graphQLError `json:"errors"`
}

type graphQLError struct {
	Message    string `json:"message"`
	Extensions struct {
		ErrorClass string `json:"errorClass"`
		ErrorCode  string `json:"error_code"`
		Code       string `json:"code"`
	} `json:"extensions"`
}

// deprecationNotice starts the messages NerdGraph sends with data that are
// only warnings; newrelic-client-go ignores them too.
const deprecationNotice = "This field is deprecated!"

// failures are the errors that are not deprecation notices.
func (g graphQLAnswer) failures() []graphQLError {
	var out []graphQLError
	for _, e := range g.Errors {
		if !strings.HasPrefix(e.Message, deprecationNotice) {
			out = append(out, e)
		}
	}
	return out
}

func parseGraphQL(body []byte) (graphQLAnswer, bool) {
	var g graphQLAnswer
	if err := json.Unmarshal(body, &g); err != nil {
		return graphQLAnswer{}, false
	}
	return g, true
}

// standIn is the answer the client gets instead of one it would retry or
// wait on: a 400, which its retry policy leaves alone, with a body that
// holds no error class it would retry.
func standIn(req *http.Request) *http.Response {
	body := "{}"
	return &http.Response{
		Status:        "400 Bad Request",
		StatusCode:    http.StatusBadRequest,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
