package kube_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/follow"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	replicaskube "github.com/sluicehq/sluice/services/replicas/kube"
)

// canaryStrategy is a canary over web-stable and web-canary, routed by
// trafficRouting (YAML under it; empty: by replica ratio), whose second
// step is pause (Argo's runs pause for a second and completes by itself;
// Sluice's waits to be promoted).
func canaryStrategy(trafficRouting, pause string) string {
	out := `    canary:
      stableService: web-stable
      canaryService: web-canary
      steps:
      - setWeight: 30
      - pause: ` + pause + "\n"
	if trafficRouting != "" {
		// Argo allows scale-down delays only with traffic routing.
		out += "      scaleDownDelaySeconds: 2\n      abortScaleDownDelaySeconds: 2\n      trafficRouting:\n" + trafficRouting
	}
	return out
}

const stableIngress = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: nginx
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web-stable, port: {number: 80}}}}`

// replicaSetOf is the rollout's ReplicaSet at revision n.
func (s *stack) replicaSetOf(t testing.TB, revision int) *appsv1.ReplicaSet {
	t.Helper()
	list, err := s.cp.Client.AppsV1().ReplicaSets(s.ns).List(context.Background(), metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash})
	must(t, err)
	for i, rs := range list.Items {
		if rs.Annotations[replicaskube.AnnotationRevision] == strconv.Itoa(revision) {
			return &list.Items[i]
		}
	}
	return nil
}

// podUIDs lists the uids of a revision's pods, sorted.
func (s *stack) podUIDs(t testing.TB, hash string) []types.UID {
	t.Helper()
	var out []types.UID
	for _, p := range s.readyPods(t, hash) {
		out = append(out, p.UID)
	}
	slices.Sort(out)
	return out
}

// routing is what routes traffic for the rollout: the Services' selectors
// and the canary Ingress's backends and weight, when there is one.
type routing struct {
	stableSelector, canarySelector map[string]string
	canaryUID                      types.UID
	canarySpec                     any
	canaryWeight                   string
}

func (s *stack) routing(t testing.TB) routing {
	t.Helper()
	var r routing
	for name, sel := range map[string]*map[string]string{"web-stable": &r.stableSelector, "web-canary": &r.canarySelector} {
		svc, err := s.cp.Client.CoreV1().Services(s.ns).Get(context.Background(), name, metav1.GetOptions{})
		must(t, err)
		*sel = svc.Spec.Selector
	}
	ing, err := s.get(t, "networking.k8s.io/v1", "Ingress", "web-web-canary")
	if apierrors.IsNotFound(err) {
		return r // routed by replica ratio
	}
	must(t, err)
	r.canaryUID, r.canarySpec = ing.GetUID(), ing.Object["spec"]
	r.canaryWeight = ing.GetAnnotations()["nginx.ingress.kubernetes.io/canary-weight"]
	return r
}

// follow follows the rollout's status events from the first the stack's
// bus keeps.
func (s *stack) follow(t testing.TB, name string) *follow.Follower {
	t.Helper()
	f, err := follow.After(context.Background(), s.bus, 0, events.StatusSubject(events.Ref{Namespace: s.ns, Name: name}))
	must(t, err)
	t.Cleanup(f.Stop)
	return f
}

// awaitEvent reads f until an event of type typ, failing on one of the
// types in fail, or after a minute; it returns the event's data.
func awaitEvent(t testing.TB, f *follow.Follower, typ string, fail ...string) events.StatusData {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var seen []string
	for {
		d, err := f.Next(ctx)
		if err != nil {
			t.Fatalf("no %s event: %v (seen: %s)", typ, err, strings.Join(seen, ", "))
		}
		var data events.StatusData
		_ = d.Event.DataAs(&data)
		seen = append(seen, d.Event.Type())
		switch {
		case d.Event.Type() == typ:
			return data
		case slices.Contains(fail, d.Event.Type()):
			t.Fatalf("%s while waiting for %s: %s %v", d.Event.Type(), typ, data.Reason, data.Errors)
		}
	}
}

// A canary Rollout that Argo Rollouts' own controller brought to Healthy
// through two revisions, on Argo's own CRDs, is taken over by Sluice with
// Argo stopped: the same pods keep running, the Services and the canary
// Ingress route as before, the revision numbers carry on, the next update
// canaries through its steps, and an undo to the revision Argo made first
// runs that revision's ReplicaSet again.
func TestMigrateFromArgoInPlace(t *testing.T) {
	for _, tc := range []struct{ name, trafficRouting string }{
		{"replica ratio", ""},
		{"nginx", "        nginx: {stableIngress: web}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) { migrateFromArgo(t, tc.trafficRouting) })
	}
}

func migrateFromArgo(t *testing.T, trafficRouting string) {
	cp := controlPlane(t) // with Argo's own CRDs (deploy/crds)
	ns := cp.Namespace(t)
	pre := &stack{cp: cp, ns: ns}
	pre.service(t, "web-stable", "web")
	pre.service(t, "web-canary", "web")
	if trafficRouting != "" {
		pre.apply(t, stableIngress)
	}

	rs1, rs2 := underArgo(t, pre, canaryStrategy(trafficRouting, "{duration: 1s}"))
	hash1, hash2 := rs1.Labels[spec.LabelPodTemplateHash], rs2.Labels[spec.LabelPodTemplateHash]
	pods := pre.podUIDs(t, hash2)
	before := pre.routing(t)
	if before.stableSelector[spec.LabelPodTemplateHash] != hash2 || trafficRouting != "" && before.canaryWeight != "0" {
		t.Fatalf("Argo left stable selector %v and canary weight %q, want %s and 0", before.stableSelector, before.canaryWeight, hash2)
	}

	// Sluice takes over: nothing moves.
	s, f := takeOver(t, pre, rs2, pods)
	after := s.routing(t)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("routing changed on takeover:\n%+v\nwant\n%+v", after, before)
	}

	// The next update canaries through its steps, as revision 3.
	s.apply(t, rollout("web", "3", 2, canaryStrategy(trafficRouting, "{}")))
	awaitEvent(t, f, events.TypeRolloutPaused, events.TypeRolloutAborted, events.TypeRolloutRejected)
	rs3 := s.replicaSetOf(t, 3)
	if rs3 == nil {
		t.Fatal("no ReplicaSet for revision 3")
	}
	hash3 := rs3.Labels[spec.LabelPodTemplateHash]
	s.waitPods(t, hash3, 1)
	if n := len(s.readyPods(t, hash2)); n == 0 {
		t.Errorf("no stable pods while the canary is paused")
	}
	if w := s.routing(t).canaryWeight; trafficRouting != "" && w != "30" {
		t.Errorf("canary weight %q at the pause, want 30", w)
	}
	s.command(t, "web", events.TypeRolloutPromote, events.PromoteData{})
	awaitEvent(t, f, events.TypeRolloutCompleted, events.TypeRolloutAborted)
	s.waitPods(t, hash3, 2)
	s.waitPods(t, hash2, 0)

	// Undo to Argo's revision 1 (its template written back, as the plugin's
	// undo does): Argo's ReplicaSet runs it, as revision 4.
	s.apply(t, rollout("web", "1", 2, canaryStrategy(trafficRouting, "{}")))
	awaitEvent(t, f, events.TypeRolloutPaused, events.TypeRolloutAborted, events.TypeRolloutRejected)
	s.waitPods(t, hash1, 1)
	s.reusedAt(t, rs1, 4)
	s.command(t, "web", events.TypeRolloutPromote, events.PromoteData{})
	awaitEvent(t, f, events.TypeRolloutCompleted, events.TypeRolloutAborted)
	s.waitPods(t, hash1, 2)
}

// underArgo runs the Rollout web with strategy under Argo's own
// controller: revision 1, then an update to revision 2, each to Healthy
// with 2 pods; it stops Argo once revision 1 has no pods left and returns
// Argo's ReplicaSets of both revisions.
func underArgo(t *testing.T, pre *stack, strategy string) (rs1, rs2 *appsv1.ReplicaSet) {
	t.Helper()
	argo := pre.cp.StartArgoController(t, pre.ns)
	argoHealthy := func(revision string) {
		t.Helper()
		eventually(t, "Argo's rollout Healthy at revision "+revision, func() error {
			ro, err := pre.get(t, "argoproj.io/v1alpha1", "Rollout", "web")
			if err != nil {
				return err
			}
			st, _, _ := unstructured.NestedMap(ro.Object, "status")
			if st["phase"] != "Healthy" || st["stableRS"] != st["currentPodHash"] || ro.GetAnnotations()[replicaskube.AnnotationRevision] != revision {
				return fmt.Errorf("phase %v stableRS %v currentPodHash %v revision %s: %v", st["phase"], st["stableRS"], st["currentPodHash"], ro.GetAnnotations()[replicaskube.AnnotationRevision], st["message"])
			}
			if hash, _ := st["stableRS"].(string); len(pre.readyPods(t, hash)) != 2 {
				return fmt.Errorf("%d ready pods of %s", len(pre.readyPods(t, hash)), hash)
			}
			return nil
		})
	}
	pre.apply(t, rollout("web", "1", 2, strategy))
	argoHealthy("1")
	pre.setImage(t, "web", "web:2")
	argoHealthy("2")
	rs1, rs2 = pre.replicaSetOf(t, 1), pre.replicaSetOf(t, 2)
	if rs1 == nil || rs2 == nil {
		t.Fatal("Argo left no ReplicaSets for revisions 1 and 2")
	}
	pre.waitPods(t, rs1.Labels[spec.LabelPodTemplateHash], 0)
	argo.Stop()
	return rs1, rs2
}

// takeOver starts Sluice in pre's namespace and has it take over the
// Rollout web, which Argo left at revision 2 (rs2, running pods): it
// returns once the takeover completed, having checked that it kept the
// revision number, adopted rs2 and left its pods alone.
func takeOver(t *testing.T, pre *stack, rs2 *appsv1.ReplicaSet, pods []types.UID) (*stack, *follow.Follower) {
	t.Helper()
	// The Rollout watcher requests the Rollout, which the orchestrator
	// does not have yet, though Argo observed its generation.
	s := startIn(t, pre.cp, pre.ns)
	f := s.follow(t, "web")
	if reason := awaitEvent(t, f, events.TypeRolloutAccepted).Reason; !strings.Contains(reason, "taken over at revision 2") {
		t.Errorf("accepted: %q, want the takeover at revision 2", reason)
	}
	awaitEvent(t, f, events.TypeRolloutCompleted, events.TypeRolloutDegraded, events.TypeRolloutAborted)
	if got := s.podUIDs(t, rs2.Labels[spec.LabelPodTemplateHash]); !slices.Equal(got, pods) {
		t.Errorf("pods %v after the takeover, want Argo's %v untouched", got, pods)
	}
	rs := s.replicaSetOf(t, 2)
	if rs == nil || rs.UID != rs2.UID || rs.Labels[replicaskube.RolloutLabel] != "web" {
		t.Errorf("revision 2's ReplicaSet %v, want Argo's %s (uid %s) adopted", rs, rs2.Name, rs2.UID)
	}
	return s, f
}

// reusedAt checks that Argo's ReplicaSet argo now runs revision n.
func (s *stack) reusedAt(t *testing.T, argo *appsv1.ReplicaSet, n int) {
	t.Helper()
	rs, err := s.cp.Client.AppsV1().ReplicaSets(s.ns).Get(context.Background(), argo.Name, metav1.GetOptions{})
	must(t, err)
	if rs.UID != argo.UID || rs.Annotations[replicaskube.AnnotationRevision] != strconv.Itoa(n) {
		t.Errorf("ReplicaSet %s uid %s revision %s, want Argo's (uid %s) at revision %d", rs.Name, rs.UID, rs.Annotations[replicaskube.AnnotationRevision], argo.UID, n)
	}
}

// selectors maps each named Service to its selector.
func (s *stack) selectors(t testing.TB, names ...string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, name := range names {
		svc, err := s.cp.Client.CoreV1().Services(s.ns).Get(context.Background(), name, metav1.GetOptions{})
		must(t, err)
		out[name] = svc.Spec.Selector
	}
	return out
}

// The same for blue/green: Argo's active and preview Services keep their
// selectors on takeover, and the next update waits in preview until
// promoted; the undo reruns Argo's first ReplicaSet.
func TestMigrateBlueGreenFromArgoInPlace(t *testing.T) {
	cp := controlPlane(t)
	ns := cp.Namespace(t)
	pre := &stack{cp: cp, ns: ns}
	pre.service(t, "web-active", "web")
	pre.service(t, "web-preview", "web")
	strategy := func(autoPromotion bool) string {
		return fmt.Sprintf(`    blueGreen:
      activeService: web-active
      previewService: web-preview
      autoPromotionEnabled: %t
      scaleDownDelaySeconds: 2
`, autoPromotion)
	}
	rs1, rs2 := underArgo(t, pre, strategy(true))
	hash1, hash2 := rs1.Labels[spec.LabelPodTemplateHash], rs2.Labels[spec.LabelPodTemplateHash]
	pods := pre.podUIDs(t, hash2)
	before := pre.selectors(t, "web-active", "web-preview")
	if before["web-active"][spec.LabelPodTemplateHash] != hash2 {
		t.Fatalf("Argo left the active Service on %v, want %s", before["web-active"], hash2)
	}

	s, f := takeOver(t, pre, rs2, pods)
	if after := s.selectors(t, "web-active", "web-preview"); !reflect.DeepEqual(after, before) {
		t.Errorf("selectors changed on takeover: %v, want %v", after, before)
	}

	s.apply(t, rollout("web", "3", 2, strategy(false)))
	awaitEvent(t, f, events.TypeRolloutPaused, events.TypeRolloutAborted, events.TypeRolloutRejected)
	rs3 := s.replicaSetOf(t, 3)
	if rs3 == nil {
		t.Fatal("no ReplicaSet for revision 3")
	}
	hash3 := rs3.Labels[spec.LabelPodTemplateHash]
	s.waitPods(t, hash3, 2)
	if sel := s.selectors(t, "web-active", "web-preview"); sel["web-active"][spec.LabelPodTemplateHash] != hash2 || sel["web-preview"][spec.LabelPodTemplateHash] != hash3 {
		t.Errorf("selectors %v in preview, want active on %s and preview on %s", sel, hash2, hash3)
	}
	s.command(t, "web", events.TypeRolloutPromote, events.PromoteData{})
	awaitEvent(t, f, events.TypeRolloutCompleted, events.TypeRolloutAborted)
	if got := s.selectorHash(t, "web-active"); got != hash3 {
		t.Errorf("active Service on %s after the promotion, want %s", got, hash3)
	}

	s.apply(t, rollout("web", "1", 2, strategy(false)))
	awaitEvent(t, f, events.TypeRolloutPaused, events.TypeRolloutAborted, events.TypeRolloutRejected)
	s.waitPods(t, hash1, 2)
	s.reusedAt(t, rs1, 4)
	s.command(t, "web", events.TypeRolloutPromote, events.PromoteData{})
	awaitEvent(t, f, events.TypeRolloutCompleted, events.TypeRolloutAborted)
	if got := s.selectorHash(t, "web-active"); got != hash1 {
		t.Errorf("active Service on %s after the undo, want %s", got, hash1)
	}
}

// After the namespace of a rollout is deleted while its scale task waits
// for pods, the task ends: the replicas service reports it Failed, saying
// the namespace is going, and the orchestrator, after its attempts, reports
// the rollout degraded instead of the task being retried for as long as
// Sluice runs.
func TestTaskEndsWhenTheNamespaceIsDeleted(t *testing.T) {
	s := start(t)
	ref := events.Ref{Namespace: s.ns, Name: "web"}
	results, err := s.bus.Conn().SubscribeSync(events.ResultSubject(tasks.ServiceReplicas, ref))
	must(t, err)
	t.Cleanup(func() { _ = results.Unsubscribe() })
	f := s.follow(t, "web")

	// A rollout sent on the bus (no Rollout object that the namespace's
	// deletion would delete too), whose pods can never be scheduled: its
	// scale task waits.
	var manifest map[string]any
	must(t, yaml.Unmarshal([]byte(rollout("web", "1", 2, "    canary: {}\n")), &manifest))
	must(t, unstructured.SetNestedField(manifest, map[string]any{"no-such-node": "true"}, "spec", "template", "spec", "nodeSelector"))
	must(t, unstructured.SetNestedField(manifest, s.ns, "metadata", "namespace"))
	ev, err := events.New("/test", events.TypeRolloutRequested, ref.String(), manifest)
	must(t, err)
	_, err = s.bus.Publish(context.Background(), events.CommandSubject(ref), ev)
	must(t, err)
	eventually(t, "the rollout's ReplicaSet with pending pods", func() error {
		if rs := s.replicaSetOf(t, 1); rs == nil {
			return fmt.Errorf("no ReplicaSet yet")
		}
		return nil
	})

	must(t, s.cp.Client.CoreV1().Namespaces().Delete(context.Background(), s.ns, metav1.DeleteOptions{}))
	deadline := time.Now().Add(time.Minute)
	for {
		msg, err := results.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no finished scale task after the namespace was deleted: %v", err)
		}
		ev, err := events.Decode(msg.Data, msg.Header)
		if err != nil || ev.Type() != tasks.TypeFinished {
			continue
		}
		var fin tasks.Finished
		must(t, ev.DataAs(&fin))
		if fin.Outcome != tasks.OutcomeFailed || !strings.Contains(fin.Message, "being terminated") && !strings.Contains(fin.Message, "not found") {
			t.Fatalf("scale task finished %s: %q, want Failed saying the namespace is going", fin.Outcome, fin.Message)
		}
		break
	}
	if reason := awaitEvent(t, f, events.TypeRolloutDegraded).Reason; !strings.Contains(reason, "namespace") {
		t.Errorf("degraded: %q, want the reason to name the namespace", reason)
	}
}
