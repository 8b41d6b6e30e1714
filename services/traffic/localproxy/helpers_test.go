package localproxy

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
)

var web = events.Ref{Namespace: "default", Name: "web"}

// env is a proxy on a real bus, with app processes registered through the
// real endpoints bucket.
type env struct {
	t      *testing.T
	client *events.Client
	eps    endpoints.Store
	reg    *prometheus.Registry
	r      *Router
	http   *http.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	e := &env{t: t, client: c, http: testClient()}
	var err error
	if e.eps, err = endpoints.Open(context.Background(), c.JetStream(), events.BusConfig{}); err != nil {
		t.Fatal(err)
	}
	e.r = e.startRouter()
	return e
}

// startRouter starts a router on e's bus with a fresh registry.
func (e *env) startRouter() *Router {
	e.t.Helper()
	e.reg = prometheus.NewRegistry()
	r, err := New(Config{JetStream: e.client.JetStream(), Registerer: e.reg, Logger: eventstest.Quiet(), DrainTimeout: eventstest.Wait})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func testClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr, Timeout: eventstest.Wait}
}

// app is an app process: it answers with its name.
type app struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
	// serve, when set, answers instead of the default.
	serve func(w http.ResponseWriter, r *http.Request)
}

func newApp(t *testing.T, name string) *app {
	a := &app{name: name}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		w.Header().Set("X-App", a.name)
		if a.serve != nil {
			a.serve(w, r)
			return
		}
		io.WriteString(w, a.name)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) addr() string { return a.srv.Listener.Addr().String() }

// register publishes the ready processes of one revision and waits until
// the proxy knows them.
func (e *env) register(ref events.Ref, hash string, apps ...*app) {
	e.t.Helper()
	var addrs []string
	for _, a := range apps {
		addrs = append(addrs, a.addr())
	}
	e.put(endpoints.Revision{Ref: ref, PodHash: hash, Ready: addrs, UpdatedAt: time.Now()})
}

// registerExperiment publishes the ready processes of one experiment
// template and waits until the proxy knows them.
func (e *env) registerExperiment(ref events.Ref, hash, experiment, template string, apps ...*app) {
	e.t.Helper()
	rev := endpoints.Revision{Ref: ref, PodHash: hash, Experiment: experiment, Template: template, Ready: []string{}, UpdatedAt: time.Now()}
	for _, a := range apps {
		rev.Ready = append(rev.Ready, a.addr())
	}
	e.put(rev)
}

// put writes an endpoints entry and waits until the proxy knows it.
func (e *env) put(rev endpoints.Revision) {
	e.t.Helper()
	if err := e.eps.Put(context.Background(), rev); err != nil {
		e.t.Fatal(err)
	}
	e.waitReady(rev.Ref, rev.Name(), len(rev.Ready))
}

// waitReady waits until the proxy knows n ready processes of an endpoints
// entry (entry: endpoints.EntryName).
func (e *env) waitReady(ref events.Ref, hash string, n int) {
	e.t.Helper()
	poll.Until(e.t, fmt.Sprintf("the proxy to know %d ready processes of %s %s", n, ref, hash), func() error {
		e.r.mu.Lock()
		got := len(e.r.ready[ref][hash])
		e.r.mu.Unlock()
		if got != n {
			return fmt.Errorf("proxy knows %d", got)
		}
		return nil
	}, poll.Timeout(eventstest.Wait))
}

func (e *env) apply(ref events.Ref, seq int64, route tasks.Route) int32 {
	e.t.Helper()
	w, err := e.r.Apply(context.Background(), ref, seq, route)
	if err != nil {
		e.t.Fatalf("Apply seq %d: %v", seq, err)
	}
	return w
}

// url is the proxy's base URL for ref.
func (e *env) url(ref events.Ref) string {
	e.t.Helper()
	addr, _ := e.r.Addrs(ref)
	if addr == "" {
		e.t.Fatalf("no proxy for %s", ref)
	}
	return "http://" + addr
}

// response is what a client got.
type response struct {
	code int
	app  string
	body string
}

func (e *env) do(req *http.Request) response {
	e.t.Helper()
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Errorf("%s %s: %v", req.Method, req.URL, err)
		return response{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, app: resp.Header.Get("X-App"), body: string(b)}
}

func (e *env) get(url string, header ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return e.do(req)
}

// load sends n GETs to url from workers goroutines and counts responses
// by status and app.
func (e *env) load(url string, n, workers int) map[string]int {
	e.t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				r := e.get(url)
				mu.Lock()
				got[key(r)]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return got
}

// key is "<code> <app>", e.g. "200 canary-1".
func key(r response) string { return strconv.Itoa(r.code) + " " + r.app }

// sumApps adds the counts of 200 responses from apps whose name starts with
// prefix.
func sumApps(got map[string]int, prefix string) int {
	n := 0
	for k, v := range got {
		if strings.HasPrefix(k, "200 "+prefix) {
			n += v
		}
	}
	return n
}

// withinBinomial fails unless k of n trials is within 5 standard
// deviations of a binomial with probability p: a false failure has odds
// below one in a million.
func withinBinomial(t *testing.T, what string, k, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(k)-mean) > 5*sd+0.5 {
		t.Errorf("%s: %d of %d (%.1f%%), want %.1f%% ± %.1f points", what, k, n, 100*float64(k)/float64(n), 100*p, 500*sd/float64(n))
	}
}

// canaryRoute is a canary route with stable hash "s1" and canary "c1",
// listening on a free port. routed adds trafficRouting.
func canaryRoute(weight int32, routed bool) tasks.Route {
	r := tasks.Route{
		Strategy:     spec.StrategyCanary,
		StableHash:   "s1",
		CanaryHash:   "c1",
		CanaryWeight: weight,
		Annotations:  map[string]string{AnnotationListen: "127.0.0.1:0"},
	}
	if routed {
		r.CanaryService, r.StableService = "web-canary", "web-stable"
		r.TrafficRouting = &spec.TrafficRouting{Istio: &spec.IstioTrafficRouting{VirtualService: &spec.IstioVirtualService{Name: "web"}}}
	}
	return r
}

// counter reads sluice_proxy_requests_total for one series; template is
// the experiment template's name (role experiment) or empty.
func (e *env) counter(ref events.Ref, role spec.Role, template, code string) float64 {
	e.t.Helper()
	return e.sample(MetricRequests, map[string]string{"namespace": ref.Namespace, "rollout": ref.Name, "role": string(role), "template": template, "code": code})
}

// observations reads the sample count of the duration histogram.
func (e *env) observations(ref events.Ref, role spec.Role, template string) float64 {
	e.t.Helper()
	return e.sample(MetricDuration, map[string]string{"namespace": ref.Namespace, "rollout": ref.Name, "role": string(role), "template": template})
}

func (e *env) sample(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metric
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return float64(m.GetHistogram().GetSampleCount())
}
