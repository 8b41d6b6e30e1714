package kube_test

import (
	"testing"

	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/replicastest"
)

func TestBackendContractOnAFakeClientset(t *testing.T) {
	replicastest.Run(t, replicastest.Harness{
		New: func(t *testing.T) replicas.Backend { return start(t, true).backend },
	})
}
