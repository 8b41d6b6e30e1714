package analysis

import (
	"math"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

func TestJudge(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name             string
		success, failure string
		result           any
		want             spec.AnalysisPhase
		wantMessage      string // substring
	}{
		{"no conditions: successful", "", "", 0.5, S, ""},
		{"success only, true", "result[0] >= 0.95", "", []float64{0.99}, S, ""},
		{"success only, false: failed", "result[0] >= 0.95", "", []float64{0.5}, F, `successCondition "result[0] >= 0.95" is false`},
		{"failure only, true", "", "result[0] > 0.05", []float64{0.1}, F, `failureCondition "result[0] > 0.05" is true`},
		{"failure only, false: successful", "", "result[0] > 0.05", []float64{0.01}, S, ""},
		{"both, success true", "result >= 0.9", "result < 0.5", 0.95, S, ""},
		{"both, failure true", "result >= 0.9", "result < 0.5", 0.1, F, "failureCondition"},
		{"both true: failure wins", "result > 0", "result > 0", 1.0, F, ""},
		{"both false: inconclusive", "result >= 0.9", "result < 0.5", 0.7, I, "neither successCondition"},
		{"empty vector indexed: error that says why", "result[0] >= 0.95", "", []float64{}, E, "the query returned no data"},
		{"empty vector indexed in the failure condition", "len(result) == 0 || result[0] < 0.01", "result[0] >= 0.05", []float64{}, E, `failureCondition "result[0] >= 0.05" could not be evaluated`},
		{"empty vector guarded: successful", "len(result) == 0 || result[0] < 0.01", "", []float64{}, S, ""},
		{"nil result: error that says why", "result > 1", "", nil, E, "guard the condition with isNil(result)"},
		{"NaN fails a comparison", "result[0] < 0.01", "", []float64{nan}, F, ""},
		{"NaN passes a failure-only comparison, as in Argo", "", "result[0] > 0.05", []float64{nan}, S, ""},
		{"isNaN", "", "isNaN(result[0])", []float64{nan}, F, ""},
		{"isNaN guard", "isNaN(result) || result >= 0.95", "", nan, S, ""},
		{"+Inf compares", "result[0] < 0.01", "", []float64{inf}, F, ""},
		{"isInf", "", "isInf(result[0])", []float64{inf}, F, ""},
		{"isInf on a finite value", "!isInf(result)", "", 1.0, S, ""},
		{"all() over a range result", "all(result, # < 1000)", "", []float64{1, 999}, S, ""},
		{"all() fails on one value", "all(result, # < 1000)", "", []float64{1, 1000}, F, ""},
		{"asFloat of a web string", "asFloat(result) >= 0.9", "", "0.95", S, ""},
		{"asInt of a web string", "asInt(result) == 3", "", "3", S, ""},
		{"asInt of a float", "asInt(result) == 3", "", 3.7, S, ""},
		{"asFloat of text: error", "asFloat(result) > 1", "", "abc", E, `asFloat("abc"): not a number`},
		{"string equality", "result == 'ok'", "", "ok", S, ""},
		{"bool result", "result == true", "", true, S, ""},
		{"isNil of JSON null", "", "isNil(result)", nil, F, ""},
		{"default replaces nil", "default(result, 0) == 0", "", nil, S, ""},
		{"default keeps a value", "default(result, 0) == 2", "", 2.0, S, ""},
		{"non-bool at run time: error", "result", "", 1.0, E, "could not be evaluated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Judge(spec.Metric{SuccessCondition: tc.success, FailureCondition: tc.failure}, metrics.Measurement{Result: tc.result})
			if m.Phase != tc.want {
				t.Fatalf("phase = %s (%s), want %s", m.Phase, m.Message, tc.want)
			}
			if !strings.Contains(m.Message, tc.wantMessage) {
				t.Errorf("message = %q, want it to contain %q", m.Message, tc.wantMessage)
			}
			if strings.Contains(m.Message, "\n") {
				t.Errorf("message spans lines: %q", m.Message)
			}
		})
	}
}

func TestJudgeKeepsProviderVerdicts(t *testing.T) {
	metric := spec.Metric{SuccessCondition: "result > 1"}
	for _, p := range []spec.AnalysisPhase{S, F, I, E} {
		if got := Judge(metric, metrics.Measurement{Phase: p, Result: 0.0}); got.Phase != p {
			t.Errorf("judged %s became %s", p, got.Phase)
		}
	}
	for _, p := range []spec.AnalysisPhase{R, P, "Bogus"} {
		if got := Judge(metric, metrics.Measurement{Phase: p}); got.Phase != E {
			t.Errorf("phase %s from a provider became %s, want Error", p, got.Phase)
		}
	}
}

// TestJudgeKeepsProviderMessage: a provider's message on an unjudged
// measurement (the judge's verdicts) stays, after the condition's.
func TestJudgeKeepsProviderMessage(t *testing.T) {
	metric := spec.Metric{SuccessCondition: "result >= 90"}
	const verdicts = "score 0: latency FAIL"
	if got := Judge(metric, metrics.Measurement{Result: 0.0, Message: verdicts}); got.Phase != F || got.Message != `successCondition "result >= 90" is false; `+verdicts {
		t.Errorf("failed: %s %q", got.Phase, got.Message)
	}
	if got := Judge(metric, metrics.Measurement{Result: 100.0, Message: "score 100"}); got.Phase != S || got.Message != "score 100" {
		t.Errorf("successful: %s %q", got.Phase, got.Message)
	}
}

func TestCompileConditions(t *testing.T) {
	tests := []struct {
		name, success, failure, wantErr string
	}{
		{"valid", "result[0] >= 0.95 && !isNaN(result[0])", "len(result) > 0 && result[0] > 1", ""},
		{"syntax error", "result[0] >=", "", `successCondition "result[0] >="`},
		{"unknown function", "", "isnan(result)", `failureCondition "isnan(result)"`},
		{"unknown variable", "reslt > 1", "", "unknown name reslt"},
		{"not a bool", "result > 1 ? 1 : 2", "", "expected bool"},
		{"wrong arity", "isNil()", "", "not enough arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileConditions(spec.Metric{SuccessCondition: tc.success, FailureCondition: tc.failure})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
