package crd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

func rollout(gen int64) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Rollout",
		"metadata": map[string]any{
			"namespace": "shop", "name": "web", "uid": "u-1", "generation": gen,
			"annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "a"},
		},
		"spec": map[string]any{
			"replicas": int64(3),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
				"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "web:v1"}}},
			},
			"strategy": map[string]any{"canary": map[string]any{"steps": []any{map[string]any{"setWeight": int64(20)}}}},
		},
	}}
	return u
}

func template(ns, kind string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       kind,
		"metadata":   map[string]any{"name": "errors", "uid": "t-" + kind, "generation": int64(1)},
		"spec": map[string]any{"metrics": []any{map[string]any{
			"name": "errors", "successCondition": "result[0] < 1",
			"provider": map[string]any{"prometheus": map[string]any{"query": "vector(0)"}},
		}}},
	}}
	if ns != "" {
		u.SetNamespace(ns)
	}
	return u
}

func fakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		crd.RolloutResource:                 "RolloutList",
		crd.ExperimentResource:              "ExperimentList",
		crd.AnalysisTemplateResource:        "AnalysisTemplateList",
		crd.ClusterAnalysisTemplateResource: "ClusterAnalysisTemplateList",
	}, objs...)
}

// commands reads the command events published so far, in order.
func commands(t *testing.T, c *events.Client, want int) []events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := c.JetStream().OrderedConsumer(ctx, events.StreamCommands, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Event
	for len(out) < want {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(out), want, err)
		}
		ev, err := events.Decode(msg.Data(), msg.Headers())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func runWatcher(t *testing.T, dyn *dynamicfake.FakeDynamicClient, c *events.Client) {
	t.Helper()
	w, err := crd.NewWatcher(crd.WatcherConfig{Dynamic: dyn, Bus: c, Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestWatcherPublishesSpecChanges(t *testing.T) {
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	dyn := fakeDynamic(rollout(1), template("shop", "AnalysisTemplate"), template("", "ClusterAnalysisTemplate"))
	runWatcher(t, dyn, c)

	evs := commands(t, c, 3)
	byType := map[string][]events.Event{}
	for _, ev := range evs {
		byType[ev.Type()+" "+ev.Subject()] = append(byType[ev.Type()+" "+ev.Subject()], ev)
	}
	req := byType[events.TypeRolloutRequested+" shop/web"]
	if len(req) != 1 {
		t.Fatalf("events %v, want one requested for shop/web", byType)
	}
	if len(byType[events.TypeAnalysisTemplateApply+" shop/errors"]) != 1 || len(byType[events.TypeAnalysisTemplateApply+" cluster/errors"]) != 1 {
		t.Errorf("events %v, want the namespaced and the cluster template applied", byType)
	}
	// The manifest decodes as a Rollout, without kubectl's copy of itself.
	docs, err := spec.Decode(req[0].Data())
	if err != nil {
		t.Fatal(err)
	}
	ro := docs[0].Object.(*spec.Rollout)
	if ro.Namespace != "shop" || ro.Name != "web" || *ro.Spec.Replicas != 3 || ro.Annotations["team"] != "a" {
		t.Errorf("requested rollout %+v", ro.ObjectMeta)
	}
	if _, ok := ro.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; ok {
		t.Error("the last-applied annotation travelled in the event")
	}

	// The generation is recorded as observed; a new generation publishes again.
	poll.True(t, "generation 1 recorded as observed", func() bool {
		got, _ := dyn.Resource(crd.RolloutResource).Namespace("shop").Get(context.Background(), "web", metav1.GetOptions{})
		g, _, _ := unstructured.NestedString(got.Object, "status", "observedGeneration")
		return g == "1"
	})
	got, _ := dyn.Resource(crd.RolloutResource).Namespace("shop").Get(context.Background(), "web", metav1.GetOptions{})
	got.SetGeneration(2)
	_ = unstructured.SetNestedField(got.Object, int64(5), "spec", "replicas")
	if _, err := dyn.Resource(crd.RolloutResource).Namespace("shop").Update(context.Background(), got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	evs = commands(t, c, 4)
	last := evs[3]
	if last.Type() != events.TypeRolloutRequested || last.ID() != "k8s:u-1:2" {
		t.Errorf("fourth event %s %s, want requested with id k8s:u-1:2", last.Type(), last.ID())
	}
}

func TestWatcherDoesNotRepublishAnObservedGeneration(t *testing.T) {
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	observed := rollout(4)
	_ = unstructured.SetNestedField(observed.Object, "4", "status", "observedGeneration")
	dyn := fakeDynamic(observed, template("shop", "AnalysisTemplate"))
	runWatcher(t, dyn, c)
	// The template is published; the rollout, already observed, is not.
	evs := commands(t, c, 1)
	// A rollout created now is handled after the observed one (one watch,
	// one queue, one worker): once its request is out, a wrong publish for
	// the observed rollout would have landed before it.
	marker := rollout(1)
	marker.SetName("marker")
	marker.SetUID("u-marker")
	if _, err := dyn.Resource(crd.RolloutResource).Namespace("shop").Create(context.Background(), marker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := commands(t, c, 2)[1]; ev.Type() != events.TypeRolloutRequested || ev.Subject() != "shop/marker" {
		t.Fatalf("second event %s for %s, want the marker's request (the observed rollout was published)", ev.Type(), ev.Subject())
	}
	info, err := c.JetStream().Stream(context.Background(), events.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := info.Info(context.Background())
	if st.State.Msgs != 2 || evs[0].Type() != events.TypeAnalysisTemplateApply {
		t.Errorf("%d command events (first %s), want only the template's and the marker's", st.State.Msgs, evs[0].Type())
	}
}

// snapshots is the orchestrator's store as the writer reads it: the
// latest snapshot of each rollout.
type snapshots struct {
	mu     sync.Mutex
	latest map[events.Ref]events.Snapshot
}

func (s *snapshots) put(snap events.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := events.Ref{Namespace: snap.Namespace, Name: snap.Name}
	if old, ok := s.latest[ref]; !ok || snap.UpdatedAt.After(old.UpdatedAt) {
		s.latest[ref] = snap
	}
}

func (s *snapshots) Get(_ context.Context, r events.Ref) (events.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.latest[r]
	if !ok {
		return events.Snapshot{}, fmt.Errorf("%w: %s", orchestrator.ErrNoRollout, r)
	}
	return snap, nil
}

func (s *snapshots) Manifest(_ context.Context, r events.Ref, _ string) (*spec.Rollout, error) {
	return nil, fmt.Errorf("%w: %s", orchestrator.ErrNoRollout, r)
}

func TestStatusWriter(t *testing.T) {
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	ro := rollout(1)
	// The counts Counts wrote from the ReplicaSets.
	ro.Object["status"] = map[string]any{"replicas": int64(3), "readyReplicas": int64(3), "availableReplicas": int64(3), "updatedReplicas": int64(1)}
	dyn := fakeDynamic(ro)
	snaps := &snapshots{latest: map[events.Ref]events.Snapshot{}}
	w, err := crd.NewStatusWriter(crd.StatusWriterConfig{Dynamic: dyn, Client: c, Snapshots: snaps, Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	now := time.Now().UTC()
	step := int32(1)
	// Each snapshot's pod hash tells which one the object shows.
	publish := func(ref events.Ref, typ string, at time.Time, hash string) uint64 {
		t.Helper()
		snap := events.Snapshot{
			Namespace: ref.Namespace, Name: ref.Name, Strategy: "canary", Phase: "Progressing",
			Revision: 2, StableRevision: 1, PodHash: hash, StablePodHash: "old", StepIndex: &step, StepCount: 1, CanaryWeight: 20, StableWeight: 80,
			Replicas: events.Replicas{Desired: 3, Current: 4, Updated: 1, Ready: 4, Available: 4}, UpdatedAt: at,
		}
		if typ == events.TypeRolloutRestarted {
			snap.RestartedAt = at
		}
		if typ != events.TypeRolloutDeleted && typ != events.TypeRolloutRefused {
			snaps.put(snap)
		}
		ev, err := events.New("/test", typ, ref.String(), events.StatusData{Status: snap})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Publish(context.Background(), events.StatusSubject(ref), ev)
		if err != nil {
			t.Fatal(err)
		}
		return res.Sequence
	}
	web := events.Ref{Namespace: "shop", Name: "web"}
	// A rollout that is not a cluster object is skipped without error.
	publish(events.Ref{Namespace: "shop", Name: "cli-only"}, events.TypeRolloutStepStarted, now, "new")
	publish(web, events.TypeRolloutStepStarted, now, "new")
	// An older snapshot delivered later does not overwrite the newer one:
	// the writer writes the latest.
	stale := publish(web, events.TypeRolloutAccepted, now.Add(-time.Second), "stale")

	var status map[string]any
	poll.True(t, "status.currentPodHash new", func() bool {
		got, _ := dyn.Resource(crd.RolloutResource).Namespace("shop").Get(context.Background(), "web", metav1.GetOptions{})
		status, _, _ = unstructured.NestedMap(got.Object, "status")
		return status["currentPodHash"] == "new"
	})
	// The writer acks an event after it has written (or skipped) it: once
	// the ack floor passes the stale snapshot, it has had its chance.
	cons, err := c.JetStream().Consumer(context.Background(), events.StreamStatus, crd.StatusDurable)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the stale snapshot handled", func() error {
		info, err := cons.Info(context.Background())
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < stale {
			return fmt.Errorf("ack floor at stream sequence %d, stale snapshot at %d", info.AckFloor.Stream, stale)
		}
		return nil
	})
	got, _ := dyn.Resource(crd.RolloutResource).Namespace("shop").Get(context.Background(), "web", metav1.GetOptions{})
	status, _, _ = unstructured.NestedMap(got.Object, "status")
	b, _ := json.Marshal(status)
	for field, want := range map[string]any{
		"selector": "app=web", "currentPodHash": "new", "stableRS": "old", "currentStepIndex": int64(1),
	} {
		if status[field] != want {
			t.Errorf("status.%s = %v, want %v (status %s)", field, status[field], want, b)
		}
	}
	if status["replicas"] != int64(3) {
		t.Errorf("status.replicas written from a snapshot; the counts come from the ReplicaSets (status %s)", b)
	}

	// A refused command and a deleted rollout change nothing; a restart
	// is recorded in Argo's status.restartedAt.
	handled := func(seq uint64) {
		t.Helper()
		poll.Until(t, "status event handled", func() error {
			info, err := cons.Info(context.Background())
			if err != nil {
				return err
			}
			if info.AckFloor.Stream < seq {
				return fmt.Errorf("ack floor at stream sequence %d, event at %d", info.AckFloor.Stream, seq)
			}
			return nil
		})
		got, _ = dyn.Resource(crd.RolloutResource).Namespace("shop").Get(context.Background(), "web", metav1.GetOptions{})
		status, _, _ = unstructured.NestedMap(got.Object, "status")
	}
	publish(web, events.TypeRolloutRefused, now.Add(time.Second), "refused")
	handled(publish(web, events.TypeRolloutDeleted, now.Add(2*time.Second), "deleted"))
	if status["currentPodHash"] != "new" {
		t.Errorf("status.currentPodHash %v after a refused command and a deleted event, want new unchanged", status["currentPodHash"])
	}
	handled(publish(web, events.TypeRolloutRestarted, now.Add(3*time.Second), "restarted"))
	if status["currentPodHash"] != "restarted" || status["restartedAt"] != now.Add(3*time.Second).Format(time.RFC3339) {
		t.Errorf("status after refused, deleted and restarted: currentPodHash %v, restartedAt %v; want restarted, with restartedAt", status["currentPodHash"], status["restartedAt"])
	}
}

func TestSumReplicas(t *testing.T) {
	rs := func(hash string, replicas, ready, available int32, deleting bool) *appsv1.ReplicaSet {
		r := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{spec.LabelPodTemplateHash: hash}},
			Status:     appsv1.ReplicaSetStatus{Replicas: replicas, ReadyReplicas: ready, AvailableReplicas: available},
		}
		if deleting {
			now := metav1.Now()
			r.DeletionTimestamp = &now
		}
		return r
	}
	got := crd.SumReplicas([]*appsv1.ReplicaSet{rs("old", 3, 3, 2, false), rs("new", 2, 1, 1, false), rs("gone", 5, 5, 5, true)}, "new")
	want := map[string]int64{"replicas": 5, "readyReplicas": 4, "availableReplicas": 3, "updatedReplicas": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all %v)", k, got[k], v, got)
		}
	}
}

// Deleting a Rollout object asks the orchestrator to delete the rollout,
// once, as the watcher; spec.restartAt travels in the requested event as
// the object has it, so the orchestrator can honour it.
func TestWatcherPublishesDeleteAndKeepsRestartAt(t *testing.T) {
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	ro := rollout(1)
	const restartAt = "2026-12-06T10:00:00Z"
	_ = unstructured.SetNestedField(ro.Object, restartAt, "spec", "restartAt")
	dyn := fakeDynamic(ro)
	runWatcher(t, dyn, c)

	req := commands(t, c, 1)[0]
	if req.Type() != events.TypeRolloutRequested || events.Extension(req, events.ExtActor) != crd.Actor {
		t.Errorf("first event %s with actor %q, want requested by %s", req.Type(), events.Extension(req, events.ExtActor), crd.Actor)
	}
	docs, err := spec.Decode(req.Data())
	if err != nil {
		t.Fatal(err)
	}
	if got := docs[0].Object.(*spec.Rollout).Spec.RestartAt; got == nil || got.UTC().Format(time.RFC3339) != restartAt {
		t.Errorf("spec.restartAt in the requested event %v, want %s", got, restartAt)
	}

	if err := dyn.Resource(crd.RolloutResource).Namespace("shop").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	del := commands(t, c, 2)[1]
	if del.Type() != events.TypeRolloutDelete || del.Subject() != "shop/web" || del.ID() != "k8s:u-1:delete" {
		t.Errorf("second event %s for %s (id %s), want delete for shop/web with id k8s:u-1:delete", del.Type(), del.Subject(), del.ID())
	}
	if got := events.Extension(del, events.ExtActor); got != crd.Actor {
		t.Errorf("delete actor %q, want %q", got, crd.Actor)
	}
}
