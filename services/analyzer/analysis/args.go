package analysis

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/pkg/spec"
)

// placeholder matches {{args.NAME}}, spaces allowed inside the braces as
// Argo Rollouts allows them ({{ args.NAME }}).
var placeholder = regexp.MustCompile(`\{\{\s*args\.([A-Za-z0-9_.-]+?)\s*\}\}`)

// Substitute returns metric with every {{args.NAME}} whose NAME is in values
// replaced by its value, in every string of the metric: queries, URLs,
// headers, bodies, conditions, counts and limits. Placeholders of other
// names are left as they are. Values are inserted as text, so a value with
// quotes or newlines (a PEM certificate) stays intact.
func Substitute(metric spec.Metric, values map[string]string) (spec.Metric, error) {
	if len(values) == 0 {
		return metric, nil
	}
	data, err := json.Marshal(metric)
	if err != nil {
		return metric, fmt.Errorf("metric %q: %w", metric.Name, err)
	}
	data = placeholder.ReplaceAllFunc(data, func(ref []byte) []byte {
		name := string(placeholder.FindSubmatch(ref)[1])
		v, ok := values[name]
		if !ok {
			return ref
		}
		quoted, _ := json.Marshal(v) // a string always marshals
		return quoted[1 : len(quoted)-1]
	})
	var out spec.Metric
	if err := json.Unmarshal(data, &out); err != nil {
		return metric, fmt.Errorf("metric %q: substituting arguments: %w", metric.Name, err)
	}
	return out, nil
}

// Placeholders lists the names of the arguments metric refers to, sorted,
// each once.
func Placeholders(metric spec.Metric) []string {
	data, err := json.Marshal(metric)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var names []string
	for _, m := range placeholder.FindAllSubmatch(data, -1) {
		if n := string(m[1]); !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// MergeArgs gives the declared arguments of a run the values the
// referencing rollout supplies, as Argo Rollouts' MergeArgs does: a
// supplied value replaces a declared one, supplied arguments no template
// declares are ignored. The caller resolves valueFrom (fieldRef,
// podTemplateHashValue) into Value before; a supplied argument still
// holding only a valueFrom is an error. Every declared argument must end
// with a value or a valueFrom.secretKeyRef: the error names all that do
// not.
func MergeArgs(supplied []spec.AnalysisRunArgument, declared []spec.Argument) ([]spec.Argument, error) {
	out := make([]spec.Argument, len(declared))
	copy(out, declared)
	var errs []error
	for _, s := range supplied {
		i := argIndex(out, s.Name)
		if i < 0 {
			continue
		}
		if s.ValueFrom != nil && s.Value == "" {
			errs = append(errs, fmt.Errorf("argument %q: valueFrom must be resolved to a value before the run is created", s.Name))
			continue
		}
		v := s.Value
		out[i].Value, out[i].ValueFrom = &v, nil
	}
	if err := missingArgs(out); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// missingArgs names the arguments with neither a value nor a secret to read
// it from.
func missingArgs(args []spec.Argument) error {
	var missing []string
	for _, a := range args {
		if a.Value == nil && !isSecret(a) {
			missing = append(missing, fmt.Sprintf("%q", a.Name))
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("argument %s has no value", missing[0])
	}
	return fmt.Errorf("arguments %s have no value", strings.Join(missing, ", "))
}

func isSecret(a spec.Argument) bool {
	return a.Value == nil && a.ValueFrom != nil && a.ValueFrom.SecretKeyRef != nil
}

func argIndex(args []spec.Argument, name string) int {
	for i, a := range args {
		if a.Name == name {
			return i
		}
	}
	return -1
}

// Merge flattens several templates into the spec of one run, as Argo
// Rollouts does when a rollout references several templates: metrics are
// concatenated in order and their names must be unique across templates;
// arguments of the same name are merged, and two different values for one
// are an error; dryRun and measurementRetention rules are those of the
// rollout followed by those of the templates, and two rules for one
// metricName are an error. args are the rollout's, resolved (see
// MergeArgs). Pass AnalysisTemplates before ClusterAnalysisTemplates to
// match Argo's order.
func Merge(templates []spec.AnalysisTemplateSpec, args []spec.AnalysisRunArgument, dryRun []spec.DryRun, retention []spec.MeasurementRetention) (spec.AnalysisRunSpec, error) {
	var errs []error
	var out spec.AnalysisRunSpec
	names := map[string]bool{}
	var declared []spec.Argument
	out.DryRun = append(out.DryRun, dryRun...)
	out.MeasurementRetention = append(out.MeasurementRetention, retention...)
	for _, t := range templates {
		for _, m := range t.Metrics {
			if names[m.Name] {
				errs = append(errs, fmt.Errorf("two metrics have the same name %q", m.Name))
			}
			names[m.Name] = true
			out.Metrics = append(out.Metrics, m)
		}
		for _, a := range t.Args {
			var err error
			declared, err = mergeArg(declared, a)
			if err != nil {
				errs = append(errs, err)
			}
		}
		out.DryRun = append(out.DryRun, t.DryRun...)
		out.MeasurementRetention = append(out.MeasurementRetention, t.MeasurementRetention...)
	}
	seen := map[string]bool{}
	for _, d := range out.DryRun {
		if seen[d.MetricName] {
			errs = append(errs, fmt.Errorf("two dryRun rules for metricName %q", d.MetricName))
		}
		seen[d.MetricName] = true
	}
	seen = map[string]bool{}
	for _, r := range out.MeasurementRetention {
		if seen[r.MetricName] {
			errs = append(errs, fmt.Errorf("two measurementRetention rules for metricName %q", r.MetricName))
		}
		seen[r.MetricName] = true
	}
	merged, err := MergeArgs(args, declared)
	if err != nil {
		errs = append(errs, err)
	}
	out.Args = merged
	if len(errs) > 0 {
		return spec.AnalysisRunSpec{}, errors.Join(errs...)
	}
	return out, nil
}

// mergeArg adds a to args: a new name is appended; a known one keeps its
// value unless it has none, and two different values are an error.
func mergeArg(args []spec.Argument, a spec.Argument) ([]spec.Argument, error) {
	i := argIndex(args, a.Name)
	if i < 0 {
		return append(args, a), nil
	}
	prev := args[i]
	if prev.Value != nil && a.Value != nil && *prev.Value != *a.Value {
		return args, fmt.Errorf("argument %q specified multiple times with different values: %q, %q", a.Name, *prev.Value, *a.Value)
	}
	if prev.Value == nil && (a.Value != nil || prev.ValueFrom == nil) {
		args[i] = a
	}
	return args, nil
}

// CheckTemplate reports the problems of a template that package spec's
// validation cannot see, so that a template can be rejected when it is
// applied rather than when a run starts: conditions that do not compile,
// failureLimit -1 without consecutiveSuccessLimit, dryRun and
// measurementRetention rules that are not "*" or a regular expression.
// Each problem is one line that starts with its field path under the
// template's spec ("metrics[0].successCondition: ..."). Conditions and
// limits holding {{args.NAME}} are checked by New, once the arguments are
// known.
func CheckTemplate(t spec.AnalysisTemplateSpec) error {
	var errs []error
	for i, m := range t.Metrics {
		at := fmt.Sprintf("metrics[%d]", i)
		for _, c := range []struct{ field, src string }{{"successCondition", m.SuccessCondition}, {"failureCondition", m.FailureCondition}} {
			if c.src == "" || strings.Contains(c.src, "{{") {
				continue
			}
			if _, err := compileCondition(c.src); err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: Invalid value: %q: %s", at, c.field, c.src, exprMessage(err)))
			}
		}
		limitsOnly := spec.Metric{Interval: m.Interval, InitialDelay: m.InitialDelay, Count: m.Count, FailureLimit: m.FailureLimit,
			InconclusiveLimit: m.InconclusiveLimit, ConsecutiveErrorLimit: m.ConsecutiveErrorLimit, ConsecutiveSuccessLimit: m.ConsecutiveSuccessLimit}
		if len(Placeholders(limitsOnly)) == 0 {
			if _, err := limitsOf(m); err != nil {
				for _, e := range unjoin(err) {
					errs = append(errs, fmt.Errorf("%s (%q): %w", at, m.Name, e))
				}
			}
		}
	}
	for i, d := range t.DryRun {
		if err := checkPattern(d.MetricName); err != nil {
			errs = append(errs, fmt.Errorf("dryRun[%d]: %w", i, err))
		}
	}
	for i, r := range t.MeasurementRetention {
		if err := checkPattern(r.MetricName); err != nil {
			errs = append(errs, fmt.Errorf("measurementRetention[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func checkPattern(p string) error {
	if p == "*" {
		return nil
	}
	if _, err := regexp.Compile(p); err != nil {
		return fmt.Errorf("metricName %q is not \"*\" or a regular expression: %v", p, err)
	}
	return nil
}
