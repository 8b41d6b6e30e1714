package crd

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas/kube"
)

// CountsConfig configures a Counts writer.
type CountsConfig struct {
	// Client watches ReplicaSets.
	Client kubernetes.Interface
	// Dynamic patches Rollout status.
	Dynamic dynamic.Interface
	// Namespace limits the writer to one namespace; empty means all.
	Namespace string
	// Logger receives the writer's logs (default slog.Default()).
	Logger *slog.Logger
}

// Counts keeps the replica counts of Rollout objects' status (replicas,
// readyReplicas, availableReplicas, updatedReplicas) equal to the sums over
// their ReplicaSets, as Argo Rollouts does, and those of standalone
// Experiment objects' templateStatuses equal to their templates'
// ReplicaSets'. They change without any status
// event (a pod crashing, an HPA scaling), and the /scale subresource
// reports status.replicas to HPAs, so they come from the ReplicaSets, not
// from the orchestrator's snapshots.
type Counts struct {
	cfg   CountsConfig
	log   *slog.Logger
	ready atomic.Bool
	queue atomic.Pointer[workqueue.TypedRateLimitingInterface[countKey]]
	// rewrite, when set, writes the rollout's whole status again instead
	// of patching the counts: Argo's phase and conditions derive from
	// them (the status writer's Rewrite).
	// It also writes a standalone Experiment's status again when its
	// templates' ReplicaSets change; unset, their counts are written with
	// each status event only.
	rewrite func(context.Context, events.Ref) error
	// cached, when set, gives the Rollouts from the watcher's cache, and
	// is given the ReplicaSet cache for the status writer's reads.
	cached *cached
}

// countKey is one object whose counts to write: a Rollout, or a
// standalone Experiment.
type countKey struct {
	types.NamespacedName
	experiment bool
}

// NewCounts returns a Counts writer; Run starts it.
func NewCounts(cfg CountsConfig) (*Counts, error) {
	if cfg.Client == nil || cfg.Dynamic == nil {
		return nil, errors.New("crd counts: a Kubernetes client and a dynamic client are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Counts{cfg: cfg, log: cfg.Logger}, nil
}

// Ready reports whether the ReplicaSet cache has synced.
func (c *Counts) Ready() bool { return c.ready.Load() }

// Run keeps the counts until ctx ends.
func (c *Counts) Run(ctx context.Context) error {
	queue := newQueue[countKey]("sluice-crd-counts")
	defer queue.ShutDown()
	c.queue.Store(&queue)
	// The revisions' ReplicaSets (label RolloutLabel), and the experiment
	// templates' (ExperimentOfLabel, which names a standalone Experiment,
	// or the Rollout of a step's experiment, which has no object).
	var listers []appslisters.ReplicaSetLister
	for _, label := range []string{kube.RolloutLabel, kube.ExperimentOfLabel} {
		factory := informers.NewSharedInformerFactoryWithOptions(c.cfg.Client, 0, informers.WithNamespace(c.cfg.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = label }))
		rsInformer := factory.Apps().V1().ReplicaSets()
		enqueue := func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if rs, ok := obj.(*appsv1.ReplicaSet); ok {
				queue.Add(countKey{types.NamespacedName{Namespace: rs.Namespace, Name: rs.Labels[label]}, label == kube.ExperimentOfLabel})
			}
		}
		if _, err := rsInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue,
		}); err != nil {
			return err
		}
		listers = append(listers, rsInformer.Lister())
		factory.Start(ctx.Done())
		defer factory.Shutdown()
		for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return nil // ctx ended
			}
		}
	}
	if c.cached != nil {
		c.cached.rsets.Store(&listers[0])
	}
	c.ready.Store(true)
	// Several workers (the queue never gives one key to two): a write
	// waits for the client's rate limiter and for the status writer's
	// write of the same Rollout, and one Rollout's wait must not hold
	// the others' counts back.
	var wg sync.WaitGroup
	for range countsWorkers {
		wg.Go(func() {
			work(ctx, queue, c.log, "writing Rollout replica counts", func(ctx context.Context, key countKey) error {
				if key.experiment {
					if c.rewrite == nil {
						return nil
					}
					return c.rewrite(ctx, events.Ref{Namespace: key.Namespace, Name: key.Name})
				}
				return c.write(ctx, key.NamespacedName, listers[0].ReplicaSets(key.Namespace))
			})
		})
	}
	wg.Wait()
	return nil
}

// countsWorkers is how many Rollouts' counts Counts writes at once.
const countsWorkers = 8

// replicaSets lists the ReplicaSets of one namespace from the cache.
type replicaSets interface {
	List(selector labels.Selector) ([]*appsv1.ReplicaSet, error)
}

// write patches one Rollout's counts when they differ from its ReplicaSets'.
func (c *Counts) write(ctx context.Context, key types.NamespacedName, rsets replicaSets) error {
	rollouts := c.cfg.Dynamic.Resource(RolloutResource).Namespace(key.Namespace)
	ro, ok := c.cachedRollout(events.Ref{Namespace: key.Namespace, Name: key.Name})
	if !ok {
		var err error
		ro, err = rollouts.Get(ctx, key.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil // not a cluster object
		}
		if err != nil {
			return err
		}
	}
	list, err := rsets.List(labels.SelectorFromSet(labels.Set{kube.RolloutLabel: key.Name}))
	if err != nil {
		return err
	}
	current, _, _ := unstructured.NestedString(ro.Object, "status", "currentPodHash")
	want := SumReplicas(list, current)
	status, _, _ := unstructured.NestedMap(ro.Object, "status")
	same := true
	for k, v := range want {
		if n, ok := status[k].(int64); !ok || n != v {
			same = false
		}
	}
	if same {
		return nil
	}
	if c.rewrite != nil {
		return c.rewrite(ctx, events.Ref{Namespace: key.Namespace, Name: key.Name})
	}
	patch, err := json.Marshal(map[string]any{"status": want})
	if err != nil {
		return err
	}
	_, err = rollouts.Patch(ctx, key.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "sluice"}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// cachedRollout is the Rollout of key from the watcher's cache (ok false
// without it, or when it has not the Rollout: the API server is asked).
// An old version in the cache is harmless: the watcher asks Counts again
// when the Rollout's status changes (Controllers.Run), so counts the
// cache showed equal, but which a later write changed, are looked at
// again once the cache has that write.
func (c *Counts) cachedRollout(ref events.Ref) (*unstructured.Unstructured, bool) {
	if c.cached == nil {
		return nil, false
	}
	return c.cached.rollout(ref)
}

// recount makes Counts look at a Rollout's counts again. Safe before Run
// (it does nothing then).
func (c *Counts) recount(ref events.Ref) {
	if q := c.queue.Load(); q != nil {
		(*q).Add(countKey{NamespacedName: types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}})
	}
}

// SumReplicas is the status counts of a rollout whose ReplicaSets are
// list and whose current revision has pod hash current.
func SumReplicas(list []*appsv1.ReplicaSet, current string) map[string]int64 {
	out := map[string]int64{"replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "updatedReplicas": 0}
	for _, rs := range list {
		if rs.DeletionTimestamp != nil {
			continue
		}
		out["replicas"] += int64(rs.Status.Replicas)
		out["readyReplicas"] += int64(rs.Status.ReadyReplicas)
		out["availableReplicas"] += int64(rs.Status.AvailableReplicas)
		if current != "" && rs.Labels[spec.LabelPodTemplateHash] == current {
			out["updatedReplicas"] = int64(rs.Status.AvailableReplicas)
		}
	}
	return out
}
