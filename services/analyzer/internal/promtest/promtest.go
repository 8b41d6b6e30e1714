// Package promtest is a Prometheus for tests: the real PromQL engine over
// in-memory series, behind the two endpoints of the HTTP API that the
// prometheus metric provider uses, /api/v1/query and /api/v1/query_range.
// (Prometheus' tsdb would pull in the cloud SDKs of its service discovery;
// a slice of samples does not.)
package promtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// DefaultStep is the time between two samples of a series unless Options
// says otherwise.
const DefaultStep = time.Minute

// Series is one time series: its labels (the metric name under
// "__name__") and its samples, Options.Step apart from Options.Epoch.
type Series struct {
	Labels map[string]string
	Values []float64
}

// Options shape the server.
type Options struct {
	// Epoch is the time of every series' first sample (required).
	Epoch time.Time
	// Step is the time between samples (default DefaultStep).
	Step time.Duration
	// Guard, when set, sees every request first and may answer it itself
	// (an authentication check, an outage, a slow answer) by returning true.
	Guard func(w http.ResponseWriter, r *http.Request) bool
}

// Start serves PromQL over data until the test ends.
func Start(t testing.TB, data []Series, o Options) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler(t, data, o))
	t.Cleanup(srv.Close)
	return srv
}

// Handler is the HTTP API of Start, for tests that run their own server
// (TLS, for instance).
func Handler(t testing.TB, data []Series, o Options) http.Handler {
	t.Helper()
	if o.Epoch.IsZero() {
		t.Fatal("promtest: Options.Epoch is required")
	}
	if o.Step <= 0 {
		o.Step = DefaultStep
	}
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples:    100_000,
		Timeout:       10 * time.Second,
		LookbackDelta: 5 * time.Minute,
		Parser:        parser.NewParser(parser.Options{}),
	})
	t.Cleanup(func() { _ = engine.Close() })
	store := &memStorage{epoch: o.Epoch, step: o.Step}
	for _, s := range data {
		store.series = append(store.series, memSeries{labels: labels.FromMap(s.Labels), values: s.Values})
	}
	guard := o.Guard

	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", func(w http.ResponseWriter, r *http.Request) {
		if guard != nil && guard(w, r) {
			return
		}
		ts, err := parseTime(r.FormValue("time"))
		if err != nil {
			APIError(w, http.StatusBadRequest, "bad_data", err.Error())
			return
		}
		q, err := engine.NewInstantQuery(r.Context(), store, nil, r.FormValue("query"), ts)
		serve(w, r, q, err)
	})
	mux.HandleFunc("/api/v1/query_range", func(w http.ResponseWriter, r *http.Request) {
		if guard != nil && guard(w, r) {
			return
		}
		start, err1 := parseTime(r.FormValue("start"))
		end, err2 := parseTime(r.FormValue("end"))
		step, err3 := strconv.ParseFloat(r.FormValue("step"), 64)
		if err1 != nil || err2 != nil || err3 != nil || step <= 0 {
			APIError(w, http.StatusBadRequest, "bad_data", "bad start, end or step")
			return
		}
		q, err := engine.NewRangeQuery(r.Context(), store, nil, r.FormValue("query"), start, end, time.Duration(step*float64(time.Second)))
		serve(w, r, q, err)
	})
	return mux
}

func serve(w http.ResponseWriter, r *http.Request, q promql.Query, err error) {
	if err != nil {
		APIError(w, http.StatusBadRequest, "bad_data", err.Error())
		return
	}
	defer q.Close()
	res := q.Exec(r.Context())
	if res.Err != nil {
		APIError(w, http.StatusUnprocessableEntity, "execution", res.Err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"status": "success",
		"data":   map[string]any{"resultType": res.Value.Type(), "result": res.Value},
	})
}

// APIError answers a request as Prometheus answers a failed one: status
// code, {"status":"error","errorType":typ,"error":msg}. Guards use it.
func APIError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "error", "errorType": typ, "error": msg})
}

func parseTime(s string) (time.Time, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q", s)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

type memSeries struct {
	labels labels.Labels
	values []float64
}

// memStorage is a storage.Queryable over fixed series.
type memStorage struct {
	epoch  time.Time
	step   time.Duration
	series []memSeries
}

func (s *memStorage) Querier(mint, maxt int64) (storage.Querier, error) {
	return &memQuerier{s: s, mint: mint, maxt: maxt}, nil
}

type memQuerier struct {
	s          *memStorage
	mint, maxt int64
}

func (q *memQuerier) Select(_ context.Context, sortSeries bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var out []storage.Series
	for _, s := range q.s.series {
		if !matches(s.labels, ms) {
			continue
		}
		var samples []chunks.Sample
		for i, v := range s.values {
			ts := q.s.epoch.Add(time.Duration(i) * q.s.step).UnixMilli()
			if ts >= q.mint && ts <= q.maxt {
				samples = append(samples, fSample{t: ts, f: v})
			}
		}
		out = append(out, storage.NewListSeries(s.labels, samples))
	}
	if sortSeries {
		slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	}
	return &sliceSet{series: out, i: -1}
}

func matches(l labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

func (*memQuerier) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (*memQuerier) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (*memQuerier) Close() error { return nil }

type sliceSet struct {
	series []storage.Series
	i      int
}

func (s *sliceSet) Next() bool                      { s.i++; return s.i < len(s.series) }
func (s *sliceSet) At() storage.Series              { return s.series[s.i] }
func (*sliceSet) Err() error                        { return nil }
func (*sliceSet) Warnings() annotations.Annotations { return nil }

// fSample is a float sample.
type fSample struct {
	t int64
	f float64
}

func (s fSample) T() int64                    { return s.t }
func (fSample) ST() int64                     { return 0 }
func (s fSample) F() float64                  { return s.f }
func (fSample) H() *histogram.Histogram       { return nil }
func (fSample) FH() *histogram.FloatHistogram { return nil }
func (fSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fSample) Copy() chunks.Sample         { return s }
