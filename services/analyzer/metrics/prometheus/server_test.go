package prometheus

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

// This file is a Prometheus for the tests: the real PromQL engine over an
// in-memory storage, behind the two endpoints of the HTTP API the provider
// uses, /api/v1/query and /api/v1/query_range. (Prometheus' tsdb would pull
// in the cloud SDKs of its service discovery; a slice of samples does not.)

// epoch is the time of the first sample of every series.
var epoch = time.Unix(1_700_000_000, 0).UTC()

// series is one time series: samples one minute apart from epoch.
type series struct {
	labels labels.Labels
	values []float64
}

func newSeries(lbls map[string]string, values ...float64) series {
	return series{labels: labels.FromMap(lbls), values: values}
}

// promServer serves PromQL over data. guard, when set, may answer a request
// itself (for auth checks, slowness) by returning true.
func promServer(t *testing.T, data []series, guard func(w http.ResponseWriter, r *http.Request) bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(promHandler(t, data, guard))
	t.Cleanup(srv.Close)
	return srv
}

func promHandler(t *testing.T, data []series, guard func(w http.ResponseWriter, r *http.Request) bool) http.Handler {
	t.Helper()
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples:    100_000,
		Timeout:       10 * time.Second,
		LookbackDelta: 5 * time.Minute,
		Parser:        parser.NewParser(parser.Options{}),
	})
	t.Cleanup(func() { _ = engine.Close() })
	store := &memStorage{series: data}

	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", func(w http.ResponseWriter, r *http.Request) {
		if guard != nil && guard(w, r) {
			return
		}
		ts, err := parseTime(r.FormValue("time"))
		if err != nil {
			apiError(w, http.StatusBadRequest, "bad_data", err.Error())
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
			apiError(w, http.StatusBadRequest, "bad_data", "bad start, end or step")
			return
		}
		q, err := engine.NewRangeQuery(r.Context(), store, nil, r.FormValue("query"), start, end, time.Duration(step*float64(time.Second)))
		serve(w, r, q, err)
	})
	return mux
}

func serve(w http.ResponseWriter, r *http.Request, q promql.Query, err error) {
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad_data", err.Error())
		return
	}
	defer q.Close()
	res := q.Exec(r.Context())
	if res.Err != nil {
		apiError(w, http.StatusUnprocessableEntity, "execution", res.Err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"status": "success",
		"data":   map[string]any{"resultType": res.Value.Type(), "result": res.Value},
	})
}

func apiError(w http.ResponseWriter, code int, typ, msg string) {
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

// memStorage is a storage.Queryable over fixed series.
type memStorage struct{ series []series }

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
			ts := epoch.Add(time.Duration(i) * time.Minute).UnixMilli()
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
