package spec

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestValidateCanary covers rules that depend on combinations of canary
// settings; testdata/ covers the rest.
func TestValidateCanary(t *testing.T) {
	const services = "canaryService: web-canary\nstableService: web-stable\n"
	tests := []struct {
		name   string
		canary string
		want   []string
	}{
		{
			name:   "setWeight is bounded by maxTrafficWeight",
			canary: services + "trafficRouting:\n  maxTrafficWeight: 1000\n  nginx: {stableIngress: web}\nsteps:\n- setWeight: 1000\n- setWeight: 1001",
			want:   []string{"spec.strategy.canary.steps[1].setWeight: Invalid value: 1001: must be between 0 and 1000"},
		},
		{
			name:   "NGINX has no header routes",
			canary: services + "trafficRouting:\n  managedRoutes: [{name: h}]\n  nginx: {stableIngress: web}\nsteps:\n- setHeaderRoute: {name: h}",
			want:   []string{`spec.strategy.canary.steps[0].setHeaderRoute: Forbidden: requires trafficRouting with a router that supports header routes: istio, alb or plugins["argoproj-labs/gatewayAPI"]`},
		},
		{
			name:   "SMI has no mirror routes",
			canary: services + "trafficRouting:\n  managedRoutes: [{name: m}]\n  smi: {}\nsteps:\n- setMirrorRoute: {name: m}",
			want:   []string{"spec.strategy.canary.steps[0].setMirrorRoute: Forbidden: requires trafficRouting.istio, the only router that supports mirror routes"},
		},
		{
			name:   "Gateway API has header routes but no mirror routes",
			canary: services + "trafficRouting:\n  managedRoutes: [{name: h}]\n  plugins:\n    argoproj-labs/gatewayAPI: {httpRoute: web}\nsteps:\n- setHeaderRoute: {name: h, match: [{headerName: x, headerValue: {prefix: a}}]}\n- setMirrorRoute: {name: h}",
			want:   []string{"spec.strategy.canary.steps[1].setMirrorRoute: Forbidden: requires trafficRouting.istio, the only router that supports mirror routes"},
		},
		{
			name:   "Istio with DestinationRule subsets needs no services",
			canary: "trafficRouting:\n  istio:\n    virtualService: {name: web}\n    destinationRule: {name: web, canarySubsetName: canary, stableSubsetName: stable}",
		},
		{
			name:   "routers that split by Service need both services",
			canary: "trafficRouting:\n  smi: {}",
			want: []string{
				"spec.strategy.canary.canaryService: Required value: required with trafficRouting",
				"spec.strategy.canary.stableService: Required value: required with trafficRouting",
			},
		},
		{
			name:   "several routers at once",
			canary: services + "trafficRouting:\n  smi: {}\n  nginx: {stableIngress: web}\n  istio: {virtualServices: [{name: a}, {name: b}]}",
		},
		{
			name:   "background analysis starts at an existing step",
			canary: "analysis:\n  templates: [{templateName: t}]\n  startingStep: 2\nsteps:\n- setWeight: 10\n- pause: {}",
			want:   []string{"spec.strategy.canary.analysis.startingStep: Invalid value: 2: must be between 0 and 1"},
		},
		{
			name:   "anti-affinity sets one rule with a weight from 1 to 100",
			canary: "antiAffinity:\n  preferredDuringSchedulingIgnoredDuringExecution: {weight: 0}\n  requiredDuringSchedulingIgnoredDuringExecution: {}",
			want: []string{
				`spec.strategy.canary.antiAffinity: Invalid value: "preferredDuringSchedulingIgnoredDuringExecution, requiredDuringSchedulingIgnoredDuringExecution": must set exactly one of preferredDuringSchedulingIgnoredDuringExecution and requiredDuringSchedulingIgnoredDuringExecution`,
				"spec.strategy.canary.antiAffinity.preferredDuringSchedulingIgnoredDuringExecution.weight: Invalid value: 0: must be between 1 and 100",
			},
		},
		{
			name:   "a malformed Gateway API configuration",
			canary: services + "trafficRouting:\n  plugins:\n    argoproj-labs/gatewayAPI: {httpRoute: 7}",
			want:   []string{`spec.strategy.canary.trafficRouting.plugins[argoproj-labs/gatewayAPI]: Invalid value: "{\"httpRoute\":7}": plugin argoproj-labs/gatewayAPI: json: cannot unmarshal number into Go struct field GatewayAPITrafficRouting.httpRoute of type string`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Decode([]byte(rolloutWith(tt.canary)))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range docs[0].Object.Validate() {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate():\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestValidateObjectBuiltInGo checks that objects built in code, without
// apiVersion and kind, validate and are named like decoded ones.
func TestValidateObjectBuiltInGo(t *testing.T) {
	weight := int32(30)
	r := &Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: RolloutSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web"}}},
			},
			Strategy: RolloutStrategy{Canary: &CanaryStrategy{Steps: []CanaryStep{{SetWeight: &weight}}}},
		},
	}
	if errs := r.Validate(); len(errs) > 0 {
		t.Errorf("Validate() = %v", errs)
	}
	if got := Describe(r); got != "Rollout default/web" {
		t.Errorf("Describe() = %q", got)
	}
	c := &ClusterAnalysisTemplate{ObjectMeta: metav1.ObjectMeta{Name: "errors", Namespace: "ignored"}}
	if got := Describe(c); got != "ClusterAnalysisTemplate errors" {
		t.Errorf("Describe() = %q", got)
	}
}
