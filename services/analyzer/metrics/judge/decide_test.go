package judge

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics/judge/mannwhitney"
)

func metric(name, direction string, tolerance float64) spec.JudgeMetric {
	return spec.JudgeMetric{Name: name, Direction: direction, Tolerance: &tolerance}
}

// noisy is n values around center, spread by spread, from r.
func noisy(r *rand.Rand, n int, center, spread float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = center + spread*r.NormFloat64()
	}
	return out
}

func flip(direction string) string {
	switch direction {
	case spec.JudgeIncrease:
		return spec.JudgeDecrease
	case spec.JudgeDecrease:
		return spec.JudgeIncrease
	}
	return direction
}

func scale(values []float64, k float64) []float64 {
	out := make([]float64, len(values))
	for i, v := range values {
		out[i] = v * k
	}
	return out
}

// cases are random pairs of samples, some shifted, some not, with random
// sizes, directions and tolerances.
type randomCase struct {
	m spec.JudgeMetric
	s Samples
}

func randomCases(seed uint64, n int) []randomCase {
	r := rand.New(rand.NewPCG(seed, 1))
	dirs := []string{spec.JudgeIncrease, spec.JudgeDecrease, spec.JudgeEither}
	out := make([]randomCase, n)
	for i := range out {
		nb, nc := 4+r.IntN(40), 4+r.IntN(40)
		factor := []float64{1, 1.05, 1.3, 0.7, 3, 0.33}[r.IntN(6)]
		out[i] = randomCase{
			m: metric("m", dirs[r.IntN(3)], []float64{0, 0.1, 0.5}[r.IntN(3)]),
			s: Samples{Baseline: noisy(r, nb, 100, 10), Canary: noisy(r, nc, 100*factor, 10*factor)},
		}
	}
	return out
}

// TestSwapAndFlip: swapping the baseline and the canary and flipping the
// direction gives the same verdicts and the same score.
func TestSwapAndFlip(t *testing.T) {
	cases := randomCases(19, 300)
	var straight, swapped []Verdict
	outcomes := map[Outcome]int{}
	for i, c := range cases {
		v, err := Compare(c.m, 0.95, c.s)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		fm := c.m
		fm.Direction = flip(c.m.Direction)
		w, err := Compare(fm, 0.95, Samples{Baseline: c.s.Canary, Canary: c.s.Baseline})
		if err != nil {
			t.Fatalf("case %d swapped: %v", i, err)
		}
		// P is summed in another order on the other side: equal to
		// rounding.
		if v.Outcome != w.Outcome || math.Abs(v.P-w.P) > 1e-9 || v.Change != -w.Change {
			t.Errorf("case %d (%s, tolerance %g): %s p=%g change %g; swapped and flipped: %s p=%g change %g", i, c.m.Direction, *c.m.Tolerance, v.Outcome, v.P, v.Change, w.Outcome, w.P, w.Change)
		}
		outcomes[v.Outcome]++
		straight, swapped = append(straight, v), append(swapped, w)
	}
	if outcomes[Pass] < 30 || outcomes[Fail] < 30 {
		t.Fatalf("outcomes %v: the cases do not exercise both verdicts", outcomes)
	}
	for k := 0; k+10 <= len(straight); k += 10 {
		a, errA := Score(straight[k : k+10])
		b, errB := Score(swapped[k : k+10])
		if a != b || errA != nil || errB != nil {
			t.Errorf("scores of cases %d..%d: %g (%v) and %g (%v)", k, k+9, a, errA, b, errB)
		}
	}
}

// TestScaleInvariance: measuring in other units (both samples times a
// positive constant) changes no verdict.
func TestScaleInvariance(t *testing.T) {
	for i, c := range randomCases(7, 200) {
		v, err := Compare(c.m, 0.95, c.s)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		for _, k := range []float64{1e-3, 3, 1e6} {
			w, err := Compare(c.m, 0.95, Samples{Baseline: scale(c.s.Baseline, k), Canary: scale(c.s.Canary, k)})
			if err != nil {
				t.Fatalf("case %d times %g: %v", i, k, err)
			}
			if v.Outcome != w.Outcome || math.Abs(v.Change-w.Change) > 1e-9 {
				t.Errorf("case %d times %g: %s change %g, was %s change %g", i, k, w.Outcome, w.Change, v.Outcome, v.Change)
			}
		}
	}
}

func TestEqualSamplesPass(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	same := noisy(r, 12, 0.2, 0.05)
	constant := slices.Repeat([]float64{0.2}, 12)
	for _, s := range [][]float64{same, constant} {
		for _, dir := range []string{spec.JudgeIncrease, spec.JudgeDecrease, spec.JudgeEither} {
			v, err := Compare(metric("latency", dir, 0), 0.95, Samples{Baseline: s, Canary: slices.Clone(s)})
			if err != nil || v.Outcome != Pass || v.Change != 0 {
				t.Errorf("%s on equal samples: %s change %g p %g, %v", dir, v.Outcome, v.Change, v.P, err)
			}
		}
	}
}

// TestThreeTimesSlowerFails: a canary 3x as slow, 12 values a side, fails
// a critical latency metric and the score is 0, whatever the other metric.
func TestThreeTimesSlowerFails(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	base := noisy(r, 12, 0.1, 0.01)
	m := metric("latency-p90", spec.JudgeIncrease, 0.1)
	m.Critical = true
	v, err := Compare(m, 0.95, Samples{Baseline: base, Canary: scale(noisy(r, 12, 0.1, 0.01), 3)})
	if err != nil {
		t.Fatal(err)
	}
	if v.Outcome != Fail || v.P > 0.001 || v.Change < 1.5 || v.Change > 2.5 {
		t.Fatalf("3x slower: %s p=%g change %g, want FAIL with p < 0.001 and a change near +200%%", v.Outcome, v.P, v.Change)
	}
	ok, err := Compare(metric("errors", spec.JudgeIncrease, 0), 0.95, Samples{Baseline: base, Canary: base})
	if err != nil {
		t.Fatal(err)
	}
	score, err := Score([]Verdict{v, ok})
	if err != nil || score != 0 {
		t.Fatalf("score = %g, %v; want 0 for a failed critical metric", score, err)
	}
	msg := Message(score, []Verdict{ok, v})
	if !strings.HasPrefix(msg, "score 0: latency-p90 FAIL critical 0.0983→0.296 +203% p=") || !strings.Contains(msg, "n=12/12; errors PASS") {
		t.Errorf("message %q: want the failed metric first with its medians and sizes", msg)
	}
	// The same shift in the direction that is not bad passes.
	m.Direction = spec.JudgeDecrease
	if v, _ := Compare(m, 0.95, Samples{Baseline: base, Canary: scale(base, 3)}); v.Outcome != Pass {
		t.Errorf("3x higher on a decrease metric: %s, want PASS", v.Outcome)
	}
}

// TestToleranceAndConfidence: a significant difference within tolerance
// passes; one that is not significant passes.
func TestToleranceAndConfidence(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	base := noisy(r, 30, 100, 1)
	canary := scale(noisy(r, 30, 100, 1), 1.05) // 5% slower, clearly
	if v, _ := Compare(metric("l", spec.JudgeIncrease, 0.10), 0.95, Samples{base, canary}); v.Outcome != Pass || v.P > 0.001 {
		t.Errorf("5%% within a 10%% tolerance: %s p=%g, want PASS though significant", v.Outcome, v.P)
	}
	if v, _ := Compare(metric("l", spec.JudgeIncrease, 0.01), 0.95, Samples{base, canary}); v.Outcome != Fail {
		t.Errorf("5%% beyond a 1%% tolerance: %s, want FAIL", v.Outcome)
	}
	// Four values a side, interleaved: 3x apart in median but not
	// significant.
	v, err := Compare(metric("l", spec.JudgeIncrease, 0), 0.95, Samples{Baseline: []float64{1, 3, 5, 7}, Canary: []float64{2, 4, 6, 21}})
	if err != nil || v.Outcome != Pass || v.P <= 0.05 {
		t.Errorf("overlapping samples: %s p=%g %v, want PASS", v.Outcome, v.P, err)
	}
}

func TestTooFewSamples(t *testing.T) {
	if got := MinSamples(0.95, spec.JudgeIncrease); got != 3 {
		t.Errorf("MinSamples(0.95, increase) = %d, want 3 (1/C(6,3) = 0.05)", got)
	}
	if got := MinSamples(0.95, spec.JudgeEither); got != 4 {
		t.Errorf("MinSamples(0.95, either) = %d, want 4 (2/C(8,4) = 0.029)", got)
	}
	if got := MinSamples(0.99, spec.JudgeIncrease); got != 5 {
		t.Errorf("MinSamples(0.99, increase) = %d, want 5 (1/C(10,5) = 0.004)", got)
	}
	if got := MinSamples(0.90, spec.JudgeEither); got != 3 {
		t.Errorf("MinSamples(0.90, either) = %d, want 3 (2/C(6,3) = 0.1)", got)
	}
	if got := MinSamples(0.99, spec.JudgeEither); got != 5 {
		t.Errorf("MinSamples(0.99, either) = %d, want 5 (2/C(10,5) = 0.008)", got)
	}
	_, err := Compare(metric("latency", spec.JudgeEither, 0), 0.95, Samples{Baseline: []float64{1, 2, 3}, Canary: []float64{10, 20, 30}})
	if !errors.Is(err, ErrTooFewSamples) {
		t.Fatalf("3 values a side, two-sided: %v, want ErrTooFewSamples", err)
	}
	for _, want := range []string{"latency", "3 baseline and 3 canary values", "at least 4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestReachable: the smallest p-value is that of samples that do not
// overlap, as the test itself computes it, exact or approximate.
func TestReachable(t *testing.T) {
	separated := func(m, n int) (x, y []float64) {
		for i := range m {
			x = append(x, float64(n+i))
		}
		for i := range n {
			y = append(y, float64(i))
		}
		return x, y
	}
	for m := 1; m <= 8; m++ {
		for n := 1; n <= 8; n++ {
			x, y := separated(m, n)
			for _, alt := range []mannwhitney.Alternative{mannwhitney.Greater, mannwhitney.TwoSided} {
				r, err := mannwhitney.Test(x, y, alt)
				if got := reachable(m, n, alt); err != nil || math.Abs(got-r.P) > 1e-12 {
					t.Errorf("reachable(%d, %d, %v) = %g, the test gives %g (%v)", m, n, alt, got, r.P, err)
				}
			}
			r, _ := mannwhitney.Test(y, x, mannwhitney.Less)
			if got := reachable(n, m, mannwhitney.Less); math.Abs(got-r.P) > 1e-12 {
				t.Errorf("reachable(%d, %d, Less) = %g, the test gives %g", n, m, got, r.P)
			}
		}
	}
	up, down := reachable(60, 60, mannwhitney.Greater), reachable(60, 60, mannwhitney.Less)
	// (mannwhitney computes Less's approximate p as 1 - P(Z > z), which
	// rounds a p this small to 0.)
	if up > 1e-10 || down > 1e-10 {
		t.Errorf("60 values a side: %g increasing, %g decreasing; want both tiny", up, down)
	}
}

func TestNotFinite(t *testing.T) {
	for _, bad := range []float64{math.NaN(), math.Inf(1)} {
		_, err := Compare(metric("latency", spec.JudgeIncrease, 0), 0.95, Samples{Baseline: []float64{1, 2, 3, 4}, Canary: []float64{1, bad, 3, 4}})
		if !errors.Is(err, ErrNotFinite) || !strings.Contains(err.Error(), "1 of the canary's 4 values") {
			t.Errorf("canary with %g: %v, want ErrNotFinite naming the count", bad, err)
		}
	}
}

func TestNoData(t *testing.T) {
	full := []float64{1, 2, 3, 4}
	m := metric("rps", spec.JudgeDecrease, 0)
	v, err := Compare(m, 0.95, Samples{Baseline: full})
	if err != nil || v.Outcome != NoData {
		t.Fatalf("no canary values: %s, %v; want NODATA", v.Outcome, err)
	}
	if _, err := Score([]Verdict{v}); !errors.Is(err, ErrNothingScored) || !strings.Contains(err.Error(), "rps") {
		t.Errorf("only NODATA: %v, want ErrNothingScored naming rps", err)
	}
	pass, _ := Compare(metric("latency", spec.JudgeIncrease, 0), 0.95, Samples{full, full})
	if s, err := Score([]Verdict{v, pass}); s != 100 || err != nil {
		t.Errorf("NODATA and PASS: %g, %v; want 100 (NODATA left out)", s, err)
	}
	m.MustHaveData = true
	v, _ = Compare(m, 0.95, Samples{Baseline: full, Canary: []float64{}})
	if v.Outcome != Fail {
		t.Fatalf("no canary values with mustHaveData: %s, want FAIL", v.Outcome)
	}
	if s, _ := Score([]Verdict{v, pass}); s != 50 {
		t.Errorf("FAIL (no data) and PASS: %g, want 50", s)
	}
	if msg := Message(50, []Verdict{pass, v}); !strings.Contains(msg, "rps FAIL no data n=4/0") {
		t.Errorf("message %q does not name the metric without data", msg)
	}
}

func TestScoreWeights(t *testing.T) {
	vs := []Verdict{
		{Metric: "a", Outcome: Pass, Weight: 2},
		{Metric: "b", Outcome: Fail, Weight: 1},
		{Metric: "c", Outcome: NoData, Weight: 5},
	}
	if s, err := Score(vs); err != nil || math.Abs(s-200.0/3) > 1e-9 {
		t.Errorf("score = %g, %v; want 66.7", s, err)
	}
	vs[1].Critical = true
	if s, _ := Score(vs); s != 0 {
		t.Errorf("critical failure: score %g, want 0", s)
	}
}

func TestMessageBounded(t *testing.T) {
	var vs []Verdict
	for i := range 40 {
		vs = append(vs, Verdict{Metric: strings.Repeat("m", 20) + string(rune('a'+i%26)), Outcome: Pass, Weight: 1, NBaseline: 12, NCanary: 12, BaselineMedian: 0.1, CanaryMedian: 0.1, P: 0.5})
	}
	vs[39].Outcome = Fail
	msg := Message(97.5, vs)
	if len(msg) > MaxMessage || !strings.HasSuffix(msg, "more") || !strings.Contains(msg, "FAIL") {
		t.Errorf("message of %d bytes: %q; want at most %d with the failure and a count of what was left out", len(msg), msg, MaxMessage)
	}
}
