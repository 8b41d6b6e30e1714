package spec

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateNewRelic returns every problem of a newRelic provider block at p:
// Argo Rollouts' rules (query required, timeout not negative) and a
// profile that cannot name a Secret.
func validateNewRelic(m *NewRelicMetric, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if strings.TrimSpace(m.Query) == "" {
		errs = append(errs, field.Required(p.Child("query"), "an NRQL query"))
	}
	errs = append(errs, atLeast(p.Child("timeout"), m.Timeout, 0)...)
	if m.Profile != "" && !isPlaceholder(m.Profile) {
		if msgs := validation.IsDNS1123Subdomain(m.Profile); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p.Child("profile"), m.Profile, "must name a Secret: "+strings.Join(msgs, "; ")))
		}
	}
	return errs
}
