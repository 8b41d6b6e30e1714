// Package kube runs the revisions of rollouts on Kubernetes, as Argo
// Rollouts does: one ReplicaSet per revision, named <rollout>-<pod hash> and
// labelled rollouts-pod-template-hash, scaled to the orchestrator's counts.
//
// Availability comes from informers on ReplicaSets and pods (watches, never
// polling). Ephemeral metadata (canaryMetadata, stableMetadata,
// activeMetadata, previewMetadata) is put on the ReplicaSet's pod template
// for new pods and patched onto running pods, and moved when a revision
// changes role. antiAffinity is injected into a new revision's pod template
// when its ReplicaSet is created. Revisions without pods beyond
// revisionHistoryLimit are deleted.
//
// When the rollout is also a cluster object (the Rollout CRD), its
// ReplicaSets are owned by it, so deleting the Rollout deletes them; a
// standalone experiment's templates' ReplicaSets and Services are owned by
// its Experiment object likewise.
// Scale-down delays are the orchestrator's deadlines, kept in its state, so
// they survive restarts of either service. Close leaves pods running.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/rolloutobj"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/sluicehq/sluice/internal/kubens"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
)

// RolloutResource is the Rollout CRD, which owns a rollout's ReplicaSets
// when the rollout is a cluster object.
var RolloutResource = rolloutobj.Resource

// ExperimentResource is the Experiment CRD, which owns a standalone
// experiment's ReplicaSets and Services when it is a cluster object.
var ExperimentResource = rolloutobj.ExperimentResource

// Config configures the backend.
type Config struct {
	// Client manages ReplicaSets and pods.
	Client kubernetes.Interface
	// Dynamic reads Rollout (and Experiment) objects to own ReplicaSets
	// by them. Nil: the ReplicaSets have no owner.
	Dynamic dynamic.Interface
	// Namespace limits the backend to one namespace; empty means all.
	Namespace string
	// Logger receives the backend's logs (default slog.Default()).
	Logger *slog.Logger
}

// Backend implements replicas.Backend on Kubernetes.
type Backend struct {
	cfg Config
	log *slog.Logger

	stop  context.CancelFunc
	done  chan struct{}
	rsets appslisters.ReplicaSetLister
	pods  corelisters.PodLister
	// rollouts caches the Rollout objects that own ReplicaSets, so that
	// a scale task does not read its Rollout from the API server (nil
	// without Dynamic).
	rollouts cache.SharedIndexInformer
	changed  *broadcast
	deleted  deletions // pods deleted by restarts
}

var _ replicas.Backend = (*Backend)(nil)

// New returns a backend; Start begins watching.
func New(cfg Config) (*Backend, error) {
	if cfg.Client == nil {
		return nil, errors.New("kube backend: a Kubernetes client is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Backend{cfg: cfg, log: cfg.Logger, changed: newBroadcast()}, nil
}

// Start starts the informers on the ReplicaSets and pods of revisions
// (anything labelled rollouts-pod-template-hash) and returns once their
// caches are in sync.
func (b *Backend) Start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(b.cfg.Client, 0,
		informers.WithNamespace(b.cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = spec.LabelPodTemplateHash }))
	rsInformer := factory.Apps().V1().ReplicaSets()
	podInformer := factory.Core().V1().Pods()
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { b.changed.notify() },
		UpdateFunc: func(any, any) { b.changed.notify() },
		DeleteFunc: func(any) { b.changed.notify() },
	}
	if _, err := rsInformer.Informer().AddEventHandler(notify); err != nil {
		return err
	}
	if _, err := podInformer.Informer().AddEventHandler(notify); err != nil {
		return err
	}
	b.rsets, b.pods = rsInformer.Lister(), podInformer.Lister()
	runCtx, stop := context.WithCancel(context.Background())
	b.stop, b.done = stop, make(chan struct{})
	factory.Start(runCtx.Done())
	var rollouts dynamicinformer.DynamicSharedInformerFactory
	if b.cfg.Dynamic != nil {
		// Not waited for: without the CRD it never syncs, and until it
		// has, owner reads the API server.
		rollouts = dynamicinformer.NewFilteredDynamicSharedInformerFactory(b.cfg.Dynamic, 0, b.cfg.Namespace, nil)
		b.rollouts = rollouts.ForResource(RolloutResource).Informer()
		if err := b.rollouts.SetWatchErrorHandlerWithContext(func(context.Context, *cache.Reflector, error) {}); err != nil {
			stop()
			return err
		}
		rollouts.Start(runCtx.Done())
	}
	go func() {
		<-runCtx.Done()
		factory.Shutdown()
		if rollouts != nil {
			rollouts.Shutdown()
		}
		close(b.done)
	}()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("kube backend: the %v cache did not sync: %w", typ, context.Cause(ctx))
		}
	}
	return nil
}

// Close stops the informers. Pods keep running.
func (b *Backend) Close(ctx context.Context) error {
	if b.stop == nil {
		return nil
	}
	b.stop()
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Apply implements replicas.Backend.
func (b *Backend) Apply(ctx context.Context, ref events.Ref, seq int64, scale tasks.Scale) ([]tasks.RevisionStatus, error) {
	if b.rsets == nil {
		return nil, errors.New("kube backend: Apply before Start")
	}
	if scale.Remove {
		return b.remove(ctx, ref, seq, scale)
	}
	if err := b.staleAgainst(ref, seq); err != nil {
		return nil, err
	}
	owner, err := b.owner(ctx, ref, scale)
	if err != nil {
		return nil, err
	}
	stable := ""
	for _, rv := range scale.Revisions {
		if rv.Role == spec.RoleStable || rv.Role == spec.RoleActive {
			stable = rv.PodHash
		}
	}
	for _, rv := range scale.Revisions {
		if err := b.writeEntry(ctx, ref, seq, scale.Workload, rv, stable, owner); err != nil {
			return nil, err
		}
	}
	if err := b.prune(ctx, ref, scale); err != nil {
		b.log.Warn("pruning old ReplicaSets failed; the next scale task retries", "rollout", ref.String(), "error", err)
	}
	for {
		// Re-listening before reading means a change between the read and
		// the wait still wakes us.
		wake := b.changed.wait()
		if err := b.rewriteMissing(ctx, ref, seq, scale, stable, owner); err != nil {
			return nil, err
		}
		settled, err := b.syncPodMetadata(ctx, ref, seq, scale)
		if err != nil {
			return nil, err
		}
		statuses, short, err := b.status(ref, seq, scale)
		if err != nil {
			return statuses, err
		}
		restarting, later, err := b.restart(ctx, ref, scale, time.Now())
		if err != nil {
			return statuses, err
		}
		short = append(short, restarting...)
		if len(short) == 0 && settled {
			return statuses, nil
		}
		if len(short) == 0 {
			short = append(short, "ephemeral metadata not yet on every pod")
		}
		var timer <-chan time.Time
		if !later.IsZero() {
			timer = time.After(time.Until(later))
		}
		select {
		case <-wake:
		case <-timer:
		case <-ctx.Done():
			return statuses, fmt.Errorf("%w: %s", replicas.ErrUnavailable, strings.Join(short, "; "))
		}
	}
}

// writeEntry brings one scale entry to its desired state: write, and for
// an experiment template its Service, or, at 0 replicas, its removal.
func (b *Backend) writeEntry(ctx context.Context, ref events.Ref, seq int64, w tasks.Workload, rv tasks.RevisionScale, stable string, owner *metav1.OwnerReference) error {
	if rv.Experiment != nil && rv.Replicas == 0 {
		return b.retireExperiment(ctx, ref, seq, rv)
	}
	if err := b.write(ctx, ref, seq, w, rv, stable, owner); err != nil {
		return err
	}
	if rv.Experiment == nil || rv.Experiment.Service == "" {
		return nil
	}
	return retry.OnError(writeBackoff, retriable, func() error { return b.ensureService(ctx, ref, rv, owner) })
}

// write creates or scales the ReplicaSet of rv, unless it was written by a
// later task.
func (b *Backend) write(ctx context.Context, ref events.Ref, seq int64, w tasks.Workload, rv tasks.RevisionScale, stable string, owner *metav1.OwnerReference) error {
	rsClient := b.cfg.Client.AppsV1().ReplicaSets(ref.Namespace)
	name := entryName(ref, rv)
	attempt := 0
	return retry.OnError(writeBackoff, retriable, func() error {
		// The first attempt trusts the cache when it has the ReplicaSet:
		// if it has an old version, the update fails (Conflict) and the
		// next attempt reads the API server. A ReplicaSet the cache does
		// not have is looked up there: it may be new.
		attempt++
		var cur *appsv1.ReplicaSet
		var err error
		if attempt == 1 {
			if cur, err = b.rsets.ReplicaSets(ref.Namespace).Get(name); err == nil {
				cur = cur.DeepCopy()
			}
		}
		if attempt > 1 || err != nil {
			cur, err = rsClient.Get(ctx, name, metav1.GetOptions{})
		}
		if apierrors.IsNotFound(err) {
			if rv.Replicas == 0 {
				return nil // nothing to scale down
			}
			rs, err := newReplicaSet(ref, w, rv, stable, owner)
			if err != nil {
				return err
			}
			if err := setScale(rs, rv, seq); err != nil {
				return err
			}
			_, err = rsClient.Create(ctx, rs, metav1.CreateOptions{FieldManager: "sluice-replicas"})
			switch {
			case apierrors.IsInvalid(err):
				return fmt.Errorf("%w: ReplicaSet %s/%s: %v", replicas.ErrInvalidTemplate, ref.Namespace, name, err)
			case kubens.Gone(err):
				what := fmt.Sprintf("revision %d", rv.Revision)
				if rv.Experiment != nil {
					what = entryWhat(rv)
				}
				return fmt.Errorf("%w: ReplicaSet %s/%s of %s cannot be created: %v", replicas.ErrGone, ref.Namespace, name, what, err)
			case apierrors.IsAlreadyExists(err):
				// Created since our read (by a concurrent task): read it
				// again and take it from there.
				return apierrors.NewConflict(appsv1.Resource("replicasets"), name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		if have := seqOf(cur); have > seq {
			return fmt.Errorf("%w: ReplicaSet %s/%s was scaled by task seq %d, this task's seq is %d", tasks.ErrStale, ref.Namespace, name, have, seq)
		}
		if rv.Experiment != nil && (!experimentOf(cur, ref) || cur.Annotations[spec.AnnotationExperimentTemplate] != rv.Experiment.Template) {
			return fmt.Errorf("%w: ReplicaSet %s/%s exists and is not the one of %s of rollout %s (label %s, annotation %s); delete or rename it", replicas.ErrInvalidTemplate, ref.Namespace, name, entryWhat(rv), ref, ExperimentOfLabel, spec.AnnotationExperimentTemplate)
		}
		if rv.Experiment == nil && !belongs(cur, ref, owner) {
			return fmt.Errorf("%w: ReplicaSet %s/%s exists and does not belong to rollout %s (neither label %s nor a controller reference to the Rollout); delete or rename it", replicas.ErrInvalidTemplate, ref.Namespace, name, ref, RolloutLabel)
		}
		next := cur.DeepCopy()
		if rv.Experiment == nil {
			adopt(next, ref)
		}
		if err := setScale(next, rv, seq); err != nil {
			return err
		}
		if owner != nil && metav1.GetControllerOf(next) == nil {
			next.OwnerReferences = append(next.OwnerReferences, *owner)
		}
		if equalScale(cur, next) {
			return nil
		}
		_, err = rsClient.Update(ctx, next, metav1.UpdateOptions{FieldManager: "sluice-replicas"})
		return err
	})
}

// rewriteMissing writes again each revision that must run whose
// ReplicaSet the cache does not show: it may be only the cache lagging
// behind the write (the write then changes nothing), or the ReplicaSet was
// deleted since (it is created again, or, in a namespace being deleted,
// the task ends with ErrGone instead of waiting for pods that cannot come).
func (b *Backend) rewriteMissing(ctx context.Context, ref events.Ref, seq int64, scale tasks.Scale, stable string, owner *metav1.OwnerReference) error {
	for _, rv := range scale.Revisions {
		if rv.Replicas == 0 {
			continue
		}
		if _, err := b.rsets.ReplicaSets(ref.Namespace).Get(entryName(ref, rv)); !apierrors.IsNotFound(err) {
			continue
		}
		if err := b.writeEntry(ctx, ref, seq, scale.Workload, rv, stable, owner); err != nil {
			return err
		}
	}
	return nil
}

// writeBackoff spaces the attempts of a ReplicaSet write. A conflict means
// another write (a concurrent task, the ReplicaSet controller's status)
// won the round, so each round makes progress; client-go's DefaultBackoff
// (4 attempts in 60 ms) gave up under load with eight tasks writing at
// once, failing a task that had only to read again.
var writeBackoff = wait.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 12, Cap: 500 * time.Millisecond}

func equalScale(a, b *appsv1.ReplicaSet) bool {
	return *a.Spec.Replicas == *b.Spec.Replicas && maps.Equal(a.Labels, b.Labels) &&
		maps.Equal(a.Annotations, b.Annotations) && maps.Equal(a.Spec.Template.Labels, b.Spec.Template.Labels) &&
		maps.Equal(a.Spec.Template.Annotations, b.Spec.Template.Annotations) && len(a.OwnerReferences) == len(b.OwnerReferences)
}

// retriable reports whether a failed API call may succeed when made again.
func retriable(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err)
}

// owner is the controller reference to the rollout's Rollout object (the
// Experiment object, for a standalone experiment's templates), or nil when
// it is not a cluster object.
func (b *Backend) owner(ctx context.Context, ref events.Ref, scale tasks.Scale) (*metav1.OwnerReference, error) {
	if b.cfg.Dynamic == nil {
		return nil, nil
	}
	kind := ""
	if standalone(ref, scale) {
		kind = events.KindExperiment
	} else if owner := b.cachedOwner(ref); owner != nil {
		return owner, nil
	}
	return rolloutobj.OwnerReference(ctx, b.cfg.Dynamic, kind, ref.Namespace, ref.Name, true)
}

// cachedOwner is the controller reference to ref's Rollout object as the
// cache has it, or nil when the cache has not synced or has no such
// object (yet: a Rollout created a moment ago is read from the API
// server instead).
func (b *Backend) cachedOwner(ref events.Ref) *metav1.OwnerReference {
	if b.rollouts == nil || !b.rollouts.HasSynced() {
		return nil
	}
	obj, ok, err := b.rollouts.GetStore().GetByKey(ref.Namespace + "/" + ref.Name)
	if err != nil || !ok {
		return nil
	}
	ro, ok := obj.(metav1.Object)
	if !ok || ro.GetDeletionTimestamp() != nil {
		return nil
	}
	controller := true
	return &metav1.OwnerReference{
		APIVersion: RolloutResource.GroupVersion().String(), Kind: "Rollout",
		Name: ro.GetName(), UID: ro.GetUID(), Controller: &controller, BlockOwnerDeletion: &controller,
	}
}

// syncPodMetadata moves each revision's ephemeral metadata onto its running
// pods (new pods get it from the template). settled is true when every pod
// already had it, judged from ReplicaSets the cache shows at seq; a patched
// pod is checked again once the cache shows the patch.
func (b *Backend) syncPodMetadata(ctx context.Context, ref events.Ref, seq int64, scale tasks.Scale) (settled bool, err error) {
	settled = true
	for _, rv := range scale.Revisions {
		rs, err := b.rsets.ReplicaSets(ref.Namespace).Get(entryName(ref, rv))
		if err != nil {
			continue // not created yet (the cache lags) or scaled to 0 before it existed
		}
		if seqOf(rs) < seq {
			settled = false // the cache has not seen this task's write yet
		}
		want := metadataOf(rv.Metadata)
		pods, err := b.entryPods(ref.Namespace, rv)
		if err != nil {
			return false, err
		}
		for _, pod := range pods {
			if pod.DeletionTimestamp != nil || !metav1.IsControlledBy(pod, rs) {
				continue
			}
			next := pod.DeepCopy()
			if !podMetadata(next, rs, want) {
				continue
			}
			settled = false
			if _, err := b.cfg.Client.CoreV1().Pods(ref.Namespace).Update(ctx, next, metav1.UpdateOptions{FieldManager: "sluice-replicas"}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return false, fmt.Errorf("set ephemeral metadata on pod %s/%s: %w", ref.Namespace, pod.Name, err)
			}
		}
	}
	return settled, nil
}

// status reads each listed revision's state from the caches. short names
// the revisions not yet at their count; an error wrapping ErrStale means a
// later task has written one of the ReplicaSets.
func (b *Backend) status(ref events.Ref, seq int64, scale tasks.Scale) (out []tasks.RevisionStatus, short []string, err error) {
	for _, rv := range scale.Revisions {
		st := tasks.RevisionStatus{Revision: rv.Revision, PodHash: rv.PodHash, Template: templateOf(rv)}
		name := entryName(ref, rv)
		rs, gerr := b.rsets.ReplicaSets(ref.Namespace).Get(name)
		pods, lerr := b.entryPods(ref.Namespace, rv)
		if lerr != nil {
			return nil, nil, lerr
		}
		switch {
		case gerr != nil && rv.Replicas == 0:
			st.Replicas = int32(len(pods))
		case gerr != nil:
			short = append(short, fmt.Sprintf("ReplicaSet %s/%s not created yet", ref.Namespace, name))
		default:
			switch have := seqOf(rs); {
			case have > seq:
				return out, nil, fmt.Errorf("%w: ReplicaSet %s/%s was scaled by task seq %d while task seq %d waited", tasks.ErrStale, ref.Namespace, name, have, seq)
			case have < seq:
				// The cache has not seen this task's write yet.
				short = append(short, fmt.Sprintf("ReplicaSet %s/%s: the change is not yet visible", ref.Namespace, name))
			}
			st.Replicas, st.Ready, st.Available = rs.Status.Replicas, rs.Status.ReadyReplicas, rs.Status.AvailableReplicas
		}
		out = append(out, st)
		if gerr != nil && rv.Replicas != 0 {
			continue
		}
		switch {
		case rs != nil && rs.Status.ObservedGeneration < rs.Generation:
			short = append(short, fmt.Sprintf("ReplicaSet %s/%s: the controller has not seen the change yet (is kube-controller-manager running?)", ref.Namespace, name))
		case st.Available < rv.Replicas:
			short = append(short, fmt.Sprintf("%s: %d of %d pods available%s", entryWhat(rv), st.Available, rv.Replicas, podTrouble(pods)))
		case int32(len(pods)) > rv.Replicas || st.Replicas > rv.Replicas:
			short = append(short, fmt.Sprintf("%s: %d pods still running, want %d", entryWhat(rv), max(int32(len(pods)), st.Replicas), rv.Replicas))
		}
	}
	return out, short, nil
}

// podTrouble names why pods are not available, from their conditions and
// container states, for the task's failure message.
func podTrouble(pods []*corev1.Pod) string {
	var reasons []string
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason != "" {
				reasons = append(reasons, fmt.Sprintf("pod %s: %s", p.Name, w.Reason))
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				reasons = append(reasons, fmt.Sprintf("pod %s unschedulable: %s", p.Name, c.Message))
			}
		}
	}
	if len(reasons) == 0 {
		return ""
	}
	slices.Sort(reasons)
	reasons = slices.Compact(reasons)
	if len(reasons) > 3 {
		reasons = append(reasons[:3], fmt.Sprintf("and %d more", len(reasons)-3))
	}
	return " (" + strings.Join(reasons, "; ") + ")"
}

// prune deletes the rollout's ReplicaSets that have no pods, are not in the
// task, and are older than the revisionHistoryLimit newest such.
func (b *Backend) prune(ctx context.Context, ref events.Ref, scale tasks.Scale) error {
	limit := spec.DefaultRevisionHistoryLimit
	if l := scale.Workload.RevisionHistoryLimit; l != nil {
		limit = max(*l, 0)
	}
	listed := map[string]bool{}
	for _, rv := range scale.Revisions {
		listed[entryName(ref, rv)] = true
	}
	all, err := b.replicaSetsOf(ref)
	if err != nil {
		return err
	}
	var old []*appsv1.ReplicaSet
	for _, rs := range all {
		if !listed[rs.Name] && rs.Spec.Replicas != nil && *rs.Spec.Replicas == 0 && rs.Status.Replicas == 0 && rs.DeletionTimestamp == nil {
			old = append(old, rs)
		}
	}
	sort.Slice(old, func(i, j int) bool { return revisionOf(old[i]) > revisionOf(old[j]) })
	var errs []error
	for _, rs := range old[min(int(limit), len(old)):] {
		uid := rs.UID
		err := b.cfg.Client.AppsV1().ReplicaSets(ref.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// broadcast wakes every waiter when the caches change.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

// wait returns a channel closed at the next notify.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.ch)
	b.ch = make(chan struct{})
}
