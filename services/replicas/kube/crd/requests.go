package crd

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
)

// BucketWritten holds, per Rollout object, what the status writer last
// wrote of the status fields Argo's tools write requests into (Written),
// keyed <namespace>.<name>. Argo's CRD schema prunes any status field it
// does not define, so this record cannot live in the object.
const BucketWritten = "sluice-kube-status"

// Manager is the field manager of what Sluice writes into Rollout
// objects.
const Manager = "sluice"

// Requested are the status fields that Argo's kubectl plugin and Argo CD's
// actions write to ask for promote, abort and retry, as one Rollout's
// status has them.
type Requested struct {
	// Abort is status.abort.
	Abort bool `json:"abort,omitempty"`
	// Paused is whether status.pauseConditions is non-empty; promote
	// clears them (with status.controllerPause for an inconclusive run).
	Paused bool `json:"paused,omitempty"`
	// PromoteFull is status.promoteFull.
	PromoteFull bool `json:"promoteFull,omitempty"`
	// StepIndex is status.currentStepIndex (nil: unset); promote of a
	// step that is not paused advances it.
	StepIndex *int64 `json:"stepIndex,omitempty"`
}

// Written is the record of one Rollout object in BucketWritten.
type Written struct {
	// UID is the object's: a record of an object deleted and created
	// again under the same name is ignored.
	UID string `json:"uid"`
	// Fields are the request fields as the status writer last wrote them,
	// or as a request set them once it was published.
	Fields Requested `json:"fields"`
	// Pending are the requests published and not yet answered, by the
	// field that carries them (the command's id): the status writer keeps
	// the object's value of these fields until the answer comes.
	Pending map[string]string `json:"pending,omitempty"`
	// FieldsVersion is the resourceVersion of the write that Fields
	// records: a write that landed earlier but is recorded later (two
	// writers at once, one writing an older snapshot or nothing new) does
	// not replace them.
	FieldsVersion string `json:"fieldsVersion,omitempty"`
	// Intents are the fields that writers are writing now, one per write
	// in progress: an object showing a field's value in one of them shows
	// Sluice's write, not a request, even before Fields records it. There
	// can be several at once (the replicas' writers, the rewrite after
	// ReplicaSet counts change), and one writer must not hide another's.
	Intents []Intent `json:"intents,omitempty"`
	// Answered are the ids of the latest requests answered, so that a
	// request answered before it was recorded as pending is not.
	Answered []string `json:"answered,omitempty"`
	// Rejected is the generation whose spec the orchestrator rejected
	// last, and why; the status shows Argo's InvalidSpec condition while
	// the object is at that generation (an Experiment's: while it has
	// that spec).
	Rejected *Rejection `json:"rejected,omitempty"`
	// Published is the spec of the Experiment object of this name that
	// the watcher last requested (nil for a Rollout). It is kept when the
	// record is replaced for a new object of the same name, so that the
	// watcher deletes the earlier experiment before requesting the new
	// one.
	Published *Published `json:"published,omitempty"`
}

// Intent is the request fields of one write in progress.
type Intent struct {
	// ID is the write's, to remove it once recorded.
	ID     string    `json:"id"`
	Fields Requested `json:"fields"`
	// Held are the fields the write keeps at the object's values (a
	// tool's, see StatusWriter.write): it claims none of them, so an
	// object showing them does not show Sluice's write.
	Held []string `json:"held,omitempty"`
	// At is when it was recorded: an intent older than intentTTL is a
	// writer's that stopped between its intent and its record, and is
	// ignored and dropped.
	At time.Time `json:"at"`
}

// intentTTL bounds how long an intent is believed: a write takes a few
// API round trips.
const intentTTL = time.Minute

// live are the intents recorded after now - intentTTL, without the one
// whose id is drop.
func live(intents []Intent, now time.Time, drop string) []Intent {
	var out []Intent
	for _, in := range intents {
		if in.ID != drop && now.Sub(in.At) < intentTTL {
			out = append(out, in)
		}
	}
	return out
}

// newer reports whether resourceVersion rv was written at or after
// recorded (empty: nothing recorded yet). Kubernetes' resourceVersions are
// etcd revisions; one that is not a number is taken as newer.
func newer(rv, recorded string) bool {
	a, err1 := strconv.ParseUint(rv, 10, 64)
	b, err2 := strconv.ParseUint(recorded, 10, 64)
	return err1 != nil || err2 != nil || a >= b
}

// Rejection is a rejected spec: a Rollout's generation, or an
// Experiment's spec (SpecHash).
type Rejection struct {
	Generation int64    `json:"generation"`
	Spec       string   `json:"spec,omitempty"`
	Errors     []string `json:"errors"`
}

// The fields of Requested, as Written.Pending names them.
const (
	fieldAbort       = "abort"
	fieldPaused      = "pauseConditions"
	fieldPromoteFull = "promoteFull"
	fieldStep        = "currentStepIndex"
)

// requestedOf reads the request fields of a Rollout's status.
func requestedOf(status map[string]any) Requested {
	var r Requested
	r.Abort, _ = status["abort"].(bool)
	pcs, _ := status["pauseConditions"].([]any)
	r.Paused = len(pcs) > 0
	r.PromoteFull, _ = status["promoteFull"].(bool)
	if n, ok := status["currentStepIndex"].(int64); ok {
		r.StepIndex = &n
	}
	return r
}

// Request is a command that a change of a Rollout's status asks for.
type Request struct {
	// Type is the command's event type; Full is promote's data.
	Type string
	Full bool
	// Fields are the Requested fields that carry it.
	Fields []string
}

// Requests are the commands that the change from was (what Sluice last
// wrote) to now (the object's status) asks for, as Argo's controller reads
// the same fields:
//
//   - abort set: abort; abort cleared while Sluice shows the update
//     aborted: retry (kubectl argo rollouts retry rollout);
//   - promoteFull set: promote {"full": true};
//   - pause conditions cleared, or the step index advanced (promote of a
//     step that is not paused, --skip-current-step): promote; advanced to
//     the number of steps (--skip-all-steps): promote {"full": true}.
//
// steps is the number of canary steps. A field already pending makes no
// second request.
func Requests(was, now Requested, pending map[string]string, steps int64) []Request {
	var out []Request
	free := func(f string) bool { _, ok := pending[f]; return !ok }
	switch {
	case now.Abort && !was.Abort && free(fieldAbort):
		out = append(out, Request{Type: events.TypeRolloutAbort, Fields: []string{fieldAbort}})
	case !now.Abort && was.Abort && free(fieldAbort):
		out = append(out, Request{Type: events.TypeRolloutRetry, Fields: []string{fieldAbort}})
	}
	if now.PromoteFull && !was.PromoteFull && free(fieldPromoteFull) {
		out = append(out, Request{Type: events.TypeRolloutPromote, Full: true, Fields: []string{fieldPromoteFull}})
	}
	var promote Request
	if !now.Paused && was.Paused && free(fieldPaused) {
		promote.Fields = append(promote.Fields, fieldPaused)
	}
	if now.StepIndex != nil && was.StepIndex != nil && *now.StepIndex > *was.StepIndex && free(fieldStep) {
		promote.Fields = append(promote.Fields, fieldStep)
		promote.Full = *now.StepIndex >= steps && *was.StepIndex < steps-1
	}
	if len(promote.Fields) > 0 {
		promote.Type = events.TypeRolloutPromote
		out = append(out, promote)
	}
	return out
}

// RequestID is the id of the command a request made at the object's
// resourceVersion: every replica of the watcher that sees the change
// publishes the same id, and the bus keeps one.
func RequestID(uid, resourceVersion string, r Request) string {
	return fmt.Sprintf("k8s:%s:%s:%s", uid, resourceVersion, strings.Join(r.Fields, "+"))
}

// ManagerOf is the field manager that last wrote u's status (subresource
// "status") or its spec (subresource ""), apart from Sluice: the managed
// fields' entry of that subresource with the latest time. "" when none.
func ManagerOf(u *unstructured.Unstructured, subresource string) string {
	var (
		best   string
		bestAt time.Time
	)
	for _, mf := range u.GetManagedFields() {
		if mf.Manager == Manager || mf.Manager == "" || mf.Subresource != subresource {
			continue
		}
		var at time.Time
		if mf.Time != nil {
			at = mf.Time.Time
		}
		if best == "" || !at.Before(bestAt) {
			best, bestAt = mf.Manager, at
		}
	}
	return best
}

// ActorOf is the actor of a command a tool wrote into the object:
// kube:<manager>, or Actor when the object does not say.
func ActorOf(manager string) string {
	if manager == "" {
		return Actor
	}
	return "kube:" + manager
}

// requests publishes the commands that u's status asks for, compared with
// what the status writer last wrote, and records them as pending. A
// Rollout the writer has not written yet asks for nothing.
func (w *Watcher) requests(ctx context.Context, u *unstructured.Unstructured) error {
	if w.written == nil {
		return nil
	}
	// The record is the leader's: a replica of the bucket that lags behind
	// answers with an older one, against which Sluice's own last write
	// reads as a tool's request (a command nobody asked for), or a
	// tool's request as what Sluice wrote (a command lost).
	k := records.KeyOf(events.Ref{Namespace: u.GetNamespace(), Name: u.GetName()})
	rec, rev, err := w.written.Latest(ctx, k)
	if err != nil {
		return err
	}
	if len(asks(u, rec)) == 0 {
		return nil
	}
	// The informer's copy of the object may be older than the record (the
	// writer records what it wrote once the write returns, before the
	// watch delivers it): a status Sluice replaced would look like a tool
	// undoing it (pause conditions "cleared" is a promote). So a request
	// seen in the cache is confirmed on the object read from the API
	// server after the record, and counts only if no write was recorded
	// meanwhile (a writer records its intent before it writes).
	fresh, err := w.cfg.Dynamic.Resource(RolloutResource).Namespace(u.GetNamespace()).Get(ctx, u.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	again, rev2, err := w.written.Latest(ctx, k)
	if err != nil {
		return err
	}
	if rev2 != rev {
		w.queue.AddAfter(key{gvr: RolloutResource, namespace: u.GetNamespace(), name: u.GetName()}, 100*time.Millisecond)
		return nil
	}
	u, rec = fresh, again
	reqs := asks(u, rec)
	if len(reqs) == 0 {
		return nil
	}
	status, _, _ := unstructured.NestedMap(u.Object, "status")
	now := requestedOf(status)
	ref := events.Ref{Namespace: u.GetNamespace(), Name: u.GetName()}
	actor := ActorOf(ManagerOf(u, "status"))
	ids := map[string]string{}
	for _, r := range reqs {
		var data any = struct{}{}
		if r.Type == events.TypeRolloutPromote {
			data = map[string]bool{"full": r.Full}
		}
		ev, err := events.New(Source, r.Type, ref.String(), data)
		if err != nil {
			return err
		}
		id := RequestID(string(u.GetUID()), u.GetResourceVersion(), r)
		ev.SetID(id)
		ev.SetExtension(events.ExtActor, actor)
		if _, err := w.cfg.Bus.Publish(ctx, events.CommandSubject(ref), ev); err != nil {
			return err
		}
		for _, f := range r.Fields {
			ids[f] = id
		}
		w.log.Info("Rollout status asks for a command", "rollout", ref.String(), "type", r.Type, "actor", actor, "id", id)
	}
	_, err = w.written.Update(ctx, k, func(rec *Written, _ uint64) error {
		if rec.UID != string(u.GetUID()) {
			return records.Unchanged
		}
		if rec.Pending == nil {
			rec.Pending = map[string]string{}
		}
		for f, id := range ids {
			if slices.Contains(rec.Answered, id) {
				continue // the writer wrote its answer already
			}
			rec.Pending[f] = id
			setField(&rec.Fields, now, f)
		}
		return nil
	})
	return err
}

// asks are the commands u's status asks for against rec, the record of
// what the writer wrote; none when rec is another object's.
func asks(u *unstructured.Unstructured, rec Written) []Request {
	if rec.UID != string(u.GetUID()) {
		return nil
	}
	status, _, _ := unstructured.NestedMap(u.Object, "status")
	now := requestedOf(status)
	steps, _, _ := unstructured.NestedSlice(u.Object, "spec", "strategy", "canary", "steps")
	return Requests(rec.was(now, time.Now()), now, rec.Pending, int64(len(steps)))
}

// setField copies field f of from into to.
func setField(to *Requested, from Requested, f string) {
	switch f {
	case fieldAbort:
		to.Abort = from.Abort
	case fieldPaused:
		to.Paused = from.Paused
	case fieldPromoteFull:
		to.PromoteFull = from.PromoteFull
	case fieldStep:
		to.StepIndex = from.StepIndex
	}
}

// keep are the status keys that carry field f: the writer keeps the
// object's values of them while f's request is pending.
func keep(f string) []string {
	switch f {
	case fieldPaused:
		return []string{"pauseConditions", "controllerPause"}
	case fieldStep:
		return []string{"currentStepIndex"}
	}
	return []string{f}
}

// differs lists the fields whose values differ between a and b.
func differs(a, b Requested) []string {
	var out []string
	if a.Abort != b.Abort {
		out = append(out, fieldAbort)
	}
	if a.Paused != b.Paused {
		out = append(out, fieldPaused)
	}
	if a.PromoteFull != b.PromoteFull {
		out = append(out, fieldPromoteFull)
	}
	if (a.StepIndex == nil) != (b.StepIndex == nil) || a.StepIndex != nil && *a.StepIndex != *b.StepIndex {
		out = append(out, fieldStep)
	}
	return out
}

// was is what Sluice wrote, for comparing with the object's fields now: a
// field showing the value a writer is writing (a live intent at time at)
// is Sluice's.
func (rec Written) was(now Requested, at time.Time) Requested {
	was := rec.Fields
	intents := live(rec.Intents, at, "")
	for _, f := range differs(was, now) {
		for _, in := range intents {
			if !slices.Contains(in.Held, f) && !slices.Contains(differs(in.Fields, now), f) {
				setField(&was, now, f)
				break
			}
		}
	}
	return was
}

// answeredFields are the fields of the request that cause (a status
// event's causationid) answers, when it is one of uid's.
func answeredFields(uid, cause string) []string {
	prefix := "k8s:" + uid + ":"
	if !strings.HasPrefix(cause, prefix) {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(cause, prefix), ":")
	if len(parts) != 2 {
		return nil
	}
	var out []string
	for _, f := range strings.Split(parts[1], "+") {
		if slices.Contains([]string{fieldAbort, fieldPaused, fieldPromoteFull, fieldStep}, f) {
			out = append(out, f)
		}
	}
	return out
}
