// Package rolloutobj is the Rollout object (Argo Rollouts' CRD) that a
// rollout may have in the cluster, or the Experiment object of a
// standalone experiment, as the owner of what Sluice creates for it: its
// ReplicaSets and Services (replicas' kube backend) and its measurement
// Jobs (the analyzer's job provider).
package rolloutobj

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/sluicehq/sluice/pkg/events"
)

// Resource is the Rollout CRD.
var Resource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// ExperimentResource is the Experiment CRD.
var ExperimentResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "experiments"}

// Kind names the object a task's Ref names by its OwnerKind
// (tasks.Task.OwnerKind): events.KindExperiment for a standalone
// Experiment, "Rollout" for anything else (OwnerKind is empty for a
// rollout).
func Kind(ownerKind string) string {
	if ownerKind == events.KindExperiment {
		return events.KindExperiment
	}
	return "Rollout"
}

// ResourceOf is the resource of the objects of kind (Kind's values).
func ResourceOf(kind string) schema.GroupVersionResource {
	if kind == events.KindExperiment {
		return ExperimentResource
	}
	return Resource
}

// OwnerReference reads the object of kind (a Rollout, or an Experiment;
// see Kind) namespace/name and returns a reference to it for an object it
// owns: its controller, blocking its deletion until the object is gone,
// when controller is set (which needs update on <resource>/finalizers); a
// plain owner otherwise. It returns nil, nil when there is no such object:
// a rollout or experiment that reached Sluice only through the bus, or a
// cluster without the CRD. Any other error is the API server's, wrapped
// with the object's kind and name.
func OwnerReference(ctx context.Context, c dynamic.Interface, kind, namespace, name string, controller bool) (*metav1.OwnerReference, error) {
	kind = Kind(kind)
	res := ResourceOf(kind)
	obj, err := c.Resource(res).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read %s %s/%s: %w", kind, namespace, name, err)
	}
	return &metav1.OwnerReference{
		APIVersion: res.GroupVersion().String(), Kind: kind,
		Name: obj.GetName(), UID: obj.GetUID(), Controller: &controller, BlockOwnerDeletion: &controller,
	}, nil
}
