package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/notifier/sender/webhook"
)

// notificationsYAML is an Argo notifications ConfigMap with one webhook
// service (URL replaced) and two triggers; the rollout subscribes to both
// with annotations.
const notificationsYAML = `apiVersion: v1
kind: ConfigMap
metadata:
  name: argo-rollouts-notification-configmap
data:
  service.webhook.hook: |
    url: URL
    headers:
    - name: Authorization
      value: Bearer $hook-token
  template.step: |
    webhook:
      hook:
        method: POST
        body: 'step {{.sluice.step.index}} of {{.rollout.metadata.name}} ({{.rollout.spec.replicas}} replicas) completed'
  template.done: |
    webhook:
      hook:
        method: POST
        body: '{{.rollout.metadata.name}} completed: {{.rollout.status.phase}}'
  trigger.on-rollout-step-completed: |
    - send: [step]
  trigger.on-rollout-completed: |
    - send: [done]
---
apiVersion: v1
kind: Secret
metadata:
  name: argo-rollouts-notification-secret
stringData:
  hook-token: s3cret-hook-token
`

const subscribedRollout = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: shop
  namespace: prod
  annotations:
    notifications.argoproj.io/subscribe.on-rollout-step-completed.hook: ""
    notifications.argoproj.io/subscribe.on-rollout-completed.hook: ""
spec:
  replicas: 4
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec: {containers: [{name: app, image: IMAGE}]}
  strategy:
    canary:
      steps:
      - setWeight: 25
      - setWeight: 50
`

// receiver is a webhook endpoint that records each delivery once per
// delivery id, and how many requests it got.
type receiver struct {
	mu       sync.Mutex
	bodies   []string
	ids      map[string]int
	requests int
	auth     map[string]bool
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.auth[req.Header.Get("Authorization")] = true
	id := req.Header.Get(webhook.DeliveryHeader)
	if r.ids[id]++; r.ids[id] == 1 {
		r.bodies = append(r.bodies, string(body))
	}
}

func (r *receiver) snapshot() (bodies []string, requests int, auth map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...), r.requests, r.auth
}

func TestARealRolloutNotifiesItsSubscribersInOrderOnce(t *testing.T) {
	sys := systemtest.Start(t)
	rcv := &receiver{ids: map[string]int{}, auth: map[string]bool{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)

	file := filepath.Join(t.TempDir(), "notifications.yaml")
	if err := os.WriteFile(file, []byte(strings.Replace(notificationsYAML, "URL", srv.URL, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs systemtest.Logs
	client := sys.Connect()
	src, err := NewSource(SourceConfig{File: file, Client: client, Getenv: func(string) string { return "" }, Logger: slogTo(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(client, Config{Config: src, Listen: "off", Logger: slogTo(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	systemtest.Run(t, svc)

	ref := events.Ref{Namespace: "prod", Name: "shop"}
	request := func(image string) { requestSubscribed(t, sys, ref, image) }
	// The first revision goes straight to 100%, as in Argo: no steps.
	request("shop:v1")
	poll.True(t, "the first revision's notification", func() bool { got, _, _ := rcv.snapshot(); return len(got) == 1 })
	request("shop:v2")

	want := []string{
		"shop completed: Healthy",
		"step 0 of shop (4 replicas) completed",
		"step 1 of shop (4 replicas) completed",
		"shop completed: Healthy",
	}
	rcv.expect(t, &logs, want, 10*time.Second)
}

// requestSubscribed publishes subscribedRollout with image as ref's
// rollout.requested, as CI does.
func requestSubscribed(t *testing.T, sys *systemtest.System, ref events.Ref, image string) {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(strings.Replace(subscribedRollout, "IMAGE", image, 1)))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.New("/test", events.TypeRolloutRequested, ref.String(), json.RawMessage(j))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	if _, err := sys.Bus.Publish(ctx, events.CommandSubject(ref), ev); err != nil {
		t.Fatal(err)
	}
}

// expect waits (up to timeout) until r received as many notifications as
// want, and checks they are want, in order, each sent once, every one with
// the hook's token from the configuration's Secret, which is not in logs.
func (r *receiver) expect(t *testing.T, logs *systemtest.Logs, want []string, timeout time.Duration) {
	t.Helper()
	err := poll.Wait(fmt.Sprintf("%d notifications", len(want)), func() error {
		if got, _, _ := r.snapshot(); len(got) < len(want) {
			return fmt.Errorf("received %q", got)
		}
		return nil
	}, poll.Timeout(timeout))
	if err != nil {
		t.Fatalf("%v\nlogs:\n%s", err, logs.String())
	}
	bodies, requests, auth := r.snapshot()
	if strings.Join(bodies, "\n") != strings.Join(want, "\n") {
		t.Errorf("received\n%s\nwant\n%s\nlogs:\n%s", strings.Join(bodies, "\n"), strings.Join(want, "\n"), logs.String())
	}
	if requests != len(want) {
		t.Errorf("%d requests for %d notifications; each is sent once", requests, len(want))
	}
	if !auth["Bearer s3cret-hook-token"] || len(auth) != 1 {
		t.Errorf("Authorization headers %v; want the token of the configuration's Secret", auth)
	}
	if strings.Contains(logs.String(), "s3cret-hook-token") {
		t.Error("the hook's token is in the logs")
	}
}

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestABadConfigurationKeepsTheOneInUse: a file that no longer parses is
// logged problem by problem; the notifier stays ready and keeps sending
// with the configuration it had, and takes the next good file.
func TestABadConfigurationKeepsTheOneInUse(t *testing.T) {
	b := newBus(t)
	h := newHook(t)
	file := filepath.Join(t.TempDir(), "notifications.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	// Subscribed in the configuration: there is no rollout to annotate.
	good := strings.Replace(strings.Replace(notificationsYAML, "URL", h.URL, 1), "    - send: [done]\n", "    - send: [done]\n  subscriptions: |\n    - recipients: [\"hook:\"]\n      triggers: [on-rollout-completed]\n", 1)
	write(good)
	var logs systemtest.Logs
	client := eventstest.Connect(t, b.url)
	src, err := NewSource(SourceConfig{File: file, Client: client, Getenv: func(string) string { return "" }, Logger: slogTo(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	src.(*FileSource).Interval = 20 * time.Millisecond
	svc, err := New(client, Config{Config: src, Listen: "off", Logger: slogTo(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	systemtest.Run(t, svc)

	write(strings.Replace(strings.Replace(good, "send: [done]", "send: [missing]", 1), "template.step:", "templat.step:", 1))
	if err := poll.Wait("the problems logged", func() error {
		if !strings.Contains(logs.String(), `no template named \"missing\"`) || !strings.Contains(logs.String(), "templat.step") {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		t.Fatalf("%v; logs:\n%s", err, logs.String())
	}
	if !svc.Ready() {
		t.Error("the notifier is not ready after a bad configuration")
	}
	// Still the configuration in use: a completed rollout is notified.
	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	waitDelivered(t, h, "shop completed: Healthy")
	if strings.Contains(logs.String(), "s3cret-hook-token") {
		t.Error("the hook's token is in the logs")
	}
}

// TestOncePerSendsOncePerValueAndDestination: a condition with oncePer
// sends once per distinct value, even across status events; another
// trigger's notification queued behind shows the repeat was dropped.
func TestOncePerSendsOncePerValueAndDestination(t *testing.T) {
	b := newBus(t)
	h := newHook(t)
	file := filepath.Join(t.TempDir(), "notifications.yaml")
	cfg := `apiVersion: v1
kind: ConfigMap
metadata: {name: argo-rollouts-notification-configmap}
data:
  service.webhook.hook: |
    url: URL
  template.done: |
    webhook:
      hook: {method: POST, body: '{{.rollout.metadata.name}} {{.sluice.event.type}}'}
  trigger.on-rollout-completed: |
    - send: [done]
      oncePer: rollout.metadata.name
  trigger.on-rollout-aborted: |
    - send: [done]
  subscriptions: |
    - recipients: ["hook:"]
      triggers: [on-rollout-completed, on-rollout-aborted]
`
	if err := os.WriteFile(file, []byte(strings.Replace(cfg, "URL", h.URL, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	client := eventstest.Connect(t, b.url)
	src, err := NewSource(SourceConfig{File: file, Client: client, Getenv: func(string) string { return "" }, Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(client, Config{Config: src, Listen: "off", Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	systemtest.Run(t, svc)

	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	b.publishStatus(t, shop, events.TypeRolloutAborted)
	waitDelivered(t, h, "shop "+events.TypeRolloutCompleted, "shop "+events.TypeRolloutAborted)
	if got := h.delivered(); len(got) != 2 {
		t.Errorf("received %q; want the completion once", got)
	}
}
