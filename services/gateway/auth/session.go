package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Cookies the gateway sets.
const (
	// SessionCookie holds a signed-in person's session (HttpOnly).
	SessionCookie = "sluice_session"
	// CSRFCookie holds the session's CSRF token, readable by the
	// dashboard's script, which sends it back as CSRFHeader.
	CSRFCookie = "sluice_csrf"
	// CSRFHeader carries CSRFCookie's value on unsafe requests.
	CSRFHeader = "X-Sluice-CSRF"
	// flowCookie holds an OIDC sign-in's state, nonce and PKCE verifier.
	flowCookie = "sluice_oidc"
	// loginCookie holds the login form's CSRF token.
	loginCookie = "sluice_login"
)

var errBadSeal = errors.New("invalid or expired")

// sealer signs values into cookies with HMAC-SHA256, so the gateway keeps
// no session store: a cookie is valid when its MAC is right and it has
// not expired. purpose is part of the MAC, so that one kind of cookie is
// never accepted as another.
type sealer struct{ key []byte }

type sealed[T any] struct {
	Purpose string `json:"p"`
	Expires int64  `json:"e"`
	Value   T      `json:"v"`
}

func seal[T any](s sealer, purpose string, v T, expires time.Time) string {
	b, _ := json.Marshal(sealed[T]{Purpose: purpose, Expires: expires.Unix(), Value: v})
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload))
}

func unseal[T any](s sealer, purpose, cookie string, now time.Time) (T, error) {
	var zero T
	payload, sig, ok := strings.Cut(cookie, ".")
	if !ok {
		return zero, errBadSeal
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(payload)) {
		return zero, errBadSeal
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return zero, errBadSeal
	}
	var v sealed[T]
	if err := json.Unmarshal(b, &v); err != nil || v.Purpose != purpose || now.Unix() >= v.Expires {
		return zero, errBadSeal
	}
	return v.Value, nil
}

func (s sealer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// session is a signed-in person, as the session cookie holds it.
type session struct {
	ID     string   `json:"id"`
	Actor  string   `json:"a"`
	Groups []string `json:"g,omitempty"`
	// CSRF is the double-submit token, also in CSRFCookie.
	CSRF string `json:"c"`
}

// startSession signs p in: it sets the session cookie and the CSRF cookie.
func (a *Auth) startSession(w http.ResponseWriter, r *http.Request, actor string, groups []string) {
	if a.file != nil {
		// Keep only the groups a binding names: an OIDC provider may send
		// hundreds, and a cookie holds 4 KB.
		bound := a.file.boundGroups()
		var keep []string
		for _, g := range groups {
			if bound[g] {
				keep = append(keep, g)
			}
		}
		groups = keep
	}
	expires := a.cfg.Now().Add(a.sessionTTL())
	s := session{ID: randomToken(), Actor: actor, Groups: groups, CSRF: randomToken()}
	http.SetCookie(w, a.cookie(r, SessionCookie, seal(a.keys, SessionCookie, s, expires), expires, true))
	http.SetCookie(w, a.cookie(r, CSRFCookie, s.CSRF, expires, false))
	a.log.Info("signed in", "actor", actor, "remote", clientIP(r))
}

func (a *Auth) sessionTTL() time.Duration {
	if a.file != nil && a.file.sessionTTL > 0 {
		return a.file.sessionTTL
	}
	return DefaultSessionTTL
}

// sessionOf returns the request's valid session, if any.
func (a *Auth) sessionOf(r *http.Request) (session, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return session{}, false
	}
	s, err := unseal[session](a.keys, SessionCookie, c.Value, a.cfg.Now())
	if err != nil {
		return session{}, false
	}
	a.mu.Lock()
	_, revoked := a.revoked[s.ID]
	a.mu.Unlock()
	return s, !revoked
}

// endSession revokes the request's session, if any, and clears the
// cookies.
func (a *Auth) endSession(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		now := a.cfg.Now()
		if s, err := unseal[session](a.keys, SessionCookie, c.Value, now); err == nil {
			a.mu.Lock()
			for id, until := range a.revoked {
				if !now.Before(until) {
					delete(a.revoked, id)
				}
			}
			// The cookie could outlive this process's memory only as long
			// as it is valid anyway.
			a.revoked[s.ID] = now.Add(a.sessionTTL())
			a.mu.Unlock()
			a.log.Info("signed out", "actor", s.Actor, "remote", clientIP(r))
		}
	}
	for _, name := range []string{SessionCookie, CSRFCookie} {
		c := a.cookie(r, name, "", time.Unix(0, 0), name == SessionCookie)
		c.MaxAge = -1
		http.SetCookie(w, c)
	}
}

// cookie is a cookie of the gateway's: Path /, SameSite=Lax, Secure when
// the request came over TLS (directly or through a proxy that says so).
func (a *Auth) cookie(r *http.Request, name, value string, expires time.Time, httpOnly bool) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Expires:  expires,
		HttpOnly: httpOnly,
		Secure:   isTLS(r),
		SameSite: http.SameSiteLaxMode,
	}
}

func isTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

// randomToken is 256 random bits, URL-safe.
func randomToken() string { return base64.RawURLEncoding.EncodeToString(randomBytes(32)) }
