package local

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/replicastest"
)

func TestBackendContract(t *testing.T) {
	replicastest.Run(t, replicastest.Harness{
		New: func(t *testing.T) replicas.Backend { return newEnv(t).backend(t, t.TempDir()) },
		// A helper process, ready as soon as it listens.
		Template: func(_ *testing.T, labels map[string]string) corev1.PodTemplateSpec {
			tmpl := app{}.template()
			tmpl.Labels = labels
			return tmpl
		},
	})
}
