package localproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/traffic"
)

// Annotations of the Rollout that the local proxy reads.
const (
	// AnnotationListen is the address (host:port) of the rollout's proxy:
	// stable and canary for a canary, the active revision for blue/green.
	AnnotationListen = "local.sluice.io/listen"
	// AnnotationPreviewListen is the address of a blue/green rollout's
	// preview proxy. Without it the preview is served only on its
	// processes' own ports.
	AnnotationPreviewListen = "local.sluice.io/preview-listen"
)

// Bucket is the key-value bucket where the proxy keeps the route it applied
// for each rollout (key <namespace>.<name>), so that a restarted proxy
// serves at once and still refuses routes older than the last one applied.
const Bucket = "sluice-local-routes"

// ErrNotStarted means Apply was called before Start or after Close. It is
// not a verdict: the task is retried.
var ErrNotStarted = errors.New("local proxy not running")

// Config configures the local proxy.
type Config struct {
	// JetStream holds the endpoints bucket (sluice-endpoints, watched for
	// ready processes) and the routes bucket (sluice-local-routes).
	JetStream jetstream.JetStream
	// Bus sets the buckets' storage and replicas.
	Bus events.BusConfig
	// Registerer receives the proxy's metrics (default
	// prometheus.DefaultRegisterer).
	Registerer prometheus.Registerer
	// Transport carries requests to the app processes (default: a clone of
	// http.DefaultTransport without environment proxies, keeping up to 64
	// idle connections per process).
	Transport http.RoundTripper
	// DrainTimeout bounds how long a proxy being stopped (Close, or a
	// changed listen address) waits for the requests in flight (default
	// 30s).
	DrainTimeout time.Duration
	// Logger receives the proxy's logs (default slog.Default()).
	Logger *slog.Logger
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.Bus.Defaults()
	if c.Registerer == nil {
		c.Registerer = prometheus.DefaultRegisterer
	}
	if c.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.MaxIdleConnsPerHost = 64
		c.Transport = t
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem at once, each wrapping
// events.ErrInvalidConfig.
func (c Config) Validate() error {
	errs := []error{c.Bus.Validate()}
	if c.JetStream == nil {
		errs = append(errs, fmt.Errorf("%w: the local proxy needs JetStream for its buckets", events.ErrInvalidConfig))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: drain timeout %s must be positive", events.ErrInvalidConfig, c.DrainTimeout))
	}
	return errors.Join(errs...)
}

// Router is the local platform's ingress: one weighted reverse proxy per
// rollout (two for blue/green with a preview address). See the package
// documentation for the routing rules.
type Router struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	fwd     *forwarder
	// mirrorSlots bounds the mirrored requests in flight.
	mirrorSlots chan struct{}

	// applyMu serialises Apply and the restore in Start, so that a seq
	// check, the listeners, the stored record and the routing tables change
	// together.
	applyMu sync.Mutex

	// routes is the bucket of applied routes; set by Start, used with
	// applyMu held.
	routes jetstream.KeyValue

	// mu guards the fields below. It is held briefly and never across I/O.
	mu       sync.Mutex
	running  bool
	closed   bool
	ctx      context.Context // ends with Close: the endpoints watch, mirrors
	cancel   context.CancelFunc
	rollouts map[events.Ref]*rollout
	// ready holds the ready processes by endpoints entry name: the pod
	// hash of a revision, <hash>.<experiment>.<template> of an experiment
	// template (endpoints.EntryName).
	ready map[events.Ref]map[string][]string
	bg    sync.WaitGroup // drains and mirrors
}

var (
	_ traffic.Router    = (*Router)(nil)
	_ traffic.Lifecycle = (*Router)(nil)
)

// Type returns "localproxy".
func (r *Router) Type() string { return "localproxy" }

// rollout is what the proxy has applied for one rollout.
type rollout struct {
	seq  int64
	plan *plan // nil when the stored route could not be restored
	// main serves plan.listen; preview serves plan.preview (blue/green).
	main, preview *listener
}

// record is a rollout's entry in Bucket.
type record struct {
	Seq       int64       `json:"seq"`
	Route     tasks.Route `json:"route"`
	AppliedAt time.Time   `json:"appliedAt"`
}

// New checks cfg and registers the metrics. Call Start before Apply.
func New(cfg Config) (*Router, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Router{
		cfg:         cfg,
		log:         cfg.Logger,
		metrics:     m,
		rollouts:    map[events.Ref]*rollout{},
		ready:       map[events.Ref]map[string][]string{},
		mirrorSlots: make(chan struct{}, mirrorConcurrency),
	}
	r.fwd = newForwarder(cfg.Transport, cfg.Logger)
	return r, nil
}

// Start opens the buckets, loads the ready processes and keeps watching
// them, and restores the proxies of the routes applied before (a route that
// cannot be restored, say because its address is taken, is logged and
// applied again by the next task). ctx bounds the start only; the proxy
// runs until Close.
func (r *Router) Start(ctx context.Context) error {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.mu.Lock()
	if r.running || r.closed {
		r.mu.Unlock()
		return fmt.Errorf("local proxy: already started or closed; make a new one with New")
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.mu.Unlock()

	js := r.cfg.JetStream
	eps, err := endpoints.Open(ctx, js, r.cfg.Bus)
	if err == nil {
		r.routes, err = js.CreateOrUpdateKeyValue(ctx, r.cfg.Bus.Bucket(Bucket, "Sluice local platform: the route each rollout's proxy applied", 1))
		if err != nil {
			err = fmt.Errorf("open bucket %s: %w", Bucket, err)
		}
	}
	if err == nil {
		// The watch lives until Close, but its start is bounded by ctx.
		stop := context.AfterFunc(ctx, r.cancel)
		err = eps.Watch(r.ctx, r.endpointsChanged)
		if !stop() {
			err = errors.Join(ctx.Err(), err)
		}
	}
	if err == nil {
		err = r.restore(ctx)
	}
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), r.cfg.DrainTimeout)
		defer cancel()
		_ = r.shutdown(sctx)
		return err
	}
	r.mu.Lock()
	r.running = true
	r.mu.Unlock()
	return nil
}

// restore applies the stored routes, listed and read as the leader of
// the bucket's stream has them: a replica that lags behind answers with
// an older route (or none, or one since removed), which the proxy would
// serve, and whose seq would let a late older task through, until the
// next route task.
func (r *Router) restore(ctx context.Context) error {
	stored := records.New(r.routes, records.Config[record]{Name: "stored route", Leader: r.cfg.JetStream.Conn()})
	keys, err := stored.LatestKeys(ctx)
	if err != nil {
		return fmt.Errorf("list bucket %s: %w", Bucket, err)
	}
	for _, k := range keys {
		rec, rev, err := stored.Latest(ctx, k)
		ref, perr := events.ParseRef(keyRef(k))
		if errors.Is(err, records.ErrUnreadable) || err == nil && perr != nil {
			r.log.Warn("ignoring an unreadable stored route", "bucket", Bucket, "key", k)
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s in bucket %s: %w", k, Bucket, err)
		}
		if rev == 0 {
			continue
		}
		if _, err := r.apply(ctx, ref, rec.Seq, rec.Route, false); err != nil {
			r.log.Warn("stored route not restored; the next route task applies it again", "rollout", ref.String(), "seq", rec.Seq, "error", err)
			r.mu.Lock()
			if r.rollouts[ref] == nil {
				r.rollouts[ref] = &rollout{seq: rec.Seq}
			}
			r.mu.Unlock()
			continue
		}
		r.log.Info("route restored", "rollout", ref.String(), "seq", rec.Seq)
	}
	return nil
}

func routeKey(ref events.Ref) string { return ref.Namespace + "." + ref.Name }

// keyRef turns a route key back into "<namespace>/<name>".
func keyRef(k string) string {
	ns, name, _ := strings.Cut(k, ".")
	return ns + "/" + name
}

// Apply puts route in effect for ref: see traffic.Router. It returns an
// error wrapping traffic.ErrRejected when the route has no listen address
// (annotation local.sluice.io/listen), an address is malformed or taken, or
// a match does not compile; tasks.ErrStale for a seq lower than one
// applied; ErrNotStarted before Start or after Close.
func (r *Router) Apply(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) (int32, error) {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.mu.Lock()
	running := r.running
	r.mu.Unlock()
	if !running {
		return 0, ErrNotStarted
	}
	if route.Remove {
		return 0, r.remove(ctx, ref, seq)
	}
	return r.apply(ctx, ref, seq, route, true)
}

// remove carries out a route with Remove (the rollout is deleted): the
// rollout's proxies stop listening at once (their ports are free for
// another rollout; requests in flight finish within Config.DrainTimeout),
// and its stored route and seq guard are forgotten, so the next route for
// it starts fresh. A rollout the proxy does not know is removed already.
// applyMu is held.
func (r *Router) remove(ctx context.Context, ref events.Ref, seq int64) error {
	r.mu.Lock()
	cur := r.rollouts[ref]
	r.mu.Unlock()
	if cur != nil && seq < cur.seq {
		return fmt.Errorf("%w: removal seq %d for %s is older than seq %d, applied already", tasks.ErrStale, seq, ref, cur.seq)
	}
	if err := r.routes.Delete(ctx, routeKey(ref)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("forget route of %s in bucket %s: %w", ref, Bucket, err)
	}
	if cur == nil {
		return nil
	}
	r.mu.Lock()
	delete(r.rollouts, ref)
	r.mu.Unlock()
	for _, l := range []*listener{cur.main, cur.preview} {
		if l != nil {
			// Closed here, not in the drain, so that the address is
			// free when Apply returns.
			l.ln.Close()
			r.drain(l)
		}
	}
	r.log.Info("proxy removed", "rollout", ref.String(), "seq", seq)
	return nil
}

// apply does Apply's work with applyMu held; persist is false when
// restoring a stored route.
func (r *Router) apply(ctx context.Context, ref events.Ref, seq int64, route tasks.Route, persist bool) (int32, error) {
	r.mu.Lock()
	cur := r.rollouts[ref]
	r.mu.Unlock()
	if cur != nil && seq < cur.seq {
		return 0, fmt.Errorf("%w: route seq %d for %s is older than seq %d, applied already", tasks.ErrStale, seq, ref, cur.seq)
	}
	p, err := compile(ref, route)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", traffic.ErrRejected, ref, err)
	}

	// Listeners: keep those whose address is unchanged, open the others.
	var old []*listener
	if cur != nil {
		old = []*listener{cur.main, cur.preview}
	}
	// An address with port 0 asks for any free port: it is never the same
	// as another, but a rollout keeps the one it got while it asks for it.
	reuse := func(addr string, prev *listener) *listener {
		if anyPort(addr) {
			if prev != nil && prev.addr == addr {
				return prev
			}
			return nil
		}
		for _, l := range old {
			if l != nil && l.addr == addr {
				return l
			}
		}
		return nil
	}
	var opened []*listener
	closeOpened := func() {
		for _, l := range opened {
			l.ln.Close()
		}
	}
	obtain := func(annotation, addr string, prev *listener) (*listener, error) {
		if addr == "" {
			return nil, nil
		}
		if l := reuse(addr, prev); l != nil {
			return l, nil
		}
		if other := r.owner(ref, addr); other != "" {
			return nil, fmt.Errorf("%w: %s: annotation %s: %s is already the address of the proxy of %s; give each rollout its own address", traffic.ErrRejected, ref, annotation, addr, other)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: annotation %s: cannot listen on %s: %v; choose a free address", traffic.ErrRejected, ref, annotation, addr, err)
		}
		l := r.newListener(addr, ln)
		opened = append(opened, l)
		return l, nil
	}
	var prevMain, prevPreview *listener
	if cur != nil {
		prevMain, prevPreview = cur.main, cur.preview
	}
	main, err := obtain(AnnotationListen, p.listen, prevMain)
	if err != nil {
		return 0, err
	}
	preview, err := obtain(AnnotationPreviewListen, p.preview, prevPreview)
	if err != nil {
		closeOpened()
		return 0, err
	}

	if persist {
		data, err := json.Marshal(record{Seq: seq, Route: route, AppliedAt: time.Now().UTC()})
		if err == nil {
			_, err = r.routes.Put(ctx, routeKey(ref), data)
		}
		if err != nil {
			closeOpened()
			return 0, fmt.Errorf("store route of %s in bucket %s: %w", ref, Bucket, err)
		}
	}

	// From here on nothing fails: the new state takes effect at once.
	r.mu.Lock()
	next := &rollout{seq: seq, plan: p, main: main, preview: preview}
	r.rollouts[ref] = next
	ready := r.ready[ref]
	r.swapTables(next)
	weight := p.weightInEffect(ready)
	r.mu.Unlock()

	for _, l := range opened {
		r.serve(l)
		r.log.Info("proxy listening", "rollout", ref.String(), "addr", l.ln.Addr().String())
	}
	for _, l := range old {
		if l != nil && l != main && l != preview {
			r.drain(l)
		}
	}
	r.log.Debug("route applied", "rollout", ref.String(), "seq", seq, "canaryWeight", weight)
	return weight, nil
}

// owner names the rollout other than ref whose proxy uses addr, or "".
func (r *Router) owner(ref events.Ref, addr string) string {
	if anyPort(addr) {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for other, ro := range r.rollouts {
		if other == ref {
			continue
		}
		for _, l := range []*listener{ro.main, ro.preview} {
			if l != nil && l.addr == addr {
				return other.String()
			}
		}
	}
	return ""
}

// swapTables builds ro's routing tables from the ready processes and puts
// them in effect. r.mu is held.
func (r *Router) swapTables(ro *rollout) {
	if ro.plan == nil {
		return
	}
	main, preview := ro.plan.tables(r.ready[ro.plan.ref])
	if ro.main != nil {
		ro.main.table.Store(main)
	}
	if ro.preview != nil && preview != nil {
		ro.preview.table.Store(preview)
	}
}

// endpointsChanged records a revision's ready processes and rebuilds the
// tables of its rollout.
func (r *Router) endpointsChanged(rev endpoints.Revision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byEntry := r.ready[rev.Ref]
	if len(rev.Ready) == 0 {
		delete(byEntry, rev.Name())
	} else {
		if byEntry == nil {
			byEntry = map[string][]string{}
			r.ready[rev.Ref] = byEntry
		}
		byEntry[rev.Name()] = append([]string(nil), rev.Ready...)
	}
	if ro := r.rollouts[rev.Ref]; ro != nil {
		r.swapTables(ro)
	}
}

// Addrs returns the addresses the proxies of ref listen on ("" when there
// is none): useful when an annotation asks for port 0.
func (r *Router) Addrs(ref events.Ref) (listen, preview string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ro := r.rollouts[ref]
	if ro == nil {
		return "", ""
	}
	if ro.main != nil {
		listen = ro.main.ln.Addr().String()
	}
	if ro.preview != nil {
		preview = ro.preview.ln.Addr().String()
	}
	return listen, preview
}

// Ready reports whether the proxy has started and not closed.
func (r *Router) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// Close stops every proxy: they stop accepting connections at once, and
// the requests in flight finish (up to ctx or Config.DrainTimeout, whichever
// ends first, then they are cut). Mirrored requests in flight are
// cancelled. The stored routes are kept for the next Start.
func (r *Router) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DrainTimeout)
	defer cancel()
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	return r.shutdown(ctx)
}

// shutdown is Close with applyMu held.
func (r *Router) shutdown(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed, r.running = true, false
	if r.cancel != nil {
		r.cancel()
	}
	var ls []*listener
	for _, ro := range r.rollouts {
		for _, l := range []*listener{ro.main, ro.preview} {
			if l != nil {
				ls = append(ls, l)
			}
		}
	}
	r.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(ls))
	for i, l := range ls {
		wg.Go(func() { errs[i] = l.stop(ctx) })
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { r.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("local proxy: proxies still draining: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// anyPort reports whether addr asks for any free port (port 0).
func anyPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// checkAddr checks an annotation's host:port.
func checkAddr(annotation, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		var n int
		n, err = strconv.Atoi(port)
		if err == nil && (n < 0 || n > 65535) {
			err = fmt.Errorf("port %d out of range", n)
		}
	}
	if err != nil {
		return fmt.Errorf("annotation %s: %q is not host:port (for example 127.0.0.1:8080): %v", annotation, addr, err)
	}
	return nil
}

// Needs is what the local proxy uses on the bus besides the traffic
// service's own: the bucket of its applied routes, and the endpoints bucket
// it reads the ready processes from.
var Needs = events.Needs{Buckets: []events.Bucket{{Name: Bucket}}, Reads: []string{endpoints.Bucket}}
