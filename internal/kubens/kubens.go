// Package kubens tells, from the API server's answer to a create, that the
// object's namespace is gone or going: the answer every worker writing to
// Kubernetes (the replicas backend, the traffic routers) turns into the end
// of its task instead of a retry, since creating the object again cannot
// succeed.
package kubens

import (
	"errors"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Gone reports whether err, from creating an object, says that its
// namespace does not exist (404 naming the namespace) or is being deleted
// (403 with the NamespaceTerminating cause).
func Gone(err error) bool {
	if err == nil {
		return false
	}
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		return true
	}
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d != nil && d.Kind == "namespaces"
}
