package kubens_test

import (
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sluicehq/sluice/internal/kubens"
)

func TestGone(t *testing.T) {
	terminating := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "web-abc",
		errors.New("unable to create new content in namespace shop because it is being terminated"))
	terminating.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"namespace being deleted", terminating, true},
		{"namespace deleted", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "shop"), true},
		{"wrapped", fmt.Errorf("create: %w", terminating), true},
		{"the object missing", apierrors.NewNotFound(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "web-abc"), false},
		{"forbidden by RBAC", apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "web", errors.New("no")), false},
		{"no error", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kubens.Gone(tt.err); got != tt.want {
				t.Errorf("Gone(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
