package kubepods_test

import (
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/gateway/kubepods"
	"github.com/sluicehq/sluice/services/replicas/kube"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// replicaSet is a revision's ReplicaSet labelled as the replicas service
// labels it.
func replicaSet(rollout, hash, image string, replicas int32) *appsv1.ReplicaSet {
	lbl := map[string]string{"app": rollout, spec.LabelPodTemplateHash: hash}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: rollout + "-" + hash, Labels: map[string]string{spec.LabelPodTemplateHash: hash, kube.RolloutLabel: rollout}},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
		},
	}
}

// The gateway shows every pod of every revision of the rollout, as the
// cluster runs them, and none of another rollout's.
func TestPodsOfEveryRevision(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	ctx := t.Context()
	for _, rs := range []*appsv1.ReplicaSet{
		replicaSet("web", "aaa", "shop/web:1", 2),
		replicaSet("web", "bbb", "shop/web:2", 1),
		replicaSet("api", "ccc", "shop/api:1", 1),
	} {
		if _, err := cp.Client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	src := kubepods.Pods{Client: cp.Client}
	r := events.Ref{Namespace: ns, Name: "web"}
	poll.Until(t, "three ready pods of web, two of revision aaa and one of bbb", func() error {
		pods, err := src.Pods(ctx, r)
		if err != nil {
			return err
		}
		byHash := map[string]int{}
		for _, p := range pods {
			want := map[string]string{"aaa": "shop/web:1", "bbb": "shop/web:2"}[p.PodHash]
			if want == "" || p.Image != want {
				return fmt.Errorf("pod %s of revision %q has image %q", p.Name, p.PodHash, p.Image)
			}
			if !p.Ready || p.StartedAt.IsZero() {
				return fmt.Errorf("pod %s not ready yet", p.Name)
			}
			byHash[p.PodHash]++
		}
		if byHash["aaa"] != 2 || byHash["bbb"] != 1 || len(pods) != 3 {
			return fmt.Errorf("pods by revision %v", byHash)
		}
		return nil
	})
}
