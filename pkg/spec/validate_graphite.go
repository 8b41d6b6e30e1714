package spec

import "k8s.io/apimachinery/pkg/util/validation/field"

// validateGraphite returns every problem of a graphite provider block at p.
func validateGraphite(m *GraphiteMetric, p *field.Path) field.ErrorList {
	return nil
}
