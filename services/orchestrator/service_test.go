package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/embedded"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

func quiet() *slog.Logger { return eventstest.Quiet() }

func startServer(t *testing.T) *embedded.Server { return eventstest.StartServer(t) }

func connect(t *testing.T, url string) *events.Client { return eventstest.Connect(t, url) }

// orchestratorProc is one running orchestrator replica. svc is there for
// tests that reach into its store or decide on its behalf.
type orchestratorProc struct {
	svc    *Service
	client *events.Client
	cancel context.CancelFunc
	done   chan error
}

func startOrchestrator(t *testing.T, url string, mc machine.Config) *orchestratorProc {
	t.Helper()
	return startOrchestratorWith(t, url, Config{Machine: mc})
}

// startOrchestratorWith starts a replica configured by cfg.
func startOrchestratorWith(t *testing.T, url string, cfg Config) *orchestratorProc {
	t.Helper()
	c := connect(t, url)
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	svc, err := New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &orchestratorProc{svc: svc, client: c, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- svc.Run(ctx) }()
	poll.True(t, "the orchestrator to be ready", func() bool {
		select {
		case err := <-p.done:
			t.Fatalf("orchestrator exited: %v", err)
		default:
		}
		return svc.Ready()
	}, poll.Timeout(20*time.Second))
	t.Cleanup(p.stop)
	return p
}

func (p *orchestratorProc) stop() {
	p.cancel()
	<-p.done
	p.done <- nil // make stop idempotent
}

// kill drops the replica's connection without a graceful stop, as SIGKILL
// would: nothing in flight is acknowledged.
func (p *orchestratorProc) kill() {
	p.client.Conn().Close()
	p.stop()
}

const rolloutYAML = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: NAME
  namespace: NS
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: IMAGE}]}
  strategy:
STRATEGY
`

func manifest(r events.Ref, image, strategy string) []byte {
	y := strings.NewReplacer("NAME", r.Name, "NS", r.Namespace, "IMAGE", image, "STRATEGY", strategy).Replace(rolloutYAML)
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		panic(err)
	}
	return j
}

func send(t *testing.T, c *events.Client, r events.Ref, typ string, data any) events.Event {
	t.Helper()
	ev, err := events.New("/test", typ, r.String(), data)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, events.CommandSubject(r), ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func request(t *testing.T, c *events.Client, r events.Ref, image, strategy string) {
	t.Helper()
	send(t, c, r, events.TypeRolloutRequested, json.RawMessage(manifest(r, image, strategy)))
}

const canaryWithPause = `    canary:
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 60
      - pause: {duration: 1}`

func TestCanaryRolloutRunsToCompletion(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	workers := startFakeWorkers(t, c)
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}

	request(t, c, r, "web:1", canaryWithPause)
	first := status.waitFor(t, r, events.TypeRolloutCompleted)
	if s := first.Data.Status; s.Phase != events.PhaseHealthy || s.Revision != 1 || s.StableRevision != 1 {
		t.Fatalf("first revision: %+v", s)
	}

	request(t, c, r, "web:2", canaryWithPause)
	paused := status.waitFor(t, r, events.TypeRolloutPaused)
	if s := paused.Data.Status; s.Phase != events.PhasePaused || s.CanaryWeight != 20 || s.StepIndex == nil || *s.StepIndex != 1 {
		t.Fatalf("paused at %+v", s)
	}
	send(t, c, r, events.TypeRolloutPromote, events.PromoteData{})
	done := waitForN(t, status, r, events.TypeRolloutCompleted, 2)
	if s := done.Data.Status; s.Phase != events.PhaseHealthy || s.Revision != 2 || s.StableRevision != 2 {
		t.Fatalf("after completion: %+v", s)
	}
	weights := workers.routeWeights(r)
	for _, w := range []int32{20, 60} {
		if !containsWeight(weights, w) {
			t.Errorf("no route task with weight %d: %v", w, weights)
		}
	}
	if types := typesOf(status.of(r)); !containsAll(types, events.TypeRolloutAccepted, events.TypeRolloutStepStarted, events.TypeRolloutStepCompleted, events.TypeRolloutResumed) {
		t.Errorf("status events: %v", types)
	}
}

func TestInvalidRequestIsRejectedWithFieldPaths(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}

	bad := strings.Replace(canaryWithPause, "setWeight: 60", "setWeight: 120", 1)
	request(t, c, r, "web:1", bad)
	rej := status.waitFor(t, r, events.TypeRolloutRejected)
	if len(rej.Data.Errors) != 1 || rej.Data.Errors[0] != "spec.strategy.canary.steps[2].setWeight: Invalid value: 120: must be between 0 and 100" {
		t.Errorf("errors = %q", rej.Data.Errors)
	}

	other := events.Ref{Namespace: "prod", Name: "api"}
	send(t, c, other, events.TypeRolloutRequested, json.RawMessage(manifest(r, "web:1", canaryWithPause)))
	rej = status.waitFor(t, other, events.TypeRolloutRejected)
	if len(rej.Data.Errors) != 1 || !strings.HasPrefix(rej.Data.Errors[0], `metadata.name: Invalid value: "web": must match the rollout of the subject ("api")`) {
		t.Errorf("errors = %q", rej.Data.Errors)
	}
}

func waitForN(t *testing.T, l *statusLog, r events.Ref, typ string, n int) statusEntry {
	t.Helper()
	var nth statusEntry
	poll.Until(t, fmt.Sprintf("%d %s events of %s", n, typ, r), func() error {
		var found []statusEntry
		for _, e := range l.of(r) {
			if e.Type == typ {
				found = append(found, e)
			}
		}
		if len(found) < n {
			return fmt.Errorf("saw %v", typesOf(l.of(r)))
		}
		nth = found[n-1]
		return nil
	})
	return nth
}

func typesOf(es []statusEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Type
	}
	return out
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

func containsWeight(ws []int32, w int32) bool {
	for _, x := range ws {
		if x == w {
			return true
		}
	}
	return false
}
