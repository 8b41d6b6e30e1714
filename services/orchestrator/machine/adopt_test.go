package machine

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
)

// A Rollout that Argo Rollouts managed carries its revision number: the
// takeover keeps it, runs the current template as stable without steps
// (its pods are running), and the next update is the next number, canaried.
func TestTakeoverFromArgoKeepsTheRevision(t *testing.T) {
	w := newWorld(t, Config{})
	ro := nginxCanary(4, setWeight(50), pauseIndefinitely())
	ro.Annotations = map[string]string{argoRevisionAnnotation: "7"}
	effs := w.apply(Observation{Request: ro})
	if got := describeEffects(effs); !strings.HasPrefix(got, "[rollout.accepted, task shop/web/r7/scale/1#1, task shop/web/r7/route/1#1") {
		t.Fatalf("effects %s, want the revision-7 template scaled and routed at once", got)
	}
	if reason := w.lastEvent("rollout.accepted").Data.Reason; !strings.Contains(reason, "taken over at revision 7") {
		t.Errorf("accepted reason %q, want it to say the rollout was taken over at revision 7", reason)
	}
	w.settle()
	w.expectPhase(events.PhaseHealthy)
	w.expectPods(map[int64]int32{7: 4})
	w.expectWeight(0)
	if s := w.snap(); s.Revision != 7 || s.StableRevision != 7 || s.PodHash != h1 {
		t.Errorf("snapshot revision %d stable %d hash %s, want 7, 7, %s", s.Revision, s.StableRevision, s.PodHash, h1)
	}

	// The annotation Argo left is not read again once the rollout is known.
	next := image(ro, "web:2")
	next.Annotations[argoRevisionAnnotation] = "99"
	w.request(next)
	w.settle()
	w.expectPhase(events.PhasePaused)
	w.expectStep(1)
	w.expectWeight(50)
	if s := w.snap(); s.Revision != 8 || s.StableRevision != 7 {
		t.Errorf("snapshot revision %d stable %d, want the update as revision 8 over stable 7", s.Revision, s.StableRevision)
	}
}

// An annotation that is no revision number is not trusted: the rollout
// starts at revision 1 and the accepted event says why.
func TestTakeoverWithAnUnreadableRevision(t *testing.T) {
	for _, v := range []string{"seven", "0", "-3", ""} {
		t.Run(v, func(t *testing.T) {
			w := newWorld(t, Config{})
			ro := nginxCanary(2, setWeight(50))
			ro.Annotations = map[string]string{argoRevisionAnnotation: v}
			w.request(ro)
			w.settle()
			w.expectPhase(events.PhaseHealthy)
			if s := w.snap(); s.Revision != 1 {
				t.Errorf("revision %d, want 1", s.Revision)
			}
			if reason := w.lastEvent("rollout.accepted").Data.Reason; !strings.Contains(reason, "is not a revision number; starting at revision 1") {
				t.Errorf("accepted reason %q, want it to say the annotation was not used", reason)
			}
		})
	}
}
