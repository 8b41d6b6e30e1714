package crd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/sluicehq/sluice/internal/argostatus"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas/kube"
)

// Standalone Experiment objects (Argo's Experiment CRD).
//
// Argo's Experiment CRD has no status subresource, so every status write
// raises metadata.generation, and its status has no observedGeneration:
// unlike a Rollout's, an Experiment's generation does not tell a new spec.
// The watcher tells it by the spec's content instead: a request's id is
// k8s:<uid>:<spec hash> (ExperimentRequestID), and Written.Published
// records which spec of which object it last requested. An experiment's
// spec cannot change (the orchestrator rejects a changed one, but for
// spec.terminate), so a changed spec is requested and either terminates
// the experiment or is rejected, which the status shows as Argo's
// InvalidSpec condition while the object keeps that spec.

// Published is the spec of an Experiment object that the watcher last
// requested.
type Published struct {
	// UID is the object's; Spec its spec's SpecHash.
	UID  string `json:"uid"`
	Spec string `json:"spec"`
}

// SpecHash identifies the content of u's spec.
func SpecHash(u *unstructured.Unstructured) string {
	body, _, _ := unstructured.NestedMap(u.Object, "spec")
	b, _ := json.Marshal(body) // map keys sorted: one spec, one hash
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ExperimentRequestID is the id of the io.sluice.experiment.requested.v1
// event of the Experiment object uid with spec hash: every replica of the
// watcher publishes the same id for one spec, and the bus keeps one.
func ExperimentRequestID(uid types.UID, hash string) string {
	return fmt.Sprintf("k8s:%s:%s", uid, hash)
}

// experiment publishes io.sluice.experiment.requested.v1 for a spec of u
// not yet requested (a new object, or a changed spec), then records it.
// When the record names an earlier object of the same name, that one was
// deleted: its delete command goes first, so that the orchestrator forgets
// it before this one is requested (the same name then runs again, as a
// new Experiment does in Argo). Without a record every change of the
// object publishes its spec again, and the bus drops the duplicates
// within its window.
func (w *Watcher) experiment(ctx context.Context, u *unstructured.Unstructured) error {
	ref := events.Ref{Namespace: u.GetNamespace(), Name: u.GetName()}
	uid, hash := string(u.GetUID()), SpecHash(u)
	k := records.KeyOf(ref)
	rec, err := readWritten(ctx, w.written, k)
	if err != nil {
		return err
	}
	if p := rec.Published; p != nil && p.UID == uid && p.Spec == hash {
		return nil
	}
	if p := rec.Published; p != nil && p.UID != uid {
		if err := w.deleted(ctx, key{gvr: ExperimentResource, namespace: ref.Namespace, name: ref.Name, deleted: types.UID(p.UID)}); err != nil {
			return err
		}
	}
	body, _, _ := unstructured.NestedMap(u.Object, "spec")
	if err := w.publish(ctx, u, body, ExperimentRequestID(u.GetUID(), hash), events.TypeExperimentRequested, ref, nil); err != nil {
		return err
	}
	if w.written != nil {
		if _, err := w.written.Update(ctx, k, func(r *Written, _ uint64) error {
			if r.UID != uid {
				*r = Written{UID: uid}
			}
			r.Published = &Published{UID: uid, Spec: hash}
			return nil
		}); err != nil {
			return err
		}
	}
	w.log.Info("Experiment spec new or changed: experiment requested", "experiment", ref.String(), "spec", hash)
	return nil
}

// experimentDeleted publishes the delete command of a deleted Experiment
// object, unless another object of its name exists already (whose request
// publishes it first, see experiment), and forgets that it was requested.
func (w *Watcher) experimentDeleted(ctx context.Context, k key, exists bool) error {
	if exists {
		return nil
	}
	if err := w.deleted(ctx, k); err != nil {
		return err
	}
	if w.written == nil {
		return nil
	}
	_, err := w.written.Update(ctx, records.KeyOf(events.Ref{Namespace: k.namespace, Name: k.name}), func(r *Written, _ uint64) error {
		if r.Published == nil || r.Published.UID != string(k.deleted) {
			return records.Unchanged
		}
		r.Published = nil
		return nil
	})
	return err
}

// isExperiment reports whether a status event is a standalone
// experiment's.
func isExperiment(ev events.Event, data events.StatusData) bool {
	if data.Status.Kind == events.KindExperiment {
		return true
	}
	switch ev.Type() {
	case events.TypeExperimentAccepted, events.TypeExperimentRejected, events.TypeExperimentRunning,
		events.TypeExperimentCompleted, events.TypeExperimentTerminated, events.TypeExperimentRefused:
		return true
	}
	return false
}

// writeExperiment writes the experiment's latest status into its
// Experiment object after ev, as Argo's experiment controller writes it
// (argostatus.ExperimentStatus), with the counts of its templates'
// ReplicaSets. The object is read first and written with its
// resourceVersion, so of two writers the one whose write lands last read
// the later snapshot (the other conflicts and reads again). A rejected
// request of the object's current spec shows as InvalidSpec for as long
// as the object keeps that spec. A status that would not change is not
// written (each write raises the object's generation). With Argo's CRD,
// which has no status subresource, status is written with the object;
// with a status subresource, through it.
func (s *StatusWriter) writeExperiment(ctx context.Context, ref events.Ref, ev events.Event, data events.StatusData) error {
	exps := s.cfg.Dynamic.Resource(ExperimentResource).Namespace(ref.Namespace)
	cause := events.Extension(ev, events.ExtCausationID)
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		ex, err := exps.Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		latest, err := s.latestExperiment(ctx, ref, data)
		if err != nil {
			return err
		}
		uid, hash := string(ex.GetUID()), SpecHash(ex)
		k := records.KeyOf(ref)
		rec, err := readWritten(ctx, s.cfg.Written, k)
		if err != nil {
			return err
		}
		rejected := rec.Rejected
		if rec.UID != uid {
			rejected = nil
		}
		if ev.Type() == events.TypeExperimentRejected && cause == ExperimentRequestID(ex.GetUID(), hash) {
			rejected = &Rejection{Spec: hash, Errors: data.Errors}
		}
		if rejected != nil && rejected.Spec != hash {
			rejected = nil
		}
		if s.cfg.Written != nil && (rec.UID != uid || !reflect.DeepEqual(rejected, rec.Rejected)) {
			if err := s.record(ctx, k, uid, func(r *Written) { r.Rejected = rejected }); err != nil {
				return err
			}
		}
		latest.Errors = nil
		if rejected != nil {
			latest.Errors = rejected.Errors
		}
		rsets, err := s.templateSets(ctx, ex)
		if err != nil {
			return err
		}
		old, _, _ := unstructured.NestedMap(ex.Object, "status")
		status := argostatus.ExperimentStatus(latest, argostatus.Experiment{Name: ex.GetName(), Status: old, ReplicaSets: rsets}, s.now())
		if reflect.DeepEqual(old, status) {
			return nil
		}
		ex.Object["status"] = status
		got, err := exps.Update(ctx, ex, metav1.UpdateOptions{FieldManager: Manager})
		if err != nil || reflect.DeepEqual(got.Object["status"], ex.Object["status"]) {
			return err
		}
		// A CRD with a status subresource kept the old status.
		got.Object["status"] = status
		_, err = exps.UpdateStatus(ctx, got, metav1.UpdateOptions{FieldManager: Manager})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil // requested from CI or the CLI: no cluster object to write to
	}
	return err
}

// latestExperiment is the status data to write after an event whose data
// is data: the experiment's latest snapshot, so that events handled out
// of order never regress the object, with the event's errors. An
// experiment the orchestrator does not hold (its request rejected, or it
// is being forgotten) gets the event's own snapshot.
func (s *StatusWriter) latestExperiment(ctx context.Context, ref events.Ref, data events.StatusData) (events.StatusData, error) {
	if s.cfg.Snapshots == nil {
		return data, nil
	}
	snap, err := s.cfg.Snapshots.Get(ctx, ref)
	switch {
	case err == nil && snap.Kind == events.KindExperiment:
		data.Status = snap
	case err != nil && !errors.Is(err, orchestrator.ErrNoRollout):
		return data, err
	}
	return data, nil
}

// templateSets are the counts of the ReplicaSets of ex's templates, by
// template name (nil without Kube): those the replicas backend labels as
// the experiment's and that ex controls, or that no one controls.
func (s *StatusWriter) templateSets(ctx context.Context, ex *unstructured.Unstructured) (map[string]argostatus.ReplicaSet, error) {
	if s.cfg.Kube == nil {
		return nil, nil
	}
	list, err := s.cfg.Kube.AppsV1().ReplicaSets(ex.GetNamespace()).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{kube.ExperimentOfLabel: ex.GetName()}).String(),
	})
	if err != nil {
		return nil, err
	}
	out := map[string]argostatus.ReplicaSet{}
	for _, rs := range list.Items {
		tmpl := rs.Annotations[spec.AnnotationExperimentTemplate]
		if rs.DeletionTimestamp != nil || tmpl == "" || rs.Annotations[spec.AnnotationExperimentName] != ex.GetName() || !owned(&rs, ex) {
			continue
		}
		out[tmpl] = argostatus.ReplicaSet{Hash: rs.Labels[argostatus.PodTemplateHashLabel], Replicas: rs.Status.Replicas,
			Ready: rs.Status.ReadyReplicas, Available: rs.Status.AvailableReplicas}
	}
	return out, nil
}
