package crd

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// oneSnapshot is the orchestrator holding one rollout, whose snapshot the
// test changes.
type oneSnapshot struct {
	mu   sync.Mutex
	snap events.Snapshot
}

func (o *oneSnapshot) set(s events.Snapshot) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.snap = s
}

func (o *oneSnapshot) Get(_ context.Context, r events.Ref) (events.Snapshot, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.Namespace != o.snap.Namespace || r.Name != o.snap.Name {
		return events.Snapshot{}, fmt.Errorf("%w: %s", orchestrator.ErrNoRollout, r)
	}
	return o.snap, nil
}

func (o *oneSnapshot) Manifest(_ context.Context, r events.Ref, _ string) (*spec.Rollout, error) {
	return nil, fmt.Errorf("%w: %s", orchestrator.ErrNoRollout, r)
}

// While the API server is slow to take one Rollout's status write, the
// rewrites asked for meanwhile (a ReplicaSet's counts changing, a status
// event) wait for it rather than write alongside it (with the API
// server's optimistic concurrency, a conflict and a read again), and are
// then written together, once, with the latest snapshot: a write each
// would cost a request each while the client is rate-limited.
func TestStatusWritesOfOneRolloutMergeWhileOneIsInProgress(t *testing.T) {
	web := events.Ref{Namespace: "shop", Name: "web"}
	ro := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"namespace": web.Namespace, "name": web.Name, "uid": "u-1", "generation": int64(1)},
		"spec": map[string]any{
			"replicas": int64(3),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
				"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "web:v2"}}},
			},
			"strategy": map[string]any{"canary": map[string]any{"steps": []any{map[string]any{"setWeight": int64(20)}}}},
		},
	}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{RolloutResource: "RolloutList"}, ro)
	var (
		mu     sync.Mutex
		writes int
	)
	entered, release := make(chan struct{}), make(chan struct{})
	dyn.PrependReactor("update", "rollouts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		mu.Lock()
		writes++
		first := writes == 1
		mu.Unlock()
		if first {
			close(entered)
			<-release // a slow API server, or a client waiting for its rate limiter
		}
		return false, nil, nil // the tracker writes it
	})
	step := int32(0)
	snapshot := func(hash string) events.Snapshot {
		return events.Snapshot{Namespace: web.Namespace, Name: web.Name, Strategy: "canary", Phase: "Progressing",
			Revision: 2, StableRevision: 1, PodHash: hash, StablePodHash: "old", StepIndex: &step, StepCount: 1,
			Replicas: events.Replicas{Desired: 3, Current: 4, Updated: 1, Ready: 4, Available: 4}, UpdatedAt: time.Now().UTC()}
	}
	snaps := &oneSnapshot{snap: snapshot("first")}
	s := &StatusWriter{cfg: StatusWriterConfig{Dynamic: dyn, Snapshots: snaps}, log: eventstest.Quiet(), now: time.Now}
	s.rounds = newRounds(s.write)

	ctx := context.Background()
	results := make(chan error, 3)
	go func() { results <- s.Rewrite(ctx, web) }()
	<-entered
	// The rollout moves on while its first write waits; two rewrites
	// are asked for.
	snaps.set(snapshot("latest"))
	for range 2 {
		go func() { results <- s.Rewrite(ctx, web) }()
	}
	poll.True(t, "two rewrites waiting for the write in progress", func() bool {
		s.rounds.mu.Lock()
		defer s.rounds.mu.Unlock()
		n := s.rounds.next[web]
		return n != nil && len(n.changes) == 2
	})
	close(release)
	for range 3 {
		if err := <-results; err != nil {
			t.Fatalf("rewrite: %v", err)
		}
	}
	got, err := dyn.Resource(RolloutResource).Namespace(web.Namespace).Get(ctx, web.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hash, _, _ := unstructured.NestedString(got.Object, "status", "currentPodHash"); hash != "latest" {
		t.Errorf("status.currentPodHash %q, want the latest snapshot's", hash)
	}
	if writes != 2 {
		t.Errorf("%d status writes, want 2: the first, and one for both rewrites that waited for it", writes)
	}
}
