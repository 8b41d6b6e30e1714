package crd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/sluicehq/sluice/internal/argostatus"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas/kube"
)

// StatusDurable is the durable consumer on SLUICE_STATUS that every
// replica's StatusWriter shares.
const StatusDurable = "kube-status"

// StatusBackoffMax and StatusMaxDeliver are the status writer's defaults
// for its consumer's retries (Consumer.BackoffMax, MaxDeliver). A write
// fails only when the API server does (it writes the rollout's latest
// snapshot, so a late or repeated write is harmless), and while it fails
// the Rollout object shows a state the rollout has left. With the bus's
// defaults (backoff up to 2 minutes, 10 deliveries) the object lagged up
// to 2 minutes behind the record after the API server recovered, and a
// status event that failed ten times, about 6 minutes of outage, was
// dead-lettered, leaving the object stale until the rollout's next event:
// found by test/kube's fault proxy. Retrying every 5 s for about 80
// minutes keeps the lag after a recovery to seconds.
const (
	StatusBackoffMax = 5 * time.Second
	StatusMaxDeliver = 1000
)

// StatusWriterConfig configures a StatusWriter.
type StatusWriterConfig struct {
	// Dynamic writes Rollout status.
	Dynamic dynamic.Interface
	// Client consumes the status events.
	Client *events.Client
	// Bus is the stream configuration provisioned before consuming.
	Bus events.BusConfig
	// Consumer tunes the durable consumer; Stream, Durable and
	// FilterSubjects are set by the writer, BackoffMax and MaxDeliver
	// default to StatusBackoffMax and StatusMaxDeliver.
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
	// Kube lists each rollout's ReplicaSets, whose counts (and the phase
	// Argo derives from them) the status shows. Nil: the counts the
	// object has.
	Kube kubernetes.Interface
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
	// cached, when set, gives the Rollouts and ReplicaSets from the
	// watcher's and Counts' caches, so that a write costs one request
	// (the write), or none when the status is already what it would
	// write.
	cached *cached
	// rounds writes each Rollout's status one write at a time, merging
	// the status events and rewrites that wait for it.
	rounds *rounds[events.Ref, change]
}

// change is what one status event, or a rewrite (the zero change), asks
// of a Rollout's status write: it writes the latest snapshot in any case.
type change struct {
	// cause is the event's causationid: the request it answers.
	cause string
	// data is the event's: its snapshot is written without Snapshots,
	// or for a rejection when the orchestrator does not have the
	// rollout.
	data *events.StatusData
	// rejected is whether the event is a rejection of the generation its
	// cause names (data.Errors).
	rejected bool
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
	if cc.BackoffMax == 0 {
		cc.BackoffMax = StatusBackoffMax
	}
	if cc.MaxDeliver == 0 {
		cc.MaxDeliver = StatusMaxDeliver
	}
	cc.Defaults()
	if err := cc.Validate(); err != nil {
		return nil, err
	}
	s := &StatusWriter{cfg: cfg, log: cfg.Logger, now: time.Now}
	s.rounds = newRounds(s.write)
	return s, nil
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
// A deleted rollout has no object left to write to. A standalone
// experiment's events are written into its Experiment object instead
// (writeExperiment). A rejected request
// whose id is the object's current generation shows as Argo's InvalidSpec
// condition until the generation changes. While a tool's request (see
// Requests) is pending, the fields that carry it keep the tool's values.
func (s *StatusWriter) handle(ctx context.Context, _ events.Delivery, ev events.Event) error {
	switch {
	case ev.Type() == events.TypeRolloutDeleted || ev.Type() == events.TypeExperimentDeleted:
		return nil
	case (ev.Type() == events.TypeRolloutRefused || ev.Type() == events.TypeExperimentRefused) && s.cfg.Snapshots == nil:
		return nil // it changed nothing; with Snapshots it answers a request
	}
	var data events.StatusData
	if err := events.DecodeData(ev, &data); err != nil {
		return events.Permanent(fmt.Errorf("status event %s: %w", ev.ID(), err))
	}
	if isExperiment(ev, data) {
		return s.writeExperiment(ctx, events.Ref{Namespace: data.Status.Namespace, Name: data.Status.Name}, ev, data)
	}
	c := change{cause: events.Extension(ev, events.ExtCausationID), data: &data, rejected: ev.Type() == events.TypeRolloutRejected}
	return s.rounds.do(ctx, events.Ref{Namespace: data.Status.Namespace, Name: data.Status.Name}, c)
}

// Rewrite writes r's latest status again, when what it derives from in
// the cluster changed (its ReplicaSets' counts; a standalone Experiment's
// templates' ReplicaSets, which also go after it ended without any status
// event). Without Snapshots, or when the orchestrator does not hold r, it
// does nothing.
func (s *StatusWriter) Rewrite(ctx context.Context, r events.Ref) error {
	if s.cfg.Snapshots == nil {
		return nil
	}
	snap, err := s.cfg.Snapshots.Get(ctx, r)
	switch {
	case errors.Is(err, orchestrator.ErrNoRollout):
		return nil
	case err != nil:
		return err
	}
	if snap.Kind == events.KindExperiment {
		data := events.StatusData{Status: events.Snapshot{Kind: snap.Kind, Namespace: r.Namespace, Name: r.Name}}
		ev, err := events.New(Source, events.TypeExperimentRunning, r.String(), data)
		if err != nil {
			return err
		}
		return s.writeExperiment(ctx, r, ev, data)
	}
	// No event: the latest snapshot is written, merged with any status
	// event's write waiting.
	return s.rounds.do(ctx, r, change{})
}

// write writes ref's status after the changes (see handle), in order:
// one write for all of them, of the latest snapshot, as writing each
// after the other would leave it (every write after the first would find
// nothing new to write and record what its event answers).
func (s *StatusWriter) write(ctx context.Context, ref events.Ref, changes []change) error {
	rollouts := s.cfg.Dynamic.Resource(RolloutResource).Namespace(ref.Namespace)
	var (
		causes          []string
		last, rejection *events.StatusData
	)
	for _, c := range changes {
		if c.cause != "" && !slices.Contains(causes, c.cause) {
			causes = append(causes, c.cause)
		}
		if c.data != nil {
			last = c.data
		}
		if c.rejected {
			rejection = c.data
		}
	}
	attempt := 0
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		// The first attempt starts from the cache; if the object has
		// changed since, the write conflicts and the next attempt reads
		// the API server.
		attempt++
		var ro *unstructured.Unstructured
		if attempt == 1 && s.cached != nil {
			ro, _ = s.cached.rollout(ref)
		}
		if ro == nil {
			var err error
			if ro, err = rollouts.Get(ctx, ref.Name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		// After the object's read, so that of two writers the one whose
		// write lands last read the later snapshot (the other conflicts).
		latest, m, ok, err := s.latest(ctx, ref, last, rejection)
		if err != nil || !ok {
			return err
		}
		k := records.KeyOf(ref)
		rec, err := readWritten(ctx, s.cfg.Written, k)
		if err != nil {
			return err
		}
		uid := string(ro.GetUID())
		known := rec.UID == uid
		if !known {
			rec = Written{UID: uid}
		}
		for _, c := range changes {
			if c.rejected && rejects(c.cause, ro) {
				rec.Rejected = &Rejection{Generation: ro.GetGeneration(), Errors: c.data.Errors}
			}
		}
		if rec.Rejected != nil && rec.Rejected.Generation != ro.GetGeneration() {
			rec.Rejected = nil
		}
		// The causes that answer a request of the object, and the
		// fields they answer.
		answered := map[string][]string{}
		for _, c := range causes {
			if fields := answeredFields(uid, c); len(fields) > 0 {
				answered[c] = fields
			}
		}
		old, _, _ := unstructured.NestedMap(ro.Object, "status")
		rsets, err := s.replicaSets(ctx, ro)
		if err != nil {
			return err
		}
		status := statusOf(ro, old, latest, m, rec.Rejected, rsets, s.now())
		// Fields a tool changed keep its values: requested (pending) or
		// not yet seen by the watcher.
		now := requestedOf(old)
		// A pending field the event answers is Sluice's again, unless
		// the tool changed it since (a new request).
		var held []string
		if known {
			held = differs(rec.was(now, s.now()), now)
		}
		for f, id := range rec.Pending {
			if !slices.Contains(held, f) && !slices.Contains(answered[id], f) {
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
		if equality.Semantic.DeepEqual(status, old) {
			// Nothing to write: a decision's second event, after the
			// first wrote the latest snapshot. What it answers is
			// recorded as if written.
			if s.cfg.Written == nil {
				return nil
			}
			w := write{version: ro.GetResourceVersion(), fields: intent, held: held,
				causes: causes, answered: slices.Collect(maps.Keys(answered)), rejected: rec.Rejected, now: s.now()}
			return s.record(ctx, k, uid, w.record)
		}
		id := strconv.FormatUint(rand.Uint64(), 36)
		if s.cfg.Written != nil {
			if err := s.record(ctx, k, uid, func(r *Written) {
				r.Intents = append(live(r.Intents, s.now(), ""), Intent{ID: id, Fields: intent, Held: held, At: s.now()})
			}); err != nil {
				return err
			}
		}
		ro.Object["status"] = status
		written, err := rollouts.UpdateStatus(ctx, ro, metav1.UpdateOptions{FieldManager: Manager})
		if s.cached != nil {
			if err == nil {
				s.cached.wrote(ref, written)
			} else {
				s.cached.forget(ref)
			}
		}
		if err != nil {
			if s.cfg.Written != nil {
				// Best effort: the intent expires anyway.
				_ = s.record(ctx, k, uid, func(r *Written) { r.Intents = live(r.Intents, s.now(), id) })
			}
			return err
		}
		if s.cfg.Written == nil {
			return nil
		}
		w := write{id: id, version: written.GetResourceVersion(), fields: intent, held: held,
			causes: causes, answered: slices.Collect(maps.Keys(answered)), rejected: rec.Rejected, now: s.now()}
		err = s.record(ctx, k, uid, w.record)
		s.log.Debug("Rollout status written", "rollout", ref.String(), "changes", len(changes), "causes", causes,
			"resourceVersion", w.version, "held", held, "error", err)
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

// readWritten reads the record under k in store (none without a store),
// as the leader of the bucket's stream has it: its readers act on it (the
// status writer keeps a pending request's fields, the watcher publishes
// an Experiment's spec, or first the delete of the earlier object the
// record names), and a replica that lags behind answers with an older
// record.
func readWritten(ctx context.Context, store *records.Store[Written], k string) (Written, error) {
	if store == nil {
		return Written{}, nil
	}
	rec, _, err := store.Latest(ctx, k)
	return rec, err
}

// write is one write of a Rollout's status, to record once it landed.
type write struct {
	// id is the write's intent; version the resourceVersion it wrote.
	id, version string
	// fields are the request fields written; held those that kept the
	// object's values.
	fields Requested
	held   []string
	// causes are the causationids of the events written after; answered
	// those of them that answer a request of the object.
	causes, answered []string
	rejected         *Rejection
	now              time.Time
}

// record records w in r: its intent goes; the request it answers is no
// longer pending; and, unless a later write was recorded first, Fields
// become what it wrote (the fields it held, and those still pending, keep
// the record's values).
func (w write) record(r *Written) {
	r.Intents = live(r.Intents, w.now, w.id)
	for f, id := range r.Pending {
		if slices.Contains(w.causes, id) {
			delete(r.Pending, f)
		}
	}
	for _, cause := range w.answered {
		if !slices.Contains(r.Answered, cause) {
			r.Answered = append(r.Answered, cause)
		}
	}
	if n := len(r.Answered); n > maxAnswered {
		r.Answered = r.Answered[n-maxAnswered:]
	}
	if !newer(w.version, r.FieldsVersion) {
		return
	}
	fields := w.fields
	for _, f := range w.held {
		setField(&fields, r.Fields, f)
	}
	for f := range r.Pending {
		setField(&fields, r.Fields, f)
	}
	r.Fields, r.FieldsVersion, r.Rejected = fields, w.version, w.rejected
}

// maxAnswered bounds Written.Answered.
const maxAnswered = 16

// record changes the record of object uid under k; a record of an earlier
// object of the same name is replaced (but for what the watcher published
// of it, see Written.Published).
func (s *StatusWriter) record(ctx context.Context, k, uid string, change func(*Written)) error {
	_, err := s.cfg.Written.Update(ctx, k, func(r *Written, _ uint64) error {
		if r.UID != uid {
			*r = Written{UID: uid, Published: r.Published}
		}
		change(r)
		return nil
	})
	return err
}

// latest is the status data to write: the rollout's latest snapshot, and
// its latest manifest; without Snapshots, last (the latest event's data).
// ok is false when there is nothing to write: the orchestrator does not
// have the rollout, and no rejection of it is written (whose own
// snapshot is then written).
func (s *StatusWriter) latest(ctx context.Context, ref events.Ref, last, rejection *events.StatusData) (events.StatusData, *spec.Rollout, bool, error) {
	if s.cfg.Snapshots == nil {
		if last == nil {
			return events.StatusData{}, nil, false, nil
		}
		return *last, nil, true, nil
	}
	var data events.StatusData
	snap, err := s.cfg.Snapshots.Get(ctx, ref)
	switch {
	case errors.Is(err, orchestrator.ErrNoRollout):
		if rejection == nil {
			return data, nil, false, nil
		}
		return *rejection, nil, true, nil
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
	return statusOf(ro, old, data, nil, nil, nil, time.Now()), nil
}

// statusOf is the Rollout's status to write: Argo's status for data
// (argostatus.Status), with the errors of the rejected generation while
// the object is at it (Argo's InvalidSpec condition), and what the watcher
// owns (observedGeneration, workloadObservedGeneration) kept from old: the
// watcher compares them with the generation to know what it published.
func statusOf(ro *unstructured.Unstructured, old map[string]any, data events.StatusData, m *spec.Rollout, rejected *Rejection, rsets []argostatus.ReplicaSet, now time.Time) map[string]any {
	if m == nil {
		m = specOf(ro)
	}
	in := argostatus.Rollout{
		Generation:  ro.GetGeneration(),
		Spec:        m,
		Status:      old,
		Replicas:    replicasOf(old),
		ReplicaSets: rsets,
	}
	if n, err := strconv.ParseInt(fmt.Sprint(old["workloadObservedGeneration"]), 10, 64); err == nil {
		in.WorkloadGeneration = n
	}
	data.Errors = nil
	if rejected != nil {
		data.Errors = rejected.Errors
	}
	st := argostatus.Status(data, in, now)
	for _, k := range []string{"observedGeneration", "workloadObservedGeneration"} {
		if v, ok := old[k]; ok {
			st[k] = v
		} else {
			delete(st, k)
		}
	}
	return st
}

// replicaSets are the counts of ro's ReplicaSets (nil without Kube).
func (s *StatusWriter) replicaSets(ctx context.Context, ro *unstructured.Unstructured) ([]argostatus.ReplicaSet, error) {
	if s.cfg.Kube == nil {
		return nil, nil
	}
	if s.cached != nil {
		if list, ok := s.cached.replicaSets(ro.GetNamespace(), ro.GetName()); ok {
			out := []argostatus.ReplicaSet{}
			for _, rs := range list {
				out = appendReplicaSet(out, rs, ro)
			}
			return out, nil
		}
	}
	list, err := s.cfg.Kube.AppsV1().ReplicaSets(ro.GetNamespace()).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{kube.RolloutLabel: ro.GetName()}).String(),
	})
	if err != nil {
		return nil, err
	}
	out := []argostatus.ReplicaSet{}
	for i := range list.Items {
		out = appendReplicaSet(out, &list.Items[i], ro)
	}
	return out, nil
}

// appendReplicaSet adds rs's counts to out, unless it is going or is not
// ro's.
func appendReplicaSet(out []argostatus.ReplicaSet, rs *appsv1.ReplicaSet, ro *unstructured.Unstructured) []argostatus.ReplicaSet {
	if rs.DeletionTimestamp != nil || !owned(rs, ro) {
		return out
	}
	return append(out, argostatus.ReplicaSet{Hash: rs.Labels[spec.LabelPodTemplateHash], Replicas: rs.Status.Replicas,
		Ready: rs.Status.ReadyReplicas, Available: rs.Status.AvailableReplicas})
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
