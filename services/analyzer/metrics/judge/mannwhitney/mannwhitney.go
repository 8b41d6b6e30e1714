// Package mannwhitney is the Mann-Whitney U test (the Wilcoxon rank-sum
// test) of two independent samples, and the Hodges-Lehmann estimate of the
// shift between them: the statistics the canary judge compares a canary's
// and a baseline's measurements with, as Kayenta does. It is pure: no I/O,
// no clock.
//
// The test asks whether values of x tend to be larger (or smaller) than
// values of y, assuming nothing about their distribution. The p-value is
// exact (the distribution of U for the two sizes) when neither sample has
// 50 values or more and no value is tied, as R's wilcox.test does;
// otherwise it comes from the normal approximation with the tie-corrected
// variance and a continuity correction.
package mannwhitney

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Alternative is the hypothesis the test weighs against "x and y come from
// the same distribution".
type Alternative int

const (
	// TwoSided: x tends to be larger or smaller than y.
	TwoSided Alternative = iota
	// Greater: x tends to be larger than y.
	Greater
	// Less: x tends to be smaller than y.
	Less
)

// ExactBelow is the sample size below which, without ties, the p-value is
// exact.
const ExactBelow = 50

// Errors of Test and Shift.
var (
	// ErrTooFewSamples: a sample is empty.
	ErrTooFewSamples = errors.New("too few samples")
	// ErrNotANumber: a sample holds NaN.
	ErrNotANumber = errors.New("sample holds NaN")
	// ErrInfinite: Shift was given an infinite value, whose differences
	// have no median.
	ErrInfinite = errors.New("sample holds an infinite value")
)

// Result is the outcome of one test.
type Result struct {
	// U is x's statistic: the number of pairs (x[i], y[j]) with
	// x[i] > y[j], a tie counting one half. y's is len(x)*len(y) - U.
	U float64
	// P is the p-value under the alternative.
	P float64
	// Z is the normal approximation's statistic, continuity corrected; 0
	// when Exact.
	Z float64
	// Exact says P comes from U's exact distribution.
	Exact bool
}

// Test runs the Mann-Whitney U test of x against y under alt. It returns
// ErrTooFewSamples when either is empty and ErrNotANumber when either holds
// NaN. When every value is the same there is no evidence either way: P is
// 1.
func Test(x, y []float64, alt Alternative) (Result, error) {
	if err := check(x, y); err != nil {
		return Result{}, err
	}
	m, n := len(x), len(y)
	u, ties := statistic(x, y)
	r := Result{U: u}
	if !ties && m < ExactBelow && n < ExactBelow {
		r.Exact = true
		r.P = exactP(u, m, n, alt)
		return r, nil
	}
	r.Z, r.P = normalP(u, m, n, ties, x, y, alt)
	return r, nil
}

func check(x, y []float64) error {
	if len(x) == 0 || len(y) == 0 {
		return fmt.Errorf("%w: %d and %d values", ErrTooFewSamples, len(x), len(y))
	}
	if slices.ContainsFunc(x, math.IsNaN) || slices.ContainsFunc(y, math.IsNaN) {
		return ErrNotANumber
	}
	return nil
}

// statistic returns x's U from the ranks of the pooled sample (midranks
// for ties), and whether any value is tied.
func statistic(x, y []float64) (u float64, ties bool) {
	m := len(x)
	ranks, t := rank(x, y)
	var sum float64
	for _, r := range ranks[:m] {
		sum += r
	}
	return sum - float64(m*(m+1))/2, len(t) > 0
}

// rank returns the midranks (from 1) of x then y in their pooled order,
// and the sizes of the groups of tied values.
func rank(x, y []float64) (ranks []float64, ties []int) {
	pooled := append(slices.Clone(x), y...)
	idx := make([]int, len(pooled))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return pooled[idx[a]] < pooled[idx[b]] })
	ranks = make([]float64, len(pooled))
	for i := 0; i < len(idx); {
		j := i + 1
		for j < len(idx) && pooled[idx[j]] == pooled[idx[i]] {
			j++
		}
		mid := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			ranks[idx[k]] = mid
		}
		if j-i > 1 {
			ties = append(ties, j-i)
		}
		i = j
	}
	return ranks, ties
}

// exactP is the p-value of u from U's distribution for sizes m and n
// without ties.
func exactP(u float64, m, n int, alt Alternative) float64 {
	dist := distribution(m, n)
	k := int(math.Round(u))
	atMost := func(k int) float64 {
		var p float64
		for i := 0; i <= k && i < len(dist); i++ {
			p += dist[i]
		}
		return p
	}
	le, ge := atMost(k), 1-atMost(k-1)
	switch alt {
	case Greater:
		return clamp(ge)
	case Less:
		return clamp(le)
	}
	return clamp(2 * min(le, ge))
}

// distribution returns P(U = u) for u in 0..m*n, for sizes m and n without
// ties. The largest of the m+n values is an x with probability m/(m+n)
// (then it beats every y: U counts n more on the other m-1 x's) or a y
// (then U is that of m x's against n-1 y's).
func distribution(m, n int) []float64 {
	// p[j] holds the distribution for i x's and j y's, i growing.
	p := make([][]float64, n+1)
	for j := range p {
		p[j] = []float64{1} // no x: U is 0
	}
	for i := 1; i <= m; i++ {
		next := make([][]float64, n+1)
		next[0] = []float64{1} // no y: U is 0
		for j := 1; j <= n; j++ {
			d := make([]float64, i*j+1)
			wx, wy := float64(i)/float64(i+j), float64(j)/float64(i+j)
			for u, q := range p[j] { // i-1 x's, j y's: shifted by j
				d[u+j] += wx * q
			}
			for u, q := range next[j-1] { // i x's, j-1 y's
				d[u] += wy * q
			}
			next[j] = d
		}
		p = next
	}
	return p[n]
}

// normalP is the normal approximation's statistic and p-value.
func normalP(u float64, m, n int, ties bool, x, y []float64, alt Alternative) (z, p float64) {
	mf, nf := float64(m), float64(n)
	mean := mf * nf / 2
	N := mf + nf
	var tieSum float64
	if ties {
		_, t := rank(x, y)
		for _, k := range t {
			kf := float64(k)
			tieSum += kf*kf*kf - kf
		}
	}
	variance := mf * nf / 12 * ((N + 1) - tieSum/(N*(N-1)))
	if variance <= 0 {
		return 0, 1 // every value the same
	}
	sd := math.Sqrt(variance)
	d := u - mean
	switch alt {
	case Greater:
		z = (d - 0.5) / sd
		return z, clamp(upper(z))
	case Less:
		z = (d + 0.5) / sd
		return z, clamp(1 - upper(z))
	}
	z = (math.Abs(d) - 0.5) / sd
	if z < 0 {
		z = 0
	}
	return math.Copysign(z, d), clamp(2 * upper(z))
}

// upper is P(Z > z) for a standard normal Z.
func upper(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }

func clamp(p float64) float64 { return max(0, min(1, p)) }

// Shift is the Hodges-Lehmann estimate of how much x is shifted from y:
// the median of every difference x[i] - y[j]. It returns ErrTooFewSamples
// when either is empty, ErrNotANumber when either holds NaN and ErrInfinite
// when either holds an infinity.
func Shift(x, y []float64) (float64, error) {
	if err := check(x, y); err != nil {
		return 0, err
	}
	inf := func(v float64) bool { return math.IsInf(v, 0) }
	if slices.ContainsFunc(x, inf) || slices.ContainsFunc(y, inf) {
		return 0, ErrInfinite
	}
	d := make([]float64, 0, len(x)*len(y))
	for _, a := range x {
		for _, b := range y {
			d = append(d, a-b)
		}
	}
	slices.Sort(d)
	k := len(d)
	if k%2 == 1 {
		return d[k/2], nil
	}
	return (d[k/2-1] + d[k/2]) / 2, nil
}
