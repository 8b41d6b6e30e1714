// Package deploy checks the Kubernetes manifests under deploy/: every
// overlay renders with kustomize, every object decodes into its real Go
// type, and the invariants an operator relies on hold (probes, resources,
// hardened pods, least-privilege RBAC, R3 in production, commands that
// name real binaries and flags).
//
// apiserver_test.go then takes the rendered overlays to a real
// kube-apiserver (internal/kubetest): every object is created with a
// server-side dry run (admission, schema and strict field validation, Pod
// Security), the RBAC objects are created for real and every service
// account's rights are checked with SubjectAccessReviews and real tokens,
// and the Rollout CRD's /scale subresource answers as an HPA needs.
package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/sluicehq/sluice/internal/testbin"
)

// overlays are the directories under deploy/overlays a user applies.
var overlays = []string{"dev", "production"}

// services are the service binaries; each has a Deployment named after it.
var services = []string{"sluice-orchestrator", "sluice-analyzer", "sluice-replicas", "sluice-traffic", "sluice-gateway", "sluice-notifier"}

// kubeArgs are the arguments that put each Kubernetes-facing service on
// the kube platform.
var kubeArgs = map[string]string{
	"sluice-replicas": "--platform=kube",
	"sluice-traffic":  "--router=kube",
}

// manifests is one rendered overlay, by kind, decoded into Go types.
type manifests struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	accounts     map[string]*corev1.ServiceAccount
	roles        map[string][]rbacv1.PolicyRule // "Role/ns/name" or "ClusterRole/name"
	bindings     []binding
	crds         map[string]*apiextensionsv1.CustomResourceDefinition
	configMaps   map[string]*corev1.ConfigMap
	services     map[string]*corev1.Service
	// secrets are the generated Secrets, by name (with kustomize's hash
	// suffix, as the references to them).
	secrets map[string]*corev1.Secret
}

type binding struct {
	roleRef  string // as in manifests.roles
	subjects []rbacv1.Subject
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func render(t *testing.T, overlay string) *manifests {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "overlays", overlay)
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}

	sch := k8sruntime.NewScheme()
	if err := scheme.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(sch, serializer.EnableStrict).UniversalDeserializer()

	m := &manifests{
		deployments:  map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{},
		pdbs:         map[string]*policyv1.PodDisruptionBudget{},
		hpas:         map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		accounts:     map[string]*corev1.ServiceAccount{},
		roles:        map[string][]rbacv1.PolicyRule{},
		crds:         map[string]*apiextensionsv1.CustomResourceDefinition{},
		configMaps:   map[string]*corev1.ConfigMap{},
		services:     map[string]*corev1.Service{},
		secrets:      map[string]*corev1.Secret{},
	}
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		// Strict decoding: a misspelt or misplaced field is an error, as
		// kubectl apply --validate=strict would report it.
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Errorf("%s: decode: %v\n%s", overlay, err, firstLines(doc, 6))
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments[o.Name] = o
		case *appsv1.StatefulSet:
			m.statefulSets[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			m.pdbs[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpas[o.Name] = o
		case *corev1.ServiceAccount:
			m.accounts[o.Namespace+"/"+o.Name] = o
		case *rbacv1.Role:
			m.roles["Role/"+o.Namespace+"/"+o.Name] = o.Rules
		case *rbacv1.ClusterRole:
			m.roles["ClusterRole/"+o.Name] = o.Rules
		case *rbacv1.RoleBinding:
			m.bindings = append(m.bindings, binding{"Role/" + o.Namespace + "/" + o.RoleRef.Name, o.Subjects})
			if o.RoleRef.Kind == "ClusterRole" {
				m.bindings[len(m.bindings)-1].roleRef = "ClusterRole/" + o.RoleRef.Name
			}
		case *rbacv1.ClusterRoleBinding:
			m.bindings = append(m.bindings, binding{"ClusterRole/" + o.RoleRef.Name, o.Subjects})
		case *apiextensionsv1.CustomResourceDefinition:
			m.crds[o.Name] = o
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		case *corev1.Service:
			m.services[o.Name] = o
		case *corev1.Secret:
			m.secrets[o.Name] = o
		case *corev1.Namespace:
		default:
			t.Errorf("%s: unexpected %s in the rendered overlay", overlay, gvk)
		}
	}
	return m
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

func TestEveryServiceIsDeployedHardened(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			m := render(t, overlay)
			for _, name := range services {
				d, ok := m.deployments[name]
				if !ok {
					t.Errorf("no Deployment %s", name)
					continue
				}
				checkPod(t, name, d.Namespace, d.Spec.Template.Spec, m)
				if _, ok := m.pdbs[name]; !ok {
					t.Errorf("%s: no PodDisruptionBudget", name)
				}
			}
			for _, name := range []string{"sluice-analyzer", "sluice-replicas", "sluice-traffic"} {
				h, ok := m.hpas[name]
				if !ok {
					t.Errorf("%s: no HorizontalPodAutoscaler", name)
					continue
				}
				if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != name {
					t.Errorf("%s: HPA targets %s/%s", name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
				}
				if len(h.Spec.Metrics) == 0 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
					t.Errorf("%s: HPA is not CPU based", name)
				}
			}
		})
	}
}

func checkPod(t *testing.T, name, namespace string, pod corev1.PodSpec, m *manifests) {
	t.Helper()
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod does not set runAsNonRoot", name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", name, len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.String() != "http" {
		t.Errorf("%s: readiness probe is not GET /readyz on the http port", name)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe.HTTPGet.Port.String() != "http" {
		t.Errorf("%s: liveness probe is not GET /healthz on the http port", name)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "http" && p.ContainerPort == 8080 }) ||
		envValue(c, "HTTP_LISTEN") != ":8080" {
		t.Errorf("%s: the http port is not 8080 with HTTP_LISTEN=:8080", name)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources lack a cpu or memory request or a memory limit", name)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: container has no securityContext", name)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: allowPrivilegeEscalation is not false", name)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: root filesystem is not read-only", name)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
		t.Errorf("%s: capabilities do not drop ALL", name)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NATS_URL" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
	}) {
		t.Errorf("%s: NATS_URL does not come from a Secret", name)
	}

	sa := pod.ServiceAccountName
	if sa == "" || m.accounts[namespace+"/"+sa] == nil {
		t.Errorf("%s: ServiceAccount %q is not in the overlay", name, sa)
		return
	}
	// What the account may do: TestRBACGrantsExactlyWhatEachServiceCalls.
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// rulesOf is every rule bound to the service account.
func rulesOf(m *manifests, namespace, sa string) []rbacv1.PolicyRule {
	var rules []rbacv1.PolicyRule
	for _, b := range m.bindings {
		for _, s := range b.subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == namespace {
				rules = append(rules, m.roles[b.roleRef]...)
			}
		}
	}
	return rules
}

// TestBusReplication: production runs a three-node JetStream cluster and
// every service provisions R3; dev runs one server and R1.
func TestBusReplication(t *testing.T) {
	for overlay, want := range map[string]int{"dev": 1, "production": 3} {
		t.Run(overlay, func(t *testing.T) {
			m := render(t, overlay)
			for _, name := range services {
				got := 1 // the binaries' default
				for _, a := range m.deployments[name].Spec.Template.Spec.Containers[0].Args {
					if v, ok := strings.CutPrefix(a, "--bus-replicas="); ok {
						got = atoi(t, v)
					}
				}
				if got != want {
					t.Errorf("%s: --bus-replicas %d, want %d", name, got, want)
				}
			}
			if overlay != "production" {
				return
			}
			ss := m.statefulSets["nats"]
			if ss == nil {
				t.Fatal("no NATS StatefulSet")
			}
			if ss.Spec.Replicas == nil || *ss.Spec.Replicas != 3 {
				t.Errorf("NATS StatefulSet replicas %v, want 3", ss.Spec.Replicas)
			}
			if len(ss.Spec.VolumeClaimTemplates) == 0 {
				t.Error("NATS StatefulSet has no volume claim for JetStream")
			}
			if _, ok := m.pdbs["nats"]; !ok {
				t.Error("no PodDisruptionBudget for NATS")
			}
			for _, name := range services {
				if r := m.deployments[name].Spec.Replicas; r == nil || *r < 3 {
					t.Errorf("%s: %v replicas in production, want at least 3", name, r)
				}
			}
		})
	}
}

func atoi(t *testing.T, s string) int {
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(r-'0')
	}
	return n
}

// TestCRDs: Argo's group and kinds, so Argo manifests apply unchanged, and
// the Rollout's /scale subresource an HPA needs (Argo's: replicas from
// status.HPAReplicas, which the status writer fills). TestCRDsAreArgosVerbatim
// checks the files are Argo's own.
func TestCRDs(t *testing.T) {
	m := render(t, "production")
	for name, kind := range map[string]string{
		"rollouts.argoproj.io":                 "Rollout",
		"analysistemplates.argoproj.io":        "AnalysisTemplate",
		"clusteranalysistemplates.argoproj.io": "ClusterAnalysisTemplate",
		"analysisruns.argoproj.io":             "AnalysisRun",
		"experiments.argoproj.io":              "Experiment",
	} {
		crd := m.crds[name]
		if crd == nil {
			t.Errorf("no CRD %s", name)
			continue
		}
		if crd.Spec.Group != "argoproj.io" || crd.Spec.Names.Kind != kind {
			t.Errorf("%s: group %s kind %s", name, crd.Spec.Group, crd.Spec.Names.Kind)
		}
		if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != "v1alpha1" || !crd.Spec.Versions[0].Served || !crd.Spec.Versions[0].Storage {
			t.Errorf("%s: want one served and stored version v1alpha1", name)
			continue
		}
		s := crd.Spec.Versions[0].Schema
		if s == nil || s.OpenAPIV3Schema == nil || s.OpenAPIV3Schema.Type != "object" {
			t.Errorf("%s: no structural schema", name)
			continue
		}
		if spec, ok := s.OpenAPIV3Schema.Properties["spec"]; !ok || spec.Type != "object" {
			t.Errorf("%s: spec is not an object in the schema", name)
		}
	}
	ro := m.crds["rollouts.argoproj.io"]
	if ro == nil {
		return
	}
	sub := ro.Spec.Versions[0].Subresources
	if sub == nil || sub.Status == nil || sub.Scale == nil {
		t.Fatal("Rollout CRD lacks the status or scale subresource")
	}
	if sub.Scale.SpecReplicasPath != ".spec.replicas" || sub.Scale.StatusReplicasPath != ".status.HPAReplicas" ||
		sub.Scale.LabelSelectorPath == nil || *sub.Scale.LabelSelectorPath != ".status.selector" {
		t.Errorf("Rollout /scale paths: %+v", sub.Scale)
	}
	props := ro.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties
	if props["spec"].Properties["replicas"].Type != "integer" || props["status"].Properties["HPAReplicas"].Type != "integer" ||
		props["status"].Properties["selector"].Type != "string" {
		t.Error("Rollout schema does not type the fields /scale reads")
	}
}

// TestCommandsNameRealBinariesAndFlags: one image, each Deployment's
// command a binary under cmd/, and every flag in its args one that binary
// accepts with the value given (checked against its --help), and
// sluice-replicas and sluice-traffic on the kube platform and router.
func TestCommandsNameRealBinariesAndFlags(t *testing.T) {
	root := repoRoot(t)
	for _, overlay := range overlays {
		m := render(t, overlay)
		for _, name := range services {
			c := m.deployments[name].Spec.Template.Spec.Containers[0]
			if image, _, _ := strings.Cut(c.Image, ":"); image != "ghcr.io/sluicehq/sluice" {
				t.Errorf("%s/%s: image %s, want ghcr.io/sluicehq/sluice", overlay, name, c.Image)
			}
			if !slices.Equal(c.Command, []string{name}) {
				t.Errorf("%s/%s: command %q, want [%s]", overlay, name, c.Command, name)
			}
			if _, err := os.Stat(filepath.Join(root, "cmd", name, "main.go")); err != nil {
				t.Errorf("%s/%s: no binary cmd/%s", overlay, name, name)
			}
			if p, ok := kubeArgs[name]; ok && !slices.Contains(c.Args, p) {
				t.Errorf("%s/%s: args %q lack %s", overlay, name, c.Args, p)
			}
		}
	}
	for _, name := range services {
		exe := testbin.Path(t, name)
		help, _ := exec.Command(exe, "--help").CombinedOutput()
		for _, overlay := range overlays {
			args := render(t, overlay).deployments[name].Spec.Template.Spec.Containers[0].Args
			for _, a := range args {
				flag, _, _ := strings.Cut(a, "=")
				if !strings.HasPrefix(flag, "--") {
					t.Errorf("%s/%s: argument %q is not a --flag=value", overlay, name, a)
					continue
				}
				if !bytes.Contains(help, []byte(flag+" ")) {
					t.Errorf("%s/%s: %s does not accept %s", overlay, name, name, flag)
				}
			}
			// The flags are parsed, and their values checked, before --help
			// is acted on: an unknown value (--platform=kubernetes) fails.
			cmd := exec.Command(exe, append(slices.Clone(args), "--help")...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s/%s: %s %s refuses its arguments: %v\n%s", overlay, name, name, strings.Join(args, " "), err, firstLines(out, 3))
			}
		}
	}
}
