package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
)

// Request is one kind of API request: its verb (as the API server names
// it: GET, LIST, WATCH, CREATE, UPDATE, PATCH, DELETE, ...), its resource
// and subresource ("status", "scale"; "" for the object itself).
type Request struct {
	Verb, Resource, Subresource string
}

// String reads as "PATCH rollouts/status".
func (r Request) String() string {
	if r.Subresource == "" {
		return r.Verb + " " + r.Resource
	}
	return r.Verb + " " + r.Resource + "/" + r.Subresource
}

// Requests counts API requests by kind.
type Requests map[Request]int

// Total is the number of requests of every kind.
func (rs Requests) Total() int {
	n := 0
	for _, c := range rs {
		n += c
	}
	return n
}

// Sub is the requests of rs that were not yet in before (counters read
// earlier): what happened in between.
func (rs Requests) Sub(before Requests) Requests {
	out := Requests{}
	for k, n := range rs {
		if d := n - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// String lists the kinds, most requests first: "PATCH rollouts/status 30,
// GET replicasets 12".
func (rs Requests) String() string {
	keys := slices.Collect(maps.Keys(rs))
	slices.SortFunc(keys, func(a, b Request) int {
		if rs[a] != rs[b] {
			return rs[b] - rs[a]
		}
		return strings.Compare(a.String(), b.String())
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, rs[k])
	}
	return strings.Join(parts, ", ")
}

// APIRequests reads kube-apiserver's apiserver_request_total from its
// /metrics: every request it has answered since it started, from every
// client (the controller manager, the scheduler and kwok included), by
// kind. Take it before and after what is measured and Sub the two.
func (cp *ControlPlane) APIRequests(ctx context.Context) (Requests, error) {
	raw, err := cp.Client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("kubetest: kube-apiserver /metrics: %w", err)
	}
	return parseRequestTotal(raw)
}

func parseRequestTotal(raw []byte) (Requests, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("kubetest: kube-apiserver /metrics: %w", err)
	}
	out := Requests{}
	fam := families["apiserver_request_total"]
	if fam == nil {
		return nil, fmt.Errorf("kubetest: kube-apiserver /metrics has no apiserver_request_total")
	}
	for _, m := range fam.GetMetric() {
		var k Request
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "verb":
				k.Verb = l.GetValue()
			case "resource":
				k.Resource = l.GetValue()
			case "subresource":
				k.Subresource = l.GetValue()
			}
		}
		out[k] += int(m.GetCounter().GetValue())
	}
	return out, nil
}

// auditPolicy records the metadata of every request once it is answered,
// but for the control plane's own components' (the controller manager's,
// the scheduler's, kwok's), which apiserver_request_total counts anyway:
// the log is to tell the clients under test apart.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted, Panic]
rules:
- level: None
  users: [kubetest:kube-controller-manager, kubetest:kube-scheduler, kubetest:kwok]
- level: Metadata
`

// Audit is a position in the API server's audit log (Options.Audit).
type Audit struct {
	path   string
	offset int64
}

// AuditMark is the end of the audit log now: AuditSince counts the
// requests logged after it. It fails unless Options.Audit was set.
func (cp *ControlPlane) AuditMark() (Audit, error) {
	if cp.auditLog == "" {
		return Audit{}, fmt.Errorf("kubetest: no audit log: start the control plane with Options.Audit")
	}
	fi, err := os.Stat(cp.auditLog)
	if os.IsNotExist(err) {
		return Audit{path: cp.auditLog}, nil
	}
	if err != nil {
		return Audit{}, fmt.Errorf("kubetest: audit log: %w", err)
	}
	return Audit{path: cp.auditLog, offset: fi.Size()}, nil
}

// Since counts the requests logged after the mark by client: the first
// word of the request's User-Agent ("rollouts-controller" for Argo
// Rollouts' controller, which sets none of its own; what a client-go
// program sets in rest.Config.UserAgent otherwise). Requests still open
// (watches) are counted when they end.
func (a Audit) Since() (map[string]Requests, error) {
	f, err := os.Open(a.path)
	if os.IsNotExist(err) {
		return map[string]Requests{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kubetest: audit log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(a.offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("kubetest: audit log: %w", err)
	}
	return parseAudit(f)
}

func parseAudit(r io.Reader) (map[string]Requests, error) {
	out := map[string]Requests{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var ev struct {
			Verb      string `json:"verb"`
			UserAgent string `json:"userAgent"`
			ObjectRef *struct {
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
			RequestURI string `json:"requestURI"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			// The last line may be half written.
			continue
		}
		client, _, _ := strings.Cut(ev.UserAgent, "/")
		k := Request{Verb: auditVerb(ev.Verb, ev.RequestURI)}
		if ev.ObjectRef != nil {
			k.Resource, k.Subresource = ev.ObjectRef.Resource, ev.ObjectRef.Subresource
		}
		if out[client] == nil {
			out[client] = Requests{}
		}
		out[client][k]++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kubetest: audit log: %w", err)
	}
	return out, nil
}

// auditVerb names an audited request's verb as apiserver_request_total
// does (the audit log has the lower-case authorization verb: "list" and
// "watch" alike for a watch).
func auditVerb(verb, uri string) string {
	if verb == "list" && strings.Contains(uri, "watch=true") {
		verb = "watch"
	}
	return strings.ToUpper(verb)
}

// Counter counts the API requests of the clients built from one
// rest.Config, as the client sends them (CountRequests).
type Counter struct {
	mu sync.Mutex
	rs Requests
}

// CountRequests makes every client built from cfg from now on count its
// requests in the returned Counter, by the kind apiserver_request_total
// would give them. It wraps cfg's transport, and any wrapper cfg has.
func CountRequests(cfg *rest.Config) *Counter {
	c := &Counter{rs: Requests{}}
	inner := cfg.WrapTransport
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		if inner != nil {
			rt = inner(rt)
		}
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			k := requestOf(req.Method, req.URL)
			c.mu.Lock()
			c.rs[k]++
			c.mu.Unlock()
			return rt.RoundTrip(req)
		})
	}
	return c
}

// Requests is a copy of the counts so far.
func (c *Counter) Requests() Requests {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.rs)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// requestOf is the kind of a request to the API server, from its method
// and its path (/api/v1/namespaces/NS/RESOURCE/NAME/SUBRESOURCE,
// /apis/GROUP/VERSION/..., the namespace part optional).
func requestOf(method string, u *url.URL) Request {
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return Request{Verb: method, Resource: u.Path}
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) != 2 {
		parts = parts[2:] // a namespaced resource, not a namespace itself
	}
	var k Request
	named := len(parts) >= 2
	if len(parts) > 0 {
		k.Resource = parts[0]
	}
	if len(parts) > 2 {
		k.Subresource = parts[2]
	}
	switch method {
	case http.MethodGet:
		k.Verb = "GET"
		if !named {
			k.Verb = "LIST"
			if u.Query().Get("watch") == "true" {
				k.Verb = "WATCH"
			}
		}
	case http.MethodPost:
		k.Verb = "CREATE"
	case http.MethodPut:
		k.Verb = "UPDATE"
	case http.MethodPatch:
		k.Verb = "PATCH"
	case http.MethodDelete:
		k.Verb = "DELETE"
		if !named {
			k.Verb = "DELETECOLLECTION"
		}
	default:
		k.Verb = method
	}
	return k
}
