package local

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluicehq/sluice/pkg/events"
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
		// A process is known by its pid.
		Pods: func(_ *testing.T, b replicas.Backend, ref events.Ref, hash string) []string {
			var out []string
			for _, v := range b.(*Backend).procsOf(ref, hash) {
				out = append(out, "pid "+strconv.Itoa(v.pid))
			}
			return out
		},
	})
}
