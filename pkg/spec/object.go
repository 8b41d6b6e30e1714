package spec

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The API group and version Sluice reads, Argo Rollouts' own.
const (
	Group      = "argoproj.io"
	Version    = "v1alpha1"
	APIVersion = Group + "/" + Version
)

// The kinds Sluice reads.
const (
	KindRollout                 = "Rollout"
	KindAnalysisTemplate        = "AnalysisTemplate"
	KindClusterAnalysisTemplate = "ClusterAnalysisTemplate"
	KindAnalysisRun             = "AnalysisRun"
	KindExperiment              = "Experiment"
)

// Object is a decoded manifest: a *Rollout, *AnalysisTemplate,
// *ClusterAnalysisTemplate, *AnalysisRun or *Experiment. Callers switch on the type.
type Object interface {
	// GetName and GetNamespace return metadata.name and metadata.namespace.
	GetName() string
	GetNamespace() string
	// GroupVersionKind returns apiVersion and kind as written.
	GroupVersionKind() schema.GroupVersionKind
	// SetDefaults sets every field the manifest leaves unset to the value
	// Argo Rollouts would use, and never changes a field that is set.
	SetDefaults()
	// Validate returns every problem with the object, each with its field
	// path; it is empty when the object is valid. It reads the object as
	// written: call it before SetDefaults, which keeps a valid object valid.
	Validate() field.ErrorList
}

var (
	_ Object = (*Rollout)(nil)
	_ Object = (*AnalysisTemplate)(nil)
	_ Object = (*ClusterAnalysisTemplate)(nil)
	_ Object = (*AnalysisRun)(nil)
	_ Object = (*Experiment)(nil)
)

// newObject returns a new, empty object of kind, or nil when Sluice does
// not read that kind.
func newObject(kind string) Object {
	switch kind {
	case KindRollout:
		return &Rollout{}
	case KindAnalysisTemplate:
		return &AnalysisTemplate{}
	case KindClusterAnalysisTemplate:
		return &ClusterAnalysisTemplate{}
	case KindAnalysisRun:
		return &AnalysisRun{}
	case KindExperiment:
		return &Experiment{}
	}
	return nil
}

// kindOf returns o's kind from its Go type, so that objects built in code
// without apiVersion and kind are named correctly.
func kindOf(o Object) string {
	switch o.(type) {
	case *Rollout:
		return KindRollout
	case *AnalysisTemplate:
		return KindAnalysisTemplate
	case *ClusterAnalysisTemplate:
		return KindClusterAnalysisTemplate
	case *AnalysisRun:
		return KindAnalysisRun
	case *Experiment:
		return KindExperiment
	}
	return o.GroupVersionKind().Kind
}

// Describe names o for people: "Rollout default/web", or
// "ClusterAnalysisTemplate error-rate" for the cluster-scoped kind. An
// unset namespace reads as DefaultNamespace, the namespace SetDefaults
// gives it.
func Describe(o Object) string {
	kind := kindOf(o)
	if kind == KindClusterAnalysisTemplate {
		return kind + " " + o.GetName()
	}
	ns := o.GetNamespace()
	if ns == "" {
		ns = DefaultNamespace
	}
	return kind + " " + ns + "/" + o.GetName()
}
