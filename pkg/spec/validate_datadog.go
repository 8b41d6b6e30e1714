package spec

import "k8s.io/apimachinery/pkg/util/validation/field"

// validateDatadog returns every problem of a datadog provider block at p.
func validateDatadog(m *DatadogMetric, p *field.Path) field.ErrorList {
	return nil
}
