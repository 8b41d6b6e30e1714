package kube_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
)

// BenchmarkCanaryUpdate measures one whole canary update on the Kubernetes
// platform through the Istio router: a new image in the Rollout object,
// the canary ReplicaSet up, the VirtualService at 30%, a promotion, the
// VirtualService back at 0 and the Rollout Healthy with every replica
// available, as seen through the Rollout's status. It includes the real
// API server, the ReplicaSet controller, the scheduler and kwok.
//
//	go test -run '^$' -bench CanaryUpdate -benchtime 5x ./test/kube
func BenchmarkCanaryUpdate(b *testing.B) {
	rc := routerCases()[2] // istio
	s := start(b)
	s.service(b, "web-stable", "web")
	s.service(b, "web-canary", "web")
	s.apply(b, rc.objects[0])
	s.apply(b, rollout("web", "v0", 2, canarySteps(rc.routing)))
	s.waitPhase(b, "web", "Healthy", -1)
	var toPaused, toHealthy time.Duration
	b.ResetTimer()
	for i := range b.N {
		begin := time.Now()
		s.setImage(b, "web", fmt.Sprintf("web:v%d", i+1))
		s.waitPhase(b, "web", "Paused", 1)
		waitWeight(b, s, rc, 30)
		paused := time.Now()
		s.command(b, "web", events.TypeRolloutPromote, events.PromoteData{})
		s.waitPhase(b, "web", "Healthy", 2)
		waitWeight(b, s, rc, 0)
		toPaused += paused.Sub(begin)
		toHealthy += time.Since(paused)
	}
	b.ReportMetric(float64(toPaused.Milliseconds())/float64(b.N), "ms-to-30%/op")
	b.ReportMetric(float64(toHealthy.Milliseconds())/float64(b.N), "ms-promote-to-healthy/op")
}
