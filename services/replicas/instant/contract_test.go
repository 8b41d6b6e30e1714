package instant

import (
	"testing"

	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/replicastest"
)

func TestBackendContract(t *testing.T) {
	replicastest.Run(t, replicastest.Harness{
		New: func(t *testing.T) replicas.Backend { return New() },
	})
}
