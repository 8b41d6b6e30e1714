package argostatus_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/argostatus"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

const canaryYAML = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web, namespace: shop, generation: 7}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: "shop/web:2"}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web
      trafficRouting: {nginx: {stableIngress: web}}
      analysis: {templates: [{templateName: errors}]}
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 50
      - analysis: {templates: [{templateName: latency}], args: [{name: svc, value: web}]}
      - pause: {duration: 30s}
`

const blueGreenYAML = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop, namespace: shop, generation: 3}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec: {containers: [{name: app, image: "shop/shop:2"}]}
  strategy:
    blueGreen:
      activeService: shop
      previewService: shop-preview
      autoPromotionEnabled: false
      prePromotionAnalysis: {templates: [{templateName: smoke}]}
`

// object is one Rollout manifest as Sluice and as Argo read it.
type object struct {
	sluice *spec.Rollout
	argo   v1alpha1.Rollout
}

func parse(t *testing.T, manifest string) object {
	t.Helper()
	var o object
	o.sluice = &spec.Rollout{}
	if err := yaml.Unmarshal([]byte(manifest), o.sluice); err != nil {
		t.Fatal(err)
	}
	o.sluice.SetDefaults()
	if err := yaml.Unmarshal([]byte(manifest), &o.argo); err != nil {
		t.Fatal(err)
	}
	return o
}

// argoStatus decodes st into Argo's own RolloutStatus, failing on any
// field Argo's types do not have (Argo's CRD would prune it) or a wrong
// type.
func argoStatus(t *testing.T, st map[string]any) v1alpha1.RolloutStatus {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var out v1alpha1.RolloutStatus
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("status is not Argo's: %v\n%s", err, b)
	}
	return out
}

// shown is what Argo's readers make of a status: the phase and message
// rolloututil.GetRolloutPhase returns (which `kubectl argo rollouts get`
// prints and Argo CD's health check reads), and the plugin's step, set
// and actual weights (info.NewRolloutInfo). Argo's utils packages pull in
// k8s.io/kubernetes, which Sluice's module cannot require, so their few
// rules over these fields are restated here.
type shown struct {
	Phase, Message, Step, SetWeight, ActualWeight string
}

func show(ro v1alpha1.Rollout) shown {
	var s shown
	observed, err := strconv.ParseInt(ro.Status.ObservedGeneration, 10, 64)
	switch {
	case err == nil && observed < ro.Generation:
		s.Phase, s.Message = "Progressing", "waiting for rollout spec update to be observed"
	case ro.Status.ControllerPause && len(ro.Status.PauseConditions) == 0:
		s.Phase, s.Message = "Progressing", "waiting for rollout to unpause"
	default:
		s.Phase, s.Message = string(ro.Status.Phase), ro.Status.Message
	}
	c := ro.Spec.Strategy.Canary
	if c == nil {
		return s
	}
	idx := int32(0)
	if ro.Status.CurrentStepIndex != nil {
		idx = *ro.Status.CurrentStepIndex
		s.Step = fmt.Sprintf("%d/%d", idx, len(c.Steps))
	}
	maxWeight := int32(100)
	set := maxWeight
	if int(idx) < len(c.Steps) {
		set = 0
		for i := idx; i >= 0; i-- {
			if w := c.Steps[i].SetWeight; w != nil {
				set = *w
				break
			}
		}
	}
	if ro.Status.Abort {
		set = 0
	}
	s.SetWeight = strconv.Itoa(int(set))
	switch {
	case int(idx) >= len(c.Steps):
		s.ActualWeight = strconv.Itoa(int(maxWeight))
	case ro.Status.AvailableReplicas == 0:
		s.ActualWeight = "0"
	case ro.Status.Canary.Weights != nil:
		s.ActualWeight = strconv.Itoa(int(ro.Status.Canary.Weights.Canary.Weight))
	default:
		s.ActualWeight = s.SetWeight
	}
	return s
}

// argoStepHash is Argo's ComputeStepHash over Argo's own step types.
func argoStepHash(steps []v1alpha1.CanaryStep) string {
	b, _ := json.Marshal(steps)
	h := fnv.New32a()
	h.Write(b)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// writer writes one object's status after each snapshot, as the CRD
// writer does, carrying the status over from one write to the next.
type writer struct {
	t   *testing.T
	obj object
	st  map[string]any
	rs  []argostatus.ReplicaSet
}

func (w *writer) write(data events.StatusData, at time.Time) v1alpha1.Rollout {
	w.t.Helper()
	w.st = argostatus.Status(data, argostatus.Rollout{Generation: w.obj.argo.Generation, Spec: w.obj.sluice, Status: w.st, ReplicaSets: w.rs}, at)
	ro := w.obj.argo
	ro.Status = argoStatus(w.t, w.st)
	return ro
}

func conditions(ro v1alpha1.Rollout) string {
	var out []string
	for _, c := range ro.Status.Conditions {
		out = append(out, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
	}
	return strings.Join(out, " ")
}

func condition(t *testing.T, ro v1alpha1.Rollout, typ v1alpha1.RolloutConditionType) v1alpha1.RolloutCondition {
	t.Helper()
	for _, c := range ro.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("no %s condition in %s", typ, conditions(ro))
	return v1alpha1.RolloutCondition{}
}

// experimentSummary is step 0's experiment of revision 2 in phase: a
// baseline of the stable's pods given 10% of the traffic.
func experimentSummary(phase string) *events.ExperimentSummary {
	return &events.ExperimentSummary{
		Name: "web-new-2-0", Phase: phase, AvailableAt: t0,
		Templates: []events.ExperimentTemplateSummary{{
			Name: "baseline", PodHash: "old", ReplicaSet: "web-new-2-0-baseline", Replicas: 1, Available: 1,
			Weight: 10, Service: "web-new-2-0-baseline",
		}},
	}
}

func canarySnap() events.Snapshot {
	return events.Snapshot{
		Namespace: "shop", Name: "web", Strategy: "canary",
		Revision: 2, StableRevision: 1, PodHash: "new", StablePodHash: "old",
		StepCount: 5, Replicas: events.Replicas{Desired: 4},
	}
}

// TestCanaryStages writes a canary's status through an update: paused at
// a step, resumed, analysing, aborted, retried, completed, and checks at
// each stage what Argo's readers see.
func TestCanaryStages(t *testing.T) {
	w := &writer{t: t, obj: parse(t, canaryYAML)}
	w.rs = []argostatus.ReplicaSet{{Hash: "old", Replicas: 4, Ready: 4, Available: 4}}

	// The stable revision, before any update.
	snap := canarySnap()
	snap.Revision, snap.PodHash, snap.StepIndex = 1, "old", ptr(int32(5))
	snap.Phase, snap.StableWeight = events.PhaseHealthy, 100
	ro := w.write(events.StatusData{Status: snap}, t0)
	if got, want := show(ro), (shown{Phase: "Healthy", Step: "5/5", SetWeight: "100", ActualWeight: "100"}); got != want {
		t.Errorf("healthy: shown %+v, want %+v", got, want)
	}
	if got, want := conditions(ro), "Healthy=True/RolloutHealthy Progressing=True/NewReplicaSetAvailable Available=True/AvailableReason Completed=True/RolloutCompleted"; got != want {
		t.Errorf("healthy: conditions %s, want %s", got, want)
	}
	st := ro.Status
	if st.ObservedGeneration != "7" || st.HPAReplicas != 4 || st.Replicas != 4 || st.Selector != "app=web" || st.StableRS != "old" || st.CurrentPodHash != "old" {
		t.Errorf("healthy: status %+v", st)
	}
	if want := argoStepHash(w.obj.argo.Spec.Strategy.Canary.Steps); st.CurrentStepHash != want {
		t.Errorf("currentStepHash = %q, Argo's is %q", st.CurrentStepHash, want)
	}
	available := condition(t, ro, v1alpha1.RolloutAvailable)

	// Updated: the canary at 20%, paused at the pause step.
	w.rs = []argostatus.ReplicaSet{{Hash: "old", Replicas: 4, Ready: 4, Available: 4}, {Hash: "new", Replicas: 1, Ready: 1, Available: 1}}
	snap = canarySnap()
	snap.StepIndex, snap.CanaryWeight, snap.StableWeight = ptr(int32(1)), 20, 80
	snap.Phase, snap.Message = events.PhasePaused, "CanaryPauseStep"
	snap.PauseConditions = []events.PauseCondition{{Reason: "CanaryPauseStep", StartTime: t0.Add(time.Minute)}}
	snap.Runs = []events.RunSummary{{Name: "web-new-2", Purpose: "background", Phase: "Running"}}
	ro = w.write(events.StatusData{Status: snap}, t0.Add(time.Minute))
	if got, want := show(ro), (shown{Phase: "Paused", Message: "CanaryPauseStep", Step: "1/5", SetWeight: "20", ActualWeight: "20"}); got != want {
		t.Errorf("paused: shown %+v, want %+v", got, want)
	}
	st = ro.Status
	if !st.ControllerPause || len(st.PauseConditions) != 1 || st.PauseConditions[0].Reason != v1alpha1.PauseReasonCanaryPauseStep || !st.PauseConditions[0].StartTime.Time.Equal(t0.Add(time.Minute)) {
		t.Errorf("paused: pause %v %+v", st.ControllerPause, st.PauseConditions)
	}
	if w := st.Canary.Weights; w == nil || w.Canary != (v1alpha1.WeightDestination{Weight: 20, ServiceName: "web-canary", PodTemplateHash: "new"}) ||
		w.Stable != (v1alpha1.WeightDestination{Weight: 80, ServiceName: "web", PodTemplateHash: "old"}) {
		t.Errorf("paused: weights %+v", st.Canary.Weights)
	}
	if r := st.Canary.CurrentBackgroundAnalysisRunStatus; r == nil || r.Name != "web-new-2" || r.Status != v1alpha1.AnalysisPhaseRunning {
		t.Errorf("paused: background run %+v", r)
	}
	if st.Replicas != 5 || st.UpdatedReplicas != 1 || st.AvailableReplicas != 5 || st.HPAReplicas != 5 {
		t.Errorf("paused: counts %+v", st)
	}
	if got, want := conditions(ro), "Available=True/AvailableReason Progressing=Unknown/RolloutPaused Paused=True/RolloutPaused Healthy=False/RolloutHealthy Completed=False/RolloutCompleted"; got != want {
		t.Errorf("paused: conditions %s, want %s", got, want)
	}
	if c := condition(t, ro, v1alpha1.RolloutAvailable); !c.LastTransitionTime.Equal(&available.LastTransitionTime) || !c.LastUpdateTime.Equal(&available.LastUpdateTime) {
		t.Errorf("an unchanged condition was stamped again: %+v, was %+v", c, available)
	}

	// Still paused a minute later: nothing moves, no time changes.
	before := ro.Status.Conditions
	ro = w.write(events.StatusData{Status: snap}, t0.Add(2*time.Minute))
	if fmt.Sprint(ro.Status.Conditions) != fmt.Sprint(before) {
		t.Errorf("rewriting the same snapshot changed the conditions:\n%v\n%v", ro.Status.Conditions, before)
	}

	// Promoted: on to the analysis step, which runs.
	w.rs[1] = argostatus.ReplicaSet{Hash: "new", Replicas: 2, Ready: 2, Available: 2}
	snap.StepIndex, snap.CanaryWeight, snap.StableWeight = ptr(int32(3)), 50, 50
	snap.Phase, snap.Message, snap.PauseConditions = events.PhaseProgressing, "updating", nil
	snap.Runs = append(snap.Runs, events.RunSummary{Name: "web-new-2-3", Purpose: "step", Step: ptr(int32(3)), Phase: "Running"})
	ro = w.write(events.StatusData{Status: snap}, t0.Add(3*time.Minute))
	if got, want := show(ro), (shown{Phase: "Progressing", Message: "more replicas need to be updated", Step: "3/5", SetWeight: "50", ActualWeight: "50"}); got != want {
		t.Errorf("analysis: shown %+v, want %+v", got, want)
	}
	st = ro.Status
	if r := st.Canary.CurrentStepAnalysisRunStatus; r == nil || r.Name != "web-new-2-3" || r.Status != v1alpha1.AnalysisPhaseRunning {
		t.Errorf("analysis: step run %+v", r)
	}
	if st.ControllerPause || st.PauseConditions != nil {
		t.Errorf("analysis: still paused %+v", st)
	}
	if got, want := conditions(ro), "Available=True/AvailableReason Healthy=False/RolloutHealthy Completed=False/RolloutCompleted Paused=False/RolloutPaused Progressing=True/ReplicaSetUpdated"; got != want {
		t.Errorf("analysis: conditions %s, want %s", got, want)
	}
	if c := condition(t, ro, v1alpha1.RolloutProgressing); c.Message != `ReplicaSet "web-new" is progressing.` {
		t.Errorf("analysis: progressing %+v", c)
	}

	// The analysis fails: aborted.
	snap.Runs[1].Phase, snap.Runs[1].Message = "Failed", "latency above 300ms"
	snap.Aborted, snap.AbortedAt, snap.CanaryWeight, snap.StableWeight = true, t0.Add(4*time.Minute), 0, 100
	snap.Phase, snap.Message = events.PhaseDegraded, "RolloutAborted: Rollout aborted update to revision 2: step analysis run web-new-2-3 failed"
	ro = w.write(events.StatusData{Status: snap, Reason: "analysis failed"}, t0.Add(4*time.Minute))
	want := shown{Phase: "Degraded", Message: "RolloutAborted: Rollout aborted update to revision 2: step analysis run web-new-2-3 failed", Step: "0/5", SetWeight: "0", ActualWeight: "0"}
	if got := show(ro); got != want {
		t.Errorf("aborted: shown %+v, want %+v", got, want)
	}
	st = ro.Status
	if !st.Abort || st.AbortedAt == nil || !st.AbortedAt.Time.Equal(t0.Add(4*time.Minute)) {
		t.Errorf("aborted: abort %v at %v", st.Abort, st.AbortedAt)
	}
	if st.Canary.CurrentStepAnalysisRunStatus != nil || st.Canary.CurrentBackgroundAnalysisRunStatus != nil {
		t.Errorf("aborted: Argo forgets an aborted canary's runs, yet %+v", st.Canary)
	}
	if c := condition(t, ro, v1alpha1.RolloutProgressing); c.Status != "False" || c.Reason != "RolloutAborted" {
		t.Errorf("aborted: progressing %+v", c)
	}

	// Retried: Argo's RolloutRetry until it moves again.
	snap.Aborted, snap.AbortedAt, snap.Runs = false, time.Time{}, nil
	snap.StepIndex, snap.Phase, snap.Message = ptr(int32(0)), events.PhaseProgressing, "updating"
	ro = w.write(events.StatusData{Status: snap}, t0.Add(5*time.Minute))
	if c := condition(t, ro, v1alpha1.RolloutProgressing); c.Reason != "RolloutRetry" || ro.Status.Abort || ro.Status.AbortedAt != nil {
		t.Errorf("retried: progressing %+v, abort %v", c, ro.Status.Abort)
	}

	// Completed: the new revision is stable, the old one scaled down.
	w.rs = []argostatus.ReplicaSet{{Hash: "old"}, {Hash: "new", Replicas: 4, Ready: 4, Available: 4}}
	snap.StepIndex, snap.StablePodHash, snap.StableRevision = ptr(int32(5)), "new", 2
	snap.Phase, snap.Message, snap.CanaryWeight, snap.StableWeight = events.PhaseHealthy, "", 0, 100
	ro = w.write(events.StatusData{Status: snap}, t0.Add(6*time.Minute))
	if got, want := show(ro), (shown{Phase: "Healthy", Step: "5/5", SetWeight: "100", ActualWeight: "100"}); got != want {
		t.Errorf("completed: shown %+v, want %+v", got, want)
	}
	if got, want := conditions(ro), "Available=True/AvailableReason Paused=False/RolloutPaused Healthy=True/RolloutHealthy Progressing=True/NewReplicaSetAvailable Completed=True/RolloutCompleted"; got != want {
		t.Errorf("completed: conditions %s, want %s", got, want)
	}
	if ro.Status.Canary.CurrentStepAnalysisRunStatus != nil || ro.Status.PromoteFull {
		t.Errorf("completed: %+v", ro.Status.Canary)
	}
}

func TestCanaryOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  func(*events.StatusData)
		spec  func(*spec.Rollout)
		want  shown
		check func(*testing.T, v1alpha1.Rollout)
	}{{
		name: "progress deadline passed",
		data: func(d *events.StatusData) {
			d.Status.Phase, d.Status.Message = events.PhaseDegraded, `ProgressDeadlineExceeded: ReplicaSet "web-new" has timed out progressing.`
		},
		want: shown{Phase: "Degraded", Message: `ProgressDeadlineExceeded: ReplicaSet "web-new" has timed out progressing.`, Step: "0/5", SetWeight: "20", ActualWeight: "0"},
		check: func(t *testing.T, ro v1alpha1.Rollout) {
			if c := condition(t, ro, v1alpha1.RolloutProgressing); c.Status != "False" || c.Reason != "ProgressDeadlineExceeded" {
				t.Errorf("progressing %+v", c)
			}
		},
	}, {
		name: "a task Sluice could not carry out",
		data: func(d *events.StatusData) {
			d.Status.Phase, d.Status.Message = events.PhaseDegraded, "route web: no ingress web"
		},
		want: shown{Phase: "Degraded", Message: "ReconciliationError: route web: no ingress web", Step: "0/5", SetWeight: "20", ActualWeight: "0"},
		check: func(t *testing.T, ro v1alpha1.Rollout) {
			if c := condition(t, ro, v1alpha1.RolloutProgressing); c.Reason != "ReconciliationError" || c.Message != "Reconciliation failed with error: route web: no ingress web" {
				t.Errorf("progressing %+v", c)
			}
		},
	}, {
		name: "paused by spec.paused",
		spec: func(r *spec.Rollout) { r.Spec.Paused = true },
		data: func(d *events.StatusData) { d.Status.UserPaused, d.Status.Phase = true, events.PhasePaused },
		want: shown{Phase: "Paused", Message: "manually paused", Step: "0/5", SetWeight: "20", ActualWeight: "0"},
		check: func(t *testing.T, ro v1alpha1.Rollout) {
			if ro.Status.ControllerPause || condition(t, ro, v1alpha1.RolloutPaused).Status != "True" {
				t.Errorf("status %+v", ro.Status)
			}
		},
	}, {
		name: "spec.paused on a completed rollout",
		spec: func(r *spec.Rollout) { r.Spec.Paused = true },
		data: func(d *events.StatusData) {
			d.Status.PodHash, d.Status.Revision, d.Status.StepIndex = "old", 1, ptr(int32(5))
			d.Status.UserPaused, d.Status.Phase = true, events.PhasePaused
		},
		want: shown{Phase: "Paused", Message: "manually paused", Step: "5/5", SetWeight: "100", ActualWeight: "100"},
		check: func(t *testing.T, ro v1alpha1.Rollout) {
			if c := condition(t, ro, v1alpha1.RolloutProgressing); c.Reason != "NewReplicaSetAvailable" {
				t.Errorf("progressing %+v", c)
			}
		},
	}, {
		name: "paused by a pause command",
		data: func(d *events.StatusData) { d.Status.UserPaused, d.Status.Phase = true, events.PhasePaused },
		want: shown{Phase: "Paused", Message: "manually paused", Step: "0/5", SetWeight: "20", ActualWeight: "0"},
	}, {
		name: "fully promoted",
		data: func(d *events.StatusData) { d.Status.PromoteFull = true },
		want: shown{Phase: "Progressing", Message: "more replicas need to be updated", Step: "0/5", SetWeight: "20", ActualWeight: "0"},
		check: func(t *testing.T, ro v1alpha1.Rollout) {
			if !ro.Status.PromoteFull {
				t.Error("promoteFull not set")
			}
		},
	}, {
		name: "restart asked for in the spec, not done",
		spec: func(r *spec.Rollout) { r.Spec.RestartAt = ptr(metaTime(t0)) },
		data: func(d *events.StatusData) {
			d.Status.PodHash, d.Status.Revision, d.Status.StepIndex, d.Status.Phase = "old", 1, ptr(int32(5)), events.PhaseHealthy
		},
		want: shown{Phase: "Progressing", Message: "rollout is restarting", Step: "5/5", SetWeight: "100", ActualWeight: "100"},
	}, {
		name: "restart done",
		spec: func(r *spec.Rollout) { r.Spec.RestartAt = ptr(metaTime(t0)) },
		data: func(d *events.StatusData) {
			d.Status.PodHash, d.Status.Revision, d.Status.StepIndex, d.Status.Phase = "old", 1, ptr(int32(5)), events.PhaseHealthy
			d.Status.RestartedAt = t0
		},
		want: shown{Phase: "Healthy", Step: "5/5", SetWeight: "100", ActualWeight: "100"},
		check: func(t *testing.T, ro v1alpha1.Rollout) {
			if ro.Status.RestartedAt == nil || !ro.Status.RestartedAt.Time.Equal(t0) {
				t.Errorf("restartedAt %v", ro.Status.RestartedAt)
			}
		},
	}, {
		name: "a terminated run",
		data: func(d *events.StatusData) {
			d.Status.Runs = []events.RunSummary{{Name: "web-new-2", Purpose: "background", Phase: events.AnalysisTerminated}}
		},
		want: shown{Phase: "Progressing", Message: "more replicas need to be updated", Step: "0/5", SetWeight: "20", ActualWeight: "0"},
		check: func(t *testing.T, ro v1alpha1.Rollout) {
			if r := ro.Status.Canary.CurrentBackgroundAnalysisRunStatus; r == nil || r.Status != v1alpha1.AnalysisPhaseSuccessful || r.Message != "Run Terminated" {
				t.Errorf("background run %+v", r)
			}
		},
	}, {
		name: "an experiment running with a weighted template",
		data: func(d *events.StatusData) {
			d.Status.Experiment = experimentSummary("Running")
		},
		want: shown{Phase: "Progressing", Message: "more replicas need to be updated", Step: "0/5", SetWeight: "20", ActualWeight: "0"},
		check: func(t *testing.T, ro v1alpha1.Rollout) {
			c := ro.Status.Canary
			if c.CurrentExperiment != "web-new-2-0" {
				t.Errorf("currentExperiment %q", c.CurrentExperiment)
			}
			want := []v1alpha1.WeightDestination{{Weight: 10, ServiceName: "web-new-2-0-baseline", PodTemplateHash: "old"}}
			if c.Weights == nil || !reflect.DeepEqual(c.Weights.Additional, want) || c.Weights.Stable.Weight != 90 {
				t.Errorf("weights %+v", c.Weights)
			}
		},
	}, {
		name: "an inconclusive experiment",
		data: func(d *events.StatusData) {
			d.Status.Experiment = experimentSummary("Inconclusive")
			d.Status.Phase, d.Status.Message = events.PhasePaused, "InconclusiveExperiment"
			d.Status.PauseConditions = []events.PauseCondition{{Reason: "InconclusiveExperiment", StartTime: t0}}
		},
		want: shown{Phase: "Paused", Message: "InconclusiveExperiment", Step: "0/5", SetWeight: "20", ActualWeight: "0"},
		check: func(t *testing.T, ro v1alpha1.Rollout) {
			// Argo names only a pending or running experiment.
			if c := ro.Status.Canary; c.CurrentExperiment != "" || c.Weights == nil || len(c.Weights.Additional) != 0 || c.Weights.Stable.Weight != 100 {
				t.Errorf("canary status %+v", c)
			}
			if len(ro.Status.PauseConditions) != 1 || ro.Status.PauseConditions[0].Reason != v1alpha1.PauseReasonInconclusiveExperiment {
				t.Errorf("pause conditions %+v", ro.Status.PauseConditions)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			obj := parse(t, canaryYAML)
			if tc.spec != nil {
				tc.spec(obj.sluice)
				b, _ := json.Marshal(obj.sluice.Spec)
				obj.argo.Spec = v1alpha1.RolloutSpec{}
				if err := json.Unmarshal(b, &obj.argo.Spec); err != nil {
					t.Fatal(err)
				}
			}
			w := &writer{t: t, obj: obj, rs: []argostatus.ReplicaSet{{Hash: "old", Replicas: 4, Ready: 4, Available: 4}}}
			data := events.StatusData{Status: canarySnap()}
			data.Status.StepIndex, data.Status.Phase = ptr(int32(0)), events.PhaseProgressing
			tc.data(&data)
			ro := w.write(data, t0)
			if got := show(ro); got != tc.want {
				t.Errorf("shown %+v, want %+v", got, tc.want)
			}
			if tc.check != nil {
				tc.check(t, ro)
			}
		})
	}
}

// TestRejectedSpec: a rejected request shows as Argo's InvalidSpec until
// a later snapshot without errors.
func TestRejectedSpec(t *testing.T) {
	w := &writer{t: t, obj: parse(t, canaryYAML), rs: []argostatus.ReplicaSet{{Hash: "old", Replicas: 4, Ready: 4, Available: 4}}}
	snap := canarySnap()
	snap.Revision, snap.PodHash, snap.StepIndex, snap.Phase = 1, "old", ptr(int32(5)), events.PhaseHealthy
	errs := []string{"spec.strategy.canary.steps[0].setWeight: must be between 0 and 100", "spec.replicas: must be at least 0"}
	ro := w.write(events.StatusData{Status: snap, Errors: errs, Reason: "invalid Rollout"}, t0)
	wantMsg := `The Rollout "web" is invalid: spec.strategy.canary.steps[0].setWeight: must be between 0 and 100; spec.replicas: must be at least 0`
	if c := condition(t, ro, v1alpha1.InvalidSpec); c.Status != "True" || c.Reason != "InvalidSpec" || c.Message != wantMsg {
		t.Errorf("invalid spec %+v", c)
	}
	if got := show(ro); got.Phase != "Degraded" || got.Message != "InvalidSpec: "+wantMsg {
		t.Errorf("shown %+v", got)
	}

	errs = errs[:1]
	ro = w.write(events.StatusData{Status: snap, Errors: errs}, t0.Add(time.Minute))
	if c := condition(t, ro, v1alpha1.InvalidSpec); !strings.HasSuffix(c.Message, "100") || !c.LastTransitionTime.Time.Equal(t0.Add(time.Minute)) {
		t.Errorf("a different reason kept the old condition: %+v", c)
	}

	ro = w.write(events.StatusData{Status: snap}, t0.Add(2*time.Minute))
	for _, c := range ro.Status.Conditions {
		if c.Type == v1alpha1.InvalidSpec {
			t.Errorf("InvalidSpec kept after an accepted request: %+v", c)
		}
	}
	if got := show(ro); got.Phase != "Healthy" {
		t.Errorf("shown %+v", got)
	}
}

func bgSnap() events.Snapshot {
	return events.Snapshot{
		Namespace: "shop", Name: "shop", Strategy: "blueGreen",
		Revision: 2, StableRevision: 1, PodHash: "blue2", StablePodHash: "blue1",
		Replicas: events.Replicas{Desired: 2},
	}
}

// TestBlueGreenStages: preview, paused before promotion, promoted.
func TestBlueGreenStages(t *testing.T) {
	w := &writer{t: t, obj: parse(t, blueGreenYAML)}
	w.rs = []argostatus.ReplicaSet{{Hash: "blue1", Replicas: 2, Ready: 2, Available: 2}, {Hash: "blue2", Replicas: 2, Ready: 1, Available: 1}}
	snap := bgSnap()
	snap.ActivePodHash, snap.PreviewPodHash, snap.Phase = "blue1", "blue2", events.PhaseProgressing
	snap.Runs = []events.RunSummary{{Name: "shop-blue2-2-pre", Purpose: "prePromotion", Phase: "Running"}}
	ro := w.write(events.StatusData{Status: snap}, t0)
	st := ro.Status
	if st.BlueGreen.ActiveSelector != "blue1" || st.BlueGreen.PreviewSelector != "blue2" {
		t.Errorf("preview: selectors %+v", st.BlueGreen)
	}
	if r := st.BlueGreen.PrePromotionAnalysisRunStatus; r == nil || r.Name != "shop-blue2-2-pre" || r.Status != v1alpha1.AnalysisPhaseRunning {
		t.Errorf("preview: pre-promotion run %+v", r)
	}
	// Argo counts ready and available replicas on the active ReplicaSet,
	// and its selector names it.
	if st.Replicas != 4 || st.UpdatedReplicas != 2 || st.ReadyReplicas != 2 || st.AvailableReplicas != 2 || st.HPAReplicas != 2 || st.Selector != "app=shop,rollouts-pod-template-hash=blue1" {
		t.Errorf("preview: counts %+v", st)
	}
	if got := show(ro); got != (shown{Phase: "Progressing", Message: "active service cutover pending"}) {
		t.Errorf("preview: shown %+v", got)
	}
	if c := condition(t, ro, v1alpha1.RolloutAvailable); c.Status != "True" {
		t.Errorf("preview: the active revision serves, yet %+v", c)
	}

	// The preview is ready and the analysis passed: paused for promotion.
	w.rs[1] = argostatus.ReplicaSet{Hash: "blue2", Replicas: 2, Ready: 2, Available: 2}
	snap.Runs[0].Phase = "Successful"
	snap.Phase, snap.PauseConditions = events.PhasePaused, []events.PauseCondition{{Reason: "BlueGreenPause", StartTime: t0.Add(time.Minute)}}
	ro = w.write(events.StatusData{Status: snap}, t0.Add(time.Minute))
	if got := show(ro); got != (shown{Phase: "Paused", Message: "BlueGreenPause"}) {
		t.Errorf("paused: shown %+v", got)
	}
	if c := condition(t, ro, v1alpha1.RolloutPaused); c.Status != "True" {
		t.Errorf("paused: %+v", c)
	}

	// Promoted: both Services on the new revision, which is stable.
	w.rs = []argostatus.ReplicaSet{{Hash: "blue1", Replicas: 2, Ready: 2, Available: 2}, {Hash: "blue2", Replicas: 2, Ready: 2, Available: 2}}
	snap.PauseConditions, snap.Phase = nil, events.PhaseHealthy
	snap.ActivePodHash, snap.PreviewPodHash, snap.StablePodHash, snap.StableRevision = "blue2", "blue2", "blue2", 2
	ro = w.write(events.StatusData{Status: snap}, t0.Add(2*time.Minute))
	st = ro.Status
	if got := show(ro); got != (shown{Phase: "Healthy"}) {
		t.Errorf("promoted: shown %+v", got)
	}
	if st.Selector != "app=shop,rollouts-pod-template-hash=blue2" || st.AvailableReplicas != 2 || st.HPAReplicas != 2 || st.Replicas != 4 {
		t.Errorf("promoted: counts %+v", st)
	}
	if got, want := conditions(ro), "Available=True/AvailableReason Paused=False/RolloutPaused Healthy=True/RolloutHealthy Progressing=True/NewReplicaSetAvailable Completed=True/RolloutCompleted"; got != want {
		t.Errorf("promoted: conditions %s, want %s", got, want)
	}
	if st.CurrentStepIndex != nil || st.CurrentStepHash != "" || st.Canary.Weights != nil {
		t.Errorf("promoted: canary fields on a blue/green rollout %+v", st)
	}
}

// TestKeepsWhatOthersOwn: fields Sluice does not produce stay as the
// object has them, and nothing outside Argo's schema is written.
func TestKeepsWhatOthersOwn(t *testing.T) {
	obj := parse(t, canaryYAML)
	old := map[string]any{
		"collisionCount":             int64(2),
		"workloadObservedGeneration": "4",
		"restartedAt":                "2026-12-01T10:00:00Z",
		"sluice":                     map[string]any{"updatedAt": "2026-12-01T10:00:00Z"},
	}
	snap := canarySnap()
	snap.StepIndex = ptr(int32(0))
	st := argostatus.Status(events.StatusData{Status: snap, Reason: "why"}, argostatus.Rollout{Spec: obj.sluice, Status: old}, t0)
	if _, ok := st["sluice"]; ok {
		t.Error("status.sluice written: Argo's schema prunes it")
	}
	got := argoStatus(t, st)
	if got.CollisionCount == nil || *got.CollisionCount != 2 || got.WorkloadObservedGeneration != "4" || got.RestartedAt == nil || got.RestartedAt.Time.Day() != 1 {
		t.Errorf("kept fields lost: %+v", got)
	}
	if got.ObservedGeneration != "" {
		t.Errorf("observedGeneration %q without a generation", got.ObservedGeneration)
	}
	// Integers are int64, as in unstructured objects.
	if _, ok := st["currentStepIndex"].(int64); !ok {
		t.Errorf("currentStepIndex is %T", st["currentStepIndex"])
	}
}

// TestWithoutSpec: the notifier of a deleted rollout, or a writer without
// the spec, still gets Argo's fields from the snapshot alone.
func TestWithoutSpec(t *testing.T) {
	snap := canarySnap()
	snap.StepIndex, snap.Replicas = ptr(int32(1)), events.Replicas{Desired: 4, Current: 5, Updated: 1, Ready: 5, Available: 5}
	snap.PauseConditions = []events.PauseCondition{{Reason: "CanaryPauseStep", StartTime: t0}}
	got := argoStatus(t, argostatus.Status(events.StatusData{Status: snap}, argostatus.Rollout{Status: map[string]any{"selector": "app=web"}}, t0))
	if got.Phase != "Paused" || got.Message != "CanaryPauseStep" || got.Replicas != 5 || got.UpdatedReplicas != 1 || got.Selector != "app=web" || got.CurrentStepIndex == nil || *got.CurrentStepIndex != 1 {
		t.Errorf("status %+v", got)
	}
}

// TestStepHashIsArgos: the step hash over every kind of step Sluice runs
// is the one Argo computes over the same steps.
func TestStepHashIsArgos(t *testing.T) {
	const steps = `[
	{"setWeight": 10},
	{"pause": {}},
	{"pause": {"duration": "1h"}},
	{"pause": {"duration": 30}},
	{"setCanaryScale": {"replicas": 2}},
	{"setCanaryScale": {"matchTrafficWeight": true}},
	{"analysis": {"templates": [{"templateName": "a"}, {"templateName": "b", "clusterScope": true}], "args": [{"name": "x", "valueFrom": {"podTemplateHashValue": "Latest"}}]}},
	{"analysis": {"templates": [{"templateName": "a"}], "analysisRunMetadata": {"labels": {"team": "shop"}}}},
	{"setHeaderRoute": {"name": "h", "match": [{"headerName": "x-canary", "headerValue": {"exact": "yes"}}]}},
	{"setMirrorRoute": {"name": "m", "percentage": 50, "match": [{"method": {"exact": "GET"}}]}}
]`
	var ours []spec.CanaryStep
	if err := json.Unmarshal([]byte(steps), &ours); err != nil {
		t.Fatal(err)
	}
	var argos []v1alpha1.CanaryStep
	if err := json.Unmarshal([]byte(steps), &argos); err != nil {
		t.Fatal(err)
	}
	for i := range argos {
		if got, want := argostatus.StepHash(ours[i:i+1]), argoStepHash(argos[i:i+1]); got != want {
			a, _ := json.Marshal(ours[i])
			b, _ := json.Marshal(argos[i])
			t.Errorf("step %d: hash %s, Argo's %s\nours: %s\nArgo: %s", i, got, want, a, b)
		}
	}
	if got, want := argostatus.StepHash(ours), argoStepHash(argos); got != want {
		t.Errorf("hash %s, Argo's %s", got, want)
	}
}

func metaTime(t time.Time) metav1.Time { return metav1.NewTime(t) }
