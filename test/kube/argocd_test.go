package kube_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

// argoCDActor is the actor Sluice gives what Argo CD's resource actions
// write: Argo CD's server is the managedFields manager of its patches.
const argoCDActor = "kube:" + kubetest.ArgoCDManager

// unknownActor is the actor of a request whose writer the object cannot
// name: an action that only removes a status field (resume clears
// pauseConditions, retry removes abort) leaves Argo CD no managed field,
// so the watcher falls back to its own name.
const unknownActor = crd.Actor

// waitHealth waits until Argo CD's own health.lua, run on the Rollout as
// the API server has it, says status with a message containing message.
func (s *stack) waitHealth(t testing.TB, name, status, message string) {
	t.Helper()
	eventually(t, fmt.Sprintf("Argo CD health %s (%q)", status, message), func() error {
		ro, err := s.get(t, "argoproj.io/v1alpha1", "Rollout", name)
		if err != nil {
			return err
		}
		got, msg, err := kubetest.ArgoCDHealth(ro)
		if err != nil {
			t.Fatal(err)
		}
		if got != status || !strings.Contains(msg, message) {
			st, _, _ := unstructured.NestedMap(ro.Object, "status")
			return fmt.Errorf("health %s (%q); status %v", got, msg, st)
		}
		return nil
	})
}

// action runs one of Argo CD's resource actions on the Rollout as Argo CD
// does (its Lua script, then its patches as argocd-server) and waits for
// the status event of eventType it causes, from actor.
func (s *stack) action(t testing.TB, name, action, eventType, actor string) {
	t.Helper()
	at := s.mark(t, name)
	if _, err := s.cp.RunArgoCDAction(context.Background(), s.ns, name, action); err != nil {
		t.Fatalf("Argo CD action %s: %v", action, err)
	}
	s.waitEvent(t, name, at, eventType, actor)
}

// TestArgoCDHealthAndActions checks what Argo CD shows and does for a
// Sluice-managed canary: its health assessment (Argo CD's health.lua) at
// each stage, and each of its Rollout actions taking effect.
func TestArgoCDHealthAndActions(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.service(t, "cd-stable", "cd")
	s.service(t, "cd-canary", "cd")
	s.apply(t, rollout("cd", "v1", 2, `    canary:
      stableService: cd-stable
      canaryService: cd-canary
      steps:
      - setWeight: 50
      - pause: {}
      - setWeight: 100
      - pause: {}
`))
	s.waitPhase(t, "cd", "Healthy", 4)
	s.waitHealth(t, "cd", kubetest.ArgoCDHealthy, "")

	t.Run("resume and skip-current-step", func(t *testing.T) {
		s.setImage(t, "cd", "web:v2")
		s.waitPhase(t, "cd", "Paused", 1)
		s.waitHealth(t, "cd", kubetest.ArgoCDSuspended, "CanaryPauseStep")
		s.action(t, "cd", "resume", events.TypeRolloutResumed, unknownActor)
		s.waitPhase(t, "cd", "Paused", 3)
		s.waitHealth(t, "cd", kubetest.ArgoCDSuspended, "CanaryPauseStep")
		s.action(t, "cd", "skip-current-step", events.TypeRolloutResumed, argoCDActor)
		s.waitPhase(t, "cd", "Healthy", 4)
		s.waitHealth(t, "cd", kubetest.ArgoCDHealthy, "")
	})

	t.Run("abort, retry and promote-full", func(t *testing.T) {
		s.setImage(t, "cd", "web:v3")
		s.waitPhase(t, "cd", "Paused", 1)
		s.action(t, "cd", "abort", events.TypeRolloutAborted, argoCDActor)
		s.waitHealth(t, "cd", kubetest.ArgoCDDegraded, "RolloutAborted")
		s.action(t, "cd", "retry", events.TypeRolloutResumed, unknownActor)
		s.waitPhase(t, "cd", "Paused", 1)
		s.waitHealth(t, "cd", kubetest.ArgoCDSuspended, "CanaryPauseStep")
		s.action(t, "cd", "promote-full", events.TypeRolloutResumed, argoCDActor)
		s.waitPhase(t, "cd", "Healthy", 4)
		s.waitHealth(t, "cd", kubetest.ArgoCDHealthy, "")
	})

	t.Run("pause and resume", func(t *testing.T) {
		s.action(t, "cd", "pause", events.TypeRolloutPaused, argoCDActor)
		s.waitHealth(t, "cd", kubetest.ArgoCDSuspended, "")
		// spec.paused false is Argo CD's write: the resume names it.
		s.action(t, "cd", "resume", events.TypeRolloutResumed, argoCDActor)
		s.waitHealth(t, "cd", kubetest.ArgoCDHealthy, "")
	})

	t.Run("restart", func(t *testing.T) {
		stable := s.rolloutStatus(t, "cd")["stableRS"].(string)
		s.checkRestart(t, "cd", stable, 2, func() {
			s.action(t, "cd", "restart", events.TypeRolloutRestarted, argoCDActor)
		})
		s.waitHealth(t, "cd", kubetest.ArgoCDHealthy, "")
	})

	t.Run("progressing, then degraded past the progress deadline", func(t *testing.T) {
		// A revision whose pods cannot be scheduled never becomes
		// available: Progressing until the deadline, then Degraded.
		patch := `{"spec":{"progressDeadlineSeconds":15,"template":{"spec":{"nodeSelector":{"nowhere":"true"}}}}}`
		s.patchRollout(t, "cd", patch)
		s.waitHealth(t, "cd", kubetest.ArgoCDProgressing, "")
		s.waitHealth(t, "cd", kubetest.ArgoCDDegraded, "ProgressDeadlineExceeded")
	})
}
