package machine

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// Cases from Argo Rollouts' TestCalculateReplicaCountsForCanary (basic
// canary, no traffic routing), with Argo's names.
func TestBasicCanaryCounts(t *testing.T) {
	tests := []struct {
		name                string
		replicas, weight    int32
		surge, unavailable  intstr.IntOrString
		stable, canary      rs
		older               *rs
		noStable            bool
		wantStable, wantCan int32
	}{
		{name: "Do not add extra RSs in scaleDownCount when .Spec.Replica < AvailableReplicas", replicas: 10, weight: 100, surge: intstr.FromInt32(3), unavailable: intstr.FromInt32(0),
			stable: rs{7, 8}, canary: rs{6, 3}, wantStable: 7, wantCan: 6},
		{name: "Use max surge int to scale up canary", replicas: 10, weight: 20, surge: intstr.FromInt32(2), unavailable: intstr.FromInt32(0),
			stable: rs{10, 10}, wantStable: 10, wantCan: 2},
		{name: "Use max surge percentage to scale up canary", replicas: 10, weight: 20, surge: intstr.FromString("20%"), unavailable: intstr.FromInt32(0),
			stable: rs{10, 10}, wantStable: 10, wantCan: 2},
		{name: "Scale down extra stable replicas", replicas: 10, weight: 20, surge: intstr.FromString("20%"), unavailable: intstr.FromInt32(0),
			stable: rs{10, 10}, canary: rs{2, 2}, wantStable: 8, wantCan: 2},
		{name: "Do not go past max surge", replicas: 10, weight: 30, surge: intstr.FromInt32(2), unavailable: intstr.FromInt32(0),
			stable: rs{10, 10}, wantStable: 10, wantCan: 2},
		{name: "Use max unavailable int to scale down stableRS", replicas: 10, weight: 20, surge: intstr.FromInt32(0), unavailable: intstr.FromInt32(2),
			stable: rs{10, 10}, wantStable: 8, wantCan: 0},
		{name: "Use max surge percentage to scale down stableRS", replicas: 10, weight: 20, surge: intstr.FromInt32(0), unavailable: intstr.FromString("20%"),
			stable: rs{10, 10}, wantStable: 8, wantCan: 0},
		{name: "Do not go past max unavailable", replicas: 10, weight: 30, surge: intstr.FromInt32(0), unavailable: intstr.FromInt32(2),
			stable: rs{10, 10}, wantStable: 8, wantCan: 0},
		{name: "Use Max Surge and Max Unavailable", replicas: 10, weight: 50, surge: intstr.FromInt32(2), unavailable: intstr.FromInt32(1),
			stable: rs{10, 10}, wantStable: 9, wantCan: 2},
		{name: "Scale canaryRS to zero on setWeight of 0%", replicas: 10, weight: 0, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(1),
			stable: rs{10, 10}, canary: rs{1, 1}, wantStable: 10, wantCan: 0},
		{name: "Scale stable to zero on setWeight of 100%", replicas: 10, weight: 100, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(1),
			stable: rs{1, 1}, canary: rs{10, 10}, wantStable: 0, wantCan: 10},
		{name: "Do not scale newRS down to zero on non-zero weight", replicas: 1, weight: 20, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(0),
			stable: rs{1, 1}, wantStable: 1, wantCan: 1},
		{name: "Do not scale canaryRS down to zero on non-100 weight", replicas: 1, weight: 90, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(0),
			stable: rs{1, 1}, wantStable: 1, wantCan: 1},
		{name: "Scale up Stable before newRS", replicas: 10, weight: 30, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(0),
			stable: rs{1, 1}, older: &rs{3, 3}, wantStable: 7, wantCan: 1},
		{name: "Scale down newRS and stable", replicas: 10, weight: 30, surge: intstr.FromInt32(0), unavailable: intstr.FromInt32(3),
			stable: rs{8, 5}, canary: rs{4, 4}, wantStable: 7, wantCan: 3},
		{name: "Scale down stable and canary available", replicas: 10, weight: 100, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(0),
			stable: rs{10, 2}, canary: rs{10, 8}, wantStable: 2, wantCan: 9},
		{name: "Do not scale down newRS or stable when older RS count >= scaleDownCount", replicas: 10, weight: 30, surge: intstr.FromInt32(0), unavailable: intstr.FromInt32(1),
			stable: rs{8, 6}, canary: rs{4, 2}, older: &rs{3, 3}, wantStable: 8, wantCan: 4},
		{name: "Do not round past maxSurge with uneven setWeight divisor", replicas: 10, weight: 5, surge: intstr.FromInt32(0), unavailable: intstr.FromInt32(1),
			stable: rs{10, 10}, wantStable: 9, wantCan: 0},
		{name: "Do not round past maxSurge with uneven setWeight divisor (part 2)", replicas: 10, weight: 5, surge: intstr.FromInt32(0), unavailable: intstr.FromInt32(1),
			stable: rs{9, 9}, wantStable: 9, wantCan: 1},
		{name: "Use maxUnavailable of 1 when percentage of maxUnavailable and maxSurge result in 0 replicas", replicas: 10, weight: 10, surge: intstr.FromString("0%"), unavailable: intstr.FromString("0%"),
			stable: rs{10, 10}, wantStable: 9, wantCan: 0},
		{name: "honor maxSurge during scale up when stableRS unavailable", replicas: 4, weight: 100, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(0),
			stable: rs{4, 1}, wantStable: 4, wantCan: 1},
		{name: "scale down to maxunavailable without exceeding maxSurge", replicas: 3, weight: 99, surge: intstr.FromInt32(0), unavailable: intstr.FromInt32(2),
			stable: rs{3, 3}, wantStable: 1, wantCan: 0},
		{name: "scale down to maxunavailable without exceeding maxSurge (part 2)", replicas: 3, weight: 99, surge: intstr.FromInt32(0), unavailable: intstr.FromInt32(2),
			stable: rs{1, 1}, wantStable: 1, wantCan: 2},
		{name: "honor maxUnavailable during scale down stableRS unavailable", replicas: 4, weight: 100, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(0),
			stable: rs{4, 1}, canary: rs{1, 1}, wantStable: 3, wantCan: 1},
		{name: "honor maxUnavailable when aborting or reducing weight part 1", replicas: 4, weight: 0, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(0),
			stable: rs{0, 0}, canary: rs{4, 4}, wantStable: 1, wantCan: 4},
		{name: "honor maxUnavailable when aborting or reducing weight part 2", replicas: 4, weight: 0, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(0),
			stable: rs{1, 0}, canary: rs{4, 4}, wantStable: 1, wantCan: 4},
		{name: "honor maxUnavailable when aborting or reducing weight part 3", replicas: 4, weight: 0, surge: intstr.FromInt32(1), unavailable: intstr.FromInt32(0),
			stable: rs{1, 1}, canary: rs{4, 4}, wantStable: 1, wantCan: 3},
		{name: "promote full does not consider weight", replicas: 4, weight: 100, surge: intstr.FromInt32(4), unavailable: intstr.FromInt32(4),
			stable: rs{4, 4}, wantStable: 0, wantCan: 4},
		{name: "promote full still honors maxSurge/maxUnavailable", replicas: 4, weight: 100, surge: intstr.FromInt32(3), unavailable: intstr.FromInt32(0),
			stable: rs{4, 4}, wantStable: 4, wantCan: 3},
		{name: "new deployment: the stable is the canary", replicas: 10, weight: 10, surge: intstr.FromInt32(0), unavailable: intstr.FromInt32(1),
			canary: rs{10, 0}, noStable: true, wantStable: 0, wantCan: 10},
		{name: "stable edge case: no stable", replicas: 10, weight: 10, surge: intstr.FromInt32(0), unavailable: intstr.FromInt32(1),
			canary: rs{9, 9}, noStable: true, wantStable: 0, wantCan: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			surge, unavailable := fenceposts(&tt.surge, &tt.unavailable, tt.replicas)
			in := basicInput{Replicas: tt.replicas, Weight: tt.weight, Surge: surge, Unavailable: unavailable, Canary: tt.canary}
			if !tt.noStable {
				st := tt.stable
				in.Stable = &st
			}
			if tt.older != nil {
				in.Old = []rs{*tt.older}
			}
			canary, stable := basicCanaryCounts(in)
			if canary != tt.wantCan || stable != tt.wantStable {
				t.Errorf("canary %d, stable %d; want canary %d, stable %d", canary, stable, tt.wantCan, tt.wantStable)
			}
		})
	}
}

// Cases from Argo Rollouts' TestApproximateWeightedNewStableReplicaCounts.
func TestApproximateCanary(t *testing.T) {
	tests := []struct{ replicas, weight, surge, canary, stable int32 }{
		{0, 0, 0, 0, 0}, {0, 50, 0, 0, 0}, {0, 100, 0, 0, 0},
		{0, 0, 1, 0, 0}, {0, 50, 1, 0, 0}, {0, 100, 1, 0, 0},
		{1, 0, 0, 0, 1}, {1, 1, 0, 0, 1}, {1, 49, 0, 0, 1}, {1, 50, 0, 1, 0}, {1, 99, 0, 1, 0}, {1, 100, 0, 1, 0},
		{1, 0, 1, 0, 1}, {1, 1, 1, 1, 1}, {1, 49, 1, 1, 1}, {1, 50, 1, 1, 1}, {1, 99, 1, 1, 1}, {1, 100, 1, 1, 0},
		{2, 0, 0, 0, 2}, {2, 1, 0, 1, 1}, {2, 50, 0, 1, 1}, {2, 99, 0, 1, 1}, {2, 100, 0, 2, 0},
		{2, 0, 1, 0, 2}, {2, 1, 1, 1, 2}, {2, 50, 1, 1, 1}, {2, 99, 1, 2, 1}, {2, 100, 1, 2, 0},
		{3, 10, 0, 1, 2}, {3, 25, 0, 1, 2}, {3, 33, 0, 1, 2}, {3, 34, 0, 1, 2}, {3, 49, 0, 1, 2}, {3, 50, 0, 2, 1},
		{3, 10, 1, 1, 3}, {3, 25, 1, 1, 3}, {3, 33, 1, 1, 2}, {3, 34, 1, 1, 2}, {3, 49, 1, 2, 2}, {3, 50, 1, 2, 2},
		{10, 0, 1, 0, 10}, {10, 1, 0, 1, 9}, {10, 14, 0, 1, 9}, {10, 15, 0, 2, 8}, {10, 16, 0, 2, 8}, {10, 99, 0, 9, 1}, {10, 100, 1, 10, 0},
		{10, 1, 1, 1, 10}, {10, 18, 1, 2, 9}, {10, 19, 1, 2, 9}, {10, 20, 1, 2, 8}, {10, 23, 1, 2, 8}, {10, 24, 1, 3, 8}, {10, 25, 1, 3, 8}, {10, 99, 1, 10, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("replicas %d weight %d surge %d", tt.replicas, tt.weight, tt.surge), func(t *testing.T) {
			c, s := approximateCanary(tt.replicas, tt.weight, tt.surge)
			if c != tt.canary || s != tt.stable {
				t.Errorf("canary %d, stable %d; want %d, %d", c, s, tt.canary, tt.stable)
			}
		})
	}
}

// Cases from Argo Rollouts' TestTrafficWeightToReplicas, plus a
// maxTrafficWeight of 1000.
func TestTrafficReplicas(t *testing.T) {
	tests := []struct{ replicas, weight, max, want int32 }{
		{10, 0, 100, 0}, {10, 20, 100, 2}, {10, 25, 100, 3}, {10, 33, 100, 4}, {10, 99, 100, 10}, {10, 100, 100, 10},
		{6, 5, 1000, 1}, {6, 500, 1000, 3}, {6, 1000, 1000, 6},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d of %d at %d", tt.weight, tt.max, tt.replicas), func(t *testing.T) {
			if got := trafficReplicas(tt.replicas, tt.weight, tt.max); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestFenceposts(t *testing.T) {
	tests := []struct {
		name                string
		surge, unavailable  *intstr.IntOrString
		replicas            int32
		wantSurge, wantUnav int32
	}{
		{"defaults are 25%", nil, nil, 10, 3, 2},
		{"percentages round surge up and unavailable down", ptr(intstr.FromString("15%")), ptr(intstr.FromString("15%")), 10, 2, 1},
		{"both zero makes one unavailable", ptr(intstr.FromString("0%")), ptr(intstr.FromString("0%")), 10, 0, 1},
		{"unavailable is capped at replicas", ptr(intstr.FromInt32(1)), ptr(intstr.FromInt32(5)), 3, 1, 3},
		{"no replicas, no unavailable", nil, nil, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, u := fenceposts(tt.surge, tt.unavailable, tt.replicas)
			if s != tt.wantSurge || u != tt.wantUnav {
				t.Errorf("surge %d, unavailable %d; want %d, %d", s, u, tt.wantSurge, tt.wantUnav)
			}
		})
	}
}
