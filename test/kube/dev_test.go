package kube_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/testbin"
)

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// TestSluiceDevOnKubernetes runs the real `sluice dev --platform kube`
// binary against the control plane and rolls a Rollout object out with it.
// It is not parallel: sluice dev watches every namespace, so it must not
// run beside the other tests' stacks.
func TestSluiceDevOnKubernetes(t *testing.T) {
	cli := testbin.Path(t, "sluice")
	cp := controlPlane(t)
	s := &stack{cp: cp, ns: cp.Namespace(t)}

	var out bytes.Buffer
	dashboard := freeAddr(t)
	cmd := exec.Command(cli, "dev", "--platform", "kube",
		"--kubeconfig", s.cp.Kubeconfig, "--state-dir", t.TempDir(),
		"--nats-listen", freeAddr(t), "--prometheus-listen", freeAddr(t), "--http-listen", freeAddr(t), "--dashboard-listen", dashboard)
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("sluice dev did not stop on SIGINT within 30s")
		}
		if t.Failed() {
			t.Logf("sluice dev output:\n%s", out.String())
		}
	})

	s.apply(t, rollout("web", "v1", 2, "    canary:\n      steps: [{setWeight: 50}, {pause: {}}]\n"))
	st := s.waitPhase(t, "web", "Healthy", -1)
	hash, _ := st["currentPodHash"].(string)
	s.waitPods(t, hash, 2)
	if st["observedGeneration"] != "1" {
		t.Errorf("status.observedGeneration %v, want \"1\"", st["observedGeneration"])
	}

	// The gateway shows the revision's pods as the cluster runs them.
	poll.Until(t, "the gateway shows the two ready pods of web:v1", func() error {
		resp, err := http.Get("http://" + dashboard + "/api/v1/namespaces/" + s.ns + "/rollouts/web")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var d struct {
			Revisions []struct {
				PodHash string `json:"podHash"`
				Pods    []struct {
					Image string `json:"image"`
					Ready bool   `json:"ready"`
				} `json:"pods"`
			} `json:"revisions"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			return fmt.Errorf("%s: %v", resp.Status, err)
		}
		for _, rv := range d.Revisions {
			ready := 0
			for _, p := range rv.Pods {
				if p.Ready && p.Image == "web:v1" {
					ready++
				}
			}
			if rv.PodHash == hash && ready == 2 {
				return nil
			}
		}
		return fmt.Errorf("revisions %+v", d.Revisions)
	})
}
