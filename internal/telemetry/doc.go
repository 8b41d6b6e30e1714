// Package telemetry is what Sluice's services report about themselves:
// Prometheus metrics (all named sluice_*, with bounded label sets), OTLP
// trace export configured by the standard OTEL_* environment variables, and
// a slog handler that adds the trace and span ids of the context to each
// record. docs/operations.md lists the metrics and what to alert on.
package telemetry
