package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

const analysedYAML = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: IMAGE}]}
  strategy:
    canary:
      steps:
      - setWeight: 20
      - analysis: {templates: [{templateName: check}]}
`

// A rollout's analysis runs show each metric with its conditions and every
// measurement; the template and the rollout come in over CloudEvents.
func TestDetailShowsAnalysisRunsWithEveryMeasurement(t *testing.T) {
	check := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"ratio": 0.01}`)
	}))
	t.Cleanup(check.Close)
	sys := startSystem(t)
	an, err := analyzer.New(eventstest.Connect(t, sys.URL), analyzer.Config{Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	run(t, an)
	a := sys.gateway(auth.RoleOperator, "ci:deploy")
	web := events.Ref{Namespace: "shop", Name: "web"}

	template, err := yaml.YAMLToJSON([]byte(fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: check, namespace: shop}
spec:
  metrics:
  - name: errors
    count: 2
    interval: 1s
    successCondition: result.ratio < 0.05
    failureCondition: result.ratio > 0.2
    provider:
      web: {url: %s/check}
`, check.URL)))
	if err != nil {
		t.Fatal(err)
	}
	if res := a.post("", binaryHeaders("template-1", events.TypeAnalysisTemplateApply, "shop/check"), string(template)); res.code != http.StatusAccepted {
		t.Fatalf("template: %s", res)
	}
	for i, image := range []string{"web:1", "web:2"} {
		rollout, err := yaml.YAMLToJSON([]byte(strings.Replace(analysedYAML, "IMAGE", image, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if res := a.post("?wait=completed&timeout=1m", binaryHeaders(fmt.Sprint("req-", i), events.TypeRolloutRequested, "shop/web"), string(rollout)); res.code != http.StatusOK {
			t.Fatalf("%s: %s", image, res)
		}
	}

	d := a.waitPhase(web, 2, events.PhaseHealthy)
	if len(d.AnalysisRuns) != 1 {
		t.Fatalf("analysis runs %+v, want the one of revision 2", d.AnalysisRuns)
	}
	r := d.AnalysisRuns[0]
	if r.Phase != "Successful" || r.StartedAt == nil || len(r.Metrics) != 1 {
		t.Fatalf("run %+v", r)
	}
	m := r.Metrics[0]
	if m.Name != "errors" || m.SuccessCondition != "result.ratio < 0.05" || m.FailureCondition != "result.ratio > 0.2" || len(m.Measurements) != 2 {
		t.Fatalf("metric %+v, want errors with its conditions and 2 measurements", m)
	}
	for _, ms := range m.Measurements {
		if ms.Phase != "Successful" || !strings.Contains(ms.Value, "0.01") {
			t.Errorf("measurement %+v", ms)
		}
	}
}
