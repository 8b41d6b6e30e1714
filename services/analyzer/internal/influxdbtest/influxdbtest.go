// Package influxdbtest is an InfluxDB for tests: the slice of the InfluxDB
// v2 HTTP API that the influxdb metric provider uses, POST /api/v2/query,
// answering canned Flux results as annotated CSV in the dialect the client
// asks for. It checks what InfluxDB checks (the token, the org, the
// request's JSON body) and answers as InfluxDB does when they are wrong
// (401, 404, 400 with {"code","message"}), so a client that forgets its
// credentials fails against it.
//
// It does not run Flux: each query string maps to a Response set with
// Server.Answer. An unknown query is a Flux compilation error (400), as an
// undefined identifier is for InfluxDB.
package influxdbtest

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// QueryPath is the endpoint the server implements.
const QueryPath = "/api/v2/query"

// Column is one column of a Flux table: its name, its annotated data type
// ("double", "long", "unsignedLong", "string", "boolean",
// "dateTime:RFC3339", ...), whether it is in the group key, and its
// default (the value of an empty cell).
type Column struct {
	Name    string
	Type    string
	Group   bool
	Default string
}

// Table is one Flux table. Each row has one cell per column, in the text
// form of InfluxDB's CSV ("0.5", "NaN", "+Inf", "" for null).
type Table struct {
	// Result is the result name (default "_result"; a query with several
	// yields has several).
	Result  string
	Columns []Column
	Rows    [][]string
}

// Series is the table InfluxDB returns for one series of `from |> range
// |> filter`: _start, _stop, _time, _value (of type valueType), _field and
// _measurement, one row per value, one minute apart.
func Series(measurement, field, valueType string, values ...string) Table {
	t := Table{Columns: []Column{
		{Name: "_start", Type: "dateTime:RFC3339", Group: true},
		{Name: "_stop", Type: "dateTime:RFC3339", Group: true},
		{Name: "_time", Type: "dateTime:RFC3339"},
		{Name: "_value", Type: valueType},
		{Name: "_field", Type: "string", Group: true},
		{Name: "_measurement", Type: "string", Group: true},
	}}
	const start, stop = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"
	for i, v := range values {
		ts := fmt.Sprintf("2026-01-01T00:%02d:00Z", i%60)
		t.Rows = append(t.Rows, []string{start, stop, ts, v, field, measurement})
	}
	return t
}

// Response is the server's answer to one query.
type Response struct {
	// Tables are sent as annotated CSV with status 200.
	Tables []Table
	// StreamError, when set, follows Tables as a Flux error table
	// (error, reference): a query that failed after InfluxDB had started
	// to answer.
	StreamError string
	// Status, when set and not 200, answers with that status and the JSON
	// body {"code": Code, "message": Message}, or Body as it is.
	Status        int
	Code, Message string
	// Body, with Status, replaces the JSON error body (a proxy's HTML page).
	Body        string
	ContentType string
	// Header is added to the response (Retry-After).
	Header http.Header
}

// Request is a query the server received with valid credentials.
type Request struct {
	Org     string
	Query   string
	Dialect Dialect
}

// Dialect is the CSV dialect a client asks for.
type Dialect struct {
	Header      *bool    `json:"header"`
	Delimiter   string   `json:"delimiter"`
	Annotations []string `json:"annotations"`
}

// Options shape the server.
type Options struct {
	// Token is the API token InfluxDB expects in "Authorization: Token
	// <token>" (required).
	Token string
	// Org is the organization name the query must name (required).
	Org string
	// Gzip compresses responses for clients that accept it, as InfluxDB
	// does.
	Gzip bool
	// Guard, when set, sees every request first and may answer it itself
	// (an outage, a slow answer) by returning true.
	Guard func(w http.ResponseWriter, r *http.Request) bool
}

// Server is a running fake InfluxDB.
type Server struct {
	*httptest.Server
	opts Options

	mu        sync.Mutex
	responses map[string]Response
	requests  []Request
	hits      int
}

// Start serves the query API until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Token == "" || o.Org == "" {
		t.Fatal("influxdbtest: Options.Token and Options.Org are required")
	}
	s := &Server{opts: o, responses: map[string]Response{}}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

// Answer makes the server answer query with r.
func (s *Server) Answer(query string, r Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.responses[query] = r
}

// Requests returns the queries received with valid credentials, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Hits counts every request, rejected ones included.
func (s *Server) Hits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

// ServeHTTP implements the query API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits++
	s.mu.Unlock()
	if s.opts.Guard != nil && s.opts.Guard(w, r) {
		return
	}
	if r.URL.Path != QueryPath {
		APIError(w, http.StatusNotFound, "not found", "path not found")
		return
	}
	if r.Method != http.MethodPost {
		APIError(w, http.StatusMethodNotAllowed, "method not allowed", "method not allowed")
		return
	}
	if r.Header.Get("Authorization") != "Token "+s.opts.Token {
		APIError(w, http.StatusUnauthorized, "unauthorized", "unauthorized access")
		return
	}
	org := r.URL.Query().Get("org")
	if org != s.opts.Org {
		APIError(w, http.StatusNotFound, "not found", fmt.Sprintf("failed to decode request body: organization name %q not found", org))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		APIError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("failed to decode request body: unsupported content type %q", ct))
		return
	}
	var body struct {
		Query   string   `json:"query"`
		Type    string   `json:"type"`
		Dialect *Dialect `json:"dialect"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		APIError(w, http.StatusBadRequest, "invalid", "failed to decode request body: "+err.Error())
		return
	}
	if msg := checkBody(body.Query, body.Type, body.Dialect); msg != "" {
		APIError(w, http.StatusBadRequest, "invalid", msg)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, Request{Org: org, Query: body.Query, Dialect: *body.Dialect})
	resp, ok := s.responses[body.Query]
	s.mu.Unlock()
	if !ok {
		APIError(w, http.StatusBadRequest, "invalid", "compilation failed: error @1:1-1:1: undefined identifier (influxdbtest has no answer for this query)")
		return
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if resp.Status != 0 && resp.Status != http.StatusOK {
		if resp.Body != "" {
			w.Header().Set("Content-Type", resp.ContentType)
			w.WriteHeader(resp.Status)
			_, _ = io.WriteString(w, resp.Body)
			return
		}
		APIError(w, resp.Status, resp.Code, resp.Message)
		return
	}
	csvBody := encode(resp, *body.Dialect)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	if s.opts.Gzip && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write(csvBody)
		_ = zw.Close()
		return
	}
	_, _ = w.Write(csvBody)
}

// checkBody returns why a query request body is not one InfluxDB accepts,
// or "".
func checkBody(query, typ string, d *Dialect) string {
	switch {
	case strings.TrimSpace(query) == "":
		return "request body requires either spec or query"
	case typ != "" && typ != "flux":
		return fmt.Sprintf("unsupported query type %q", typ)
	case d == nil:
		return "influxdbtest: the client sent no dialect"
	case d.Header != nil && !*d.Header:
		return "influxdbtest: a CSV without a header row is not implemented"
	case d.Delimiter != "" && d.Delimiter != ",":
		return "influxdbtest: only the comma delimiter is implemented"
	}
	for _, a := range d.Annotations {
		if a != "datatype" && a != "group" && a != "default" {
			return fmt.Sprintf("invalid dialect annotation %q", a)
		}
	}
	return ""
}

// APIError answers as InfluxDB answers a failed request: status code and
// {"code": code, "message": msg}.
func APIError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

// encode writes r's tables (and error table) as InfluxDB's annotated CSV
// with the annotations d asks for: each table its own block, blocks apart
// by an empty line.
func encode(r Response, d Dialect) []byte {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	block := func(cols []Column, rows [][]string) {
		if buf.Len() > 0 {
			cw.Flush()
			buf.WriteString("\r\n")
		}
		for _, a := range d.Annotations {
			row := []string{"#" + a}
			for _, c := range cols {
				switch a {
				case "datatype":
					row = append(row, c.Type)
				case "group":
					row = append(row, fmt.Sprint(c.Group))
				case "default":
					row = append(row, c.Default)
				}
			}
			_ = cw.Write(row)
		}
		header := []string{""}
		for _, c := range cols {
			header = append(header, c.Name)
		}
		_ = cw.Write(header)
		for _, row := range rows {
			_ = cw.Write(append([]string{""}, row...))
		}
	}
	for i, t := range r.Tables {
		result := t.Result
		if result == "" {
			result = "_result"
		}
		cols := append([]Column{
			{Name: "result", Type: "string", Default: result},
			{Name: "table", Type: "long"},
		}, t.Columns...)
		rows := make([][]string, len(t.Rows))
		for j, row := range t.Rows {
			rows[j] = append([]string{"", fmt.Sprint(i)}, row...)
		}
		block(cols, rows)
	}
	if r.StreamError != "" {
		block([]Column{{Name: "error", Type: "string", Group: true}, {Name: "reference", Type: "string", Group: true}},
			[][]string{{r.StreamError, ""}})
	}
	cw.Flush()
	return buf.Bytes()
}
