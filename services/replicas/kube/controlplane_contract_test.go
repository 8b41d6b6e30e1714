package kube_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/kube"
	"github.com/sluicehq/sluice/services/replicas/replicastest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// The contract runs against a real API server, controller manager and
// fake nodes (kwok): ReplicaSets, pods and their readiness are Kubernetes'
// own, not a stand-in's.
func TestBackendContractOnAControlPlane(t *testing.T) {
	cp := kubetest.Shared(t)
	replicastest.Run(t, replicastest.Harness{
		New: func(t *testing.T) replicas.Backend {
			b, err := kube.New(kube.Config{Client: cp.Client, Logger: eventstest.Quiet()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), poll.Default)
			defer cancel()
			if err := b.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close(context.Background()) })
			return b
		},
		Namespace: func(t *testing.T) string { return cp.Namespace(t) },
		Pods: func(t *testing.T, _ replicas.Backend, ref events.Ref, hash string) []string {
			pods, err := cp.Client.CoreV1().Pods(ref.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash + "=" + hash})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil {
					out = append(out, p.Name)
				}
			}
			return out
		},
	})
}
