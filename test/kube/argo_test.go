package kube_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

// The tests in this file drive Sluice-managed Rollouts with Argo Rollouts'
// own kubectl plugin (the real binary, built from Argo's Go module) and
// assert what a user of the plugin sees: its own output, the ReplicaSets,
// pods and Services in the cluster, and Sluice's status events answering
// each command with the actor kube:kubectl-argo-rollouts.

// pluginActor is the actor Sluice gives commands the plugin writes into a
// Rollout: the managedFields manager of the plugin's patches.
const pluginActor = "kube:kubectl-argo-rollouts"

// argo runs `kubectl argo rollouts ARGS -n <ns>` against the control plane
// and returns its output (stdout and stderr) and its exit error.
func (s *stack) argo(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.cp.ArgoPluginCmd(ctx, append(args, "--namespace", s.ns)...)
	cmd.Env = append(cmd.Env, "HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("kubectl argo rollouts %s: no exit within 2 minutes; output:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String(), err
}

// argoOK runs the plugin and fails the test unless it exits 0.
func (s *stack) argoOK(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.argo(t, args...)
	if err != nil {
		t.Fatalf("kubectl argo rollouts %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// rolloutView is what `kubectl argo rollouts get rollout` printed: the
// header fields (Status, Step, SetWeight, ...) and the tree below them.
type rolloutView struct {
	fields map[string]string
	tree   string
	raw    string
}

var viewField = regexp.MustCompile(`^\s*([A-Za-z]+):\s+(.*?)\s*$`)

func parseView(out string) rolloutView {
	v := rolloutView{fields: map[string]string{}, raw: out}
	head, tree, _ := strings.Cut(out, "\nNAME ")
	v.tree = "NAME " + tree
	for _, line := range strings.Split(head, "\n") {
		if m := viewField.FindStringSubmatch(line); m != nil {
			if _, dup := v.fields[m[1]]; !dup { // "Images:" continues on later lines
				v.fields[m[1]] = m[2]
			}
		}
	}
	return v
}

// status is the header's Status without its icon ("Paused").
func (v rolloutView) status() string {
	f := strings.Fields(v.fields["Status"])
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// revision is the tree's block for one revision: its ReplicaSet and pods.
func (v rolloutView) revision(n int) string {
	loc := regexp.MustCompile(fmt.Sprintf(`# revision:%d\s*\n`, n)).FindStringIndex(v.tree)
	if loc == nil {
		return ""
	}
	rest := v.tree[loc[1]:]
	if i := strings.Index(rest, "# revision:"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// pods counts the pods in a block of the tree.
func pods(block string) int { return len(regexp.MustCompile(`\sPod\s`).FindAllString(block, -1)) }

// get runs `get rollout NAME --no-color` and parses it.
func (s *stack) getView(t testing.TB, name string) rolloutView {
	t.Helper()
	return parseView(s.argoOK(t, "get", "rollout", name, "--no-color"))
}

// waitView polls `get rollout` until check accepts what it shows.
func (s *stack) waitView(t testing.TB, name, what string, check func(v rolloutView) error) rolloutView {
	t.Helper()
	var v rolloutView
	eventually(t, what+" in `kubectl argo rollouts get rollout`", func() error {
		v = s.getView(t, name)
		if err := check(v); err != nil {
			return fmt.Errorf("%w; it shows:\n%s", err, v.raw)
		}
		return nil
	})
	return v
}

// wantFields is a check that the header shows these fields.
func wantFields(want map[string]string) func(v rolloutView) error {
	return func(v rolloutView) error {
		keys := make([]string, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			got := v.fields[k]
			if k == "Status" {
				got = v.status()
			}
			if got != want[k] {
				return fmt.Errorf("%s: %q, want %q", k, got, want[k])
			}
		}
		return nil
	}
}

// mark is a point in a rollout's history: events stored after it answer
// what was done after it.
func (s *stack) mark(t testing.TB, name string) uint64 {
	t.Helper()
	h, err := s.bus.History(context.Background(), events.Ref{Namespace: s.ns, Name: name})
	must(t, err)
	var last uint64
	for _, e := range h {
		if e.Stream == events.StreamStatus && e.Seq > last {
			last = e.Seq
		}
	}
	return last
}

// waitEvent waits for a status event of eventType (any type when empty),
// stored after mark, carrying the actor, and returns it.
func (s *stack) waitEvent(t testing.TB, name string, after uint64, eventType, actor string) events.Event {
	t.Helper()
	var found events.Event
	eventually(t, fmt.Sprintf("a %s status event from %s", eventType, actor), func() error {
		h, err := s.bus.History(context.Background(), events.Ref{Namespace: s.ns, Name: name})
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range h {
			if e.Stream != events.StreamStatus || e.Seq <= after || e.Err != nil {
				continue
			}
			a, _ := e.Event.Extensions()[events.ExtActor].(string)
			if (eventType == "" || e.Event.Type() == eventType) && a == actor {
				found = e.Event
				return nil
			}
			seen = append(seen, fmt.Sprintf("%s(%s)", strings.TrimPrefix(e.Event.Type(), "io.sluice."), a))
		}
		return fmt.Errorf("status events since: %v", seen)
	})
	return found
}

// replicaSetNames lists the ReplicaSets in the stack's namespace.
func (s *stack) replicaSetNames(t testing.TB) []string {
	t.Helper()
	list, err := s.cp.Client.AppsV1().ReplicaSets(s.ns).List(context.Background(), metav1.ListOptions{})
	must(t, err)
	var names []string
	for _, rs := range list.Items {
		names = append(names, rs.Name+"@"+rs.Annotations["rollout.argoproj.io/revision"])
	}
	sort.Strings(names)
	return names
}

// patchRollout applies a JSON merge patch to the Rollout's spec.
func (s *stack) patchRollout(t testing.TB, name, patch string) {
	t.Helper()
	_, err := s.cp.Dynamic.Resource(crd.RolloutResource).Namespace(s.ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	must(t, err)
}

// exitCode is a finished command's exit code (0 for a nil error).
func exitCode(t testing.TB, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("plugin did not run: %v", err)
		return -1
	}
}

// actualWeight is the weight the plugin computes for a canary without
// traffic routing: the canary's share of the available pods, here all
// updated ones.
func actualWeight(v rolloutView) string {
	var avail, canary int
	fmt.Sscan(v.fields["Available"], &avail)
	fmt.Sscan(v.fields["Updated"], &canary)
	if avail == 0 {
		return "?"
	}
	return fmt.Sprint(100 * canary / avail)
}

// argoCanary is the canary the plugin tests drive: four replicas, 20%, a
// pause until promoted, 50%, a pause of an hour (only a promotion ends it
// within the test).
func argoCanary(name, version string) string {
	return rollout(name, version, 4, `    canary:
      stableService: `+name+`-stable
      canaryService: `+name+`-canary
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 50
      - pause: {duration: 1h}
`)
}

// TestArgoPluginCanary drives a Sluice-managed canary with every command of
// Argo's kubectl plugin that applies to it.
func TestArgoPluginCanary(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.service(t, "web-stable", "web")
	s.service(t, "web-canary", "web")
	s.apply(t, argoCanary("web", "v1"))

	// status waits until Healthy and exits 0.
	out, err := s.argo(t, "status", "web", "--timeout", "90s")
	if code := exitCode(t, err); code != 0 || !strings.Contains(out, "Healthy") {
		t.Fatalf("status of the first revision: exit %d, want 0 and Healthy; output:\n%s", code, out)
	}
	v1 := s.rolloutStatus(t, "web")["stableRS"].(string)
	v := s.waitView(t, "web", "revision 1 healthy", wantFields(map[string]string{
		"Status": "Healthy", "Strategy": "Canary", "Step": "4/4", "SetWeight": "100", "ActualWeight": "100",
		"Desired": "4", "Current": "4", "Updated": "4", "Ready": "4", "Available": "4",
	}))
	if rev := v.revision(1); !strings.Contains(rev, "web-"+v1) || !strings.Contains(rev, "stable") || pods(rev) != 4 {
		t.Errorf("revision 1 in the tree: want ReplicaSet web-%s, stable, 4 pods; got:\n%s", v1, v.raw)
	}

	t.Run("set image", func(t *testing.T) {
		at := s.mark(t, "web")
		s.argoOK(t, "set", "image", "web", "app=web:v2")
		s.waitEvent(t, "web", at, events.TypeRolloutAccepted, pluginActor)
		v := s.waitView(t, "web", "paused at 20%", func(v rolloutView) error {
			if !strings.Contains(v.raw, "web:v2 (canary)") {
				return errors.New("no image web:v2 (canary)")
			}
			return wantFields(map[string]string{"Status": "Paused", "Step": "1/4", "SetWeight": "20", "Updated": "1"})(v)
		})
		if want := actualWeight(v); v.fields["ActualWeight"] != want {
			t.Errorf("ActualWeight %s, want %s (1 canary pod of %s available)", v.fields["ActualWeight"], want, v.fields["Available"])
		}
		if !strings.Contains(v.fields["Message"], "CanaryPauseStep") {
			t.Errorf("Message %q, want CanaryPauseStep", v.fields["Message"])
		}
		v2 := s.rolloutStatus(t, "web")["currentPodHash"].(string)
		if rev := v.revision(2); !strings.Contains(rev, "web-"+v2) || !strings.Contains(rev, "canary") || pods(rev) != 1 {
			t.Errorf("revision 2 in the tree: want ReplicaSet web-%s, canary, 1 pod; got:\n%s", v2, v.raw)
		}
	})

	t.Run("status while paused", func(t *testing.T) {
		out, err := s.argo(t, "status", "web", "--watch=false")
		if code := exitCode(t, err); code != 0 || !strings.HasPrefix(out, "Paused - CanaryPauseStep") {
			t.Errorf("status --watch=false: exit %d output %q, want 0 and Paused - CanaryPauseStep", code, out)
		}
		out, err = s.argo(t, "status", "web", "--timeout", "1s")
		if code := exitCode(t, err); code == 0 || !strings.Contains(out, "Paused - CanaryPauseStep") || !strings.Contains(out, "exceeded timeout") {
			t.Errorf("status --timeout 1s: exit %d output %q, want non-zero after Paused - CanaryPauseStep, timed out", code, out)
		}
	})

	t.Run("list rollouts", func(t *testing.T) {
		out := s.argoOK(t, "list", "rollouts")
		row := regexp.MustCompile(`(?m)^web\s+Canary\s+Paused\s+1/4\s+20\s+(\d+)/(\d+)\s+4\s+1\s+(\d+)\s*$`)
		if m := row.FindStringSubmatch(out); m == nil || m[1] != m[2] || m[1] != m[3] {
			t.Errorf("list rollouts: want web Canary Paused 1/4 20, all ready, 4 desired, 1 up to date; got:\n%s", out)
		}
	})

	t.Run("promote", func(t *testing.T) {
		at := s.mark(t, "web")
		s.argoOK(t, "promote", "web")
		// promote only clears status.pauseConditions: no managed field
		// names the plugin, so the command carries the watcher's name.
		s.waitEvent(t, "web", at, events.TypeRolloutResumed, crd.Actor)
		v := s.waitView(t, "web", "paused at 50%", wantFields(map[string]string{
			"Status": "Paused", "Step": "3/4", "SetWeight": "50", "Updated": "2",
		}))
		if want := actualWeight(v); v.fields["ActualWeight"] != want {
			t.Errorf("ActualWeight %s, want %s (2 canary pods of %s available)", v.fields["ActualWeight"], want, v.fields["Available"])
		}
	})

	t.Run("abort", func(t *testing.T) {
		at := s.mark(t, "web")
		s.argoOK(t, "abort", "web")
		s.waitEvent(t, "web", at, events.TypeRolloutAborted, pluginActor)
		v := s.waitView(t, "web", "aborted", wantFields(map[string]string{"Status": "Degraded", "SetWeight": "0", "ActualWeight": "0"}))
		if !strings.Contains(v.fields["Message"], "RolloutAborted") {
			t.Errorf("Message %q, want RolloutAborted", v.fields["Message"])
		}
		if got := s.selectorHash(t, "web-stable"); got != v1 {
			t.Errorf("web-stable selects %s after the abort, want %s", got, v1)
		}
		s.waitPods(t, v1, 4)
		out, err := s.argo(t, "status", "web", "--timeout", "30s")
		if code := exitCode(t, err); code == 0 || !strings.Contains(out, "degraded state") {
			t.Errorf("status of an aborted rollout: exit %d, want non-zero and degraded; output:\n%s", code, out)
		}
	})

	t.Run("retry rollout", func(t *testing.T) {
		at := s.mark(t, "web")
		s.argoOK(t, "retry", "rollout", "web")
		s.waitEvent(t, "web", at, events.TypeRolloutResumed, pluginActor)
		s.waitView(t, "web", "paused at 20% again", wantFields(map[string]string{
			"Status": "Paused", "Step": "1/4", "SetWeight": "20", "Updated": "1",
		}))
	})

	t.Run("promote --full", func(t *testing.T) {
		at := s.mark(t, "web")
		s.argoOK(t, "promote", "web", "--full")
		s.waitEvent(t, "web", at, events.TypeRolloutResumed, pluginActor)
		s.waitView(t, "web", "revision 2 healthy", wantFields(map[string]string{
			"Status": "Healthy", "Step": "4/4", "SetWeight": "100", "ActualWeight": "100", "Updated": "4",
		}))
		st := s.rolloutStatus(t, "web")
		if st["stableRS"] == v1 {
			t.Errorf("stableRS still %s after promote --full", v1)
		}
		s.waitPods(t, v1, 0)
	})

	t.Run("pause", func(t *testing.T) {
		at := s.mark(t, "web")
		s.argoOK(t, "pause", "web")
		s.waitEvent(t, "web", at, events.TypeRolloutPaused, pluginActor)
		s.waitView(t, "web", "paused by the user", wantFields(map[string]string{"Status": "Paused"}))
		at = s.mark(t, "web")
		s.argoOK(t, "promote", "web") // unpauses: spec.paused false
		s.waitEvent(t, "web", at, events.TypeRolloutResumed, pluginActor)
		s.waitView(t, "web", "healthy again", wantFields(map[string]string{"Status": "Healthy"}))
	})

	t.Run("undo", func(t *testing.T) {
		before := s.replicaSetNames(t)
		at := s.mark(t, "web")
		s.argoOK(t, "undo", "web")
		s.waitEvent(t, "web", at, "", pluginActor)
		v := s.waitView(t, "web", "revision 1's template back as revision 3, paused at 20%", wantFields(map[string]string{
			"Status": "Paused", "Step": "1/4", "SetWeight": "20",
		}))
		if got := s.rolloutStatus(t, "web")["currentPodHash"]; got != v1 {
			t.Errorf("currentPodHash %v after undo, want revision 1's %s", got, v1)
		}
		if rev := v.revision(3); !strings.Contains(rev, "web-"+v1) {
			t.Errorf("revision 3 is not revision 1's ReplicaSet web-%s:\n%s", v1, v.raw)
		}
		after := s.replicaSetNames(t)
		if len(after) != len(before) {
			t.Errorf("undo created a ReplicaSet: before %v, after %v", before, after)
		}
		s.argoOK(t, "promote", "web", "--full")
		s.waitView(t, "web", "revision 3 healthy", wantFields(map[string]string{"Status": "Healthy"}))
	})

	t.Run("restart", func(t *testing.T) {
		s.checkRestart(t, "web", v1, 4, func() {
			at := s.mark(t, "web")
			s.argoOK(t, "restart", "web")
			s.waitEvent(t, "web", at, events.TypeRolloutRestarted, pluginActor)
		})
	})
}

// checkRestart runs restart, a tool's restart of the rollout, on revision
// hash running n pods, and checks what Argo's restart does: every pod
// created before spec.restartAt is replaced, the revision runs n pods
// again, and status.restartedAt shows spec.restartAt.
func (s *stack) checkRestart(t testing.TB, name, hash string, n int, restart func()) {
	t.Helper()
	old := map[string]bool{}
	var newest time.Time
	for _, p := range s.waitPods(t, hash, n) {
		old[string(p.UID)] = true
		if c := p.CreationTimestamp.Time; c.After(newest) {
			newest = c
		}
	}
	// restartAt has whole seconds, and a pod created in its second is not
	// older than it: restart once the newest pod's second has passed, so
	// that every pod must go.
	poll.True(t, "a second past the newest pod's creation", func() bool { return time.Now().Truncate(time.Second).After(newest) })
	restart()
	eventually(t, "every pod replaced", func() error {
		for _, p := range s.readyPods(t, hash) {
			if old[string(p.UID)] {
				return fmt.Errorf("pod %s not replaced yet", p.Name)
			}
		}
		return nil
	})
	s.waitPods(t, hash, n)
	eventually(t, "status.restartedAt = spec.restartAt", func() error {
		ro, err := s.get(t, "argoproj.io/v1alpha1", "Rollout", name)
		if err != nil {
			return err
		}
		restartAt, _, _ := unstructured.NestedString(ro.Object, "spec", "restartAt")
		if got, _, _ := unstructured.NestedString(ro.Object, "status", "restartedAt"); got == "" || got != restartAt {
			return fmt.Errorf("status.restartedAt %q, spec.restartAt %q", got, restartAt)
		}
		return nil
	})
}

// TestArgoPluginBlueGreen drives a Sluice-managed blue/green rollout with
// Argo's kubectl plugin: the preview before promotion, abort and retry,
// promote, and undo back onto the old revision's ReplicaSet.
func TestArgoPluginBlueGreen(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.service(t, "bg", "bg")
	s.service(t, "bg-preview", "bg")
	s.apply(t, rollout("bg", "v1", 2, `    blueGreen:
      activeService: bg
      previewService: bg-preview
      autoPromotionEnabled: false
      scaleDownDelaySeconds: 0
`))
	out, err := s.argo(t, "status", "bg", "--timeout", "90s")
	if code := exitCode(t, err); code != 0 || !strings.Contains(out, "Healthy") {
		t.Fatalf("status of the first revision: exit %d, want 0 and Healthy; output:\n%s", code, out)
	}
	v1 := s.rolloutStatus(t, "bg")["stableRS"].(string)
	v := s.waitView(t, "bg", "revision 1 healthy and active", wantFields(map[string]string{
		"Status": "Healthy", "Strategy": "BlueGreen", "Desired": "2", "Available": "2",
	}))
	if rev := v.revision(1); !strings.Contains(rev, "bg-"+v1) || !strings.Contains(rev, "stable,active") || pods(rev) != 2 {
		t.Errorf("revision 1 in the tree: want ReplicaSet bg-%s, stable,active, 2 pods; got:\n%s", v1, v.raw)
	}

	var v2 string
	t.Run("set image", func(t *testing.T) {
		s.argoOK(t, "set", "image", "bg", "app=web:v2")
		v := s.waitView(t, "bg", "paused with the preview", wantFields(map[string]string{"Status": "Paused"}))
		if !strings.Contains(v.fields["Message"], "BlueGreenPause") {
			t.Errorf("Message %q, want BlueGreenPause", v.fields["Message"])
		}
		v2 = s.rolloutStatus(t, "bg")["currentPodHash"].(string)
		s.waitPods(t, v2, 2)
		v = s.waitView(t, "bg", "revision 2 preview", func(v rolloutView) error {
			if rev := v.revision(2); !strings.Contains(rev, "bg-"+v2) || !strings.Contains(rev, "preview") || pods(rev) != 2 {
				return fmt.Errorf("revision 2 is not ReplicaSet bg-%s, preview, 2 pods", v2)
			}
			return nil
		})
		if a, p := s.selectorHash(t, "bg"), s.selectorHash(t, "bg-preview"); a != v1 || p != v2 {
			t.Errorf("active selects %s, preview %s; want %s and %s", a, p, v1, v2)
		}
		out, err := s.argo(t, "status", "bg", "--watch=false")
		if code := exitCode(t, err); code != 0 || !strings.HasPrefix(out, "Paused - BlueGreenPause") {
			t.Errorf("status --watch=false: exit %d output %q, want 0 and Paused - BlueGreenPause", code, out)
		}
	})

	t.Run("abort", func(t *testing.T) {
		at := s.mark(t, "bg")
		s.argoOK(t, "abort", "bg")
		s.waitEvent(t, "bg", at, events.TypeRolloutAborted, pluginActor)
		v := s.waitView(t, "bg", "aborted", wantFields(map[string]string{"Status": "Degraded"}))
		if !strings.Contains(v.fields["Message"], "RolloutAborted") {
			t.Errorf("Message %q, want RolloutAborted", v.fields["Message"])
		}
		if a := s.selectorHash(t, "bg"); a != v1 {
			t.Errorf("active selects %s after the abort, want %s", a, v1)
		}
		out, err := s.argo(t, "status", "bg", "--timeout", "30s")
		if code := exitCode(t, err); code == 0 || !strings.Contains(out, "degraded state") {
			t.Errorf("status of an aborted rollout: exit %d, want non-zero and degraded; output:\n%s", code, out)
		}
	})

	t.Run("retry rollout", func(t *testing.T) {
		s.argoOK(t, "retry", "rollout", "bg")
		s.waitView(t, "bg", "paused with the preview again", wantFields(map[string]string{"Status": "Paused"}))
		eventually(t, "preview on revision 2 again", func() error {
			if p := s.selectorHash(t, "bg-preview"); p != v2 {
				return fmt.Errorf("preview selects %s", p)
			}
			return nil
		})
	})

	t.Run("promote", func(t *testing.T) {
		at := s.mark(t, "bg")
		s.argoOK(t, "promote", "bg")
		s.waitEvent(t, "bg", at, events.TypeRolloutResumed, crd.Actor) // see the canary's promote
		v := s.waitView(t, "bg", "revision 2 healthy and active", wantFields(map[string]string{"Status": "Healthy"}))
		if rev := v.revision(2); !strings.Contains(rev, "stable,active") {
			t.Errorf("revision 2 is not stable,active:\n%s", v.raw)
		}
		if a := s.selectorHash(t, "bg"); a != v2 {
			t.Errorf("active selects %s after promote, want %s", a, v2)
		}
		out, err := s.argo(t, "status", "bg", "--watch=false")
		if code := exitCode(t, err); code != 0 || strings.TrimSpace(out) != "Healthy" {
			t.Errorf("status: exit %d output %q, want 0 and Healthy", code, out)
		}
	})

	t.Run("undo", func(t *testing.T) {
		before := s.replicaSetNames(t)
		s.argoOK(t, "undo", "bg")
		s.waitView(t, "bg", "revision 1's template back, in preview", wantFields(map[string]string{"Status": "Paused"}))
		if got := s.rolloutStatus(t, "bg")["currentPodHash"]; got != v1 {
			t.Errorf("currentPodHash %v after undo, want revision 1's %s", got, v1)
		}
		if after := s.replicaSetNames(t); len(after) != len(before) {
			t.Errorf("undo created a ReplicaSet: before %v, after %v", before, after)
		}
		// promote --full on blue/green skips the pause as promote does.
		s.argoOK(t, "promote", "bg", "--full")
		s.waitView(t, "bg", "revision 3 healthy", wantFields(map[string]string{"Status": "Healthy"}))
		if a := s.selectorHash(t, "bg"); a != v1 {
			t.Errorf("active selects %s after the undo's promotion, want %s", a, v1)
		}
	})
}
