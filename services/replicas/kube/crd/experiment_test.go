package crd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

const experimentYAML = `apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata: {name: %s}
spec:
  duration: 30s
  templates:
  - name: baseline
    selector: {matchLabels: {app: %[1]s, role: baseline}}
    template:
      metadata: {labels: {app: %[1]s, role: baseline}}
      spec: {containers: [{name: app, image: "web:v1"}]}
  - name: canary
    selector: {matchLabels: {app: %[1]s, role: canary}}
    template:
      metadata: {labels: {app: %[1]s, role: canary}}
      spec: {containers: [{name: app, image: "web:v2"}]}
  analyses:
  - {name: errors, templateName: errors}
`

// controllersOnly is the Rollout controllers alone on the control plane,
// with a bus whose streams forget event ids after 100ms, NATS' least (so
// that a request published again later reaches the stream again): the
// test plays the orchestrator, publishing an experiment's status events
// itself.
func controllersOnly(t *testing.T) *stack {
	t.Helper()
	cp := controlPlane(t)
	s := &stack{t: t, cp: cp, ns: cp.Namespace(t), url: eventstest.StartServer(t).ClientURL(), busConfig: events.BusConfig{DuplicateWindow: 100 * time.Millisecond}}
	s.bus = eventstest.Connect(t, s.url)
	s.startControllers()
	t.Cleanup(s.stopControllers)
	return s
}

func (s *stack) experiments() interface {
	Get(context.Context, string, metav1.GetOptions, ...string) (*unstructured.Unstructured, error)
	Create(context.Context, *unstructured.Unstructured, metav1.CreateOptions, ...string) (*unstructured.Unstructured, error)
	Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*unstructured.Unstructured, error)
	Delete(context.Context, string, metav1.DeleteOptions, ...string) error
} {
	return s.cp.Dynamic.Resource(crd.ExperimentResource).Namespace(s.ns)
}

// createExperiment creates Experiment name as kubectl create does.
func (s *stack) createExperiment(name string) *unstructured.Unstructured {
	s.t.Helper()
	var u unstructured.Unstructured
	must(s.t, yaml.Unmarshal(fmt.Appendf(nil, experimentYAML, name), &u.Object))
	u.SetNamespace(s.ns)
	got, err := s.experiments().Create(context.Background(), &u, metav1.CreateOptions{FieldManager: "kubectl-create"})
	must(s.t, err)
	return got
}

// experimentStatus waits until Experiment name's status satisfies ok.
func (s *stack) experimentStatus(name, what string, ok func(st map[string]any) bool) map[string]any {
	s.t.Helper()
	var st map[string]any
	eventually(s.t, what, func() error {
		u, err := s.experiments().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st, _, _ = unstructured.NestedMap(u.Object, "status")
		if !ok(st) {
			b, _ := json.Marshal(st)
			return fmt.Errorf("status %s", b)
		}
		return nil
	})
	return st
}

// publishExperiment publishes an experiment's status event as the
// orchestrator would, answering cause.
func (s *stack) publishExperiment(name, typ, cause, phase string, available int32, errs ...string) {
	s.t.Helper()
	sum := &events.ExperimentSummary{Name: name, Phase: phase, Templates: []events.ExperimentTemplateSummary{
		{Name: "baseline", PodHash: "6d4f8", ReplicaSet: name + "-baseline", Replicas: 1, Available: available},
		{Name: "canary", PodHash: "77f9c", ReplicaSet: name + "-canary", Replicas: 1, Available: available},
	}, Runs: []string{name + "-errors"}}
	if phase == events.ExperimentPhaseRunning {
		sum.AvailableAt = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	}
	ref := events.Ref{Namespace: s.ns, Name: name}
	data := events.StatusData{Status: events.Snapshot{Kind: events.KindExperiment, Namespace: s.ns, Name: name, Phase: phase, Experiment: sum, UpdatedAt: time.Now()}, Errors: errs}
	ev, err := events.New("/test/orchestrator", typ, ref.String(), data)
	must(s.t, err)
	ev.SetExtension(events.ExtCausationID, cause)
	_, err = s.bus.Publish(context.Background(), events.StatusSubject(ref), ev)
	must(s.t, err)
}

// TestExperimentObject: an Experiment object is requested once per spec,
// with the id k8s:<uid>:<spec hash> and the actor that wrote it, whatever
// the status writer writes into it meanwhile (each write raises the
// generation of Argo's Experiment, which has no status subresource); its
// status events are written as Argo's Experiment status, a rejected spec
// as InvalidSpec; spec.terminate set by Argo's plugin is a new request;
// and its deletion is a delete command.
func TestExperimentObject(t *testing.T) {
	s := controllersOnly(t)
	u := s.createExperiment("exp")
	req := s.oneCommand("exp", events.TypeExperimentRequested, "kube:kubectl-create", 0)
	if want := crd.ExperimentRequestID(u.GetUID(), crd.SpecHash(u)); req.ID() != want {
		t.Errorf("request id %s, want %s", req.ID(), want)
	}
	var manifest map[string]any
	must(t, json.Unmarshal(req.Data(), &manifest))
	if manifest["kind"] != "Experiment" || len(manifest["spec"].(map[string]any)["templates"].([]any)) != 2 {
		t.Errorf("requested manifest %v", manifest)
	}

	s.publishExperiment("exp", events.TypeExperimentAccepted, req.ID(), events.ExperimentPhasePending, 0)
	st := s.experimentStatus("exp", "Pending with its templates", func(st map[string]any) bool {
		ts, _ := st["templateStatuses"].([]any)
		return st["phase"] == "Pending" && len(ts) == 2
	})
	if ts := st["templateStatuses"].([]any)[0].(map[string]any); ts["name"] != "baseline" || ts["status"] != "Progressing" || ts["podTemplateHash"] != "6d4f8" {
		t.Errorf("baseline template status %v", ts)
	}
	s.publishExperiment("exp", events.TypeExperimentRunning, "", events.ExperimentPhaseRunning, 1)
	st = s.experimentStatus("exp", "Running", func(st map[string]any) bool { return st["phase"] == "Running" })
	if st["availableAt"] != "2026-12-07T09:00:00Z" {
		t.Errorf("availableAt %v", st["availableAt"])
	}
	if runs, _ := st["analysisRuns"].([]any); len(runs) != 1 || runs[0].(map[string]any)["analysisRun"] != "exp-errors" || runs[0].(map[string]any)["name"] != "errors" {
		t.Errorf("analysisRuns %v", st["analysisRuns"])
	}

	// The watcher restarted sees the object (written twice since) again:
	// its spec was requested, so nothing is published for it. A second
	// Experiment created after the restart is requested after the first
	// was looked at (one queue, in order).
	s.stopControllers()
	s.startControllers()
	s.createExperiment("later")
	s.oneCommand("later", events.TypeExperimentRequested, "kube:kubectl-create", 0)
	if n := len(ofType(s.commands("exp"), events.TypeExperimentRequested)); n != 1 {
		t.Errorf("%d requests of exp after its status was written and the watcher restarted, want 1", n)
	}

	// Argo's plugin terminates it (kubectl argo rollouts terminate
	// experiment): a new spec, requested with the plugin as actor.
	_, err := s.experiments().Patch(context.Background(), "exp", types.MergePatchType, []byte(`{"spec":{"terminate":true}}`), metav1.PatchOptions{FieldManager: pluginManager})
	must(t, err)
	term := s.oneCommand("exp", events.TypeExperimentRequested, plugin, 1)
	must(t, json.Unmarshal(term.Data(), &manifest))
	if manifest["spec"].(map[string]any)["terminate"] != true {
		t.Errorf("the terminating request's spec %v", manifest["spec"])
	}

	// Say the orchestrator rejected it: InvalidSpec while the object
	// keeps that spec, through later events.
	s.publishExperiment("exp", events.TypeExperimentRejected, term.ID(), events.ExperimentPhaseRunning, 1, "spec.templates: an experiment's spec cannot change")
	st = s.experimentStatus("exp", "InvalidSpec", func(st map[string]any) bool { return invalidSpec(st) != nil })
	if c := invalidSpec(st); c["reason"] != "InvalidSpec" || !strings.Contains(fmt.Sprint(c["message"]), "cannot change") {
		t.Errorf("InvalidSpec condition %v", c)
	}
	s.publishExperiment("exp", events.TypeExperimentTerminated, "", events.ExperimentPhaseTerminated, 1)
	st = s.experimentStatus("exp", "terminated (Successful, as Argo ends one)", func(st map[string]any) bool {
		return st["phase"] == "Successful" && strings.HasPrefix(fmt.Sprint(st["message"]), "Experiment terminated: ")
	})
	if invalidSpec(st) == nil {
		t.Error("InvalidSpec gone while the object keeps the rejected spec")
	}

	must(t, s.experiments().Delete(context.Background(), "exp", metav1.DeleteOptions{}))
	del := s.oneCommand("exp", events.TypeExperimentDelete, crd.Actor, 0)
	if want := fmt.Sprintf("k8s:%s:delete", u.GetUID()); del.ID() != want {
		t.Errorf("delete id %s, want %s", del.ID(), want)
	}
}

// TestExperimentCreatedAgain: an Experiment deleted and created again
// under its name is a new experiment: the earlier one's delete command
// comes before the new one's request, even when the watcher saw only the
// new object (it was down meanwhile).
func TestExperimentCreatedAgain(t *testing.T) {
	s := controllersOnly(t)
	first := s.createExperiment("exp")
	s.oneCommand("exp", events.TypeExperimentRequested, "kube:kubectl-create", 0)
	s.stopControllers()
	must(t, s.experiments().Delete(context.Background(), "exp", metav1.DeleteOptions{}))
	second := s.createExperiment("exp")
	s.startControllers()
	s.oneCommand("exp", events.TypeExperimentRequested, "kube:kubectl-create", 1)
	var order []string
	for _, ev := range s.commands("exp") {
		order = append(order, ev.ID())
	}
	want := []string{
		crd.ExperimentRequestID(first.GetUID(), crd.SpecHash(first)),
		fmt.Sprintf("k8s:%s:delete", first.GetUID()),
		crd.ExperimentRequestID(second.GetUID(), crd.SpecHash(second)),
	}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("commands %v, want %v", order, want)
	}
}
