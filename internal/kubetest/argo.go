package kubetest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Argo Rollouts' binaries, built by scripts/kube-tools.sh from the version
// test/kube/tools/argo pins.
const (
	argoPluginBinary     = "kubectl-argo-rollouts"
	argoControllerBinary = "rollouts-controller"
)

// ArgoPlugin returns the path of Argo Rollouts' kubectl plugin
// (kubectl-argo-rollouts), which runs on its own as well as through
// kubectl. Start has checked that it exists.
func (cp *ControlPlane) ArgoPlugin() string {
	return filepath.Join(cp.ToolsDir, "bin", argoPluginBinary)
}

// ArgoController returns the path of Argo Rollouts' controller
// (rollouts-controller). Start has checked that it exists; StartArgoController
// runs it.
func (cp *ControlPlane) ArgoController() string {
	return filepath.Join(cp.ToolsDir, "bin", argoControllerBinary)
}

// ArgoPluginCmd returns the plugin command with args (e.g. "get", "rollout",
// "web", "-n", ns), pointed at this control plane by KUBECONFIG. The caller
// sets Stdout/Stderr and runs it; ctx ends it.
func (cp *ControlPlane) ArgoPluginCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, cp.ArgoPlugin(), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig, "NO_COLOR=1")
	return cmd
}

// ArgoControllerProcess is a running Argo Rollouts controller.
type ArgoControllerProcess struct {
	// Log is the path of its log file, in the control plane's LogDir.
	Log string

	proc *process
	once sync.Once
}

// Stop ends the controller (SIGTERM, then SIGKILL after 10 s) and returns
// once it has exited. Idempotent.
func (a *ArgoControllerProcess) Stop() {
	a.once.Do(func() { a.proc.stop(10 * time.Second) })
}

// StartArgoController runs Argo Rollouts' own controller against this
// control plane, scoped to namespace (--namespaced: it touches nothing
// elsewhere, so tests sharing the control plane are unaffected), without
// leader election, and returns once its health endpoint answers. It needs
// Argo's CRDs installed (InstallCRDs(ctx, cp.CRDDir(CRDsArgoRollouts))).
// The test's cleanup stops it; Stop ends it earlier, e.g. to hand the
// namespace's Rollouts over to Sluice. Failures are fatal to the test.
// args are added to the controller's command line after these, so that
// they override them (e.g. "--loglevel", "info" for a benchmark, which
// should not pay for debug logs); its client rate limits are its own
// defaults (--qps 40, --burst 80 in v1.10) unless args set them.
func (cp *ControlPlane) StartArgoController(tb testing.TB, namespace string, args ...string) *ArgoControllerProcess {
	tb.Helper()
	ports, err := freePorts(2)
	if err != nil {
		tb.Fatalf("kubetest: Argo Rollouts controller: %v", err)
	}
	healthz, metrics := ports[0], ports[1]
	name := argoControllerBinary + "-" + namespace
	p, err := startProcess(name, cp.ArgoController(), append([]string{
		"--kubeconfig", cp.Kubeconfig,
		"--namespaced", "--namespace", namespace,
		"--leader-elect=false",
		"--healthzPort", strconv.Itoa(healthz),
		"--metricsPort", strconv.Itoa(metrics),
		"--loglevel", "debug",
	}, args...), os.Environ(), cp.LogDir)
	if err != nil {
		tb.Fatalf("kubetest: Argo Rollouts controller: %v", err)
	}
	a := &ArgoControllerProcess{Log: p.logPath, proc: p}
	tb.Cleanup(a.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz)
	if err := waitFor(ctx, p, "the Argo Rollouts controller's "+url, func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, url)
	}); err != nil {
		tb.Fatal(err)
	}
	return a
}
