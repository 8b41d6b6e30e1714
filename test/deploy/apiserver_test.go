package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// fieldManager is the field manager of everything these tests write.
const fieldManager = "sluice-deploy-test"

// renderObjects is one overlay as kustomize renders it, in kustomize's
// order (namespaces and CRDs first), one unstructured object each.
func renderObjects(t *testing.T, overlay string) []*unstructured.Unstructured {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "overlays", overlay)
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		// Through JSON, so numbers are int64 as client-go expects.
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s %s: %v", overlay, r.GetKind(), r.GetName(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			t.Fatalf("%s: %s %s: %v", overlay, r.GetKind(), r.GetName(), err)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		t.Fatalf("kustomize build %s: no objects", overlay)
	}
	return out
}

// describe names an object in failure messages.
func describe(o *unstructured.Unstructured) string {
	name := o.GetName()
	if ns := o.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return fmt.Sprintf("%s %s (%s)", o.GetKind(), name, o.GetAPIVersion())
}

// warnings collects the API server's warnings (deprecated APIs, Pod
// Security violations of a workload's pod template, ...), which client-go
// would otherwise only log.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// take returns the warnings since the last call.
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// cluster is what the tests need from the control plane: a dynamic client
// that records warnings, and a RESTMapper from discovery that knows
// deploy/crds.
type cluster struct {
	cp       *kubetest.ControlPlane
	dyn      dynamic.Interface
	mapper   meta.RESTMapper
	warnings *warnings
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	cp := kubetest.Shared(t)
	if err := cp.InstallCRDs(t.Context(), crdFiles(t)...); err != nil {
		t.Fatal(err)
	}
	w := &warnings{}
	cfg := rest.CopyConfig(cp.Config)
	cfg.WarningHandler = w
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Discovery after the CRDs are in: the mapper then knows Rollouts.
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cp.Client.Discovery()))
	return &cluster{cp: cp, dyn: dyn, mapper: mapper, warnings: w}
}

// crdFiles are the files deploy/crds/kustomization.yaml lists, as
// kubectl apply --server-side -k deploy/crds installs them (InstallCRDs takes CRD files,
// not a kustomization).
func crdFiles(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "crds")
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatalf("deploy/crds/kustomization.yaml: %v", err)
	}
	if len(k.Resources) == 0 {
		t.Fatal("deploy/crds/kustomization.yaml lists no resources")
	}
	var files []string
	for _, r := range k.Resources {
		files = append(files, filepath.Join(dir, r))
	}
	return files
}

// resource is the client of o's resource, namespaced as o is.
func (c *cluster) resource(o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("the API server does not serve %s: %w", gvk, err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		if o.GetNamespace() != "" {
			return nil, fmt.Errorf("%s is cluster-scoped but the manifest gives namespace %q", gvk.Kind, o.GetNamespace())
		}
		return c.dyn.Resource(m.Resource), nil
	}
	if o.GetNamespace() == "" {
		return nil, fmt.Errorf("%s is namespaced but the manifest gives no namespace", gvk.Kind)
	}
	return c.dyn.Resource(m.Resource).Namespace(o.GetNamespace()), nil
}

// apply creates or updates o for real (server-side apply).
func (c *cluster) apply(ctx context.Context, o *unstructured.Unstructured) error {
	ri, err := c.resource(o)
	if err != nil {
		return err
	}
	_, err = ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	return err
}

// dryRun creates o with a server-side dry run: everything the API server
// does on kubectl apply (defaulting, admission, schema and strict field
// validation) except storing it. An object that exists already (the
// namespace, the CRDs, the RBAC TestRBACOnAPIServer creates) is checked as
// a server-side apply instead, again dry run.
func (c *cluster) dryRun(ctx context.Context, o *unstructured.Unstructured) error {
	ri, err := c.resource(o)
	if err != nil {
		return err
	}
	_, err = ri.Create(ctx, o, metav1.CreateOptions{
		DryRun: []string{metav1.DryRunAll}, FieldManager: fieldManager, FieldValidation: metav1.FieldValidationStrict,
	})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	data, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	force := true
	_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		DryRun: []string{metav1.DryRunAll}, FieldManager: fieldManager, FieldValidation: metav1.FieldValidationStrict, Force: &force,
	})
	return err
}

// createNamespaces creates, for real, every Namespace of the overlay, and
// fails when an object lives in a namespace the overlay does not create:
// kubectl apply -k on a new cluster would refuse it.
func (c *cluster) createNamespaces(t *testing.T, overlay string, objs []*unstructured.Unstructured) {
	t.Helper()
	created := map[string]bool{}
	for _, o := range objs {
		if o.GetAPIVersion() == "v1" && o.GetKind() == "Namespace" {
			if err := c.apply(t.Context(), o); err != nil {
				t.Fatalf("%s: create %s: %v", overlay, describe(o), err)
			}
			created[o.GetName()] = true
		}
	}
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" && !created[ns] {
			t.Errorf("%s: %s is in namespace %s, which the overlay does not create", overlay, describe(o), ns)
		}
	}
	c.warnings.take()
}

// TestOverlaysOnAPIServer renders every overlay and creates each object on
// a real kube-apiserver with a server-side dry run, after installing
// deploy/crds and creating the overlay's namespace for real. Any object
// the server refuses fails the test with its kind, name and the server's
// message; so does any warning (a deprecated API version, a pod template
// that breaks the namespace's "restricted" Pod Security level).
func TestOverlaysOnAPIServer(t *testing.T) {
	c := newCluster(t)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			ctx := t.Context()
			objs := renderObjects(t, overlay)
			c.createNamespaces(t, overlay, objs)
			kinds := map[string]int{}
			for _, o := range objs {
				c.warnings.take()
				if err := c.dryRun(ctx, o); err != nil {
					t.Errorf("%s: %s: the API server refuses it: %v", overlay, describe(o), err)
				}
				for _, w := range c.warnings.take() {
					t.Errorf("%s: %s: the API server warns: %s", overlay, describe(o), w)
				}
				kinds[o.GetKind()]++
			}
			// The test must have seen the overlay, not an empty render.
			for _, k := range []string{"Namespace", "CustomResourceDefinition", "ServiceAccount", "Deployment", "ClusterRole", "ClusterRoleBinding", "PodDisruptionBudget", "HorizontalPodAutoscaler"} {
				if kinds[k] == 0 {
					t.Errorf("%s: no %s among the %d objects rendered", overlay, k, len(objs))
				}
			}
		})
	}
}

// TestOverlayNamespaceEnforcesRestricted: the warnings TestOverlaysOnAPIServer
// fails on are real: the namespace the overlays create makes the API server
// warn about a Deployment whose pods break the restricted level.
func TestOverlayNamespaceEnforcesRestricted(t *testing.T) {
	c := newCluster(t)
	objs := renderObjects(t, "production")
	c.createNamespaces(t, "production", objs)
	var dep *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Deployment" && o.GetName() == "sluice-traffic" {
			dep = o.DeepCopy()
		}
	}
	if dep == nil {
		t.Fatal("no Deployment sluice-traffic")
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	c0 := containers[0].(map[string]any)
	c0["securityContext"] = map[string]any{"allowPrivilegeEscalation": true}
	if err := unstructured.SetNestedSlice(dep.Object, containers, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	c.warnings.take()
	if err := c.dryRun(t.Context(), dep); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	got := c.warnings.take()
	if !slices.ContainsFunc(got, func(w string) bool { return strings.Contains(w, "PodSecurity") }) {
		t.Errorf("a privilege-escalating pod template drew no Pod Security warning (warnings: %q)", got)
	}
}

// serviceAccountUser is the user name the API server gives a service
// account's token, and its groups.
func serviceAccountUser(namespace, name string) (string, []string) {
	return "system:serviceaccount:" + namespace + ":" + name,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
}

// allowed asks the API server whether the service account may do g, in
// namespace "team-a" for a namespaced resource: the ClusterRoleBindings
// must reach every namespace, not only Sluice's own.
func allowed(ctx context.Context, client kubernetes.Interface, namespace, sa string, g grant) (bool, string, error) {
	return allowedIn(ctx, client, namespace, sa, g, "team-a")
}

// allowedIn is allowed for a namespaced resource in namespace in.
func allowedIn(ctx context.Context, client kubernetes.Interface, namespace, sa string, g grant, in string) (bool, string, error) {
	user, groups := serviceAccountUser(namespace, sa)
	resource, sub, _ := strings.Cut(g.resource, "/")
	attrs := &authorizationv1.ResourceAttributes{Verb: g.verb, Group: g.group, Resource: resource, Subresource: sub}
	if !clusterScoped[resource] {
		attrs.Namespace = in
	}
	sar, err := client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: attrs},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, "", err
	}
	return sar.Status.Allowed, sar.Status.Reason, nil
}

// TestRBACOnAPIServer creates each overlay's namespace, ServiceAccounts
// and RBAC objects for real and asks the API server (SubjectAccessReview)
// what each service's account may do: everything in clusterAccess, and
// none of what another service needs or what no service may do. The
// orchestrator may do nothing at all, the analyzer get a Secret by name and
// run Jobs. Then it takes real tokens of the accounts and calls the API with
// them.
func TestRBACOnAPIServer(t *testing.T) {
	c := newCluster(t)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			ctx := t.Context()
			objs := renderObjects(t, overlay)
			c.createNamespaces(t, overlay, objs)
			for _, o := range objs {
				switch o.GetKind() {
				case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
					if err := c.apply(ctx, o); err != nil {
						t.Fatalf("%s: create %s: %v", overlay, describe(o), err)
					}
				}
			}
			m := render(t, overlay)
			for _, name := range services {
				d := m.deployments[name]
				sa := d.Spec.Template.Spec.ServiceAccountName
				// The authorizer learns new bindings from a watch: wait for
				// the first grant, then ask without waiting.
				for i, g := range clusterAccess[name] {
					var reason string
					// A namespaced-only service's grants hold in its own
					// namespace, and nowhere else (checked below).
					in := "team-a"
					if namespacedOnly[name] {
						in = d.Namespace
					}
					granted := func() error {
						ok, why, err := allowedIn(ctx, c.cp.Client, d.Namespace, sa, g, in)
						if err != nil {
							t.Fatalf("%s/%s: SubjectAccessReview %s: %v", overlay, name, g, err)
						}
						if !ok {
							reason = why
							return fmt.Errorf("refused (%s)", why)
						}
						return nil
					}
					var err error
					if i == 0 {
						err = poll.Wait(fmt.Sprintf("the authorizer to grant %s to ServiceAccount %s/%s", g, d.Namespace, sa), granted,
							poll.Timeout(30*time.Second), poll.Every(100*time.Millisecond))
					} else {
						err = granted()
					}
					if err != nil {
						t.Errorf("%s/%s: the API server refuses %s to ServiceAccount %s/%s, which the service needs (%s)", overlay, name, g, d.Namespace, sa, reason)
					}
				}
				if len(clusterAccess[name]) == 0 {
					// Nothing to wait for: give the authorizer the same
					// chance to see a binding that should not be there.
					waitForRBACCache(t, c.cp.Client, d.Namespace)
				}
				if namespacedOnly[name] {
					for _, g := range clusterAccess[name] {
						if ok, reason, err := allowed(ctx, c.cp.Client, d.Namespace, sa, g); err != nil || ok {
							t.Errorf("%s/%s: ServiceAccount %s/%s may %s outside its namespace (%s, %v)", overlay, name, d.Namespace, sa, g, reason, err)
						}
					}
				}
				for _, g := range deniedFor(name) {
					ok, reason, err := allowed(ctx, c.cp.Client, d.Namespace, sa, g)
					if err != nil {
						t.Fatalf("%s/%s: SubjectAccessReview %s: %v", overlay, name, g, err)
					}
					if ok {
						t.Errorf("%s/%s: ServiceAccount %s/%s may %s, which it must not (%s)", overlay, name, d.Namespace, sa, g, reason)
					}
				}
			}
		})
	}

	// The same answers with the accounts' real tokens, end to end.
	ctx := t.Context()
	replicas := clientAs(t, c.cp, "sluice", "sluice-replicas")
	if _, err := replicas.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("sluice-replicas cannot list ReplicaSets in every namespace: %v", err)
	}
	if _, err := replicas.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("sluice-replicas cannot list Pods in every namespace: %v", err)
	}
	// It reads Services (an experiment template's), but never changes
	// one: only the traffic service points Services at revisions.
	if svc, err := replicas.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{}); err != nil {
		t.Errorf("sluice-replicas cannot read a Service: %v", err)
	} else if _, err := replicas.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Errorf("sluice-replicas updating a Service: got %v, want Forbidden", err)
	}
	traffic := clientAs(t, c.cp, "sluice", "sluice-traffic")
	if _, err := traffic.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{}); err != nil {
		t.Errorf("sluice-traffic cannot read a Service: %v", err)
	}
	if _, err := traffic.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("sluice-traffic listing ReplicaSets: got %v, want Forbidden", err)
	}
	gateway := clientAs(t, c.cp, "sluice", "sluice-gateway")
	if _, err := gateway.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("sluice-gateway cannot list Pods in every namespace: %v", err)
	}
	if _, err := gateway.CoreV1().Pods("default").Get(ctx, "any", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("sluice-gateway reading a Pod by name: got %v, want Forbidden (it only lists)", err)
	}
	if _, err := gateway.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("sluice-gateway listing Secrets: got %v, want Forbidden", err)
	}
	orchestrator := clientAs(t, c.cp, "sluice", "sluice-orchestrator")
	if _, err := orchestrator.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("sluice-orchestrator listing Pods: got %v, want Forbidden", err)
	}
	analyzer := clientAs(t, c.cp, "sluice", "sluice-analyzer")
	if _, err := analyzer.BatchV1().Jobs("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("sluice-analyzer cannot list the job provider's Jobs: %v", err)
	}
	analyzerDyn := dynamicAs(t, c.cp, "sluice", "sluice-analyzer")
	if _, err := analyzerDyn.Resource(crd.RolloutResource).Namespace("default").Get(ctx, "absent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("sluice-analyzer reading a Rollout by name: got %v, want NotFound (allowed, and there is none)", err)
	}
	if _, err := analyzerDyn.Resource(crd.RolloutResource).Namespace("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("sluice-analyzer listing Rollouts: got %v, want Forbidden (it reads its Jobs' owner by name)", err)
	}
	if _, err := analyzer.CoreV1().Pods("default").Get(ctx, "any", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("sluice-analyzer reading a Pod by name: got %v, want Forbidden (it only lists a failed Job's)", err)
	}
	if _, err := analyzer.CoreV1().Secrets("default").Get(ctx, "absent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("sluice-analyzer reading a Secret by name: got %v, want NotFound (allowed, and there is none)", err)
	}
	if _, err := analyzer.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("sluice-analyzer listing Secrets: got %v, want Forbidden", err)
	}
}

// waitForRBACCache waits until the authorizer has seen the bindings of the
// sluice-replicas account, created with every other RBAC object.
func waitForRBACCache(t *testing.T, client kubernetes.Interface, namespace string) {
	t.Helper()
	g := clusterAccess["sluice-replicas"][0]
	// A timeout is no failure here: the caller's checks report what the
	// authorizer answers.
	if err := poll.Wait("the authorizer to see the sluice-replicas bindings", func() error {
		ok, reason, err := allowed(t.Context(), client, namespace, "sluice-replicas", g)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return fmt.Errorf("refused (%s)", reason)
		}
		return nil
	}, poll.Timeout(30*time.Second), poll.Every(100*time.Millisecond)); err != nil {
		t.Log(err)
	}
}

// configAs is the configuration of a client with a fresh token of the
// service account, as a pod running under it would have.
func configAs(t *testing.T, cp *kubetest.ControlPlane, namespace, sa string) *rest.Config {
	t.Helper()
	exp := int64(600)
	tr, err := cp.Client.CoreV1().ServiceAccounts(namespace).CreateToken(t.Context(), sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", namespace, sa, err)
	}
	cfg := rest.AnonymousClientConfig(cp.Config)
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// clientAs is a client of the service account (configAs).
func clientAs(t *testing.T, cp *kubetest.ControlPlane, namespace, sa string) kubernetes.Interface {
	t.Helper()
	cl, err := kubernetes.NewForConfig(configAs(t, cp, namespace, sa))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// dynamicAs is clientAs for custom resources.
func dynamicAs(t *testing.T, cp *kubetest.ControlPlane, namespace, sa string) dynamic.Interface {
	t.Helper()
	cl, err := dynamic.NewForConfig(configAs(t, cp, namespace, sa))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestRolloutScaleSubresource: with deploy/crds installed, a Rollout
// whose status the replicas service wrote (crd.Status, then the replica
// counts summed over its ReplicaSets) answers on /scale with its replicas
// and selector, which is what a HorizontalPodAutoscaler reads, and an HPA
// targeting the Rollout (argoproj.io/v1alpha1, kind Rollout) is valid.
// test/kube's TestHPAScalesARollout watches such an HPA scale a live
// rollout end to end.
func TestRolloutScaleSubresource(t *testing.T) {
	c := newCluster(t)
	ctx := t.Context()
	ns := c.cp.Namespace(t)
	rollouts := c.dyn.Resource(crd.RolloutResource).Namespace(ns)

	ro := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Rollout",
		"metadata":   map[string]any{"name": "web", "namespace": ns},
		"spec": map[string]any{
			"replicas": int64(1),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name": "web", "image": "example.com/web:v1",
					"resources": map[string]any{"requests": map[string]any{"cpu": "100m"}},
				}}},
			},
			"strategy": map[string]any{"canary": map[string]any{"steps": []any{map[string]any{"setWeight": int64(20)}}}},
		},
	}}
	created, err := rollouts.Create(ctx, ro, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
	if err != nil {
		t.Fatalf("create Rollout: %v", err)
	}
	status, err := crd.Status(created, events.StatusData{Status: events.Snapshot{
		Namespace: ns, Name: "web", Strategy: "canary", Phase: "Healthy",
		Revision: 1, StableRevision: 1, PodHash: "abc123", StablePodHash: "abc123",
		Replicas:  events.Replicas{Desired: 1, Current: 1, Updated: 1, Ready: 1, Available: 1},
		UpdatedAt: time.Now(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	created.Object["status"] = status
	if _, err := rollouts.UpdateStatus(ctx, created, metav1.UpdateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
		t.Fatalf("write the status the status writer writes: %v", err)
	}
	// The replica counts, summed over the ReplicaSets, as a merge patch of
	// the status subresource (what the replicas service sends).
	counts := []byte(`{"status":{"replicas":1,"readyReplicas":1,"availableReplicas":1,"updatedReplicas":1}}`)
	if _, err := rollouts.Patch(ctx, "web", types.MergePatchType, counts, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("patch the replica counts: %v", err)
	}

	scale, err := rollouts.Get(ctx, "web", metav1.GetOptions{}, "scale")
	if err != nil {
		t.Fatalf("GET /scale: %v", err)
	}
	specReplicas, _, _ := unstructured.NestedInt64(scale.Object, "spec", "replicas")
	statusReplicas, _, _ := unstructured.NestedInt64(scale.Object, "status", "replicas")
	selector, _, _ := unstructured.NestedString(scale.Object, "status", "selector")
	if specReplicas != 1 || statusReplicas != 1 || selector != "app=web" {
		t.Fatalf("/scale says spec.replicas %d, status.replicas %d, status.selector %q; want 1, 1, app=web", specReplicas, statusReplicas, selector)
	}

	minReplicas := int32(3)
	utilization := int32(70)
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web"},
			MinReplicas:    &minReplicas,
			MaxReplicas:    5,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name:   corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &utilization},
				},
			}},
		},
	}
	if _, err := c.cp.Client.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{
		DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict,
	}); err != nil {
		t.Errorf("an HPA targeting the Rollout: %v", err)
	}

	// kubectl scale (and an HPA) write spec.replicas through /scale: a new
	// generation, which the Rollout watcher publishes as a requested event.
	scale.Object["spec"] = map[string]any{"replicas": int64(3)}
	if _, err := rollouts.Update(ctx, scale, metav1.UpdateOptions{}, "scale"); err != nil {
		t.Fatalf("PUT /scale: %v", err)
	}
	got, err := rollouts.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas"); n != 3 || got.GetGeneration() <= created.GetGeneration() {
		t.Errorf("after PUT /scale: spec.replicas %d, generation %d (was %d); want 3 and a new generation", n, got.GetGeneration(), created.GetGeneration())
	}
}
