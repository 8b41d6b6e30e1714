package localproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

func TestWeightedCanaryGetsItsWeight(t *testing.T) {
	e := newEnv(t)
	e.register(web, "s1", newApp(t, "stable-1"), newApp(t, "stable-2"))
	e.register(web, "c1", newApp(t, "canary-1"))
	if w := e.apply(web, 1, canaryRoute(20, true)); w != 20 {
		t.Errorf("Apply returned weight %d, want 20", w)
	}
	const n = 2000
	got := e.load(e.url(web), n, 8)
	canary, stable := sumApps(got, "canary-"), sumApps(got, "stable-")
	if canary+stable != n {
		t.Fatalf("responses %v, want %d answered 200", got, n)
	}
	withinBinomial(t, "canary share at weight 20", canary, n, 0.20)
	// Within the stable, processes are taken in turn.
	if d := got["200 stable-1"] - got["200 stable-2"]; d < -8 || d > 8 {
		t.Errorf("stable processes unevenly used: %v", got)
	}
}

func TestMaxTrafficWeightIsTheDenominator(t *testing.T) {
	e := newEnv(t)
	e.register(web, "s1", newApp(t, "stable-1"))
	e.register(web, "c1", newApp(t, "canary-1"))
	route := canaryRoute(50, true)
	maxW := int32(200)
	route.TrafficRouting.MaxTrafficWeight = &maxW
	if w := e.apply(web, 1, route); w != 50 {
		t.Errorf("Apply returned weight %d, want 50 (of 200)", w)
	}
	const n = 1000
	got := e.load(e.url(web), n, 8)
	withinBinomial(t, "canary share at weight 50 of 200", sumApps(got, "canary-"), n, 0.25)
}

func TestWeightZeroSendsNothingToTheCanary(t *testing.T) {
	for _, routed := range []bool{true, false} {
		name := "basic"
		if routed {
			name = "trafficRouting"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			canary := newApp(t, "canary-1")
			e.register(web, "s1", newApp(t, "stable-1"))
			e.register(web, "c1", canary)
			if w := e.apply(web, 1, canaryRoute(0, routed)); w != 0 {
				t.Errorf("Apply returned weight %d, want 0", w)
			}
			got := e.load(e.url(web), 500, 8)
			if canary.hits.Load() != 0 || got["200 stable-1"] != 500 {
				t.Errorf("at weight 0: responses %v, canary hits %d", got, canary.hits.Load())
			}
			// Without a ready stable process the canary still gets nothing.
			e.register(web, "s1")
			r := e.get(e.url(web))
			if r.code != http.StatusServiceUnavailable || canary.hits.Load() != 0 {
				t.Fatalf("no stable at weight 0: got %d %q, canary hits %d", r.code, r.body, canary.hits.Load())
			}
			if !strings.Contains(r.body, "default/web has no ready stable process (pod hash s1)") || !strings.Contains(r.body, "weight 0") {
				t.Errorf("503 body %q does not say why", r.body)
			}
		})
	}
}

func TestBasicCanaryFollowsReadyProcesses(t *testing.T) {
	e := newEnv(t)
	e.register(web, "s1", newApp(t, "stable-1"), newApp(t, "stable-2"), newApp(t, "stable-3"))
	e.register(web, "c1", newApp(t, "canary-1"))
	// The weight asked for does not matter beyond 0: the replica ratio does.
	if w := e.apply(web, 1, canaryRoute(10, false)); w != 25 {
		t.Errorf("Apply returned weight %d, want the ready share 25", w)
	}
	const n = 1000
	got := e.load(e.url(web), n, 8)
	withinBinomial(t, "canary share with 1 of 4 processes", sumApps(got, "canary-"), n, 0.25)
	for _, a := range []string{"stable-1", "stable-2", "stable-3", "canary-1"} {
		if got["200 "+a] == 0 {
			t.Errorf("%s got no request: %v", a, got)
		}
	}
}

func TestHeaderRouteSendsMatchingRequestsToTheCanary(t *testing.T) {
	e := newEnv(t)
	e.register(web, "s1", newApp(t, "stable-1"))
	e.register(web, "c1", newApp(t, "canary-1"))
	route := canaryRoute(0, true)
	route.HeaderRoutes = []spec.SetHeaderRoute{{Name: "beta", Match: []spec.HeaderRoutingMatch{
		{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "yes"}},
		{HeaderName: "User-Agent", HeaderValue: &spec.StringMatch{Regex: "Mozilla/.*"}},
	}}}
	e.apply(web, 1, route)
	url := e.url(web)
	for _, c := range []struct {
		name   string
		header []string
		want   string
	}{
		{"all headers match", []string{"X-Beta", "yes", "User-Agent", "Mozilla/5.0"}, "canary-1"},
		{"one header missing", []string{"X-Beta", "yes"}, "stable-1"},
		{"value differs", []string{"X-Beta", "yes please", "User-Agent", "Mozilla/5.0"}, "stable-1"},
		{"regex must match the whole value", []string{"X-Beta", "yes", "User-Agent", "curl Mozilla/5.0"}, "stable-1"},
		{"no header", nil, "stable-1"},
	} {
		for range 20 {
			if r := e.get(url, c.header...); r.code != 200 || r.app != c.want {
				t.Fatalf("%s: got %d from %q, want %s", c.name, r.code, r.app, c.want)
			}
		}
	}
	// A header route to a canary without ready processes is a 503, not the stable.
	e.register(web, "c1")
	if r := e.get(url, "X-Beta", "yes", "User-Agent", "Mozilla/5.0"); r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, `header route "beta"`) {
		t.Errorf("header route without canary: %d %q", r.code, r.body)
	}
}

func TestMirrorRouteCopiesRequestsToTheCanary(t *testing.T) {
	e := newEnv(t)
	stable := newApp(t, "stable-1")
	canary := newApp(t, "canary-1")
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce)
	var mu sync.Mutex
	var copies []string
	canary.serve = func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		copies = append(copies, r.Method+" "+r.URL.Path+" "+string(b)+" "+r.Header.Get(MirrorHeader))
		mu.Unlock()
		<-release // the canary is stuck, and then fails
		http.Error(w, "canary broken", http.StatusInternalServerError)
	}
	e.register(web, "s1", stable)
	e.register(web, "c1", canary)
	route := canaryRoute(0, true)
	route.MirrorRoutes = []spec.SetMirrorRoute{{Name: "shadow", Match: []spec.RouteMatch{
		{Method: &spec.StringMatch{Exact: "POST"}, Path: &spec.StringMatch{Prefix: "/api/"}},
	}}}
	e.apply(web, 1, route)
	url := e.url(web)

	const n = 40
	for i := range n {
		req, _ := http.NewRequest(http.MethodPost, url+"/api/order", strings.NewReader("order-"+strconv.Itoa(i+1)))
		// Every original is answered by the stable while every copy is
		// stuck on the canary: mirroring never holds a request up.
		if r := e.do(req); r.code != 200 || r.app != "stable-1" {
			t.Fatalf("mirrored request %d: got %d from %q", i, r.code, r.app)
		}
	}
	for _, path := range []string{"/api/order", "/other"} {
		method := http.MethodGet
		if path == "/other" {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, url+path, strings.NewReader("x"))
		if r := e.do(req); r.code != 200 || r.app != "stable-1" {
			t.Fatalf("%s %s: got %d from %q", method, path, r.code, r.app)
		}
	}
	releaseOnce()
	// The app counts a hit before its handler records the copy: wait for
	// the copies themselves.
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(copies)
	}
	poll.Until(t, fmt.Sprintf("the canary to receive %d copies (only POST /api/ matches)", n), func() error {
		if got := received(); got < n {
			return fmt.Errorf("canary got %d copies", got)
		}
		return nil
	}, poll.Timeout(eventstest.Wait))
	mu.Lock()
	defer mu.Unlock()
	if len(copies) != n {
		t.Fatalf("canary got %d copies, want %d (only POST /api/ matches)", len(copies), n)
	}
	seen := map[string]bool{}
	for _, c := range copies {
		seen[c] = true
	}
	for i := range n {
		if want := "POST /api/order order-" + strconv.Itoa(i+1) + " 1"; !seen[want] {
			t.Errorf("copy %q missing from %q", want, copies)
		}
	}
	if stable.hits.Load() != n+2 {
		t.Errorf("stable served %d, want %d", stable.hits.Load(), n+2)
	}
	if c := e.counter(web, spec.RoleCanary, "", "500"); c != 0 {
		t.Errorf("mirrored copies counted in the proxy metrics: %v", c)
	}
}

func TestRouteAndEndpointChangesUnderLoadDropNoRequest(t *testing.T) {
	e := newEnv(t)
	slow := func(a *app) *app {
		a.serve = func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Millisecond) // keeps requests in flight across swaps
			io.WriteString(w, a.name)
		}
		return a
	}
	s1, s2 := slow(newApp(t, "stable-1")), slow(newApp(t, "stable-2"))
	c1 := slow(newApp(t, "canary-1"))
	e.register(web, "s1", s1, s2)
	e.register(web, "c1", c1)
	e.apply(web, 1, canaryRoute(0, true))
	url := e.url(web)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := e.http.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, errors.Join(err, errors.New("status "+resp.Status)))
					continue
				}
				ok.Add(1)
			}
		})
	}
	seq := int64(1)
	for round := range 3 {
		for _, w := range []int32{10, 30, 50, 80, 100, 60, 20, 0} {
			seq++
			e.apply(web, seq, canaryRoute(w, true))
			// Endpoints change too: a stable process leaves and comes back.
			if w == 50 {
				e.register(web, "s1", s1)
			}
			if w == 20 {
				e.register(web, "s1", s1, s2)
			}
			target := ok.Load() + 20
			poll.True(t, fmt.Sprintf("20 more requests to succeed at weight %d (or one to fail)", w), func() bool {
				return ok.Load() >= target || failed.Load() != 0
			}, poll.Every(time.Millisecond), poll.Timeout(eventstest.Wait))
		}
		_ = round
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during route changes; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if c1.hits.Load() == 0 || s1.hits.Load() == 0 || s2.hits.Load() == 0 {
		t.Errorf("hits: stable %d+%d, canary %d", s1.hits.Load(), s2.hits.Load(), c1.hits.Load())
	}
	t.Logf("%d requests across %d route changes", ok.Load(), seq)
}

func TestStaleSeqIsRejected(t *testing.T) {
	e := newEnv(t)
	e.register(web, "s1", newApp(t, "stable-1"))
	e.register(web, "c1", newApp(t, "canary-1"))
	e.apply(web, 5, canaryRoute(100, true))
	_, err := e.r.Apply(context.Background(), web, 4, canaryRoute(0, true))
	if !errors.Is(err, tasks.ErrStale) || !strings.Contains(err.Error(), "seq 4") {
		t.Fatalf("seq 4 after 5: %v, want ErrStale", err)
	}
	if r := e.get(e.url(web)); r.app != "canary-1" {
		t.Errorf("a stale route changed the routing: got %q", r.app)
	}
	// The same seq again is a redelivery: applied again.
	if w := e.apply(web, 5, canaryRoute(100, true)); w != 100 {
		t.Errorf("seq 5 again: weight %d", w)
	}
}

func TestRestartRestoresRoutesAndSeq(t *testing.T) {
	e := newEnv(t)
	e.register(web, "s1", newApp(t, "stable-1"))
	e.register(web, "c1", newApp(t, "canary-1"))
	route := canaryRoute(100, true)
	route.Annotations[AnnotationListen] = freeAddr(t)
	e.apply(web, 7, route)
	if r := e.get(e.url(web)); r.app != "canary-1" {
		t.Fatalf("before restart: %q", r.app)
	}
	if err := e.r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Apply(context.Background(), web, 8, route); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Apply after Close: %v", err)
	}
	e.r = e.startRouter()
	if addr, _ := e.r.Addrs(web); addr != route.Annotations[AnnotationListen] {
		t.Fatalf("restored proxy on %q, want %s", addr, route.Annotations[AnnotationListen])
	}
	if r := e.get("http://" + route.Annotations[AnnotationListen]); r.app != "canary-1" {
		t.Errorf("after restart: %d %q", r.code, r.app)
	}
	if _, err := e.r.Apply(context.Background(), web, 6, canaryRoute(0, true)); !errors.Is(err, tasks.ErrStale) {
		t.Errorf("seq 6 after a restart that restored 7: %v", err)
	}
}

func TestBlueGreenActiveAndPreview(t *testing.T) {
	e := newEnv(t)
	e.register(web, "blue", newApp(t, "blue"))
	e.register(web, "green", newApp(t, "green"))
	route := tasks.Route{Strategy: spec.StrategyBlueGreen, ActiveService: "web", PreviewService: "web-preview",
		ActiveHash: "blue", PreviewHash: "green",
		Annotations: map[string]string{AnnotationListen: "127.0.0.1:0", AnnotationPreviewListen: "127.0.0.1:0"}}
	if w := e.apply(web, 1, route); w != 0 {
		t.Errorf("blue/green Apply returned weight %d", w)
	}
	listen, preview := e.r.Addrs(web)
	if listen == "" || preview == "" {
		t.Fatalf("proxies on %q and %q", listen, preview)
	}
	for range 10 {
		if r := e.get("http://" + listen); r.app != "blue" {
			t.Fatalf("active before the switch: %q", r.app)
		}
		if r := e.get("http://" + preview); r.app != "green" {
			t.Fatalf("preview: %q", r.app)
		}
	}
	route.ActiveHash = "green"
	e.apply(web, 2, route)
	if l, p := e.r.Addrs(web); l != listen || p != preview {
		t.Errorf("addresses changed on a switch: %s %s", l, p)
	}
	for range 10 {
		if r := e.get("http://" + listen); r.app != "green" {
			t.Fatalf("active after the switch: %q", r.app)
		}
	}
	if a, p := e.counter(web, spec.RoleActive, "", "200"), e.counter(web, spec.RolePreview, "", "200"); a != 20 || p != 10 {
		t.Errorf("metrics: active %v, preview %v; want 20 and 10", a, p)
	}
	// Without the preview annotation there is no preview proxy.
	delete(route.Annotations, AnnotationPreviewListen)
	e.apply(web, 3, route)
	if _, p := e.r.Addrs(web); p != "" {
		t.Errorf("preview proxy still on %s", p)
	}
	// No ready active process: 503, never the preview.
	e.register(web, "green")
	if r := e.get("http://" + listen); r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "no ready active process (pod hash green)") {
		t.Errorf("no active process: %d %q", r.code, r.body)
	}
}

func TestMetricsCountEveryRequest(t *testing.T) {
	e := newEnv(t)
	failing := newApp(t, "canary-1")
	failing.serve = func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}
	e.register(web, "s1", newApp(t, "stable-1"))
	e.register(web, "c1", failing)
	e.apply(web, 1, canaryRoute(50, true))
	const n = 400
	got := e.load(e.url(web), n, 8)
	if got["200 stable-1"]+got["500 canary-1"] != n {
		t.Fatalf("responses %v", got)
	}
	if c := e.counter(web, spec.RoleStable, "", "200"); int(c) != got["200 stable-1"] {
		t.Errorf("stable 200 counter %v, want %d", c, got["200 stable-1"])
	}
	if c := e.counter(web, spec.RoleCanary, "", "500"); int(c) != got["500 canary-1"] {
		t.Errorf("canary 500 counter %v, want %d", c, got["500 canary-1"])
	}
	if s, c := e.observations(web, spec.RoleStable, ""), e.observations(web, spec.RoleCanary, ""); int(s) != got["200 stable-1"] || int(c) != got["500 canary-1"] {
		t.Errorf("duration observations stable %v canary %v, want %v", s, c, got)
	}
	// A request with no process to go to counts as a 503 of its role.
	shop := events.Ref{Namespace: "default", Name: "shop"}
	e.apply(shop, 1, canaryRoute(0, true))
	for range 3 {
		if r := e.get(e.url(shop)); r.code != http.StatusServiceUnavailable {
			t.Fatalf("shop without processes: %d", r.code)
		}
	}
	if c := e.counter(shop, spec.RoleStable, "", "503"); c != 3 {
		t.Errorf("503 counter %v, want 3", c)
	}
}

func TestNoReadyProcessFallsBackOnlyWhereWeightAllows(t *testing.T) {
	e := newEnv(t)
	e.register(web, "s1", newApp(t, "stable-1"))
	e.register(web, "c1", newApp(t, "canary-1"))
	// The canary's share goes to the stable while the canary has no process.
	e.apply(web, 1, canaryRoute(50, true))
	e.register(web, "c1")
	got := e.load(e.url(web), 100, 4)
	if got["200 stable-1"] != 100 {
		t.Errorf("weight 50, no canary process: %v", got)
	}
	// At full weight the stable must not take the canary's requests.
	e.apply(web, 2, canaryRoute(100, true))
	r := e.get(e.url(web))
	if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "no ready canary process (pod hash c1), and the stable may not take its requests at canary weight 100 of 100") {
		t.Errorf("weight 100, no canary process: %d %q", r.code, r.body)
	}
	// The stable's share goes to the canary while the stable has none.
	e.register(web, "c1", newApp(t, "canary-2"))
	e.register(web, "s1")
	e.apply(web, 3, canaryRoute(10, true))
	if got := e.load(e.url(web), 50, 4); got["200 canary-2"] != 50 {
		t.Errorf("weight 10, no stable process: %v", got)
	}
}

func TestApplyRejectsWhatItCannotServe(t *testing.T) {
	e := newEnv(t)
	e.apply(events.Ref{Namespace: "default", Name: "other"}, 1, withListen(canaryRoute(0, true), freeAddr(t)))
	otherAddr, _ := e.r.Addrs(events.Ref{Namespace: "default", Name: "other"})
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	badRegex := canaryRoute(0, true)
	badRegex.HeaderRoutes = []spec.SetHeaderRoute{{Name: "h", Match: []spec.HeaderRoutingMatch{{HeaderName: "X", HeaderValue: &spec.StringMatch{Regex: "("}}}}}
	for _, c := range []struct {
		name  string
		route tasks.Route
		want  string
	}{
		{"no listen annotation", withListen(canaryRoute(0, true), ""), "add the annotation local.sluice.io/listen"},
		{"malformed address", withListen(canaryRoute(0, true), "8080"), `annotation local.sluice.io/listen: "8080" is not host:port`},
		{"address of another rollout", withListen(canaryRoute(0, true), otherAddr), "is already the address of the proxy of default/other"},
		{"address held by another program", withListen(canaryRoute(0, true), held.Addr().String()), "cannot listen on " + held.Addr().String()},
		{"invalid regex", badRegex, "headerRoutes[0] (h) match[0] headerValue: regex"},
		{"preview on the listen address", tasks.Route{Strategy: spec.StrategyBlueGreen, ActiveHash: "a", Annotations: map[string]string{AnnotationListen: "127.0.0.1:9", AnnotationPreviewListen: "127.0.0.1:9"}}, "need different addresses"},
		{"preview on the address of another rollout", tasks.Route{Strategy: spec.StrategyBlueGreen, ActiveHash: "a", Annotations: map[string]string{AnnotationListen: "127.0.0.1:0", AnnotationPreviewListen: otherAddr}}, "annotation local.sluice.io/preview-listen: " + otherAddr + " is already the address of the proxy of default/other"},
		{"experiment weights beyond the maximum", withBaseline(canaryRoute(90, true), 20), "canary weight 90 and experiment weights 20 add up to more than maxTrafficWeight 100"},
		{"negative experiment weight", withBaseline(canaryRoute(0, true), -1), `experiments[0] (template "baseline"): weight -1 must not be negative`},
		{"unknown strategy", tasks.Route{Strategy: "rainbow", Annotations: map[string]string{AnnotationListen: "127.0.0.1:0"}}, `unknown strategy "rainbow"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.r.Apply(context.Background(), web, 1, c.route)
			if !errors.Is(err, traffic.ErrRejected) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Apply: %v; want ErrRejected saying %q", err, c.want)
			}
		})
	}
	// A rejected route does not count as applied.
	e.apply(web, 1, canaryRoute(0, true))
}

func withListen(r tasks.Route, addr string) tasks.Route {
	r.Annotations = map[string]string{}
	if addr != "" {
		r.Annotations[AnnotationListen] = addr
	}
	return r
}

func TestStoppingAProxyDrainsRequestsInFlight(t *testing.T) {
	e := newEnv(t)
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	a := newApp(t, "stable-1")
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the app closes, should the test fail
	a.serve = func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "done")
	}
	e.register(web, "s1", a)
	e.apply(web, 1, canaryRoute(0, true))
	oldURL := e.url(web)

	onOld := make(chan response, 1)
	go func() { onOld <- e.get(oldURL) }()
	<-entered
	// A new listen address: the old proxy stops accepting and drains.
	e.apply(web, 2, withListen(canaryRoute(0, true), freeAddr(t)))
	newURL := e.url(web)
	if newURL == oldURL {
		t.Fatal("listen address did not change")
	}
	waitRefused(t, oldURL)
	onNew := make(chan response, 1)
	go func() { onNew <- e.get(newURL) }()
	<-entered
	// Close while a request is in flight on the new proxy.
	closed := make(chan error, 1)
	go func() { closed <- e.r.Close(context.Background()) }()
	waitRefused(t, newURL)
	releaseOnce()
	for name, ch := range map[string]chan response{"old proxy": onOld, "closed proxy": onNew} {
		if r := <-ch; r.code != 200 || r.body != "done" {
			t.Errorf("request in flight on the %s: %d %q", name, r.code, r.body)
		}
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

// waitRefused waits until url's listener is closed.
func waitRefused(t *testing.T, url string) {
	t.Helper()
	addr := strings.TrimPrefix(url, "http://")
	poll.Until(t, addr+" refusing connections", func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil
		}
		c.Close()
		return errors.New("still accepts connections")
	}, poll.Every(5*time.Millisecond))
}

func TestForwardedHeaders(t *testing.T) {
	e := newEnv(t)
	a := newApp(t, "stable-1")
	a.serve = func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, strings.Join([]string{r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"), r.URL.RequestURI(), string(b)}, "|"))
	}
	e.register(web, "s1", a)
	e.apply(web, 1, canaryRoute(0, true))
	req, _ := http.NewRequest(http.MethodPut, e.url(web)+"/a/b?q=1", bytes.NewReader([]byte("payload")))
	req.Host = "shop.example"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	r := e.do(req)
	if want := "shop.example|203.0.113.7, 127.0.0.1|shop.example|http|/a/b?q=1|payload"; r.body != want {
		t.Errorf("app saw %q, want %q", r.body, want)
	}
}

// freeAddr returns a loopback address nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestRouterContract(t *testing.T) {
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) traffic.Router { return newEnv(t).r },
		Prepare: func(_ *testing.T, _ events.Ref, r *tasks.Route) {
			r.Annotations = map[string]string{AnnotationListen: "127.0.0.1:0"}
		},
	})
}

func TestUpgradedConnectionsPassThrough(t *testing.T) {
	e := newEnv(t)
	a := newApp(t, "stable-1")
	a.serve = func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	}
	e.register(web, "s1", a)
	e.apply(web, 1, canaryRoute(0, true))
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url(web), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(eventstest.Wait))
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(conn, "hello\n")
	if line, _ := br.ReadString('\n'); line != "echo: hello\n" {
		t.Errorf("over the upgraded connection: %q", line)
	}
	conn.Close()
	poll.True(t, "the upgrade to be counted as 101", func() bool {
		return e.counter(web, spec.RoleStable, "", "101") == 1
	}, poll.Timeout(eventstest.Wait))
}

// Deleting a rollout frees its proxy's address at once: another rollout
// can listen there, and a restarted proxy does not bring the route back.
func TestRemoveFreesTheAddressAndForgetsTheRoute(t *testing.T) {
	e := newEnv(t)
	e.register(web, "s1", newApp(t, "stable-1"))
	addr := freeAddr(t)
	e.apply(web, 3, withListen(canaryRoute(0, true), addr))
	if r := e.get("http://" + addr); r.app != "stable-1" {
		t.Fatalf("before remove: %d %q", r.code, r.app)
	}
	for range 2 {
		if w := e.apply(web, 4, traffictest.Remove(withListen(canaryRoute(0, true), addr))); w != 0 {
			t.Errorf("remove: weight %d", w)
		}
	}
	if l, _ := e.r.Addrs(web); l != "" {
		t.Errorf("proxy still on %q after remove", l)
	}
	// No waiting: the address is free when Apply returns.
	shop := events.Ref{Namespace: "default", Name: "shop"}
	e.register(shop, "s1", newApp(t, "shop-1"))
	e.apply(shop, 1, withListen(canaryRoute(0, true), addr))
	if r := e.get("http://" + addr); r.app != "shop-1" {
		t.Errorf("the new rollout on the freed address: %d %q", r.code, r.app)
	}
	if err := e.r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.r = e.startRouter()
	if l, _ := e.r.Addrs(web); l != "" {
		t.Errorf("a restarted proxy brought the removed route back on %q", l)
	}
	// Forgotten, seq guard included: a new request starts fresh.
	other := freeAddr(t)
	e.apply(web, 1, withListen(canaryRoute(0, true), other))
	if r := e.get("http://" + other); r.app != "stable-1" {
		t.Errorf("the rollout created again: %d %q", r.code, r.app)
	}
}

// A process that refuses connections before the proxy heard it left the
// endpoints (a restart stopping it) costs no request: the request goes to
// another ready process of the same revision.
func TestARefusingProcessIsSkipped(t *testing.T) {
	e := newEnv(t)
	gone, alive := newApp(t, "stable-1"), newApp(t, "stable-2")
	e.register(web, "s1", gone, alive)
	e.apply(web, 1, canaryRoute(0, true))
	gone.srv.Close() // still in the endpoints
	for i := range 10 {
		if r := e.get(e.url(web)); r.code != 200 || r.app != "stable-2" {
			t.Fatalf("request %d: %d %q, want stable-2", i, r.code, r.app)
		}
	}
	if n := e.counter(web, spec.RoleStable, "", "200"); n != 10 {
		t.Errorf("%v requests counted as stable 200, want 10", n)
	}
}

// A going process may reset a connection its listener had already
// queued: an idempotent request is sent to another process, a POST is not
// (it may have had its effect).
func TestAResettingProcessCostsNoIdempotentRequest(t *testing.T) {
	e := newEnv(t)
	alive := newApp(t, "stable-2")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.(*net.TCPConn).SetLinger(0) // close with RST
			buf := make([]byte, 1)
			_, _ = c.Read(buf) // the request arrived
			c.Close()
		}
	}()
	resetter := &app{name: "going", srv: &httptest.Server{Listener: l}}
	e.register(web, "s1", resetter, alive)
	e.apply(web, 1, canaryRoute(0, true))
	for i := range 20 {
		if r := e.get(e.url(web)); r.code != 200 || r.app != "stable-2" {
			t.Fatalf("GET %d: %d %q, want stable-2", i, r.code, r.app)
		}
	}
	failed := 0
	for range 40 {
		req, err := http.NewRequest(http.MethodPost, e.url(web), strings.NewReader("order=1"))
		if err != nil {
			t.Fatal(err)
		}
		switch r := e.do(req); {
		case r.code == http.StatusBadGateway:
			failed++
		case r.code != 200 || r.app != "stable-2":
			t.Fatalf("POST: %d %q", r.code, r.app)
		}
	}
	if failed == 0 {
		t.Errorf("no POST of 40 reached the resetting process, or one was sent again after a reset")
	}
}
