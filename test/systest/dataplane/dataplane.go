// Package dataplane is the fault-injection suite's stand-in for the
// infrastructure Sluice drives: a server that holds every rollout's routing
// and replica counts the way a real router or API server would (one seq
// guard per rollout, checked atomically with the change) and records every
// call with a timestamp, so that the suite can check the whole history
// afterwards. The Router and Backend here are the traffic and replicas
// services' plug-ins that talk to it over HTTP from the worker processes.
package dataplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/traffic"
)

// Kinds of calls.
const (
	KindRoute = "route"
	KindScale = "scale"
)

// Outcomes of a call.
const (
	// Applied changed the data plane: the first call with its seq.
	Applied = "applied"
	// Reapplied repeated the last applied seq (a redelivered task); it
	// changes nothing when its content is the same.
	Reapplied = "reapplied"
	// Stale had a lower seq than one already applied and changed nothing.
	Stale = "stale"
)

// Call is one request to the data plane, as the worker sent it.
type Call struct {
	Kind   string     `json:"kind"`
	Ref    events.Ref `json:"ref"`
	Seq    int64      `json:"seq"`
	Worker string     `json:"worker"`
	// Route is a route call's routing; Scale a scale call's revisions
	// (templates left out).
	Route *tasks.Route          `json:"route,omitempty"`
	Scale []tasks.RevisionScale `json:"scale,omitempty"`
	// Remove is a scale call's tasks.Scale.Remove (a route's is in Route).
	Remove bool `json:"remove,omitempty"`
}

// Record is a call the data plane answered, with when and how.
type Record struct {
	Call
	At      time.Time `json:"at"`
	Outcome string    `json:"outcome"`
	// Content is the call's canonical content (route or revisions), to
	// compare calls with the same seq.
	Content string `json:"content"`
}

// Fault is a fault a worker injected into itself, reported just before it
// happens.
type Fault struct {
	Worker string `json:"worker"`
	// Point is where: "before-effect", "after-effect" (effect done, result
	// not yet published nor the task acknowledged) or "slow".
	Point string    `json:"point"`
	At    time.Time `json:"at"`
}

// Server is the data plane. Its zero value is not usable; use NewServer.
type Server struct {
	mu      sync.Mutex
	last    map[string]int64 // kind/ref -> highest applied seq
	records []Record
	faults  []Fault
	srv     *http.Server
	addr    string
	faultOn bool
}

// SetFaults turns the workers' self-inflicted faults on or off: each
// answer tells the worker, which injects faults only while they are on.
func (s *Server) SetFaults(on bool) {
	s.mu.Lock()
	s.faultOn = on
	s.mu.Unlock()
}

// NewServer starts a data plane on a free port of 127.0.0.1.
func NewServer() (*Server, error) { return Listen("127.0.0.1:0") }

// Listen starts a data plane on addr ("host:0" for a free port), for
// workers that reach it from another network namespace.
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{last: map[string]int64{}, addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /call", s.handleCall)
	mux.HandleFunc("POST /fault", s.handleFault)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// URL is the server's base URL, for the workers' --data-plane flag.
func (s *Server) URL() string { return "http://" + s.addr }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// Records returns every call answered so far, in order.
func (s *Server) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.records)
}

// Faults returns every fault reported so far, in order.
func (s *Server) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.faults)
}

// answer is the response to a call.
type answer struct {
	Outcome string `json:"outcome"`
	// Weight is the canary weight in effect after a route call.
	Weight int32 `json:"weight"`
	// Faults says whether the worker should inject faults (SetFaults).
	Faults bool `json:"faults"`
}

func (s *Server) handleCall(w http.ResponseWriter, r *http.Request) {
	var c Call
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil || (c.Kind != KindRoute && c.Kind != KindScale) {
		http.Error(w, fmt.Sprintf("bad call: %v", err), http.StatusBadRequest)
		return
	}
	content, _ := json.Marshal(c.Scale)
	if c.Kind == KindRoute {
		content, _ = json.Marshal(c.Route)
	}
	key := c.Kind + "/" + c.Ref.String()
	s.mu.Lock()
	rec := Record{Call: c, At: time.Now(), Content: string(content)}
	last, seen := s.last[key]
	switch {
	case seen && c.Seq < last:
		rec.Outcome = Stale
	case seen && c.Seq == last:
		rec.Outcome = Reapplied
	default:
		rec.Outcome = Applied
		s.last[key] = c.Seq
	}
	removed := c.Remove || c.Route != nil && c.Route.Remove
	if removed && rec.Outcome != Stale {
		// A removal forgets the rollout, as the real workers do.
		delete(s.last, key)
	}
	s.records = append(s.records, rec)
	a := answer{Outcome: rec.Outcome, Faults: s.faultOn}
	s.mu.Unlock()
	if c.Route != nil && !removed {
		a.Weight = c.Route.CanaryWeight
	}
	_ = json.NewEncoder(w).Encode(a)
}

func (s *Server) handleFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.At = time.Now()
	s.mu.Lock()
	s.faults = append(s.faults, f)
	s.mu.Unlock()
}

// Client calls a data plane. Hooks, when set, run around each call while
// the data plane has faults on (as of its last answer): Before just before
// a call is sent, After once it has been answered (applied or not), before
// the worker reports it. The fault injector uses them.
type Client struct {
	URL    string
	Worker string
	HTTP   *http.Client
	Before func()
	After  func()

	faults atomic.Bool
}

func (c *Client) call(ctx context.Context, call Call) (answer, error) {
	call.Worker = c.Worker
	body, err := json.Marshal(call)
	if err != nil {
		return answer{}, err
	}
	if c.Before != nil && c.faults.Load() {
		c.Before()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/call", bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("data plane: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return answer{}, fmt.Errorf("data plane: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return answer{}, fmt.Errorf("data plane answer: %w", err)
	}
	c.faults.Store(a.Faults)
	if c.After != nil && a.Faults {
		c.After()
	}
	return a, nil
}

// ReportFault tells the data plane about a fault about to happen.
func (c *Client) ReportFault(point string) {
	body, _ := json.Marshal(Fault{Worker: c.Worker, Point: point})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/fault", bytes.NewReader(body))
	if err != nil {
		return
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// Router is a traffic.Router on the data plane.
type Router struct{ Client *Client }

var _ traffic.Router = Router{}

// Type returns "dataplane".
func (Router) Type() string { return "dataplane" }

// Apply sends the route; a lower seq than one applied is ErrStale.
func (r Router) Apply(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) (int32, error) {
	a, err := r.Client.call(ctx, Call{Kind: KindRoute, Ref: ref, Seq: seq, Route: &route})
	if err != nil {
		return 0, err
	}
	if a.Outcome == Stale {
		return 0, fmt.Errorf("%w: seq %d of %s", tasks.ErrStale, seq, ref)
	}
	return a.Weight, nil
}

// Backend is a replicas.Backend on the data plane: revisions are
// available as soon as the data plane has them.
type Backend struct{ Client *Client }

var _ replicas.Backend = Backend{}

// Start does nothing: the data plane keeps the state.
func (Backend) Start(context.Context) error { return nil }

// Close does nothing.
func (Backend) Close(context.Context) error { return nil }

// Apply sends the revisions' counts (without their templates).
func (b Backend) Apply(ctx context.Context, ref events.Ref, seq int64, scale tasks.Scale) ([]tasks.RevisionStatus, error) {
	revs := make([]tasks.RevisionScale, len(scale.Revisions))
	for i, r := range scale.Revisions {
		revs[i] = tasks.RevisionScale{Revision: r.Revision, PodHash: r.PodHash, Role: r.Role, Replicas: r.Replicas}
	}
	a, err := b.Client.call(ctx, Call{Kind: KindScale, Ref: ref, Seq: seq, Scale: revs, Remove: scale.Remove})
	if err != nil {
		return nil, err
	}
	if a.Outcome == Stale {
		return nil, fmt.Errorf("%w: seq %d of %s", tasks.ErrStale, seq, ref)
	}
	out := make([]tasks.RevisionStatus, len(revs))
	for i, r := range revs {
		out[i] = tasks.RevisionStatus{Revision: r.Revision, PodHash: r.PodHash, Replicas: r.Replicas, Ready: r.Replicas, Available: r.Replicas}
	}
	return out, nil
}
