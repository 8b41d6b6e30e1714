package auth

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/systemtest"
)

// Secrets of testdata/ and the files the tests write.
const (
	alicePassword = "alice-password"
	aliceHash     = "$2a$04$7LHUvxLRS2Fpq8fX87RBNeWtVcH.TA8HrV2Y/GzB7UuBaUby181Ja"
	ciToken       = "ci-token-0123456789"
	ciHash        = "sha256:fa8989317fb3e56b1fa9fc2f0608c179cf5672309f94ead4aeaec0a7abd50aca"
	viewerToken   = "viewer-token-0123456789"
	viewerHash    = "sha256:2ad89e5a01aed6d990d6eea4851e0ae15ee373b28563ef0f9f8565c1c9596376"
)

// testFile is an auth file with a local user alice (group devs, operator
// in shop), a CI token (operator in shop), a viewer token, and viewer for
// everyone.
const testFile = `
users:
  - name: alice
    passwordHash: "` + aliceHash + `"
    groups: [devs]
tokens:
  - name: deploy
    actor: ci:github/acme/shop
    hash: ` + ciHash + `
  - name: viewer
    hash: ` + viewerHash + `
sessionTTL: 1h
roles:
  - role: operator
    subjects: ["group:devs", "ci:github/acme/shop"]
    namespaces: ["shop"]
  - role: viewer
    subjects: ["*"]
    namespaces: ["*"]
`

// clock is a settable Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

// newClock starts at the real time: the client's cookie jar expires
// cookies by the real clock.
func newClock() *clock { return &clock{now: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// gateway is an Auth serving its routes and a stand-in API over real HTTP.
type gateway struct {
	*httptest.Server
	auth  *Auth
	clock *clock
	logs  *systemtest.Logs
}

// writeFile writes content as an auth file and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newGateway serves an Auth of cfg (File defaults to testFile) around
// the auth routes and an API stand-in: GET /api/whoami answers the
// caller as the real whoami does (401 without one), POST /api/shop/do
// needs operator in shop.
func newGateway(t *testing.T, cfg Config) *gateway {
	t.Helper()
	if cfg.File == "" && cfg.Anonymous == RoleNone {
		cfg.File = writeFile(t, testFile)
	}
	g := &gateway{clock: newClock(), logs: &systemtest.Logs{}}
	if cfg.Now == nil {
		cfg.Now = g.clock.Now
	}
	if cfg.Burst == 0 {
		cfg.Burst = 1000 // the clock stands still: no bucket refills
	}
	log := slog.New(slog.NewTextHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	g.auth = a
	mux := http.NewServeMux()
	mux.Handle("/auth/", a.Routes())
	mux.HandleFunc("GET /api/whoami", func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		if !ok {
			writeError(w, http.StatusUnauthorized, "sign in first")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"actor": p.Actor, "via": p.Via, "readOnly": a.ReadOnly(), "roles": a.Roles(p)})
	})
	mux.HandleFunc("POST /api/shop/do", func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		switch {
		case !ok:
			writeError(w, http.StatusUnauthorized, "sign in first")
		case !a.Allow(p, "shop", RoleOperator):
			writeError(w, http.StatusForbidden, "forbidden")
		default:
			_, _ = io.WriteString(w, "done by "+p.Actor)
		}
	})
	g.Server = httptest.NewServer(a.Middleware(mux))
	t.Cleanup(g.Close)
	return g
}

// client is a browser: it keeps cookies and does not follow redirects,
// so tests see where they go.
func (g *gateway) client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type response struct {
	*http.Response
	body string
}

// do sends a request with headers ("Name: value") and returns the
// response with its body read.
func do(t *testing.T, c *http.Client, method, u string, body io.Reader, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	if _, ok := body.(*strings.Reader); ok && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp, string(b)}
}

func (r response) want(t *testing.T, status int) response {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body: %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, status, r.body)
	}
	return r
}

// errorOf returns the "error" of a JSON error body.
func (r response) errorOf(t *testing.T) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
		t.Fatalf("body is not {\"error\": ...}: %q", r.body)
	}
	return e.Error
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login signs alice in with c as a person does: the form, then the post.
func (g *gateway) login(t *testing.T, c *http.Client, user, password, next string) response {
	t.Helper()
	page := do(t, c, "GET", g.URL+"/auth/login?next="+url.QueryEscape(next), nil).want(t, http.StatusOK)
	m := csrfField.FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("login page has no csrf field:\n%s", page.body)
	}
	form := url.Values{"username": {user}, "password": {password}, "csrf": {m[1]}, "next": {next}}
	return do(t, c, "POST", g.URL+"/auth/login", strings.NewReader(form.Encode()), "Origin: "+g.URL)
}

// cookie returns c's cookie name for the gateway, "" when none.
func (g *gateway) cookie(c *http.Client, name string) string {
	u, _ := url.Parse(g.URL)
	for _, k := range c.Jar.Cookies(u) {
		if k.Name == name {
			return k.Value
		}
	}
	return ""
}

type whoami struct {
	Actor    string          `json:"actor"`
	Via      string          `json:"via"`
	ReadOnly bool            `json:"readOnly"`
	Roles    map[string]Role `json:"roles"`
}

func (r response) whoami(t *testing.T) whoami {
	t.Helper()
	var w whoami
	if err := json.Unmarshal([]byte(r.body), &w); err != nil {
		t.Fatalf("whoami: %v: %s", err, r.body)
	}
	return w
}
