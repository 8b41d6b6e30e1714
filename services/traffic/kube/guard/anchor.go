package guard

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/services/traffic"
)

// BumpAnnotation counts, on an anchor, the writes of other objects that
// would otherwise leave the anchor as it was (a repair, a redelivered
// route finding an object changed; see UpdateAnchored): the anchor must
// change after every such write, so that a route that read it before
// conflicts and reads every object again.
const BumpAnnotation = "traffic.sluice.io/route-bump"

// Anchored is one route's changes to several objects of which only one,
// the anchor, is written on every route.
type Anchored[T Object] struct {
	// Anchor is written on every route: it carries the route's seq and,
	// through its Mutate, a record of what the route wants of Others,
	// which Restore reads back.
	Anchor Change[T]
	// Others are written only when their Mutate changes something
	// besides the seq; when written they carry the seq too.
	Others []Change[T]
	// Restore returns, for an anchor as stored, the changes that put on
	// the other objects what the route that last wrote the anchor
	// recorded there (none when it recorded nothing).
	Restore func(anchor T) []Change[T]
}

// errAnchorMoved is an attempt of UpdateAnchored that found the anchor
// written by another route of a seq not higher than its own: it is made
// again from the API server's copies.
var errAnchorMoved = errors.New("the anchor was written meanwhile")

// UpdateAnchored puts a route's changes in effect as UpdateAll does
// (nothing is written when one change cannot be made; a missing object or
// a rejection wraps traffic.ErrRejected, a higher seq on the anchor or on
// a written object tasks.ErrStale), but writes the objects besides the
// anchor only when their content changes, and the anchor last, on every
// route. It returns the anchor as stored.
//
// The anchor is then the fence of the whole route, and the order of each
// route's requests keeps a late route from undoing a later one that left
// an object as it found it:
//
//  1. read the anchor; refuse when it carries a higher seq;
//  2. read the other objects, then write those that change;
//  3. write the anchor, conditional on the resourceVersion read in 1
//     (changed by BumpAnnotation when it would otherwise stay the same
//     although 2 wrote something).
//
// Take a late route L that writes an object O, and a later route N that
// leaves O alone because it found O as N wants it. Both write the anchor
// last, each conditional on its own earlier read, so the anchor's writes
// are ordered:
//
//   - N's anchor write comes first. Then L's conditional write conflicts
//     (or L read the anchor after N's write and was refused in 1): L
//     reads the anchor again, finds N's higher seq, and repairs before it
//     reports stale. The repair makes every other object match what the
//     anchor records (Restore), under the anchor's seq, and then changes
//     the anchor (BumpAnnotation), conditional on the copy it restored
//     from; so a still later route that read the anchor before the repair
//     conflicts and reads everything again, and one that read it after
//     sees the repaired objects.
//   - L's anchor write comes first. L wrote O before it, so N, whose
//     anchor write then succeeds, read the anchor after L's write (it
//     conflicts and tries again otherwise) and O after that: N saw L's
//     write and wrote O itself if it wanted it otherwise.
//
// "Read" means from the API server, or from a Memory only while this
// router wrote the anchor last: an attempt whose anchor copy is not one
// it wrote, or that follows a conflict on the anchor, reads every object
// from the API server.
//
// What this does not close: a route that writes an object and then dies
// (or loses the API server) before its anchor write. The objects it wrote
// stay as it wrote them, and a later route remembering them otherwise may
// leave them so, until the route's task is delivered again: a redelivered
// route that finds the anchor carrying a higher seq repairs before it
// reports stale, as in the race above.
func UpdateAnchored[T Object](ctx context.Context, seq int64, a Anchored[T]) (T, error) {
	step := backoff
	freshReads := false
	for {
		stored, err := anchoredAttempt(ctx, seq, a, freshReads)
		if !errors.Is(err, errAnchorMoved) {
			return stored, err
		}
		freshReads = true
		if step.Steps <= 1 {
			return stored, fmt.Errorf("write %s: %w", a.Anchor.What, err)
		}
		select {
		case <-ctx.Done():
			return stored, fmt.Errorf("write %s: %w (last error: %v)", a.Anchor.What, ctx.Err(), err)
		case <-time.After(step.Step()):
		}
	}
}

// anchoredAttempt is one pass of steps 1 to 3 of UpdateAnchored, reading
// from the API server when freshReads.
func anchoredAttempt[T Object](ctx context.Context, seq int64, a Anchored[T], freshReads bool) (T, error) {
	var none T
	if r, ok := a.Anchor.Client.(freshReader[T]); ok && !r.Written(a.Anchor.Name) {
		// Copies of the others remembered are as new as the anchor only
		// when this router wrote the anchor last (see UpdateAnchored).
		freshReads = true
	}
	client := func(c Client[T]) Client[T] {
		if freshReads {
			return fresh(c)
		}
		return c
	}
	ac := client(a.Anchor.Client)
	anchor, err := read(ctx, ac, a.Anchor.Name, a.Anchor.What)
	if err != nil {
		return none, err
	}
	if have := Seq(anchor); have > seq {
		// Perhaps an earlier delivery of this route wrote an object and
		// stopped before its anchor write.
		if err := repair(ctx, a); err != nil {
			return none, err
		}
		return none, staleAt(a.Anchor.What, have, seq)
	}
	next, err := change(anchor, a.Anchor.What, seq, a.Anchor.Mutate, releasing(ctx))
	if err != nil {
		return none, err
	}
	others := make([]T, len(a.Others))
	for i, o := range a.Others {
		obj, err := read(ctx, client(o.Client), o.Name, o.What)
		if err != nil {
			return none, err
		}
		if _, err := change(obj, o.What, seq, o.Mutate, releasing(ctx)); err != nil {
			return none, err
		}
		others[i] = obj
	}
	wrote := false
	for i, o := range a.Others {
		_, w, err := updateFrom(ctx, client(o.Client), o.Name, o.What, seq, o.Mutate, mode{release: releasing(ctx), quiet: true}, &others[i])
		wrote = wrote || w
		if err != nil {
			return none, unwind(ctx, a, wrote, err)
		}
	}
	if equality.Semantic.DeepEqual(anchor, next) {
		if !wrote {
			return anchor, nil
		}
		bump(next)
	}
	stored, err := ac.Update(ctx, next, metav1.UpdateOptions{FieldManager: "sluice-traffic"})
	if err == nil {
		return stored, nil
	}
	if !apierrors.IsConflict(err) {
		return none, unwind(ctx, a, wrote, fmt.Errorf("update %s: %w", a.Anchor.What, err))
	}
	now, err := read(ctx, fresh(a.Anchor.Client), a.Anchor.Name, a.Anchor.What)
	if err != nil {
		return none, unwind(ctx, a, wrote, err)
	}
	if have := Seq(now); have > seq {
		return none, unwind(ctx, a, wrote, staleAt(a.Anchor.What, have, seq))
	}
	return none, errAnchorMoved
}

// unwind returns err, after a repair when the route wrote an object and
// did not get to write the anchor: a later route may have left that object
// alone.
func unwind[T Object](ctx context.Context, a Anchored[T], wrote bool, err error) error {
	if !wrote {
		return err
	}
	if rerr := repair(ctx, a); rerr != nil {
		return errors.Join(err, fmt.Errorf("repair: %w", rerr))
	}
	return err
}

// repair makes the objects besides the anchor match what the route that
// last wrote the anchor recorded there, each under that route's seq (an
// object a later route already wrote is left to it), and, when it changed
// one, changes the anchor, conditional on the copy it restored from: a
// route that read the anchor before then conflicts and reads everything
// again. Every read goes to the API server.
func repair[T Object](ctx context.Context, a Anchored[T]) error {
	step := backoff
	for {
		anchor, err := read(ctx, fresh(a.Anchor.Client), a.Anchor.Name, a.Anchor.What)
		if err != nil {
			return err
		}
		seq := Seq(anchor)
		changed := false
		for _, c := range a.Restore(anchor) {
			_, w, err := update(ctx, fresh(c.Client), c.Name, c.What, seq, c.Mutate, mode{quiet: true})
			switch {
			case errors.Is(err, tasks.ErrStale), errors.Is(err, traffic.ErrRejected):
				// A later route wrote it (and will write the anchor), or
				// it is gone or no longer the rollout's: nothing to
				// restore.
			case err != nil:
				return err
			}
			changed = changed || w
		}
		if !changed {
			return nil
		}
		bumped, ok := anchor.DeepCopyObject().(T)
		if !ok {
			return fmt.Errorf("copy %s: unexpected type %T", a.Anchor.What, anchor.DeepCopyObject())
		}
		bump(bumped)
		_, err = a.Anchor.Client.Update(ctx, bumped, metav1.UpdateOptions{FieldManager: "sluice-traffic"})
		if err == nil {
			return nil
		}
		if !retriable(err) || step.Steps <= 1 {
			return fmt.Errorf("update %s: %w", a.Anchor.What, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("update %s: %w (last error: %v)", a.Anchor.What, ctx.Err(), err)
		case <-time.After(step.Step()):
		}
	}
}

// read is Get, with a missing object reported as Update reports one.
func read[T Object](ctx context.Context, c Client[T], name, what string) (T, error) {
	obj, err := Get(ctx, Getter[T](c), name, what)
	if apierrors.IsNotFound(err) {
		return obj, missing(what)
	}
	return obj, err
}

func staleAt(what string, have, seq int64) error {
	return fmt.Errorf("%w: %s was written by route seq %d, this route's seq is %d", tasks.ErrStale, what, have, seq)
}

// bump changes obj's BumpAnnotation.
func bump(obj Object) {
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	n, _ := strconv.Atoi(ann[BumpAnnotation])
	ann[BumpAnnotation] = strconv.Itoa(n + 1)
	obj.SetAnnotations(ann)
}
