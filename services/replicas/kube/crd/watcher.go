package crd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sluicehq/sluice/pkg/events"
)

// Publisher publishes one event; *events.Client implements it.
type Publisher interface {
	Publish(ctx context.Context, subject string, ev events.Event) (events.PublishResult, error)
}

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// Dynamic reads Rollouts and templates and writes Rollout status.
	Dynamic dynamic.Interface
	// Bus publishes the events.
	Bus Publisher
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
	ready atomic.Bool

	informers map[schema.GroupVersionResource]cache.SharedIndexInformer
}

// key is one object to reconcile.
type key struct {
	gvr             schema.GroupVersionResource
	namespace, name string
}

// NewWatcher returns a watcher; Run starts it.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.Dynamic == nil || cfg.Bus == nil {
		return nil, errors.New("crd watcher: a dynamic client and a publisher are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Watcher{cfg: cfg, log: cfg.Logger}, nil
}

// Ready reports whether the caches have synced, so that no change is
// missed from here on.
func (w *Watcher) Ready() bool { return w.ready.Load() }

// Run watches until ctx ends. A CRD that is not installed is logged with
// the command that installs it, and watched for until it is.
func (w *Watcher) Run(ctx context.Context) error {
	w.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[key](100*time.Millisecond, time.Minute),
		workqueue.TypedRateLimitingQueueConfig[key]{Name: "sluice-crd"})
	defer w.queue.ShutDown()
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(w.cfg.Dynamic, 0, w.cfg.Namespace, nil)
	gvrs := []schema.GroupVersionResource{RolloutResource, AnalysisTemplateResource}
	if w.cfg.Namespace == "" {
		gvrs = append(gvrs, ClusterAnalysisTemplateResource)
	}
	w.informers = map[schema.GroupVersionResource]cache.SharedIndexInformer{}
	for _, gvr := range gvrs {
		inf := factory.ForResource(gvr).Informer()
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			if apierrors.IsNotFound(err) {
				w.log.Error("cannot watch "+gvr.Resource+"."+gvr.Group+": the CRD is not installed; install it with kubectl apply -k deploy/crds", "error", err)
				return
			}
			w.log.Warn("watch of "+gvr.Resource+" failed; retrying", "error", err)
		}); err != nil {
			return err
		}
		enqueue := func(obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				w.queue.Add(key{gvr, u.GetNamespace(), u.GetName()})
			}
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    enqueue,
			UpdateFunc: func(_, obj any) { enqueue(obj) },
		}); err != nil {
			return err
		}
		w.informers[gvr] = inf
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	go func() {
		for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return
			}
		}
		w.ready.Store(true)
	}()
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for w.next(ctx) {
	}
	return nil
}

// next reconciles one key; false once the queue is shut down.
func (w *Watcher) next(ctx context.Context) bool {
	k, quit := w.queue.Get()
	if quit {
		return false
	}
	defer w.queue.Done(k)
	if err := w.reconcile(ctx, k); err != nil {
		if ctx.Err() == nil {
			w.log.Warn("publishing a cluster object's change failed; retrying", "resource", k.gvr.Resource, "namespace", k.namespace, "name", k.name, "error", err)
		}
		w.queue.AddRateLimited(k)
		return true
	}
	w.queue.Forget(k)
	return true
}

func (w *Watcher) reconcile(ctx context.Context, k key) error {
	id := k.name
	if k.namespace != "" {
		id = k.namespace + "/" + k.name
	}
	obj, exists, err := w.informers[k.gvr].GetStore().GetByKey(id)
	if err != nil || !exists {
		return err // deleted: Sluice keeps the rollout's state; see docs/platform-kube.md
	}
	u := obj.(*unstructured.Unstructured)
	if k.gvr == RolloutResource {
		return w.rollout(ctx, u)
	}
	return w.template(ctx, u)
}

// rollout publishes a requested event for a spec not yet published, then
// records its generation as observed.
func (w *Watcher) rollout(ctx context.Context, u *unstructured.Unstructured) error {
	gen := u.GetGeneration()
	observed, _, _ := unstructured.NestedString(u.Object, "status", "observedGeneration")
	if n, err := strconv.ParseInt(observed, 10, 64); err == nil && n >= gen {
		return nil
	}
	ref := events.Ref{Namespace: u.GetNamespace(), Name: u.GetName()}
	if err := w.publish(ctx, u, events.TypeRolloutRequested, ref); err != nil {
		return err
	}
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{"observedGeneration": strconv.FormatInt(gen, 10)}})
	_, err := w.cfg.Dynamic.Resource(RolloutResource).Namespace(ref.Namespace).
		Patch(ctx, ref.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "sluice"}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		w.log.Info("Rollout spec changed: update requested", "rollout", ref.String(), "generation", gen)
	}
	return err
}

// template publishes an applied event for a template's current spec.
func (w *Watcher) template(ctx context.Context, u *unstructured.Unstructured) error {
	ref := events.Ref{Namespace: u.GetNamespace(), Name: u.GetName()}
	if ref.Namespace == "" {
		ref.Namespace = ClusterScope
	}
	return w.publish(ctx, u, events.TypeAnalysisTemplateApply, ref)
}

// publish sends the object's manifest (without status and server-side
// metadata) as eventType, with an id derived from its uid and generation,
// so that every replica of the watcher, and every restart within the bus's
// duplicate window, publishes one event per change.
func (w *Watcher) publish(ctx context.Context, u *unstructured.Unstructured, eventType string, ref events.Ref) error {
	manifest := map[string]any{
		"apiVersion": u.GetAPIVersion(),
		"kind":       u.GetKind(),
		"metadata": map[string]any{
			"name":        u.GetName(),
			"namespace":   u.GetNamespace(),
			"labels":      u.GetLabels(),
			"annotations": withoutLastApplied(u.GetAnnotations()),
		},
		"spec": u.Object["spec"],
	}
	ev, err := events.New(Source, eventType, ref.String(), manifest)
	if err != nil {
		return err
	}
	ev.SetID(fmt.Sprintf("k8s:%s:%d", u.GetUID(), u.GetGeneration()))
	subject := events.CommandSubject(ref)
	_, err = w.cfg.Bus.Publish(ctx, subject, ev)
	return err
}

// withoutLastApplied drops kubectl's copy of the whole manifest.
func withoutLastApplied(ann map[string]string) map[string]string {
	delete(ann, "kubectl.kubernetes.io/last-applied-configuration")
	return ann
}
