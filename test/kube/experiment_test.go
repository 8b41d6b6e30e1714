package kube_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// experimentSets lists the experiment ReplicaSets in the stack's
// namespace as template=ready/replicas, by template.
func (s *stack) experimentSets(t testing.TB) []string {
	t.Helper()
	list, err := s.cp.Client.AppsV1().ReplicaSets(s.ns).List(context.Background(), metav1.ListOptions{})
	must(t, err)
	var out []string
	for _, rs := range list.Items {
		if tpl, ok := rs.Annotations[spec.AnnotationExperimentTemplate]; ok && rs.DeletionTimestamp == nil {
			out = append(out, fmt.Sprintf("%s=%d/%d", tpl, rs.Status.ReadyReplicas, *rs.Spec.Replicas))
		}
	}
	sort.Strings(out)
	return out
}

// A Rollout's experiment step, applied to the cluster, runs its templates
// as ReplicaSets of their own beside the stable's (the baseline with the
// stable's template), shows the experiment in the Rollout's status as
// Argo does, and removes them when the step is promoted past.
func TestExperimentStepOnAControlPlane(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.apply(t, rollout("ex", "v1", 2, `    canary:
      steps:
      - experiment:
          duration: 1h
          scaleDownDelaySeconds: 0
          templates:
          - {name: baseline, specRef: stable}
          - {name: canary, specRef: canary, replicas: 2, metadata: {labels: {variant: canary}}}
      - pause: {}
`))
	st := s.waitPhase(t, "ex", "Healthy", -1)
	stable := st["stableRS"].(string)
	s.setImage(t, "ex", "v2")

	want := []string{"baseline=1/1", "canary=2/2"}
	eventually(t, "the experiment's ReplicaSets ready", func() error {
		if got := s.experimentSets(t); strings.Join(got, " ") != strings.Join(want, " ") {
			return fmt.Errorf("experiment ReplicaSets %v, want %v", got, want)
		}
		return nil
	})
	// The baseline has the stable's hash but its own ReplicaSet: the
	// stable's keeps its two pods.
	rs, err := s.cp.Client.AppsV1().ReplicaSets(s.ns).Get(context.Background(), "ex-"+stable, metav1.GetOptions{})
	must(t, err)
	if *rs.Spec.Replicas != 2 || rs.Status.ReadyReplicas != 2 {
		t.Errorf("the stable's ReplicaSet at %d replicas (%d ready) beside the experiment, want 2", *rs.Spec.Replicas, rs.Status.ReadyReplicas)
	}
	eventually(t, "status.canary.currentExperiment", func() error {
		ro, err := s.get(t, "argoproj.io/v1alpha1", "Rollout", "ex")
		if err != nil {
			return err
		}
		name, _, _ := unstructured.NestedString(ro.Object, "status", "canary", "currentExperiment")
		if !strings.HasPrefix(name, "ex-") {
			return fmt.Errorf("status.canary.currentExperiment %q", name)
		}
		return nil
	})

	s.command(t, "ex", events.TypeRolloutPromote, map[string]bool{"full": false})
	s.waitPhase(t, "ex", "Paused", 1)
	eventually(t, "the experiment's ReplicaSets gone", func() error {
		if got := s.experimentSets(t); len(got) > 0 {
			return fmt.Errorf("experiment ReplicaSets left: %v", got)
		}
		return nil
	})
}
