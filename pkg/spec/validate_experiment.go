package spec

import (
	"fmt"
	"slices"
	"strings"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ExperimentWeightRouters are the routers, by trafficRouting key, that can
// give an experiment template a share of the traffic: the kube routers
// that send it to the template's Service (Argo Rollouts also allows router
// plugins; Sluice's NGINX and Gateway API routers do not route to
// experiment templates, so a weight with them is refused here rather than
// by the router mid-update). On the local platform the local proxy stands
// in for whichever router the rollout names and supports weights whatever
// it is, but the same list applies there, so that a manifest means the
// same on both platforms. The kube routers' refusal names this list.
var ExperimentWeightRouters = []string{"alb", "istio", "smi"}

// Routers returns the trafficRouting keys of the routers t configures, in
// the order nginx, alb, istio, smi, plugins["argoproj-labs/gatewayAPI"].
func (t *TrafficRouting) Routers() []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, r := range []struct {
		key string
		set bool
	}{{"nginx", t.Nginx != nil}, {"alb", t.ALB != nil}, {"istio", t.Istio != nil}, {"smi", t.SMI != nil}} {
		if r.set {
			out = append(out, r.key)
		}
	}
	if _, ok := t.Plugins[GatewayAPIPlugin]; ok {
		out = append(out, gatewayAPIRouter)
	}
	return out
}

// weightWithoutTrafficRouting is Argo Rollouts' message for a template
// weight on a rollout without trafficRouting.
const weightWithoutTrafficRouting = "Experiment template weight cannot be set unless TrafficRouting is enabled"

// maxPodHashLen is the longest pod template hash: a 32-bit hash written in
// decimal and encoded letter by letter.
const maxPodHashLen = 10

// validateExperiment checks the experiment of c.Steps[index] (exp).
// podLabels are the labels of the rollout's pod template.
func validateExperiment(exp *RolloutExperimentStep, c *CanaryStrategy, index int, podLabels map[string]string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	tp := p.Child("templates")
	if len(exp.Templates) == 0 {
		errs = append(errs, field.Required(tp, "must list at least one template"))
	}
	templates := sets.New[string]()
	services := map[string]string{} // Service name -> template
	var weights int32
	weighted := false
	for i := range exp.Templates {
		t := &exp.Templates[i]
		errs = append(errs, validateExperimentTemplate(t, c, podLabels, templates, services, tp.Index(i))...)
		if t.Weight != nil {
			weighted = true
			weights += max(*t.Weight, 0)
		}
	}
	if weighted && c.TrafficRouting != nil {
		errs = append(errs, experimentWeights(weights, c, index, tp)...)
	}
	run := experimentRun{
		Duration: exp.Duration, ScaleDownDelaySeconds: exp.ScaleDownDelaySeconds, DryRun: exp.DryRun,
		Analyses: exp.Analyses, AnalysisRunMetadata: exp.AnalysisRunMetadata, Templates: templates,
	}
	return append(errs, run.validate(p)...)
}

// experimentRun is what an experiment step and a standalone Experiment
// share beyond their templates, and validate checks alike.
type experimentRun struct {
	Duration              DurationString
	ScaleDownDelaySeconds *int32
	DryRun                []DryRun
	Analyses              []RolloutExperimentStepAnalysisTemplateRef
	AnalysisRunMetadata   AnalysisRunMetadata
	// Templates are the names of the experiment's templates, which the
	// analyses' argument values may name.
	Templates sets.Set[string]
	// Standalone is set for an Experiment of its own, whose runs are
	// named <Name>-<analysis> and whose arguments have no rollout to take
	// a valueFrom from. A step's experiment name is only known at run time.
	Standalone bool
	Name       string
}

// validate checks x, whose fields are at p.
func (x experimentRun) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if x.Duration != "" {
		if _, err := x.Duration.Duration(); err != nil {
			errs = append(errs, field.Invalid(p.Child("duration"), x.Duration, err.Error()))
		}
	}
	errs = append(errs, atLeast(p.Child("scaleDownDelaySeconds"), x.ScaleDownDelaySeconds, 0)...)
	errs = append(errs, validateDryRun(x.DryRun, p.Child("dryRun"))...)
	mp := p.Child("analysisRunMetadata")
	errs = append(errs, metav1validation.ValidateLabels(x.AnalysisRunMetadata.Labels, mp.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(x.AnalysisRunMetadata.Annotations, mp.Child("annotations"))...)

	names := sets.New[string]()
	for i, a := range x.Analyses {
		ap := p.Child("analyses").Index(i)
		np := ap.Child("name")
		if nameErrs := uniqueName(np, a.Name, names); len(nameErrs) > 0 {
			errs = append(errs, nameErrs...)
		} else if msgs := validation.IsDNS1123Subdomain(a.Name); len(msgs) > 0 {
			// The run is named <experiment>-<name>, an object name.
			errs = append(errs, field.Invalid(np, a.Name, strings.Join(msgs, "; ")))
		} else if run := x.Name + "-" + a.Name; x.Name != "" && len(run) > validation.DNS1123SubdomainMaxLength {
			errs = append(errs, field.Invalid(np, a.Name, fmt.Sprintf("the analysis run is named %s-%s, which must be no more than %d characters (%d): shorten metadata.name or this name",
				x.Name, a.Name, validation.DNS1123SubdomainMaxLength, len(run))))
		}
		if a.TemplateName == "" {
			errs = append(errs, field.Required(ap.Child("templateName"), ""))
		}
		errs = append(errs, x.validateArgs(a.Args, ap.Child("args"))...)
	}
	return errs
}

// validateArgs checks the arguments of one of x's analyses, at p.
func (x experimentRun) validateArgs(args []AnalysisRunArgument, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if x.Standalone {
		errs = runArgNames(args, p)
		for i, arg := range args {
			if arg.ValueFrom != nil {
				// Argo Rollouts passes on only the value of an Experiment's
				// argument, so its run fails for want of the argument.
				errs = append(errs, field.Forbidden(p.Index(i).Child("valueFrom"), fmt.Sprintf("an Experiment has no rollout to take a value from (Argo Rollouts drops valueFrom here, leaving the argument without a value): set value, which may use {{%s}}",
					ExperimentPodTemplateHash("NAME"))))
			}
		}
	} else {
		errs = validateRunArgs(args, p)
	}
	for i, arg := range args {
		errs = append(errs, experimentVariables(arg.Value, x.Templates, p.Index(i).Child("value"))...)
	}
	return errs
}

// Validate checks a standalone Experiment as Argo Rollouts does (its
// controller refuses a template without a selector, with an empty one, or
// with minReadySeconds above progressDeadlineSeconds, and a template name
// empty or repeated; Kubernetes refuses the rest when the ReplicaSets,
// Services and runs are made), and what Sluice needs of it: its name is a
// DNS-1123 label (its commands and status share the subjects of
// rollouts), the names made from it fit, and the analyses' arguments are
// values whose variables name its templates. See the package
// documentation for the list.
func (e *Experiment) Validate() field.ErrorList {
	errs := validateObjectMeta(&e.ObjectMeta, true)
	p := field.NewPath("spec")
	s := &e.Spec
	tp := p.Child("templates")
	if len(s.Templates) == 0 {
		errs = append(errs, field.Required(tp, "must list at least one template"))
	}
	templates := sets.New[string]()
	services := map[string]string{} // Service name -> template
	for i := range s.Templates {
		errs = append(errs, e.validateTemplate(&s.Templates[i], templates, services, tp.Index(i))...)
	}
	errs = append(errs, atLeast(p.Child("progressDeadlineSeconds"), s.ProgressDeadlineSeconds, 1)...)
	errs = append(errs, validateRetention(s.MeasurementRetention, p.Child("measurementRetention"))...)
	run := experimentRun{
		Duration: s.Duration, ScaleDownDelaySeconds: s.ScaleDownDelaySeconds, DryRun: s.DryRun,
		Analyses: s.Analyses, AnalysisRunMetadata: s.AnalysisRunMetadata, Templates: templates,
		Standalone: true, Name: e.objectPrefix(),
	}
	return append(errs, run.validate(p)...)
}

// objectPrefix is the name that the names of e's ReplicaSets, Services and
// runs start with: e's name, or "" when it is invalid (which Validate
// reports) and their names cannot be checked.
func (e *Experiment) objectPrefix() string {
	if len(validation.IsDNS1123Label(e.Name)) > 0 {
		return ""
	}
	return e.Name
}

// validateTemplate checks template t of e, at p. templates and services
// hold the names of the templates and Services before it, and get its own.
func (e *Experiment) validateTemplate(t *TemplateSpec, templates sets.Set[string], services map[string]string, p *field.Path) field.ErrorList {
	experiment := e.objectPrefix()
	np := p.Child("name")
	errs := templateName(np, t.Name, templates)
	// Argo names the template's ReplicaSet, and the Service it names after
	// the ReplicaSet, <experiment>-<template>; a Service name is a
	// DNS-1035 label.
	rs := experiment + "-" + t.Name
	if len(errs) == 0 && experiment != "" && len(rs) > validation.DNS1035LabelMaxLength {
		errs = append(errs, field.Invalid(np, t.Name, fmt.Sprintf("the template's ReplicaSet (and its Service) is named %s, which must be no more than %d characters (%d): shorten metadata.name or this name",
			rs, validation.DNS1035LabelMaxLength, len(rs))))
	}
	errs = append(errs, atLeast(p.Child("replicas"), t.Replicas, 0)...)
	errs = append(errs, atLeast(p.Child("minReadySeconds"), &t.MinReadySeconds, 0)...)
	switch deadline := e.Spec.ProgressDeadlineSeconds; {
	case deadline == nil && t.MinReadySeconds > DefaultExperimentProgressDeadlineSeconds:
		errs = append(errs, field.Invalid(p.Child("minReadySeconds"), t.MinReadySeconds,
			fmt.Sprintf("must not be greater than spec.progressDeadlineSeconds, which defaults to %d", DefaultExperimentProgressDeadlineSeconds)))
	case deadline != nil && *deadline > 0 && t.MinReadySeconds > *deadline: // a deadline below 1 is reported on its own
		errs = append(errs, field.Invalid(p.Child("minReadySeconds"), t.MinReadySeconds, fmt.Sprintf("must not be greater than spec.progressDeadlineSeconds (%d)", *deadline)))
	}
	errs = append(errs, validatePodTemplate(t.Selector, &t.Template, p)...)
	if sv := t.Service; sv != nil {
		sp := p.Child("service", "name")
		switch {
		case sv.Name != "":
			errs = append(errs, serviceName(sp, sv.Name)...)
			errs = append(errs, templateService(sp, sv.Name, t.Name, services)...)
		case experiment != "" && t.Name != "" && (rs[0] < 'a' || rs[0] > 'z'):
			errs = append(errs, field.Required(sp, fmt.Sprintf("the Service is named after the template's ReplicaSet, %s, and a Service name must start with a letter: set service.name", rs)))
		case experiment != "" && t.Name != "":
			if other, ok := services[rs]; ok {
				errs = append(errs, field.Required(sp, fmt.Sprintf("the Service is named after the template's ReplicaSet, %s, the name template %q gives its Service: set service.name", rs, other)))
			} else {
				services[rs] = t.Name
			}
		}
	}
	return errs
}

// templateService checks that no template before template (at p) names its
// Service, name, and records it in services (Service name -> template).
func templateService(p *field.Path, name, template string, services map[string]string) field.ErrorList {
	if other, ok := services[name]; ok {
		return field.ErrorList{field.Invalid(p, name, fmt.Sprintf("template %q already names this Service", other))}
	}
	services[name] = template
	return nil
}

// validateExperimentTemplate checks one template of an experiment step.
// templates and services hold the names of the templates and Services
// before it in the step, and get its own.
func validateExperimentTemplate(t *RolloutExperimentTemplate, c *CanaryStrategy, podLabels map[string]string,
	templates sets.Set[string], services map[string]string, p *field.Path,
) field.ErrorList {
	errs := templateName(p.Child("name"), t.Name, templates)
	switch t.SpecRef {
	case SpecRefStable, SpecRefCanary:
	case "":
		errs = append(errs, field.Required(p.Child("specRef"), "must be stable or canary"))
	default:
		errs = append(errs, field.NotSupported(p.Child("specRef"), t.SpecRef, []ReplicaSetSpecRef{SpecRefStable, SpecRefCanary}))
	}
	errs = append(errs, atLeast(p.Child("replicas"), t.Replicas, 0)...)
	errs = append(errs, metav1validation.ValidateLabels(t.Metadata.Labels, p.Child("metadata", "labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(t.Metadata.Annotations, p.Child("metadata", "annotations"))...)
	errs = append(errs, validateExperimentSelector(t, podLabels, p.Child("selector"))...)
	if s := t.Service; s != nil && s.Name != "" {
		sp := p.Child("service", "name")
		errs = append(errs, serviceName(sp, s.Name)...)
		if s.Name == c.CanaryService || s.Name == c.StableService {
			errs = append(errs, field.Invalid(sp, s.Name, "must differ from the rollout's canaryService and stableService"))
		} else {
			errs = append(errs, templateService(sp, s.Name, t.Name, services)...)
		}
	}
	if t.Weight != nil {
		errs = append(errs, experimentWeight(t.Weight, c.TrafficRouting, p.Child("weight"))...)
	}
	return errs
}

// templateName checks an experiment template's name: set, unique, and a
// DNS-1123 label, because it ends the name of the template's ReplicaSet and
// of its Service.
func templateName(p *field.Path, name string, names sets.Set[string]) field.ErrorList {
	if errs := uniqueName(p, name, names); len(errs) > 0 {
		return errs
	}
	return dnsLabel(p, name)
}

// validateExperimentSelector checks a template's selector as Argo Rollouts
// applies it: metadata.labels are added to the pods' labels and to the
// selector's matchLabels, and the result must select the pods, whose labels
// are the rollout template's with metadata.labels over them.
func validateExperimentSelector(t *RolloutExperimentTemplate, podTemplate map[string]string, p *field.Path) field.ErrorList {
	if t.Selector == nil {
		return nil
	}
	sel := t.Selector.DeepCopy()
	pods := labels.Merge(podTemplate, t.Metadata.Labels)
	if len(t.Metadata.Labels) > 0 {
		sel.MatchLabels = labels.Merge(sel.MatchLabels, t.Metadata.Labels)
	}
	selector, errs := labelSelector(sel, p)
	if selector != nil && !selector.Matches(labels.Set(pods)) {
		errs = append(errs, field.Invalid(p, t.Selector, fmt.Sprintf("does not select the template's pods, labelled %s (spec.template.metadata.labels with this template's metadata.labels)", labels.Set(pods))))
	}
	return errs
}

// experimentWeight checks one template's weight: Argo's rules, and a router
// that can route to it.
func experimentWeight(w *int32, tr *TrafficRouting, p *field.Path) field.ErrorList {
	if tr == nil {
		return field.ErrorList{field.Invalid(p, *w, weightWithoutTrafficRouting)}
	}
	errs := between(p, w, 0, tr.MaxWeight())
	var unsupported []string
	for _, r := range tr.Routers() {
		if !slices.Contains(ExperimentWeightRouters, r) {
			unsupported = append(unsupported, r)
		}
	}
	if len(unsupported) > 0 {
		errs = append(errs, field.Invalid(p, *w, fmt.Sprintf("trafficRouting.%s cannot route to an experiment template; a weight needs trafficRouting to name only routers that can: %s",
			strings.Join(unsupported, ", trafficRouting."), list(ExperimentWeightRouters))))
	}
	return errs
}

// experimentWeights checks that the templates' weights (sum) and the
// canary's weight at step index leave the stable a share: they come out of
// the stable's.
func experimentWeights(sum int32, c *CanaryStrategy, index int, p *field.Path) field.ErrorList {
	limit := c.TrafficRouting.MaxWeight()
	canary, from := int32(0), "no setWeight before this step"
	for i := index - 1; i >= 0; i-- {
		if w := c.Steps[i].SetWeight; w != nil {
			canary, from = *w, fmt.Sprintf("steps[%d].setWeight", i)
			break
		}
	}
	if sum+canary <= limit {
		return nil
	}
	return field.ErrorList{field.Invalid(p, sum, fmt.Sprintf("the templates' weights (%d) and the canary's weight at this step (%d, %s) add up to more than the total weight %d",
		sum, canary, from, limit))}
}

// experimentVariables checks the placeholders of an experiment analysis's
// argument value: as in Argo Rollouts, each must be an experiment variable,
// and a template variable must name a template of the step.
func experimentVariables(value string, templates sets.Set[string], p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, m := range experimentPlaceholder.FindAllStringSubmatch(value, -1) {
		name := strings.TrimSpace(m[1])
		template, ok := experimentVariable(name)
		switch {
		case !ok:
			errs = append(errs, field.Invalid(p, value, fmt.Sprintf("unknown variable {{%s}}: an experiment resolves {{%s}}, {{%s}} and {{%s}}",
				name, ExperimentPodTemplateHash("NAME"), ExperimentReplicaSetName("NAME"), ExperimentAvailableAt)))
		case template != "" && !templates.Has(template):
			errs = append(errs, field.Invalid(p, value, fmt.Sprintf("{{%s}} names no template of this experiment (templates: %s)", name, list(sets.List(templates.Clone().Delete(""))))))
		}
	}
	return errs
}

// validateExperimentServices checks the names of the Services Argo Rollouts
// names after an experiment template's ReplicaSet, which it does for a
// template with a weight, or with a service without a name. The ReplicaSet
// is <rollout>-<pod hash>-<revision>-<step>-<template>, and a Service name is
// a DNS-1035 label of at most 63 characters. The hash and the revision are
// only known at run time, so the check takes the longest hash at revision 1:
// a name longer than that is sure to be refused.
func validateExperimentServices(r *Rollout) field.ErrorList {
	c := r.Spec.Strategy.Canary
	if c == nil {
		return nil
	}
	var errs field.ErrorList
	for i, step := range c.Steps {
		if step.Experiment == nil {
			continue
		}
		for j, t := range step.Experiment.Templates {
			if t.Name == "" || !(t.Weight != nil || (t.Service != nil && t.Service.Name == "")) {
				continue
			}
			p := field.NewPath("spec", "strategy", "canary").Child("steps").Index(i).Child("experiment", "templates").Index(j).Child("service", "name")
			const pattern = "%s-<pod hash>-<revision>-%d-%s"
			shortest := len(r.Name) + 1 + maxPodHashLen + 1 + 1 + 1 + len(fmt.Sprint(i)) + 1 + len(t.Name)
			switch {
			case shortest > validation.DNS1035LabelMaxLength:
				errs = append(errs, field.Required(p, fmt.Sprintf("the Service is named after the template's ReplicaSet, "+pattern+", which is longer than %d characters (%d at revision 1): set service.name",
					r.Name, i, t.Name, validation.DNS1035LabelMaxLength, shortest)))
			case r.Name != "" && (r.Name[0] < 'a' || r.Name[0] > 'z'):
				errs = append(errs, field.Required(p, fmt.Sprintf("the Service is named after the template's ReplicaSet, "+pattern+", and a Service name must start with a letter: set service.name",
					r.Name, i, t.Name)))
			}
		}
	}
	return errs
}
