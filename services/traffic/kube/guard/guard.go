// Package guard makes every object a Kubernetes traffic router writes carry
// the seq of the route that wrote it, so that a late task can never undo a
// later one: each write reads the object, refuses when the object already
// carries a higher seq, and writes with the object's resourceVersion, so a
// concurrent writer makes it re-read instead of overwriting.
//
// Routers on Kubernetes touch several objects per route (Services, then a
// VirtualService or an Ingress). With Update and UpdateAll each object moves
// forward on its own: every route writes every object, and a lower seq
// never overwrites an object a higher seq wrote, which is what
// traffic.Router's seq contract asks of each effect. UpdateAll checks a
// route against all of a router's objects before it writes any of them.
//
// UpdateAnchored writes fewer: only one object of the route, the anchor,
// on every route, and the others only when their content changes (the
// basic router's Services: most routes of an update change a weight, not a
// selector). An object a route leaves alone then keeps an older seq, so
// its own annotation no longer fences it; the anchor does, through the
// order of each route's reads and writes and a repair by the late route
// that finds itself overtaken. UpdateAnchored's doc gives the argument and
// the one case it leaves to a redelivery (a route that dies between its
// writes).
package guard

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/spec"
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

// Dynamic adapts a dynamic client's resource to Client (and Deleter).
func Dynamic(ri dynamic.ResourceInterface) interface {
	Client[*unstructured.Unstructured]
	Deleter[*unstructured.Unstructured]
} {
	return dynamicClient{ri}
}

type dynamicClient struct{ ri dynamic.ResourceInterface }

func (d dynamicClient) Get(ctx context.Context, name string, opts metav1.GetOptions) (*unstructured.Unstructured, error) {
	return d.ri.Get(ctx, name, opts)
}

func (d dynamicClient) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return d.ri.Delete(ctx, name, opts)
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
// It returns an error wrapping tasks.ErrStale when the object already
// carries a seq higher than seq, and one wrapping traffic.ErrRejected when
// the object does not exist or mutate returns an error wrapping
// traffic.ErrRejected. A conflict re-reads and re-applies; transient server
// failures are retried with backoff until ctx ends; any other error is
// returned wrapped.
func Update[T Object](ctx context.Context, c Client[T], name, what string, seq int64, mutate func(T) error) (T, error) {
	stored, _, err := update(ctx, c, name, what, seq, mutate, mode{release: releasing(ctx)})
	return stored, err
}

// mode says how update writes.
type mode struct {
	// release takes the seq off the object instead of recording it.
	release bool
	// quiet leaves an object whose only change would be the seq as it
	// is: UpdateAnchored's objects besides the anchor.
	quiet bool
}

// Release is Update for a rollout that is removed from an object it does
// not own: mutate takes the rollout's routes out, and the seq and
// managed-by annotations go with them, so that the object no longer remembers the rollout (a
// rollout of the same name created later starts fresh). A missing object
// is fine: there is nothing to release. A mutate error wrapping ErrLeave
// leaves the object as it is (another rollout's).
func Release[T Object](ctx context.Context, c Client[T], name, what string, seq int64, mutate func(T) error) error {
	_, _, err := update(ctx, c, name, what, seq, mutate, mode{release: true})
	if errors.Is(err, ErrMissing) || errors.Is(err, ErrLeave) {
		return nil
	}
	return err
}

// ErrLeave, from a Release's mutate, leaves the object unchanged.
var ErrLeave = errors.New("not the rollout's: left alone")

// update is Update's read-modify-write loop; it also reports whether it
// wrote the object.
func update[T Object](ctx context.Context, c Client[T], name, what string, seq int64, mutate func(T) error, m mode) (T, bool, error) {
	return updateFrom(ctx, c, name, what, seq, mutate, m, nil)
}

// updateFrom is update starting from obj, when the caller has just read
// it (nil: read it first).
func updateFrom[T Object](ctx context.Context, c Client[T], name, what string, seq int64, mutate func(T) error, m mode, obj *T) (T, bool, error) {
	var stored T
	step := backoff
	for {
		var err error
		if obj == nil {
			var got T
			got, err = c.Get(ctx, name, metav1.GetOptions{})
			obj = &got
		}
		if err == nil {
			var wrote bool
			stored, wrote, err = write(ctx, c, *obj, what, seq, mutate, m)
			if err == nil {
				return stored, wrote, nil
			}
		} else if apierrors.IsNotFound(err) {
			return stored, false, missing(what)
		}
		obj = nil
		if !retriable(err) {
			return stored, false, err
		}
		if step.Steps <= 1 {
			return stored, false, fmt.Errorf("write %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return stored, false, fmt.Errorf("write %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(step.Step()):
		}
	}
}

// write applies one read-modify-write, and reports whether it wrote.
func write[T Object](ctx context.Context, c Client[T], obj T, what string, seq int64, mutate func(T) error, m mode) (T, bool, error) {
	next, err := change(obj, what, seq, mutate, m.release)
	if err != nil {
		return obj, false, err
	}
	if equality.Semantic.DeepEqual(obj, next) || (m.quiet && onlySeqChanged(obj, next)) {
		return obj, false, nil
	}
	stored, err := c.Update(ctx, next, metav1.UpdateOptions{FieldManager: "sluice-traffic"})
	if err != nil {
		return obj, false, fmt.Errorf("update %s: %w", what, err)
	}
	return stored, true, nil
}

// onlySeqChanged reports whether next differs from obj in nothing but
// SeqAnnotation.
func onlySeqChanged[T Object](obj, next T) bool {
	cp, ok := next.DeepCopyObject().(T)
	if !ok {
		return false
	}
	ann := cp.GetAnnotations()
	if have, ok := obj.GetAnnotations()[SeqAnnotation]; ok {
		ann[SeqAnnotation] = have
	} else {
		delete(ann, SeqAnnotation)
		if len(ann) == 0 {
			ann = nil
		}
	}
	cp.SetAnnotations(ann)
	return equality.Semantic.DeepEqual(obj, cp)
}

// change returns a copy of obj with mutate applied and seq recorded (or,
// to release it, removed), or an error wrapping tasks.ErrStale when obj
// carries a higher seq.
func change[T Object](obj T, what string, seq int64, mutate func(T) error, release bool) (T, error) {
	var none T
	if have := Seq(obj); have > seq {
		return none, fmt.Errorf("%w: %s was written by route seq %d, this route's seq is %d", tasks.ErrStale, what, have, seq)
	}
	next, ok := obj.DeepCopyObject().(T)
	if !ok {
		return none, fmt.Errorf("copy %s: unexpected type %T", what, obj.DeepCopyObject())
	}
	if err := mutate(next); err != nil {
		return none, fmt.Errorf("%s: %w", what, err)
	}
	ann := next.GetAnnotations()
	if release {
		// mutate refused an object another rollout manages, so the
		// claim is this rollout's.
		delete(ann, SeqAnnotation)
		delete(ann, BumpAnnotation)
		delete(ann, spec.AnnotationManagedBy)
		if len(ann) == 0 {
			ann = nil
		}
		next.SetAnnotations(ann)
		return next, nil
	}
	if ann == nil {
		ann = map[string]string{}
	}
	ann[SeqAnnotation] = strconv.FormatInt(seq, 10)
	next.SetAnnotations(ann)
	return next, nil
}

// ErrMissing marks the rejection of a route because an object it names
// does not exist (it also wraps traffic.ErrRejected). A removal treats it as
// done: there is nothing left to take the rollout out of.
var ErrMissing = errors.New("object does not exist")

// missingError is the rejection of an object that does not exist.
type missingError struct{ what string }

func (e missingError) Error() string {
	return fmt.Sprintf("%v: %s does not exist; create it before the rollout uses it", traffic.ErrRejected, e.what)
}

func (e missingError) Unwrap() []error { return []error{traffic.ErrRejected, ErrMissing} }

func missing(what string) error { return missingError{what} }

// Deleter reads and deletes one kind of object in one namespace.
type Deleter[T Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// Delete deletes the object name, which a router created for a rollout now
// removed, unless it carries a seq higher than seq (an error wrapping
// tasks.ErrStale) or mine says it is not the rollout's (it is left alone).
// An object already gone is fine. The delete is conditional on the
// object's uid and resourceVersion as read, so a concurrent write makes it
// read again.
func Delete[T Object](ctx context.Context, c Deleter[T], name, what string, seq int64, mine func(T) bool) error {
	step := backoff
	for {
		obj, err := c.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			if have := Seq(obj); have > seq {
				return fmt.Errorf("%w: %s was written by route seq %d, the removal's seq is %d", tasks.ErrStale, what, have, seq)
			}
			if mine != nil && !mine(obj) {
				return nil
			}
			uid, rv := obj.GetUID(), obj.GetResourceVersion()
			err = c.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
			if err == nil || apierrors.IsNotFound(err) {
				return nil
			}
		}
		if !retriable(err) {
			return fmt.Errorf("delete %s: %w", what, err)
		}
		if step.Steps <= 1 {
			return fmt.Errorf("delete %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(step.Step()):
		}
	}
}

// Getter reads one kind of object in one namespace.
type Getter[T Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
}

// Get reads the object name (what, in errors), retrying a transient API
// server failure (429, 5xx, a timeout) with the backoff Update uses, until
// it succeeds, fails otherwise, the backoff runs out or ctx ends. A read a
// router needs before it writes (a stable Ingress, the objects UpdateAll
// checks) then fails the route only when the API server keeps failing,
// not at its first 503. Errors are the client's, wrapped: NotFound stays
// apierrors.IsNotFound.
func Get[T Object](ctx context.Context, c Getter[T], name, what string) (T, error) {
	step := backoff
	for {
		obj, err := c.Get(ctx, name, metav1.GetOptions{})
		if err == nil || !retriable(err) || step.Steps <= 1 {
			if err != nil {
				err = fmt.Errorf("read %s: %w", what, err)
			}
			return obj, err
		}
		select {
		case <-ctx.Done():
			return obj, fmt.Errorf("read %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(step.Step()):
		}
	}
}

// Change is one object of a route that changes several: the object Name,
// read and written through Client and called What in errors
// ("VirtualService default/web"), and the change Mutate makes to it, as for
// Update.
type Change[T Object] struct {
	Client Client[T]
	Name   string
	What   string
	Mutate func(T) error
}

// UpdateAll puts the changes of one route in effect, writing none of them
// when one cannot be made. It first reads every object, in order, and
// applies its Mutate to a copy, writing nothing; the first failure is
// returned as Update would return it (a missing object or a rejection from
// Mutate wraps traffic.ErrRejected, a higher seq tasks.ErrStale); a read
// that fails transiently is retried as Get retries it. It then writes each
// object, in order, with Update, and returns them as stored, in the order
// of changes.
//
// The check is no transaction: an object that changes between the check
// and its write can still fail its Update, after the objects before it were
// written. Each object still only moves forward, as the package promises.
func UpdateAll[T Object](ctx context.Context, seq int64, changes []Change[T]) ([]T, error) {
	for _, c := range changes {
		obj, err := Get(ctx, c.Client, c.Name, c.What)
		if apierrors.IsNotFound(err) {
			return nil, missing(c.What)
		}
		if err != nil {
			return nil, err
		}
		if _, err := change(obj, c.What, seq, c.Mutate, releasing(ctx)); err != nil {
			return nil, err
		}
	}
	stored := make([]T, 0, len(changes))
	for _, c := range changes {
		obj, err := Update(ctx, c.Client, c.Name, c.What, seq, c.Mutate)
		if err != nil {
			return nil, err
		}
		stored = append(stored, obj)
	}
	return stored, nil
}

// ListAt returns the list at path in obj, for a Mutate of an unstructured
// object: nil when absent or null, and an error wrapping
// traffic.ErrRejected, naming the path, when something else is there.
func ListAt(obj map[string]any, path ...string) ([]any, error) {
	v, found, err := unstructured.NestedFieldNoCopy(obj, path...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", traffic.ErrRejected, strings.Join(path, "."), err)
	}
	if !found || v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a list", traffic.ErrRejected, strings.Join(path, "."))
	}
	return l, nil
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
