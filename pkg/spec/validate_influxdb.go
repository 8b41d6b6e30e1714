package spec

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateInfluxdb returns every problem of an influxdb provider block at
// p: the Flux query is required, as in Argo Rollouts, and profile, when
// set, must be a name a Secret can have (an {{args.NAME}} placeholder is
// checked when the run resolves it).
func validateInfluxdb(m *InfluxdbMetric, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if strings.TrimSpace(m.Query) == "" {
		errs = append(errs, field.Required(p.Child("query"), "a Flux query"))
	}
	if m.Profile != "" && !isPlaceholder(m.Profile) {
		if msgs := validation.IsDNS1123Subdomain(m.Profile); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p.Child("profile"), m.Profile, "must be the name of a Secret: "+strings.Join(msgs, "; ")))
		}
	}
	return errs
}
