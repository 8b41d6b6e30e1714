package spec

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateGraphite returns every problem of a graphite provider block at
// p: address must be an http or https URL, query a render API query
// string with a target. Fields holding an {{args.NAME}} placeholder are
// checked once the arguments are known, by the provider.
func validateGraphite(m *GraphiteMetric, p *field.Path) field.ErrorList {
	errs := httpURL(p.Child("address"), m.Address)
	qp := p.Child("query")
	switch {
	case strings.TrimSpace(m.Query) == "":
		errs = append(errs, field.Required(qp, "a render API query string, such as target=sumSeries(app.errors.*)&from=-5min"))
	case isPlaceholder(m.Query):
	default:
		if _, _, err := ParseGraphiteQuery(m.Query); err != nil {
			errs = append(errs, field.Invalid(qp, m.Query, err.Error()))
		}
	}
	return errs
}

// graphiteSpace is what Argo Rollouts removes from a graphite query.
var graphiteSpace = regexp.MustCompile(`\s+`)

// ParseGraphiteQuery reads a graphite metric's query as Argo Rollouts
// sends it to Graphite's render API: every whitespace character removed
// (so a long target may be written over several lines), the rest a URL
// query string (`target=...&from=-5min`) with at least one target. It
// returns the parameters and the query without its whitespace.
func ParseGraphiteQuery(query string) (url.Values, string, error) {
	q := graphiteSpace.ReplaceAllLiteralString(query, "")
	params, err := url.ParseQuery(q)
	if err != nil {
		return nil, q, fmt.Errorf("is not a URL query string: %w", err)
	}
	if len(params["target"]) == 0 {
		return nil, q, errors.New("has no target parameter; want target=<expression>&from=-5min")
	}
	return params, q, nil
}
