// Package kubepods reads a rollout's pods on the kube platform for the
// gateway: the ReplicaSets the replicas service labels with the rollout's
// name, and the pods each one selects.
package kubepods

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/gateway"
	"github.com/sluicehq/sluice/services/replicas/kube"
)

// Pods reads pods through a Kubernetes client. It needs list on
// replicasets and pods in the rollouts' namespaces.
type Pods struct {
	Client kubernetes.Interface
}

var _ gateway.Pods = Pods{}

// Pods implements gateway.Pods: every pod of every ReplicaSet of r, by
// ReplicaSet and name.
func (p Pods) Pods(ctx context.Context, r events.Ref) ([]gateway.Pod, error) {
	sets, err := p.Client.AppsV1().ReplicaSets(r.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{kube.RolloutLabel: r.Name}.String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list the ReplicaSets of %s: %w", r, err)
	}
	var out []gateway.Pod
	for _, rs := range sets.Items {
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() {
			continue // a selector that selects everything is not this set's
		}
		pods, err := p.Client.CoreV1().Pods(r.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return nil, fmt.Errorf("list the pods of ReplicaSet %s/%s: %w", r.Namespace, rs.Name, err)
		}
		for _, pod := range pods.Items {
			if pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodRunning {
				continue
			}
			out = append(out, podOf(pod, rs.Labels[spec.LabelPodTemplateHash]))
		}
	}
	return out, nil
}

func podOf(pod corev1.Pod, hash string) gateway.Pod {
	gp := gateway.Pod{Name: pod.Name, PodHash: pod.Labels[spec.LabelPodTemplateHash]}
	if gp.PodHash == "" {
		gp.PodHash = hash
	}
	if len(pod.Spec.Containers) > 0 {
		gp.Image = pod.Spec.Containers[0].Image
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			gp.Ready = c.Status == corev1.ConditionTrue
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		gp.Restarts += int(cs.RestartCount)
	}
	if pod.Status.StartTime != nil {
		gp.StartedAt = pod.Status.StartTime.Time
	}
	return gp
}
