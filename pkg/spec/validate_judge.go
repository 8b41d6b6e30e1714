package spec

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var judgeDirections = []string{JudgeIncrease, JudgeDecrease, JudgeEither}

// validateJudge returns every problem of the sluice/judge block raw at p.
// Unknown fields are errors here, not warnings: a misspelt mustHaveData
// would quietly let a canary without data through.
func validateJudge(raw json.RawMessage, p *field.Path) field.ErrorList {
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return field.ErrorList{field.Invalid(p, string(raw), err.Error())}
	}
	if _, ok := doc.(map[string]any); !ok {
		return field.ErrorList{field.Invalid(p, string(raw), "must be an object with baseline, canary and metrics")}
	}
	var errs field.ErrorList
	for _, w := range unknownFields(p, doc, reflect.TypeFor[Judge]()) {
		errs = append(errs, &field.Error{Type: field.ErrorTypeForbidden, Field: w.Field, BadValue: "", Detail: w.Detail})
	}
	var j Judge
	if err := json.Unmarshal(raw, &j); err != nil {
		return append(errs, field.Invalid(p, string(raw), err.Error()))
	}
	for _, f := range []struct{ name, value string }{{"baseline", j.Baseline}, {"canary", j.Canary}} {
		if f.value == "" {
			errs = append(errs, field.Required(p.Child(f.name), "the revision that replaces "+JudgeRevision))
		}
	}
	if j.Baseline != "" && j.Baseline == j.Canary && !isPlaceholder(j.Baseline) {
		errs = append(errs, field.Invalid(p.Child("canary"), j.Canary, "must differ from baseline: the judge would compare a revision with itself"))
	}
	if c := j.Confidence; c != nil && (*c <= 0 || *c >= 1) {
		errs = append(errs, field.Invalid(p.Child("confidence"), *c, "must be between 0 and 1, exclusive (0.95 is a 5% chance of calling a difference that is noise)"))
	}
	mp := p.Child("metrics")
	if len(j.Metrics) == 0 {
		return append(errs, field.Required(mp, "must compare at least one metric"))
	}
	names := sets.New[string]()
	for i := range j.Metrics {
		errs = append(errs, validateJudgeMetric(&j.Metrics[i], mp.Index(i), names)...)
	}
	return errs
}

func validateJudgeMetric(m *JudgeMetric, p *field.Path, names sets.Set[string]) field.ErrorList {
	var errs field.ErrorList
	switch {
	case m.Name == "":
		errs = append(errs, field.Required(p.Child("name"), ""))
	case names.Has(m.Name):
		errs = append(errs, field.Duplicate(p.Child("name"), m.Name))
	}
	names.Insert(m.Name)
	switch dp := p.Child("direction"); {
	case m.Direction == "":
		errs = append(errs, field.Required(dp, "the change that is bad: increase, decrease or either"))
	case !slices.Contains(judgeDirections, m.Direction):
		errs = append(errs, field.NotSupported(dp, m.Direction, judgeDirections))
	}
	if t := m.Tolerance; t != nil && *t < 0 {
		errs = append(errs, field.Invalid(p.Child("tolerance"), *t, "must not be negative (0.10 tolerates a 10% change)"))
	}
	if w := m.Weight; w != nil && *w <= 0 {
		errs = append(errs, field.Invalid(p.Child("weight"), *w, "must be greater than 0; remove the metric to leave it out"))
	}
	pp := p.Child("provider")
	errs = append(errs, validateProvider(&m.Provider, pp)...)
	switch {
	case m.Provider.Job != nil:
		errs = append(errs, field.Forbidden(pp.Child("job"), "judges by itself; the judge needs a provider that returns numbers"))
	case len(m.Provider.Plugin) > 0:
		errs = append(errs, field.Forbidden(pp.Child("plugin"), "judges by itself; the judge needs a provider that returns numbers"))
	case m.Provider.CloudWatch != nil:
		errs = append(errs, field.Forbidden(pp.Child("cloudWatch"), "returns CloudWatch's MetricDataResults, which the judge does not read; the judge needs a provider that returns numbers"))
	case m.Provider.NewRelic != nil:
		errs = append(errs, field.Forbidden(pp.Child("newRelic"), "returns NRQL rows, which the judge does not read; the judge needs a provider that returns numbers"))
	case !reflect.ValueOf(m.Provider).IsZero() && !m.Provider.usesRevision():
		errs = append(errs, field.Invalid(pp, "", fmt.Sprintf("must use %s where the revision goes (in the query, for example), or the baseline and the canary would be the same measurement", JudgeRevision)))
	}
	return errs
}
