package crd

import (
	"strconv"
	"sync"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas/kube"
)

// cached is what the controllers' informers hold, shared so that the
// status writer and Counts read Rollouts and ReplicaSets from the caches
// the watcher and Counts keep anyway instead of asking the API server on
// every status event and every ReplicaSet change. Until a cache has
// synced, its reads report ok false and the caller asks the API server.
type cached struct {
	rollouts atomic.Pointer[cache.SharedIndexInformer]
	rsets    atomic.Pointer[appslisters.ReplicaSetLister]

	// written are the Rollouts as the status writer's last writes left
	// them, until the cache has caught up: the writer's next write of
	// the same Rollout, often a few milliseconds later (a decision's
	// events come together), would otherwise start from the cache's
	// older version and conflict.
	mu      sync.Mutex
	written map[events.Ref]*unstructured.Unstructured
}

// rollout is the Rollout namespace/name from the cache, or the writer's
// own later write of it; a copy the caller may change.
func (c *cached) rollout(ref events.Ref) (*unstructured.Unstructured, bool) {
	inf := c.rollouts.Load()
	if inf == nil || !(*inf).HasSynced() {
		return nil, false
	}
	obj, ok, err := (*inf).GetStore().GetByKey(ref.Namespace + "/" + ref.Name)
	if err != nil {
		return nil, false
	}
	ro, _ := obj.(*unstructured.Unstructured)
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.written[ref]; w != nil {
		if !ok || ro == nil || w.GetUID() != ro.GetUID() {
			delete(c.written, ref)
		} else if newerVersion(w.GetResourceVersion(), ro.GetResourceVersion()) {
			return w.DeepCopy(), true
		} else {
			delete(c.written, ref) // the cache has it now
		}
	}
	if !ok || ro == nil {
		// Not in the cache: the caller reads the API server (it may be
		// a Rollout created a moment ago).
		return nil, false
	}
	return ro.DeepCopy(), true
}

// wrote keeps what a write of the status writer returned.
func (c *cached) wrote(ref events.Ref, ro *unstructured.Unstructured) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.written == nil {
		c.written = map[events.Ref]*unstructured.Unstructured{}
	}
	c.written[ref] = ro
}

// forget drops the writer's own write of ref, after a conflict showed
// that something else wrote since.
func (c *cached) forget(ref events.Ref) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.written, ref)
}

// replicaSets are the ReplicaSets labelled as the rollout's (RolloutLabel).
// ok is false until Counts' cache has synced, and on a nil c.
func (c *cached) replicaSets(namespace, rollout string) ([]*appsv1.ReplicaSet, bool) {
	if c == nil {
		return nil, false
	}
	l := c.rsets.Load()
	if l == nil {
		return nil, false
	}
	list, err := (*l).ReplicaSets(namespace).List(labels.SelectorFromSet(labels.Set{kube.RolloutLabel: rollout}))
	return list, err == nil
}

// newerVersion reports whether resourceVersion a is later than b, both
// being etcd revisions as kube-apiserver gives them.
func newerVersion(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x > y
}
