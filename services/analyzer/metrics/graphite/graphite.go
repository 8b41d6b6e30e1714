// Package graphite is the graphite metric provider. SKELETON: to be built.
package graphite

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// Config configures the provider. The zero value works.
type Config struct{}

// Provider measures graphite metrics.
type Provider struct {
	cfg Config
}

var _ metrics.Provider = (*Provider)(nil)

// New returns a provider; it fails only for an invalid cfg.
func New(cfg Config) (*Provider, error) { return &Provider{cfg: cfg}, nil }

// Type is "graphite".
func (p *Provider) Type() string { return "graphite" }

// Timeout is how long one measurement may take.
func (p *Provider) Timeout(spec.Metric) time.Duration { return 30 * time.Second }

// Measure takes one measurement.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	return metrics.Measurement{Phase: spec.AnalysisPhaseError, Message: "the graphite provider is not built yet"}
}
