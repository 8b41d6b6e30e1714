package spec

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// jobRestartPolicies are the restart policies Kubernetes accepts in a
// Job's pod template.
var jobRestartPolicies = []corev1.RestartPolicy{corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure}

// validateJob returns every problem of a job provider block at p: what the
// API server would refuse when the Job is created (Argo Rollouts' schema
// lets these through, and its measurement then fails at every attempt).
// Values holding an {{args.NAME}} placeholder are checked once the run
// substitutes them, by the API server.
func validateJob(m *JobMetric, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateJobMeta(m.Metadata, p.Child("metadata"))...)
	sp := p.Child("spec")
	s := &m.Spec
	errs = append(errs, positive(sp.Child("activeDeadlineSeconds"), s.ActiveDeadlineSeconds)...)
	errs = append(errs, atLeast(sp.Child("backoffLimit"), s.BackoffLimit, 0)...)
	errs = append(errs, atLeast(sp.Child("completions"), s.Completions, 0)...)
	errs = append(errs, atLeast(sp.Child("parallelism"), s.Parallelism, 0)...)
	errs = append(errs, atLeast(sp.Child("ttlSecondsAfterFinished"), s.TTLSecondsAfterFinished, 0)...)

	tp := sp.Child("template")
	errs = append(errs, validateJobMeta(s.Template.ObjectMeta, tp.Child("metadata"))...)
	ps := &s.Template.Spec
	rp := tp.Child("spec", "restartPolicy")
	switch {
	case ps.RestartPolicy == "":
		errs = append(errs, field.Required(rp, "must be Never or OnFailure in a Job"))
	case !isPlaceholder(string(ps.RestartPolicy)) && !slices.Contains(jobRestartPolicies, ps.RestartPolicy):
		errs = append(errs, field.NotSupported(rp, ps.RestartPolicy, jobRestartPolicies))
	}
	cp := tp.Child("spec", "containers")
	if len(ps.Containers) == 0 {
		errs = append(errs, field.Required(cp, "must have at least one container"))
	}
	names := sets.New[string]()
	for i, c := range ps.Containers {
		np := cp.Index(i).Child("name")
		switch {
		case c.Name == "":
			errs = append(errs, field.Required(np, ""))
		case names.Has(c.Name):
			errs = append(errs, field.Duplicate(np, c.Name))
		case !isPlaceholder(c.Name):
			errs = append(errs, dnsLabel(np, c.Name)...)
		}
		names.Insert(c.Name)
		if c.Image == "" {
			errs = append(errs, field.Required(cp.Index(i).Child("image"), ""))
		}
	}
	return errs
}

// validateJobMeta checks the labels and annotations of a Job or of its
// pod template, leaving out the entries with a placeholder.
func validateJobMeta(m metav1.ObjectMeta, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, metav1validation.ValidateLabels(concrete(m.Labels), p.Child("labels"))...)
	return append(errs, apivalidation.ValidateAnnotations(concrete(m.Annotations), p.Child("annotations"))...)
}

// concrete returns the entries of m whose key and value hold no
// placeholder.
func concrete(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if !isPlaceholder(k) && !isPlaceholder(v) {
			out[k] = v
		}
	}
	return out
}

// positive checks *v > 0 when v is set.
func positive(p *field.Path, v *int64) field.ErrorList {
	if v == nil || *v > 0 {
		return nil
	}
	return field.ErrorList{field.Invalid(p, *v, "must be greater than 0")}
}
