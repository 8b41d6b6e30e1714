package notifier

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// A standalone Experiment's status events, its runs' analysis events
// among them, are neither planned nor kept as a rollout's previous
// snapshot: a rollout event on the same subject after them (handled after
// them: a subject's deliveries are in order) is the only one planned, and
// without a previous snapshot.
func TestExperimentEventsAreNotNotified(t *testing.T) {
	b := newBus(t)
	h := newHook(t)
	setup := hookSetup(t, h)
	var mu sync.Mutex
	var planned []string
	var prevs []*events.Snapshot
	every := setup.Planner
	setup.Planner = PlannerFunc(func(ctx context.Context, ev events.Event, data events.StatusData, prev *events.Snapshot) ([]notify.Message, error) {
		mu.Lock()
		planned, prevs = append(planned, ev.Type()), append(prevs, prev)
		mu.Unlock()
		return every.Plan(ctx, ev, data, prev)
	})
	startNotifier(t, b, setup, nil)

	snap := events.Snapshot{Kind: events.KindExperiment, Namespace: shop.Namespace, Name: shop.Name, Phase: events.ExperimentPhaseFailed,
		Replicas: events.Replicas{Desired: 2}, UpdatedAt: time.Now().UTC()}
	for _, e := range []struct {
		typ  string
		data events.StatusData
	}{
		{events.TypeExperimentAccepted, events.StatusData{Status: snap}},
		{events.TypeAnalysisCompleted, events.StatusData{Status: snap, Analysis: &events.AnalysisSummary{Name: "shop-rate", Phase: "Failed", Failed: 1}}},
		{events.TypeExperimentCompleted, events.StatusData{Status: snap, Reason: "shop-rate failed"}},
		{events.TypeExperimentDeleted, events.StatusData{Status: snap}},
	} {
		ev, err := events.New("/sluice/orchestrator", e.typ, shop.String(), e.data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.client.Publish(context.Background(), events.StatusSubject(shop), ev); err != nil {
			t.Fatal(err)
		}
	}
	b.publishStatus(t, shop, events.TypeRolloutAccepted)
	waitDelivered(t, h, events.TypeRolloutAccepted+" prod/shop")
	if got := h.delivered(); len(got) != 1 {
		t.Errorf("the hook received %q; want only the rollout's event", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(planned) != 1 || planned[0] != events.TypeRolloutAccepted || prevs[0] != nil {
		t.Errorf("planned %v with previous snapshots %v; want only the rollout's event, with none", planned, prevs)
	}
}
