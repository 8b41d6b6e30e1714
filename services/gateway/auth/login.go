package auth

import (
	"crypto/subtle"
	_ "embed"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The routes Routes serves.
const (
	loginPath    = "/auth/login"
	callbackPath = "/auth/callback"
	logoutPath   = "/auth/logout"
)

//go:embed login.html
var loginHTML string

var loginPage = template.Must(template.New("login").Parse(loginHTML))

// dummyHash is compared against when the user is unknown, so that a
// wrong name takes as long as a wrong password. Made on first use: every
// binary that imports the package would pay for it at start otherwise.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)
	return h
})

// Routes serves /auth/login, /auth/callback and /auth/logout:
//
//   - GET /auth/login[?next=PATH]: the sign-in page (a form for local
//     users, a link for OIDC); with only OIDC configured it goes straight
//     to the provider. ?oidc=1 starts the OIDC flow.
//   - POST /auth/login (form: username, password, csrf, next): checks the
//     password, starts a session and redirects (303) to next.
//   - GET /auth/callback: the OIDC provider's answer.
//   - POST /auth/logout: ends the session and redirects (303) to
//     /auth/login.
//
// next is only ever a path on this gateway; anything else means "/".
func (a *Auth) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loginPath, a.loginGet)
	mux.HandleFunc("POST "+loginPath, a.loginPost)
	mux.HandleFunc("GET "+callbackPath, a.callback)
	mux.HandleFunc("POST "+logoutPath, a.logout)
	mux.HandleFunc("/auth/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such page: "+r.URL.Path+" (see /auth/login)")
	})
	return mux
}

type loginView struct {
	Error     string
	Username  string // kept after a wrong password
	Next      string
	CSRF      string
	Local     bool
	OIDCName  string
	OIDCURL   string
	NoSignIn  bool
	Anonymous string
}

func (a *Auth) loginGet(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if a.oidc != nil && (r.URL.Query().Get("oidc") != "" || a.file != nil && len(a.file.Users) == 0) {
		a.startOIDC(w, r, next)
		return
	}
	a.renderLogin(w, r, http.StatusOK, next, "")
}

func (a *Auth) renderLogin(w http.ResponseWriter, r *http.Request, status int, next, msg string) {
	v := loginView{Error: msg, Next: next}
	if r.Method == http.MethodPost && r.URL.Path == loginPath {
		v.Username = r.PostFormValue("username")
	}
	switch {
	case a.file == nil:
		v.NoSignIn = true
		if a.cfg.Anonymous != RoleNone {
			v.Anonymous = a.cfg.Anonymous.String()
		}
	default:
		v.Local = len(a.file.Users) > 0
		if a.oidc != nil {
			v.OIDCName = a.oidc.cfg.Name
			v.OIDCURL = loginPath + "?" + url.Values{"oidc": {"1"}, "next": {next}}.Encode()
		}
	}
	if v.Local {
		tok := randomToken()
		if c, err := r.Cookie(loginCookie); err == nil && c.Value != "" {
			tok = c.Value
		}
		http.SetCookie(w, a.cookie(r, loginCookie, tok, time.Time{}, true))
		v.CSRF = tok
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, v)
}

func (a *Auth) loginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "cannot read the sign-in form: "+err.Error())
		return
	}
	next := safeNext(r.PostFormValue("next"))
	if a.file == nil || len(a.file.Users) == 0 {
		a.renderLogin(w, r, http.StatusNotFound, next, "This gateway has no local users.")
		return
	}
	c, err := r.Cookie(loginCookie)
	if form := r.PostFormValue("csrf"); err != nil || form == "" || subtle.ConstantTimeCompare([]byte(form), []byte(c.Value)) != 1 {
		a.renderLogin(w, r, http.StatusForbidden, next, "The sign-in form expired. Please try again.")
		return
	}
	name, password := r.PostFormValue("username"), r.PostFormValue("password")
	u, ok := a.user(name)
	hash := dummyHash()
	if ok {
		hash = []byte(u.PasswordHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !ok {
		a.log.Info("sign-in refused", "user", name, "remote", clientIP(r))
		a.renderLogin(w, r, http.StatusUnauthorized, next, "Wrong username or password.")
		return
	}
	a.startSession(w, r, "user:"+u.Name, u.Groups)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (a *Auth) user(name string) (User, bool) {
	if a.file == nil {
		return User{}, false
	}
	for _, u := range a.file.Users {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

func (a *Auth) logout(w http.ResponseWriter, r *http.Request) {
	a.endSession(w, r)
	http.Redirect(w, r, loginPath, http.StatusSeeOther)
}

// safeNext returns next when it is a path on this gateway, else "/": a
// sign-in never sends the browser to another site (no open redirect).
func safeNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}
