// Package argostatus renders a Sluice status snapshot as the status Argo
// Rollouts' controller (v1.10.0) writes into a Rollout object: the same
// fields, names, types and semantics, so that every reader of Argo's
// status (kubectl argo rollouts, Argo CD's health check, Argo's own Go
// packages) reads a Sluice-managed Rollout as it reads one Argo manages.
// The CRD status writer (services/replicas/kube/crd) writes it into
// cluster objects, and the notifier renders templates against it; both
// call Status, so the two never drift.
//
// Nothing here is outside Argo's CRD schema, which prunes unknown status
// fields: what Sluice needs from the object must be one of Argo's fields.
package argostatus

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// PodTemplateHashLabel is the label that tells a rollout's ReplicaSets
// apart; blue/green's status.selector adds it for the active one.
const PodTemplateHashLabel = "rollouts-pod-template-hash"

// Rollout is what Argo's status depends on besides the snapshot: the
// cluster object's generation, its spec, and the status it has now (so
// that conditions keep their transition times and order, and what other
// writers own is kept). The notifier, which has no cluster object, passes
// the spec and a nil Status.
type Rollout struct {
	// Generation is metadata.generation (0: none). It is written as
	// status.observedGeneration: the writer has observed it.
	Generation int64
	// WorkloadGeneration is the generation of the Deployment a
	// workloadRef names (0: none).
	WorkloadGeneration int64
	// Spec is the rollout's spec, defaulted (nil: unknown; the strategy
	// and replica count then come from the snapshot, and the selector
	// from Status).
	Spec *spec.Rollout
	// Status is the status the object has now (nil: none).
	Status map[string]any
	// ReplicaSets are the counts of each of the rollout's ReplicaSets,
	// when the caller has them: Argo counts blue/green's ready and
	// available replicas on the active ReplicaSet alone. They take
	// precedence over Replicas.
	ReplicaSets []ReplicaSet
	// Replicas are the counts over the rollout's ReplicaSets, when the
	// caller has them; nil (and no ReplicaSets) takes the snapshot's.
	Replicas *events.Replicas
}

// ReplicaSet is one ReplicaSet's counts, from its status.
type ReplicaSet struct {
	// Hash is its rollouts-pod-template-hash.
	Hash      string
	Replicas  int32
	Ready     int32
	Available int32
}

// Status is the Rollout's whole status as Argo Rollouts' controller writes
// it, after data's snapshot, for ro. now stamps conditions that change.
// Integers are int64 and times RFC 3339 strings, as in unstructured
// objects.
//
// A rejected request (data.Errors) shows as Argo's InvalidSpec condition;
// any data without errors removes it, so the caller passes the errors for
// as long as the object's generation is the rejected one.
func Status(data events.StatusData, ro Rollout, now time.Time) map[string]any {
	var old status
	if ro.Status != nil {
		if b, err := json.Marshal(ro.Status); err == nil {
			_ = json.Unmarshal(b, &old) // a malformed status is replaced
		}
	}
	v := viewOf(ro.Spec, data.Status)
	st := build(data, ro, v, old, now)
	return toMap(st)
}

// view is what Status reads of the spec, or of the snapshot without one.
type view struct {
	name        string
	canary      bool
	blueGreen   bool
	steps       int32
	stepHash    string
	replicas    int32
	selector    *metav1.LabelSelector
	paused      bool
	restartAt   *metav1.Time
	routed      bool
	maxWeight   int32
	canarySvc   string
	stableSvc   string
	previewSvc  string
	postAnalyze bool
}

func viewOf(r *spec.Rollout, snap events.Snapshot) view {
	v := view{
		name:      snap.Name,
		canary:    snap.Strategy == string(spec.StrategyCanary),
		blueGreen: snap.Strategy == string(spec.StrategyBlueGreen),
		steps:     snap.StepCount,
		replicas:  snap.Replicas.Desired,
		paused:    snap.UserPaused,
		maxWeight: spec.DefaultMaxTrafficWeight,
	}
	if r == nil {
		return v
	}
	s := r.Spec
	v.replicas = 1
	if s.Replicas != nil {
		v.replicas = *s.Replicas
	}
	v.selector = s.Selector
	v.paused = v.paused || s.Paused
	v.restartAt = s.RestartAt
	v.canary, v.blueGreen = s.Strategy.Canary != nil, s.Strategy.BlueGreen != nil
	if c := s.Strategy.Canary; c != nil {
		v.steps = int32(len(c.Steps))
		v.stepHash = StepHash(c.Steps)
		v.routed = c.TrafficRouting != nil
		v.maxWeight = c.TrafficRouting.MaxWeight()
		v.canarySvc, v.stableSvc = c.CanaryService, c.StableService
	}
	if b := s.Strategy.BlueGreen; b != nil {
		v.previewSvc = b.PreviewService
		v.postAnalyze = b.PostPromotionAnalysis != nil
	}
	return v
}

func build(data events.StatusData, ro Rollout, v view, old status, now time.Time) status {
	snap := data.Status
	st := status{
		CurrentPodHash: snap.PodHash,
		StableRS:       snap.StablePodHash,
		CollisionCount: old.CollisionCount,
		RestartedAt:    old.RestartedAt,
		ALB:            old.ALB,
		ALBs:           old.ALBs,
		Selector:       old.Selector,
	}
	st.ObservedGeneration = old.ObservedGeneration
	if ro.Generation > 0 {
		st.ObservedGeneration = strconv.FormatInt(ro.Generation, 10)
	}
	st.WorkloadObservedGeneration = old.WorkloadObservedGeneration
	if ro.WorkloadGeneration > 0 {
		st.WorkloadObservedGeneration = strconv.FormatInt(ro.WorkloadGeneration, 10)
	}
	if !snap.RestartedAt.IsZero() {
		st.RestartedAt = metaTime(snap.RestartedAt)
	}

	// Argo clears the pause conditions of an aborted update and keeps
	// the time it was first seen aborted.
	st.Abort = snap.Aborted
	if snap.Aborted {
		switch {
		case !snap.AbortedAt.IsZero():
			st.AbortedAt = metaTime(snap.AbortedAt)
		case old.AbortedAt != nil:
			st.AbortedAt = old.AbortedAt
		default:
			st.AbortedAt = metaTime(now)
		}
	} else {
		for _, pc := range snap.PauseConditions {
			st.PauseConditions = append(st.PauseConditions, pauseCondition{Reason: pc.Reason, StartTime: *metaTime(pc.StartTime)})
		}
		st.ControllerPause = len(st.PauseConditions) > 0
	}
	st.PromoteFull = snap.PromoteFull && snap.PodHash != snap.StablePodHash

	if v.canary {
		st.Canary = canaryStatusOf(snap, v, old.Canary)
		st.CurrentStepHash = v.stepHash
		if v.steps > 0 && (snap.Revision != 0 || snap.StepIndex != nil) {
			i := int32(0)
			if snap.StepIndex != nil {
				i = *snap.StepIndex
			}
			if snap.Aborted {
				// Argo goes back to the first step, or past the last when
				// the aborted revision is the stable one.
				i = 0
				if snap.PodHash == snap.StablePodHash {
					i = v.steps
				}
			}
			st.CurrentStepIndex = &i
		}
	}
	if v.blueGreen {
		st.BlueGreen = blueGreenStatus{
			ActiveSelector:                 snap.ActivePodHash,
			PreviewSelector:                snap.PreviewPodHash,
			PrePromotionAnalysisRunStatus:  lastRun(snap.Runs, purposePrePromotion, nil),
			PostPromotionAnalysisRunStatus: lastRun(snap.Runs, purposePostPromotion, nil),
		}
	}
	st.counts(ro, snap, v)
	st.Conditions = conditionsOf(data, v, old, st, now)
	st.Phase, st.Message = phase(v, st)
	if snap.Phase == events.PhaseDegraded && st.Phase != events.PhaseDegraded {
		// A task Sluice could not carry out: Argo has no phase for it
		// (its ReconciliationError condition leaves the phase alone), but
		// the rollout will not go on by itself.
		st.Phase, st.Message = events.PhaseDegraded, ReasonReconciliationError+": "+snap.Message
	}
	return st
}

// counts fills the replica counts, HPAReplicas and selector as Argo does:
// sums over every ReplicaSet, the new one's as updated, and for
// blue/green the active ReplicaSet's ready and available replicas, with
// the selector narrowed to it.
func (st *status) counts(ro Rollout, snap events.Snapshot, v view) {
	sel := v.selector
	var active *ReplicaSet
	if ro.ReplicaSets != nil {
		for i, rs := range ro.ReplicaSets {
			st.Replicas += rs.Replicas
			st.ReadyReplicas += rs.Ready
			st.AvailableReplicas += rs.Available
			if rs.Hash == snap.PodHash {
				st.UpdatedReplicas = rs.Replicas
			}
			if v.blueGreen && rs.Hash != "" && rs.Hash == st.BlueGreen.ActiveSelector {
				active = &ro.ReplicaSets[i]
			}
		}
	} else {
		r := snap.Replicas
		if ro.Replicas != nil {
			r = *ro.Replicas
		}
		st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas = r.Current, r.Updated, r.Ready, r.Available
	}
	st.HPAReplicas = st.Replicas
	if active != nil {
		st.HPAReplicas, st.ReadyReplicas, st.AvailableReplicas = active.Replicas, active.Ready, active.Available
	}
	if v.blueGreen && st.BlueGreen.ActiveSelector != "" && sel != nil && (active != nil || ro.ReplicaSets == nil) {
		narrowed := sel.DeepCopy()
		if narrowed.MatchLabels == nil {
			narrowed.MatchLabels = map[string]string{}
		}
		narrowed.MatchLabels[PodTemplateHashLabel] = st.BlueGreen.ActiveSelector
		sel = narrowed
	}
	if sel != nil {
		st.Selector = metav1.FormatLabelSelector(sel)
	}
}

// Analysis run purposes (events.RunSummary.Purpose).
const (
	purposeBackground    = "background"
	purposeStep          = "step"
	purposePrePromotion  = "prePromotion"
	purposePostPromotion = "postPromotion"
)

func canaryStatusOf(snap events.Snapshot, v view, old canaryStatus) canaryStatus {
	c := canaryStatus{
		StablePingPong:     old.StablePingPong,
		StepPluginStatuses: old.StepPluginStatuses,
	}
	// Argo names the experiment of the current step while it runs (not
	// once it succeeded, failed or was inconclusive).
	ex := snap.Experiment
	running := ex != nil && (ex.Phase == "Pending" || ex.Phase == "Running") && !snap.Aborted
	if running {
		c.CurrentExperiment = ex.Name
	}
	// Argo cancels and forgets a canary's runs once the update is
	// aborted, fully promoted or done, and the step's run when the step
	// completes.
	if !snap.Aborted && !snap.PromoteFull && snap.PodHash != snap.StablePodHash {
		c.CurrentBackgroundAnalysisRunStatus = lastRun(snap.Runs, purposeBackground, nil)
		if snap.StepIndex != nil {
			c.CurrentStepAnalysisRunStatus = lastRun(snap.Runs, purposeStep, snap.StepIndex)
		}
	}
	if v.routed && snap.Revision != 0 {
		c.Weights = &trafficWeights{
			Canary: weightDestination{Weight: snap.CanaryWeight * v.maxWeight / 100, ServiceName: v.canarySvc, PodTemplateHash: snap.PodHash},
			Stable: weightDestination{ServiceName: v.stableSvc, PodTemplateHash: snap.StablePodHash},
		}
		c.Weights.Stable.Weight = v.maxWeight - c.Weights.Canary.Weight
		if running && ex.Phase == "Running" {
			for _, t := range ex.Templates {
				if t.Weight > 0 {
					c.Weights.Additional = append(c.Weights.Additional, weightDestination{Weight: t.Weight, ServiceName: t.Service, PodTemplateHash: t.PodHash})
					c.Weights.Stable.Weight -= t.Weight
				}
			}
		}
	}
	return c
}

// lastRun is the latest run of purpose (and of step, when step is set),
// as Argo's {name, status, message}.
func lastRun(runs []events.RunSummary, purpose string, step *int32) *runStatus {
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		if r.Purpose != purpose || step != nil && (r.Step == nil || *r.Step != *step) {
			continue
		}
		rs := &runStatus{Name: r.Name, Status: r.Phase, Message: r.Message}
		switch r.Phase {
		case "":
			rs.Status = "Pending"
		case events.AnalysisTerminated:
			// Argo ends a terminated run Successful, "Run Terminated".
			rs.Status = "Successful"
			if rs.Message == "" {
				rs.Message = "Run Terminated"
			}
		}
		return rs
	}
	return nil
}

// StepHash is Argo's status.currentStepHash of steps: the FNV-1a hash of
// their JSON, safely encoded as Argo encodes it.
func StepHash(steps []spec.CanaryStep) string {
	b, err := json.Marshal(argoSteps(steps))
	if err != nil {
		return ""
	}
	h := fnv.New32a()
	_, _ = h.Write(b)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// argoSteps renders steps as Argo's types marshal them, so the hash is
// Argo's: Sluice's analysisRunMetadata is a value where Argo's is a
// pointer left out when unset.
func argoSteps(steps []spec.CanaryStep) []any {
	out := make([]any, len(steps))
	for i, s := range steps {
		if s.Analysis != nil && isZeroMetadata(s.Analysis.AnalysisRunMetadata) {
			type analysis struct {
				Templates            []spec.AnalysisTemplateRef  `json:"templates,omitempty"`
				Args                 []spec.AnalysisRunArgument  `json:"args,omitempty"`
				DryRun               []spec.DryRun               `json:"dryRun,omitempty"`
				MeasurementRetention []spec.MeasurementRetention `json:"measurementRetention,omitempty"`
			}
			type step struct {
				SetWeight      *int32                      `json:"setWeight,omitempty"`
				Pause          *spec.RolloutPause          `json:"pause,omitempty"`
				Experiment     *spec.RolloutExperimentStep `json:"experiment,omitempty"`
				Analysis       *analysis                   `json:"analysis,omitempty"`
				SetCanaryScale *spec.SetCanaryScale        `json:"setCanaryScale,omitempty"`
				SetHeaderRoute *spec.SetHeaderRoute        `json:"setHeaderRoute,omitempty"`
				SetMirrorRoute *spec.SetMirrorRoute        `json:"setMirrorRoute,omitempty"`
				Plugin         *spec.PluginStep            `json:"plugin,omitempty"`
			}
			a := s.Analysis
			out[i] = step{SetWeight: s.SetWeight, Pause: s.Pause, Experiment: s.Experiment,
				Analysis:       &analysis{Templates: a.Templates, Args: a.Args, DryRun: a.DryRun, MeasurementRetention: a.MeasurementRetention},
				SetCanaryScale: s.SetCanaryScale, SetHeaderRoute: s.SetHeaderRoute, SetMirrorRoute: s.SetMirrorRoute, Plugin: s.Plugin}
			continue
		}
		out[i] = s
	}
	return out
}

func isZeroMetadata(m spec.AnalysisRunMetadata) bool {
	return len(m.Labels) == 0 && len(m.Annotations) == 0
}

func metaTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.UTC().Truncate(time.Second))
	return &mt
}

// toMap is st's JSON as generic data, whole numbers as int64 (as
// Kubernetes' unstructured objects have them).
func toMap(st any) map[string]any {
	b, err := json.Marshal(st)
	if err != nil {
		return map[string]any{}
	}
	var out map[string]any
	if err := kjson.Unmarshal(b, &out); err != nil || out == nil {
		return map[string]any{}
	}
	return out
}

func joinErrors(name string, errs []string) string {
	return fmt.Sprintf("The Rollout %q is invalid: %s", name, strings.Join(errs, "; "))
}
