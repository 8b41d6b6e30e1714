package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// A real canary, read through the API: the list with its filters, the
// rollout's steps, revisions and weights, its history in order, and who
// the caller is.
func TestReadARealCanary(t *testing.T) {
	sys := startSystem(t)
	a := sys.gateway(auth.RoleAdmin, "user:dev")
	sys.leavesNoConsumer()
	web := events.Ref{Namespace: "shop", Name: "web"}
	other := events.Ref{Namespace: "blog", Name: "site"}

	sys.Request(web, "web:1")
	a.waitPhase(web, 1, events.PhaseHealthy)
	req := sys.Request(web, "web:2")
	sys.Request(other, "site:1")
	d := a.waitPhase(web, 2, events.PhasePaused)
	a.waitPhase(other, 1, events.PhaseHealthy)

	// The rollout.
	if d.Status.CanaryWeight == 0 || d.Status.StepIndex == nil || *d.Status.StepIndex != 1 {
		t.Fatalf("status %+v, want paused at step 2 with some weight", d.Status)
	}
	var actions []string
	for _, s := range d.Steps {
		actions = append(actions, s.Action)
	}
	if !slices.Equal(actions, []string{"setWeight", "pause", "setWeight", "pause"}) || d.Steps[3].DurationSeconds == nil || *d.Steps[3].DurationSeconds != 1 || d.Steps[1].DurationSeconds != nil {
		t.Fatalf("steps %+v", d.Steps)
	}
	if len(d.Revisions) != 2 || d.Revisions[0].Role != "canary" || d.Revisions[0].Revision != 2 || !slices.Equal(d.Revisions[0].Images, []string{"web:2"}) ||
		d.Revisions[1].Role != "stable" || d.Revisions[1].Replicas != 2 {
		t.Fatalf("revisions %+v", d.Revisions)
	}
	if !slices.ContainsFunc(d.Weights, func(w WeightPoint) bool { return w.CanaryWeight == 0 }) ||
		!slices.ContainsFunc(d.Weights, func(w WeightPoint) bool {
			return w.CanaryWeight == d.Status.CanaryWeight && w.Event == events.TypeRolloutStepCompleted
		}) {
		t.Fatalf("weights %+v lack 0 and the first step's %d%%", d.Weights, d.Status.CanaryWeight)
	}
	if d.LastEvent == nil || d.LastEvent.Type() != events.TypeRolloutPaused {
		t.Fatalf("last event %v, want paused", d.LastEvent)
	}

	// The list, its filters.
	list := func(query string) []string {
		t.Helper()
		res := a.get("/api/v1/rollouts" + query)
		if res.code != http.StatusOK {
			t.Fatalf("list%s: %s", query, res)
		}
		var names []string
		for _, it := range decode[struct{ Items []Summary }](t, res).Items {
			if it.CreatedAt == nil {
				t.Errorf("%s/%s has no createdAt", it.Namespace, it.Name)
			}
			names = append(names, it.Namespace+"/"+it.Name+" "+it.Phase)
		}
		return names
	}
	for query, want := range map[string][]string{
		"":                             {"blog/site Healthy", "shop/web Paused"},
		"?namespace=shop":              {"shop/web Paused"},
		"?phase=Healthy":               {"blog/site Healthy"},
		"?namespace=blog&phase=Paused": nil,
	} {
		if got := list(query); !slices.Equal(got, want) {
			t.Errorf("list%s: %v, want %v", query, got, want)
		}
	}

	// The history: every command and status event, in order.
	res := a.get("/api/v1/namespaces/shop/rollouts/web/history")
	if res.code != http.StatusOK {
		t.Fatal(res)
	}
	items := decode[struct{ Items []HistoryItem }](t, res).Items
	var types []string
	for _, it := range items {
		if it.Seq == 0 {
			t.Errorf("%s has no sequence", it.Event.ID())
		}
		types = append(types, strings.TrimPrefix(it.Event.Type(), "io.sluice.rollout."))
	}
	i := slices.IndexFunc(items, func(it HistoryItem) bool { return it.Event.ID() == req.ID() })
	if i < 0 || items[i].Stream != events.StreamCommands || items[len(items)-1].Event.Type() != events.TypeRolloutPaused ||
		!slices.ContainsFunc(items[i:], func(it HistoryItem) bool { return it.Event.Type() == events.TypeRolloutAccepted }) {
		t.Fatalf("history %v: want the request of revision 2, then its acceptance, ending paused", types)
	}

	// Who am I.
	who := decode[whoamiBody](t, a.get("/api/v1/whoami"))
	if who.Actor != "user:dev" || who.Via != "anonymous" || who.ReadOnly || who.Roles["*"] != auth.RoleAdmin {
		t.Fatalf("whoami %+v", who)
	}

	// What is not there, or not a name.
	for path, want := range map[string]int{
		"/api/v1/namespaces/shop/rollouts/nope":         http.StatusNotFound,
		"/api/v1/namespaces/shop/rollouts/nope/history": http.StatusNotFound,
		"/api/v1/namespaces/Shop/rollouts/web":          http.StatusBadRequest,
		"/api/v1/namespaces/shop/rollouts/web_1":        http.StatusBadRequest,
		"/api/v1/rollouts?namespace=-x":                 http.StatusBadRequest,
		"/api/v1/rollouts?phase=Sleeping":               http.StatusBadRequest,
		"/api/v1/nothing":                               http.StatusNotFound,
	} {
		if res := a.get(path); res.code != want || res.json["error"] == "" || res.json["error"] == nil {
			t.Errorf("GET %s: %s, want %d with an error", path, res, want)
		}
	}
	if res := a.call("DELETE", "/api/v1/rollouts", ""); res.code != http.StatusMethodNotAllowed || res.json["error"] == nil {
		t.Errorf("DELETE /api/v1/rollouts: %s, want 405 with an error", res)
	}
}

// Every command through the API, answered with its outcome: done,
// refused NotFound, NotApplicable or Invalid; malformed requests are 400
// and never reach the bus.
func TestEveryCommandAnswered(t *testing.T) {
	sys := startSystem(t)
	a := sys.gateway(auth.RoleAdmin, "user:dev")
	sys.leavesNoConsumer()
	web := events.Ref{Namespace: "shop", Name: "web"}
	cmd := func(command, body string, code int, want string) CommandResult {
		t.Helper()
		res := a.call("POST", "/api/v1/namespaces/shop/rollouts/web/"+command, body)
		if res.code != code {
			t.Fatalf("%s %s: %s, want %d", command, body, res, code)
		}
		r := decode[CommandResult](t, res)
		got := r.Type
		if r.Outcome == OutcomeRefused {
			got = r.Code
		}
		if got != want {
			t.Fatalf("%s %s: %s, want %s", command, body, res, want)
		}
		if r.Event == nil || events.Extension(*r.Event, events.ExtActor) != "user:dev" || events.Extension(*r.Event, events.ExtCausationID) != r.ID {
			t.Fatalf("%s: answer %v does not carry the command's id %s and the caller", command, r.Event, r.ID)
		}
		return r
	}

	cmd("promote", "", http.StatusConflict, events.RefusedNotFound)
	sys.Request(web, "web:1")
	a.waitPhase(web, 1, events.PhaseHealthy)
	sys.Request(web, "web:2")
	a.waitPhase(web, 2, events.PhasePaused)

	if r := cmd("pause", "", http.StatusOK, events.TypeRolloutPaused); r.Outcome != OutcomeDone || r.Status == nil || r.Status.Phase != events.PhasePaused {
		t.Fatalf("pause: %+v", r)
	}
	cmd("pause", "{}", http.StatusConflict, events.RefusedNotApplicable)
	cmd("resume", "", http.StatusOK, events.TypeRolloutResumed)
	cmd("undo", `{"toRevision": 99}`, http.StatusConflict, events.RefusedInvalid)
	cmd("restart", "", http.StatusOK, events.TypeRolloutRestarted)
	cmd("abort", "", http.StatusOK, events.TypeRolloutAborted)
	cmd("abort", "", http.StatusConflict, events.RefusedNotApplicable)
	cmd("retry", "", http.StatusOK, events.TypeRolloutResumed)
	cmd("promote", `{"full": true}`, http.StatusOK, events.TypeRolloutResumed)
	a.waitPhase(web, 2, events.PhaseHealthy)
	cmd("promote", "", http.StatusConflict, events.RefusedNotApplicable)
	cmd("undo", "", http.StatusOK, events.TypeRolloutAccepted)
	a.waitPhase(web, 3, events.PhasePaused)
	cmd("delete", "", http.StatusOK, events.TypeRolloutDeleted)
	cmd("abort", "", http.StatusConflict, events.RefusedNotFound)

	// Malformed: 400 with a message, nothing published.
	for _, c := range []struct{ path, body string }{
		{"promote", `{"full": "yes"}`},
		{"promote", `{"ful": true}`},
		{"promote", `{"full": true`},
		{"undo", `{"toRevision": -1}`},
		{"abort", `[1]`},
		{"abort", `{} {}`},
		{"frobnicate", ""},
	} {
		res := a.call("POST", "/api/v1/namespaces/shop/rollouts/web/"+c.path, c.body)
		if res.code != http.StatusBadRequest || res.json["error"] == nil {
			t.Errorf("%s %s: %s, want 400 with an error", c.path, c.body, res)
		}
	}
	for _, path := range []string{"/api/v1/namespaces/Shop/rollouts/web/abort", "/api/v1/namespaces/shop/rollouts/-web/abort"} {
		if res := a.call("POST", path, ""); res.code != http.StatusBadRequest {
			t.Errorf("POST %s: %s, want 400", path, res)
		}
	}
	if res := a.get("/api/v1/namespaces/shop/rollouts/web/abort"); res.code != http.StatusMethodNotAllowed || res.json["error"] == nil {
		t.Errorf("GET of a command: %s, want 405 with an error", res)
	}
}

// A caller without the role gets 403, and the refusal is recorded on the
// rollout's status subject, so that its history shows who tried; read-only
// refuses everyone; without credentials every route but the document is 401.
func TestForbiddenUnauthorizedAndReadOnly(t *testing.T) {
	sys := startSystem(t)
	admin := sys.gateway(auth.RoleAdmin, "user:dev")
	viewer := sys.gateway(auth.RoleViewer, "user:visitor")
	operator := sys.gateway(auth.RoleOperator, "user:op")
	readOnly := sys.gateway(auth.RoleAdmin, "user:root", func(c *Config) { c.Auth.ReadOnly = true })
	nobody := sys.gateway(auth.RoleNone, "")
	web := events.Ref{Namespace: "shop", Name: "web"}
	sys.Request(web, "web:1")
	admin.waitPhase(web, 1, events.PhaseHealthy)

	refused := func(a *api, command, actor string) {
		t.Helper()
		res := a.call("POST", "/api/v1/namespaces/shop/rollouts/web/"+command, "")
		r := decode[CommandResult](t, res)
		if res.code != http.StatusForbidden || r.Outcome != OutcomeRefused || r.Code != events.RefusedForbidden || res.json["error"] == nil {
			t.Fatalf("%s by %s: %s, want 403 Forbidden", command, actor, res)
		}
		poll.Until(t, "the refusal of "+r.ID+" in the history", func() error {
			for _, it := range decode[struct{ Items []HistoryItem }](t, admin.get("/api/v1/namespaces/shop/rollouts/web/history")).Items {
				ev := it.Event
				var d events.StatusData
				if ev.Type() == events.TypeRolloutRefused && events.Extension(ev, events.ExtCausationID) == r.ID {
					if err := events.DecodeData(ev, &d); err != nil || d.Command == nil || d.Command.Code != events.RefusedForbidden ||
						events.Extension(ev, events.ExtActor) != actor || d.Status.Phase != events.PhaseHealthy {
						return fmt.Errorf("refusal %v: %+v", ev, d)
					}
					return nil
				}
			}
			return fmt.Errorf("not recorded")
		})
	}
	refused(viewer, "promote", "user:visitor")
	refused(operator, "delete", "user:op")
	refused(readOnly, "abort", "user:root")
	if who := decode[whoamiBody](t, readOnly.get("/api/v1/whoami")); !who.ReadOnly || who.Roles["*"] != auth.RoleViewer {
		t.Errorf("whoami in read-only mode: %+v", who)
	}
	if res := viewer.get("/api/v1/namespaces/shop/rollouts/web"); res.code != http.StatusOK {
		t.Errorf("a viewer reads: %s", res)
	}

	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/whoami"},
		{"GET", "/api/v1/rollouts"},
		{"GET", "/api/v1/namespaces/shop/rollouts/web"},
		{"GET", "/api/v1/namespaces/shop/rollouts/web/history"},
		{"POST", "/api/v1/namespaces/shop/rollouts/web/promote"},
		{"GET", "/api/v1/stream"},
		{"POST", "/api/v1/events"},
	} {
		if res := nobody.call(c.method, c.path, ""); res.code != http.StatusUnauthorized || res.json["error"] == nil {
			t.Errorf("%s %s without credentials: %s, want 401 with an error", c.method, c.path, res)
		}
	}
	if res := nobody.get("/api/v1/openapi.json"); res.code != http.StatusOK {
		t.Errorf("the API's description without credentials: %s", res)
	}
}

// Each answer is counted by route and code.
func TestRequestsAreCounted(t *testing.T) {
	sys := startSystem(t)
	reg := prometheus.NewRegistry()
	m, err := telemetry.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	a := sys.gateway(auth.RoleViewer, "user:visitor", func(c *Config) { c.Metrics = m })
	a.get("/api/v1/whoami")
	a.get("/api/v1/whoami")
	a.get("/api/v1/namespaces/shop/rollouts/web")
	a.get("/api/v1/nothing")
	want := map[string]float64{
		`GET /api/v1/whoami 200`:                                 2,
		`GET /api/v1/namespaces/{namespace}/rollouts/{name} 404`: 1,
		`other 404`: 1,
	}
	// A count is taken as the handler returns, which may be after the
	// client read a short answer.
	poll.Until(t, "the requests counted", func() error {
		got := map[string]float64{}
		families, err := reg.Gather()
		if err != nil {
			return err
		}
		for _, f := range families {
			if f.GetName() != "sluice_gateway_requests_total" {
				continue
			}
			for _, mm := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range mm.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				got[labels["route"]+" "+labels["code"]] = mm.GetCounter().GetValue()
			}
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("counted %v, want %v", got, want)
		}
		return nil
	})
}

// Without an orchestrator a command is published and unanswered: 504 says
// so, and the list is empty rather than an error.
func TestCommandUnansweredWithoutAnOrchestrator(t *testing.T) {
	srv := eventstest.StartServer(t)
	sys := &system{&systemtest.System{T: t, URL: srv.ClientURL(), Bus: eventstest.Connect(t, srv.ClientURL())}}
	a := sys.gateway(auth.RoleAdmin, "user:dev", func(c *Config) { c.CommandTimeout = 200 * time.Millisecond })
	if res := a.get("/api/v1/rollouts"); res.code != http.StatusOK || string(res.body) != "{\"items\":[]}\n" {
		t.Fatalf("list before any orchestrator ran: %s", res)
	}
	if res := a.get("/api/v1/namespaces/shop/rollouts/web"); res.code != http.StatusNotFound {
		t.Fatalf("get before any orchestrator ran: %s", res)
	}
	res := a.call("POST", "/api/v1/namespaces/shop/rollouts/web/abort", "")
	r := decode[CommandResult](t, res)
	if res.code != http.StatusGatewayTimeout || r.Outcome != OutcomeUnanswered || r.ID == "" || r.Error == "" {
		t.Fatalf("abort with no orchestrator: %s, want 504 unanswered", res)
	}
	if got := sys.commands(events.Ref{Namespace: "shop", Name: "web"})[r.ID]; len(got) != 1 || events.Extension(got[0], events.ExtActor) != "user:dev" {
		t.Fatalf("the abort on the bus: %v", got)
	}
}

// With an auth file, each bearer token may do what its roles allow in each
// namespace, is the actor of what it sends, and sees only the namespaces
// it may read.
func TestBearerTokensWithRolesPerNamespace(t *testing.T) {
	sys := startSystem(t)
	g := sys.gateway(auth.RoleNone, "", func(c *Config) { c.Auth.File = "../../examples/gateway-auth.yaml" })
	// examples/gateway-auth.yaml: ci:github/acme/shop is an operator in
	// shop; every signed-in caller is a viewer everywhere.
	ci, viewer := g.as("sluice-example-ci-token"), g.as("sluice-example-viewer-token")
	shop, other := events.Ref{Namespace: "shop", Name: "web"}, events.Ref{Namespace: "default", Name: "web"}
	sys.Request(shop, "web:1")
	sys.Request(other, "web:1")
	viewer.waitPhase(shop, 1, events.PhaseHealthy)
	viewer.waitPhase(other, 1, events.PhaseHealthy)
	sys.Request(shop, "web:2")
	ci.waitPhase(shop, 2, events.PhasePaused)

	who := decode[whoamiBody](t, ci.get("/api/v1/whoami"))
	if who.Actor != "ci:github/acme/shop" || who.Via != auth.ViaToken || who.Roles["*"] != auth.RoleViewer || who.Roles["shop"] != auth.RoleOperator || len(who.Roles) != 2 {
		t.Errorf("whoami of the CI token: %+v", who)
	}

	// The CI token promotes in shop; the answer names it as the actor.
	res := ci.call("POST", "/api/v1/namespaces/shop/rollouts/web/promote", `{"full": true}`)
	r := decode[CommandResult](t, res)
	if res.code != http.StatusOK || r.Outcome != OutcomeDone || r.Event == nil || events.Extension(*r.Event, events.ExtActor) != "ci:github/acme/shop" {
		t.Fatalf("promote by the CI token in shop: %s", res)
	}
	ci.waitPhase(shop, 2, events.PhaseHealthy)

	// Elsewhere it is a viewer, as is the viewer token everywhere.
	for _, c := range []struct {
		a   *api
		ns  string
		who string
	}{{ci, "default", "ci:github/acme/shop"}, {viewer, "shop", "token:dashboard-viewer"}} {
		res := c.a.call("POST", "/api/v1/namespaces/"+c.ns+"/rollouts/web/restart", "")
		r := decode[CommandResult](t, res)
		if res.code != http.StatusForbidden || r.Code != events.RefusedForbidden || r.Event == nil || events.Extension(*r.Event, events.ExtActor) != c.who {
			t.Errorf("restart by %s in %s: %s, want 403 Forbidden answered to %s", c.who, c.ns, res, c.who)
		}
	}

	// A caller with no role in a namespace learns nothing of it from a
	// refusal: not its status, not whether the rollout exists.
	nobody := sys.gateway(auth.RoleNone, "", func(c *Config) {
		c.Auth.File = writeAuthFile(t, "tokens: [{name: shop-only, hash: \"sha256:"+digest("shop-only-token")+"\"}]\nroles: [{role: operator, subjects: [\"token:shop-only\"], namespaces: [shop]}]\n")
	}).as("shop-only-token")
	for _, name := range []string{"web", "nope"} {
		res := nobody.call("POST", "/api/v1/namespaces/default/rollouts/"+name+"/promote", "")
		r := decode[CommandResult](t, res)
		if res.code != http.StatusForbidden || r.Code != events.RefusedForbidden || r.Status != nil || r.Event != nil {
			t.Errorf("promote of default/%s by a caller with no role there: %s, want 403 with no status", name, res)
		}
	}
	if res := nobody.get("/api/v1/namespaces/default/rollouts/web"); res.code != http.StatusForbidden {
		t.Errorf("a read where the caller has no role: %s, want 403", res)
	}

	// A token the file does not hold is refused, not taken for nobody.
	if res := g.as("not-a-token").get("/api/v1/rollouts"); res.code != http.StatusUnauthorized || res.json["error"] != "invalid token" {
		t.Errorf("an unknown token: %s", res)
	}
}

// writeAuthFile writes an auth file for a test.
func writeAuthFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// digest is the SHA-256 hex digest of token, as the auth file holds it.
func digest(token string) string {
	d := sha256.Sum256([]byte(token))
	return hex.EncodeToString(d[:])
}
