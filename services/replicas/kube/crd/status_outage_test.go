package crd_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

// TestStatusWriterCatchesUpSoonAfterAnAPIOutage: while the API server
// refuses status writes, the writer keeps trying, and once it takes them
// again the Rollout shows the record within seconds, not after the bus's
// two-minute backoff (test/kube's fault proxy found the object lagging
// the record by minutes after the faults ended).
func TestStatusWriterCatchesUpSoonAfterAnAPIOutage(t *testing.T) {
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	dyn := fakeDynamic(rollout(1))
	var mu sync.Mutex
	down, refused := true, 0
	dyn.PrependReactor("update", "rollouts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if a.GetSubresource() != "status" || !down {
			return false, nil, nil
		}
		refused++
		return true, nil, apierrors.NewServiceUnavailable("kube-apiserver restarting")
	})
	snaps := &snapshots{latest: map[events.Ref]events.Snapshot{}}
	w, err := crd.NewStatusWriter(crd.StatusWriterConfig{Dynamic: dyn, Client: c, Snapshots: snaps, Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	poll.True(t, "status writer ready", w.Ready)

	web := events.Ref{Namespace: "shop", Name: "web"}
	step := int32(1)
	snap := events.Snapshot{Namespace: "shop", Name: "web", Strategy: "canary", Phase: "Paused", Revision: 2, StableRevision: 1,
		PodHash: "new", StablePodHash: "old", StepIndex: &step, StepCount: 2, CanaryWeight: 30, StableWeight: 70,
		Replicas: events.Replicas{Desired: 3, Current: 4, Updated: 1, Ready: 4, Available: 4}, UpdatedAt: time.Now().UTC()}
	snaps.put(snap)
	ev, err := events.New("/test", events.TypeRolloutPaused, web.String(), events.StatusData{Status: snap})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(context.Background(), events.StatusSubject(web), ev); err != nil {
		t.Fatal(err)
	}

	// Seven refusals: with the bus's default backoff (1 s doubling to 2
	// minutes) the eighth attempt would come 64 s after the seventh.
	poll.True(t, "seven status writes refused", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return refused >= 7
	}, poll.Timeout(2*time.Minute))
	mu.Lock()
	down = false
	mu.Unlock()
	healed := time.Now()
	poll.Until(t, "the Rollout's status written once the API server takes writes again", func() error {
		got, err := dyn.Resource(crd.RolloutResource).Namespace("shop").Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if hash, _, _ := unstructured.NestedString(got.Object, "status", "currentPodHash"); hash != "new" {
			return fmt.Errorf("status.currentPodHash %q", hash)
		}
		return nil
	}, poll.Timeout(20*time.Second))
	t.Logf("status written %s after the API server took writes again", time.Since(healed).Round(100*time.Millisecond))
}
