// Package graphitetest is Graphite for tests, two ways: Start, a fake of
// the slice of graphite-web's render API that the graphite metric
// provider uses (GET /render?target=...&format=json), answering each
// target with fixed series; and Real, a real graphite-web over whisper
// files, for checking the fake and the provider against what Graphite
// actually sends.
package graphitetest

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Series is one series of a render response: its name and its values,
// Options.Step apart. A value is a float64 (sent as graphite-web sends it:
// a number, NaN as null, ±Inf as ±1e9999), nil (null), a string (sent as a
// JSON string, which graphite-web never does but Argo Rollouts accepts) or
// a json.RawMessage sent as it is (something broken).
type Series struct {
	Target string
	Values []any
}

// Options shape the fake.
type Options struct {
	// Targets maps a target, as the request sends it, to the series it
	// returns, in order. An unknown target returns no series, as an
	// unknown metric does in Graphite.
	Targets map[string][]Series
	// Prefix is the path the render API is served under ("/graphite"),
	// as behind a proxy; default none.
	Prefix string
	// Epoch is the first datapoint's time; default 2026-01-02T03:04:00Z.
	Epoch time.Time
	// Step is the time between datapoints; default a minute.
	Step time.Duration
	// Username and Password, when Username is set, are the basic
	// authentication every request must bring (Graphite behind an
	// authenticating proxy): 401 otherwise.
	Username, Password string
	// Guard, when set, sees every request first and may answer it itself
	// (an authentication check, an outage, a slow answer) by returning
	// true.
	Guard func(w http.ResponseWriter, r *http.Request) bool
}

// Server is a running fake. Safe for concurrent use.
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []url.Values
}

// Requests returns the query parameters of every render request served so
// far, in order.
func (s *Server) Requests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]url.Values, len(s.requests))
	copy(out, s.requests)
	return out
}

// Start serves the render API over o.Targets until the test ends.
//
// It checks each request as graphite-web would and answers as it does:
// without the basic authentication Options asks for, 401; a path other than <Prefix>/render is 404; a method other than GET or
// POST is 405; a format other than json (the only one the fake renders)
// is 400; a request without target returns no series. Each target
// returns its series, targets in the order sent.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Epoch.IsZero() {
		o.Epoch = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	}
	if o.Step <= 0 {
		o.Step = time.Minute
	}
	s := &Server{}
	render := strings.TrimSuffix(o.Prefix, "/") + "/render"
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.Guard != nil && o.Guard(w, r) {
			return
		}
		if o.Username != "" {
			if u, pw, ok := r.BasicAuth(); !ok || u != o.Username || pw != o.Password {
				w.Header().Set("WWW-Authenticate", `Basic realm="graphite"`)
				http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if r.URL.Path != render && r.URL.Path != render+"/" {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if err := r.ParseForm(); err != nil {
			InvalidParameters(w, err.Error())
			return
		}
		s.mu.Lock()
		s.requests = append(s.requests, r.Form)
		s.mu.Unlock()
		if f := r.Form.Get("format"); f != "json" {
			InvalidParameters(w, fmt.Sprintf("the fake renders format=json only, not %q", f))
			return
		}
		var out []any
		for _, target := range r.Form["target"] {
			for _, sr := range o.Targets[target] {
				out = append(out, encode(sr, o.Epoch, o.Step))
			}
		}
		if out == nil {
			out = []any{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// encode is sr as graphite-web writes a series.
func encode(sr Series, epoch time.Time, step time.Duration) map[string]any {
	points := make([][2]any, len(sr.Values))
	for i, v := range sr.Values {
		if f, ok := v.(float64); ok {
			v = number(f)
		}
		points[i] = [2]any{v, epoch.Add(time.Duration(i) * step).Unix()}
	}
	return map[string]any{
		"target":     sr.Target,
		"tags":       map[string]string{"name": sr.Target},
		"datapoints": points,
	}
}

// number is f as graphite-web's JSON encoder writes it: NaN as null,
// infinities as 1e9999 and -1e9999.
func number(f float64) any {
	switch {
	case math.IsNaN(f):
		return nil
	case math.IsInf(f, 1):
		return json.RawMessage("1e9999")
	case math.IsInf(f, -1):
		return json.RawMessage("-1e9999")
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
}

// InvalidParameters answers as graphite-web answers a request it cannot
// parse or a target that names an unknown function: 400, with a line of
// text (served as text/html, as graphite-web does).
func InvalidParameters(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = io.WriteString(w, "Invalid parameters ("+msg+")")
}

// ErrorPage answers as graphite-web answers a target whose evaluation
// raises: 500, with its HTML error page holding the Python traceback,
// whose last line is exception.
func ErrorPage(w http.ResponseWriter, exception string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = fmt.Fprintf(w, `<body style="background-color: #666666; color: black;">
<center>
<h2 style='font-family: "Arial", sans-serif'>
<p>Graphite encountered an unexpected error while handling your request.</p>
<p>Please contact your site administrator if the problem persists.</p>
</h2>
<br/>
<div style="width: 70%%; text-align: left; background-color: black; color: #44ff22; border: thin solid gray;">
<pre>
Traceback (most recent call last):
  File &quot;/usr/lib/python3/dist-packages/graphite/render/views.py&quot;, line 129, in renderView
    data.extend(evaluateTarget(requestContext, targets))
%s

</pre>
</div>
</center>
`, html.EscapeString(exception))
}
