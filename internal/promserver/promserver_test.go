package promserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/promserver"
)

// interval is the scrape interval of these tests: short, so that a few
// scrapes happen quickly, but long enough for -race on two cores.
const interval = 200 * time.Millisecond

// waitFor bounds every poll; conditions normally hold within a few
// intervals.
const waitFor = 15 * time.Second

// target is an app exposing a counter that goes up by one per scrape.
type target struct {
	srv   *httptest.Server
	count atomic.Int64
}

const textFormat = "text/plain; version=0.0.4; charset=utf-8"

func startTarget(t *testing.T) *target { return startTargetAs(t, textFormat) }

// startTargetAs serves the text format with contentType; "" sends no
// Content-Type at all.
func startTargetAs(t *testing.T, contentType string) *target {
	t.Helper()
	tg := &target{}
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		n := tg.count.Add(1)
		if contentType == "" {
			w.Header()["Content-Type"] = nil // no sniffing either
		} else {
			w.Header().Set("Content-Type", contentType)
		}
		fmt.Fprintf(w, "# HELP demo_requests_total Requests served.\n# TYPE demo_requests_total counter\ndemo_requests_total{code=\"200\"} %d\n", n)
	}))
	t.Cleanup(tg.srv.Close)
	return tg
}

func (tg *target) url() string { return tg.srv.URL + "/metrics" }

// targetList is a Config.Targets that a test changes as it goes.
type targetList struct {
	mu      sync.Mutex
	targets []promserver.Target
	asked   atomic.Int64 // calls of get: the server asks once per scrape interval
}

func (l *targetList) set(ts ...promserver.Target) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.targets = ts
}

func (l *targetList) get() []promserver.Target {
	l.asked.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]promserver.Target(nil), l.targets...)
}

func startServer(t *testing.T, dataDir string, targets *targetList) *promserver.Server {
	t.Helper()
	cfg := promserver.Config{Listen: "127.0.0.1:0", DataDir: dataDir, ScrapeInterval: interval, Logger: testLogger(t)}
	if targets != nil {
		cfg.Targets = targets.get
	}
	s, err := promserver.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// testLogger writes the server's logs to the test's output; every server
// is closed before its test ends.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func client(t *testing.T, s *promserver.Server) v1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: s.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return v1.NewAPI(c)
}

// eventually polls cond until it holds or waitFor passes; cond returns
// what it saw, for the failure message.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	poll.Until(t, what, func() error {
		if ok, saw := cond(); !ok {
			return fmt.Errorf("last saw %s", saw)
		}
		return nil
	}, poll.Timeout(waitFor), poll.Every(interval/2))
}

// vectorOf runs an instant query now and returns its vector.
func vectorOf(t *testing.T, p v1.API, q string) (model.Vector, string) {
	t.Helper()
	v, _, _, err := p.Query(context.Background(), q, time.Now())
	if err != nil {
		return nil, err.Error()
	}
	vec, ok := v.(model.Vector)
	if !ok {
		t.Fatalf("%s: result type %s, want vector", q, v.Type())
	}
	return vec, vec.String()
}

func TestRateOfScrapedCounter(t *testing.T) {
	t.Parallel()
	tg := startTarget(t)
	list := &targetList{}
	list.set(promserver.Target{URL: tg.url(), Labels: map[string]string{
		"job": "demo", "namespace": "shop", "rollout": "web", "role": "canary",
	}})
	p := client(t, startServer(t, t.TempDir(), list))

	var got model.Vector
	eventually(t, "rate(demo_requests_total[5s]) > 0", func() (bool, string) {
		vec, saw := vectorOf(t, p, `rate(demo_requests_total[5s])`)
		got = vec
		return len(vec) == 1 && vec[0].Value > 0, saw
	})
	want := model.Metric{
		"job": "demo", "namespace": "shop", "rollout": "web", "role": "canary",
		"instance": model.LabelValue(tg.srv.Listener.Addr().String()), "code": "200",
	}
	if !got[0].Metric.Equal(want) {
		t.Errorf("labels %v, want %v", got[0].Metric, want)
	}
}

func TestUpFollowsTarget(t *testing.T) {
	t.Parallel()
	tg := startTarget(t)
	gone := startTarget(t)
	list := &targetList{}
	list.set(
		promserver.Target{URL: tg.url(), Labels: map[string]string{"job": "x"}},
		promserver.Target{URL: gone.url(), Labels: map[string]string{"job": "removed"}},
	)
	p := client(t, startServer(t, t.TempDir(), list))

	upIs := func(job string, want float64) func() (bool, string) {
		return func() (bool, string) {
			vec, saw := vectorOf(t, p, fmt.Sprintf(`up{job=%q}`, job))
			return len(vec) == 1 && float64(vec[0].Value) == want, saw
		}
	}
	eventually(t, `up{job="x"} == 1 while the target serves`, upIs("x", 1))
	eventually(t, `up{job="removed"} == 1 while the target serves`, upIs("removed", 1))

	// A listed target that stops answering is down.
	tg.srv.Close()
	eventually(t, `up{job="x"} == 0 once the target stopped`, upIs("x", 0))

	// A target no longer listed goes stale: its series end.
	list.set(promserver.Target{URL: tg.url(), Labels: map[string]string{"job": "x"}})
	eventually(t, `up{job="removed"} absent once the target is unlisted`, func() (bool, string) {
		vec, saw := vectorOf(t, p, `up{job="removed"}`)
		return vec != nil && len(vec) == 0, saw
	})
}

func TestTargetsAddedLater(t *testing.T) {
	t.Parallel()
	list := &targetList{}
	p := client(t, startServer(t, t.TempDir(), list))
	// Some intervals with no target at all: the server has asked for its
	// targets at start and again after each of three intervals.
	eventually(t, "three scrape intervals with no targets", func() (bool, string) {
		n := list.asked.Load()
		return n >= 4, fmt.Sprintf("targets asked for %d times", n)
	})
	if vec, _ := vectorOf(t, p, `up`); len(vec) != 0 {
		t.Fatalf("up with no targets = %v, want empty", vec)
	}

	tg := startTarget(t)
	list.set(promserver.Target{URL: tg.url(), Labels: map[string]string{"job": "late"}})
	eventually(t, `up{job="late"} == 1`, func() (bool, string) {
		vec, saw := vectorOf(t, p, `up{job="late"}`)
		return len(vec) == 1 && vec[0].Value == 1, saw
	})
	if tg.count.Load() == 0 {
		t.Error("the target was never scraped")
	}
}

func TestTargetWithoutJobGetsDefaultJob(t *testing.T) {
	t.Parallel()
	tg := startTarget(t)
	list := &targetList{}
	list.set(promserver.Target{URL: tg.srv.URL}) // no path: /metrics
	p := client(t, startServer(t, t.TempDir(), list))
	eventually(t, "up of the default job", func() (bool, string) {
		vec, saw := vectorOf(t, p, fmt.Sprintf(`up{job=%q}`, promserver.DefaultJob))
		return len(vec) == 1 && vec[0].Value == 1, saw
	})
}

func TestTargetWithoutContentType(t *testing.T) {
	t.Parallel()
	tg := startTargetAs(t, "")
	list := &targetList{}
	list.set(promserver.Target{URL: tg.url(), Labels: map[string]string{"job": "bare"}})
	p := client(t, startServer(t, t.TempDir(), list))
	eventually(t, "samples from a target that sends no Content-Type", func() (bool, string) {
		vec, saw := vectorOf(t, p, `demo_requests_total{job="bare"}`)
		return len(vec) == 1, saw
	})
}

func TestRangeQueryReturnsMatrix(t *testing.T) {
	t.Parallel()
	tg := startTarget(t)
	list := &targetList{}
	list.set(promserver.Target{URL: tg.url(), Labels: map[string]string{"job": "r"}})
	p := client(t, startServer(t, t.TempDir(), list))
	eventually(t, "a few scrapes", func() (bool, string) {
		n := tg.count.Load()
		return n >= 4, fmt.Sprintf("%d scrapes", n)
	})

	end := time.Now()
	v, _, _, err := p.QueryRange(context.Background(), `demo_requests_total{job="r"}`,
		v1.Range{Start: end.Add(-5 * time.Second), End: end, Step: interval})
	if err != nil {
		t.Fatalf("QueryRange: %v", err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		t.Fatalf("result type %s, want matrix", v.Type())
	}
	if len(m) != 1 || len(m[0].Values) < 2 {
		t.Fatalf("matrix %v, want one series with several points", m)
	}
	for i := 1; i < len(m[0].Values); i++ {
		if m[0].Values[i].Value < m[0].Values[i-1].Value {
			t.Errorf("counter went down: %v", m[0].Values)
		}
	}
}

func TestBadQueryIsPrometheusError(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), nil)
	p := client(t, s)

	_, _, _, err := p.Query(context.Background(), `rate(`, time.Now())
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Fatalf("Query(rate() error = %#v, want a v1.Error of type %s", err, v1.ErrBadData)
	}
	if !strings.Contains(apiErr.Msg, `invalid parameter "query"`) {
		t.Errorf("message %q does not name the query parameter", apiErr.Msg)
	}

	_, _, _, err = p.QueryRange(context.Background(), `up`, v1.Range{Start: time.Now(), End: time.Now().Add(-time.Minute), Step: time.Second})
	if !errors.As(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Errorf("QueryRange with end before start: error = %v, want %s", err, v1.ErrBadData)
	}

	code, body := get(t, s.URL()+"/api/v1/query?query=sum(")
	if code != http.StatusBadRequest {
		t.Errorf("status %d, want 400", code)
	}
	const want = `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}`
	if body != want {
		t.Errorf("body\n%s\nwant\n%s", body, want)
	}
}

// TestResponseJSON pins the wire format against what Prometheus writes.
func TestResponseJSON(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), nil)
	for _, tc := range []struct {
		name, path, want string
	}{
		{"scalar", "/api/v1/query?query=1%2B1&time=1700000000.5",
			`{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"2"]}}`},
		{"vector", "/api/v1/query?query=vector(1)&time=1700000000",
			`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"1"]}]}}`},
		{"vector with milliseconds and HTML in a label", "/api/v1/query?query=label_replace(vector(0.0000001),%22a%22,%22%3Cb%3E%22,%22%22,%22%22)&time=1700000000.05",
			`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"<b>"},"value":[1700000000.050,"1e-07"]}]}}`},
		{"empty vector", "/api/v1/query?query=no_such_metric&time=1700000000",
			`{"status":"success","data":{"resultType":"vector","result":[]}}`},
		{"string", "/api/v1/query?query=%22a%3Cb%22&time=1700000000.123",
			`{"status":"success","data":{"resultType":"string","result":[1700000000.123,"a\u003cb"]}}`},
		{"special floats", "/api/v1/query?query=NaN&time=1700000000",
			`{"status":"success","data":{"resultType":"scalar","result":[1700000000,"NaN"]}}`},
		{"matrix", "/api/v1/query_range?query=label_replace(vector(2),%22a%22,%22b%22,%22%22,%22%22)&start=1700000000&end=1700000001&step=0.5",
			`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1700000000,"2"],[1700000000.500,"2"],[1700000001,"2"]]}]}}`},
		{"warnings", "/api/v1/query?query=quantile(2,vector(1))&time=1700000000",
			`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"+Inf"]}]},"warnings":["PromQL warning: quantile value should be between 0 and 1, got 2 (1:10)"]}`},
		{"bad step", "/api/v1/query_range?query=up&start=1&end=2&step=0",
			`{"status":"error","errorType":"bad_data","error":"invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"}`},
		{"bad time", "/api/v1/query?query=up&time=yesterday",
			`{"status":"error","errorType":"bad_data","error":"invalid parameter \"time\": invalid time value for 'time': cannot parse \"yesterday\" to a valid timestamp"}`},
		{"series needs match", "/api/v1/series",
			`{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, body := get(t, s.URL()+tc.path)
			if body != tc.want {
				t.Errorf("GET %s\n got %s\nwant %s", tc.path, body, tc.want)
			}
		})
	}

	// POST with a form body, as client_golang sends it.
	resp, err := http.PostForm(s.URL()+"/api/v1/query", url.Values{"query": {"vector(3)"}, "time": {"1700000000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if want := `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"3"]}]}}`; string(b) != want {
		t.Errorf("POST body %s, want %s", b, want)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
}

func TestWarningsReachTheClient(t *testing.T) {
	t.Parallel()
	p := client(t, startServer(t, t.TempDir(), nil))
	_, warnings, _, err := p.Query(context.Background(), `quantile(2, vector(1))`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "quantile value should be between 0 and 1") {
		t.Errorf("warnings %q, want the quantile warning", warnings)
	}
}

func TestLabelsAndSeries(t *testing.T) {
	t.Parallel()
	tg := startTarget(t)
	list := &targetList{}
	list.set(promserver.Target{URL: tg.url(), Labels: map[string]string{"job": "meta", "rollout": "web"}})
	p := client(t, startServer(t, t.TempDir(), list))
	eventually(t, "up{job=meta}", func() (bool, string) {
		vec, saw := vectorOf(t, p, `up{job="meta"}`)
		return len(vec) == 1, saw
	})
	ctx := context.Background()

	names, _, _, err := p.LabelNames(ctx, nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatalf("LabelNames: %v", err)
	}
	for _, want := range []model.LabelName{"__name__", "code", "instance", "job", "rollout"} {
		if !containsName(names, want) {
			t.Errorf("label names %v lack %s", names, want)
		}
	}

	values, _, _, err := p.LabelValues(ctx, "__name__", []string{`{job="meta"}`}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatalf("LabelValues: %v", err)
	}
	if !containsValue(values, "demo_requests_total") || !containsValue(values, "up") {
		t.Errorf("metric names %v lack demo_requests_total or up", values)
	}

	series, _, _, err := p.Series(ctx, []string{`up{job="meta"}`}, time.Now().Add(-time.Hour), time.Now())
	if err != nil {
		t.Fatalf("Series: %v", err)
	}
	if len(series) != 1 || series[0]["rollout"] != "web" || series[0]["__name__"] != "up" {
		t.Errorf("series %v, want up of the one target", series)
	}

	limited, warnings, _, err := p.Series(ctx, []string{`{job="meta"}`}, time.Time{}, time.Time{}, v1.WithLimit(1))
	if err != nil || len(limited) != 1 || len(warnings) != 1 {
		t.Errorf("Series with limit 1 = %v, warnings %q, error %v; want one series and a truncation warning", limited, warnings, err)
	}

	_, _, _, err = p.Series(ctx, []string{`{job=~".*"}`}, time.Time{}, time.Time{})
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Errorf("Series matching everything: error %v, want %s", err, v1.ErrBadData)
	}
}

func containsName(names []model.LabelName, n model.LabelName) bool {
	for _, x := range names {
		if x == n {
			return true
		}
	}
	return false
}

func containsValue(values model.LabelValues, v model.LabelValue) bool {
	for _, x := range values {
		if x == v {
			return true
		}
	}
	return false
}

func TestDataSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tg := startTarget(t)
	list := &targetList{}
	list.set(promserver.Target{URL: tg.url(), Labels: map[string]string{"job": "persist"}})

	first, err := promserver.Start(t.Context(), promserver.Config{Listen: "127.0.0.1:0", DataDir: dir, ScrapeInterval: interval, Targets: list.get, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := client(t, first)
	const q = `max_over_time(demo_requests_total{job="persist"}[1h])`
	var before float64
	eventually(t, "a few samples", func() (bool, string) {
		vec, saw := vectorOf(t, p, q)
		if len(vec) == 1 {
			before = float64(vec[0].Value)
		}
		return before >= 3, saw
	})
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// The same directory, nothing to scrape: only the old data answers.
	p = client(t, startServer(t, dir, nil))
	vec, saw := vectorOf(t, p, q)
	if len(vec) != 1 || float64(vec[0].Value) < before {
		t.Fatalf("after restart %s = %s, want at least %v", q, saw, before)
	}
}

func TestContextEndStopsServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	s, err := promserver.Start(ctx, promserver.Config{Listen: "127.0.0.1:0", DataDir: dir, ScrapeInterval: interval, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, s.URL()+"/-/ready"); code != http.StatusOK {
		t.Fatalf("/-/ready = %d before cancel", code)
	}
	cancel()
	eventually(t, "the API stops", func() (bool, string) {
		resp, err := http.Get(s.URL() + "/-/healthy")
		if err != nil {
			return true, ""
		}
		resp.Body.Close()
		return false, resp.Status
	})
	// Close waits for the shutdown the context's end began (it must not
	// race a second server on the same directory for the tsdb lock file),
	// and reports it clean.
	if err := s.Close(); err != nil {
		t.Errorf("Close after the context ended: %v", err)
	}
	// The tsdb lock is released: the directory opens again.
	again, err := promserver.Start(t.Context(), promserver.Config{Listen: "127.0.0.1:0", DataDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("the data directory does not open again: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Errorf("close the reopened server: %v", err)
	}

	if _, err := promserver.Start(ctx, promserver.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir()}); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with an ended context: error %v, want context.Canceled", err)
	}
}

func TestReadyHealthyAndOwnMetrics(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir(), nil)
	for path, want := range map[string]string{
		"/-/ready":   "Prometheus Server is Ready.\n",
		"/-/healthy": "Prometheus Server is Healthy.\n",
	} {
		if code, body := get(t, s.URL()+path); code != http.StatusOK || body != want {
			t.Errorf("GET %s = %d %q, want 200 %q", path, code, body, want)
		}
	}
	if code, body := get(t, s.URL()+"/metrics"); code != http.StatusOK || !strings.Contains(body, "prometheus_tsdb_head_series") {
		t.Errorf("GET /metrics = %d without the tsdb's metrics", code)
	}
	req, _ := http.NewRequest(http.MethodDelete, s.URL()+"/api/v1/query", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /api/v1/query = %d, want 405 (client_golang falls back to GET on it)", resp.StatusCode)
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	t.Parallel()
	_, err := promserver.Start(t.Context(), promserver.Config{Listen: "nope", ScrapeInterval: -time.Second})
	if !errors.Is(err, promserver.ErrInvalidConfig) {
		t.Fatalf("error %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"Listen", "DataDir", "ScrapeInterval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
