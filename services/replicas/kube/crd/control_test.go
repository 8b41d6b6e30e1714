package crd_test

// Tests on the real control plane, with Argo Rollouts' own CRDs installed
// and the Sluice stack running, driving Rollout objects the way Argo's
// kubectl plugin does: the same merge patches of the status subresource and
// the spec, with the plugin's field manager.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	replicaskube "github.com/sluicehq/sluice/services/replicas/kube"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
	"github.com/sluicehq/sluice/services/traffic"
	traffickube "github.com/sluicehq/sluice/services/traffic/kube"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// pluginManager is the field manager of Argo's kubectl plugin: client-go's
// default, from the binary's name.
const pluginManager = "kubectl-argo-rollouts"

// plugin is the actor of the commands the plugin's patches make.
const plugin = "kube:" + pluginManager

// argoCRDs is deploy/crds: Argo Rollouts' v1.10.0 CRD manifests,
// verbatim, as a migrating cluster has them.
func argoCRDs(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "deploy", "crds")
}

var crdsOnce struct {
	sync.Once
	err error
}

func controlPlane(t testing.TB) *kubetest.ControlPlane {
	t.Helper()
	cp := kubetest.Shared(t)
	crdsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dir := argoCRDs(t)
		var files []string
		for _, f := range []string{"rollout-crd.yaml", "analysis-template-crd.yaml", "cluster-analysis-template-crd.yaml", "analysis-run-crd.yaml", "experiment-crd.yaml"} {
			files = append(files, filepath.Join(dir, f))
		}
		crdsOnce.err = cp.InstallCRDs(ctx, files...)
	})
	if crdsOnce.err != nil {
		t.Fatalf("install Argo's CRDs: %v", crdsOnce.err)
	}
	return cp
}

// stack is Sluice on the control plane, in one namespace. The Rollout
// controllers can be stopped and started again (watcherDown).
type stack struct {
	t   testing.TB
	cp  *kubetest.ControlPlane
	ns  string
	url string
	bus *events.Client
	// busConfig configures the streams the controllers provision.
	busConfig events.BusConfig
	ctrl      struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
}

type runner interface {
	Run(context.Context) error
	Ready() bool
}

func startStack(t *testing.T) *stack {
	t.Helper()
	cp := controlPlane(t)
	s := &stack{t: t, cp: cp, ns: cp.Namespace(t), url: eventstest.StartServer(t).ClientURL()}
	log := eventstest.Quiet()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var runners []runner
	run := func(name string, r runner) {
		runners = append(runners, r)
		wg.Go(func() {
			if err := r.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("%s stopped: %v", name, err)
			}
		})
	}
	orch, err := orchestrator.New(eventstest.Connect(t, s.url), orchestrator.Config{Logger: log})
	must(t, err)
	run("orchestrator", orch)
	backend, err := replicaskube.New(replicaskube.Config{Client: cp.Client, Dynamic: cp.Dynamic, Namespace: s.ns, Logger: log})
	must(t, err)
	rs, err := replicas.New(eventstest.Connect(t, s.url), backend, replicas.Config{Logger: log})
	must(t, err)
	run("replicas", rs)
	router, err := traffickube.New(traffickube.Config{Client: cp.Client, Dynamic: cp.Dynamic, Logger: log})
	must(t, err)
	ts, err := traffic.New(eventstest.Connect(t, s.url), router, traffic.Config{Logger: log})
	must(t, err)
	run("traffic", ts)
	poll.Until(t, "every service ready", func() error {
		for _, r := range runners {
			if !r.Ready() {
				return fmt.Errorf("%T not ready", r)
			}
		}
		return nil
	}, poll.Timeout(time.Minute))
	s.bus = eventstest.Connect(t, s.url)
	s.startControllers()
	t.Cleanup(s.stopControllers)
	return s
}

// startControllers runs the Rollout controllers (watcher, status writer,
// counts) and waits until they are ready.
func (s *stack) startControllers() {
	t := s.t
	t.Helper()
	log := eventstest.Quiet()
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		log = slog.Default()
	}
	ctrl, err := crd.New(crd.Config{Client: s.cp.Client, Dynamic: s.cp.Dynamic, Bus: eventstest.Connect(t, s.url), BusConfig: s.busConfig, Namespace: s.ns, Logger: log})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ctrl.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("rollout controllers stopped: %v", err)
		}
	}()
	s.ctrl.cancel, s.ctrl.done = cancel, done
	poll.True(t, "rollout controllers ready", ctrl.Ready, poll.Timeout(time.Minute))
}

// stopControllers stops the Rollout controllers and waits until they have.
func (s *stack) stopControllers() {
	if s.ctrl.cancel != nil {
		s.ctrl.cancel()
		<-s.ctrl.done
		s.ctrl.cancel = nil
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func eventually(t testing.TB, what string, check func() error) {
	t.Helper()
	poll.Until(t, what, check, poll.Timeout(time.Minute))
}

func (s *stack) rollouts() interface {
	Get(context.Context, string, metav1.GetOptions, ...string) (*unstructured.Unstructured, error)
} {
	return s.cp.Dynamic.Resource(crd.RolloutResource).Namespace(s.ns)
}

// create creates a Rollout from YAML, as kubectl does.
func (s *stack) create(manifest string) *unstructured.Unstructured {
	t := s.t
	t.Helper()
	var u unstructured.Unstructured
	must(t, yaml.Unmarshal([]byte(manifest), &u.Object))
	u.SetNamespace(s.ns)
	got, err := s.cp.Dynamic.Resource(crd.RolloutResource).Namespace(s.ns).Create(context.Background(), &u, metav1.CreateOptions{FieldManager: "kubectl-create"})
	must(t, err)
	return got
}

// get reads a Rollout.
func (s *stack) get(name string) *unstructured.Unstructured {
	s.t.Helper()
	u, err := s.cp.Dynamic.Resource(crd.RolloutResource).Namespace(s.ns).Get(context.Background(), name, metav1.GetOptions{})
	must(s.t, err)
	return u
}

// plugin patches the Rollout as Argo's plugin does: a merge patch of the
// status subresource (status) or of the object (spec), with its field
// manager.
func (s *stack) plugin(name, patch string, subresources ...string) {
	s.t.Helper()
	_, err := s.cp.Dynamic.Resource(crd.RolloutResource).Namespace(s.ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: pluginManager}, subresources...)
	must(s.t, err)
}

// status reads the Rollout's status.
func (s *stack) status(name string) map[string]any {
	st, _, _ := unstructured.NestedMap(s.get(name).Object, "status")
	return st
}

// waitStatus waits until the Rollout's status satisfies ok, and returns it.
func (s *stack) waitStatus(name, what string, ok func(st map[string]any) bool) map[string]any {
	s.t.Helper()
	var st map[string]any
	eventually(s.t, what, func() error {
		st = s.status(name)
		if !ok(st) {
			b, _ := json.Marshal(st)
			return fmt.Errorf("status %s", b)
		}
		return nil
	})
	return st
}

// atStep is a status at phase and (>= 0) canary step.
func atStep(phase string, step int64) func(map[string]any) bool {
	return func(st map[string]any) bool {
		return st["phase"] == phase && (step < 0 || st["currentStepIndex"] == step)
	}
}

// history reads a rollout's events on stream, oldest first.
func (s *stack) history(name, stream string) []events.Event {
	s.t.Helper()
	entries, err := s.bus.History(context.Background(), events.Ref{Namespace: s.ns, Name: name})
	must(s.t, err)
	var out []events.Event
	for _, e := range entries {
		must(s.t, e.Err)
		if e.Stream == stream {
			out = append(out, e.Event)
		}
	}
	return out
}

// commands reads the commands published for a rollout, oldest first.
func (s *stack) commands(name string) []events.Event {
	return s.history(name, events.StreamCommands)
}

// ofType keeps the events of type typ.
func ofType(evs []events.Event, typ string) []events.Event {
	var out []events.Event
	for _, ev := range evs {
		if ev.Type() == typ {
			out = append(out, ev)
		}
	}
	return out
}

// oneCommand waits until exactly one command of type typ beyond the before
// earlier ones was published, with actor, and returns it.
func (s *stack) oneCommand(name, typ, actor string, before int) events.Event {
	s.t.Helper()
	var cmds []events.Event
	eventually(s.t, "one "+typ+" command", func() error {
		cmds = ofType(s.commands(name), typ)
		if len(cmds) != before+1 {
			return fmt.Errorf("%d %s commands, want %d", len(cmds), typ, before+1)
		}
		return nil
	})
	ev := cmds[before]
	if got := events.Extension(ev, events.ExtActor); got != actor {
		s.t.Errorf("%s command's actor %q, want %s", typ, got, actor)
	}
	return ev
}

// answered waits until the status stream has an event answering id.
func (s *stack) answered(name, id string) events.Event {
	s.t.Helper()
	var answer events.Event
	eventually(s.t, "the answer to "+id, func() error {
		evs := s.history(name, events.StreamStatus)
		for _, ev := range evs {
			if events.Extension(ev, events.ExtCausationID) == id {
				answer = ev
				return nil
			}
		}
		return fmt.Errorf("none of %d status events answers it", len(evs))
	})
	return answer
}

const canary = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: %s}
spec:
  replicas: 4
  revisionHistoryLimit: 3
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      containers: [{name: app, image: "web:v1", ports: [{containerPort: 8080}]}]
  strategy:
    canary:
      steps:
      - setWeight: 50
      - pause: {}
      - setWeight: 75
      - pause: {}
`

func canaryRollout(name string) string { return fmt.Sprintf(canary, name, name, name) }

// setImage changes the Rollout's image as `kubectl argo rollouts set
// image` does.
func (s *stack) setImage(name, image string) {
	s.t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":%q,"ports":[{"containerPort":8080}]}]}}}}`, image)
	s.plugin(name, patch)
}

// TestPluginStatusRequests drives a canary with the status patches of
// `kubectl argo rollouts promote`, `abort`, `retry rollout` and `promote
// --full`: each becomes exactly one Sluice command, by the plugin, and the
// status afterwards is what the plugin expects.
func TestPluginStatusRequests(t *testing.T) {
	s := startStack(t)
	s.create(canaryRollout("web"))
	s.waitStatus("web", "Healthy", atStep("Healthy", -1))
	s.setImage("web", "web:v2")
	s.waitStatus("web", "paused at step 1", func(st map[string]any) bool {
		return atStep("Paused", 1)(st) && st["pauseConditions"] != nil
	})

	// promote: the pause conditions cleared. A patch that only removes a
	// field leaves no managed fields naming its writer: the actor is the
	// watcher's.
	s.plugin("web", `{"status":{"pauseConditions":null}}`, "status")
	promote := s.oneCommand("web", events.TypeRolloutPromote, crd.Actor, 0)
	var data map[string]bool
	must(t, events.DecodeData(promote, &data))
	if data["full"] {
		t.Errorf("promote data %v, want full false", data)
	}
	s.answered("web", promote.ID())
	s.waitStatus("web", "paused at step 3 after promote", func(st map[string]any) bool {
		return atStep("Paused", 3)(st) && st["pauseConditions"] != nil
	})

	// abort.
	s.plugin("web", `{"status":{"abort":true}}`, "status")
	abort := s.oneCommand("web", events.TypeRolloutAbort, plugin, 0)
	s.answered("web", abort.ID())
	s.waitStatus("web", "aborted", func(st map[string]any) bool {
		return st["abort"] == true && st["phase"] == "Degraded"
	})

	// retry rollout: abort false while aborted.
	s.plugin("web", `{"status":{"abort":false}}`, "status")
	retry := s.oneCommand("web", events.TypeRolloutRetry, plugin, 0)
	s.answered("web", retry.ID())
	s.waitStatus("web", "paused at step 1 after retry", func(st map[string]any) bool {
		return atStep("Paused", 1)(st) && st["abort"] != true
	})

	// promote --full.
	s.plugin("web", `{"status":{"promoteFull":true}}`, "status")
	full := s.oneCommand("web", events.TypeRolloutPromote, plugin, 1)
	must(t, events.DecodeData(full, &data))
	if !data["full"] {
		t.Errorf("promote --full data %v, want full true", data)
	}
	st := s.waitStatus("web", "Healthy after promote --full", atStep("Healthy", -1))
	if st["currentPodHash"] != st["stableRS"] {
		t.Errorf("Healthy with currentPodHash %v and stableRS %v", st["currentPodHash"], st["stableRS"])
	}

	// Each request was published once, though the status changed many
	// times since.
	for typ, want := range map[string]int{events.TypeRolloutPromote: 2, events.TypeRolloutAbort: 1, events.TypeRolloutRetry: 1} {
		if got := len(ofType(s.commands("web"), typ)); got != want {
			t.Errorf("%d %s commands, want %d", got, typ, want)
		}
	}
}

// TestRequestWhileWatcherDown: an abort written while no watcher ran is
// acted on once one starts again.
func TestRequestWhileWatcherDown(t *testing.T) {
	s := startStack(t)
	s.create(canaryRollout("web"))
	s.waitStatus("web", "Healthy", atStep("Healthy", -1))
	s.setImage("web", "web:v2")
	s.waitStatus("web", "paused at step 1", atStep("Paused", 1))

	s.stopControllers()
	s.plugin("web", `{"status":{"abort":true}}`, "status")
	s.startControllers()
	abort := s.oneCommand("web", events.TypeRolloutAbort, plugin, 0)
	s.answered("web", abort.ID())
	s.waitStatus("web", "aborted", func(st map[string]any) bool { return st["abort"] == true && st["phase"] == "Degraded" })
}

// TestStatusNeverRegresses: a status event delivered again long after
// (stale) leaves the status at the latest; and a rejected spec shows as
// Argo's InvalidSpec condition until a valid generation replaces it.
func TestStatusNeverRegressesAndInvalidSpec(t *testing.T) {
	s := startStack(t)
	s.create(canaryRollout("web"))
	s.waitStatus("web", "Healthy", atStep("Healthy", -1))
	s.setImage("web", "web:v2")
	s.waitStatus("web", "paused at step 1", atStep("Paused", 1))

	// The accepted event of the first update, published again.
	ref := events.Ref{Namespace: s.ns, Name: "web"}
	var stale events.Event
	for _, ev := range s.history("web", events.StreamStatus) {
		if ev.Type() == events.TypeRolloutAccepted {
			stale = ev
			break
		}
	}
	if stale.ID() == "" {
		t.Fatal("no accepted event in the history")
	}
	stale.SetID(stale.ID() + "-again")
	res, err := s.bus.Publish(context.Background(), events.StatusSubject(ref), stale)
	must(t, err)
	s.handled(res.Sequence)
	if st := s.status("web"); !atStep("Paused", 1)(st) {
		t.Errorf("status after a stale event: phase %v step %v, want Paused at 1", st["phase"], st["currentStepIndex"])
	}

	// An invalid spec (a step with a weight past 100): rejected.
	s.plugin("web", `{"spec":{"strategy":{"canary":{"steps":[{"setWeight":150},{"pause":{}}]}}}}`)
	gen := s.get("web").GetGeneration()
	st := s.waitStatus("web", "InvalidSpec", func(st map[string]any) bool { return invalidSpec(st) != nil })
	if c := invalidSpec(st); !strings.Contains(fmt.Sprint(c["message"]), "setWeight") || c["reason"] != "InvalidSpec" {
		t.Errorf("InvalidSpec condition %v, want reason InvalidSpec and the field path", c)
	}
	if st["phase"] != "Degraded" {
		t.Errorf("phase %v with InvalidSpec, want Degraded", st["phase"])
	}
	// A later event at the same generation keeps it.
	s.plugin("web", `{"status":{"abort":true}}`, "status")
	s.answered("web", s.oneCommand("web", events.TypeRolloutAbort, plugin, 0).ID())
	st = s.waitStatus("web", "aborted", func(st map[string]any) bool { return st["abort"] == true })
	if s.get("web").GetGeneration() == gen && invalidSpec(st) == nil {
		t.Errorf("InvalidSpec gone after a later event at the rejected generation %d", gen)
	}
	// A valid generation clears it.
	s.plugin("web", `{"spec":{"strategy":{"canary":{"steps":[{"setWeight":50},{"pause":{}}]}}}}`)
	s.waitStatus("web", "InvalidSpec cleared", func(st map[string]any) bool {
		return invalidSpec(st) == nil && st["phase"] != "Degraded" || invalidSpec(st) == nil && st["abort"] == true
	})
}

// handled waits until the status writer has handled the status event at
// stream sequence seq.
func (s *stack) handled(seq uint64) {
	s.t.Helper()
	cons, err := s.bus.JetStream().Consumer(context.Background(), events.StreamStatus, crd.StatusDurable)
	must(s.t, err)
	eventually(s.t, "the status writer past the event", func() error {
		info, err := cons.Info(context.Background())
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < seq {
			return fmt.Errorf("ack floor %d, event at %d", info.AckFloor.Stream, seq)
		}
		return nil
	})
}

func invalidSpec(st map[string]any) map[string]any {
	conds, _ := st["conditions"].([]any)
	for _, c := range conds {
		if cm, ok := c.(map[string]any); ok && cm["type"] == "InvalidSpec" {
			return cm
		}
	}
	return nil
}

// pods lists the rollout's pods by name.
func (s *stack) pods(hash string) []corev1.Pod {
	s.t.Helper()
	list, err := s.cp.Client.CoreV1().Pods(s.ns).List(context.Background(), metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash + "=" + hash})
	must(s.t, err)
	return list.Items
}

// TestRestartAt: `kubectl argo rollouts restart` sets spec.restartAt; the
// stable revision's pods are replaced, and the status shows restartedAt
// equal to spec.restartAt.
func TestRestartAt(t *testing.T) {
	s := startStack(t)
	s.create(canaryRollout("web"))
	st := s.waitStatus("web", "Healthy", atStep("Healthy", -1))
	hash := fmt.Sprint(st["stableRS"])
	var before []string
	eventually(t, "2 pods", func() error {
		before = nil
		for _, p := range s.pods(hash) {
			before = append(before, p.Name)
		}
		if len(before) != 4 {
			return fmt.Errorf("%d pods", len(before))
		}
		return nil
	})
	at := time.Now().UTC().Add(time.Second).Format(time.RFC3339)
	s.plugin("web", fmt.Sprintf(`{"spec":{"restartAt":%q}}`, at))
	s.waitStatus("web", "restartedAt "+at, func(st map[string]any) bool { return st["restartedAt"] == at })
	eventually(t, "every pod replaced", func() error {
		var names []string
		for _, p := range s.pods(hash) {
			if p.DeletionTimestamp == nil {
				names = append(names, p.Name)
			}
			if slices.Contains(before, p.Name) {
				return fmt.Errorf("pod %s from before the restart still there", p.Name)
			}
		}
		if len(names) != 4 {
			return fmt.Errorf("%d pods", len(names))
		}
		return nil
	})
}

// replicaSets lists the rollout's ReplicaSets.
func (s *stack) replicaSets(name string) []appsv1.ReplicaSet {
	s.t.Helper()
	list, err := s.cp.Client.AppsV1().ReplicaSets(s.ns).List(context.Background(), metav1.ListOptions{LabelSelector: replicaskube.RolloutLabel + "=" + name})
	must(s.t, err)
	return list.Items
}

// TestUndoReusesReplicaSet: `kubectl argo rollouts undo` copies revision
// 1's ReplicaSet template (with the API server's defaults, without the
// hash label) into spec.template: Sluice undoes to revision 1 with that
// ReplicaSet, and creates none.
func TestUndoReusesReplicaSet(t *testing.T) {
	s := startStack(t)
	s.create(canaryRollout("web"))
	v1 := fmt.Sprint(s.waitStatus("web", "Healthy", atStep("Healthy", -1))["stableRS"])
	s.setImage("web", "web:v2")
	s.waitStatus("web", "paused at step 1", atStep("Paused", 1))
	s.plugin("web", `{"status":{"promoteFull":true}}`, "status")
	st := s.waitStatus("web", "v2 Healthy", func(st map[string]any) bool { return atStep("Healthy", -1)(st) && st["stableRS"] != v1 })
	v2 := fmt.Sprint(st["stableRS"])
	if n := len(s.replicaSets("web")); n != 2 {
		t.Fatalf("%d ReplicaSets before undo, want 2", n)
	}

	var old *appsv1.ReplicaSet
	for _, rs := range s.replicaSets("web") {
		if rs.Labels[spec.LabelPodTemplateHash] == v1 {
			old = &rs
		}
	}
	if old == nil {
		t.Fatalf("no ReplicaSet of %s", v1)
	}
	tmpl := old.Spec.Template.DeepCopy()
	delete(tmpl.Labels, spec.LabelPodTemplateHash)
	patch, err := json.Marshal([]any{map[string]any{"op": "replace", "path": "/spec/template", "value": tmpl}})
	must(t, err)
	_, err = s.cp.Dynamic.Resource(crd.RolloutResource).Namespace(s.ns).Patch(context.Background(), "web", types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: pluginManager})
	must(t, err)

	undo := s.oneCommand("web", events.TypeRolloutUndo, plugin, 0)
	var data struct {
		ToRevision int64 `json:"toRevision"`
	}
	must(t, events.DecodeData(undo, &data))
	if data.ToRevision != 1 {
		t.Errorf("undo to revision %d, want 1", data.ToRevision)
	}
	s.answered("web", undo.ID())
	s.waitStatus("web", "the undo rolled out", func(st map[string]any) bool {
		return st["currentPodHash"] == v1 && st["phase"] != "Degraded"
	})
	for _, rs := range s.replicaSets("web") {
		if h := rs.Labels[spec.LabelPodTemplateHash]; h != v1 && h != v2 {
			t.Errorf("undo created ReplicaSet %s", rs.Name)
		}
	}
	if got := len(ofType(s.commands("web"), events.TypeRolloutRequested)); got != 2 {
		t.Errorf("%d requested events, want 2 (create, set image): the undo is no new request", got)
	}
}

// TestDeleteAndCreateAgain: a deleted Rollout is forgotten, and one created
// again under the same name starts at revision 1.
func TestDeleteAndCreateAgain(t *testing.T) {
	s := startStack(t)
	first := s.create(canaryRollout("web"))
	s.waitStatus("web", "Healthy", atStep("Healthy", -1))
	s.setImage("web", "web:v2")
	s.waitStatus("web", "paused at step 1", atStep("Paused", 1))

	must(t, s.cp.Dynamic.Resource(crd.RolloutResource).Namespace(s.ns).Delete(context.Background(), "web", metav1.DeleteOptions{}))
	rd, err := orchestrator.NewReader(context.Background(), s.bus)
	must(t, err)
	ref := events.Ref{Namespace: s.ns, Name: "web"}
	eventually(t, "the orchestrator forgets the rollout", func() error {
		_, err := rd.Get(context.Background(), ref)
		if err == nil {
			return fmt.Errorf("still there")
		}
		if !strings.Contains(err.Error(), orchestrator.ErrNoRollout.Error()) {
			return err
		}
		return nil
	})
	eventually(t, "its ReplicaSets gone", func() error {
		if n := len(s.replicaSets("web")); n > 0 {
			return fmt.Errorf("%d ReplicaSets", n)
		}
		return nil
	})

	second := s.create(canaryRollout("web"))
	if second.GetUID() == first.GetUID() {
		t.Fatal("same uid")
	}
	s.waitStatus("web", "Healthy again", atStep("Healthy", -1))
	snap, err := rd.Get(context.Background(), ref)
	must(t, err)
	if snap.Revision != 1 {
		t.Errorf("re-created rollout at revision %d, want 1", snap.Revision)
	}
	for _, rs := range s.replicaSets("web") {
		if rs.Annotations[replicaskube.AnnotationRevision] != "1" {
			t.Errorf("ReplicaSet %s at revision %s, want 1", rs.Name, rs.Annotations[replicaskube.AnnotationRevision])
		}
	}
}

// TestTakeOverObservedRollout: a Rollout whose status says Argo's
// controller observed it (observedGeneration = generation) is requested
// once, and Sluice runs it.
func TestTakeOverObservedRollout(t *testing.T) {
	s := startStack(t)
	s.stopControllers()
	u := s.create(canaryRollout("web"))
	_, err := s.cp.Dynamic.Resource(crd.RolloutResource).Namespace(s.ns).Patch(context.Background(), "web", types.MergePatchType,
		[]byte(fmt.Sprintf(`{"status":{"observedGeneration":"%d","phase":"Healthy"}}`, u.GetGeneration())), metav1.PatchOptions{FieldManager: "rollouts-controller"}, "status")
	must(t, err)
	s.startControllers()
	s.waitStatus("web", "Healthy with Sluice's pods", func(st map[string]any) bool {
		return st["phase"] == "Healthy" && st["stableRS"] != nil && st["availableReplicas"] == int64(4)
	})
	if got := ofType(s.commands("web"), events.TypeRolloutRequested); len(got) != 1 || got[0].ID() != fmt.Sprintf("k8s:%s:%d", u.GetUID(), u.GetGeneration()) {
		t.Errorf("requested events %d, want one with id k8s:<uid>:<generation>", len(got))
	}
}
