// Package guard makes every object a Kubernetes traffic router writes carry
// the seq of the route that wrote it, so that a late task can never undo a
// later one: each write reads the object, refuses when the object already
// carries a higher seq, and writes with the object's resourceVersion, so a
// concurrent writer makes it re-read instead of overwriting.
//
// Routers on Kubernetes touch several objects per route (Services, then a
// VirtualService or an Ingress). Each object moves forward on its own: a lower
// seq never overwrites an object a higher seq wrote, which is what
// traffic.Router's seq contract asks of each effect.
package guard

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/sluicehq/sluice/services/traffic"
)

// SeqAnnotation records, on every object a router wrote, the seq of the
// route that last wrote it.
const SeqAnnotation = "traffic.sluice.io/route-seq"

// Object is a Kubernetes object: typed (*corev1.Service) or unstructured.
type Object interface {
	metav1.Object
	runtime.Object
}

// Client reads and writes one kind of object in one namespace. The typed
// clientsets' interfaces (corev1.ServiceInterface, ...) satisfy it;
// Dynamic adapts a dynamic.ResourceInterface.
type Client[T Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// Dynamic adapts a dynamic client's resource to Client.
func Dynamic(ri dynamic.ResourceInterface) Client[*unstructured.Unstructured] {
	return dynamicClient{ri}
}

type dynamicClient struct{ ri dynamic.ResourceInterface }

func (d dynamicClient) Get(ctx context.Context, name string, opts metav1.GetOptions) (*unstructured.Unstructured, error) {
	return d.ri.Get(ctx, name, opts)
}

func (d dynamicClient) Update(ctx context.Context, obj *unstructured.Unstructured, opts metav1.UpdateOptions) (*unstructured.Unstructured, error) {
	return d.ri.Update(ctx, obj, opts)
}

// backoff paces re-reads after a conflict and retries after a transient API
// server failure (429, 5xx, timeouts). The whole retry stays within ctx.
var backoff = wait.Backoff{Duration: 20 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 8, Cap: 2 * time.Second}

// Update reads the object name (described by what, such as "Service
// default/web-stable", in errors), applies mutate to a copy, records seq on
// it, and writes it back if anything changed. It returns the object as
// stored.
//
// It returns an error wrapping traffic.ErrStale when the object already
// carries a seq higher than seq, and one wrapping traffic.ErrRejected when
// the object does not exist or mutate returns an error wrapping
// traffic.ErrRejected. A conflict re-reads and re-applies; transient server
// failures are retried with backoff until ctx ends; any other error is
// returned wrapped.
func Update[T Object](ctx context.Context, c Client[T], name, what string, seq int64, mutate func(T) error) (T, error) {
	var stored T
	step := backoff
	for {
		obj, err := c.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			stored, err = write(ctx, c, obj, what, seq, mutate)
			if err == nil {
				return stored, nil
			}
		} else if apierrors.IsNotFound(err) {
			return stored, fmt.Errorf("%w: %s does not exist; create it before the rollout uses it", traffic.ErrRejected, what)
		}
		if !retriable(err) {
			return stored, err
		}
		if step.Steps <= 1 {
			return stored, fmt.Errorf("write %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return stored, fmt.Errorf("write %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(step.Step()):
		}
	}
}

// write applies one read-modify-write.
func write[T Object](ctx context.Context, c Client[T], obj T, what string, seq int64, mutate func(T) error) (T, error) {
	if have := Seq(obj); have > seq {
		return obj, fmt.Errorf("%w: %s was written by route seq %d, this route's seq is %d", traffic.ErrStale, what, have, seq)
	}
	next, ok := obj.DeepCopyObject().(T)
	if !ok {
		return obj, fmt.Errorf("copy %s: unexpected type %T", what, obj.DeepCopyObject())
	}
	if err := mutate(next); err != nil {
		return obj, fmt.Errorf("%s: %w", what, err)
	}
	ann := next.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[SeqAnnotation] = strconv.FormatInt(seq, 10)
	next.SetAnnotations(ann)
	if equality.Semantic.DeepEqual(obj, next) {
		return obj, nil
	}
	stored, err := c.Update(ctx, next, metav1.UpdateOptions{FieldManager: "sluice-traffic"})
	if err != nil {
		return obj, fmt.Errorf("update %s: %w", what, err)
	}
	return stored, nil
}

// Seq is the route seq recorded on obj, 0 if none.
func Seq(obj metav1.Object) int64 {
	v, err := strconv.ParseInt(obj.GetAnnotations()[SeqAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// retriable reports whether a failed read or write may succeed when tried
// again unchanged.
func retriable(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) ||
		apierrors.IsUnexpectedServerError(err)
}
