package guard

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// DefaultMemorySize is how many objects a Memory keeps unless told
// otherwise: a few per rollout for a few thousand rollouts.
const DefaultMemorySize = 8192

// Memory keeps the objects a router last wrote, as the API server
// returned them, so that its next route for the same rollout starts from
// that copy instead of reading the object again: consecutive routes of
// an update then cost one request per object (the write), not two.
//
// A copy that is no longer the object's latest (someone else wrote it
// since: a user, another replica of the traffic service) makes the write
// conflict; Update then forgets it and reads the API server, as it would
// have. So a Memory saves reads and never decides anything on its own.
// Safe for concurrent use.
type Memory[T Object] struct {
	mu      sync.Mutex
	size    int
	objects map[memoryKey]T
}

type memoryKey struct{ namespace, name string }

// NewMemory returns a Memory of at most size objects (DefaultMemorySize
// when size is not positive); when full, an arbitrary object is dropped.
func NewMemory[T Object](size int) *Memory[T] {
	if size <= 0 {
		size = DefaultMemorySize
	}
	return &Memory[T]{size: size, objects: map[memoryKey]T{}}
}

// Client returns c, in namespace, remembering through m: Get returns the
// remembered copy of an object when there is one, Update remembers what
// it stored and forgets the object when the write fails.
func (m *Memory[T]) Client(namespace string, c Client[T]) Client[T] {
	return remembering[T]{m: m, namespace: namespace, c: c}
}

func (m *Memory[T]) get(k memoryKey) (T, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	obj, ok := m.objects[k]
	if !ok {
		return obj, false
	}
	cp, ok := obj.DeepCopyObject().(T)
	return cp, ok
}

func (m *Memory[T]) put(k memoryKey, obj T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[k]; !ok && len(m.objects) >= m.size {
		for drop := range m.objects {
			delete(m.objects, drop)
			break
		}
	}
	m.objects[k] = obj
}

func (m *Memory[T]) forget(k memoryKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, k)
}

type remembering[T Object] struct {
	m         *Memory[T]
	namespace string
	c         Client[T]
}

func (r remembering[T]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	if obj, ok := r.m.get(memoryKey{r.namespace, name}); ok {
		return obj, nil
	}
	return r.c.Get(ctx, name, opts)
}

func (r remembering[T]) Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	k := memoryKey{r.namespace, obj.GetName()}
	stored, err := r.c.Update(ctx, obj, opts)
	if err != nil {
		r.m.forget(k)
		if apierrors.IsNotFound(err) {
			// Deleted since it was remembered: read it again, as a
			// conflict does, so that a missing object is reported as
			// Update reports one it reads.
			return stored, apierrors.NewConflict(schema.GroupResource{}, obj.GetName(), err)
		}
		return stored, err
	}
	r.m.put(k, stored)
	return stored, nil
}
