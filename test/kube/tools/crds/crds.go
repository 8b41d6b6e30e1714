//go:build tools

// Package crds only pins, through these imports, the modules whose CRD
// manifests scripts/kube-tools.sh collects, so that `go mod tidy` keeps
// them and go.sum verifies their contents.
package crds

import (
	_ "istio.io/api/networking/v1"
	_ "sigs.k8s.io/gateway-api/apis/v1"
)
