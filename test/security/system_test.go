package security

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/instant"
	"github.com/sluicehq/sluice/services/traffic"
)

// token is the bearer token the analysis sends; it must never be seen on
// the bus or in a log.
const token = "tok-9f3c2a7e51d04b8c"

func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

// nopRouter puts every route "in effect" at once.
type nopRouter struct{}

func (nopRouter) Type() string { return "nop" }

func (nopRouter) Apply(_ context.Context, _ events.Ref, _ int64, route tasks.Route) (int32, error) {
	return route.CanaryWeight, nil
}

// system runs the four real services on url, each as its own NATS user,
// logging to logs. It returns when all are ready.
func startSystem(t *testing.T, url string, logs *logBuffer) { startSystemWith(t, url, logs, 0) }

// startSystemWith starts the services with the orchestrator's
// --partitions set to partitions.
func startSystemWith(t *testing.T, url string, logs *logBuffer, partitions int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 4)
	t.Cleanup(func() {
		cancel()
		for range 4 {
			if err := <-done; err != nil {
				t.Errorf("service: %v", err)
			}
		}
	})
	run := func(name string, svc interface{ Run(context.Context) error }) {
		go func() {
			err := svc.Run(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
			done <- err
		}()
	}

	orch, err := orchestrator.New(connect(t, url, events.IdentityOrchestrator, logs.logger("orchestrator")), orchestrator.Config{Logger: logs.logger("orchestrator"), Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	run("orchestrator", orch)

	reg, err := analyzer.DefaultProviders(analyzer.ProviderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SLUICE_SECRET_WEB_CREDS_TOKEN": token}
	an, err := analyzer.New(connect(t, url, events.IdentityAnalyzer, logs.logger("analyzer")), analyzer.Config{
		Logger: logs.logger("analyzer"), Providers: reg, Getenv: func(k string) string { return env[k] },
	})
	if err != nil {
		t.Fatal(err)
	}
	run("analyzer", an)

	rs, err := replicas.New(connect(t, url, events.IdentityReplicas, logs.logger("replicas")), instant.New(), replicas.Config{Logger: logs.logger("replicas")})
	if err != nil {
		t.Fatal(err)
	}
	run("replicas", rs)

	tr, err := traffic.New(connect(t, url, events.IdentityTraffic, logs.logger("traffic")), nopRouter{}, traffic.Config{Logger: logs.logger("traffic")})
	if err != nil {
		t.Fatal(err)
	}
	run("traffic", tr)

	eventually(t, "every service ready", func() bool {
		return orch.Ready() && an.Ready() && rs.Ready() && tr.Ready()
	})
}

// checkServer answers the analysis only with the right bearer token, and
// echoes the token in its body, as a careless metrics endpoint might.
func checkServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"ratio": 0.01, "note": "authorized with %s"}`, token)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func manifests(t *testing.T, checkURL, image string) string {
	t.Helper()
	doc := fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: check, namespace: prod}
spec:
  args:
  - name: token
    valueFrom: {secretKeyRef: {name: web-creds, key: token}}
  metrics:
  - name: check
    successCondition: result.ratio < 0.05
    provider:
      web:
        url: %s/check
        headers: [{key: Authorization, value: "Bearer {{args.token}}"}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web, namespace: prod}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: %s}]}
  strategy:
    canary:
      steps:
      - setWeight: 50
      - analysis: {templates: [{templateName: check}]}
`, checkURL, image)
	p := filepath.Join(t.TempDir(), "rollout.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEveryServiceRunsWithItsOwnPermissions runs a canary with a
// bearer-token analysis through the four services and the CLI, each as its
// own user with nothing more than assembly.PermissionsOf grants, and then
// checks that the token is in no stored message and no log line.
//
// It runs again with the orchestrator's partitions (--partitions 8): its
// permissions cover the internal stream it sources, the pinned consumers
// of the partitions, and the deletion of the shared consumers.
func TestEveryServiceRunsWithItsOwnPermissions(t *testing.T) {
	t.Parallel()
	for _, partitions := range []int{0, 8} {
		t.Run(fmt.Sprintf("partitions=%d", partitions), func(t *testing.T) { everyServiceWithItsOwnPermissions(t, partitions) })
	}
}

func everyServiceWithItsOwnPermissions(t *testing.T, partitions int) {
	url := startServer(t)
	logs := &logBuffer{}
	startSystemWith(t, url, logs, partitions)
	checkURL := checkServer(t)

	// apply without --wait: `apply --wait` can miss the first status events
	// of a fast rollout (its ordered consumer starts at DeliverNew again on
	// every fetch until it has seen one), so the viewer polls instead.
	for _, image := range []string{"web:1", "web:2"} {
		if code, out := runCLI(t, url, events.IdentityOperator, "apply", "-f", manifests(t, checkURL, image)); code != 0 || !strings.Contains(out, "Rollout prod/web published") {
			t.Fatalf("operator: apply %s: exit %d\n%s", image, code, out)
		}
		rev := strings.TrimPrefix(image, "web:")
		var last string
		defer func() {
			if t.Failed() {
				t.Logf("last get:\n%s", last)
			}
		}()
		eventually(t, "revision "+rev+" stable", func() bool {
			_, last = runCLI(t, url, events.IdentityViewer, "get", "prod/web")
			return strings.Contains(squeeze(last), "Revision: "+rev+" (stable "+rev+")") && strings.Contains(last, "Healthy")
		})
	}

	// The viewer reads what happened; it cannot change it.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "prod/web"}, "Revision: 2 (stable 2)"},
		{[]string{"list", "-n", "prod"}, "Healthy"},
		{[]string{"history", "prod/web"}, "rollout.completed.v1"},
	} {
		args := c.args
		if code, out := runCLI(t, url, events.IdentityViewer, args...); code != 0 || !strings.Contains(squeeze(out), c.want) {
			t.Errorf("viewer: sluice %v: exit %d\n%s", args, code, out)
		}
	}

	admin := connect(t, url, adminUser, logs.logger("test"))
	stored := eventstest.StoredMessages(t, admin)
	measured := 0
	for stream, msgs := range stored {
		for _, m := range msgs {
			if strings.Contains(m, token) {
				t.Errorf("stream %s holds the token: %s", stream, m)
			}
			if stream == events.StreamStatus && strings.Contains(m, events.TypeAnalysisMeasured) {
				measured++
				if !strings.Contains(m, "*****") {
					t.Errorf("a measurement of the echoing endpoint is not redacted: %s", m)
				}
			}
		}
	}
	if measured == 0 {
		t.Errorf("no %s status event: the analysis did not run", events.TypeAnalysisMeasured)
	}
	if len(stored[events.StreamTasks]) == 0 || len(stored[events.StreamResults]) == 0 {
		t.Errorf("no tasks or results stored: %d tasks, %d results", len(stored[events.StreamTasks]), len(stored[events.StreamResults]))
	}
	l := logs.String()
	if strings.Contains(l, token) {
		t.Errorf("the logs hold the token:\n%s", l)
	}
	if strings.Contains(strings.ToLower(l), "permissions violation") {
		t.Errorf("a service was refused something it needs:\n%s", l)
	}
	if !strings.Contains(l, `"service":"analyzer"`) {
		t.Errorf("no analyzer log line was captured: the log check proves nothing")
	}
}
