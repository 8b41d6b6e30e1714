package analysis

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// conditions are a metric's compiled successCondition and failureCondition;
// a nil program is an unset condition.
type conditions struct {
	success, failure       *vm.Program
	successSrc, failureSrc string
}

// compileConditions compiles metric's conditions. It fails for a syntax
// error, an unknown function, or an expression that cannot be a bool.
func compileConditions(metric spec.Metric) (conditions, error) {
	c := conditions{successSrc: metric.SuccessCondition, failureSrc: metric.FailureCondition}
	var errs []error
	compile := func(field, src string) *vm.Program {
		if src == "" {
			return nil
		}
		p, err := compileCondition(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %s", field, src, exprMessage(err)))
		}
		return p
	}
	c.success = compile("successCondition", metric.SuccessCondition)
	c.failure = compile("failureCondition", metric.FailureCondition)
	return c, errors.Join(errs...)
}

// compileCondition compiles one condition as every run does.
func compileCondition(src string) (*vm.Program, error) {
	return expr.Compile(src, compileOptions...)
}

// judge evaluates the conditions on result as Argo Rollouts does: both are
// evaluated, success first, and an error in either is the verdict Error;
// without conditions a measurement is Successful; with one condition only,
// the other outcome is its negation; with both, neither being true is
// Inconclusive and a true failureCondition wins over a true
// successCondition.
func (c conditions) judge(result any) (spec.AnalysisPhase, string) {
	var successOK, failureOK bool
	if c.success != nil {
		ok, err := run(c.success, result)
		if err != nil {
			return spec.AnalysisPhaseError, evalMessage("successCondition", c.successSrc, result, err)
		}
		successOK = ok
	}
	if c.failure != nil {
		ok, err := run(c.failure, result)
		if err != nil {
			return spec.AnalysisPhaseError, evalMessage("failureCondition", c.failureSrc, result, err)
		}
		failureOK = ok
	}
	switch {
	case c.success == nil && c.failure == nil:
		return spec.AnalysisPhaseSuccessful, ""
	case c.failure != nil && failureOK:
		return spec.AnalysisPhaseFailed, fmt.Sprintf("failureCondition %q is true", c.failureSrc)
	case c.success != nil && successOK:
		return spec.AnalysisPhaseSuccessful, ""
	case c.failure == nil:
		return spec.AnalysisPhaseFailed, fmt.Sprintf("successCondition %q is false", c.successSrc)
	case c.success == nil:
		return spec.AnalysisPhaseSuccessful, ""
	}
	return spec.AnalysisPhaseInconclusive, fmt.Sprintf("neither successCondition %q nor failureCondition %q is true", c.successSrc, c.failureSrc)
}

func run(p *vm.Program, result any) (bool, error) {
	out, err := expr.Run(p, conditionEnv{Result: result})
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("expected bool, but got %T", out)
	}
	return b, nil
}

// Judge gives m its verdict by metric's conditions when the provider left
// it unjudged (Phase empty), keeping the provider's message after the
// condition's; a judged measurement is returned as it is. A
// condition that fails to evaluate makes the measurement an Error whose
// message names the condition and, for an empty or nil result, says that
// the backend returned no data. A phase a provider must not return
// (Pending, Running, unknown) is made an Error.
func Judge(metric spec.Metric, m metrics.Measurement) metrics.Measurement {
	switch m.Phase {
	case spec.AnalysisPhaseSuccessful, spec.AnalysisPhaseFailed, spec.AnalysisPhaseInconclusive, spec.AnalysisPhaseError:
		return m
	case "":
	default:
		m.Message = fmt.Sprintf("provider returned phase %q, which is not a measurement's verdict", m.Phase)
		m.Phase = spec.AnalysisPhaseError
		return m
	}
	c, err := compileConditions(metric)
	if err != nil {
		m.Phase, m.Message = spec.AnalysisPhaseError, err.Error()
		return m
	}
	phase, msg := c.judge(m.Result)
	m.Phase = phase
	// A provider's own message (the judge's verdicts) says why the
	// condition came out as it did: it is kept after the condition's.
	switch {
	case m.Message == "":
		m.Message = msg
	case msg != "":
		m.Message = msg + "; " + m.Message
	}
	return m
}

// evalMessage explains a condition that failed to evaluate. Indexing an
// empty result is the common case (a query that matched no series), so it
// says so and how to guard the condition.
func evalMessage(field, src string, result any, err error) string {
	msg := fmt.Sprintf("%s %q could not be evaluated: %s", field, src, exprMessage(err))
	switch {
	case isNil(result):
		msg += "; the result is empty (no value was returned): guard the condition with isNil(result)"
	case isEmpty(result):
		msg += "; the result is empty (the query returned no data): guard the condition with len(result) == 0 || ..."
	}
	return msg
}

// exprMessage is an expr error's message without the source excerpt and
// caret lines that expr adds.
func exprMessage(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return err.Error()
}

func isEmpty(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.String:
		return rv.Len() == 0
	}
	return false
}

// conditionEnv is what conditions see: result, and Argo Rollouts'
// functions (compileOptions). Unlike Argo's, isNil and default look at
// their argument, not always at result; for isNil(result) and
// default(result, x), as Argo documents them, the outcome is the same.
type conditionEnv struct {
	Result any `expr:"result"`
}

var compileOptions = []expr.Option{
	expr.Env(conditionEnv{}),
	expr.AsBool(),
	expr.Function("asInt", func(p ...any) (any, error) { return asInt(p[0]) }, new(func(any) int64)),
	expr.Function("asFloat", func(p ...any) (any, error) { return asFloat(p[0]) }, new(func(any) float64)),
	expr.Function("isNaN", func(p ...any) (any, error) { return isNaN(p[0]) }, new(func(any) bool)),
	expr.Function("isInf", func(p ...any) (any, error) { return isInf(p[0]) }, new(func(any) bool)),
	expr.Function("isNil", func(p ...any) (any, error) { return isNil(p[0]), nil }, new(func(any) bool)),
	expr.Function("default", func(p ...any) (any, error) { return defaultValue(p[0], p[1]), nil }, new(func(any, any) any)),
}

func asInt(in any) (int64, error) {
	switch v := in.(type) {
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("asInt(%q): not an integer", v)
		}
		return n, nil
	case float64:
		return int64(v), nil
	case float32:
		return int64(v), nil
	}
	rv := reflect.ValueOf(in)
	switch {
	case rv.CanInt():
		return rv.Int(), nil
	case rv.CanUint():
		return int64(rv.Uint()), nil
	}
	return 0, fmt.Errorf("asInt() not supported on %T", in)
}

func asFloat(in any) (float64, error) {
	switch v := in.(type) {
	case string:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("asFloat(%q): not a number", v)
		}
		return f, nil
	case float64:
		return v, nil
	case float32:
		return float64(v), nil
	}
	rv := reflect.ValueOf(in)
	switch {
	case rv.CanInt():
		return float64(rv.Int()), nil
	case rv.CanUint():
		return float64(rv.Uint()), nil
	}
	return 0, fmt.Errorf("asFloat() not supported on %T", in)
}

// isNaN and isInf accept any number; other numbers than floats are never
// NaN or infinite.
func isNaN(in any) (bool, error) {
	f, err := asFloat(in)
	if _, isString := in.(string); isString || err != nil {
		return false, fmt.Errorf("isNaN() not supported on %T", in)
	}
	return math.IsNaN(f), nil
}

func isInf(in any) (bool, error) {
	f, err := asFloat(in)
	if _, isString := in.(string); isString || err != nil {
		return false, fmt.Errorf("isInf() not supported on %T", in)
	}
	return math.IsInf(f, 0), nil
}

func isNil(in any) bool {
	if in == nil {
		return true
	}
	rv := reflect.ValueOf(in)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

func defaultValue(in, fallback any) any {
	if isNil(in) {
		return fallback
	}
	return in
}
