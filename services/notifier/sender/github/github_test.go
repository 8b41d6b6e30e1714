package github_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/services/notifier/notify"
	"github.com/sluicehq/sluice/services/notifier/sender/github"
	"github.com/sluicehq/sluice/services/notifier/sender/sendertest"
)

const token = "ghp_TESTTOKEN0123456789"

// api is a GitHub Enterprise Server's REST API, the slice the sender
// uses: commit statuses and App installation tokens, with GitHub's
// documented authentication and error answers.
type api struct {
	*httptest.Server
	key *rsa.PrivateKey // the App's key, when it checks App JWTs

	mu        sync.Mutex
	statuses  []status
	tokens    int    // installation tokens handed out
	instToken string // the current installation token
	tokenTTL  time.Duration
	answer    func(w http.ResponseWriter) bool
}

type status struct {
	Path        string
	State       string `json:"state"`
	Context     string `json:"context"`
	Description string `json:"description"`
	TargetURL   string `json:"target_url"`
}

func newAPI(t *testing.T, key *rsa.PrivateKey) *api {
	a := &api{key: key, tokenTTL: time.Hour}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v3/repos/{owner}/{repo}/statuses/{sha}", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		want := "Bearer " + token
		if a.key != nil {
			want = "Bearer " + a.instToken
		}
		if a.instToken == "" && a.key != nil || r.Header.Get("Authorization") != want {
			writeJSON(w, 401, `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`)
			return
		}
		if a.answer != nil && a.answer(w) {
			return
		}
		var s status
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
			writeJSON(w, 400, `{"message":"Problems parsing JSON"}`)
			return
		}
		s.Path = r.PathValue("owner") + "/" + r.PathValue("repo") + "@" + r.PathValue("sha")
		a.statuses = append(a.statuses, s)
		writeJSON(w, 201, fmt.Sprintf(`{"id":1,"state":%q,"context":%q}`, s.State, s.Context))
	})
	mux.HandleFunc("POST /api/v3/app/installations/{id}/access_tokens", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		claims := jwt.RegisteredClaims{}
		_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return &a.key.PublicKey, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuedAt())
		if err != nil || claims.Issuer != "42" || r.PathValue("id") != "7" {
			writeJSON(w, 401, `{"message":"A JSON web token could not be decoded"}`)
			return
		}
		a.tokens++
		a.instToken = "ghs_installation" + strconv.Itoa(a.tokens)
		writeJSON(w, 201, fmt.Sprintf(`{"token":%q,"expires_at":%q}`, a.instToken, time.Now().Add(a.tokenTTL).UTC().Format(time.RFC3339)))
	})
	a.Server = httptest.NewServer(mux)
	t.Cleanup(a.Close)
	return a
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

func (a *api) got() []status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]status(nil), a.statuses...)
}

func (a *api) setAnswer(f func(w http.ResponseWriter) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answer = f
}

func newSender(t *testing.T, opts map[string]any) notify.Sender {
	t.Helper()
	raw, _ := json.Marshal(opts)
	s, err := github.New(notify.ServiceConfig{Name: "github", Type: github.Type, Options: raw})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func statusMessage(repoURL, sha, state string) notify.Message {
	return notify.Message{
		ID: "m", Templates: []string{"rollout-completed"},
		Destination: notify.Destination{Service: "github"},
		Notification: notify.Notification{
			Message: "Rollout shop completed: revision 3 is stable. " + strings.Repeat("and then some more ", 10),
			GitHub: &notify.GitHub{RepoURLPath: repoURL, RevisionPath: sha,
				Status: &notify.GitHubStatus{State: state, Label: "sluice/shop", TargetURL: "https://sluice.example/rollouts/shop"}},
		},
	}
}

func TestSetsTheCommitStatusWithAToken(t *testing.T) {
	srv := newAPI(t, nil)
	s := newSender(t, map[string]any{"token": token, "enterpriseBaseURL": srv.URL})
	for _, repo := range []string{"https://github.com/acme/shop.git", "git@github.com:acme/shop.git"} {
		if _, err := s.Send(context.Background(), statusMessage(repo, "0123abc", "success")); err != nil {
			t.Fatalf("Send %s: %v", repo, err)
		}
	}
	got := srv.got()
	if len(got) != 2 {
		t.Fatalf("statuses = %v, want 2", got)
	}
	s0 := got[0]
	if s0.Path != "acme/shop@0123abc" || s0.State != "success" || s0.Context != "sluice/shop" || s0.TargetURL != "https://sluice.example/rollouts/shop" {
		t.Errorf("status = %+v, want success on acme/shop@0123abc with the label as context", s0)
	}
	if n := len([]rune(s0.Description)); n != 140 || !strings.HasPrefix(s0.Description, "Rollout shop completed") {
		t.Errorf("description = %q (%d characters), want the message cut to 140", s0.Description, n)
	}
}

func TestGitHubAppGetsAnInstallationToken(t *testing.T) {
	key, keyPEM := appKey(t)
	srv := newAPI(t, key)
	s := newSender(t, map[string]any{"appID": 42, "installationID": "7", "privateKey": keyPEM, "enterpriseBaseURL": srv.URL + "/api/v3/"})
	for range 2 {
		if _, err := s.Send(context.Background(), statusMessage("https://github.com/acme/shop", "abc", "pending")); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	// Concurrent sends share the one installation token.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := s.Send(context.Background(), statusMessage("https://github.com/acme/shop", "abc", "success"))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Send: %v", err)
		}
	}
	if n := len(srv.got()); n != 10 {
		t.Errorf("statuses = %d, want 10", n)
	}
	srv.mu.Lock()
	tokens := srv.tokens
	srv.mu.Unlock()
	if tokens != 1 {
		t.Errorf("installation tokens = %d, want 1 (kept until it is about to expire)", tokens)
	}

	// A token about to expire is replaced before it is used.
	srv.mu.Lock()
	srv.tokenTTL, srv.tokens, srv.instToken = 2*time.Minute, 0, ""
	srv.mu.Unlock()
	short := newSender(t, map[string]any{"appID": 42, "installationID": 7, "privateKey": keyPEM, "enterpriseBaseURL": srv.URL})
	for range 2 {
		if _, err := short.Send(context.Background(), statusMessage("acme/shop", "abc", "success")); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	srv.mu.Lock()
	tokens = srv.tokens
	srv.mu.Unlock()
	if tokens != 2 {
		t.Errorf("installation tokens = %d, want 2: one expiring within five minutes is not reused", tokens)
	}

	_, otherPEM := appKey(t)
	wrong := newSender(t, map[string]any{"appID": 42, "installationID": 7, "privateKey": otherPEM, "enterpriseBaseURL": srv.URL})
	_, err := wrong.Send(context.Background(), statusMessage("acme/shop", "abc", "pending"))
	if !notify.IsPermanent(err) || strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("a key GitHub refuses = %v, want a permanent error without the key", err)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    func(w http.ResponseWriter) bool
		token     string
		permanent bool
		after     time.Duration // exact, or an upper bound with afterAtMost
		atMost    bool
		hasAfter  bool
		text      string
	}{
		{name: "secondary rate limit waits its Retry-After", answer: func(w http.ResponseWriter) bool {
			w.Header().Set("Retry-After", "30")
			writeJSON(w, 403, `{"message":"You have exceeded a secondary rate limit.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}`)
			return true
		}, after: 30 * time.Second, hasAfter: true},
		{name: "primary rate limit waits for the reset", answer: func(w http.ResponseWriter) bool {
			w.Header().Set("X-RateLimit-Limit", "5000")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10))
			writeJSON(w, 403, `{"message":"API rate limit exceeded"}`)
			return true
		}, after: time.Minute + time.Second, atMost: true, hasAfter: true},
		{name: "too many statuses is final", answer: func(w http.ResponseWriter) bool {
			writeJSON(w, 422, `{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom","message":"This SHA and context has reached the maximum number of statuses."}]}`)
			return true
		}, permanent: true, text: "1000 statuses"},
		{name: "server error is retried", answer: func(w http.ResponseWriter) bool {
			writeJSON(w, 502, `{"message":"Server Error"}`)
			return true
		}},
		{name: "bad credentials are final", token: "ghp_wrong", permanent: true, text: "not accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newAPI(t, nil)
			srv.setAnswer(tc.answer)
			tok := token
			if tc.token != "" {
				tok = tc.token
			}
			s := newSender(t, map[string]any{"token": tok, "enterpriseBaseURL": srv.URL})
			_, err := s.Send(context.Background(), statusMessage("acme/shop", "abc", "failure"))
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			if notify.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, notify.IsPermanent(err), tc.permanent)
			}
			d, ok := notify.RetryDelay(err)
			if ok != tc.hasAfter || (!tc.atMost && d != tc.after) || (tc.atMost && (d <= 0 || d > tc.after)) {
				t.Errorf("RetryDelay = %s, %v; want %s, %v", d, ok, tc.after, tc.hasAfter)
			}
			if !strings.Contains(err.Error(), tc.text) || strings.Contains(err.Error(), tok) {
				t.Errorf("err = %q, want it to contain %q and not the token", err, tc.text)
			}
		})
	}
}

func TestTemplateProblemsAreFinal(t *testing.T) {
	srv := newAPI(t, nil)
	s := newSender(t, map[string]any{"token": token, "enterpriseBaseURL": srv.URL})
	noStatus := statusMessage("acme/shop", "abc", "success")
	noStatus.Notification.GitHub.Status = nil
	for name, tc := range map[string]struct {
		m    notify.Message
		text string
	}{
		"no repository":   {statusMessage("", "abc", "success"), "sluice.io/git-repo"},
		"not a repo URL":  {statusMessage("https://github.com/acme", "abc", "success"), "does not name a repository"},
		"no revision":     {statusMessage("acme/shop", " ", "success"), "github.revisionPath"},
		"unknown state":   {statusMessage("acme/shop", "abc", "Healthy"), `"Healthy"`},
		"no status part":  {noStatus, "rollout-completed has no github.status"},
		"no github part!": {notify.Message{Templates: []string{"t"}}, "has no github.status"},
	} {
		_, err := s.Send(context.Background(), tc.m)
		if !notify.IsPermanent(err) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: Send = %v, want a permanent error containing %q", name, err, tc.text)
		}
	}
	if len(srv.got()) != 0 {
		t.Errorf("statuses were set from broken templates: %v", srv.got())
	}
}

func TestRepoFromURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/acme/shop":         "acme/shop",
		"https://github.com/acme/shop.git":     "acme/shop",
		"https://github.com/acme/shop/":        "acme/shop",
		"https://github.com/acme/shop/tree/x":  "acme/shop",
		"git@github.com:acme/shop.git":         "acme/shop",
		"ssh://git@github.com/acme/shop.git":   "acme/shop",
		"https://ghe.corp.example/team/app.v2": "team/app.v2",
		"acme/shop":                            "acme/shop",
		"":                                     "error",
		"https://github.com/":                  "error",
		"shop":                                 "error",
		"https://github.com/ac me/shop":        "error",
	} {
		owner, repo, err := github.RepoFromURL(in)
		got := owner + "/" + repo
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("RepoFromURL(%q) = %q (%v), want %q", in, got, err, want)
		}
	}
}

// appKey is a GitHub App's private key, and the PEM GitHub gives of it.
func appKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
}

func TestOptions(t *testing.T) {
	_, keyPEM := appKey(t)
	app := func(extra string) string {
		b, _ := json.Marshal(keyPEM)
		return `{"appID":42,"installationID":7,"privateKey":` + string(b) + extra + `}`
	}
	const badKey = "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0a2V5bWF0ZXJpYWw=\n-----END RSA PRIVATE KEY-----"
	sendertest.CheckOptions(t, github.New, github.Type, []sendertest.OptionCase{
		{Name: "token", Options: `{"token":"ghp_x"}`},
		{Name: "app", Options: app("")},
		{Name: "app with ids as strings", Options: `{"appID":"42","installationID":"7","privateKey":` + strconv.Quote(keyPEM) + `}`},
		{Name: "enterprise", Options: `{"token":"ghp_x","enterpriseBaseURL":"https://ghe.example.com"}`},
		{Name: "nothing", Options: `{}`, WantErr: `option "token" or the GitHub App's`},
		{Name: "both", Options: app(`,"token":"ghp_x"`), WantErr: "not both"},
		{Name: "app without installation", Options: `{"appID":42,"privateKey":"x"}`, WantErr: `option "installationID": want a positive whole number`},
		{Name: "app id not a number", Options: `{"appID":"my-app","installationID":7,"privateKey":"x"}`, WantErr: `option "appID"`},
		{Name: "app without key", Options: `{"appID":42,"installationID":7}`, WantErr: `option "privateKey" is required`},
		{Name: "bad key", Options: `{"appID":42,"installationID":7,"privateKey":` + strconv.Quote(badKey) + `}`, WantErr: `option "privateKey": want the App's RSA private key in PEM`},
		{Name: "bad enterprise URL", Options: `{"token":"ghp_x","enterpriseBaseURL":"ghe"}`, WantErr: `option "enterpriseBaseURL"`},
		{Name: "unknown", Options: `{"token":"ghp_x","repo":"acme/shop"}`, WantErr: `unknown option "repo"`},
	}, "ghp_x", "c2VjcmV0a2V5", "PRIVATE KEY")
}

func TestDocumentedExample(t *testing.T) {
	key, keyPEM := appKey(t)
	srv := newAPI(t, key)
	c := sendertest.Example(t, "### GitHub commit status", map[string]string{"github-app-private-key": keyPEM})
	// The example's App ids are 123456 and 7891011; this API knows 42 and 7.
	s := sendertest.New(t, c, github.New, "github", map[string]any{"appID": 42, "installationID": 7, "enterpriseBaseURL": srv.URL})
	for _, phase := range []string{"Progressing", "Healthy", "Degraded"} {
		m := sendertest.Message(t, c, "on-rollout-updated", []string{"github-status"}, sendertest.Vars(phase, ""),
			notify.Destination{Service: "github"})
		if _, err := s.Send(context.Background(), m); err != nil {
			t.Fatalf("Send (%s): %v", phase, err)
		}
	}
	got := srv.got()
	var states []string
	for _, st := range got {
		states = append(states, st.State)
	}
	if strings.Join(states, ",") != "pending,success,failure" {
		t.Errorf("states = %v, want pending, success, failure", states)
	}
	if st := got[0]; st.Path != "acme/shop@3f2a9c1e0b7d4a8e9f6c5b4a3d2e1f0a9b8c7d6e" || st.Context != "sluice/shop/web" ||
		st.TargetURL != "https://sluice.example/rollouts/shop/web" || st.Description != "Rollout web is Progressing." {
		t.Errorf("status = %+v, want the annotated repository and commit, the documented label and the dashboard", st)
	}
}
