package security

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// TestNotifierDoesWhatItNeedsAndNothingMore: the notifier identity runs
// the real notifier: it consumes status events, queues and delivers
// notifications (a webhook), dead-letters one its service refuses, keeps
// its state and publishes a chat command and its refusal, without a
// single permissions violation. It may not publish another service's
// task or a result, nor write the rollouts bucket.
func TestNotifierDoesWhatItNeedsAndNothingMore(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	admin := connect(t, url, adminUser, (&logBuffer{}).logger("admin"))
	bus := events.BusConfig{}
	if err := admin.Provision(ctx, bus, bus.Bucket(orchestrator.BucketRollouts, "test", 1)); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(body))
		mu.Unlock()
		if strings.Contains(string(body), "aborted") {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer hook.Close()
	file := filepath.Join(t.TempDir(), "notifications.yaml")
	conf := `apiVersion: v1
kind: ConfigMap
metadata: {name: argo-rollouts-notification-configmap}
data:
  service.webhook.hook: |
    url: ` + hook.URL + `
  template.said: |
    webhook:
      hook: {method: POST, body: '{{.rollout.metadata.name}} {{.sluice.event.type}}'}
  trigger.on-rollout-completed: |
    - send: [said]
  trigger.on-rollout-aborted: |
    - send: [said]
  subscriptions: |
    - recipients: ["hook:"]
      triggers: [on-rollout-completed, on-rollout-aborted]
`
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	logs := &logBuffer{}
	nc := connect(t, url, events.IdentityNotifier, logs.logger("notifier"))
	src, err := notifier.NewSource(notifier.SourceConfig{File: file, Client: nc, Logger: logs.logger("notifier")})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := notifier.New(nc, notifier.Config{Config: src, Listen: "off", Logger: logs.logger("notifier")})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("notifier under its own identity: %v", err)
		}
	}()
	eventually(t, "the notifier ready", svc.Ready)

	if err := publish(t, admin, events.StatusSubject(prodWeb), events.TypeRolloutCompleted); err != nil {
		t.Fatal(err)
	}
	if err := publish(t, admin, events.StatusSubject(prodWeb), events.TypeRolloutAborted); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both notifications sent, the refused one dead-lettered", func() bool {
		return subjectCount(t, admin, events.StreamDeadLetter, events.DeadLetterSubject(events.StreamTasks, notifier.DurableDelivery)) == 1
	})
	mu.Lock()
	if len(got) != 2 || got[0] != "web "+events.TypeRolloutCompleted {
		t.Errorf("the hook received %q", got)
	}
	mu.Unlock()
	if err := publish(t, nc, events.CommandSubject(prodWeb), events.TypeRolloutPromote); err != nil {
		t.Errorf("notifier publishes a chat command: %v", err)
	}
	if err := publish(t, nc, events.StatusSubject(prodWeb), events.TypeRolloutRefused); err != nil {
		t.Errorf("notifier publishes a refusal: %v", err)
	}
	if l := logs.String(); strings.Contains(strings.ToLower(l), "permissions violation") {
		t.Fatalf("the notifier was refused something it needs:\n%s", l)
	}

	// Nothing more.
	refusesEach(t, "notifier", nc, admin, logs, []forbiddenPublish{
		{"a replicas task", events.StreamTasks, events.TaskSubject(tasks.ServiceReplicas, prodWeb), tasks.TypeTriggered},
		{"an analyzer task", events.StreamTasks, events.TaskSubject(tasks.ServiceAnalyzer, prodWeb), tasks.TypeTriggered},
		{"a replicas report", events.StreamResults, events.ResultSubject(tasks.ServiceReplicas, prodWeb), tasks.TypeFinished},
	})
	kv, err := nc.JetStream().KeyValue(ctx, orchestrator.BucketRollouts)
	if err != nil {
		t.Fatalf("notifier opens %s: %v", orchestrator.BucketRollouts, err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	defer pcancel()
	if _, err := kv.Put(pctx, "prod.web", []byte(`{}`)); err == nil || !refused(t, logs, "$KV."+orchestrator.BucketRollouts+".prod.web") {
		t.Errorf("the notifier wrote %s", orchestrator.BucketRollouts)
	}
}
