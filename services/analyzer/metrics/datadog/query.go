package datadog

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
)

// Defaults of a datadog block's unset fields, as in Argo Rollouts.
const (
	DefaultAPIVersion     = "v1"
	DefaultInterval       = 5 * time.Minute
	DefaultRequestTimeout = 10 * time.Second
	// DefaultAggregator is the v2 aggregator when none is set: Argo sends
	// "last" because Datadog refuses an empty one.
	DefaultAggregator = "last"
)

// Paths of Datadog's API used.
const (
	pathV1 = "/api/v1/query"
	pathV2 = "/api/v2/query/scalar"
)

// plan is one datadog block resolved: defaults applied, every field
// checked. It holds no credential.
type plan struct {
	version    string
	interval   time.Duration
	timeout    time.Duration
	aggregator string
	// queries are the v2 queries by name; a v1 plan has query only.
	query   string
	queries map[string]string
	formula string
}

// resolve turns a datadog block, arguments substituted, into a plan, or
// says why it can never be measured. Validation rejects most of this when
// the template is applied; an argument's value is only checked here.
func resolve(dd *spec.DatadogMetric) (plan, error) {
	p := plan{version: dd.ApiVersion, query: strings.TrimSpace(dd.Query), formula: strings.TrimSpace(dd.Formula), aggregator: dd.Aggregator}
	if p.version == "" {
		p.version = DefaultAPIVersion
	}
	if !slices.Contains(spec.DatadogAPIVersions, p.version) {
		return plan{}, fmt.Errorf("apiVersion %q is not supported; use v1 or v2", dd.ApiVersion)
	}
	var err error
	if p.interval, err = positive("interval", dd.Interval, DefaultInterval); err != nil {
		return plan{}, err
	}
	if p.interval < time.Second {
		return plan{}, fmt.Errorf("interval %q must be at least 1s: Datadog's windows are whole seconds", dd.Interval)
	}
	if p.timeout, err = positive("requestTimeout", dd.RequestTimeout, DefaultRequestTimeout); err != nil {
		return plan{}, err
	}
	switch {
	case p.query != "" && len(dd.Queries) > 0:
		return plan{}, errors.New("set query or queries, not both")
	case p.query == "" && len(dd.Queries) == 0:
		return plan{}, errors.New("no query: set query, or queries with apiVersion v2")
	case p.formula != "" && len(dd.Queries) == 0:
		return plan{}, errors.New("formula needs queries")
	case p.formula == "" && len(dd.Queries) > 1:
		return plan{}, errors.New("several queries need a formula")
	}
	if p.version == "v1" {
		if len(dd.Queries) > 0 {
			return plan{}, errors.New("queries need apiVersion v2")
		}
		if p.aggregator != "" {
			return plan{}, errors.New("aggregator is not supported with apiVersion v1")
		}
		return p, nil
	}
	if p.aggregator == "" {
		p.aggregator = DefaultAggregator
	}
	if !slices.Contains(spec.DatadogAggregators, p.aggregator) {
		return plan{}, fmt.Errorf("aggregator %q is not one of %s", p.aggregator, strings.Join(spec.DatadogAggregators, ", "))
	}
	p.queries = dd.Queries
	if p.query != "" {
		// As in Argo Rollouts: a v2 query is the one query named "query".
		p.queries = map[string]string{"query": p.query}
	}
	for name, q := range p.queries {
		if strings.TrimSpace(name) == "" || strings.TrimSpace(q) == "" {
			return plan{}, fmt.Errorf("query %q is empty", name)
		}
	}
	return p, nil
}

func positive(field string, d spec.DurationString, def time.Duration) (time.Duration, error) {
	if strings.TrimSpace(string(d)) == "" {
		return def, nil
	}
	v, err := d.Duration()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	if v <= 0 {
		return 0, fmt.Errorf("%s %q must be greater than 0", field, d)
	}
	return v, nil
}

// names are the v2 query names, sorted: the order they are sent and shown.
func (p plan) names() []string {
	names := make([]string, 0, len(p.queries))
	for n := range p.queries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// describe is the measurement's query: v1's query, or v2's formula and
// queries ("errors / requests; errors=sum:...; requests=sum:...").
func (p plan) describe() string {
	if p.version == "v1" {
		return p.query
	}
	parts := make([]string, 0, len(p.queries)+1)
	if p.formula != "" {
		parts = append(parts, p.formula)
	}
	for _, n := range p.names() {
		parts = append(parts, n+"="+strings.TrimSpace(p.queries[n]))
	}
	return strings.Join(parts, "; ")
}

// window is the queried time range: interval, ending at now, in whole
// seconds as Argo Rollouts computes it.
func (p plan) window(now time.Time) (from, to int64) {
	to = now.Unix()
	return to - int64(p.interval/time.Second), to
}

// v1URL is the GET URL of a v1 query over [from, to] (Unix seconds).
func v1URL(base *url.URL, query string, from, to int64) string {
	u := *base
	u.Path = strings.TrimSuffix(u.Path, "/") + pathV1
	u.RawQuery = url.Values{
		"query": {query},
		"from":  {strconv.FormatInt(from, 10)},
		"to":    {strconv.FormatInt(to, 10)},
	}.Encode()
	return u.String()
}

// v2URL is the POST URL of a v2 scalar query.
func v2URL(base *url.URL) string {
	u := *base
	u.Path = strings.TrimSuffix(u.Path, "/") + pathV2
	u.RawQuery = ""
	return u.String()
}

// scalarRequest is Datadog's ScalarFormulaQueryRequest.
type scalarRequest struct {
	Data struct {
		Type       string `json:"type"`
		Attributes struct {
			From     int64           `json:"from"`
			To       int64           `json:"to"`
			Queries  []scalarQuery   `json:"queries"`
			Formulas []scalarFormula `json:"formulas"`
		} `json:"attributes"`
	} `json:"data"`
}

type scalarQuery struct {
	DataSource string `json:"data_source"`
	Name       string `json:"name"`
	Query      string `json:"query"`
	Aggregator string `json:"aggregator"`
}

type scalarFormula struct {
	Formula string `json:"formula"`
}

// v2Body is the JSON body of a v2 scalar query over [from, to] (Unix
// seconds; Datadog's v2 takes milliseconds).
func v2Body(p plan, from, to int64) ([]byte, error) {
	var r scalarRequest
	r.Data.Type = "scalar_request"
	a := &r.Data.Attributes
	a.From, a.To = from*1000, to*1000
	for _, n := range p.names() {
		a.Queries = append(a.Queries, scalarQuery{DataSource: "metrics", Name: n, Query: p.queries[n], Aggregator: p.aggregator})
	}
	a.Formulas = []scalarFormula{}
	if p.formula != "" {
		a.Formulas = append(a.Formulas, scalarFormula{Formula: p.formula})
	}
	return json.Marshal(r)
}
