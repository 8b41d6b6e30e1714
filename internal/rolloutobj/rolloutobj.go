// Package rolloutobj is the Rollout object (Argo Rollouts' CRD) that a
// rollout may have in the cluster, as the owner of what Sluice creates for
// it: its ReplicaSets (replicas' kube backend) and its measurement Jobs
// (the analyzer's job provider).
package rolloutobj

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Resource is the Rollout CRD.
var Resource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// OwnerReference reads the Rollout namespace/name and returns a reference
// to it for an object it owns: its controller, blocking its deletion until
// the object is gone, when controller is set (which needs update on
// rollouts/finalizers); a plain owner otherwise. It returns nil, nil when
// there is no such object: a rollout that reached Sluice only through the
// bus, or a cluster without the CRD. Any other error is the API server's,
// wrapped with the Rollout's name.
func OwnerReference(ctx context.Context, c dynamic.Interface, namespace, name string, controller bool) (*metav1.OwnerReference, error) {
	ro, err := c.Resource(Resource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read Rollout %s/%s: %w", namespace, name, err)
	}
	return &metav1.OwnerReference{
		APIVersion: Resource.GroupVersion().String(), Kind: "Rollout",
		Name: ro.GetName(), UID: ro.GetUID(), Controller: &controller, BlockOwnerDeletion: &controller,
	}, nil
}
