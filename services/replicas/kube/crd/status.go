package crd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/sluicehq/sluice/internal/argostatus"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// StatusDurable is the durable consumer on SLUICE_STATUS that every
// replica's StatusWriter shares.
const StatusDurable = "kube-status"

// StatusWriterConfig configures a StatusWriter.
type StatusWriterConfig struct {
	// Dynamic writes Rollout status.
	Dynamic dynamic.Interface
	// Client consumes the status events.
	Client *events.Client
	// Bus is the stream configuration provisioned before consuming.
	Bus events.BusConfig
	// Consumer tunes the durable consumer; Stream, Durable and
	// FilterSubjects are set by the writer.
	Consumer events.ConsumerConfig
	// Snapshots reads each rollout's latest status, which the writer
	// writes whatever event triggered it, so that events handled out of
	// order never regress the object. Nil: each event's own snapshot.
	Snapshots Snapshots
	// Written records what the writer wrote of the fields tools write
	// requests into (BucketWritten), and the rejected generation. Nil:
	// nothing is recorded, and the InvalidSpec condition lasts only until
	// the next event.
	Written *records.Store[Written]
	// Logger receives the writer's logs (default slog.Default()).
	Logger *slog.Logger
}

// Snapshots reads the rollouts' status as the orchestrator holds it now;
// *orchestrator.Reader implements it.
type Snapshots interface {
	// Get returns r's latest snapshot, or an error wrapping
	// orchestrator.ErrNoRollout.
	Get(ctx context.Context, r events.Ref) (events.Snapshot, error)
	// Manifest returns r's latest accepted Rollout, defaulted.
	Manifest(ctx context.Context, r events.Ref, podHash string) (*spec.Rollout, error)
}

// StatusWriter writes status events into Rollout objects' status.
type StatusWriter struct {
	cfg   StatusWriterConfig
	log   *slog.Logger
	ready atomic.Bool
	now   func() time.Time
	// held, when set, is told of a rollout whose object keeps a tool's
	// values the record does not: the watcher's requeue.
	held func(events.Ref)
}

// NewStatusWriter returns a writer; Run starts it.
func NewStatusWriter(cfg StatusWriterConfig) (*StatusWriter, error) {
	if cfg.Dynamic == nil || cfg.Client == nil {
		return nil, errors.New("crd status writer: a dynamic client and a bus client are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Bus.Defaults()
	cc := &cfg.Consumer
	cc.Stream, cc.Durable, cc.FilterSubjects = events.StreamStatus, StatusDurable, []string{events.StatusRoot + ".>"}
	cc.Defaults()
	if err := cc.Validate(); err != nil {
		return nil, err
	}
	return &StatusWriter{cfg: cfg, log: cfg.Logger, now: time.Now}, nil
}

// Ready reports whether the consumer is in place.
func (s *StatusWriter) Ready() bool { return s.ready.Load() }

// Run consumes status events until ctx ends.
func (s *StatusWriter) Run(ctx context.Context) error {
	mux := events.NewMux()
	for _, t := range events.StatusTypes {
		mux.Handle(t, s.handle)
	}
	if err := s.cfg.Client.Provision(ctx, s.cfg.Bus); err != nil {
		return fmt.Errorf("crd status writer: %w", err)
	}
	sub, err := s.cfg.Client.Consume(ctx, s.cfg.Consumer, mux.Dispatch)
	if err != nil {
		return fmt.Errorf("crd status writer: %w", err)
	}
	s.ready.Store(true)
	<-ctx.Done()
	s.ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return sub.Stop(sctx)
}

// handle writes the rollout's latest status into its object after an
// event. Writing the latest snapshot rather than the event's makes the
// order of events irrelevant: a stale event writes what a later one would.
//
// A deleted rollout has no object left to write to. A rejected request
// whose id is the object's current generation shows as Argo's InvalidSpec
// condition until the generation changes. While a tool's request (see
// Requests) is pending, the fields that carry it keep the tool's values.
func (s *StatusWriter) handle(ctx context.Context, _ events.Delivery, ev events.Event) error {
	switch {
	case ev.Type() == events.TypeRolloutDeleted:
		return nil
	case ev.Type() == events.TypeRolloutRefused && s.cfg.Snapshots == nil:
		return nil // it changed nothing; with Snapshots it answers a request
	}
	var data events.StatusData
	if err := events.DecodeData(ev, &data); err != nil {
		return events.Permanent(fmt.Errorf("status event %s: %w", ev.ID(), err))
	}
	ref := events.Ref{Namespace: data.Status.Namespace, Name: data.Status.Name}
	rollouts := s.cfg.Dynamic.Resource(RolloutResource).Namespace(ref.Namespace)
	cause := events.Extension(ev, events.ExtCausationID)
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		ro, err := rollouts.Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		// After the object's read, so that of two writers the one whose
		// write lands last read the later snapshot (the other conflicts).
		latest, m, ok, err := s.latest(ctx, ref, ev, data)
		if err != nil || !ok {
			return err
		}
		k := records.KeyOf(ref)
		var rec Written
		if s.cfg.Written != nil {
			if rec, _, err = s.cfg.Written.Get(ctx, k); err != nil {
				return err
			}
		}
		uid := string(ro.GetUID())
		known := rec.UID == uid
		if !known {
			rec = Written{UID: uid}
		}
		if ev.Type() == events.TypeRolloutRejected && rejects(cause, ro) {
			rec.Rejected = &Rejection{Generation: ro.GetGeneration(), Message: strings.Join(data.Errors, "; ")}
		}
		if rec.Rejected != nil && rec.Rejected.Generation != ro.GetGeneration() {
			rec.Rejected = nil
		}
		answered := answeredFields(uid, cause)
		old, _, _ := unstructured.NestedMap(ro.Object, "status")
		status := s.status(ro, old, latest, m, rec.Rejected, ev)
		// Fields a tool changed keep its values: requested (pending) or
		// not yet seen by the watcher.
		now := requestedOf(old)
		// A pending field the event answers is Sluice's again, unless
		// the tool changed it since (a new request).
		var held []string
		if known {
			held = differs(rec.was(now), now)
		}
		for f, id := range rec.Pending {
			if !slices.Contains(held, f) && (id != cause || !slices.Contains(answered, f)) {
				held = append(held, f)
			}
		}
		for _, f := range held {
			for _, key := range keep(f) {
				if v, ok := old[key]; ok {
					status[key] = v
				} else {
					delete(status, key)
				}
			}
		}
		intent := requestedOf(status)
		if s.cfg.Written != nil {
			if err := s.record(ctx, k, uid, func(r *Written) {
				r.Intent = &intent
			}); err != nil {
				return err
			}
		}
		ro.Object["status"] = status
		if _, err := rollouts.UpdateStatus(ctx, ro, metav1.UpdateOptions{FieldManager: Manager}); err != nil {
			return err
		}
		if s.cfg.Written == nil {
			return nil
		}
		err = s.record(ctx, k, uid, func(r *Written) {
			fields := intent
			for _, f := range held {
				setField(&fields, r.Fields, f)
			}
			for f, id := range r.Pending {
				if id == cause {
					delete(r.Pending, f)
				} else {
					setField(&fields, r.Fields, f)
				}
			}
			if len(answered) > 0 && !slices.Contains(r.Answered, cause) {
				r.Answered = append(r.Answered, cause)
				if n := len(r.Answered); n > maxAnswered {
					r.Answered = r.Answered[n-maxAnswered:]
				}
			}
			r.Fields, r.Intent, r.Rejected = fields, nil, rec.Rejected
		})
		if err == nil && len(held) > 0 && s.held != nil {
			// A request answered while the tool asked again: the watcher
			// looks again, though the object may not have changed.
			s.held(ref)
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil // published from CI or the CLI: no cluster object to write to
	}
	return err
}

// maxAnswered bounds Written.Answered.
const maxAnswered = 16

// record changes the record of object uid under k; a record of an earlier
// object of the same name is replaced.
func (s *StatusWriter) record(ctx context.Context, k, uid string, change func(*Written)) error {
	_, err := s.cfg.Written.Update(ctx, k, func(r *Written, _ uint64) error {
		if r.UID != uid {
			*r = Written{UID: uid}
		}
		change(r)
		return nil
	})
	return err
}

// latest is the status data to write after ev: the rollout's latest
// snapshot with the event's reason and errors, and its latest manifest. ok
// is false when there is nothing to write: the orchestrator does not
// have the rollout, and ev is not a rejection of it (whose own snapshot is
// then written).
func (s *StatusWriter) latest(ctx context.Context, ref events.Ref, ev events.Event, data events.StatusData) (events.StatusData, *spec.Rollout, bool, error) {
	if s.cfg.Snapshots == nil {
		return data, nil, true, nil
	}
	snap, err := s.cfg.Snapshots.Get(ctx, ref)
	switch {
	case errors.Is(err, orchestrator.ErrNoRollout):
		return data, nil, ev.Type() == events.TypeRolloutRejected, nil
	case err != nil:
		return data, nil, false, err
	}
	data.Status = snap
	m, err := s.cfg.Snapshots.Manifest(ctx, ref, "")
	if err != nil && !errors.Is(err, orchestrator.ErrNoRollout) {
		return data, nil, false, err
	}
	return data, m, true, nil
}

// rejects reports whether a rejected event whose causationid is cause
// rejected ro's current generation (the watcher's request ids are
// k8s:<uid>:<generation>[:<workload generation>]).
func rejects(cause string, ro *unstructured.Unstructured) bool {
	prefix := fmt.Sprintf("k8s:%s:%d", ro.GetUID(), ro.GetGeneration())
	return cause == prefix || strings.HasPrefix(cause, prefix+":")
}

// Status is the status the writer writes into ro after data, when its
// generation is not rejected and no tool's request is pending.
func Status(ro *unstructured.Unstructured, data events.StatusData) (map[string]any, error) {
	old, _, _ := unstructured.NestedMap(ro.Object, "status")
	ev := events.Event{}
	ev.SetType(events.TypeRolloutAccepted)
	return statusOf(ro, old, data, nil, nil, ev, time.Now()), nil
}

func (s *StatusWriter) status(ro *unstructured.Unstructured, old map[string]any, data events.StatusData, m *spec.Rollout, rejected *Rejection, ev events.Event) map[string]any {
	return statusOf(ro, old, data, m, rejected, ev, s.now())
}

// statusOf is the Rollout's status to write: Argo's status for data
// (argostatus.Status), with what the watcher owns (observedGeneration,
// workloadObservedGeneration) and restartedAt kept from old, restartedAt
// set by a restarted event, and the InvalidSpec condition while the
// object's generation is rejected.
func statusOf(ro *unstructured.Unstructured, old map[string]any, data events.StatusData, m *spec.Rollout, rejected *Rejection, ev events.Event, now time.Time) map[string]any {
	if m == nil {
		m = specOf(ro)
	}
	in := argostatus.Rollout{
		Generation: ro.GetGeneration(),
		Spec:       m,
		Status:     old,
		Replicas:   replicasOf(old),
	}
	if n, err := strconv.ParseInt(fmt.Sprint(old["workloadObservedGeneration"]), 10, 64); err == nil {
		in.WorkloadGeneration = n
	}
	st := argostatus.Status(data, in, now)
	delete(st, "sluice")
	for _, k := range []string{"observedGeneration", "workloadObservedGeneration", "restartedAt"} {
		if v, ok := old[k]; ok {
			st[k] = v // the watcher's, and the last restart's
		} else {
			delete(st, k)
		}
	}
	if ev.Type() == events.TypeRolloutRestarted {
		st["restartedAt"] = restartedAt(ro, ev.Time())
	}
	setInvalidSpec(st, ro.GetName(), rejected, now)
	return st
}

// restartedAt is Argo's status.restartedAt after a restart that ended at
// done: spec.restartAt when that asked for it, else done.
func restartedAt(ro *unstructured.Unstructured, done time.Time) string {
	if at, ok, _ := unstructured.NestedString(ro.Object, "spec", "restartAt"); ok {
		if t, err := time.Parse(time.RFC3339, at); err == nil && !t.After(done) {
			return t.UTC().Format(time.RFC3339)
		}
	}
	return done.UTC().Format(time.RFC3339)
}

// setInvalidSpec adds Argo's InvalidSpec condition (and its Degraded
// phase) while rejected, and removes it otherwise.
func setInvalidSpec(st map[string]any, name string, rejected *Rejection, now time.Time) {
	conds, _ := st["conditions"].([]any)
	var kept []any
	var prev map[string]any
	for _, c := range conds {
		if cm, ok := c.(map[string]any); ok && cm["type"] == "InvalidSpec" {
			prev = cm
			continue
		}
		kept = append(kept, c)
	}
	if rejected != nil {
		msg := fmt.Sprintf("The Rollout %q is invalid: %s", name, rejected.Message)
		ts := now.UTC().Format(time.RFC3339)
		c := map[string]any{"type": "InvalidSpec", "status": "True", "reason": "InvalidSpec", "message": msg,
			"lastUpdateTime": ts, "lastTransitionTime": ts}
		if prev != nil && prev["message"] == msg {
			c = prev
		}
		kept = append(kept, c)
		st["phase"], st["message"] = "Degraded", "InvalidSpec: "+msg
	}
	if len(kept) == 0 {
		delete(st, "conditions")
		return
	}
	st["conditions"] = kept
}

// replicasOf are the replica counts of a status (Counts').
func replicasOf(st map[string]any) *events.Replicas {
	n := func(k string) int32 { v, _ := st[k].(int64); return int32(v) }
	if _, ok := st["replicas"]; !ok {
		return nil
	}
	return &events.Replicas{Current: n("replicas"), Updated: n("updatedReplicas"), Ready: n("readyReplicas"), Available: n("availableReplicas")}
}

// specOf decodes the object's spec, for a rollout the orchestrator does
// not have (nil when it does not decode).
func specOf(ro *unstructured.Unstructured) *spec.Rollout {
	var r spec.Rollout
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ro.Object, &r); err != nil {
		return nil
	}
	r.SetDefaults()
	return &r
}
