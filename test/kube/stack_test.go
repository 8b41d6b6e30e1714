// Package kube_test runs Sluice's services on the Kubernetes platform
// against a real control plane (internal/kubetest): Rollout objects applied
// to the cluster are rolled out through ReplicaSets whose pods become Ready
// on kwok nodes, traffic is shifted on the router objects each rollout
// names, and status is written back into the Rollout.
package kube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
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

var crdsOnce struct {
	sync.Once
	err error
}

// repoRoot is the repository's root directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// controlPlane is the shared control plane with Sluice's, Gateway API's,
// Istio's and SMI's CRDs installed.
func controlPlane(t testing.TB) *kubetest.ControlPlane {
	t.Helper()
	cp := kubetest.Shared(t)
	crdsOnce.Do(func() { crdsOnce.err = installCRDs(cp) })
	if crdsOnce.err != nil {
		t.Fatalf("install CRDs: %v", crdsOnce.err)
	}
	return cp
}

// installCRDs installs Sluice's CRDs (Argo Rollouts' own) and those of
// the routers.
func installCRDs(cp *kubetest.ControlPlane) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	crds := filepath.Join(repoRoot(), "deploy", "crds")
	return cp.InstallCRDs(ctx, filepath.Join(crds, "rollout-crd.yaml"), filepath.Join(crds, "analysis-template-crd.yaml"),
		filepath.Join(crds, "cluster-analysis-template-crd.yaml"), filepath.Join(crds, "analysis-run-crd.yaml"),
		filepath.Join(crds, "experiment-crd.yaml"),
		cp.CRDDir(kubetest.CRDsGatewayAPI), cp.CRDDir(kubetest.CRDsIstio), cp.CRDDir(kubetest.CRDsSMI))
}

// stack is Sluice on the Kubernetes platform, scoped to one namespace so
// that tests sharing the control plane do not see each other's rollouts.
type stack struct {
	cp  *kubetest.ControlPlane
	ns  string
	bus *events.Client
}

// start installs the CRDs (once per binary) and runs the orchestrator, the
// replicas service (kube backend, Rollout watcher, status writer) and the
// traffic service (kube router) on a fresh embedded NATS server.
func start(t testing.TB) *stack {
	t.Helper()
	cp := controlPlane(t)
	return startIn(t, cp, cp.Namespace(t))
}

// startIn is start in namespace ns, which holds objects already (a
// Rollout another controller managed until now).
func startIn(t testing.TB, cp *kubetest.ControlPlane, ns string) *stack {
	t.Helper()
	return startWith(t, cp, ns, stackOptions{})
}

// startThrough is start with the services reaching the API server through
// config (a fault proxy's), while the test's own reads and writes go to the
// API server directly.
func startThrough(t testing.TB, cp *kubetest.ControlPlane, ns string, config *rest.Config) *stack {
	t.Helper()
	return startWith(t, cp, ns, stackOptions{config: config})
}

// stackOptions tune startWith; the zero value is start's stack.
type stackOptions struct {
	// config is how Sluice's services reach the API server (default
	// cp.Config): the benchmarks give them a rate limit and a User-Agent
	// of their own.
	config *rest.Config
	// quiet keeps only warnings and errors of the services' logs for a
	// failure's report, not their debug logs, which cost a benchmark's
	// CPU.
	quiet bool
}

// startWith is startIn with options.
func startWith(t testing.TB, cp *kubetest.ControlPlane, ns string, opts stackOptions) *stack {
	t.Helper()
	client, dyn := cp.Client, cp.Dynamic
	if opts.config != nil {
		var err error
		client, err = kubernetes.NewForConfig(opts.config)
		must(t, err)
		dyn, err = dynamic.NewForConfig(opts.config)
		must(t, err)
	}
	level := slog.LevelDebug
	if opts.quiet {
		level = slog.LevelWarn
	}
	url := eventstest.StartServer(t).ClientURL()
	// The services' logs, shown when the test fails: what the watcher,
	// the status writer and the orchestrator did is what explains a
	// missing event.
	var logs systemtest.Logs
	log := logs.Logger(level)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("services' logs:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	type runner interface {
		Run(context.Context) error
		Ready() bool
	}
	var runners []runner
	run := func(name string, r runner) {
		runners = append(runners, r)
		wg.Go(func() {
			if err := r.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("%s stopped: %v", name, err)
			}
		})
	}

	orch, err := orchestrator.New(eventstest.Connect(t, url), orchestrator.Config{Logger: log})
	must(t, err)
	run("orchestrator", orch)

	rc := eventstest.Connect(t, url)
	backend, err := replicaskube.New(replicaskube.Config{Client: client, Dynamic: dyn, Namespace: ns, Logger: log})
	must(t, err)
	rs, err := replicas.New(rc, backend, replicas.Config{Logger: log})
	must(t, err)
	run("replicas", rs)
	ctrl, err := crd.New(crd.Config{Client: client, Dynamic: dyn, Bus: rc, Namespace: ns, Logger: log})
	must(t, err)
	run("rollout controllers", ctrl)

	router, err := traffickube.New(traffickube.Config{Client: client, Dynamic: dyn, Namespace: ns, Logger: log})
	must(t, err)
	ts, err := traffic.New(eventstest.Connect(t, url), router, traffic.Config{Logger: log})
	must(t, err)
	run("traffic", ts)

	eventually(t, "every service ready", func() error {
		for _, r := range runners {
			if !r.Ready() {
				return fmt.Errorf("%T not ready", r)
			}
		}
		return nil
	})
	return &stack{cp: cp, ns: ns, bus: eventstest.Connect(t, url)}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// eventually retries check until it returns nil, failing the test with its
// last error after a minute.
func eventually(t testing.TB, what string, check func() error) {
	t.Helper()
	poll.Until(t, what, check, poll.Timeout(time.Minute))
}

// apply creates or updates a namespaced object from YAML in the stack's
// namespace.
func (s *stack) apply(t testing.TB, manifest string) {
	t.Helper()
	var u unstructured.Unstructured
	must(t, yaml.Unmarshal([]byte(manifest), &u.Object))
	u.SetNamespace(s.ns)
	gvr := resourceOf(t, u.GetAPIVersion(), u.GetKind())
	data, err := json.Marshal(u.Object)
	must(t, err)
	force := true
	_, err = s.cp.Dynamic.Resource(gvr).Namespace(s.ns).Patch(context.Background(), u.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: "test", Force: &force})
	if err != nil {
		t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// get reads a namespaced object.
func (s *stack) get(t testing.TB, apiVersion, kind, name string) (*unstructured.Unstructured, error) {
	t.Helper()
	return s.cp.Dynamic.Resource(resourceOf(t, apiVersion, kind)).Namespace(s.ns).Get(context.Background(), name, metav1.GetOptions{})
}

// rolloutStatus reads the Rollout's status as the status writer wrote it.
func (s *stack) rolloutStatus(t testing.TB, name string) map[string]any {
	t.Helper()
	ro, err := s.get(t, "argoproj.io/v1alpha1", "Rollout", name)
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := unstructured.NestedMap(ro.Object, "status")
	return st
}

// waitPhase waits until the Rollout's status shows phase (and, for a
// canary, step when step >= 0), and returns the status.
func (s *stack) waitPhase(t testing.TB, name, phase string, step int64) map[string]any {
	t.Helper()
	var st map[string]any
	eventually(t, fmt.Sprintf("Rollout %s %s at step %d", name, phase, step), func() error {
		st = s.rolloutStatus(t, name)
		if st["phase"] != phase || step >= 0 && st["currentStepIndex"] != step {
			return fmt.Errorf("status phase %v step %v message %q", st["phase"], st["currentStepIndex"], st["message"])
		}
		return nil
	})
	return st
}

// command publishes a promote, abort or other command for a rollout.
func (s *stack) command(t testing.TB, name, eventType string, data any) {
	t.Helper()
	ref := events.Ref{Namespace: s.ns, Name: name}
	ev, err := events.New("/test", eventType, ref.String(), data)
	must(t, err)
	_, err = s.bus.Publish(context.Background(), events.CommandSubject(ref), ev)
	must(t, err)
}

// setImage changes the Rollout's container image: a new revision.
func (s *stack) setImage(t testing.TB, name, image string) {
	t.Helper()
	patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":%q}]`, image)
	_, err := s.cp.Dynamic.Resource(crd.RolloutResource).Namespace(s.ns).Patch(context.Background(), name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
	must(t, err)
}

// selectorHash is the pod hash a Service selects.
func (s *stack) selectorHash(t testing.TB, service string) string {
	t.Helper()
	svc, err := s.cp.Client.CoreV1().Services(s.ns).Get(context.Background(), service, metav1.GetOptions{})
	must(t, err)
	return svc.Spec.Selector[spec.LabelPodTemplateHash]
}

// readyPods lists the Running and Ready pods of a revision.
func (s *stack) readyPods(t testing.TB, hash string) []corev1.Pod {
	t.Helper()
	pods, err := s.cp.Client.CoreV1().Pods(s.ns).List(context.Background(), metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash + "=" + hash})
	must(t, err)
	var ready []corev1.Pod
	for _, p := range pods.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
				ready = append(ready, p)
			}
		}
	}
	return ready
}

// waitPods waits until a revision runs exactly n ready pods and no others.
func (s *stack) waitPods(t testing.TB, hash string, n int) []corev1.Pod {
	t.Helper()
	var ready []corev1.Pod
	eventually(t, fmt.Sprintf("%d ready pods of revision %s", n, hash), func() error {
		ready = s.readyPods(t, hash)
		all, err := s.cp.Client.CoreV1().Pods(s.ns).List(context.Background(), metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash + "=" + hash})
		if err != nil {
			return err
		}
		if len(ready) != n || len(all.Items) != n {
			return fmt.Errorf("%d ready of %d pods", len(ready), len(all.Items))
		}
		return nil
	})
	return ready
}

// service creates a Service selecting app=<app> on port 80.
func (s *stack) service(t testing.TB, name, app string) {
	t.Helper()
	_, err := s.cp.Client.CoreV1().Services(s.ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	must(t, err)
}
