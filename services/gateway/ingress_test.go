package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// ceClient is the CloudEvents SDK's own HTTP client, pointed at the
// gateway's ingress.
func (a *api) ceClient() cloudevents.Client {
	a.t.Helper()
	c, err := cloudevents.NewClientHTTP(cehttp.WithTarget(a.base + "/api/v1/events"))
	if err != nil {
		a.t.Fatal(err)
	}
	return c
}

// requestEvent is a rollout.requested CloudEvent for r of image that
// claims to come from mallory.
func requestEvent(t *testing.T, id string, r events.Ref, image string) cloudevents.Event {
	t.Helper()
	ev := cloudevents.NewEvent()
	ev.SetID(id)
	ev.SetSource("/ci/github/acme/shop")
	ev.SetType(events.TypeRolloutRequested)
	ev.SetSubject(r.String())
	ev.SetExtension(events.ExtActor, "user:mallory")
	if err := ev.SetData(cloudevents.ApplicationJSON, json.RawMessage(manifest(r, image))); err != nil {
		t.Fatal(err)
	}
	return ev
}

// send sends ev through c and returns the HTTP status code.
func send(t *testing.T, ctx context.Context, c cloudevents.Client, ev cloudevents.Event) int {
	t.Helper()
	res := c.Send(ctx, ev)
	var hr *cehttp.Result
	if !cloudevents.ResultAs(res, &hr) {
		t.Fatalf("send %s: %v", ev.ID(), res)
	}
	return hr.StatusCode
}

// commands returns r's commands on the bus, by id.
func (s *system) commands(r events.Ref) map[string][]events.Event {
	s.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	hist, err := s.Bus.History(ctx, r)
	if err != nil {
		s.T.Fatal(err)
	}
	out := map[string][]events.Event{}
	for _, e := range hist {
		if e.Stream == events.StreamCommands && e.Err == nil {
			out[e.Event.ID()] = append(out[e.Event.ID()], e.Event)
		}
	}
	return out
}

// CloudEvents in binary and structured mode from the SDK's own client are
// published as they came, with the caller as actor; the same id twice acts
// once.
func TestCloudEventsIngress(t *testing.T) {
	sys := startSystem(t)
	a := sys.gateway(auth.RoleOperator, "ci:github/acme/shop")
	c := a.ceClient()
	web := events.Ref{Namespace: "shop", Name: "web"}
	ctx := context.Background()

	if code := send(t, ctx, c, requestEvent(t, "binary-1", web, "web:1")); code != http.StatusAccepted {
		t.Fatalf("binary: %d, want 202", code)
	}
	a.waitPhase(web, 1, events.PhaseHealthy)
	structured := cloudevents.WithEncodingStructured(ctx)
	for range 2 {
		if code := send(t, structured, c, requestEvent(t, "structured-2", web, "web:2")); code != http.StatusAccepted {
			t.Fatalf("structured: %d, want 202", code)
		}
	}
	a.waitPhase(web, 2, events.PhasePaused)
	promote := cloudevents.NewEvent()
	promote.SetID("promote-1")
	promote.SetSource("/ci/github/acme/shop")
	promote.SetType(events.TypeRolloutPromote)
	promote.SetSubject(web.String())
	if err := promote.SetData(cloudevents.ApplicationJSON, events.PromoteData{Full: true}); err != nil {
		t.Fatal(err)
	}
	if code := send(t, ctx, c, promote); code != http.StatusAccepted {
		t.Fatalf("promote: %d", code)
	}
	a.waitPhase(web, 2, events.PhaseHealthy)

	cmds := sys.commands(web)
	for _, id := range []string{"binary-1", "structured-2", "promote-1"} {
		evs := cmds[id]
		if len(evs) != 1 {
			t.Fatalf("%d commands with id %s on the bus, want 1", len(evs), id)
		}
		if actor := events.Extension(evs[0], events.ExtActor); actor != "ci:github/acme/shop" {
			t.Errorf("%s has actor %q, want the caller", id, actor)
		}
		if evs[0].Source() != "/ci/github/acme/shop" {
			t.Errorf("%s has source %q", id, evs[0].Source())
		}
	}
	if d := a.waitPhase(web, 2, events.PhaseHealthy); len(d.Revisions) != 2 {
		t.Fatalf("revisions %+v: the request sent twice made another", d.Revisions)
	}
}

// post sends a binary-mode CloudEvent by hand, to read the answer's body.
func (a *api) post(query string, header map[string]string, body string) response {
	a.t.Helper()
	return a.do(a.postRequest(query, header, body))
}

func (a *api) postRequest(query string, header map[string]string, body string) *http.Request {
	a.t.Helper()
	req, err := http.NewRequest("POST", a.base+"/api/v1/events"+query, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req
}

// postAsync posts from another goroutine; the answer comes on the channel
// (a failed request as code 0 and its error as the body).
func (a *api) postAsync(query string, header map[string]string, body string) chan response {
	a.t.Helper()
	req := a.postRequest(query, header, body)
	ch := make(chan response, 1)
	go func() {
		res, err := a.send(req)
		if err != nil {
			res = response{body: []byte(err.Error())}
		}
		ch <- res
	}()
	return ch
}

func binaryHeaders(id, typ, subject string) map[string]string {
	return map[string]string{"ce-specversion": "1.0", "ce-id": id, "ce-source": "/ci", "ce-type": typ, "ce-subject": subject, "Content-Type": "application/json"}
}

// What is not a command, not valid or not allowed is refused with the
// reason, and nothing reaches the bus.
func TestCloudEventsIngressRefuses(t *testing.T) {
	sys := startSystem(t)
	a := sys.gateway(auth.RoleOperator, "ci:deploy")
	viewer := sys.gateway(auth.RoleViewer, "user:visitor")
	web := events.Ref{Namespace: "shop", Name: "web"}
	invalid := strings.Replace(string(manifest(web, "web:1")), `"replicas":2`, `"replicas":-1`, 1)

	res := a.post("", binaryHeaders("bad-1", events.TypeRolloutRequested, "shop/web"), invalid)
	if res.code != http.StatusBadRequest || !slices.ContainsFunc(toStrings(res.json["errors"]), func(e string) bool { return strings.HasPrefix(e, "spec.replicas") }) {
		t.Fatalf("an invalid rollout: %s, want 400 with spec.replicas", res)
	}
	res = a.post("", binaryHeaders("bad-2", events.TypeRolloutRequested, "shop/other"), string(manifest(web, "web:1")))
	if res.code != http.StatusBadRequest || !slices.ContainsFunc(toStrings(res.json["errors"]), func(e string) bool { return strings.HasPrefix(e, "metadata.name") }) {
		t.Fatalf("a rollout under another name: %s, want 400 with metadata.name", res)
	}
	// A template the analyzer would dead-letter is refused here, with the
	// same field paths; a valid one is taken.
	rate := events.Ref{Namespace: "shop", Name: "rate"}
	template := `{"apiVersion":"argoproj.io/v1alpha1","kind":"AnalysisTemplate","metadata":{"name":"rate","namespace":"shop"},
		"spec":{"metrics":[{"name":"m","interval":"5s","successCondition":"result[0] >= 0.95","provider":{"prometheus":{"address":"http://prom:9090","query":"up"}}}]}}`
	res = a.post("", binaryHeaders("tmpl-bad", events.TypeAnalysisTemplateApply, rate.String()), strings.Replace(template, `"prometheus"`, `"kayenta"`, 1))
	if res.code != http.StatusBadRequest || !slices.ContainsFunc(toStrings(res.json["errors"]), func(e string) bool { return strings.HasPrefix(e, "spec.metrics[0].provider") }) {
		t.Errorf("a template with an unknown provider: %s, want 400 with spec.metrics[0].provider", res)
	}
	if res := a.post("", binaryHeaders("tmpl-good", events.TypeAnalysisTemplateApply, rate.String()), template); res.code != http.StatusAccepted {
		t.Errorf("a valid template: %s, want 202", res)
	}
	if ids := sys.commands(rate); len(ids) != 1 || ids["tmpl-good"] == nil {
		t.Errorf("templates on the bus: %v, want only tmpl-good", ids)
	}

	for name, c := range map[string]struct {
		header map[string]string
		body   string
		want   int
	}{
		"not a CloudEvent":                  {map[string]string{"Content-Type": "application/json"}, `{}`, http.StatusBadRequest},
		"not a command":                     {binaryHeaders("x-1", events.TypeRolloutPaused, "shop/web"), `{}`, http.StatusBadRequest},
		"no subject":                        {binaryHeaders("x-2", events.TypeRolloutAbort, ""), ``, http.StatusBadRequest},
		"a bad subject":                     {binaryHeaders("x-3", events.TypeRolloutAbort, "shop/Web"), ``, http.StatusBadRequest},
		"a wait on an abort":                {binaryHeaders("x-4", events.TypeRolloutAbort, "shop/web"), ``, http.StatusBadRequest},
		"a delete by an operator":           {binaryHeaders("x-5", events.TypeRolloutDelete, "shop/web"), ``, http.StatusForbidden},
		"a cluster template by an operator": {binaryHeaders("x-6", events.TypeAnalysisTemplateApply, "cluster/rate"), `{}`, http.StatusForbidden},
	} {
		query := ""
		if name == "a wait on an abort" {
			query = "?wait=completed"
		}
		if res := a.post(query, c.header, c.body); res.code != c.want || res.json["error"] == nil {
			t.Errorf("%s: %s, want %d with an error", name, res, c.want)
		}
	}
	if res := viewer.post("", binaryHeaders("v-1", events.TypeRolloutRequested, "shop/web"), string(manifest(web, "web:1"))); res.code != http.StatusForbidden {
		t.Errorf("a request by a viewer: %s, want 403", res)
	}
	// A valid one goes through, and it is the only one on the bus.
	if res := a.post("", binaryHeaders("good-1", events.TypeRolloutRequested, "shop/web"), string(manifest(web, "web:1"))); res.code != http.StatusAccepted || res.json["id"] != "good-1" {
		t.Fatalf("a valid request: %s, want 202 with its id", res)
	}
	a.waitPhase(web, 1, events.PhaseHealthy)
	var got []string
	for id := range sys.commands(web) {
		got = append(got, id)
	}
	if !slices.Equal(got, []string{"good-1"}) {
		t.Fatalf("commands on the bus: %v, want only good-1", got)
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// ?wait=completed holds the answer until the update completes (200),
// fails (409: aborted) or the timeout passes (504).
func TestCloudEventsWaitCompleted(t *testing.T) {
	sys := startSystem(t)
	a := sys.gateway(auth.RoleOperator, "ci:deploy")
	sys.leavesNoConsumer()
	web := events.Ref{Namespace: "shop", Name: "web"}
	structured := func(id, image string) string {
		ev := requestEvent(t, id, web, image)
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ce := map[string]string{"Content-Type": "application/cloudevents+json"}

	res := a.post("?wait=completed&timeout=1m", ce, structured("req-1", "web:1"))
	if res.code != http.StatusOK || res.json["outcome"] != "completed" {
		t.Fatalf("revision 1: %s, want 200 completed", res)
	}

	// Revision 2 pauses until promoted: the answer waits for the promote.
	answer := func(id, image string) chan response {
		return a.postAsync("?wait=completed&timeout=1m", ce, structured(id, image))
	}
	done := answer("req-2", "web:2")
	a.waitPhase(web, 2, events.PhasePaused)
	if res := a.call("POST", "/api/v1/namespaces/shop/rollouts/web/promote", `{"full":true}`); res.code != http.StatusOK {
		t.Fatal(res)
	}
	if res := <-done; res.code != http.StatusOK || res.json["outcome"] != "completed" || res.json["id"] != "req-2" {
		t.Fatalf("revision 2: %s, want 200 completed", res)
	}

	// Revision 3 is aborted.
	failed := answer("req-3", "web:3")
	a.waitPhase(web, 3, events.PhasePaused)
	if res := a.call("POST", "/api/v1/namespaces/shop/rollouts/web/abort", ""); res.code != http.StatusOK {
		t.Fatal(res)
	}
	if res := <-failed; res.code != http.StatusConflict || res.json["outcome"] != "failed" || !strings.HasPrefix(fmt.Sprint(res.json["error"]), "aborted") {
		t.Fatalf("revision 3: %s, want 409 aborted", res)
	}

	// Revision 4 pauses for good: the wait times out.
	res = a.post("?wait=completed&timeout=200ms", ce, structured("req-4", "web:4"))
	if res.code != http.StatusGatewayTimeout || res.json["outcome"] != "timeout" {
		t.Fatalf("revision 4: %s, want 504", res)
	}
	poll.True(t, "revision 4 accepted", func() bool { return len(sys.commands(web)["req-4"]) == 1 })
}

// A gateway that stops while a CI step waits answers 503, so that the step
// fails rather than reading an empty answer as success.
func TestWaitCutShortByAStoppingGateway(t *testing.T) {
	sys := startSystem(t)
	g, err := New(eventstest.Connect(t, sys.URL), Config{
		Listen: "127.0.0.1:0",
		Auth:   auth.Config{Anonymous: auth.RoleOperator, AnonymousActor: "ci:deploy", RatePerSecond: 10000, Burst: 10000},
		Logger: eventstest.Quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- g.Run(ctx) }()
	t.Cleanup(stop)
	poll.True(t, "gateway ready", g.Ready)
	a := &api{t: t, base: "http://" + g.Addr().String()}
	web := events.Ref{Namespace: "shop", Name: "web"}
	sys.Request(web, "web:1")
	a.waitPhase(web, 1, events.PhaseHealthy)

	done := a.postAsync("?wait=completed", binaryHeaders("req-2", events.TypeRolloutRequested, "shop/web"), string(manifest(web, "web:2")))
	a.waitPhase(web, 2, events.PhasePaused)
	stop()
	if res := <-done; res.code != http.StatusServiceUnavailable || res.json["outcome"] != "unanswered" {
		t.Fatalf("a wait cut short: %s, want 503 unanswered", res)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("the gateway stopped with %v", err)
	}
}

// A CI job may post the manifest file it has, as YAML: the bus carries the
// JSON the contract specifies, and the rollout runs as if it came as JSON.
func TestCloudEventsIngressTakesYAMLManifests(t *testing.T) {
	sys := startSystem(t)
	a := sys.gateway(auth.RoleOperator, "ci:github/acme/shop")
	web := events.Ref{Namespace: "shop", Name: "web"}
	y := strings.NewReplacer("NAME", web.Name, "NS", web.Namespace, "IMAGE", "web:1").Replace(systemtest.RolloutYAML)
	h := binaryHeaders("yaml-1", events.TypeRolloutRequested, web.String())
	h["Content-Type"] = "application/yaml"
	if res := a.post("", h, y); res.code != http.StatusAccepted {
		t.Fatalf("a YAML manifest: %s, want 202", res)
	}
	a.waitPhase(web, 1, events.PhaseHealthy)
	evs := sys.commands(web)["yaml-1"]
	if len(evs) != 1 || evs[0].DataContentType() != "application/json" || !json.Valid(evs[0].Data()) {
		t.Fatalf("on the bus: %v, want one event with JSON data", evs)
	}

	for name, c := range map[string]struct{ typ, body, want string }{
		"YAML for a command that is not a manifest": {events.TypeRolloutPromote, "full: true\n", "YAML is taken only for a manifest"},
		"not YAML": {events.TypeRolloutRequested, "kind: [Rollout\n", "not one YAML document"},
	} {
		h := binaryHeaders("yaml-bad", c.typ, web.String())
		h["Content-Type"] = "text/yaml; charset=utf-8"
		res := a.post("", h, c.body)
		if msg, _ := res.json["error"].(string); res.code != http.StatusBadRequest || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %s, want 400 saying %q", name, res, c.want)
		}
	}
}
