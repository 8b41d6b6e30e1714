package localproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
)

// MirrorHeader is set on every mirrored copy of a request, so that the app
// can tell a copy from the original (and skip side effects).
const MirrorHeader = "X-Sluice-Mirror"

const (
	// statusClientClosedRequest is recorded when the client went away
	// before the response (nginx's 499), so that clients giving up do not
	// count as server errors.
	statusClientClosedRequest = 499
	// mirrorMaxBody is the largest request body copied to a mirror; a
	// larger request is not mirrored.
	mirrorMaxBody = 1 << 20
	// mirrorTimeout bounds one mirrored request.
	mirrorTimeout = 30 * time.Second
	// mirrorConcurrency bounds mirrored requests in flight; beyond it,
	// copies are dropped rather than queued.
	mirrorConcurrency = 64
)

// listener is one proxy: an address and the table it routes with.
type listener struct {
	addr   string // as the annotation says
	ln     net.Listener
	srv    *http.Server
	table  atomic.Pointer[table]
	served chan struct{} // closed when Serve returns
}

func (r *Router) newListener(addr string, ln net.Listener) *listener {
	l := &listener{addr: addr, ln: &closeOnce{Listener: ln}, served: make(chan struct{})}
	l.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.handle(l.table.Load(), w, req)
		}),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	return l
}

// serve starts accepting connections on l.
func (r *Router) serve(l *listener) {
	go func() {
		defer close(l.served)
		if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			r.log.Error("proxy stopped", "addr", l.addr, "error", err)
		}
	}()
}

// closeOnce is a listener that a removed rollout closes at once and its
// drain closes again: the second Close is not an error.
type closeOnce struct {
	net.Listener
	once sync.Once
	err  error
}

func (c *closeOnce) Close() error {
	c.once.Do(func() { c.err = c.Listener.Close() })
	return c.err
}

// stop closes l's listener and waits for the requests in flight, up to
// ctx; then it cuts the remaining connections.
func (l *listener) stop(ctx context.Context) error {
	err := l.srv.Shutdown(ctx)
	if err != nil {
		l.srv.Close()
		err = fmt.Errorf("proxy on %s: requests in flight cut: %w", l.addr, err)
	}
	return err
}

// drain stops a proxy that no longer has an address in the route, in the
// background.
func (r *Router) drain(l *listener) {
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.DrainTimeout)
		defer cancel()
		if err := l.stop(ctx); err != nil {
			r.log.Warn("proxy did not drain in time", "error", err)
			return
		}
		r.log.Info("proxy stopped", "addr", l.addr)
	}()
}

// handle serves one request with the table t in effect when it arrived.
func (r *Router) handle(t *table, w http.ResponseWriter, req *http.Request) {
	if t == nil {
		http.Error(w, "sluice proxy: starting", http.StatusServiceUnavailable)
		return
	}
	start := time.Now()
	d := t.decide(req, rand.IntN)
	rec := &recorder{ResponseWriter: w}
	// Deferred so that a request the forwarder aborts (a process that
	// failed mid-body) is counted too.
	defer func() { r.metrics.observe(t.ref, d.role, d.template, rec.status(), time.Since(start)) }()
	if !d.ok {
		http.Error(rec, "sluice proxy: "+d.reason, http.StatusServiceUnavailable)
		return
	}
	if d.mirror {
		r.mirror(req, t.ref, d.mirrorTo)
	}
	r.fwd.forward(rec, req, t.ref, d.backend)
}

// mirror sends a copy of req to b in the background. The copy never holds
// up or changes the original: its response is discarded, it is dropped when
// mirrorConcurrency copies are in flight or the body exceeds mirrorMaxBody.
func (r *Router) mirror(req *http.Request, ref events.Ref, b backend) {
	body, ok := bufferBody(req, mirrorMaxBody)
	if !ok {
		r.log.Debug("request not mirrored: body too large or unreadable", "rollout", ref.String())
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	select {
	case r.mirrorSlots <- struct{}{}:
	default:
		r.mu.Unlock()
		r.log.Debug("request not mirrored: too many mirrored requests in flight", "rollout", ref.String())
		return
	}
	r.bg.Add(1)
	ctx, cancel := context.WithTimeout(r.ctx, mirrorTimeout)
	r.mu.Unlock()

	out := req.Clone(context.WithValue(ctx, targetKey{}, target{ref: ref, b: b}))
	out.Body, out.ContentLength = http.NoBody, 0
	if len(body) > 0 {
		out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	out.Header.Set(MirrorHeader, "1")
	go func() {
		defer r.bg.Done()
		defer func() { <-r.mirrorSlots }()
		defer cancel()
		r.fwd.rp.ServeHTTP(discard{h: http.Header{}}, out)
	}()
}

// bufferBody reads req's body (up to limit bytes) for a mirror and puts it
// back so the original request still sends all of it. ok is false when the
// body is larger than limit or unreadable.
func bufferBody(req *http.Request, limit int64) (body []byte, ok bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, true
	}
	if req.ContentLength > limit {
		return nil, false
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	req.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
	if err != nil || int64(len(buf)) > limit {
		return nil, false
	}
	return buf, true
}

// target is where the forwarder sends a request.
type target struct {
	ref events.Ref
	b   backend
}

type targetKey struct{}

// forwarder sends requests to app processes.
type forwarder struct {
	rp  *httputil.ReverseProxy
	log *slog.Logger
}

func newForwarder(transport http.RoundTripper, log *slog.Logger) *forwarder {
	f := &forwarder{log: log}
	f.rp = &httputil.ReverseProxy{
		Transport: redial{next: transport},
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(targetKey{}).(target)
			pr.SetURL(t.b.url)
			// The app sees the Host the client asked for, as behind a
			// Kubernetes ingress, and the chain of X-Forwarded-For.
			pr.Out.Host = pr.In.Host
			if prior, ok := pr.In.Header["X-Forwarded-For"]; ok {
				pr.Out.Header["X-Forwarded-For"] = prior
			}
			pr.SetXForwarded()
		},
		ErrorHandler: f.failed,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return f
}

func (f *forwarder) forward(w http.ResponseWriter, req *http.Request, ref events.Ref, b backend) {
	f.rp.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), targetKey{}, target{ref: ref, b: b})))
}

// maxRedials bounds the other processes one request tries.
const maxRedials = 3

// redial sends a request whose process refused the connection to another
// process of the same pool. A process that refuses connections is going:
// a restart or a scale-down stops it only after it left the endpoints, but
// a table built before the proxy heard of that may still pick it. Nothing
// of the request was sent, so trying another is safe; a request with a
// body that cannot be read again is not tried again. A going process may
// also reset a connection its listener had queued before it closed: an
// idempotent request (RFC 9110, 9.2.2) that got no response is tried
// again too.
type redial struct{ next http.RoundTripper }

// retryable reports whether a request that failed with err, with no
// response, may be sent to another process.
func retryable(req *http.Request, err error) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		switch req.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
			return req.Header.Get("Upgrade") == ""
		}
	}
	return false
}

func (r redial) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	t, ok := req.Context().Value(targetKey{}).(target)
	if !ok || t.b.from == nil || len(t.b.from.backends) < 2 {
		return resp, err
	}
	tried := map[string]bool{t.b.url.Host: true}
	for range maxRedials {
		if err == nil || !retryable(req, err) {
			return resp, err
		}
		b, ok := t.b.from.pick()
		if !ok || tried[b.url.Host] {
			if b, ok = t.b.from.other(tried); !ok {
				return resp, err
			}
		}
		tried[b.url.Host] = true
		again := req.Clone(req.Context())
		again.URL.Host, again.Host = b.url.Host, req.Host
		if req.GetBody != nil {
			if again.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		resp, err = r.next.RoundTrip(again)
	}
	return resp, err
}

// failed answers a request whose process did not answer.
func (f *forwarder) failed(w http.ResponseWriter, req *http.Request, err error) {
	if req.Context().Err() != nil {
		w.WriteHeader(statusClientClosedRequest)
		return
	}
	t, _ := req.Context().Value(targetKey{}).(target)
	f.log.Debug("app process did not answer", "rollout", t.ref.String(), "role", t.b.role, "process", t.b.url.Host, "error", err)
	http.Error(w, fmt.Sprintf("sluice proxy: the %s process %s of %s did not answer: %v", t.b.role, t.b.url.Host, t.ref, err), http.StatusBadGateway)
}

// recorder remembers the status of a response.
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	// 1xx other than 101 are informational; the final status follows.
	if r.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Hijack lets the forwarder take over the connection of an upgrade
// (WebSocket); it counts as 101.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil && r.code == 0 {
		r.code = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// Unwrap gives http.ResponseController (flushing streamed responses) the
// underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// discard is the response writer of a mirrored request.
type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}
