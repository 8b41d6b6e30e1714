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

// Memory keeps the objects a router last wrote or read, as the API server
// returned them, so that its next route for the same rollout starts from
// that copy instead of reading the object again: consecutive routes of
// an update then cost one request per object written, and none for an
// object left as it is.
//
// A copy that is no longer the object's latest (someone else wrote it
// since: a user, another replica of the traffic service) makes the write
// conflict; Update then forgets it and reads the API server, as it would
// have. So a Memory saves reads and never decides anything on its own.
// Safe for concurrent use.
type Memory[T Object] struct {
	mu      sync.Mutex
	size    int
	objects map[memoryKey]remembered[T]
}

// remembered is one object's copy, and whether the router wrote it
// (rather than read it).
type remembered[T Object] struct {
	obj     T
	written bool
}

type memoryKey struct{ namespace, name string }

// NewMemory returns a Memory of at most size objects (DefaultMemorySize
// when size is not positive); when full, an arbitrary object is dropped.
func NewMemory[T Object](size int) *Memory[T] {
	if size <= 0 {
		size = DefaultMemorySize
	}
	return &Memory[T]{size: size, objects: map[memoryKey]remembered[T]{}}
}

// Client returns c, in namespace, remembering through m: Get returns the
// remembered copy of an object when there is one and remembers what it
// reads otherwise, Update remembers what it stored and forgets the object
// when the write fails.
func (m *Memory[T]) Client(namespace string, c Client[T]) Client[T] {
	return remembering[T]{m: m, namespace: namespace, c: c}
}

// freshReader is a Client whose remembered copies may be passed over:
// Fresh returns the client reading the API server on every Get (and
// remembering what it reads). UpdateAnchored reads through it after the
// anchor moved, when a remembered copy of another object may be older
// than another writer's.
type freshReader[T Object] interface {
	Fresh() Client[T]
	// Written reports whether the copy of name it remembers is the
	// one it last wrote.
	Written(name string) bool
}

// fresh returns c reading the API server, when c remembers.
func fresh[T Object](c Client[T]) Client[T] {
	if f, ok := c.(freshReader[T]); ok {
		return f.Fresh()
	}
	return c
}

func (m *Memory[T]) get(k memoryKey) (T, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.objects[k]
	if !ok {
		return r.obj, false
	}
	cp, ok := r.obj.DeepCopyObject().(T)
	return cp, ok
}

// written reports whether the copy of k remembered is one the router
// wrote.
func (m *Memory[T]) written(k memoryKey) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.objects[k].written
}

func (m *Memory[T]) put(k memoryKey, obj T, written bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[k]; !ok && len(m.objects) >= m.size {
		for drop := range m.objects {
			delete(m.objects, drop)
			break
		}
	}
	m.objects[k] = remembered[T]{obj, written}
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
	// fresh reads the API server even when a copy is remembered.
	fresh bool
}

func (r remembering[T]) Written(name string) bool {
	return r.m.written(memoryKey{r.namespace, name})
}

func (r remembering[T]) Fresh() Client[T] {
	r.fresh = true
	return r
}

func (r remembering[T]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	k := memoryKey{r.namespace, name}
	if !r.fresh {
		if obj, ok := r.m.get(k); ok {
			return obj, nil
		}
	}
	obj, err := r.c.Get(ctx, name, opts)
	if err != nil {
		r.m.forget(k)
		return obj, err
	}
	if cp, ok := obj.DeepCopyObject().(T); ok {
		r.m.put(k, cp, false)
	}
	return obj, nil
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
	r.m.put(k, stored, true)
	return stored, nil
}
