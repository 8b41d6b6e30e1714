package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/gateway/auth"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/local"
)

const sleeperYAML = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: sleeper, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: sleeper}}
  template:
    metadata: {labels: {app: sleeper}}
    spec: {containers: [{name: app, image: IMAGE, command: [sleep, "600"]}]}
  strategy:
    canary:
      steps:
      - setWeight: 50
      - pause: {}
`

// On the local platform a revision's pods are its processes, read from
// the state directory the replicas service keeps.
func TestDetailShowsTheProcessesOfEachRevision(t *testing.T) {
	state := t.TempDir()
	sys := startSystemWith(t, func(c *events.Client) replicas.Backend {
		b, err := local.New(local.Config{StateDir: state, JetStream: c.JetStream(), StopOnClose: true, DeregisterDelay: -1, Logger: eventstest.Quiet()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
	a := sys.gateway(auth.RoleViewer, "user:visitor", func(c *Config) { c.StateDir = state })
	r := events.Ref{Namespace: "shop", Name: "sleeper"}
	for _, image := range []string{"sleeper:1", "sleeper:2"} {
		j, err := yaml.YAMLToJSON([]byte(strings.Replace(sleeperYAML, "IMAGE", image, 1)))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.New("/test", events.TypeRolloutRequested, r.String(), json.RawMessage(j))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sys.Bus.Publish(t.Context(), events.CommandSubject(r), ev); err != nil {
			t.Fatal(err)
		}
		if image == "sleeper:1" {
			a.waitPhase(r, 1, events.PhaseHealthy)
		}
	}
	a.waitPhase(r, 2, events.PhasePaused)
	poll.Until(t, "the processes of both revisions", func() error {
		res := a.get("/api/v1/namespaces/shop/rollouts/sleeper")
		d := decode[Detail](t, res)
		if len(d.Revisions) == 0 {
			return fmt.Errorf("%s", res)
		}
		var got []string
		for _, rv := range d.Revisions {
			for _, p := range rv.Pods {
				if !strings.HasPrefix(p.Name, rv.PodHash+"-") || p.Image != fmt.Sprintf("sleeper:%d", rv.Revision) || p.StartedAt.IsZero() {
					return fmt.Errorf("revision %d (%s) has pod %+v", rv.Revision, rv.PodHash, p)
				}
			}
			got = append(got, fmt.Sprintf("%s %d", rv.Role, len(rv.Pods)))
		}
		if strings.Join(got, ", ") != "canary 1, stable 1" {
			return fmt.Errorf("pods by revision: %v", got)
		}
		return nil
	})
}
