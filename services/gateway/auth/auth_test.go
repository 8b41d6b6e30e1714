package auth

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRoleOf(t *testing.T) {
	path := writeFile(t, testFile+`
  - role: admin
    subjects: ["user:root", "group:platform"]
    namespaces: ["*"]
  - role: viewer
    subjects: ["user:carol"]
    namespaces: ["shop"]
`)
	a, err := New(Config{File: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice := Principal{Actor: "user:alice", Groups: []string{"devs"}, Via: ViaSession}
	ci := Principal{Actor: "ci:github/acme/shop", Via: ViaToken}
	root := Principal{Actor: "user:root", Via: ViaSession}
	plat := Principal{Actor: "user:pat", Groups: []string{"x", "platform"}, Via: ViaSession}
	carol := Principal{Actor: "user:carol", Via: ViaSession}
	for _, tc := range []struct {
		name string
		p    Principal
		ns   string
		want Role
	}{
		{"group binding in its namespace", alice, "shop", RoleOperator},
		{"group binding elsewhere: the * viewer", alice, "billing", RoleViewer},
		{"actor binding", ci, "shop", RoleOperator},
		{"actor binding elsewhere", ci, "billing", RoleViewer},
		{"admin everywhere by actor", root, "shop", RoleAdmin},
		{"admin everywhere by one of its groups", plat, "billing", RoleAdmin},
		{"the highest binding wins", carol, "shop", RoleViewer},
		{"a group name is not an actor", Principal{Actor: "group:devs", Via: ViaToken}, "shop", RoleViewer},
		{"no caller is not everyone", Principal{}, "shop", RoleNone},
		{"a caller that did not authenticate", Principal{Actor: "user:alice", Groups: []string{"devs"}}, "shop", RoleNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.RoleOf(tc.p, tc.ns); got != tc.want {
				t.Errorf("RoleOf(%s, %s) = %v, want %v", tc.p.Actor, tc.ns, got, tc.want)
			}
			if got := a.Allow(tc.p, tc.ns, RoleOperator); got != (tc.want >= RoleOperator) {
				t.Errorf("Allow operator = %v", got)
			}
		})
	}
	for _, tc := range []struct {
		p    Principal
		want map[string]Role
	}{
		{alice, map[string]Role{"*": RoleViewer, "shop": RoleOperator}},
		{root, map[string]Role{"*": RoleAdmin}},
		{carol, map[string]Role{"*": RoleViewer}},
	} {
		if got := a.Roles(tc.p); !maps.Equal(got, tc.want) {
			t.Errorf("Roles(%s) = %v, want %v", tc.p.Actor, got, tc.want)
		}
	}

	ro, err := New(Config{File: path, ReadOnly: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := ro.RoleOf(root, "shop"); got != RoleViewer {
		t.Errorf("read-only: RoleOf(root) = %v, want viewer", got)
	}
	if got := ro.Roles(alice); !maps.Equal(got, map[string]Role{"*": RoleViewer}) {
		t.Errorf("read-only: Roles(alice) = %v", got)
	}

	anon, err := New(Config{Anonymous: RoleAdmin, AnonymousActor: "user:dev"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := Principal{Actor: "user:dev", Via: ViaAnonymous}
	if got := anon.RoleOf(p, "any"); got != RoleAdmin {
		t.Errorf("anonymous RoleOf = %v, want admin", got)
	}
	if got := anon.RoleOf(Principal{Actor: "user:x", Via: ViaSession}, "any"); got != RoleNone {
		t.Errorf("no file: a session's role = %v, want none", got)
	}
}

func TestRoleJSON(t *testing.T) {
	b, _ := json.Marshal(map[string]Role{"*": RoleViewer, "shop": RoleAdmin})
	if string(b) != `{"*":"viewer","shop":"admin"}` {
		t.Errorf("roles as JSON: %s", b)
	}
	var r Role
	if err := json.Unmarshal([]byte(`"operator"`), &r); err != nil || r != RoleOperator {
		t.Errorf("unmarshal operator: %v %v", r, err)
	}
}

func TestBearerTokens(t *testing.T) {
	g := newGateway(t, Config{})
	c := g.client(t)

	w := do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer "+ciToken).want(t, http.StatusOK).whoami(t)
	if w.Actor != "ci:github/acme/shop" || w.Via != ViaToken || w.Roles["shop"] != RoleOperator || w.Roles["*"] != RoleViewer {
		t.Errorf("whoami with the CI token: %+v", w)
	}
	// A token needs no CSRF header: no browser sends it on its own.
	r := do(t, c, "POST", g.URL+"/api/shop/do", nil, "Authorization: Bearer "+ciToken, "Origin: https://evil.example").want(t, http.StatusOK)
	if r.body != "done by ci:github/acme/shop" {
		t.Errorf("command body %q", r.body)
	}
	w = do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer "+viewerToken).want(t, http.StatusOK).whoami(t)
	if w.Actor != "token:viewer" {
		t.Errorf("default actor %q, want token:viewer", w.Actor)
	}
	do(t, c, "POST", g.URL+"/api/shop/do", nil, "Authorization: Bearer "+viewerToken).want(t, http.StatusForbidden)

	for _, h := range []string{"Bearer nope", "Bearer " + ciToken + "x", "Bearer ", "bearer " + strings.ToUpper(ciToken)} {
		r := do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: "+h).want(t, http.StatusUnauthorized)
		if msg := r.errorOf(t); msg != "invalid token" {
			t.Errorf("%q: error %q, want invalid token", h, msg)
		}
		if r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%q: no WWW-Authenticate", h)
		}
	}
	r = do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Basic YWxpY2U6eA==").want(t, http.StatusUnauthorized)
	if msg := r.errorOf(t); !strings.Contains(msg, "Bearer") {
		t.Errorf("basic auth: error %q", msg)
	}
	// No credentials: the handler decides (the API answers 401).
	do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusUnauthorized)
}

func TestAnonymous(t *testing.T) {
	g := newGateway(t, Config{Anonymous: RoleAdmin, AnonymousActor: "user:dev"})
	c := g.client(t)
	w := do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusOK).whoami(t)
	if w.Actor != "user:dev" || w.Via != ViaAnonymous || w.Roles["*"] != RoleAdmin {
		t.Errorf("anonymous whoami: %+v", w)
	}
	// A script (no Origin) may act; another site may not make the
	// browser act for it.
	do(t, c, "POST", g.URL+"/api/shop/do", nil).want(t, http.StatusOK)
	r := do(t, c, "POST", g.URL+"/api/shop/do", nil, "Origin: https://evil.example").want(t, http.StatusForbidden)
	if msg := r.errorOf(t); !strings.Contains(msg, "cross-site") {
		t.Errorf("error %q", msg)
	}
	// A wrong token is still an error, not a fall-back to anonymous.
	do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer nope").want(t, http.StatusUnauthorized)
	// The login page says there is no sign-in, and does not loop.
	page := do(t, c, "GET", g.URL+"/auth/login", nil).want(t, http.StatusOK)
	if !strings.Contains(page.body, "no sign-in configured") {
		t.Errorf("login page without a file:\n%s", page.body)
	}

	ro := newGateway(t, Config{Anonymous: RoleAdmin, ReadOnly: true})
	w = do(t, c, "GET", ro.URL+"/api/whoami", nil).want(t, http.StatusOK).whoami(t)
	if !w.ReadOnly || w.Roles["*"] != RoleViewer || w.Actor != DefaultAnonymousActor {
		t.Errorf("read-only anonymous whoami: %+v", w)
	}
	do(t, c, "POST", ro.URL+"/api/shop/do", nil).want(t, http.StatusForbidden)
}

func TestLocalSignIn(t *testing.T) {
	g := newGateway(t, Config{})
	c := g.client(t)

	page := do(t, c, "GET", g.URL+"/auth/login", nil).want(t, http.StatusOK)
	for _, want := range []string{`name="username"`, `type="password"`, `action="/auth/login"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	if strings.Contains(page.body, "Sign in with") {
		t.Errorf("login page offers OIDC, which is not configured")
	}

	r := g.login(t, c, "alice", "wrong", "/rollouts").want(t, http.StatusUnauthorized)
	if !strings.Contains(r.body, "Wrong username or password") || !strings.Contains(r.body, `value="alice"`) {
		t.Errorf("wrong password page (the error, the name kept): %s", r.body)
	}
	if strings.Contains(r.body, "wrong\"") {
		t.Errorf("the page shows the password tried")
	}
	g.login(t, c, "mallory", alicePassword, "/").want(t, http.StatusUnauthorized)
	if g.cookie(c, SessionCookie) != "" {
		t.Fatal("a failed sign-in set a session")
	}

	r = g.login(t, c, "alice", alicePassword, "/rollouts/shop/web?tab=steps").want(t, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/rollouts/shop/web?tab=steps" {
		t.Errorf("redirected to %q", loc)
	}
	var sess, csrf *http.Cookie
	for _, k := range r.Cookies() {
		switch k.Name {
		case SessionCookie:
			sess = k
		case CSRFCookie:
			csrf = k
		}
	}
	if sess == nil || csrf == nil {
		t.Fatalf("cookies set: %v", r.Cookies())
	}
	if !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Secure || sess.Path != "/" {
		t.Errorf("session cookie flags: %+v", sess)
	}
	if csrf.HttpOnly || csrf.Value == "" {
		t.Errorf("the CSRF cookie must be readable by the dashboard: %+v", csrf)
	}
	if got, want := sess.Expires, g.clock.Now().Add(time.Hour); !got.Equal(want.Truncate(time.Second)) {
		t.Errorf("session expires %v, want %v (sessionTTL 1h)", got, want)
	}

	w := do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusOK).whoami(t)
	if w.Actor != "user:alice" || w.Via != ViaSession || w.Roles["shop"] != RoleOperator {
		t.Errorf("whoami after sign-in: %+v", w)
	}

	// Logout ends the session: the old cookie replayed is no one.
	old := g.cookie(c, SessionCookie)
	do(t, c, "POST", g.URL+"/auth/logout", nil, "Origin: "+g.URL, CSRFHeader+": "+g.cookie(c, CSRFCookie)).want(t, http.StatusSeeOther)
	if g.cookie(c, SessionCookie) != "" || g.cookie(c, CSRFCookie) != "" {
		t.Error("logout left the cookies")
	}
	do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusUnauthorized)
	do(t, http.DefaultClient, "GET", g.URL+"/api/whoami", nil, "Cookie: "+SessionCookie+"="+old).want(t, http.StatusUnauthorized)

	// A session ends by itself after sessionTTL.
	g.login(t, c, "alice", alicePassword, "/").want(t, http.StatusSeeOther)
	g.clock.Advance(59 * time.Minute)
	do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusOK)
	g.clock.Advance(time.Minute)
	do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusUnauthorized)

	// A forged or tampered cookie is no one.
	g.login(t, c, "alice", alicePassword, "/").want(t, http.StatusSeeOther)
	v := g.cookie(c, SessionCookie)
	tampered := v[:len(v)-2] + "AA"
	do(t, http.DefaultClient, "GET", g.URL+"/api/whoami", nil, "Cookie: "+SessionCookie+"="+tampered).want(t, http.StatusUnauthorized)
	other := newGateway(t, Config{})
	do(t, http.DefaultClient, "GET", other.URL+"/api/whoami", nil, "Cookie: "+SessionCookie+"="+v).want(t, http.StatusUnauthorized)
}

func TestSecureCookiesBehindTLS(t *testing.T) {
	g := newGateway(t, Config{})
	c := g.client(t)
	page := do(t, c, "GET", g.URL+"/auth/login", nil).want(t, http.StatusOK)
	tok := csrfField.FindStringSubmatch(page.body)[1]
	form := url.Values{"username": {"alice"}, "password": {alicePassword}, "csrf": {tok}}
	r := do(t, c, "POST", g.URL+"/auth/login", strings.NewReader(form.Encode()), "X-Forwarded-Proto: https").want(t, http.StatusSeeOther)
	for _, k := range r.Cookies() {
		if !k.Secure {
			t.Errorf("cookie %s not Secure behind a TLS proxy", k.Name)
		}
	}
}

func TestNoOpenRedirect(t *testing.T) {
	g := newGateway(t, Config{})
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "evil.example", "javascript:alert(1)", "/%0d%0aSet-Cookie:x=y", ""} {
		c := g.client(t)
		r := g.login(t, c, "alice", alicePassword, next).want(t, http.StatusSeeOther)
		loc := r.Header.Get("Location")
		if u, err := url.Parse(loc); err != nil || u.Host != "" || !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") {
			t.Errorf("next %q: redirected to %q", next, loc)
		}
	}
	for _, next := range []string{"/", "/rollouts?namespace=shop"} {
		r := g.login(t, g.client(t), "alice", alicePassword, next).want(t, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != next {
			t.Errorf("next %q: redirected to %q", next, loc)
		}
	}
}

func TestLoginFormCSRF(t *testing.T) {
	g := newGateway(t, Config{})
	// Another site posting the form (a login CSRF) has no form token.
	form := url.Values{"username": {"alice"}, "password": {alicePassword}, "csrf": {"guess"}}
	c := g.client(t)
	do(t, c, "POST", g.URL+"/auth/login", strings.NewReader(form.Encode())).want(t, http.StatusForbidden)
	page := do(t, c, "GET", g.URL+"/auth/login", nil).want(t, http.StatusOK)
	form.Set("csrf", csrfField.FindStringSubmatch(page.body)[1])
	do(t, c, "POST", g.URL+"/auth/login", strings.NewReader(form.Encode()), "Origin: https://evil.example").want(t, http.StatusForbidden)
	if g.cookie(c, SessionCookie) != "" {
		t.Fatal("signed in from another site")
	}
	do(t, c, "POST", g.URL+"/auth/login", strings.NewReader(form.Encode()), "Origin: "+g.URL).want(t, http.StatusSeeOther)
}

func TestCSRF(t *testing.T) {
	g := newGateway(t, Config{})
	c := g.client(t)
	g.login(t, c, "alice", alicePassword, "/").want(t, http.StatusSeeOther)
	tok := g.cookie(c, CSRFCookie)
	do_ := func(headers ...string) response { return do(t, c, "POST", g.URL+"/api/shop/do", nil, headers...) }

	r := do_().want(t, http.StatusForbidden)
	if msg := r.errorOf(t); !strings.Contains(msg, "missing "+CSRFHeader) {
		t.Errorf("without the header: %q", msg)
	}
	r = do_(CSRFHeader+": "+tok+"x").want(t, http.StatusForbidden)
	if msg := r.errorOf(t); !strings.Contains(msg, "wrong "+CSRFHeader) {
		t.Errorf("with a wrong header: %q", msg)
	}
	r = do_(CSRFHeader+": "+tok, "Origin: https://evil.example").want(t, http.StatusForbidden)
	if msg := r.errorOf(t); !strings.Contains(msg, "evil.example") {
		t.Errorf("from another origin: %q", msg)
	}
	do_(CSRFHeader+": "+tok, "Referer: https://evil.example/page").want(t, http.StatusForbidden)
	do_(CSRFHeader+": "+tok, "Origin: null").want(t, http.StatusForbidden)

	// The dashboard's request: same origin, the header.
	do_(CSRFHeader+": "+tok, "Origin: "+g.URL).want(t, http.StatusOK)
	do_(CSRFHeader+": "+tok, "Referer: "+g.URL+"/rollouts/shop/web").want(t, http.StatusOK)
	do_(CSRFHeader+": "+tok).want(t, http.StatusOK)
	// Behind a proxy that says which host the browser saw.
	do_(CSRFHeader+": "+tok, "Origin: https://sluice.example.com", "X-Forwarded-Host: sluice.example.com").want(t, http.StatusOK)
	// Reads need no header.
	do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusOK)
	// Logout from a plain form carries the token as a field.
	do(t, c, "POST", g.URL+"/auth/logout", strings.NewReader("csrf=nope")).want(t, http.StatusForbidden)
	do(t, c, "POST", g.URL+"/auth/logout", strings.NewReader("csrf="+tok)).want(t, http.StatusSeeOther)
}

func TestHardeningHeaders(t *testing.T) {
	g := newGateway(t, Config{RatePerSecond: 1, Burst: 10})
	c := g.client(t)
	responses := []response{
		do(t, c, "GET", g.URL+"/auth/login", nil).want(t, http.StatusOK),
		do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusUnauthorized),
		do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer nope").want(t, http.StatusUnauthorized),
		do(t, c, "GET", g.URL+"/nowhere", nil).want(t, http.StatusNotFound),
	}
	for _, r := range responses {
		for h, want := range map[string]string{
			"X-Frame-Options":         "DENY",
			"Content-Security-Policy": ContentSecurityPolicy,
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
		} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s %d: %s = %q, want %q", r.Request.URL.Path, r.StatusCode, h, got, want)
			}
		}
	}
	for _, want := range []string{"frame-ancestors 'none'", "default-src 'self'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("CSP lacks %s", want)
		}
	}
}

func TestRateLimits(t *testing.T) {
	g := newGateway(t, Config{RatePerSecond: 1, Burst: 2})
	c := g.client(t)
	ci := "Authorization: Bearer " + ciToken
	do(t, c, "GET", g.URL+"/api/whoami", nil, ci).want(t, http.StatusOK)
	do(t, c, "GET", g.URL+"/api/whoami", nil, ci).want(t, http.StatusOK)
	r := do(t, c, "GET", g.URL+"/api/whoami", nil, ci).want(t, http.StatusTooManyRequests)
	if got := r.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if msg := r.errorOf(t); !strings.Contains(msg, "too many requests") {
		t.Errorf("429 error %q", msg)
	}
	// Per caller: another token, and the anonymous address, have their own.
	do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer "+viewerToken).want(t, http.StatusOK)
	do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusUnauthorized)
	// Refused tokens count against the address: no guessing at full speed.
	do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer guess").want(t, http.StatusUnauthorized)
	do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer guess").want(t, http.StatusTooManyRequests)

	g.clock.Advance(time.Second)
	do(t, c, "GET", g.URL+"/api/whoami", nil, ci).want(t, http.StatusOK)
	do(t, c, "GET", g.URL+"/api/whoami", nil, ci).want(t, http.StatusTooManyRequests)
}

func TestRateLimitersForgetIdleCallers(t *testing.T) {
	l := newLimiters(10, 20) // refills in 2 s
	now := newClock().Now()
	for i := range 1000 {
		if ok, _ := l.take("ip:10.0.0."+string(rune('a'+i%26))+string(rune('a'+i/26)), now); !ok {
			t.Fatal("a new caller was limited")
		}
	}
	if n := l.size(); n != 1000 {
		t.Fatalf("%d buckets, want 1000", n)
	}
	for range 20 {
		l.take("busy", now.Add(2*time.Second))
	}
	if n := l.size(); n != 1 {
		t.Errorf("%d buckets after the others idled for a refill time, want 1 (the busy one)", n)
	}
	if ok, _ := l.take("busy", now.Add(2*time.Second)); ok {
		t.Error("the busy caller's bucket was forgotten while not full")
	}
}

func TestSecretsAreNeverLogged(t *testing.T) {
	g := newGateway(t, Config{})
	c := g.client(t)
	do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer "+ciToken).want(t, http.StatusOK)
	do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer "+ciToken+"-wrong").want(t, http.StatusUnauthorized)
	g.login(t, c, "alice", alicePassword+"-wrong", "/").want(t, http.StatusUnauthorized)
	g.login(t, c, "alice", alicePassword, "/").want(t, http.StatusSeeOther)
	sess, csrf := g.cookie(c, SessionCookie), g.cookie(c, CSRFCookie)
	do(t, c, "POST", g.URL+"/api/shop/do", nil, CSRFHeader+": wrong").want(t, http.StatusForbidden)
	do(t, c, "POST", g.URL+"/auth/logout", nil, CSRFHeader+": "+csrf).want(t, http.StatusSeeOther)

	logs := g.logs.String()
	if !strings.Contains(logs, "signed in") || !strings.Contains(logs, "invalid token") {
		t.Fatalf("the auth events were not logged at all:\n%s", logs)
	}
	for name, secret := range map[string]string{
		"token": ciToken, "password": alicePassword, "session cookie": sess, "CSRF token": csrf,
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s is in the logs:\n%s", name, logs)
		}
	}
}

// A stream (SSE) goes through the middleware unbuffered and counts once
// against its caller's rate, however long it stays open.
func TestStreamsCountOnce(t *testing.T) {
	g := newGateway(t, Config{RatePerSecond: 1, Burst: 3})
	sent := make(chan struct{})
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "id: %d\ndata: {}\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-sent:
			case <-r.Context().Done():
				return
			}
		}
		<-r.Context().Done()
	})
	srv := httptest.NewServer(g.auth.Middleware(inner))
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Authorization", "Bearer "+ciToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := events.ReadString('\n')
		if err != nil || line != fmt.Sprintf("id: %d\n", i) {
			t.Fatalf("event %d: %q, %v", i, line, err)
		}
		events.ReadString('\n')
		events.ReadString('\n')
		sent <- struct{}{}
	}
	// Three events later the stream has still used one request of three.
	c := g.client(t)
	do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer "+ciToken).want(t, http.StatusOK)
	do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer "+ciToken).want(t, http.StatusOK)
	do(t, c, "GET", g.URL+"/api/whoami", nil, "Authorization: Bearer "+ciToken).want(t, http.StatusTooManyRequests)
}
