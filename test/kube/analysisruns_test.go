package kube_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

// startAnalyzer runs an analyzer on the stack's bus.
func (s *stack) startAnalyzer(t *testing.T) {
	t.Helper()
	an, err := analyzer.New(eventstest.Connect(t, s.bus.Conn().ConnectedUrl()), analyzer.Config{Logger: eventstest.Quiet()})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := an.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("analyzer stopped: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "analyzer ready", func() error {
		if !an.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
}

// template creates an AnalysisTemplate in the stack's namespace.
func (s *stack) template(t *testing.T, manifest string) {
	t.Helper()
	var u unstructured.Unstructured
	must(t, yaml.Unmarshal([]byte(manifest), &u.Object))
	_, err := s.cp.Dynamic.Resource(crd.AnalysisTemplateResource).Namespace(s.ns).Create(context.Background(), &u, metav1.CreateOptions{})
	must(t, err)
}

// analysisRun reads an AnalysisRun object of the stack's namespace.
func (s *stack) analysisRun(name string) (*unstructured.Unstructured, error) {
	return s.cp.Dynamic.Resource(crd.AnalysisRunResource).Namespace(s.ns).Get(context.Background(), name, metav1.GetOptions{})
}

// firstResult is the AnalysisRun's first metric result (nil: none).
func firstResult(u *unstructured.Unstructured) map[string]any {
	results, _, _ := unstructured.NestedSlice(u.Object, "status", "metricResults")
	if len(results) == 0 {
		return nil
	}
	r, _ := results[0].(map[string]any)
	return r
}

// measurementsOf are the measurements of the AnalysisRun's first metric.
func measurementsOf(u *unstructured.Unstructured) []any {
	ms, _, _ := unstructured.NestedSlice(firstResult(u), "measurements")
	return ms
}

// measured lists the analysis.measured events the bus holds for run.
func (s *stack) measured(t *testing.T, rollout, run string) []events.Event {
	t.Helper()
	hist, err := s.bus.History(context.Background(), events.Ref{Namespace: s.ns, Name: rollout})
	must(t, err)
	var out []events.Event
	for _, h := range hist {
		if h.Event.Type() != events.TypeAnalysisMeasured {
			continue
		}
		var data events.StatusData
		must(t, events.DecodeData(h.Event, &data))
		if data.Analysis != nil && data.Analysis.Name == run {
			out = append(out, h.Event)
		}
	}
	return out
}

// TestAnalysisRunObjects runs a canary with background analysis and a
// step analysis measured over HTTP (the web provider against httptest) and
// checks the AnalysisRun objects a user of Argo's tools reads: named as
// Argo names them, owned by the Rollout, labelled by type and step, with
// the measurements the bus reported, never duplicated on redelivery;
// spec.terminate ends a live run as Argo does and the rollout proceeds;
// an object deleted by hand while its run is live comes back; the history
// limit prunes the finished ones.
func TestAnalysisRunObjects(t *testing.T) {
	t.Parallel()
	metric := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"ok": true}`)
	}))
	t.Cleanup(metric.Close)
	s := start(t)
	s.startAnalyzer(t)
	s.template(t, fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: ok
spec:
  args:
  - name: hash
  metrics:
  - name: ok
    interval: 1s
    successCondition: result == true
    provider:
      web:
        url: %s/?hash={{args.hash}}
        jsonPath: "{$.ok}"
`, metric.URL))
	s.template(t, fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: long
spec:
  metrics:
  - name: long
    interval: 1s
    count: 1000
    successCondition: result == true
    provider:
      web:
        url: %s/long
        jsonPath: "{$.ok}"
`, metric.URL))
	s.apply(t, rollout("web", "v1", 1, `    canary:
      analysis:
        templates: [{templateName: ok}]
        args:
        - name: hash
          valueFrom: {podTemplateHashValue: Latest}
      steps:
      - setWeight: 50
      - analysis:
          templates: [{templateName: long}]
      - pause: {}
`))
	// The history limit of successful runs is one.
	_, err := s.cp.Dynamic.Resource(crd.RolloutResource).Namespace(s.ns).Patch(context.Background(), "web", types.MergePatchType,
		[]byte(`{"spec":{"analysis":{"successfulRunHistoryLimit":1}}}`), metav1.PatchOptions{FieldManager: "test"})
	must(t, err)
	s.waitPhase(t, "web", "Healthy", -1)
	ro, err := s.get(t, "argoproj.io/v1alpha1", "Rollout", "web")
	must(t, err)
	s.setImage(t, "web", "web:v2")
	var hash string
	eventually(t, "revision 2 at its analysis step", func() error {
		st := s.rolloutStatus(t, "web")
		hash, _ = st["currentPodHash"].(string)
		if st["currentStepIndex"] != int64(1) {
			return fmt.Errorf("step %v phase %v", st["currentStepIndex"], st["phase"])
		}
		return nil
	})
	background, step := "web-"+hash+"-2", "web-"+hash+"-2-1"

	// Both runs are objects owned by the Rollout, labelled as Argo labels
	// them, measuring.
	for _, c := range []struct{ name, typ, index string }{{background, "Background", ""}, {step, "Step", "1"}} {
		eventually(t, "AnalysisRun "+c.name+" with a measurement", func() error {
			u, err := s.analysisRun(c.name)
			if err != nil {
				return err
			}
			if len(measurementsOf(u)) == 0 {
				return fmt.Errorf("no measurement yet: status %v", u.Object["status"])
			}
			return nil
		})
		u, err := s.analysisRun(c.name)
		must(t, err)
		owner := metav1.GetControllerOf(u)
		if owner == nil || owner.Kind != "Rollout" || owner.UID != ro.GetUID() {
			t.Errorf("%s: controller %+v, want the Rollout %s", c.name, owner, ro.GetUID())
		}
		l := u.GetLabels()
		if l["rollouts-pod-template-hash"] != hash || l["rollout-type"] != c.typ || l["step-index"] != c.index || l["app"] != "web" {
			t.Errorf("%s: labels %v", c.name, l)
		}
		if rev := u.GetAnnotations()["rollout.argoproj.io/revision"]; rev != "2" {
			t.Errorf("%s: revision annotation %q, want 2", c.name, rev)
		}
		if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase != "Running" {
			t.Errorf("%s: phase %q, want Running", c.name, phase)
		}
		if metrics, _, _ := unstructured.NestedSlice(u.Object, "spec", "metrics"); len(metrics) != 1 {
			t.Errorf("%s: spec.metrics %v", c.name, metrics)
		}
	}
	u, err := s.analysisRun(background)
	must(t, err)
	args, _, _ := unstructured.NestedSlice(u.Object, "spec", "args")
	if want := []any{map[string]any{"name": "hash", "value": hash}}; fmt.Sprint(args) != fmt.Sprint(want) {
		t.Errorf("background spec.args %v, want %v", args, want)
	}

	// A hand edit of a live run's spec is undone by the next write; the
	// object deleted by hand comes back with its measurements.
	_, err = s.cp.Dynamic.Resource(crd.AnalysisRunResource).Namespace(s.ns).Patch(context.Background(), background, types.JSONPatchType,
		[]byte(`[{"op":"replace","path":"/spec/metrics/0/successCondition","value":"false"}]`), metav1.PatchOptions{FieldManager: "test"})
	must(t, err)
	eventually(t, "the hand edit undone", func() error {
		u, err := s.analysisRun(background)
		if err != nil {
			return err
		}
		if c, _, _ := unstructured.NestedString(u.Object, "spec", "metrics", "0", "successCondition"); c == "false" {
			return fmt.Errorf("successCondition still edited")
		}
		metrics, _, _ := unstructured.NestedSlice(u.Object, "spec", "metrics")
		if c := metrics[0].(map[string]any)["successCondition"]; c != "result == true" {
			return fmt.Errorf("successCondition %v", c)
		}
		return nil
	})
	old, err := s.analysisRun(step)
	must(t, err)
	must(t, s.cp.Dynamic.Resource(crd.AnalysisRunResource).Namespace(s.ns).Delete(context.Background(), step, metav1.DeleteOptions{}))
	eventually(t, "the deleted AnalysisRun written again", func() error {
		u, err := s.analysisRun(step)
		if err != nil {
			return err
		}
		if u.GetUID() == old.GetUID() {
			return fmt.Errorf("still the old object")
		}
		if n, was := len(measurementsOf(u)), len(measurementsOf(old)); n < was {
			return fmt.Errorf("%d measurements, had %d", n, was)
		}
		return nil
	})

	// kubectl argo rollouts terminate analysisrun: spec.terminate. The
	// step run ends Successful, "Run Terminated", and the rollout goes on
	// to its pause.
	_, err = s.cp.Dynamic.Resource(crd.AnalysisRunResource).Namespace(s.ns).Patch(context.Background(), step, types.MergePatchType,
		[]byte(`{"spec":{"terminate":true}}`), metav1.PatchOptions{FieldManager: "kubectl-argo-rollouts"})
	must(t, err)
	eventually(t, "the step run terminated", func() error {
		u, err := s.analysisRun(step)
		if err != nil {
			return err
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		msg, _, _ := unstructured.NestedString(u.Object, "status", "message")
		if phase != "Successful" || msg != "Run Terminated" {
			return fmt.Errorf("phase %q message %q", phase, msg)
		}
		if done, _, _ := unstructured.NestedString(u.Object, "status", "completedAt"); done == "" {
			return fmt.Errorf("no completedAt")
		}
		return nil
	})
	s.waitPhase(t, "web", "Paused", 2)

	// The step run's object holds the measurements the bus reported, and
	// reporting them all again changes nothing once the mirror has
	// consumed the copies.
	reported := s.measured(t, "web", step)
	var want []any
	for _, ev := range reported {
		var data events.StatusData
		must(t, events.DecodeData(ev, &data))
		want = append(want, data.Measurement.StartedAt.UTC().Format(time.RFC3339))
	}
	if len(want) > 10 { // the measurements Argo keeps by default
		want = want[len(want)-10:]
	}
	check := func() error {
		u, err := s.analysisRun(step)
		if err != nil {
			return err
		}
		var got []any
		for _, m := range measurementsOf(u) {
			got = append(got, m.(map[string]any)["startedAt"])
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("measurements started at %v, the bus reported %v", got, want)
		}
		if count, _, _ := unstructured.NestedInt64(firstResult(u), "count"); int(count) != len(reported) {
			return fmt.Errorf("count %d, the bus reported %d measurements", count, len(reported))
		}
		return nil
	}
	eventually(t, "the step run's object holding what the bus reported", check)
	for _, ev := range reported {
		again := ev.Clone()
		again.SetID(ev.ID() + "-again")
		_, err := s.bus.Publish(context.Background(), events.StatusSubject(events.Ref{Namespace: s.ns, Name: "web"}), again)
		must(t, err)
	}
	eventually(t, "the mirror consumed every status event", func() error {
		cons, err := s.bus.JetStream().Consumer(context.Background(), events.StreamStatus, crd.AnalysisRunsDurable)
		if err != nil {
			return err
		}
		info, err := cons.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Errorf("%d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	if err := check(); err != nil {
		t.Errorf("after the redelivery: %v", err)
	}

	// Promoted: the background run ends, and of the two Successful runs
	// the history limit keeps one.
	s.command(t, "web", events.TypeRolloutPromote, nil)
	s.waitPhase(t, "web", "Healthy", -1)
	eventually(t, "one finished AnalysisRun kept", func() error {
		list, err := s.cp.Dynamic.Resource(crd.AnalysisRunResource).Namespace(s.ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		var names []string
		for _, u := range list.Items {
			phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
			names = append(names, u.GetName()+":"+phase)
		}
		if len(names) != 1 || names[0] != background+":Successful" && names[0] != step+":Successful" {
			return fmt.Errorf("AnalysisRuns %v", names)
		}
		return nil
	})
}
