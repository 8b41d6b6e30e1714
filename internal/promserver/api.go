package promserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// api serves the subset of Prometheus' HTTP API (web/api/v1) that the
// analyzer and Grafana-style clients use, with its parameters, status
// codes and JSON. Handlers mirror web/api/v1/api.go; error messages are
// Prometheus' own so that clients matching on them keep working.
type api struct {
	engine    *promql.Engine
	queryable storage.Queryable
	parser    parser.Parser
	logger    *slog.Logger
	now       func() time.Time
}

// Prometheus' error types (the errorType field) and their status codes.
type errorType string

const (
	errorTimeout  errorType = "timeout"
	errorCanceled errorType = "canceled"
	errorExec     errorType = "execution"
	errorBadData  errorType = "bad_data"
	errorInternal errorType = "internal"
	errorLimit    errorType = "cost_limit"
)

type apiError struct {
	typ errorType
	err error
}

func (e *apiError) status() int {
	switch e.typ {
	case errorBadData:
		return http.StatusBadRequest
	case errorExec, errorLimit:
		return http.StatusUnprocessableEntity
	case errorCanceled:
		return 499 // nginx's "client closed request", as Prometheus answers.
	case errorTimeout:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func invalidParam(err error, param string) *apiError {
	return &apiError{errorBadData, fmt.Errorf("invalid parameter %q: %w", param, err)}
}

// Bounds of an unset start or end, as in Prometheus (web/api/v1.MinTime
// and MaxTime).
var (
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()

	minTimeFormatted = minTime.Format(time.RFC3339Nano)
	maxTimeFormatted = maxTime.Format(time.RFC3339Nano)
)

// maxPoints bounds a range query's points per series, as in Prometheus.
const maxPoints = 11000

func (a *api) register(mux *http.ServeMux) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		mux.HandleFunc(method+" /api/v1/query", a.query)
		mux.HandleFunc(method+" /api/v1/query_range", a.queryRange)
		mux.HandleFunc(method+" /api/v1/labels", a.labelNames)
		mux.HandleFunc(method+" /api/v1/series", a.series)
	}
	mux.HandleFunc("GET /api/v1/label/{name}/values", a.labelValues)
}

func (a *api) query(w http.ResponseWriter, r *http.Request) {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		a.respondError(w, invalidParam(err, "limit"))
		return
	}
	ts, err := parseTimeParam(r, "time", a.now())
	if err != nil {
		a.respondError(w, invalidParam(err, "time"))
		return
	}
	ctx, cancel, opts, ok := a.queryContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	qry, err := a.engine.NewInstantQuery(ctx, a.queryable, opts, r.FormValue("query"), ts)
	if err != nil {
		a.respondError(w, constructionError(err))
		return
	}
	a.exec(ctx, w, r, qry, limit)
}

// queryContext reads the timeout and the engine options both query
// endpoints take; on a bad parameter it has answered and ok is false.
func (a *api) queryContext(w http.ResponseWriter, r *http.Request) (ctx context.Context, cancel context.CancelFunc, opts promql.QueryOpts, ok bool) {
	ctx, cancel, apiErr := withTimeout(r)
	if apiErr != nil {
		a.respondError(w, apiErr)
		return nil, nil, nil, false
	}
	opts, err := queryOpts(r)
	if err != nil {
		cancel()
		a.respondError(w, &apiError{errorBadData, err})
		return nil, nil, nil, false
	}
	return ctx, cancel, opts, true
}

func (a *api) queryRange(w http.ResponseWriter, r *http.Request) {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		a.respondError(w, invalidParam(err, "limit"))
		return
	}
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		a.respondError(w, invalidParam(err, "start"))
		return
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		a.respondError(w, invalidParam(err, "end"))
		return
	}
	if end.Before(start) {
		a.respondError(w, invalidParam(errors.New("end timestamp must not be before start time"), "end"))
		return
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		a.respondError(w, invalidParam(err, "step"))
		return
	}
	if step <= 0 {
		a.respondError(w, invalidParam(errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"), "step"))
		return
	}
	if end.Sub(start)/step > maxPoints {
		a.respondError(w, &apiError{errorBadData, errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")})
		return
	}
	ctx, cancel, opts, ok := a.queryContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	qry, err := a.engine.NewRangeQuery(ctx, a.queryable, opts, r.FormValue("query"), start, end, step)
	if err != nil {
		a.respondError(w, constructionError(err))
		return
	}
	a.exec(ctx, w, r, qry, limit)
}

// exec runs qry and writes its result; the result is only valid until
// qry.Close, so it is encoded first.
func (a *api) exec(ctx context.Context, w http.ResponseWriter, r *http.Request, qry promql.Query, limit int) {
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		a.respondError(w, execError(res.Err))
		return
	}
	warnings := res.Warnings
	if limit > 0 && truncate(res, limit) {
		warnings = warnings.Add(errors.New("results truncated due to limit"))
	}
	a.respond(w, r, warnings, func(s *jsoniter.Stream) error { return writeValue(s, res.Value) })
}

// truncate keeps the first limit series of a vector or matrix and reports
// whether any were dropped.
func truncate(res *promql.Result, limit int) bool {
	switch v := res.Value.(type) {
	case promql.Vector:
		if len(v) > limit {
			res.Value = v[:limit]
			return true
		}
	case promql.Matrix:
		if len(v) > limit {
			res.Value = v[:limit]
			return true
		}
	}
	return false
}

func (a *api) labelNames(w http.ResponseWriter, r *http.Request) {
	limit, start, end, matcherSets, apiErr := a.selectParams(r, false)
	if apiErr != nil {
		a.respondError(w, apiErr)
		return
	}
	q, err := a.queryable.Querier(timestamp.FromTime(start), timestamp.FromTime(end))
	if err != nil {
		a.respondError(w, execError(err))
		return
	}
	defer q.Close()
	hints := &storage.LabelHints{Limit: hintLimit(limit)}
	var (
		names    []string
		warnings annotations.Annotations
	)
	if len(matcherSets) > 1 {
		set := map[string]struct{}{}
		for _, matchers := range matcherSets {
			vals, ws, err := q.LabelNames(r.Context(), hints, matchers...)
			if err != nil {
				a.respondError(w, execError(err))
				return
			}
			warnings.Merge(ws)
			for _, v := range vals {
				set[v] = struct{}{}
			}
		}
		for v := range set {
			names = append(names, v)
		}
		slices.Sort(names)
	} else {
		var matchers []*labels.Matcher
		if len(matcherSets) == 1 {
			matchers = matcherSets[0]
		}
		names, warnings, err = q.LabelNames(r.Context(), hints, matchers...)
		if err != nil {
			a.respondError(w, &apiError{errorExec, err})
			return
		}
	}
	if limit > 0 && len(names) > limit {
		names = names[:limit]
		warnings = warnings.Add(errors.New("results truncated due to limit"))
	}
	a.respond(w, r, warnings, func(s *jsoniter.Stream) error { writeStrings(s, names); return nil })
}

func (a *api) labelValues(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.UTF8Validation.IsValidLabelName(name) {
		a.respondError(w, &apiError{errorBadData, fmt.Errorf("invalid label name: %q", name)})
		return
	}
	limit, start, end, matcherSets, apiErr := a.selectParams(r, false)
	if apiErr != nil {
		a.respondError(w, apiErr)
		return
	}
	q, err := a.queryable.Querier(timestamp.FromTime(start), timestamp.FromTime(end))
	if err != nil {
		a.respondError(w, &apiError{errorExec, err})
		return
	}
	defer q.Close()
	hints := &storage.LabelHints{Limit: hintLimit(limit)}
	var (
		vals     []string
		warnings annotations.Annotations
	)
	if len(matcherSets) > 1 {
		set := map[string]struct{}{}
		for _, matchers := range matcherSets {
			vs, ws, err := q.LabelValues(r.Context(), name, hints, matchers...)
			if err != nil {
				a.respondError(w, &apiError{errorExec, err})
				return
			}
			warnings.Merge(ws)
			for _, v := range vs {
				set[v] = struct{}{}
			}
		}
		for v := range set {
			vals = append(vals, v)
		}
	} else {
		var matchers []*labels.Matcher
		if len(matcherSets) == 1 {
			matchers = matcherSets[0]
		}
		vals, warnings, err = q.LabelValues(r.Context(), name, hints, matchers...)
		if err != nil {
			a.respondError(w, &apiError{errorExec, err})
			return
		}
	}
	slices.Sort(vals)
	if limit > 0 && len(vals) > limit {
		vals = vals[:limit]
		warnings = warnings.Add(errors.New("results truncated due to limit"))
	}
	a.respond(w, r, warnings, func(s *jsoniter.Stream) error { writeStrings(s, vals); return nil })
}

func (a *api) series(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		a.respondError(w, &apiError{errorBadData, fmt.Errorf("error parsing form values: %w", err)})
		return
	}
	if len(r.Form["match[]"]) == 0 {
		a.respondError(w, &apiError{errorBadData, errors.New("no match[] parameter provided")})
		return
	}
	limit, start, end, matcherSets, apiErr := a.selectParams(r, true)
	if apiErr != nil {
		a.respondError(w, apiErr)
		return
	}
	q, err := a.queryable.Querier(timestamp.FromTime(start), timestamp.FromTime(end))
	if err != nil {
		a.respondError(w, execError(err))
		return
	}
	defer q.Close()
	hints := &storage.SelectHints{
		Start: timestamp.FromTime(start),
		End:   timestamp.FromTime(end),
		Func:  "series", // Prometheus' token for lookups that need no samples.
		Limit: hintLimit(limit),
	}
	var set storage.SeriesSet
	if len(matcherSets) > 1 {
		var sets []storage.SeriesSet
		for _, ms := range matcherSets {
			sets = append(sets, q.Select(r.Context(), true, hints, ms...))
		}
		set = storage.NewMergeSeriesSet(sets, 0, storage.ChainedSeriesMerge)
	} else {
		set = q.Select(r.Context(), false, hints, matcherSets[0]...)
	}
	var (
		metrics   []labels.Labels
		truncated bool
	)
	for set.Next() {
		if limit > 0 && len(metrics) == limit {
			truncated = true
			break
		}
		metrics = append(metrics, set.At().Labels())
	}
	warnings := set.Warnings()
	if err := set.Err(); err != nil {
		a.respondError(w, execError(err))
		return
	}
	if truncated {
		warnings = warnings.Add(errors.New("results truncated due to limit"))
	}
	a.respond(w, r, warnings, func(s *jsoniter.Stream) error { writeLabelSets(s, metrics); return nil })
}

// selectParams parses limit, start, end and match[] of the metadata
// endpoints; the series endpoint reports a bad match[] as an invalid
// parameter, the label endpoints as bad data, as Prometheus does.
func (a *api) selectParams(r *http.Request, seriesEndpoint bool) (limit int, start, end time.Time, matcherSets [][]*labels.Matcher, _ *apiError) {
	var err error
	if err := r.ParseForm(); err != nil {
		return 0, start, end, nil, &apiError{errorBadData, fmt.Errorf("error parsing form values: %w", err)}
	}
	if limit, err = parseLimit(r.FormValue("limit")); err != nil {
		return 0, start, end, nil, invalidParam(err, "limit")
	}
	if start, err = parseTimeParam(r, "start", minTime); err != nil {
		return 0, start, end, nil, invalidParam(err, "start")
	}
	if end, err = parseTimeParam(r, "end", maxTime); err != nil {
		return 0, start, end, nil, invalidParam(err, "end")
	}
	if matcherSets, err = a.parseMatchers(r.Form["match[]"]); err != nil {
		if seriesEndpoint {
			return 0, start, end, nil, invalidParam(err, "match[]")
		}
		return 0, start, end, nil, &apiError{errorBadData, err}
	}
	return limit, start, end, matcherSets, nil
}

func (a *api) parseMatchers(matchers []string) ([][]*labels.Matcher, error) {
	sets, err := a.parser.ParseMetricSelectors(matchers)
	if err != nil {
		return nil, err
	}
	for _, ms := range sets {
		if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return m != nil && !m.Matches("") }) {
			return nil, errors.New("match[] must contain at least one non-empty matcher")
		}
	}
	return sets, nil
}

// respond writes {"status":"success","data":..,"warnings":..,"infos":..}.
func (a *api) respond(w http.ResponseWriter, r *http.Request, warnings annotations.Annotations, data func(*jsoniter.Stream) error) {
	warns, infos := warnings.AsStrings(r.FormValue("query"), 10, 10)
	s := json.BorrowStream(nil)
	defer json.ReturnStream(s)
	s.WriteObjectStart()
	s.WriteObjectField("status")
	s.WriteString("success")
	s.WriteMore()
	s.WriteObjectField("data")
	if err := data(s); err != nil {
		a.logger.Error("prometheus api: encoding response", "url", r.URL.String(), "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if len(warns) > 0 {
		s.WriteMore()
		s.WriteObjectField("warnings")
		writeStrings(s, warns)
	}
	if len(infos) > 0 {
		s.WriteMore()
		s.WriteObjectField("infos")
		writeStrings(s, infos)
	}
	s.WriteObjectEnd()
	if s.Error != nil {
		a.logger.Error("prometheus api: encoding response", "url", r.URL.String(), "err", s.Error)
		http.Error(w, s.Error.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.Buffer())
}

// respondError writes {"status":"error","errorType":..,"error":..} with
// the status code Prometheus uses for the type.
func (a *api) respondError(w http.ResponseWriter, e *apiError) {
	b, err := json.Marshal(struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}{"error", string(e.typ), e.err.Error()})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status())
	_, _ = w.Write(b)
}

// constructionError maps an error from building a query: mostly a parse
// error, reported as an invalid query parameter.
func constructionError(err error) *apiError {
	if _, ok := errors.AsType[promql.ErrQueryTimeout](err); ok {
		return execError(err)
	}
	if _, ok := errors.AsType[promql.ErrQueryCanceled](err); ok {
		return execError(err)
	}
	return invalidParam(err, "query")
}

// execError maps an error from running a query or reading storage.
func execError(err error) *apiError {
	switch {
	case isType[promql.ErrQueryCanceled](err):
		return &apiError{errorCanceled, err}
	case isType[promql.ErrQueryTimeout](err):
		return &apiError{errorTimeout, err}
	case isType[promql.ErrTooManySeries](err), isType[promql.ErrTooManySamplesRead](err):
		return &apiError{errorLimit, err}
	case isType[promql.ErrStorage](err):
		return &apiError{errorInternal, err}
	case errors.Is(err, context.Canceled):
		return &apiError{errorCanceled, err}
	}
	return &apiError{errorExec, err}
}

func isType[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}

// withTimeout applies the timeout parameter to the request's context.
func withTimeout(r *http.Request) (context.Context, context.CancelFunc, *apiError) {
	v := r.FormValue("timeout")
	if v == "" {
		return r.Context(), func() {}, nil
	}
	timeout, err := parseDuration(v)
	if err != nil {
		return nil, nil, invalidParam(err, "timeout")
	}
	if timeout <= 0 {
		return nil, nil, invalidParam(fmt.Errorf("timeout must be positive, got %s", timeout), "timeout")
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	return ctx, cancel, nil
}

// queryOpts reads lookback_delta.
func queryOpts(r *http.Request) (promql.QueryOpts, error) {
	var lookback time.Duration
	if v := r.FormValue("lookback_delta"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("error parsing lookback delta duration: %w", err)
		}
		lookback = d
	}
	return promql.NewPrometheusQueryOpts(false, lookback, nil), nil
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	limit, err := strconv.Atoi(s)
	if err != nil {
		return 0, err
	}
	if limit < 0 {
		return 0, errors.New("limit must be non-negative")
	}
	return limit, nil
}

// hintLimit asks storage for one more than limit, so that truncation can
// be told apart from an exact fit.
func hintLimit(limit int) int {
	if limit > 0 && limit < math.MaxInt {
		return limit + 1
	}
	return limit
}

func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time value for '%s': %w", name, err)
	}
	return t, nil
}

// parseTime accepts Unix seconds with a fraction or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(t)
		frac = math.Round(frac*1000) / 1000
		return time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case minTimeFormatted:
		return minTime, nil
	case maxTimeFormatted:
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration accepts seconds with a fraction or a Prometheus duration
// such as 5m or 1h30m.
func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if math.IsNaN(ts) || ts >= float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}
