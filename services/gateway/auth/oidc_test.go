package auth

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// provider is a fake OpenID Connect provider: a real HTTP server speaking
// the protocol (discovery, JWKS, authorization and token endpoints) that
// signs in one person without asking, as a provider with a live session
// does. It checks what a strict provider checks: the client, the redirect
// URL, and the PKCE verifier against the challenge.
type provider struct {
	*httptest.Server
	t        *testing.T
	key      *rsa.PrivateKey
	clientID string
	secret   string
	claims   map[string]any // the person's claims in the ID token

	mu    sync.Mutex
	codes map[string]grant
	// tamper changes the ID token's claims before signing, to prove the
	// gateway checks them.
	tamper func(claims map[string]any)
}

type grant struct {
	redirectURI, challenge, nonce string
}

func newProvider(t *testing.T, claims map[string]any) *provider {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &provider{t: t, key: key, clientID: "sluice", secret: "provider-secret", claims: claims, codes: map[string]grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

func (p *provider) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.URL,
		"authorization_endpoint":                p.URL + "/authorize",
		"token_endpoint":                        p.URL + "/token",
		"jwks_uri":                              p.URL + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (p *provider) jwks(w http.ResponseWriter, r *http.Request) {
	b64 := base64.RawURLEncoding.EncodeToString
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k1",
		"n": b64(p.key.N.Bytes()), "e": b64(big.NewInt(int64(p.key.E)).Bytes()),
	}}})
}

func (p *provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case q.Get("client_id") != p.clientID:
		http.Error(w, "unknown client", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		http.Error(w, "PKCE S256 required", http.StatusBadRequest)
		return
	case q.Get("state") == "" || q.Get("nonce") == "":
		http.Error(w, "state and nonce required", http.StatusBadRequest)
		return
	case !strings.Contains(" "+q.Get("scope")+" ", " openid "):
		http.Error(w, "scope openid required", http.StatusBadRequest)
		return
	}
	code := randomToken()
	p.mu.Lock()
	p.codes[code] = grant{redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge"), nonce: q.Get("nonce")}
	p.mu.Unlock()
	back, _ := url.Parse(q.Get("redirect_uri"))
	back.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (p *provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	if id != p.clientID || secret != p.secret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	p.mu.Lock()
	g, ok := p.codes[r.PostFormValue("code")]
	delete(p.codes, r.PostFormValue("code"))
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
	switch {
	case r.PostFormValue("grant_type") != "authorization_code" || !ok:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	case g.redirectURI != r.PostFormValue("redirect_uri"):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "redirect_uri"})
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "PKCE verifier"})
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": p.URL, "aud": p.clientID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "nonce": g.nonce}
	for k, v := range p.claims {
		claims[k] = v
	}
	p.mu.Lock()
	if p.tamper != nil {
		p.tamper(claims)
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": randomToken(), "token_type": "Bearer", "expires_in": 3600,
		"id_token": p.sign(claims),
	})
}

// sign returns claims as a compact RS256 JWT.
func (p *provider) sign(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"}) + "." + enc(claims)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, p.key, crypto.SHA256, sum[:])
	if err != nil {
		p.t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// oidcGateway serves a gateway whose auth file signs in with prov, with
// the local user alice too when local is set, and admin for group
// platform.
func oidcGateway(t *testing.T, prov *provider, local bool) *gateway {
	t.Setenv("SLUICE_TEST_OIDC_SECRET", prov.secret)
	// The redirect URL names the gateway, which needs the file first: a
	// handler that is set once the gateway exists.
	var h http.Handler
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(front.Close)
	users := ""
	if local {
		users = "users: [{name: alice, passwordHash: \"" + aliceHash + "\"}]\n"
	}
	file := users + `
oidc:
  issuer: ` + prov.URL + `
  name: Example ID
  clientID: sluice
  clientSecret: $SLUICE_TEST_OIDC_SECRET
  redirectURL: ` + front.URL + `/auth/callback
roles:
  - role: admin
    subjects: ["group:platform"]
    namespaces: ["*"]
  - role: viewer
    subjects: ["*"]
    namespaces: ["*"]
`
	g := newGateway(t, Config{File: writeFile(t, file)})
	h = g.Server.Config.Handler
	g.Server = front
	return g
}

func TestOIDCSignIn(t *testing.T) {
	prov := newProvider(t, map[string]any{"sub": "u-1", "email": "pat@example.com", "email_verified": true, "groups": []string{"platform", "unrelated"}})
	g := oidcGateway(t, prov, true)
	c := g.client(t)

	// The page offers the provider next to the local form.
	page := do(t, c, "GET", g.URL+"/auth/login?next=/rollouts", nil).want(t, http.StatusOK)
	if !strings.Contains(page.body, "Sign in with Example ID") || !strings.Contains(page.body, `name="password"`) {
		t.Fatalf("login page:\n%s", page.body)
	}

	// A browser follows the whole chain: gateway -> provider -> callback
	// -> next.
	c.CheckRedirect = nil
	r := do(t, c, "GET", g.URL+"/auth/login?oidc=1&next="+url.QueryEscape("/rollouts?ns=shop"), nil)
	var hops []string
	for req := r.Request; req != nil; req = func() *http.Request {
		if req.Response != nil {
			return req.Response.Request
		}
		return nil
	}() {
		hops = append([]string{req.URL.Host + req.URL.Path}, hops...)
	}
	final := r.Request.URL
	if final.Path != "/rollouts" || final.RawQuery != "ns=shop" || !strings.HasPrefix(g.URL, "http://"+final.Host) {
		t.Fatalf("sign-in ended at %s (status %d, body %s), via %v", final, r.StatusCode, r.body, hops)
	}
	if !strings.Contains(strings.Join(hops, " "), strings.TrimPrefix(prov.URL, "http://")+"/authorize") {
		t.Errorf("the chain did not pass the provider: %v", hops)
	}

	w := do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusOK).whoami(t)
	if w.Actor != "user:pat@example.com" || w.Via != ViaSession || w.Roles["*"] != RoleAdmin {
		t.Errorf("whoami after OIDC sign-in: %+v", w)
	}
	if g.cookie(c, flowCookie) != "" {
		t.Error("the sign-in's state cookie outlived it")
	}
	do(t, c, "POST", g.URL+"/api/shop/do", nil, CSRFHeader+": "+g.cookie(c, CSRFCookie)).want(t, http.StatusOK)
}

// With only OIDC configured, /auth/login goes straight to the provider.
func TestOIDCOnlyGoesStraightToTheProvider(t *testing.T) {
	prov := newProvider(t, map[string]any{"sub": "u-2", "email": "sam@example.com", "groups": "platform"})
	g := oidcGateway(t, prov, false)
	c := g.client(t)
	r := do(t, c, "GET", g.URL+"/auth/login?next=/x", nil).want(t, http.StatusFound)
	loc, _ := url.Parse(r.Header.Get("Location"))
	if !strings.HasPrefix(loc.String(), prov.URL+"/authorize") {
		t.Fatalf("redirected to %s", loc)
	}
	q := loc.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || q.Get("nonce") == "" || q.Get("client_id") != "sluice" {
		t.Errorf("authorization request: %v", q)
	}
	c.CheckRedirect = nil
	r = do(t, c, "GET", loc.String(), nil).want(t, http.StatusNotFound) // /x is nowhere, but signed in
	if r.Request.URL.Path != "/x" {
		t.Fatalf("ended at %s", r.Request.URL)
	}
	w := do(t, c, "GET", g.URL+"/api/whoami", nil).want(t, http.StatusOK).whoami(t)
	if w.Actor != "user:sam@example.com" || w.Roles["*"] != RoleAdmin {
		t.Errorf("whoami: %+v (a single group as a string)", w)
	}
}

func TestOIDCRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(map[string]any)
		want   string
	}{
		{"another nonce", func(c map[string]any) { c["nonce"] = "replayed" }, "not for this sign-in"},
		{"another audience", func(c map[string]any) { c["aud"] = "other-client" }, "not valid"},
		{"expired", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, "not valid"},
		{"no email", func(c map[string]any) { delete(c, "email") }, "no email claim"},
		{"unverified email", func(c map[string]any) { c["email_verified"] = false }, "not verified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prov := newProvider(t, map[string]any{"sub": "u-1", "email": "pat@example.com"})
			prov.tamper = tc.tamper
			g := oidcGateway(t, prov, false)
			c := g.client(t)
			c.CheckRedirect = nil
			r := do(t, c, "GET", g.URL+"/auth/login", nil)
			if r.StatusCode < 400 || !strings.Contains(r.body, tc.want) {
				t.Errorf("status %d, body:\n%s\nwant an error page saying %q", r.StatusCode, r.body, tc.want)
			}
			if g.cookie(c, SessionCookie) != "" {
				t.Error("signed in anyway")
			}
		})
	}

	t.Run("a forged state", func(t *testing.T) {
		prov := newProvider(t, map[string]any{"sub": "u-1", "email": "pat@example.com"})
		g := oidcGateway(t, prov, false)
		c := g.client(t)
		r := do(t, c, "GET", g.URL+"/auth/login", nil).want(t, http.StatusFound)
		loc, _ := url.Parse(r.Header.Get("Location"))
		r = do(t, c, "GET", loc.String(), nil).want(t, http.StatusFound)
		back, _ := url.Parse(r.Header.Get("Location"))
		q := back.Query()
		q.Set("state", "forged")
		back.RawQuery = q.Encode()
		r = do(t, c, "GET", back.String(), nil).want(t, http.StatusBadRequest)
		if g.cookie(c, SessionCookie) != "" {
			t.Error("signed in with a forged state")
		}
		// And a callback without the browser's sign-in cookie.
		do(t, g.client(t), "GET", g.URL+"/auth/callback?code=x&state=y", nil).want(t, http.StatusBadRequest)
	})

	t.Run("the provider is down", func(t *testing.T) {
		prov := newProvider(t, nil)
		g := oidcGateway(t, prov, false)
		prov.Close()
		r := do(t, g.client(t), "GET", g.URL+"/auth/login", nil).want(t, http.StatusBadGateway)
		if !strings.Contains(r.body, "Cannot reach Example ID") {
			t.Errorf("page: %s", r.body)
		}
	})
}
