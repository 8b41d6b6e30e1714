package kubetest_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

func labels(app string) map[string]string { return map[string]string{"app": app} }

func podTemplate(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels(app)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "app",
			Image: "registry.example/" + app + ":v1", // never pulled: kwok runs no containers
		}}},
	}
}

func TestReplicaSetPodsRunOnFakeNodeAndAreCollected(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	rs, err := cp.Client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels("web")},
			Template: podTemplate("web"),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create ReplicaSet: %v", err)
	}

	sel := metav1.ListOptions{LabelSelector: "app=web"}
	poll.Until(t, "2 pods Running and Ready on a fake node", func() error {
		pods, err := cp.Client.CoreV1().Pods(ns).List(ctx, sel)
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && podReady(&p) && slices.Contains(cp.Nodes, p.Spec.NodeName) &&
				metav1.IsControlledBy(&p, rs) {
				ready++
			}
		}
		if ready != 2 || len(pods.Items) != 2 {
			return fmt.Errorf("%d pods, %d of them Running and Ready on %v", len(pods.Items), ready, cp.Nodes)
		}
		return nil
	}, poll.Context(ctx))
	poll.Until(t, "ReplicaSet status counts 2 ready replicas", func() error {
		got, err := cp.Client.AppsV1().ReplicaSets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.ReadyReplicas != 2 {
			return fmt.Errorf("readyReplicas %d", got.Status.ReadyReplicas)
		}
		return nil
	}, poll.Context(ctx))

	// The default propagation for a ReplicaSet is background: the
	// garbage collector deletes the pods after the owner is gone.
	if err := cp.Client.AppsV1().ReplicaSets(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete ReplicaSet: %v", err)
	}
	poll.Until(t, "pods garbage-collected", func() error {
		pods, err := cp.Client.CoreV1().Pods(ns).List(ctx, sel)
		if err != nil {
			return err
		}
		if n := len(pods.Items); n != 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	}, poll.Context(ctx))
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Without metrics-server the HPA controller still holds a workload within
// minReplicas and maxReplicas.
func TestHPAEnforcesReplicaBoundsWithoutMetrics(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	_, err := cp.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels("api")},
			Template: podTemplate("api"),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Deployment: %v", err)
	}
	_, err = cp.Client.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "api"},
			MinReplicas:    ptr.To[int32](3),
			MaxReplicas:    5,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create HPA: %v", err)
	}
	scaledTo := func(want int32) func() error {
		return func() error {
			d, err := cp.Client.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if *d.Spec.Replicas != want || d.Status.AvailableReplicas != want {
				return fmt.Errorf("spec.replicas %d, available %d", *d.Spec.Replicas, d.Status.AvailableReplicas)
			}
			return nil
		}
	}
	poll.Until(t, "Deployment scaled up to minReplicas, 3 available", scaledTo(3), poll.Context(ctx))

	// Scaled by hand above maxReplicas, it is brought back down.
	scale, err := cp.Client.AppsV1().Deployments(ns).GetScale(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get scale: %v", err)
	}
	scale.Spec.Replicas = 9
	if _, err := cp.Client.AppsV1().Deployments(ns).UpdateScale(ctx, "api", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("scale to 9: %v", err)
	}
	poll.Until(t, "Deployment scaled down to maxReplicas, 5 available", scaledTo(5), poll.Context(ctx))
}

func TestRouterCRDsInstallAndServeObjects(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	for _, set := range []string{kubetest.CRDsGatewayAPI, kubetest.CRDsIstio, kubetest.CRDsSMI} {
		if err := cp.InstallCRDs(ctx, cp.CRDDir(set)); err != nil {
			t.Fatalf("install %s CRDs: %v", set, err)
		}
	}
	// Installing again is harmless: tests sharing the control plane may.
	if err := cp.InstallCRDs(ctx, cp.CRDDir(kubetest.CRDsSMI)); err != nil {
		t.Fatalf("install SMI CRDs again: %v", err)
	}

	cases := []struct {
		name      string
		gvr       schema.GroupVersionResource
		obj       string // YAML
		wantField []string
		want      string // YAML of wantField as read back; "" if as created
	}{
		{
			name: "HTTPRoute",
			gvr:  schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"},
			obj: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs:
    - {name: web-stable, port: 80, weight: 80}
    - {name: web-canary, port: 80, weight: 20}
`,
			wantField: []string{"spec", "rules"},
			// The schema's defaults are applied, as in a real cluster.
			want: `
- matches: [{path: {type: PathPrefix, value: /}}]
  backendRefs:
  - {group: "", kind: Service, name: web-stable, port: 80, weight: 80}
  - {group: "", kind: Service, name: web-canary, port: 80, weight: 20}
`,
		},
		{
			name: "VirtualService",
			gvr:  schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"},
			obj: `
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - name: primary
    route:
    - {destination: {host: web-stable}, weight: 80}
    - {destination: {host: web-canary}, weight: 20}
`,
			wantField: []string{"spec", "http"},
		},
		{
			name: "DestinationRule",
			gvr:  schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1beta1", Resource: "destinationrules"},
			obj: `
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - {name: stable, labels: {rollouts-pod-template-hash: abc}}
  - {name: canary, labels: {rollouts-pod-template-hash: def}}
`,
			wantField: []string{"spec", "subsets"},
		},
		{
			name: "TrafficSplit v1alpha1",
			gvr:  schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha1", Resource: "trafficsplits"},
			obj: `
apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: web-v1alpha1}
spec:
  service: web
  backends:
  - {service: web-stable, weight: 800m}
  - {service: web-canary, weight: 200m}
`,
			wantField: []string{"spec", "backends"},
		},
		{
			name: "TrafficSplit v1alpha3",
			gvr:  schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha3", Resource: "trafficsplits"},
			obj: `
apiVersion: split.smi-spec.io/v1alpha3
kind: TrafficSplit
metadata: {name: web-v1alpha3}
spec:
  service: web
  backends:
  - {service: web-stable, weight: 80}
  - {service: web-canary, weight: 20}
`,
			wantField: []string{"spec", "backends"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := mustUnstructured(t, tc.obj)
			want, _, _ := unstructured.NestedFieldCopy(obj.Object, tc.wantField...)
			if tc.want != "" {
				want = mustYAML(t, tc.want)
			}
			if _, err := cp.Dynamic.Resource(tc.gvr).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create: %v", err)
			}
			got, err := cp.Dynamic.Resource(tc.gvr).Namespace(ns).Get(ctx, obj.GetName(), metav1.GetOptions{})
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			gotField, _, _ := unstructured.NestedFieldCopy(got.Object, tc.wantField...)
			if !reflect.DeepEqual(jsonNormal(t, gotField), jsonNormal(t, want)) {
				t.Errorf("%v read back as %v, want %v", tc.wantField, gotField, want)
			}
		})
	}

	// The real schemas are installed, not permissive stand-ins: the API
	// server rejects what the Gateway API forbids.
	bad := mustUnstructured(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad}
spec:
  rules:
  - backendRefs: [{name: web-stable, port: 80, weight: -1}]
`)
	httproutes := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	_, err := cp.Dynamic.Resource(httproutes).Namespace(ns).Create(ctx, bad, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "weight") {
		t.Errorf("HTTPRoute with weight -1: got error %v, want a validation error about weight", err)
	}
}

func TestInstallCRDsRejectsOtherKinds(t *testing.T) {
	cp := kubetest.Shared(t)
	path := t.TempDir() + "/cm.yaml"
	writeFile(t, path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
	err := cp.InstallCRDs(t.Context(), path)
	if err == nil || !strings.Contains(err.Error(), "not an apiextensions.k8s.io/v1 CustomResourceDefinition") {
		t.Fatalf("InstallCRDs(ConfigMap) = %v, want an error naming what it accepts", err)
	}
}

func TestKubeconfigFileReachesTheAPIServer(t *testing.T) {
	cp := kubetest.Shared(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		t.Fatalf("load %s: %v", cp.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list nodes through the kubeconfig: %v", err)
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	for _, want := range cp.Nodes {
		if !slices.Contains(names, want) {
			t.Errorf("nodes %v, want %s among them", names, want)
		}
	}
}

// BenchmarkStart measures starting a whole control plane (etcd,
// kube-apiserver, controller-manager, scheduler, kwok) until a node is
// Ready, and stopping it.
//
//	go test -run '^$' -bench Start -benchtime 3x ./internal/kubetest
func BenchmarkStart(b *testing.B) {
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cp, err := kubetest.Start(ctx, kubetest.Options{})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		cp.Stop()
	}
}
