package kubetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// Fault is what the fault proxy answers a request a rule matched with,
// instead of passing it to kube-apiserver. Each answer is the Status the
// API server itself sends in that case, so clients decode it as they
// would decode the real one (apierrors.IsConflict, IsTooManyRequests, ...).
type Fault string

const (
	// FaultConflict answers 409 Conflict (reason Conflict), as a write
	// whose resourceVersion is out of date is answered.
	FaultConflict Fault = "conflict"
	// FaultTooManyRequests answers 429 (reason TooManyRequests) with a
	// Retry-After header, as API priority and fairness or max-in-flight
	// limits do. client-go waits and retries such answers itself (up to
	// ten times), so a client sees an error only when several come in a
	// row.
	FaultTooManyRequests Fault = "too-many-requests"
	// FaultInternalError answers 500 (reason InternalError).
	FaultInternalError Fault = "internal-error"
	// FaultUnavailable answers 503 (reason ServiceUnavailable), without
	// Retry-After, so the client sees it.
	FaultUnavailable Fault = "unavailable"
	// FaultTimeout holds the request, unanswered, until the client gives
	// up or Rule.Hold passes; then it answers 504 (reason Timeout) as
	// kube-apiserver does when a request outlives its --request-timeout.
	FaultTimeout Fault = "timeout"
)

// Faults lists every Fault, in the order reports show them.
var Faults = []Fault{FaultConflict, FaultTooManyRequests, FaultInternalError, FaultUnavailable, FaultTimeout}

// Rule makes the fault proxy answer some requests with a Fault.
type Rule struct {
	// Verbs the rule matches, as RBAC names them: get, list, watch,
	// create, update, patch, delete, deletecollection. Empty: all.
	Verbs []string
	// Resources the rule matches, as RBAC names them: "replicasets",
	// "rollouts/status" (a subresource only matches with its name).
	// Empty: all. Requests that are not for a resource (discovery,
	// /healthz, /version) are never faulted.
	Resources []string
	// Fault is the answer.
	Fault Fault
	// Probability that a matching request gets the fault, in (0, 1].
	Probability float64
	// RetryAfter is the Retry-After of FaultTooManyRequests, in whole
	// seconds (default 1s).
	RetryAfter time.Duration
	// Hold bounds how long FaultTimeout holds a request before it answers
	// 504. Zero: until the client gives up (or the proxy closes).
	Hold time.Duration
}

// ErrInvalidRule is wrapped by SetRules' errors.
var ErrInvalidRule = errors.New("kubetest: invalid fault rule")

func (r Rule) validate() error {
	var errs []error
	if !slices.Contains(Faults, r.Fault) {
		errs = append(errs, fmt.Errorf("%w: unknown fault %q (known: %v)", ErrInvalidRule, r.Fault, Faults))
	}
	if !(r.Probability > 0 && r.Probability <= 1) {
		errs = append(errs, fmt.Errorf("%w: probability %v must be in (0, 1]", ErrInvalidRule, r.Probability))
	}
	for _, v := range r.Verbs {
		if !slices.Contains(verbs, v) {
			errs = append(errs, fmt.Errorf("%w: unknown verb %q (known: %v)", ErrInvalidRule, v, verbs))
		}
	}
	if r.RetryAfter < 0 || r.Hold < 0 {
		errs = append(errs, fmt.Errorf("%w: RetryAfter %s and Hold %s must not be negative", ErrInvalidRule, r.RetryAfter, r.Hold))
	}
	return errors.Join(errs...)
}

var verbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

func (r Rule) matches(q request) bool {
	return q.resource != "" &&
		(len(r.Verbs) == 0 || slices.Contains(r.Verbs, q.verb)) &&
		(len(r.Resources) == 0 || slices.Contains(r.Resources, q.resourcePath()))
}

// FaultProxy is an HTTPS reverse proxy in front of kube-apiserver that
// answers the requests its rules match with faults, and passes every
// other request through unchanged (watches too, streamed as they come).
// Clients built from its Config or Kubeconfig reach the API server only
// through it. Rules may be changed at any time; requests already held by a
// FaultTimeout stay held.
type FaultProxy struct {
	// Config reaches the API server through the proxy, with the same
	// credentials as ControlPlane.Config. Copy it before changing it.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file for Config, for binaries.
	Kubeconfig string
	// URL is the proxy's address (https://127.0.0.1:<port>).
	URL string

	srv    *http.Server
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	rules    []Rule
	rnd      *rand.Rand
	injected map[injection]int
	passed   int
}

// injection is one count of Injected: a fault given to a verb on a
// resource.
type injection struct {
	fault    Fault
	verb     string
	resource string
}

// StartFaultProxy starts a fault proxy in front of the control plane's
// kube-apiserver, with no rules (everything passes), and closes it when
// the test ends. The proxy keeps working across RestartAPIServer: it
// reaches the API server at the same address, so its clients see the
// restart as the API server's own clients would.
func (cp *ControlPlane) StartFaultProxy(tb testing.TB) *FaultProxy {
	tb.Helper()
	p, err := cp.startFaultProxy()
	if err != nil {
		tb.Fatalf("kubetest: fault proxy: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

func (cp *ControlPlane) startFaultProxy() (*FaultProxy, error) {
	s := cp.setup
	upstream, err := url.Parse(s.apiURL)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.pki.caCert)
	transport := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
		DialContext:       (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		// A restarted API server leaves dead idle connections behind.
		IdleConnTimeout: 10 * time.Second,
	}
	// The API server's serving certificate is for 127.0.0.1 on any port:
	// clients trust the proxy with the control plane's CA, as they trust
	// the API server.
	cert, err := tls.LoadX509KeyPair(s.pki.certPath, s.pki.keyPath)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &FaultProxy{
		URL:      "https://" + ln.Addr().String(),
		closed:   make(chan struct{}),
		rnd:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0)),
		injected: map[injection]int{},
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(upstream)
			r.Out.Host = upstream.Host
		},
		Transport: transport,
		// Watches are streams: pass every event on at once.
		FlushInterval: -1,
		// Streams cut by a restart are expected; the client sees them end.
		ErrorLog: log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// The API server is down (restarting): say so as a proxy does.
			writeStatus(w, apierrors.NewServiceUnavailable(fmt.Sprintf("kubetest fault proxy: kube-apiserver unreachable: %v", err)), 0)
		},
	}
	p.srv = &http.Server{
		Handler:           p.handler(rp),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()

	p.Config = rest.CopyConfig(cp.Config)
	p.Config.Host = p.URL
	p.Kubeconfig = filepath.Join(cp.dir, "fault-proxy-"+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)+".kubeconfig")
	if err := writeKubeconfig(p.Kubeconfig, p.URL, s.pki.caCert, s.pki.tokens["admin"]); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// SetRules replaces the rules; none lets every request through. A request
// gets the fault of the first rule that matches it and whose dice roll
// says so. Invalid rules leave the current ones in place and return an
// error wrapping ErrInvalidRule.
func (p *FaultProxy) SetRules(rules ...Rule) error {
	var errs []error
	for i, r := range rules {
		if err := r.validate(); err != nil {
			errs = append(errs, fmt.Errorf("rule %d: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = slices.Clone(rules)
	return nil
}

// Injected returns how many requests got each fault so far.
func (p *FaultProxy) Injected() map[Fault]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[Fault]int{}
	for k, n := range p.injected {
		out[k.fault] += n
	}
	return out
}

// Passed returns how many resource requests went through unfaulted.
func (p *FaultProxy) Passed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.passed
}

// Report describes what was injected, by fault, verb and resource, one
// line each, for a test's log.
func (p *FaultProxy) Report() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := make([]string, 0, len(p.injected)+1)
	for k, n := range p.injected {
		lines = append(lines, fmt.Sprintf("%s %s %s: %d", k.fault, k.verb, k.resource, n))
	}
	sort.Strings(lines)
	return strings.Join(append(lines, fmt.Sprintf("passed through: %d", p.passed)), "\n")
}

// Close stops the proxy and ends every connection through it, watches and
// held requests included. Safe to call more than once.
func (p *FaultProxy) Close() {
	p.once.Do(func() {
		close(p.closed)
		_ = p.srv.Close()
	})
}

func (p *FaultProxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := parseRequest(r)
		rule, hit := p.decide(q)
		if !hit {
			next.ServeHTTP(w, r)
			return
		}
		p.answer(w, r, q, rule)
	})
}

// decide picks the fault for q, if any, and counts it.
func (p *FaultProxy) decide(q request) (Rule, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rule := range p.rules {
		if rule.matches(q) && p.rnd.Float64() < rule.Probability {
			p.injected[injection{rule.Fault, q.verb, q.resourcePath()}]++
			return rule, true
		}
	}
	if q.resource != "" {
		p.passed++
	}
	return Rule{}, false
}

// answer sends the fault the API server would send.
func (p *FaultProxy) answer(w http.ResponseWriter, r *http.Request, q request, rule Rule) {
	gr := schema.GroupResource{Group: q.group, Resource: q.resource}
	const why = "injected by kubetest's fault proxy"
	switch rule.Fault {
	case FaultConflict:
		writeStatus(w, apierrors.NewConflict(gr, q.name, errors.New(why)), 0)
	case FaultTooManyRequests:
		after := int(rule.RetryAfter.Round(time.Second) / time.Second)
		if after <= 0 {
			after = 1
		}
		writeStatus(w, apierrors.NewTooManyRequests(why, after), after)
	case FaultInternalError:
		writeStatus(w, apierrors.NewInternalError(errors.New(why)), 0)
	case FaultUnavailable:
		writeStatus(w, apierrors.NewServiceUnavailable(why), 0)
	case FaultTimeout:
		var hold <-chan time.Time
		if rule.Hold > 0 {
			t := time.NewTimer(rule.Hold)
			defer t.Stop()
			hold = t.C
		}
		select {
		case <-r.Context().Done():
			// The client gave up; nothing to answer.
		case <-p.closed:
		case <-hold:
			writeStatus(w, apierrors.NewTimeoutError(why+": request held for "+rule.Hold.String(), 0), 0)
		}
	}
}

// writeStatus writes err's Status as the API server does, with a
// Retry-After header when retryAfter > 0.
func writeStatus(w http.ResponseWriter, err *apierrors.StatusError, retryAfter int) {
	st := err.ErrStatus
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	body, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(int(st.Code))
	_, _ = w.Write(body)
}

// request is what a rule matches a request by: the parts of the API
// server's own RequestInfo that matter here.
type request struct {
	verb, group, resource, subresource, name string
}

func (q request) resourcePath() string {
	if q.subresource == "" {
		return q.resource
	}
	return q.resource + "/" + q.subresource
}

// parseRequest reads the verb and resource from a request's method and
// path (/api/v1/... or /apis/<group>/<version>/...). A request for no
// resource has an empty resource.
func parseRequest(r *http.Request) request {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var q request
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		q.group = parts[1]
		parts = parts[3:]
	default:
		return request{}
	}
	watch := r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1"
	if len(parts) > 0 && parts[0] == "watch" { // the deprecated /watch/ paths
		watch, parts = true, parts[1:]
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:] // a namespaced resource; namespaces/<name> alone is the namespace itself
	}
	if len(parts) == 0 {
		return request{}
	}
	q.resource = parts[0]
	if len(parts) > 1 {
		q.name = parts[1]
	}
	if len(parts) > 2 {
		q.subresource = parts[2]
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watch:
			q.verb = "watch"
		case q.name == "":
			q.verb = "list"
		default:
			q.verb = "get"
		}
	case http.MethodPost:
		q.verb = "create"
	case http.MethodPut:
		q.verb = "update"
	case http.MethodPatch:
		q.verb = "patch"
	case http.MethodDelete:
		q.verb = "delete"
		if q.name == "" {
			q.verb = "deletecollection"
		}
	default:
		return request{}
	}
	return q
}
