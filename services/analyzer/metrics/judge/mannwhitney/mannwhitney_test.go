package mannwhitney

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// samples returns m x's and n y's without ties whose U (pairs with
// x > y) is u: y is 1..n, and x[k] sits just above the first c[k] y's.
func samples(m, n, u int) (x, y []float64) {
	for j := 1; j <= n; j++ {
		y = append(y, float64(j))
	}
	for k := range m {
		c := min(n, u)
		u -= c
		x = append(x, float64(c)+0.5+float64(k)*1e-3)
	}
	return x, y
}

// TestCriticalValues checks the exact two-sided test against the
// published table of critical values of U at alpha 0.05 (two-tailed):
// U at or below the critical value is significant, one above it is not.
func TestCriticalValues(t *testing.T) {
	for _, tc := range []struct{ m, n, critical int }{
		{5, 5, 2}, {6, 6, 5}, {7, 7, 8}, {8, 8, 13}, {9, 9, 17}, {10, 10, 23},
		{5, 10, 8}, {4, 8, 4}, {12, 12, 37}, {20, 20, 127},
	} {
		for _, u := range []int{tc.critical, tc.critical + 1} {
			x, y := samples(tc.m, tc.n, u)
			r, err := Test(x, y, TwoSided)
			if err != nil {
				t.Fatal(err)
			}
			if r.U != float64(u) || !r.Exact {
				t.Fatalf("%dx%d: U = %v (exact %v), want %d exact", tc.m, tc.n, r.U, r.Exact, u)
			}
			if significant := r.P <= 0.05; significant != (u <= tc.critical) {
				t.Errorf("%dx%d U=%d: p = %.4f; critical value %d", tc.m, tc.n, u, r.P, tc.critical)
			}
		}
	}
}

func TestExactSmallSamples(t *testing.T) {
	// 3 against 3: each of the C(6,3) = 20 orders is equally likely; only
	// one has every x below every y.
	x, y := []float64{1, 2, 3}, []float64{4, 5, 6}
	for _, tc := range []struct {
		alt  Alternative
		want float64
	}{{Less, 1.0 / 20}, {Greater, 1}, {TwoSided, 2.0 / 20}} {
		r, err := Test(x, y, tc.alt)
		if err != nil {
			t.Fatal(err)
		}
		if r.U != 0 || math.Abs(r.P-tc.want) > 1e-12 {
			t.Errorf("alt %d: U = %v, p = %v; want 0, %v", tc.alt, r.U, r.P, tc.want)
		}
	}
	// One against one: nothing can be significant.
	if r, _ := Test([]float64{2}, []float64{1}, TwoSided); r.P != 1 || r.U != 1 {
		t.Errorf("1 against 1: %+v, want U 1 and p 1", r)
	}
}

func TestDistributionSumsToOne(t *testing.T) {
	for _, s := range [][2]int{{1, 1}, {3, 7}, {10, 10}, {49, 49}} {
		d := distribution(s[0], s[1])
		var sum float64
		for u, p := range d {
			sum += p
			if mirror := d[len(d)-1-u]; math.Abs(p-mirror) > 1e-12 {
				t.Fatalf("%v: P(U=%d) = %v but P(U=%d) = %v; U is symmetric", s, u, p, len(d)-1-u, mirror)
			}
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("%v: probabilities sum to %v", s, sum)
		}
	}
}

func TestEqualSamples(t *testing.T) {
	same := []float64{3, 3, 3, 3}
	r, err := Test(same, same, TwoSided)
	if err != nil {
		t.Fatal(err)
	}
	if r.P != 1 || r.U != 8 {
		t.Errorf("identical constant samples: %+v, want U 8 and p 1", r)
	}
	x := []float64{1, 2, 3, 4, 5}
	r, _ = Test(x, x, TwoSided)
	if r.P < 0.99 || r.U != 12.5 || r.Exact {
		t.Errorf("a sample against itself: %+v, want U 12.5, p about 1, ties so not exact", r)
	}
}

// TestTies checks the tie-corrected normal approximation against a value
// worked by hand: x = 1 2 2 3, y = 2 3 3 4. Pooled midranks: 1 -> 1,
// 2 (x3) -> 3, 3 (x3) -> 6, 4 -> 8; x's rank sum 1+3+3+6 = 13, U = 3.
// Mean 8; variance 16/12 * (9 - (24+24)/56) = 10.857; two-sided
// z = (5 - 0.5)/3.2950 = 1.3657, p = 0.1720.
func TestTies(t *testing.T) {
	r, err := Test([]float64{1, 2, 2, 3}, []float64{2, 3, 3, 4}, TwoSided)
	if err != nil {
		t.Fatal(err)
	}
	if r.Exact || r.U != 3 || math.Abs(r.Z+1.3657) > 1e-3 || math.Abs(r.P-0.1720) > 1e-3 {
		t.Errorf("got %+v; want U 3, z -1.3657, p 0.1720, normal", r)
	}
}

func TestNormalAgreesWithExactForLargeSamples(t *testing.T) {
	x, y := samples(45, 45, 700)
	exact, _ := Test(x, y, TwoSided)
	normal := func() Result {
		m, n := len(x), len(y)
		z, p := normalP(exact.U, m, n, false, x, y, TwoSided)
		return Result{U: exact.U, Z: z, P: p}
	}()
	if !exact.Exact || math.Abs(exact.P-normal.P) > 0.005 {
		t.Errorf("exact p %v, normal p %v: they should agree at 45 against 45", exact.P, normal.P)
	}
	big := make([]float64, 60)
	for i := range big {
		big[i] = float64(i)
	}
	if r, _ := Test(big, big[:10], Greater); r.Exact {
		t.Errorf("60 values: %+v; want the normal approximation", r)
	}
}

// TestSwapping: the test of x against y under one alternative is the test
// of y against x under the opposite one, and the statistics add up; a
// shift of both samples changes nothing.
func TestSwapping(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		m, n := 1+rng.IntN(30), 1+rng.IntN(70)
		x, y := make([]float64, m), make([]float64, n)
		for k := range x {
			x[k] = math.Round(rng.NormFloat64()*10) / 2 // ties on purpose
		}
		for k := range y {
			y[k] = math.Round(rng.NormFloat64()*10+float64(i%5)) / 2
		}
		for _, pair := range [][2]Alternative{{Greater, Less}, {Less, Greater}, {TwoSided, TwoSided}} {
			a, _ := Test(x, y, pair[0])
			b, _ := Test(y, x, pair[1])
			if math.Abs(a.P-b.P) > 1e-9 || math.Abs(a.U+b.U-float64(m*n)) > 1e-9 || a.Exact != b.Exact {
				t.Fatalf("case %d: %+v against %+v (alternatives %v)", i, a, b, pair)
			}
		}
		shifted := func(s []float64) []float64 {
			out := make([]float64, len(s))
			for k, v := range s {
				out[k] = v + 1000
			}
			return out
		}
		a, _ := Test(x, y, TwoSided)
		c, _ := Test(shifted(x), shifted(y), TwoSided)
		if a != c {
			t.Fatalf("case %d: shifting both samples changed %+v to %+v", i, a, c)
		}
	}
}

func TestShift(t *testing.T) {
	for _, tc := range []struct {
		x, y []float64
		want float64
	}{
		{[]float64{11, 12, 13}, []float64{1, 2, 3}, 10},
		{[]float64{1, 2}, []float64{1, 2}, 0},
		{[]float64{3}, []float64{1, 2}, 1.5},
	} {
		got, err := Shift(tc.x, tc.y)
		if err != nil || got != tc.want {
			t.Errorf("Shift(%v, %v) = %v, %v; want %v", tc.x, tc.y, got, err, tc.want)
		}
	}
}

func TestBadSamples(t *testing.T) {
	for _, tc := range []struct {
		name string
		x, y []float64
		want error
	}{
		{"empty x", nil, []float64{1}, ErrTooFewSamples},
		{"empty y", []float64{1}, []float64{}, ErrTooFewSamples},
		{"NaN", []float64{1, math.NaN()}, []float64{1}, ErrNotANumber},
	} {
		if _, err := Test(tc.x, tc.y, TwoSided); !errors.Is(err, tc.want) {
			t.Errorf("%s: Test error %v, want %v", tc.name, err, tc.want)
		}
		if _, err := Shift(tc.x, tc.y); !errors.Is(err, tc.want) {
			t.Errorf("%s: Shift error %v, want %v", tc.name, err, tc.want)
		}
	}
	if r, err := Test([]float64{math.Inf(1)}, []float64{1, 2}, Greater); err != nil || r.U != 2 {
		t.Errorf("an infinity ranks above everything: %+v, %v", r, err)
	}
	if _, err := Shift([]float64{math.Inf(1)}, []float64{1}); !errors.Is(err, ErrInfinite) {
		t.Errorf("Shift with an infinity: %v, want ErrInfinite", err)
	}
}
