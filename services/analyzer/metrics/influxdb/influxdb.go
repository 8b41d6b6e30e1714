// Package influxdb is the influxdb metric provider. SKELETON: to be built.
package influxdb

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// Config configures the provider. The zero value works.
type Config struct{}

// Provider measures influxdb metrics.
type Provider struct {
	cfg Config
}

var _ metrics.Provider = (*Provider)(nil)

// New returns a provider; it fails only for an invalid cfg.
func New(cfg Config) (*Provider, error) { return &Provider{cfg: cfg}, nil }

// Type is "influxdb".
func (p *Provider) Type() string { return "influxdb" }

// Timeout is how long one measurement may take.
func (p *Provider) Timeout(spec.Metric) time.Duration { return 30 * time.Second }

// Measure takes one measurement.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	return metrics.Measurement{Phase: spec.AnalysisPhaseError, Message: "the influxdb provider is not built yet"}
}
