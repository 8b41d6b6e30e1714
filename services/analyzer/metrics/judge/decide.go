package judge

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics/judge/mannwhitney"
)

// Errors of Compare and Score: the judge cannot say, and says why instead
// of guessing.
var (
	// ErrTooFewSamples: no arrangement of that many values could make a
	// difference significant at the confidence asked for.
	ErrTooFewSamples = errors.New("too few samples")
	// ErrNotFinite: a sample holds NaN or an infinity.
	ErrNotFinite = errors.New("sample holds NaN or an infinity")
	// ErrNothingScored: no metric had data.
	ErrNothingScored = errors.New("no metric had data")
)

// Outcome is a metric's verdict.
type Outcome string

const (
	Pass   Outcome = "PASS"
	Fail   Outcome = "FAIL"
	NoData Outcome = "NODATA"
)

// Samples are a metric's values for the baseline and for the canary.
type Samples struct {
	Baseline, Canary []float64
}

// Verdict is one metric's comparison.
type Verdict struct {
	Metric  string
	Outcome Outcome
	// Weight and Critical are the metric's.
	Weight   float64
	Critical bool
	// NBaseline and NCanary are the sample sizes.
	NBaseline, NCanary int
	// BaselineMedian and CanaryMedian describe the samples (NaN without
	// data).
	BaselineMedian, CanaryMedian float64
	// Change is the canary's shift from the baseline (the Hodges-Lehmann
	// estimate) relative to the smaller of the two medians in magnitude:
	// +2 is 3x, -2 is a third. NaN without data.
	Change float64
	// P is the test's p-value in the metric's bad direction (NaN without
	// data).
	P float64
}

// alternative is the test's hypothesis for direction, the canary being x.
func alternative(direction string) mannwhitney.Alternative {
	switch direction {
	case spec.JudgeIncrease:
		return mannwhitney.Greater
	case spec.JudgeDecrease:
		return mannwhitney.Less
	}
	return mannwhitney.TwoSided
}

// significance is 1 - confidence, rounded so that 1 - 0.95 is 0.05.
func significance(confidence float64) float64 {
	return math.Round((1-confidence)*1e12) / 1e12
}

// Compare judges one metric's samples at confidence. The metric fails when
// the canary differs from the baseline in the metric's bad direction with a
// p-value at most 1 - confidence AND by more than its tolerance. Without
// data on either side it is NoData, or Fail with mustHaveData. Samples
// holding NaN or an infinity are ErrNotFinite; samples too small for any
// difference to be significant are ErrTooFewSamples: both name the metric,
// the sizes and what to change.
func Compare(m spec.JudgeMetric, confidence float64, s Samples) (Verdict, error) {
	v := Verdict{
		Metric: m.Name, Weight: m.WeightOrDefault(), Critical: m.Critical,
		NBaseline: len(s.Baseline), NCanary: len(s.Canary),
		BaselineMedian: median(s.Baseline), CanaryMedian: median(s.Canary),
		Change: math.NaN(), P: math.NaN(),
	}
	if v.NBaseline == 0 || v.NCanary == 0 {
		v.Outcome = NoData
		if m.MustHaveData {
			v.Outcome = Fail
		}
		return v, nil
	}
	for _, side := range []struct {
		name   string
		values []float64
	}{{"baseline", s.Baseline}, {"canary", s.Canary}} {
		if n := nonFinite(side.values); n > 0 {
			return v, fmt.Errorf("metric %s: %w: %d of the %s's %d values (a ratio over no requests gives NaN); drop them in the query, for example with `>= 0`", m.Name, ErrNotFinite, n, side.name, len(side.values))
		}
	}
	alpha := significance(confidence)
	alt := alternative(m.Direction)
	if reachable(v.NCanary, v.NBaseline, alt) > alpha {
		return v, fmt.Errorf("metric %s: %w: %d baseline and %d canary values cannot show a difference at confidence %g; %s needs at least %d values on each side (more to find small differences): widen the range or shorten the step", m.Name, ErrTooFewSamples, v.NBaseline, v.NCanary, confidence, m.Direction, MinSamples(confidence, m.Direction))
	}
	res, err := mannwhitney.Test(s.Canary, s.Baseline, alt)
	if err != nil {
		return v, fmt.Errorf("metric %s: %w", m.Name, err)
	}
	shift, err := mannwhitney.Shift(s.Canary, s.Baseline)
	if err != nil {
		return v, fmt.Errorf("metric %s: %w", m.Name, err)
	}
	v.P = res.P
	v.Change = relative(shift, min(math.Abs(v.BaselineMedian), math.Abs(v.CanaryMedian)))
	tol := m.ToleranceOrDefault()
	var bad bool
	switch m.Direction {
	case spec.JudgeIncrease:
		bad = v.Change > tol
	case spec.JudgeDecrease:
		bad = v.Change < -tol
	default:
		bad = math.Abs(v.Change) > tol
	}
	v.Outcome = Pass
	if bad && res.P <= alpha {
		v.Outcome = Fail
	}
	return v, nil
}

// relative is shift over base: 0 when both are 0, an infinity when only
// base is (any change from nothing is beyond every tolerance).
func relative(shift, base float64) float64 {
	switch {
	case shift == 0:
		return 0
	case base == 0:
		return math.Copysign(math.Inf(1), shift)
	}
	return shift / base
}

// reachable is the smallest p-value any samples of sizes m (the canary) and
// n can give under alt: that of samples that do not overlap at all. Below
// mannwhitney.ExactBelow it is exact, one arrangement in C(m+n, m) (two
// for a two-sided test); above, it is what the normal approximation gives
// such samples.
func reachable(m, n int, alt mannwhitney.Alternative) float64 {
	sides := 1.0
	if alt == mannwhitney.TwoSided {
		sides = 2
	}
	if m < mannwhitney.ExactBelow && n < mannwhitney.ExactBelow {
		return min(1, sides/binomial(m+n, m))
	}
	// The canary (m values) above every baseline value, or below for Less.
	x, y := make([]float64, m), make([]float64, n)
	for i := range x {
		x[i] = float64(n + i)
	}
	for i := range y {
		y[i] = float64(i)
	}
	if alt == mannwhitney.Less {
		for i := range x {
			x[i] = -x[i]
		}
		for i := range y {
			y[i] = -y[i]
		}
	}
	r, err := mannwhitney.Test(x, y, alt)
	if err != nil {
		return 1
	}
	return r.P
}

// binomial is C(n, k), as a float64.
func binomial(n, k int) float64 {
	c := 1.0
	for i := 1; i <= k; i++ {
		c = c * float64(n-k+i) / float64(i)
	}
	return c
}

// MinSamples is the smallest number of values, the same on each side, with
// which a difference in direction can be significant at confidence.
func MinSamples(confidence float64, direction string) int {
	alpha, alt := significance(confidence), alternative(direction)
	n := 1
	for reachable(n, n, alt) > alpha && n < mannwhitney.ExactBelow {
		n++
	}
	return n
}

func nonFinite(values []float64) int {
	n := 0
	for _, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			n++
		}
	}
	return n
}

func median(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	s := slices.Clone(values)
	slices.Sort(s)
	k := len(s)
	if k%2 == 1 {
		return s[k/2]
	}
	return (s[k/2-1] + s[k/2]) / 2
}

// Score is 100 times the weight of the passing metrics over the weight of
// the metrics scored (NoData ones are left out), or 0 when a critical
// metric failed. It returns ErrNothingScored when every metric is NoData.
func Score(verdicts []Verdict) (float64, error) {
	var passed, scored float64
	for _, v := range verdicts {
		switch v.Outcome {
		case Fail:
			if v.Critical {
				return 0, nil
			}
			scored += v.Weight
		case Pass:
			passed += v.Weight
			scored += v.Weight
		}
	}
	if scored == 0 {
		names := make([]string, 0, len(verdicts))
		for _, v := range verdicts {
			names = append(names, v.Metric)
		}
		return 0, fmt.Errorf("%w: %s; set mustHaveData on the metrics that must be measured, and check their queries", ErrNothingScored, strings.Join(names, ", "))
	}
	return 100 * passed / scored, nil
}

// MaxMessage bounds a measurement's message, as the other providers bound
// theirs: it goes into every status event.
const MaxMessage = 512

// Message lists every verdict, failed ones first, then those without data,
// each with its medians, relative change, p-value and sample sizes:
//
//	score 0: latency-p90 FAIL critical 0.1→0.3 +200% p=2e-06 n=12/12; errors PASS ...
//
// It is cut at MaxMessage with the number of verdicts left out.
func Message(score float64, verdicts []Verdict) string {
	order := map[Outcome]int{Fail: 0, NoData: 1, Pass: 2}
	sorted := slices.Clone(verdicts)
	slices.SortStableFunc(sorted, func(a, b Verdict) int { return order[a.Outcome] - order[b.Outcome] })
	head := "score " + num(score) + ": "
	var b strings.Builder
	b.WriteString(head)
	for i, v := range sorted {
		part := line(v)
		if i > 0 {
			part = "; " + part
		}
		more := fmt.Sprintf("; %d more", len(sorted)-i)
		if i == len(sorted)-1 {
			more = ""
		}
		if b.Len()+len(part)+len(more) > MaxMessage && i > 0 {
			b.WriteString(fmt.Sprintf("; %d more", len(sorted)-i))
			break
		}
		b.WriteString(part)
	}
	return b.String()
}

func line(v Verdict) string {
	var b strings.Builder
	b.WriteString(v.Metric + " " + string(v.Outcome))
	if v.Critical {
		b.WriteString(" critical")
	}
	if v.NBaseline == 0 || v.NCanary == 0 {
		fmt.Fprintf(&b, " no data n=%d/%d", v.NBaseline, v.NCanary)
		return b.String()
	}
	fmt.Fprintf(&b, " %s→%s %s p=%s n=%d/%d", num(v.BaselineMedian), num(v.CanaryMedian), percent(v.Change), num(v.P), v.NBaseline, v.NCanary)
	return b.String()
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', 3, 64) }

func percent(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf%"
	case math.IsInf(f, -1):
		return "-Inf%"
	}
	return fmt.Sprintf("%+.0f%%", 100*f)
}
