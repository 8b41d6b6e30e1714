package guard_test

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
)

// wantB records, on the anchor a, the label x a route wants on b.
const wantB = "test.sluice.io/want-b"

// anchoredRoute is a route that labels the anchor Service a with x=label
// and the Service b with x=b, through client.
func anchoredRoute(client guard.Client[*corev1.Service], label, b string, bMutate func(*corev1.Service) error) guard.Anchored[*corev1.Service] {
	if bMutate == nil {
		bMutate = setLabel(b)
	}
	return guard.Anchored[*corev1.Service]{
		Anchor: guard.Change[*corev1.Service]{Client: client, Name: "a", What: "Service default/a", Mutate: func(s *corev1.Service) error {
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			s.Annotations[wantB] = b
			return setLabel(label)(s)
		}},
		Others: []guard.Change[*corev1.Service]{{Client: client, Name: "b", What: "Service default/b", Mutate: bMutate}},
		Restore: func(a *corev1.Service) []guard.Change[*corev1.Service] {
			if v, ok := a.Annotations[wantB]; ok {
				return []guard.Change[*corev1.Service]{{Client: client, Name: "b", What: "Service default/b", Mutate: setLabel(v)}}
			}
			return nil
		},
	}
}

func twoServices() *fake.Clientset {
	return kubefake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "a"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "b"}})
}

func labelOf(t *testing.T, c *fake.Clientset, name string) (string, int64) {
	t.Helper()
	svc, err := c.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Labels["x"], guard.Seq(svc)
}

// Only the anchor is written on every route: an object the route leaves
// as it is keeps the seq of the route that last changed it, and the route
// costs one write (and, remembered, no read).
func TestAnchoredWritesOnlyWhatChanges(t *testing.T) {
	ctx := context.Background()
	c := twoServices()
	services := guard.NewMemory[*corev1.Service](0).Client("default", c.CoreV1().Services("default"))
	if _, err := guard.UpdateAnchored(ctx, 1, anchoredRoute(services, "1", "b1", nil)); err != nil {
		t.Fatal(err)
	}
	before := kubefake.Count(c, "get", "update")
	for seq := int64(2); seq <= 4; seq++ {
		if _, err := guard.UpdateAnchored(ctx, seq, anchoredRoute(services, "w", "b1", nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := kubefake.Count(c, "get", "update") - before; n != 3 {
		t.Errorf("%d requests for three routes changing only the anchor, want 3 (its writes)", n)
	}
	if x, seq := labelOf(t, c, "b"); x != "b1" || seq != 1 {
		t.Errorf("b: x=%q seq %d, want b1 from seq 1, unwritten since", x, seq)
	}
	if _, seq := labelOf(t, c, "a"); seq != 4 {
		t.Errorf("anchor seq %d, want 4", seq)
	}
}

// A late route after a later one that left b alone is refused at the
// anchor and leaves b as the later route wanted, though b still carries
// an older seq than the late route's.
func TestAnchoredLateRouteAfterASkippedObject(t *testing.T) {
	ctx := context.Background()
	c := twoServices()
	services := c.CoreV1().Services("default")
	for _, r := range []struct {
		seq int64
		b   string
	}{{5, "new"}, {7, "new"}} {
		if _, err := guard.UpdateAnchored(ctx, r.seq, anchoredRoute(services, "w", r.b, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if _, seq := labelOf(t, c, "b"); seq != 5 {
		t.Fatalf("b seq %d, want 5: route 7 should have left it alone", seq)
	}
	_, err := guard.UpdateAnchored(ctx, 6, anchoredRoute(services, "w", "old", nil))
	if !errors.Is(err, tasks.ErrStale) {
		t.Fatalf("late route 6: %v, want stale", err)
	}
	if x, _ := labelOf(t, c, "b"); x != "new" {
		t.Errorf("b x=%q after the late route, want %q (route 7's)", x, "new")
	}
}

// The race the anchor's order closes: a late route (seq 6) has passed its
// check when a later route (seq 7) runs whole and leaves b alone; the late
// route then writes b. Its anchor write finds seq 7 there, and it repairs
// b to what route 7 recorded before it reports stale.
func TestAnchoredLateRouteRacingALaterOne(t *testing.T) {
	ctx := context.Background()
	c := twoServices()
	services := c.CoreV1().Services("default")
	if _, err := guard.UpdateAnchored(ctx, 5, anchoredRoute(services, "w", "new", nil)); err != nil {
		t.Fatal(err)
	}
	calls := 0
	late := func(s *corev1.Service) error {
		// Called by the late route's check of b, then by its write:
		// route 7 runs in between.
		if calls++; calls == 1 {
			if _, err := guard.UpdateAnchored(ctx, 7, anchoredRoute(services, "w7", "new", nil)); err != nil {
				return err
			}
		}
		return setLabel("old")(s)
	}
	_, err := guard.UpdateAnchored(ctx, 6, anchoredRoute(services, "w6", "old", late))
	if !errors.Is(err, tasks.ErrStale) {
		t.Fatalf("late route 6: %v, want stale", err)
	}
	if calls < 2 {
		t.Fatalf("the late route did not get to write b (%d calls of its change): the race was not run", calls)
	}
	if x, seq := labelOf(t, c, "b"); x != "new" || seq != 7 {
		t.Errorf("b x=%q seq %d, want %q restored under route 7", x, seq, "new")
	}
	if x, seq := labelOf(t, c, "a"); x != "w7" || seq != 7 {
		t.Errorf("anchor x=%q seq %d, want route 7's", x, seq)
	}
}

// A late route that wrote b and died before its anchor write leaves b
// wrong until its task is delivered again: the redelivery, refused at the
// anchor, repairs b first. A router that remembered b from before the
// late write would otherwise keep leaving it so.
func TestAnchoredRedeliveryRepairsWhatItsFirstDeliveryLeft(t *testing.T) {
	ctx := context.Background()
	c := twoServices()
	services := guard.NewMemory[*corev1.Service](0).Client("default", c.CoreV1().Services("default"))
	for _, seq := range []int64{5, 7} {
		if _, err := guard.UpdateAnchored(ctx, seq, anchoredRoute(services, "w", "new", nil)); err != nil {
			t.Fatal(err)
		}
	}
	// Route 6's first delivery, on another replica, got as far as b.
	if _, err := guard.Update(ctx, c.CoreV1().Services("default"), "b", "Service default/b", 6, setLabel("old")); err != nil {
		t.Fatal(err)
	}
	_, err := guard.UpdateAnchored(ctx, 6, anchoredRoute(services, "w", "old", nil))
	if !errors.Is(err, tasks.ErrStale) {
		t.Fatalf("route 6 again: %v, want stale", err)
	}
	if x, seq := labelOf(t, c, "b"); x != "new" || seq != 7 {
		t.Errorf("b x=%q seq %d, want %q restored under route 7", x, seq, "new")
	}
	// The repair changed the anchor, so the next route reads b again
	// rather than trusting the copy remembered from route 7.
	if _, err := guard.UpdateAnchored(ctx, 8, anchoredRoute(services, "w", "next", nil)); err != nil {
		t.Fatal(err)
	}
	if x, seq := labelOf(t, c, "b"); x != "next" || seq != 8 {
		t.Errorf("b x=%q seq %d after route 8, want next", x, seq)
	}
}
