package crd_test

import (
	"slices"
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

func TestRequests(t *testing.T) {
	step := func(n int64) *int64 { return &n }
	paused := crd.Requested{Paused: true, StepIndex: step(1)}
	cases := []struct {
		name     string
		was, now crd.Requested
		pending  map[string]string
		want     []string // type, with "+full" for a full promote
	}{
		{"nothing changed", paused, paused, nil, nil},
		{"Sluice paused (no request)", crd.Requested{StepIndex: step(1)}, paused, nil, nil},
		{"pause conditions cleared: promote", paused, crd.Requested{StepIndex: step(1)}, nil, []string{events.TypeRolloutPromote}},
		{"inconclusive promote: cleared and step advanced, one promote", paused, crd.Requested{StepIndex: step(2)}, nil, []string{events.TypeRolloutPromote}},
		{"step skipped", crd.Requested{StepIndex: step(0)}, crd.Requested{StepIndex: step(1)}, nil, []string{events.TypeRolloutPromote}},
		{"skip all steps: full", crd.Requested{StepIndex: step(0)}, crd.Requested{StepIndex: step(4)}, nil, []string{events.TypeRolloutPromote + "+full"}},
		{"abort", paused, crd.Requested{Abort: true, Paused: true, StepIndex: step(1)}, nil, []string{events.TypeRolloutAbort}},
		{"abort cleared while aborted: retry", crd.Requested{Abort: true}, crd.Requested{}, nil, []string{events.TypeRolloutRetry}},
		{"promote full", paused, crd.Requested{Paused: true, PromoteFull: true, StepIndex: step(1)}, nil, []string{events.TypeRolloutPromote + "+full"}},
		{"abort already pending", paused, crd.Requested{Abort: true, Paused: true, StepIndex: step(1)}, map[string]string{"abort": "id"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, r := range crd.Requests(c.was, c.now, c.pending, 4) {
				s := r.Type
				if r.Full {
					s += "+full"
				}
				got = append(got, s)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("requests %v, want %v", got, c.want)
			}
		})
	}
}

func TestActorOf(t *testing.T) {
	if got := crd.ActorOf(""); got != crd.Actor {
		t.Errorf("unknown manager: actor %q, want %q", got, crd.Actor)
	}
	if got := crd.ActorOf("argocd-server"); got != "kube:argocd-server" {
		t.Errorf("actor %q, want kube:argocd-server", got)
	}
}
