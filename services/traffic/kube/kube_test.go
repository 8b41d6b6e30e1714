package kube_test

import (
	"context"
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic/kube"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

// A route with experiment weights is refused, before anything is written,
// unless every router its trafficRouting names gives them their weight:
// NGINX and the Gateway API plugin cannot, and neither can a canary
// without trafficRouting.
func TestExperimentWeightsOnlyWhereSupported(t *testing.T) {
	weighted := []tasks.ExperimentRoute{{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "baseline", Service: "web-baseline"}, PodHash: "s1", Weight: 10}}
	cases := []struct {
		name string
		tr   *spec.TrafficRouting
		says []string
	}{
		{name: "nginx", tr: &spec.TrafficRouting{Nginx: &spec.NginxTrafficRouting{StableIngress: "web"}},
			says: []string{"cannot be routed by nginx", "(alb, istio, smi)"}},
		{name: "istio with nginx", tr: &spec.TrafficRouting{Nginx: &spec.NginxTrafficRouting{StableIngress: "web"}, Istio: &spec.IstioTrafficRouting{}},
			says: []string{"cannot be routed by nginx:"}},
		{name: "gateway api", tr: &spec.TrafficRouting{Plugins: spec.RouterPlugins{spec.GatewayAPIPlugin: json.RawMessage(`{"httpRoute":"web"}`)}},
			says: []string{"cannot be routed by gatewayapi", "(alb, istio, smi)"}},
		{name: "no trafficRouting", says: []string{"need a canary with trafficRouting naming a router that supports them (alb, istio, smi)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := kubefake.NewClientset()
			dyn := kubefake.NewDynamicClient(t, map[schema.GroupVersionResource]string{}, nil)
			r, err := kube.New(kube.Config{Client: client, Dynamic: dyn})
			if err != nil {
				t.Fatal(err)
			}
			route := traffictest.Canary(20)
			route.TrafficRouting, route.Experiments = tc.tr, weighted
			_, err = r.Apply(context.Background(), events.Ref{Namespace: "default", Name: "web"}, 1, route)
			kubefake.Rejected(t, client, err, tc.says...)
			kubefake.Rejected(t, dyn, err)
		})
	}
}
