package crd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// Publisher publishes one event; *events.Client implements it.
type Publisher interface {
	Publish(ctx context.Context, subject string, ev events.Event) (events.PublishResult, error)
}

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// Dynamic reads Rollouts and templates and writes Rollout status.
	Dynamic dynamic.Interface
	// Client reads the Deployments of workloadRefs and scales them down.
	// Nil: a Rollout with a workloadRef is reported as unresolvable.
	Client kubernetes.Interface
	// Bus publishes the events.
	Bus Publisher
	// Snapshots tells whether the orchestrator has a rollout, so that a
	// Rollout that Argo's controller observed is requested once when
	// Sluice takes it over. Nil: only changed specs are requested.
	Snapshots Snapshots
	// Written is what the status writer wrote (BucketWritten), against
	// which changes of the request fields are tools' requests. Nil: status
	// requests are not acted on.
	Written *records.Store[Written]
	// Namespace limits the watcher to one namespace (ClusterAnalysisTemplates
	// are then not watched); empty means all.
	Namespace string
	// Logger receives the watcher's logs (default slog.Default()).
	Logger *slog.Logger
}

// Watcher turns changes of cluster objects into command events.
type Watcher struct {
	cfg   WatcherConfig
	log   *slog.Logger
	queue workqueue.TypedRateLimitingInterface[key]
	q     atomic.Pointer[workqueue.TypedRateLimitingInterface[key]]
	ready atomic.Bool

	informers   map[schema.GroupVersionResource]cache.SharedIndexInformer
	deployments appslisters.DeploymentLister
	written     *records.Store[Written]
	// cached, when set, is given the Rollout cache for the other
	// controllers' reads.
	cached *cached
	// rolloutChanged, when set, is told of every Rollout added or
	// changed in the cache (Counts' recount).
	rolloutChanged func(events.Ref)
}

// key is one object to reconcile.
type key struct {
	gvr             schema.GroupVersionResource
	namespace, name string
	// deleted is the uid of a Rollout or Experiment object that was
	// deleted.
	deleted types.UID
}

// Actor is the actor (events.ExtActor) of the commands the watcher
// publishes: a Rollout object's changed spec or its deletion.
const Actor = "kube:rollout-watcher"

// NewWatcher returns a watcher; Run starts it.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.Dynamic == nil || cfg.Bus == nil {
		return nil, errors.New("crd watcher: a dynamic client and a publisher are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Watcher{cfg: cfg, log: cfg.Logger, written: cfg.Written}, nil
}

// Ready reports whether the caches have synced, so that no change is
// missed from here on.
func (w *Watcher) Ready() bool { return w.ready.Load() }

// Run watches until ctx ends. A CRD that is not installed is logged with
// the command that installs it, and watched for until it is.
func (w *Watcher) Run(ctx context.Context) error {
	w.queue = newQueue[key]("sluice-crd")
	w.q.Store(&w.queue)
	defer w.queue.ShutDown()
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(w.cfg.Dynamic, 0, w.cfg.Namespace, nil)
	gvrs := []schema.GroupVersionResource{RolloutResource, ExperimentResource, AnalysisTemplateResource}
	if w.cfg.Namespace == "" {
		gvrs = append(gvrs, ClusterAnalysisTemplateResource)
	}
	w.informers = map[schema.GroupVersionResource]cache.SharedIndexInformer{}
	for _, gvr := range gvrs {
		inf := factory.ForResource(gvr).Informer()
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			if apierrors.IsNotFound(err) {
				w.log.Error("cannot watch "+gvr.Resource+"."+gvr.Group+": the CRD is not installed; install it with kubectl apply --server-side -k deploy/crds", "error", err)
				return
			}
			w.log.Warn("watch of "+gvr.Resource+" failed; retrying", "error", err)
		}); err != nil {
			return err
		}
		enqueue := func(obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				w.queue.Add(key{gvr: gvr, namespace: u.GetNamespace(), name: u.GetName()})
				if gvr == RolloutResource && w.rolloutChanged != nil {
					w.rolloutChanged(events.Ref{Namespace: u.GetNamespace(), Name: u.GetName()})
				}
			}
		}
		handlers := cache.ResourceEventHandlerFuncs{
			AddFunc:    enqueue,
			UpdateFunc: func(_, obj any) { enqueue(obj) },
		}
		if gvr == RolloutResource || gvr == ExperimentResource {
			handlers.DeleteFunc = func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if u, ok := obj.(*unstructured.Unstructured); ok {
					w.queue.Add(key{gvr, u.GetNamespace(), u.GetName(), u.GetUID()})
				}
			}
		}
		if _, err := inf.AddEventHandler(handlers); err != nil {
			return err
		}
		if gvr == RolloutResource {
			if err := inf.AddIndexers(cache.Indexers{byWorkload: workloadIndex}); err != nil {
				return err
			}
		}
		w.informers[gvr] = inf
		if gvr == RolloutResource && w.cached != nil {
			w.cached.rollouts.Store(&inf)
		}
	}
	var typed informers.SharedInformerFactory
	if w.cfg.Client != nil {
		typed = informers.NewSharedInformerFactoryWithOptions(w.cfg.Client, 0, informers.WithNamespace(w.cfg.Namespace))
		deps := typed.Apps().V1().Deployments()
		if _, err := deps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    w.deploymentChanged,
			UpdateFunc: func(_, obj any) { w.deploymentChanged(obj) },
		}); err != nil {
			return err
		}
		w.deployments = deps.Lister()
		typed.Start(ctx.Done())
		defer typed.Shutdown()
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	go func() {
		for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return
			}
		}
		if typed != nil {
			for _, ok := range typed.WaitForCacheSync(ctx.Done()) {
				if !ok {
					return
				}
			}
		}
		w.ready.Store(true)
	}()
	work(ctx, w.queue, w.log, "publishing a cluster object's change", w.reconcile)
	return nil
}

// requeue makes the watcher look at a Rollout again. Safe before Run (it
// does nothing then).
func (w *Watcher) requeue(r events.Ref) {
	if q := w.q.Load(); q != nil {
		(*q).Add(key{gvr: RolloutResource, namespace: r.Namespace, name: r.Name})
	}
}

// String names a key in logs.
func (k key) String() string {
	if k.namespace == "" {
		return k.gvr.Resource + "/" + k.name
	}
	return k.gvr.Resource + "/" + k.namespace + "/" + k.name
}

func (w *Watcher) reconcile(ctx context.Context, k key) error {
	id := k.name
	if k.namespace != "" {
		id = k.namespace + "/" + k.name
	}
	obj, exists, err := w.informers[k.gvr].GetStore().GetByKey(id)
	if err != nil {
		return err
	}
	if k.deleted != "" && k.gvr == ExperimentResource {
		return w.experimentDeleted(ctx, k, exists)
	}
	if k.deleted != "" {
		if exists && obj.(*unstructured.Unstructured).GetUID() != k.deleted {
			// Created again since: the new object's spec is a request
			// for the same rollout, which the orchestrator still has.
			return nil
		}
		return w.deleted(ctx, k)
	}
	if !exists {
		return nil // deleted: its own key publishes the delete command
	}
	u := obj.(*unstructured.Unstructured)
	if k.gvr == ExperimentResource {
		return w.experiment(ctx, u)
	}
	if k.gvr == RolloutResource {
		if err := w.rollout(ctx, u); err != nil {
			return err
		}
		return w.requests(ctx, u)
	}
	return w.template(ctx, u)
}

// deleted publishes io.sluice.rollout.delete.v1 for a deleted Rollout
// object (io.sluice.experiment.delete.v1 for an Experiment): the
// orchestrator removes the rollout's revisions and routes (the
// experiment's pods) and forgets it. The id derives from the object's
// uid, so every replica of the watcher publishes one command.
func (w *Watcher) deleted(ctx context.Context, k key) error {
	ref := events.Ref{Namespace: k.namespace, Name: k.name}
	typ, kind, logKey := events.TypeRolloutDelete, "Rollout", "rollout"
	if k.gvr == ExperimentResource {
		typ, kind, logKey = events.TypeExperimentDelete, events.KindExperiment, "experiment"
	}
	ev, err := events.New(Source, typ, ref.String(), struct{}{})
	if err != nil {
		return err
	}
	ev.SetID(fmt.Sprintf("k8s:%s:delete", k.deleted))
	ev.SetExtension(events.ExtActor, Actor)
	if _, err := w.cfg.Bus.Publish(ctx, events.CommandSubject(ref), ev); err != nil {
		return err
	}
	w.log.Info(kind+" object deleted: delete requested", logKey, ref.String())
	return nil
}

// deploymentChanged requeues the Rollouts whose workloadRef names the
// Deployment, so a changed template becomes a new revision.
func (w *Watcher) deploymentChanged(obj any) {
	dep, ok := obj.(*appsv1.Deployment)
	if !ok {
		return
	}
	rollouts, _ := w.informers[RolloutResource].GetIndexer().ByIndex(byWorkload, dep.Namespace+"/"+dep.Name)
	for _, o := range rollouts {
		u := o.(*unstructured.Unstructured)
		w.queue.Add(key{gvr: RolloutResource, namespace: u.GetNamespace(), name: u.GetName()})
	}
}

// byWorkload indexes Rollouts by the Deployment their workloadRef names
// (<namespace>/<name>), so a Deployment's change finds its Rollouts without
// scanning them all.
const byWorkload = "workloadRef"

func workloadIndex(obj any) ([]string, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, nil
	}
	name, _, _ := unstructured.NestedString(u.Object, "spec", "workloadRef", "name")
	if name == "" {
		return nil, nil
	}
	return []string{u.GetNamespace() + "/" + name}, nil
}

// rollout publishes a requested event for a spec not yet published, then
// records its generation (and its Deployment's, for a workloadRef) as
// observed.
func (w *Watcher) rollout(ctx context.Context, u *unstructured.Unstructured) error {
	gen := u.GetGeneration()
	observed, _, _ := unstructured.NestedString(u.Object, "status", "observedGeneration")
	n, err := strconv.ParseInt(observed, 10, 64)
	changed := err != nil || n < gen
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	id := fmt.Sprintf("k8s:%s:%d", u.GetUID(), gen)
	status := map[string]any{"observedGeneration": strconv.FormatInt(gen, 10)}

	ref, err := workloadRefOf(u)
	if err != nil {
		return w.reportWorkloadProblem(ctx, u, err)
	}
	var dep *appsv1.Deployment
	if ref != nil {
		if w.deployments == nil {
			return w.reportWorkloadProblem(ctx, u, errors.New("spec.workloadRef: this replicas service has no Kubernetes client for Deployments"))
		}
		dep, err = w.deployments.Deployments(u.GetNamespace()).Get(ref.Name)
		if apierrors.IsNotFound(err) {
			// The Deployment's creation requeues the Rollout.
			return w.reportWorkloadProblem(ctx, u, fmt.Errorf("spec.workloadRef: Deployment %s/%s not found", u.GetNamespace(), ref.Name))
		}
		if err != nil {
			return err
		}
		changed = changed || workloadGeneration(u) < dep.Generation
		if spec, err = resolve(u, dep); err != nil {
			return err
		}
		id = fmt.Sprintf("k8s:%s:%d:%d", u.GetUID(), gen, dep.Generation)
		status["workloadObservedGeneration"] = strconv.FormatInt(dep.Generation, 10)
	}
	r := events.Ref{Namespace: u.GetNamespace(), Name: u.GetName()}
	if !changed && w.cfg.Snapshots != nil {
		// Observed, but perhaps by Argo's controller: a rollout Sluice
		// takes over is requested once (the same id on every replica).
		_, err := w.cfg.Snapshots.Get(ctx, r)
		switch {
		case errors.Is(err, orchestrator.ErrNoRollout):
			changed = true
		case err != nil:
			return err
		}
	}
	if changed {
		eventType, data := events.TypeRolloutRequested, any(nil)
		if ref == nil {
			rev, undo, err := w.undo(ctx, u)
			if err != nil {
				return err
			}
			if undo {
				// The template of one of its own ReplicaSets, copied back:
				// that revision again, reusing its ReplicaSet.
				eventType, data, id = events.TypeRolloutUndo, map[string]int64{"toRevision": rev}, id+":undo"
			}
		}
		if err := w.publish(ctx, u, spec, id, eventType, r, data); err != nil {
			return err
		}
		patch, _ := json.Marshal(map[string]any{"status": status})
		patched, err := w.cfg.Dynamic.Resource(RolloutResource).Namespace(r.Namespace).
			Patch(ctx, r.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "sluice"}, "status")
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if w.cached != nil {
			// The status writer's next write, for the request just
			// published, starts from this version, not from the cache's
			// older one, which would conflict and be read again.
			w.cached.wrote(r, patched)
		}
		w.log.Info("Rollout spec changed: update requested", "rollout", r.String(), "generation", gen)
	}
	if ref != nil {
		return w.scaleDown(ctx, u, ref, dep)
	}
	return nil
}

// template publishes an applied event for a template's current spec.
func (w *Watcher) template(ctx context.Context, u *unstructured.Unstructured) error {
	ref := events.Ref{Namespace: u.GetNamespace(), Name: u.GetName()}
	if ref.Namespace == "" {
		ref.Namespace = events.ClusterScope
	}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	return w.publish(ctx, u, spec, fmt.Sprintf("k8s:%s:%d", u.GetUID(), u.GetGeneration()), events.TypeAnalysisTemplateApply, ref, nil)
}

// publish sends the object's manifest with spec (without status and
// server-side metadata) as eventType, or data when not nil, with id
// derived from its uid and generation, so that every replica of the
// watcher, and every restart within the bus's duplicate window, publishes
// one event per change.
func (w *Watcher) publish(ctx context.Context, u *unstructured.Unstructured, spec map[string]any, id, eventType string, ref events.Ref, data any) error {
	manifest := map[string]any{
		"apiVersion": u.GetAPIVersion(),
		"kind":       u.GetKind(),
		"metadata": map[string]any{
			"name":        u.GetName(),
			"namespace":   u.GetNamespace(),
			"labels":      u.GetLabels(),
			"annotations": withoutLastApplied(u.GetAnnotations()),
		},
		"spec": spec,
	}
	if data == nil {
		data = manifest
	}
	ev, err := events.New(Source, eventType, ref.String(), data)
	if err != nil {
		return err
	}
	ev.SetID(id)
	actor := Actor
	if ref.Namespace != events.ClusterScope && (u.GetKind() == "Rollout" || u.GetKind() == events.KindExperiment) {
		actor = ActorOf(ManagerOf(u, ""))
	}
	if terminate, _, _ := unstructured.NestedBool(u.Object, "spec", "terminate"); terminate && u.GetKind() == events.KindExperiment {
		// Who set spec.terminate: managed fields have whole seconds, so
		// the latest writer of the spec is ambiguous right after its
		// creation.
		actor = terminator(u)
	}
	ev.SetExtension(events.ExtActor, actor)
	subject := events.CommandSubject(ref)
	_, err = w.cfg.Bus.Publish(ctx, subject, ev)
	return err
}

// withoutLastApplied drops kubectl's copy of the whole manifest.
func withoutLastApplied(ann map[string]string) map[string]string {
	delete(ann, "kubectl.kubernetes.io/last-applied-configuration")
	return ann
}
