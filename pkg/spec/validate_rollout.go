package spec

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate returns every problem with r as written, each with its field
// path. See the package documentation for the rules.
func (r *Rollout) Validate() field.ErrorList {
	errs := validateObjectMeta(&r.ObjectMeta, true)
	errs = append(errs, validateRolloutSpec(&r.Spec, field.NewPath("spec"))...)
	return append(errs, validateExperimentServices(r)...)
}

func validateRolloutSpec(s *RolloutSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, atLeast(p.Child("replicas"), s.Replicas, 0)...)
	if s.WorkloadRef != nil {
		errs = append(errs, field.Forbidden(p.Child("workloadRef"), "resolved only for Rollout objects in a cluster (the kube platform copies the Deployment's template); in an event or sluice apply, put the pod template in spec.template"))
	}
	errs = append(errs, validatePodTemplate(s.Selector, &s.Template, p)...)
	errs = append(errs, atLeast(p.Child("minReadySeconds"), &s.MinReadySeconds, 0)...)
	errs = append(errs, atLeast(p.Child("revisionHistoryLimit"), s.RevisionHistoryLimit, 0)...)
	switch deadline := s.ProgressDeadlineSeconds; {
	case deadline == nil && s.MinReadySeconds >= DefaultProgressDeadlineSeconds:
		errs = append(errs, field.Invalid(p.Child("minReadySeconds"), s.MinReadySeconds,
			fmt.Sprintf("must be less than progressDeadlineSeconds, which defaults to %d", DefaultProgressDeadlineSeconds)))
	case deadline != nil && *deadline <= s.MinReadySeconds:
		errs = append(errs, field.Invalid(p.Child("progressDeadlineSeconds"), *deadline, "must be greater than minReadySeconds"))
	}
	if s.RollbackWindow != nil {
		errs = append(errs, atLeast(p.Child("rollbackWindow", "revisions"), &s.RollbackWindow.Revisions, 0)...)
	}
	if a := s.Analysis; a != nil {
		errs = append(errs, atLeast(p.Child("analysis", "successfulRunHistoryLimit"), a.SuccessfulRunHistoryLimit, 0)...)
		errs = append(errs, atLeast(p.Child("analysis", "unsuccessfulRunHistoryLimit"), a.UnsuccessfulRunHistoryLimit, 0)...)
	}

	sp := p.Child("strategy")
	c, b := s.Strategy.Canary, s.Strategy.BlueGreen
	errs = append(errs, exactlyOne(sp, []string{"canary", "blueGreen"}, []bool{c != nil, b != nil})...)
	if c != nil {
		errs = append(errs, validateCanary(s, c, sp.Child("canary"))...)
	}
	if b != nil {
		errs = append(errs, validateBlueGreen(s, b, sp.Child("blueGreen"))...)
	}
	return errs
}

// validatePodTemplate checks the selector and the parts of the pod
// template Sluice relies on. The pod spec itself is left to the platform:
// the API server checks it on Kubernetes, and the local platform reads only
// commands, arguments, environment, ports and readiness probes.
func validatePodTemplate(sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	sp := p.Child("selector")
	if sel == nil {
		errs = append(errs, field.Required(sp, ""))
	} else {
		selector, selErrs := labelSelector(sel, sp)
		errs = append(errs, selErrs...)
		if selector != nil && !selector.Matches(labels.Set(t.Labels)) {
			errs = append(errs, field.Invalid(p.Child("template", "metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
		}
	}

	cp := p.Child("template", "spec", "containers")
	if len(t.Spec.Containers) == 0 {
		errs = append(errs, field.Required(cp, "must have at least one container"))
	}
	names := sets.New[string]()
	for i, ctr := range t.Spec.Containers {
		np := cp.Index(i).Child("name")
		switch {
		case ctr.Name == "":
			errs = append(errs, field.Required(np, ""))
		case names.Has(ctr.Name):
			errs = append(errs, field.Duplicate(np, ctr.Name))
		default:
			errs = append(errs, dnsLabel(np, ctr.Name)...)
		}
		names.Insert(ctr.Name)
	}
	return errs
}

// labelSelector checks sel, which is set: not empty and well formed. It
// returns the selector when it is.
func labelSelector(sel *metav1.LabelSelector, p *field.Path) (labels.Selector, field.ErrorList) {
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		return nil, field.ErrorList{field.Invalid(p, sel, "must not be empty")}
	}
	if errs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, p); len(errs) > 0 {
		return nil, errs
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, field.ErrorList{field.Invalid(p, sel, err.Error())}
	}
	return selector, nil
}

func validateBlueGreen(s *RolloutSpec, b *BlueGreenStrategy, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if b.ActiveService == "" {
		errs = append(errs, field.Required(p.Child("activeService"), ""))
	}
	errs = append(errs, serviceName(p.Child("activeService"), b.ActiveService)...)
	errs = append(errs, serviceName(p.Child("previewService"), b.PreviewService)...)
	if b.PreviewService != "" && b.PreviewService == b.ActiveService {
		errs = append(errs, field.Invalid(p.Child("previewService"), b.PreviewService, "must differ from activeService"))
	}
	errs = append(errs, atLeast(p.Child("previewReplicaCount"), b.PreviewReplicaCount, 0)...)
	errs = append(errs, atLeast(p.Child("autoPromotionSeconds"), &b.AutoPromotionSeconds, 0)...)
	_, _, _, muErrs := intOrPercent(p.Child("maxUnavailable"), b.MaxUnavailable, true)
	errs = append(errs, muErrs...)
	errs = append(errs, atLeast(p.Child("scaleDownDelaySeconds"), b.ScaleDownDelaySeconds, 0)...)
	errs = append(errs, atLeast(p.Child("abortScaleDownDelaySeconds"), b.AbortScaleDownDelaySeconds, 0)...)
	errs = append(errs, scaleDownDelayRevisionLimit(s, p, b.ScaleDownDelayRevisionLimit)...)
	if b.PrePromotionAnalysis != nil {
		errs = append(errs, validateRolloutAnalysis(b.PrePromotionAnalysis, p.Child("prePromotionAnalysis"))...)
	}
	if b.PostPromotionAnalysis != nil {
		errs = append(errs, validateRolloutAnalysis(b.PostPromotionAnalysis, p.Child("postPromotionAnalysis"))...)
	}
	errs = append(errs, validateAntiAffinity(b.AntiAffinity, p.Child("antiAffinity"))...)
	return errs
}

// scaleDownDelayRevisionLimit checks that the revisions waiting to be scaled
// down are ones the history keeps.
func scaleDownDelayRevisionLimit(s *RolloutSpec, p *field.Path, limit *int32) field.ErrorList {
	lp := p.Child("scaleDownDelayRevisionLimit")
	if errs := atLeast(lp, limit, 0); len(errs) > 0 {
		return errs
	}
	if history := valueOr(s.RevisionHistoryLimit, DefaultRevisionHistoryLimit); limit != nil && *limit > history {
		return field.ErrorList{field.Invalid(lp, *limit, fmt.Sprintf("must not be greater than spec.revisionHistoryLimit (%d)", history))}
	}
	return nil
}

func validateCanary(s *RolloutSpec, c *CanaryStrategy, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, serviceName(p.Child("canaryService"), c.CanaryService)...)
	errs = append(errs, serviceName(p.Child("stableService"), c.StableService)...)
	if c.StableService != "" && c.StableService == c.CanaryService {
		errs = append(errs, field.Invalid(p.Child("stableService"), c.StableService, "must differ from canaryService"))
	}

	surge, _, surgeOK, surgeErrs := intOrPercent(p.Child("maxSurge"), c.MaxSurge, false)
	unavailable, _, unavailableOK, unavailableErrs := intOrPercent(p.Child("maxUnavailable"), c.MaxUnavailable, true)
	errs = append(errs, surgeErrs...)
	errs = append(errs, unavailableErrs...)
	// Unset values default to 25%, so only two explicit zeros collide.
	if surgeOK && unavailableOK && surge == 0 && unavailable == 0 {
		errs = append(errs, field.Invalid(p.Child("maxSurge"), c.MaxSurge, "may not be 0 when maxUnavailable is also 0"))
	}

	tr := c.TrafficRouting
	if tr == nil {
		if c.ScaleDownDelaySeconds != nil {
			errs = append(errs, field.Forbidden(p.Child("scaleDownDelaySeconds"), "requires trafficRouting"))
		}
		if c.DynamicStableScale {
			errs = append(errs, field.Forbidden(p.Child("dynamicStableScale"), "requires trafficRouting"))
		}
	} else {
		if c.DynamicStableScale && c.ScaleDownDelaySeconds != nil {
			errs = append(errs, field.Forbidden(p.Child("dynamicStableScale"), "may not be set with scaleDownDelaySeconds"))
		}
		errs = append(errs, validateTrafficRouting(c, p)...)
	}
	errs = append(errs, atLeast(p.Child("scaleDownDelaySeconds"), c.ScaleDownDelaySeconds, 0)...)
	errs = append(errs, atLeast(p.Child("abortScaleDownDelaySeconds"), c.AbortScaleDownDelaySeconds, 0)...)
	errs = append(errs, atLeast(p.Child("scaleDownDelayRevisionLimit"), c.ScaleDownDelayRevisionLimit, 0)...)
	errs = append(errs, atLeast(p.Child("minPodsPerReplicaSet"), c.MinPodsPerReplicaSet, 1)...)
	if c.PingPong != nil {
		errs = append(errs, field.Forbidden(p.Child("pingPong"), "not supported by Sluice"))
	}

	for i := range c.Steps {
		errs = append(errs, validateStep(s, i, p.Child("steps").Index(i))...)
	}
	if a := c.Analysis; a != nil {
		ap := p.Child("analysis")
		errs = append(errs, validateRolloutAnalysis(&a.RolloutAnalysis, ap)...)
		if a.StartingStep != nil {
			switch n := int32(len(c.Steps)); {
			case n == 0:
				errs = append(errs, field.Invalid(ap.Child("startingStep"), *a.StartingStep, "must not be set without steps"))
			default:
				errs = append(errs, between(ap.Child("startingStep"), a.StartingStep, 0, n-1)...)
			}
		}
	}
	errs = append(errs, validateAntiAffinity(c.AntiAffinity, p.Child("antiAffinity"))...)
	return errs
}

// stepActions returns the names of the actions step sets, in field order.
func stepActions(step *CanaryStep) []string {
	names := []string{"setWeight", "pause", "experiment", "analysis", "setCanaryScale", "setHeaderRoute", "setMirrorRoute", "plugin"}
	set := []bool{
		step.SetWeight != nil, step.Pause != nil, step.Experiment != nil, step.Analysis != nil,
		step.SetCanaryScale != nil, step.SetHeaderRoute != nil, step.SetMirrorRoute != nil, step.Plugin != nil,
	}
	var out []string
	for i, name := range names {
		if set[i] {
			out = append(out, name)
		}
	}
	return out
}

// validateStep checks step index of s's canary strategy; some rules depend
// on the steps before it.
func validateStep(s *RolloutSpec, index int, p *field.Path) field.ErrorList {
	c := s.Strategy.Canary
	step := &c.Steps[index]
	var errs field.ErrorList
	switch actions := stepActions(step); len(actions) {
	case 0:
		errs = append(errs, field.Required(p, "a step must set exactly one action: "+stepActionList))
	case 1:
	default:
		errs = append(errs, field.Invalid(p, strings.Join(actions, ", "), "a step must set exactly one action: "+stepActionList))
	}

	if step.SetWeight != nil {
		errs = append(errs, between(p.Child("setWeight"), step.SetWeight, 0, c.TrafficRouting.MaxWeight())...)
	}
	if step.Pause != nil {
		if _, err := step.Pause.Length(); err != nil {
			errs = append(errs, field.Invalid(p.Child("pause", "duration"), step.Pause.Duration, err.Error()))
		}
	}
	if step.Experiment != nil {
		errs = append(errs, validateExperiment(step.Experiment, c, index, s.Template.Labels, p.Child("experiment"))...)
	}
	if step.Plugin != nil {
		errs = append(errs, field.Forbidden(p.Child("plugin"), "step plugins are not supported by Sluice"))
	}
	if step.Analysis != nil {
		errs = append(errs, validateRolloutAnalysis(step.Analysis, p.Child("analysis"))...)
	}
	if sc := step.SetCanaryScale; sc != nil {
		sp := p.Child("setCanaryScale")
		if c.TrafficRouting == nil {
			errs = append(errs, field.Forbidden(sp, "requires trafficRouting"))
		}
		errs = append(errs, exactlyOne(sp, []string{"weight", "replicas", "matchTrafficWeight"},
			[]bool{sc.Weight != nil, sc.Replicas != nil, sc.MatchTrafficWeight})...)
		errs = append(errs, between(sp.Child("weight"), sc.Weight, 0, 100)...)
		errs = append(errs, atLeast(sp.Child("replicas"), sc.Replicas, 0)...)
	}
	if step.SetHeaderRoute != nil {
		errs = append(errs, validateHeaderRoute(step.SetHeaderRoute, c.TrafficRouting, p.Child("setHeaderRoute"))...)
	}
	if step.SetMirrorRoute != nil {
		errs = append(errs, validateMirrorRoute(step.SetMirrorRoute, c.TrafficRouting, p.Child("setMirrorRoute"))...)
	}
	return errs
}

const stepActionList = "setWeight, pause, experiment, analysis, setCanaryScale, setHeaderRoute, setMirrorRoute or plugin"

// validateRolloutAnalysis checks a reference to analysis templates. Whether
// the templates exist is not known here: they may be applied separately.
func validateRolloutAnalysis(a *RolloutAnalysis, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	tp := p.Child("templates")
	if len(a.Templates) == 0 {
		errs = append(errs, field.Required(tp, "must reference at least one analysis template"))
	}
	for i, t := range a.Templates {
		if t.TemplateName == "" {
			errs = append(errs, field.Required(tp.Index(i).Child("templateName"), ""))
		}
	}
	errs = append(errs, validateRunArgs(a.Args, p.Child("args"))...)
	errs = append(errs, validateDryRun(a.DryRun, p.Child("dryRun"))...)
	errs = append(errs, validateRetention(a.MeasurementRetention, p.Child("measurementRetention"))...)
	return errs
}

// validateRunArgs checks the arguments a rollout passes to an analysis run:
// unique names, and a value or one valueFrom source.
func validateRunArgs(args []AnalysisRunArgument, p *field.Path) field.ErrorList {
	errs := runArgNames(args, p)
	for i, arg := range args {
		if arg.ValueFrom == nil {
			continue
		}
		vp := p.Index(i).Child("valueFrom")
		if arg.Value != "" {
			errs = append(errs, field.Forbidden(vp, "may not be set with value"))
		}
		vf := arg.ValueFrom
		errs = append(errs, exactlyOne(vp, []string{"podTemplateHashValue", "fieldRef"}, []bool{vf.PodTemplateHashValue != nil, vf.FieldRef != nil})...)
		if h := vf.PodTemplateHashValue; h != nil && *h != Stable && *h != Latest {
			errs = append(errs, field.NotSupported(vp.Child("podTemplateHashValue"), *h, []ValueFromPodTemplateHash{Stable, Latest}))
		}
		if vf.FieldRef != nil && vf.FieldRef.FieldPath == "" {
			errs = append(errs, field.Required(vp.Child("fieldRef", "fieldPath"), ""))
		}
	}
	return errs
}

// runArgNames checks that the arguments at p have names, each once.
func runArgNames(args []AnalysisRunArgument, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, arg := range args {
		errs = append(errs, uniqueName(p.Index(i).Child("name"), arg.Name, names)...)
	}
	return errs
}

// uniqueName checks that a name (of an argument, an experiment template or
// analysis) is set and not already in names, and adds it.
func uniqueName(p *field.Path, name string, names sets.Set[string]) field.ErrorList {
	defer names.Insert(name)
	switch {
	case name == "":
		return field.ErrorList{field.Required(p, "")}
	case names.Has(name):
		return field.ErrorList{field.Duplicate(p, name)}
	}
	return nil
}

func validateAntiAffinity(a *AntiAffinity, p *field.Path) field.ErrorList {
	if a == nil {
		return nil
	}
	preferred := a.PreferredDuringSchedulingIgnoredDuringExecution
	errs := exactlyOne(p, []string{"preferredDuringSchedulingIgnoredDuringExecution", "requiredDuringSchedulingIgnoredDuringExecution"},
		[]bool{preferred != nil, a.RequiredDuringSchedulingIgnoredDuringExecution != nil})
	if preferred != nil {
		errs = append(errs, between(p.Child("preferredDuringSchedulingIgnoredDuringExecution", "weight"), &preferred.Weight, 1, 100)...)
	}
	return errs
}

func valueOr[T any](p *T, v T) T {
	if p == nil {
		return v
	}
	return *p
}

// present reports whether a raw JSON field was given a value.
func present(raw []byte) bool {
	return len(raw) > 0 && string(raw) != "null"
}
