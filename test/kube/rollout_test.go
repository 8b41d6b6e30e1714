package kube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	replicaskube "github.com/sluicehq/sluice/services/replicas/kube"
)

// resourceOf maps the kinds these tests write to their resources.
func resourceOf(t testing.TB, apiVersion, kind string) schema.GroupVersionResource {
	t.Helper()
	gv, err := schema.ParseGroupVersion(apiVersion)
	must(t, err)
	plural := map[string]string{
		"Rollout": "rollouts", "Experiment": "experiments", "Ingress": "ingresses", "VirtualService": "virtualservices",
		"DestinationRule": "destinationrules", "HTTPRoute": "httproutes", "TrafficSplit": "trafficsplits",
		"HorizontalPodAutoscaler": "horizontalpodautoscalers", "Service": "services", "Deployment": "deployments",
	}[kind]
	if plural == "" {
		t.Fatalf("no resource known for kind %s", kind)
	}
	return gv.WithResource(plural)
}

// rollout is a Rollout manifest: two replicas of image web:<version>, and
// the strategy given as YAML (indented under strategy:).
func rollout(name, version string, replicas int, strategy string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: %s
spec:
  replicas: %d
  revisionHistoryLimit: 2
  selector:
    matchLabels: {app: %s}
  template:
    metadata:
      labels: {app: %s}
    spec:
      containers:
      - name: app
        image: web:%s
        ports: [{containerPort: 8080}]
  strategy:
%s`, name, replicas, name, name, version, strategy)
}

// canarySteps is the canary strategy the router tests share: 30%, a pause
// until promoted, then done; the old revision goes 2s after promotion.
func canarySteps(trafficRouting string) string {
	return `    canary:
      stableService: web-stable
      canaryService: web-canary
      scaleDownDelaySeconds: 2
      abortScaleDownDelaySeconds: 2
      steps:
      - setWeight: 30
      - pause: {}
      trafficRouting:
` + trafficRouting
}

// routerCase is one router: the objects it needs, the trafficRouting
// block, and how to read the canary weight back from what it wrote.
type routerCase struct {
	name    string
	objects []string
	routing string
	weight  func(t testing.TB, s *stack) (int64, error)
}

func routerCases() []routerCase {
	return []routerCase{
		{
			name: "nginx",
			objects: []string{`apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: nginx
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web-stable, port: {number: 80}}}}`},
			routing: "        nginx: {stableIngress: web}\n",
			weight: func(t testing.TB, s *stack) (int64, error) {
				ing, err := s.get(t, "networking.k8s.io/v1", "Ingress", "web-web-canary")
				if err != nil {
					return 0, err
				}
				backend, _, _ := unstructured.NestedString(ing.Object, "spec", "rules")
				_ = backend
				return strconv.ParseInt(ing.GetAnnotations()["nginx.ingress.kubernetes.io/canary-weight"], 10, 64)
			},
		},
		{
			name: "alb",
			objects: []string{`apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: alb
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web-stable, port: {name: use-annotation}}}}`},
			routing: "        alb: {ingress: web, servicePort: 80}\n",
			weight: func(t testing.TB, s *stack) (int64, error) {
				ing, err := s.get(t, "networking.k8s.io/v1", "Ingress", "web")
				if err != nil {
					return 0, err
				}
				var action struct {
					ForwardConfig struct {
						TargetGroups []struct {
							ServiceName string
							Weight      *int64
						}
					}
				}
				if err := json.Unmarshal([]byte(ing.GetAnnotations()["alb.ingress.kubernetes.io/actions.web-stable"]), &action); err != nil {
					return 0, fmt.Errorf("action annotation: %w", err)
				}
				return backendWeight(action.ForwardConfig.TargetGroups, func(g struct {
					ServiceName string
					Weight      *int64
				}) (string, *int64) {
					return g.ServiceName, g.Weight
				})
			},
		},
		{
			name: "istio",
			objects: []string{`apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com]
  http:
  - name: primary
    route:
    - {destination: {host: web-stable}, weight: 100}
    - {destination: {host: web-canary}, weight: 0}`},
			routing: "        istio: {virtualService: {name: web, routes: [primary]}}\n",
			weight: func(t testing.TB, s *stack) (int64, error) {
				vs, err := s.get(t, "networking.istio.io/v1alpha3", "VirtualService", "web")
				if err != nil {
					return 0, err
				}
				http, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
				if len(http) == 0 {
					return 0, fmt.Errorf("no http routes")
				}
				routes, _, _ := unstructured.NestedSlice(http[0].(map[string]any), "route")
				return destinationWeight(routes, "destination", "host")
			},
		},
		{
			name:    "smi",
			routing: "        smi: {rootService: web}\n",
			objects: []string{`apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]`},
			weight: func(t testing.TB, s *stack) (int64, error) {
				ts, err := s.get(t, "split.smi-spec.io/v1alpha3", "TrafficSplit", "web")
				if err != nil {
					return 0, err
				}
				backends, _, _ := unstructured.NestedSlice(ts.Object, "spec", "backends")
				return destinationWeight(backends, "service")
			},
		},
		{
			name: "gatewayapi",
			objects: []string{`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs:
    - {name: web-stable, port: 80, weight: 100}
    - {name: web-canary, port: 80, weight: 0}`},
			routing: "        plugins:\n          argoproj-labs/gatewayAPI: {httpRoute: web}\n",
			weight: func(t testing.TB, s *stack) (int64, error) {
				hr, err := s.get(t, "gateway.networking.k8s.io/v1", "HTTPRoute", "web")
				if err != nil {
					return 0, err
				}
				rules, _, _ := unstructured.NestedSlice(hr.Object, "spec", "rules")
				if len(rules) == 0 {
					return 0, fmt.Errorf("no rules")
				}
				refs, _, _ := unstructured.NestedSlice(rules[0].(map[string]any), "backendRefs")
				return destinationWeight(refs, "name")
			},
		},
	}
}

// destinationWeight finds the entry of list whose name (at path) is
// web-canary and returns its weight (0 when unset).
func destinationWeight(list []any, path ...string) (int64, error) {
	for _, e := range list {
		m := e.(map[string]any)
		if name, _, _ := unstructured.NestedString(m, path...); strings.HasPrefix(name, "web-canary") {
			w, _, _ := unstructured.NestedInt64(m, "weight")
			return w, nil
		}
	}
	return 0, fmt.Errorf("no web-canary entry in %v", list)
}

func backendWeight[T any](list []T, get func(T) (string, *int64)) (int64, error) {
	for _, e := range list {
		if name, w := get(e); name == "web-canary" {
			if w == nil {
				return 0, nil
			}
			return *w, nil
		}
	}
	return 0, fmt.Errorf("no web-canary target group")
}

// waitWeight waits until the router's objects send want percent to the
// canary.
func waitWeight(t testing.TB, s *stack, rc routerCase, want int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s canary weight %d", rc.name, want), func() error {
		w, err := rc.weight(t, s)
		if err != nil {
			return err
		}
		if w != want {
			return fmt.Errorf("canary weight %d", w)
		}
		return nil
	})
}

// TestCanaryThroughEachRouter rolls a new revision out through each router
// from the first step to completion: the weight the router's objects carry
// follows the steps, the Services follow the revisions, and the old
// revision's pods go after the scale-down delay.
func TestCanaryThroughEachRouter(t *testing.T) {
	for _, rc := range routerCases() {
		t.Run(rc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t)
			s.service(t, "web-stable", "web")
			s.service(t, "web-canary", "web")
			for _, o := range rc.objects {
				s.apply(t, o)
			}
			s.apply(t, rollout("web", "v1", 2, canarySteps(rc.routing)))
			st := s.waitPhase(t, "web", "Healthy", -1)
			v1 := st["currentPodHash"].(string)
			s.waitPods(t, v1, 2)
			if got := s.selectorHash(t, "web-stable"); got != v1 {
				t.Errorf("web-stable selects %q, want v1 %q", got, v1)
			}

			s.setImage(t, "web", "web:v2")
			st = s.waitPhase(t, "web", "Paused", 1)
			v2 := st["currentPodHash"].(string)
			waitWeight(t, s, rc, 30)
			s.waitPods(t, v2, 1)
			if got := s.selectorHash(t, "web-canary"); got != v2 {
				t.Errorf("web-canary selects %q, want v2 %q", got, v2)
			}
			if got := s.selectorHash(t, "web-stable"); got != v1 {
				t.Errorf("web-stable selects %q during the canary, want v1 %q", got, v1)
			}

			s.command(t, "web", events.TypeRolloutPromote, events.PromoteData{})
			st = s.waitPhase(t, "web", "Healthy", 2)
			if st["stableRS"] != v2 {
				t.Errorf("stableRS %v after promotion, want %s", st["stableRS"], v2)
			}
			waitWeight(t, s, rc, 0)
			if got := s.selectorHash(t, "web-stable"); got != v2 {
				t.Errorf("web-stable selects %q after promotion, want v2 %q", got, v2)
			}
			s.waitPods(t, v2, 2)
			s.waitPods(t, v1, 0)
		})
	}
}

// TestAbort aborts a canary at 30%: the router goes back to 0, the
// Services stay on the stable revision, and the canary's pods go after
// abortScaleDownDelaySeconds.
func TestAbort(t *testing.T) {
	t.Parallel()
	rc := routerCases()[2] // istio
	s := start(t)
	s.service(t, "web-stable", "web")
	s.service(t, "web-canary", "web")
	s.apply(t, rc.objects[0])
	s.apply(t, rollout("web", "v1", 2, canarySteps(rc.routing)))
	v1 := s.waitPhase(t, "web", "Healthy", -1)["currentPodHash"].(string)
	s.setImage(t, "web", "web:v2")
	v2 := s.waitPhase(t, "web", "Paused", 1)["currentPodHash"].(string)
	waitWeight(t, s, rc, 30)
	s.waitPods(t, v2, 1)

	s.command(t, "web", events.TypeRolloutAbort, nil)
	eventually(t, "Rollout aborted", func() error {
		if st := s.rolloutStatus(t, "web"); st["abort"] != true || st["phase"] != "Degraded" {
			return fmt.Errorf("status abort %v phase %v", st["abort"], st["phase"])
		}
		return nil
	})
	waitWeight(t, s, rc, 0)
	if got := s.selectorHash(t, "web-stable"); got != v1 {
		t.Errorf("web-stable selects %q after the abort, want v1 %q", got, v1)
	}
	s.waitPods(t, v2, 0)
	s.waitPods(t, v1, 2)
}

// TestBlueGreenSwitchAndRollback switches the active Service to a new
// revision on promotion, then rolls back by reverting the Rollout's spec.
func TestBlueGreenSwitchAndRollback(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.service(t, "web", "web")
	s.service(t, "web-preview", "web")
	strategy := `    blueGreen:
      activeService: web
      previewService: web-preview
      autoPromotionEnabled: false
      scaleDownDelaySeconds: 30
`
	s.apply(t, rollout("web", "v1", 2, strategy))
	v1 := s.waitPhase(t, "web", "Healthy", -1)["currentPodHash"].(string)
	if got := s.selectorHash(t, "web"); got != v1 {
		t.Fatalf("active Service selects %q, want v1 %q", got, v1)
	}

	s.setImage(t, "web", "web:v2")
	v2 := s.waitPhase(t, "web", "Paused", -1)["currentPodHash"].(string)
	s.waitPods(t, v2, 2)
	eventually(t, "preview on v2, active still on v1", func() error {
		if a, p := s.selectorHash(t, "web"), s.selectorHash(t, "web-preview"); a != v1 || p != v2 {
			return fmt.Errorf("active %s preview %s", a, p)
		}
		return nil
	})

	s.command(t, "web", events.TypeRolloutPromote, events.PromoteData{})
	s.waitPhase(t, "web", "Healthy", -1)
	if got := s.selectorHash(t, "web"); got != v2 {
		t.Fatalf("active Service selects %q after the switch, want v2 %q", got, v2)
	}

	// Rollback: the spec goes back to v1, whose pod hash is the same.
	s.setImage(t, "web", "web:v1")
	back := s.waitPhase(t, "web", "Paused", -1)["currentPodHash"].(string)
	if back != v1 {
		t.Fatalf("rolled-back revision has hash %s, want v1's %s", back, v1)
	}
	s.command(t, "web", events.TypeRolloutPromote, events.PromoteData{})
	s.waitPhase(t, "web", "Healthy", -1)
	if got := s.selectorHash(t, "web"); got != v1 {
		t.Errorf("active Service selects %q after the rollback, want v1 %q", got, v1)
	}
	s.waitPods(t, v1, 2)
}

// TestEphemeralMetadataOnLivePods checks canaryMetadata and stableMetadata
// on running pods, and that a promoted revision's pods change role without
// being replaced; and antiAffinity on the canary's pod template, which the
// scheduler accepts (kwok's single node still runs the pods: preferred). The canary has no trafficRouting: the split is the
// replica ratio.
func TestEphemeralMetadataOnLivePods(t *testing.T) {
	t.Parallel()
	s := start(t)
	strategy := `    canary:
      antiAffinity:
        preferredDuringSchedulingIgnoredDuringExecution: {weight: 50}
      canaryMetadata:
        labels: {role: canary}
      stableMetadata:
        labels: {role: stable}
      steps:
      - setWeight: 50
      - pause: {}
`
	s.apply(t, rollout("web", "v1", 2, strategy))
	v1 := s.waitPhase(t, "web", "Healthy", -1)["currentPodHash"].(string)
	s.setImage(t, "web", "web:v2")
	v2 := s.waitPhase(t, "web", "Paused", 1)["currentPodHash"].(string)

	roles := func(hash string) map[string]int {
		out := map[string]int{}
		for _, p := range s.readyPods(t, hash) {
			out[p.Labels["role"]]++
		}
		return out
	}
	eventually(t, "canary pods labelled canary, stable pods stable", func() error {
		if c, st := roles(v2), roles(v1); c["canary"] != 1 || len(c) != 1 || st["stable"] != 1 || len(st) != 1 {
			all, _ := s.cp.Client.CoreV1().Pods(s.ns).List(context.Background(), metav1.ListOptions{})
			var desc []string
			for _, p := range all.Items {
				desc = append(desc, fmt.Sprintf("%s %v %s %v", p.Name, p.Labels, p.Status.Phase, p.Status.Conditions))
			}
			return fmt.Errorf("v1 %s v2 %s canary pods %v, stable pods %v; pods: %v", v1, v2, c, st, desc)
		}
		return nil
	})
	canaryPod := s.readyPods(t, v2)[0].Name
	rs, err := s.cp.Client.AppsV1().ReplicaSets(s.ns).Get(context.Background(), "web-"+v2, metav1.GetOptions{})
	must(t, err)
	if aff := rs.Spec.Template.Spec.Affinity; aff == nil || aff.PodAntiAffinity == nil ||
		len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector.MatchLabels[spec.LabelPodTemplateHash] != v1 {
		t.Errorf("canary ReplicaSet affinity %+v, want a preferred anti-affinity to the stable pods (%s)", aff, v1)
	}

	s.command(t, "web", events.TypeRolloutPromote, events.PromoteData{})
	s.waitPhase(t, "web", "Healthy", 2)
	eventually(t, "promoted pods labelled stable", func() error {
		if c := roles(v2); c["stable"] != 2 || len(c) != 1 {
			return fmt.Errorf("v2 pods %v", c)
		}
		return nil
	})
	if _, err := s.cp.Client.CoreV1().Pods(s.ns).Get(context.Background(), canaryPod, metav1.GetOptions{}); err != nil {
		t.Errorf("the canary pod %s was replaced instead of relabelled: %v", canaryPod, err)
	}
}

// TestHPAScalesARollout points a HorizontalPodAutoscaler at a Rollout
// through its /scale subresource: the HPA raises spec.replicas to its
// minimum, and the new count reaches the ReplicaSet.
func TestHPAScalesARollout(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.apply(t, rollout("web", "v1", 1, "    canary:\n      steps: [{setWeight: 50}, {pause: {}}]\n"))
	v1 := s.waitPhase(t, "web", "Healthy", -1)["currentPodHash"].(string)
	s.waitPods(t, v1, 1)
	st := s.rolloutStatus(t, "web")
	if st["selector"] != "app=web" {
		t.Errorf("status.selector %v, want app=web for the scale subresource", st["selector"])
	}
	s.apply(t, `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: web}
  minReplicas: 3
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}`)
	eventually(t, "HPA scaled the Rollout to 3", func() error {
		ro, err := s.get(t, "argoproj.io/v1alpha1", "Rollout", "web")
		if err != nil {
			return err
		}
		if n, _, _ := unstructured.NestedInt64(ro.Object, "spec", "replicas"); n != 3 {
			return fmt.Errorf("spec.replicas %d", n)
		}
		return nil
	})
	s.waitPods(t, v1, 3)
	rs, err := s.cp.Client.AppsV1().ReplicaSets(s.ns).Get(context.Background(), "web-"+v1, metav1.GetOptions{})
	must(t, err)
	if *rs.Spec.Replicas != 3 || rs.Labels[replicaskube.RolloutLabel] != "web" {
		t.Errorf("ReplicaSet replicas %d labels %v", *rs.Spec.Replicas, rs.Labels)
	}
	if owner := metav1.GetControllerOf(rs); owner == nil || owner.Kind != "Rollout" {
		t.Errorf("ReplicaSet owner %v, want the Rollout", owner)
	}
	eventually(t, "status.replicas 3", func() error {
		if st := s.rolloutStatus(t, "web"); st["availableReplicas"] != int64(3) {
			return fmt.Errorf("availableReplicas %v", st["availableReplicas"])
		}
		return nil
	})
}

// TestWorkloadRef migrates a Deployment to a Rollout that references it:
// the Rollout runs the Deployment's template, a change of the Deployment's
// template is a new revision, and scaleDown decides what happens to the
// Deployment's own pods.
func TestWorkloadRef(t *testing.T) {
	for _, mode := range []string{"never", "onsuccess", "progressively"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s := start(t)
			s.apply(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers: [{name: app, image: "web:v1"}]`)
			s.apply(t, fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web, scaleDown: %s}
  strategy:
    canary:
      steps: [{setWeight: 50}, {pause: {}}]`, mode))
			st := s.waitPhase(t, "web", "Healthy", -1)
			v1 := st["currentPodHash"].(string)
			pods := s.waitPods(t, v1, 2)
			if img := pods[0].Spec.Containers[0].Image; img != "web:v1" {
				t.Errorf("Rollout pod image %s, want the Deployment's web:v1", img)
			}
			wantDeployment := int32(0)
			if mode == "never" {
				wantDeployment = 2
			}
			eventually(t, fmt.Sprintf("Deployment at %d replicas", wantDeployment), func() error {
				dep, err := s.cp.Client.AppsV1().Deployments(s.ns).Get(context.Background(), "web", metav1.GetOptions{})
				if err != nil {
					return err
				}
				if *dep.Spec.Replicas != wantDeployment {
					return fmt.Errorf("Deployment replicas %d", *dep.Spec.Replicas)
				}
				return nil
			})

			// A new template in the Deployment is a new revision of the Rollout.
			patch := `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"web:v2"}]`
			_, err := s.cp.Client.AppsV1().Deployments(s.ns).Patch(context.Background(), "web", types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
			must(t, err)
			v2 := s.waitPhase(t, "web", "Paused", 1)["currentPodHash"].(string)
			if v2 == v1 {
				t.Fatalf("the Deployment's new template did not make a new revision (hash %s)", v2)
			}
			if img := s.waitPods(t, v2, 1)[0].Spec.Containers[0].Image; img != "web:v2" {
				t.Errorf("canary image %s, want web:v2", img)
			}
		})
	}
}
