package kube

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
)

// remove carries out a scale task with Remove (the rollout is deleted): it
// deletes every ReplicaSet of the rollout (those listed, and the scaled-down
// ones kept for history, and its experiment templates' with their Services), with background propagation, and returns once
// the caches show the ReplicaSets and their pods gone. The seq guard lives
// on the ReplicaSets, so it goes with them: the next task for the rollout
// starts fresh. A ReplicaSet written by a later task makes the removal
// stale and deletes nothing.
func (b *Backend) remove(ctx context.Context, ref events.Ref, seq int64, scale tasks.Scale) ([]tasks.RevisionStatus, error) {
	rsClient := b.cfg.Client.AppsV1().ReplicaSets(ref.Namespace)
	all, err := rsClient.List(ctx, metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash})
	if err != nil {
		return nil, fmt.Errorf("list ReplicaSets of %s: %w", ref, err)
	}
	var list appsv1.ReplicaSetList
	for _, rs := range all.Items {
		if belongs(&rs, ref, nil) || experimentOf(&rs, ref) {
			list.Items = append(list.Items, rs)
		}
	}
	for _, rs := range list.Items {
		if have := seqOf(&rs); have > seq {
			return nil, fmt.Errorf("%w: ReplicaSet %s/%s was scaled by task seq %d, the removal's seq is %d", tasks.ErrStale, ref.Namespace, rs.Name, have, seq)
		}
	}
	if err := b.removeExperimentServices(ctx, ref); err != nil {
		return nil, err
	}
	owners := map[types.UID]string{} // ReplicaSet name by uid
	hashes := map[string]bool{}
	background := metav1.DeletePropagationBackground
	for _, rs := range list.Items {
		uid := rs.UID
		err := rsClient.Delete(ctx, rs.Name, metav1.DeleteOptions{PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return nil, fmt.Errorf("delete ReplicaSet %s/%s: %w", ref.Namespace, rs.Name, err)
		}
		owners[uid] = rs.Name
		hashes[rs.Labels[spec.LabelPodTemplateHash]] = true
	}
	if len(list.Items) > 0 {
		b.log.Info("rollout removed: ReplicaSets deleted", "rollout", ref.String(), "seq", seq, "replicasets", len(list.Items))
	}
	out := make([]tasks.RevisionStatus, len(scale.Revisions))
	for i, rv := range scale.Revisions {
		out[i] = tasks.RevisionStatus{Revision: rv.Revision, PodHash: rv.PodHash, Template: templateOf(rv)}
	}
	for {
		wake := b.changed.wait()
		left, err := b.leftOf(ref, owners, hashes)
		if err != nil || len(left) == 0 {
			return out, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return out, fmt.Errorf("%w: removal of %s: still there: %s", replicas.ErrUnavailable, ref, strings.Join(left, ", "))
		}
	}
}

// leftOf names what the caches still show of a removed rollout: its
// ReplicaSets, and the pods they owned.
func (b *Backend) leftOf(ref events.Ref, owners map[types.UID]string, hashes map[string]bool) ([]string, error) {
	var left []string
	rsets, err := b.rsets.ReplicaSets(ref.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	for _, rs := range rsets {
		if belongs(rs, ref, nil) || experimentOf(rs, ref) {
			left = append(left, "ReplicaSet "+rs.Name)
		}
	}
	for hash := range hashes {
		pods, err := b.pods.Pods(ref.Namespace).List(labels.SelectorFromSet(labels.Set{spec.LabelPodTemplateHash: hash}))
		if err != nil {
			return nil, err
		}
		for _, p := range pods {
			if c := metav1.GetControllerOf(p); c != nil && owners[c.UID] != "" {
				left = append(left, "pod "+p.Name)
			}
		}
	}
	return left, nil
}
