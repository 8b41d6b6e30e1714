package spec

import (
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Datadog API versions and v2 aggregators, as Argo Rollouts' CRD
// enumerates them. An unset apiVersion is v1 (Argo's CRD default).
var (
	DatadogAPIVersions = []string{"v1", "v2"}
	DatadogAggregators = []string{"avg", "min", "max", "sum", "last", "percentile", "mean", "l2norm", "area"}
)

// validateDatadog returns every problem of a datadog provider block at p:
// Argo Rollouts' rules (one of query and queries; queries only with v2; a
// formula with queries, and required when there are several; no aggregator
// with v1; a positive requestTimeout; a secretRef name when namespaced) and
// what can never work (an interval that is not a positive duration, an
// empty query in queries, a Secret name Kubernetes would refuse).
func validateDatadog(m *DatadogMetric, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	version := m.ApiVersion
	if version == "" {
		version = "v1"
	}
	if !slices.Contains(DatadogAPIVersions, version) && !isPlaceholder(version) {
		errs = append(errs, field.NotSupported(p.Child("apiVersion"), m.ApiVersion, DatadogAPIVersions))
	}
	hasQuery := strings.TrimSpace(m.Query) != ""
	switch {
	case hasQuery && len(m.Queries) > 0:
		errs = append(errs, field.Forbidden(p.Child("queries"), "may not be set with query"))
	case !hasQuery && len(m.Queries) == 0:
		errs = append(errs, field.Required(p.Child("query"), "must set query, or queries with apiVersion v2"))
	case len(m.Queries) > 0 && version == "v1":
		errs = append(errs, field.Forbidden(p.Child("queries"), "needs apiVersion v2 (an unset apiVersion is v1)"))
	}
	qp := p.Child("queries")
	names := make([]string, 0, len(m.Queries))
	for name := range m.Queries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.TrimSpace(name) == "" {
			errs = append(errs, field.Invalid(qp, name, "query names must not be empty"))
			continue
		}
		if strings.TrimSpace(m.Queries[name]) == "" {
			errs = append(errs, field.Required(qp.Key(name), ""))
		}
	}
	switch {
	case m.Formula != "" && len(m.Queries) == 0:
		errs = append(errs, field.Forbidden(p.Child("formula"), "needs queries"))
	case strings.TrimSpace(m.Formula) == "" && len(m.Queries) > 1:
		errs = append(errs, field.Required(p.Child("formula"), "must be set when queries has more than one query"))
	}
	if m.Aggregator != "" {
		ap := p.Child("aggregator")
		switch {
		case version == "v1":
			errs = append(errs, field.Forbidden(ap, "is not supported with apiVersion v1 (an unset apiVersion is v1)"))
		case !slices.Contains(DatadogAggregators, m.Aggregator) && !isPlaceholder(m.Aggregator):
			errs = append(errs, field.NotSupported(ap, m.Aggregator, DatadogAggregators))
		}
	}
	errs = append(errs, datadogDuration(p.Child("interval"), m.Interval)...)
	if d, err := m.Interval.Duration(); err == nil && d > 0 && d < time.Second {
		// Datadog's windows are whole seconds: this one would be empty.
		errs = append(errs, field.Invalid(p.Child("interval"), string(m.Interval), "must be at least 1s"))
	}
	errs = append(errs, datadogDuration(p.Child("requestTimeout"), m.RequestTimeout)...)

	sp := p.Child("secretRef")
	switch name := m.SecretRef.Name; {
	case name == "" && m.SecretRef.Namespaced:
		errs = append(errs, field.Required(sp.Child("name"), "must be set when namespaced is true"))
	case name != "" && !isPlaceholder(name):
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			errs = append(errs, field.Invalid(sp.Child("name"), name, strings.Join(msgs, "; ")))
		}
	}
	return errs
}

// datadogDuration checks a DurationString that, when set, must be a
// duration greater than zero.
func datadogDuration(p *field.Path, d DurationString) field.ErrorList {
	if errs := duration(p, d); len(errs) > 0 || d == "" || isPlaceholder(string(d)) {
		return errs
	}
	if v, _ := d.Duration(); v <= 0 {
		return field.ErrorList{field.Invalid(p, string(d), "must be greater than 0")}
	}
	return nil
}
