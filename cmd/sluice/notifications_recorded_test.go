package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/notifier/config/configtest"
	"github.com/sluicehq/sluice/services/notifier/trigger"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// recorded is a Rollout of name running image with strategy.
func recorded(name, image, strategy string) string {
	return configtest.Rollout{
		Name: name, Replicas: 2, Strategy: strategy,
		Containers: "[{name: app, image: " + image + "}]",
	}.YAML()
}

// analysisCanary is a canary strategy whose third step is an analysis
// with TEMPLATE.
const analysisCanary = `    canary:
      steps:
      - setWeight: 25
      - pause: {}
      - analysis: {templates: [{templateName: TEMPLATE}]}
      - setWeight: 75
`

const blueGreen = "    blueGreen: {activeService: bg, previewService: bg-preview, autoPromotionEnabled: false}\n"

// webTemplate is an AnalysisTemplate NAME measuring url once.
const webTemplate = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: NAME}
spec:
  metrics:
  - name: ratio
    consecutiveErrorLimit: 0
    successCondition: result >= 0.9
    provider:
      web: {url: "URL", jsonPath: "{$.ratio}"}
`

// TestArgoCatalogOnRecordedRollouts runs rollouts of every kind on a real
// orchestrator and analyzer, then feeds each one's recorded status events
// to Argo's catalog as the notifier does, and checks the triggers that
// fire and the messages they render.
func TestArgoCatalogOnRecordedRollouts(t *testing.T) {
	url := startSystem(t)
	startAnalyzer(t, url)
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"ratio": %s}`, map[string]string{"/good": "0.99", "/bad": "0.5"}[r.URL.Path])
	}))
	t.Cleanup(metrics.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens: the measurement is an Error

	var docs []string
	for name, u := range map[string]string{"pass": metrics.URL + "/good", "fail": metrics.URL + "/bad", "unreachable": closed.URL + "/x"} {
		docs = append(docs, strings.NewReplacer("NAME", name, "URL", u).Replace(webTemplate))
	}
	if code, out := sluice(t, url, "apply", "-f", writeFile(t, "templates.yaml", strings.Join(docs, "---\n"))); code != exitOK {
		t.Fatalf("apply templates: exit %d\n%s", code, out)
	}
	apply := func(doc string, wait bool) {
		t.Helper()
		args := []string{"apply", "-f", writeFile(t, "rollout.yaml", doc)}
		if wait {
			args = append(args, "--wait", "--timeout", "30s")
		}
		if code, out := sluice(t, url, args...); code != exitOK {
			t.Fatalf("apply: exit %d\n%s", code, out)
		}
	}
	canary := func(name, template, image string) string {
		return recorded(name, image, strings.Replace(analysisCanary, "TEMPLATE", template, 1))
	}
	get := func(name string) func() (int, string) {
		return func() (int, string) { return sluice(t, url, "get", name) }
	}
	// Each rollout's first revision completes at once; the second is the
	// update under test.
	for _, n := range []struct{ name, template string }{{"done", "pass"}, {"stop", "pass"}, {"fail", "fail"}, {"err", "unreachable"}} {
		apply(canary(n.name, n.template, "app:1"), true)
		apply(canary(n.name, n.template, "app:2"), false)
		waitOutput(t, get(n.name), "Paused (CanaryPauseStep)")
	}
	apply(recorded("bg", "app:1", blueGreen), true)
	apply(recorded("bg", "app:2", blueGreen), false)
	waitOutput(t, get("bg"), "Paused")

	for _, name := range []string{"done", "fail", "err", "bg"} {
		if code, out := sluice(t, url, "promote", name); code != exitOK {
			t.Fatalf("promote %s: exit %d\n%s", name, code, out)
		}
	}
	if code, out := sluice(t, url, "abort", "stop"); code != exitOK {
		t.Fatalf("abort: exit %d\n%s", code, out)
	}
	waitOutput(t, get("done"), "Healthy", "Revision: 2 (stable 2)")
	waitOutput(t, get("bg"), "Healthy", "Revision: 2 (stable 2)")
	for _, name := range []string{"stop", "fail", "err"} {
		waitOutput(t, get(name), "Degraded")
	}

	cfg := configtest.Catalog(t)
	client := eventstest.Connect(t, url)
	rd, err := orchestrator.NewReader(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	first := func(name string) []string {
		return []string{
			"on-rollout-updated: Rollout " + name + " has been updated.",
			"on-rollout-completed: Rollout " + name + " has been completed.",
		}
	}
	update := func(name string) []string {
		return append(first(name),
			"on-rollout-updated: Rollout "+name+" has been updated.",
			"on-rollout-step-completed: Rollout "+name+" step number 2/4 has been completed.",
			"on-rollout-paused: Rollout "+name+" has been paused.",
		)
	}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"done", append(update("done"),
			"on-rollout-step-completed: Rollout done step number 3/4 has been completed.",
			"on-analysis-run-running: Rollout done's analysis run is running.",
			"on-rollout-step-completed: Rollout done step number 4/4 has been completed.",
			"on-rollout-step-completed: Rollout done step number 5/4 has been completed.",
			"on-rollout-completed: Rollout done has been completed.",
		)},
		{"stop", append(update("stop"), "on-rollout-aborted: Rollout stop has been aborted.")},
		{"fail", append(update("fail"),
			"on-rollout-step-completed: Rollout fail step number 3/4 has been completed.",
			"on-analysis-run-running: Rollout fail's analysis run is running.",
			"on-analysis-run-failed: Rollout fail's analysis run failed.",
			"on-rollout-aborted: Rollout fail has been aborted.",
		)},
		{"err", append(update("err"),
			"on-rollout-step-completed: Rollout err step number 3/4 has been completed.",
			"on-analysis-run-running: Rollout err's analysis run is running.",
			"on-analysis-run-error: Rollout err's analysis run is in error state.",
			"on-rollout-aborted: Rollout err has been aborted.",
		)},
		{"bg", append(first("bg"),
			"on-rollout-updated: Rollout bg has been updated.",
			"on-rollout-paused: Rollout bg has been paused.",
			"on-rollout-completed: Rollout bg has been completed.",
		)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := events.Ref{Namespace: "default", Name: tc.name}
			h, err := client.History(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var scaled bool
			var prev *events.Snapshot
			for _, e := range h {
				if e.Err != nil || !slices.Contains(events.StatusTypes, e.Event.Type()) {
					continue
				}
				var data events.StatusData
				if err := events.DecodeData(e.Event, &data); err != nil {
					t.Fatal(err)
				}
				m, err := rd.Manifest(context.Background(), r, data.Status.PodHash)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range configtest.Fire(t, cfg, m, e.Event, data, prev) {
					if len(f.Outcomes) != 1 || len(f.Sent) != 1 {
						t.Fatalf("%s: conditions %+v", f.Trigger, f.Outcomes)
					}
					if f.Trigger == trigger.ScalingReplicaSet {
						scaled = true // how often depends on how the workers' reports interleave
						continue
					}
					got = append(got, f.Trigger+": "+f.Sent[0].Message)
				}
				p := data.Status
				prev = &p
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("notifications:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if !scaled {
				t.Error("on-scaling-replica-set never fired")
			}
		})
	}
}
