package deploy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// grant is one API permission: a verb on a resource (with its subresource,
// "rollouts/status") of an API group ("" is the core group).
type grant struct {
	verb, group, resource string
}

func (g grant) String() string {
	group := g.group
	if group == "" {
		group = "core"
	}
	return g.verb + " " + g.resource + "." + group
}

// rule writes grants the way a ClusterRole rule does.
func rule(group string, resources []string, verbs ...string) []grant {
	var out []grant
	for _, r := range resources {
		for _, v := range verbs {
			out = append(out, grant{v, group, r})
		}
	}
	return out
}

// clusterAccess is, per service, every Kubernetes API permission it needs:
// what its code calls, and nothing else. The orchestrator needs none
// (Rollouts and templates reach it as events).
var clusterAccess = map[string][]grant{
	"sluice-replicas": slices.Concat(
		// services/replicas/kube: one ReplicaSet per revision, informers,
		// pruning beyond revisionHistoryLimit.
		rule("apps", []string{"replicasets"}, "get", "list", "watch", "create", "update", "delete"),
		// Informers on pods; ephemeral metadata written onto running pods.
		rule("", []string{"pods"}, "get", "list", "watch", "update", "patch"),
		// A restart evicts the pods started before restartAt.
		rule("", []string{"pods/eviction"}, "create"),
		// services/replicas/kube/crd: the watcher and the ReplicaSets' owner.
		rule("argoproj.io", []string{"rollouts"}, "get", "list", "watch"),
		// observedGeneration (patch) and status events (update).
		rule("argoproj.io", []string{"rollouts/status"}, "get", "update", "patch"),
		// ownerReferences with blockOwnerDeletion on the Rollout.
		rule("argoproj.io", []string{"rollouts/finalizers"}, "update"),
		// Experiment objects: watched, their status written with the
		// object (no status subresource in Argo's CRD), the owner of their
		// templates' ReplicaSets and Services.
		rule("argoproj.io", []string{"experiments"}, "get", "list", "watch", "update"),
		rule("argoproj.io", []string{"experiments/status", "experiments/finalizers"}, "update"),
		// Templates published for the analyzer.
		rule("argoproj.io", []string{"analysistemplates", "clusteranalysistemplates"}, "get", "list", "watch"),
		// AnalysisRun objects mirrored from the bus, pruned past the
		// history limits, watched for spec.terminate.
		rule("argoproj.io", []string{"analysisruns"}, "get", "list", "watch", "create", "update", "patch", "delete"),
		rule("argoproj.io", []string{"analysisruns/status"}, "update", "patch"),
		// workloadRef: the Deployment's template, and scaleDown.
		rule("apps", []string{"deployments"}, "get", "list", "watch"),
		rule("apps", []string{"deployments/scale"}, "update"),
		// An experiment template's Service, created with its ReplicaSet and
		// deleted with it; listed by label when the rollout is removed.
		rule("", []string{"services"}, "get", "list", "create", "delete"),
	),
	"sluice-traffic": slices.Concat(
		// services/traffic/kube/basic: Service selectors.
		rule("", []string{"services"}, "get", "update"),
		// nginx creates the canary Ingress and deletes it with the rollout,
		// and reads the stable Ingresses from an informer; alb updates the
		// user's.
		rule("networking.k8s.io", []string{"ingresses"}, "get", "list", "watch", "create", "update", "delete"),
		rule("networking.istio.io", []string{"virtualservices", "destinationrules"}, "get", "update"),
		rule("split.smi-spec.io", []string{"trafficsplits"}, "get", "create", "update", "delete"),
		rule("gateway.networking.k8s.io", []string{"httproutes"}, "get", "update"),
	),
	"sluice-orchestrator": nil,
	"sluice-analyzer": slices.Concat(
		// services/analyzer KubeSecrets: a secretKeyRef argument's Secret,
		// by name, in the rollout's namespace; never listed or watched.
		rule("", []string{"secrets"}, "get"),
		// services/analyzer/metrics/job: a Job per measurement, watched,
		// adopted after a replica died, deleted past its timeout or the
		// last 10; a failed Job's pods listed for the termination message.
		rule("batch", []string{"jobs"}, "create", "get", "list", "watch", "delete"),
		rule("", []string{"pods"}, "list"),
		// The Rollout (or Experiment) a Job is for, by name, made the
		// Job's owner.
		rule("argoproj.io", []string{"rollouts", "experiments"}, "get"),
	),
	// services/gateway/kubepods: each revision's pods for the dashboard.
	"sluice-gateway": slices.Concat(
		rule("apps", []string{"replicasets"}, "list"),
		rule("", []string{"pods"}, "list"),
	),
	// services/notifier: informers on Argo's notification ConfigMap and
	// Secret, in its own namespace only (namespacedOnly).
	"sluice-notifier": rule("", []string{"configmaps", "secrets"}, "list", "watch"),
}

// namespacedOnly are the services whose access must come from Roles in
// their own namespace, never from a ClusterRole: what they read there
// (Secrets) must not be readable anywhere else.
var namespacedOnly = map[string]bool{"sluice-notifier": true}

// clusterScoped are the resources above that are not namespaced.
var clusterScoped = map[string]bool{"clusteranalysistemplates": true}

// neverGranted are permissions no Sluice service may have, checked on top
// of every other service's needs: the ReplicaSet controller owns pods,
// Services (but an experiment template's, which the replicas service
// creates, as Argo's experiment controller does) and mesh objects are the
// user's, Rollout specs are the user's.
// Only the analyzer gets a Secret by name (analysis arguments); the
// notifier lists and watches its own namespace's (namespacedOnly); every
// other service is denied both, by deniedFor, and no service may list
// Secrets cluster-wide.
var neverGranted = []grant{
	{"create", "", "pods"},
	{"delete", "", "pods"},
	{"get", "", "configmaps"},
	{"create", "", "events"},
	{"update", "argoproj.io", "rollouts"},
	{"patch", "argoproj.io", "rollouts"},
	{"create", "argoproj.io", "rollouts"},
	{"delete", "argoproj.io", "rollouts"},
	{"update", "argoproj.io", "rollouts/scale"},
	{"create", "argoproj.io", "analysistemplates"},
	{"update", "apps", "deployments"},
	{"delete", "apps", "deployments"},
	{"patch", "apps", "replicasets"},
	{"create", "networking.istio.io", "virtualservices"},
	{"create", "gateway.networking.k8s.io", "httproutes"},
	{"create", "rbac.authorization.k8s.io", "clusterrolebindings"},
	{"create", "", "serviceaccounts/token"},
}

// deniedFor is what a service must be refused: every other service's
// needs that are not its own, and neverGranted.
func deniedFor(service string) []grant {
	own := map[grant]bool{}
	for _, g := range clusterAccess[service] {
		own[g] = true
	}
	seen := map[grant]bool{}
	var out []grant
	for _, other := range slices.Sorted(maps.Keys(clusterAccess)) {
		for _, g := range clusterAccess[other] {
			if !own[g] && !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	for _, g := range neverGranted {
		if own[g] {
			panic(fmt.Sprintf("%s needs %s, which neverGranted forbids", service, g))
		}
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out
}

// expand turns rules into the grants they make, or describes what cannot
// be expanded (wildcards, resourceNames, non-resource URLs): none of those
// belongs in Sluice's RBAC.
func expand(rules []rbacv1.PolicyRule) (map[grant]bool, []string) {
	out := map[grant]bool{}
	var bad []string
	for _, r := range rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			bad = append(bad, fmt.Sprintf("rule %+v names resourceNames or nonResourceURLs", r))
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" || strings.HasSuffix(res, "/*") {
						bad = append(bad, fmt.Sprintf("wildcard in %+v", r))
						continue
					}
					out[grant{v, g, res}] = true
				}
			}
		}
	}
	return out, bad
}

// TestRBACGrantsExactlyWhatEachServiceCalls reads the rendered Roles,
// ClusterRoles and bindings: each service account gets exactly
// clusterAccess, no more and no less, and the orchestrator gets no binding
// and no token in its pods.
func TestRBACGrantsExactlyWhatEachServiceCalls(t *testing.T) {
	for _, overlay := range overlays {
		m := render(t, overlay)
		for _, name := range services {
			d := m.deployments[name]
			if d == nil {
				t.Fatalf("%s: no Deployment %s", overlay, name)
			}
			pod := d.Spec.Template.Spec
			rules := rulesOf(m, d.Namespace, pod.ServiceAccountName)
			if namespacedOnly[name] {
				for _, b := range m.bindings {
					for _, s := range b.subjects {
						if s.Kind == "ServiceAccount" && s.Name == pod.ServiceAccountName && s.Namespace == d.Namespace && !strings.HasPrefix(b.roleRef, "Role/"+d.Namespace+"/") {
							t.Errorf("%s/%s: bound to %s; its access must be a Role in its own namespace", overlay, name, b.roleRef)
						}
					}
				}
			}
			have, bad := expand(rules)
			for _, b := range bad {
				t.Errorf("%s/%s: %s", overlay, name, b)
			}
			want := map[grant]bool{}
			for _, g := range clusterAccess[name] {
				want[g] = true
			}
			for g := range want {
				if !have[g] {
					t.Errorf("%s/%s: the ServiceAccount may not %s, which the service calls", overlay, name, g)
				}
			}
			for g := range have {
				if !want[g] {
					t.Errorf("%s/%s: the ServiceAccount may %s, which the service never calls", overlay, name, g)
				}
			}

			sa := m.accounts[d.Namespace+"/"+pod.ServiceAccountName]
			noToken := pod.AutomountServiceAccountToken != nil && !*pod.AutomountServiceAccountToken
			switch {
			case len(clusterAccess[name]) == 0:
				if len(rules) > 0 {
					t.Errorf("%s/%s: has Kubernetes API access, and needs none", overlay, name)
				}
				if !noToken || sa == nil || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
					t.Errorf("%s/%s: the pod or the ServiceAccount does not set automountServiceAccountToken: false", overlay, name)
				}
			case noToken:
				t.Errorf("%s/%s: automountServiceAccountToken is false, but the service talks to the API server", overlay, name)
			}
		}
	}
}
