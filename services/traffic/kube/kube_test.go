package kube_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

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

// Start lists Ingresses for the informer the NGINX router reads the
// stable Ingresses from; a role without list is said at once, naming the
// permission and the namespace, instead of a service that never becomes
// ready.
func TestStartNeedsToListIngresses(t *testing.T) {
	for _, tc := range []struct {
		namespace string
		says      string
	}{
		{"", "in every namespace (or set --namespace"},
		{"shop", "in namespace shop"},
	} {
		client := kubefake.NewClientset()
		client.PrependReactor("list", "ingresses", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "networking.k8s.io", Resource: "ingresses"}, "", errors.New("RBAC: no list"))
		})
		r, err := kube.New(kube.Config{Client: client, Dynamic: kubefake.NewDynamicClient(t, map[schema.GroupVersionResource]string{}, nil), Namespace: tc.namespace})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Start(t.Context())
		if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "list and watch on ingresses.networking.k8s.io") {
			t.Errorf("namespace %q: Start: %v, want the missing permission named %q", tc.namespace, err, tc.says)
		}
		if r.Ready() {
			t.Errorf("namespace %q: ready after a failed start", tc.namespace)
		}
		if err := r.Close(t.Context()); err != nil {
			t.Error(err)
		}
	}

	r, err := kube.New(kube.Config{Client: kubefake.NewClientset(), Dynamic: kubefake.NewDynamicClient(t, map[schema.GroupVersionResource]string{}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(t.Context()); err != nil {
		t.Fatalf("Start with list allowed: %v", err)
	}
	if !r.Ready() {
		t.Error("not ready after Start")
	}
	if err := r.Close(t.Context()); err != nil || r.Ready() {
		t.Errorf("Close: %v, ready %v; want closed", err, r.Ready())
	}
}
