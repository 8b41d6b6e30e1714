package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// A restart (tasks.RevisionScale.RestartAt) evicts the revision's pods
// created before RestartAt, as Argo's restartAt does (the eviction API, so
// PodDisruptionBudgets are honoured), and lets the ReplicaSet controller
// replace them: an old pod that is not available is
// deleted at once, an available one only while fewer than MaxUnavailable
// (at least 1) of the revision's pods are unavailable. A pod's
// creationTimestamp has whole seconds, so RestartAt counts from the next
// whole second: pods created in the second of RestartAt are old, and the
// restart deletes nothing before that second ends (a replacement created
// earlier would look old too).

// evictionRetry is how soon an eviction a PodDisruptionBudget refused is
// tried again.
const evictionRetry = 5 * time.Second

// restartAt is the instant a restart compares creationTimestamps with.
func restartAt(rv tasks.RevisionScale) time.Time {
	at := rv.RestartAt
	if at.IsZero() || at.Equal(at.Truncate(time.Second)) {
		return at
	}
	return at.Truncate(time.Second).Add(time.Second)
}

// deletions remembers the pods a restart deleted until the caches show
// them going, so that a lagging cache never makes one available pod count
// twice against MaxUnavailable.
type deletions struct {
	mu  sync.Mutex
	uid map[types.UID]string // namespace by pod uid
}

// restart deletes the pods of each restarting revision that may go now. It
// returns why the restart is not done, per revision, and when to look
// again regardless of the caches (zero: on their next change).
func (b *Backend) restart(ctx context.Context, ref events.Ref, scale tasks.Scale, now time.Time) (short []string, wake time.Time, err error) {
	b.deleted.mu.Lock()
	defer b.deleted.mu.Unlock()
	if b.deleted.uid == nil {
		b.deleted.uid = map[types.UID]string{}
	}
	minReady := time.Duration(scale.Workload.MinReadySeconds) * time.Second
	later := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	for _, rv := range scale.Revisions {
		at := restartAt(rv)
		if at.IsZero() || rv.Replicas == 0 {
			continue
		}
		what := entryWhat(rv)
		if at.After(now) {
			short = append(short, fmt.Sprintf("%s: restart waits for %s", what, at.UTC().Format(time.RFC3339)))
			later(at)
			continue
		}
		pods, err := b.entryPods(ref.Namespace, rv)
		if err != nil {
			return nil, time.Time{}, err
		}
		sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
		available := 0
		var oldAvailable, oldUnavailable []*corev1.Pod
		for _, p := range pods {
			if _, deleted := b.deleted.uid[p.UID]; deleted || p.DeletionTimestamp != nil {
				continue
			}
			since, ready := readySince(p)
			avail := ready && !now.Before(since.Add(minReady))
			if avail {
				available++
			} else if ready {
				later(since.Add(minReady))
			}
			if !p.CreationTimestamp.Time.Before(at) {
				continue
			}
			if avail {
				oldAvailable = append(oldAvailable, p)
			} else {
				oldUnavailable = append(oldUnavailable, p)
			}
		}
		budget := max(int(rv.MaxUnavailable), 1) - max(int(rv.Replicas)-available, 0)
		doomed := append(oldUnavailable, oldAvailable[:min(max(budget, 0), len(oldAvailable))]...)
		var blocked []string
		for _, p := range doomed {
			uid := p.UID
			err := b.cfg.Client.CoreV1().Pods(ref.Namespace).EvictV1(ctx, &policyv1.Eviction{
				ObjectMeta:    metav1.ObjectMeta{Namespace: ref.Namespace, Name: p.Name},
				DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
			})
			switch {
			case apierrors.IsTooManyRequests(err):
				// A PodDisruptionBudget forbids it for now.
				blocked = append(blocked, p.Name)
				later(now.Add(evictionRetry))
				continue
			case err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
				return nil, time.Time{}, fmt.Errorf("restart %s: evict pod %s/%s: %w", what, ref.Namespace, p.Name, err)
			}
			b.deleted.uid[uid] = ref.Namespace
			b.log.Info("restart: evicted pod", "rollout", ref.String(), "pod", p.Name, "restartAt", at)
		}
		if len(blocked) > 0 {
			short = append(short, fmt.Sprintf("%s: restart: eviction of %s refused by a PodDisruptionBudget; trying again", what, strings.Join(blocked, ", ")))
		}
		// The ReplicaSet's status lags behind pod deletions: the pods
		// themselves say when the replacements are available.
		if old := len(oldAvailable) + len(oldUnavailable); old > 0 || available < int(rv.Replicas) {
			short = append(short, fmt.Sprintf("%s: restarting: %d pods created before %s still to replace, %d of %d pods available%s",
				what, old, at.UTC().Format(time.RFC3339), available, rv.Replicas, podTrouble(pods)))
		}
	}
	// Forget the deletions the caches have seen through.
	for uid, ns := range b.deleted.uid {
		if !b.podCached(ns, uid) {
			delete(b.deleted.uid, uid)
		}
	}
	return short, wake, nil
}

// podCached reports whether the pod cache still holds a pod with uid not
// yet marked for deletion.
func (b *Backend) podCached(namespace string, uid types.UID) bool {
	pods, err := b.pods.Pods(namespace).List(labels.Everything())
	if err != nil {
		return true
	}
	for _, p := range pods {
		if p.UID == uid {
			return p.DeletionTimestamp == nil
		}
	}
	return false
}

// readySince says whether a pod is Ready, and since when.
func readySince(p *corev1.Pod) (time.Time, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime.Time, c.Status == corev1.ConditionTrue
		}
	}
	return time.Time{}, false
}
