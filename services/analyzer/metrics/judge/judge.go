// Package judge is Sluice's built-in canary judge, addressed as Argo's
// metric plugin sluice/judge so that a template stays valid Argo YAML:
//
//	provider:
//	  plugin:
//	    sluice/judge:
//	      baseline: "{{args.baseline-hash}}"
//	      canary: "{{args.canary-hash}}"
//	      metrics:
//	      - name: latency-p90
//	        direction: increase
//	        tolerance: 0.10
//	        provider: {prometheus: {query: '...{revision="{{judge.revision}}"}...', rangeQuery: ...}}
//
// Each judge metric's provider block is measured twice at one instant
// (metrics.Request.At), with {{judge.revision}} replaced by the baseline
// and by the canary, through the analyzer's own providers. The numbers of
// the two measurements are compared with the Mann-Whitney U test (Compare)
// and the verdicts weighed into a 0-100 score (Score), which is the
// measurement's value: the metric's successCondition (`result >= 90`)
// judges it. docs/judge.md has the statistics and the rules.
//
// What the judge cannot decide it does not guess: an inner provider's
// Error, too few values, NaN or an infinity, or no metric with data, make
// the measurement an Error whose message names the metric and what to
// change. Missing data never leads to a promotion.
package judge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// Type is the judge's name: the plugin name metrics address it by.
const Type = spec.JudgePlugin

// Margin is added to the longest inner provider's timeout for the judge's
// own: its inner measurements run at once.
const Margin = time.Second

// Config configures the judge.
type Config struct {
	// Providers measure the judge's metrics (required). They are the
	// analyzer's own, without the plugin provider: a judge metric's
	// provider must return numbers.
	Providers *metrics.Registry
	// Now is the clock the two sides are measured at (default time.Now).
	Now func() time.Time
}

// Provider is the judge as a metrics.Provider. Safe for concurrent use.
type Provider struct {
	cfg Config
}

var (
	_ metrics.Provider = (*Provider)(nil)
	_ metrics.Checker  = (*Provider)(nil)
)

// New returns the judge, or an error when cfg has no Providers.
func New(cfg Config) (*Provider, error) {
	if cfg.Providers == nil {
		return nil, errors.New("judge: Providers is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Provider{cfg: cfg}, nil
}

// Type returns "sluice/judge".
func (p *Provider) Type() string { return Type }

// Timeout is the longest timeout of the judge's metrics' providers plus
// Margin, or metrics.DefaultTimeout when the block does not decode.
func (p *Provider) Timeout(metric spec.Metric) time.Duration {
	j, err := decode(metric)
	if err != nil {
		return metrics.DefaultTimeout
	}
	var longest time.Duration
	for _, jm := range j.Metrics {
		longest = max(longest, p.cfg.Providers.Timeout(inner(metric, jm, jm.Provider)))
	}
	return longest + Margin
}

// Check refuses a judge block that does not decode, a metric whose
// provider is not one the judge can measure with, or one that provider's
// Checker refuses.
func (p *Provider) Check(metric spec.Metric) error {
	j, err := decode(metric)
	if err != nil {
		return err
	}
	var msgs []string
	for _, jm := range j.Metrics {
		// The registry's error names the metric "<metric>/<judge metric>".
		if err := p.cfg.Providers.Check(inner(metric, jm, jm.Provider)); err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

func decode(metric spec.Metric) (*spec.Judge, error) {
	j, ok, err := spec.JudgeOf(metric.Provider)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("no %s plugin block", Type)
	case len(j.Metrics) == 0:
		return nil, fmt.Errorf("plugin %s: no metrics to compare", Type)
	}
	return j, nil
}

// inner is the metric the judge has its providers measure for jm: named
// "<metric>/<judge metric>", with provider pr.
func inner(metric spec.Metric, jm spec.JudgeMetric, pr spec.MetricProvider) spec.Metric {
	return spec.Metric{Name: metric.Name + "/" + jm.Name, Provider: pr}
}

// Measure measures every judge metric for the baseline and the canary at
// one instant and scores the canary. The measurement's value is the score,
// left to the metric's conditions; what cannot be judged is an Error.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	m := metrics.Measurement{Provider: Type, StartedAt: p.cfg.Now()}
	fail := func(msg string) metrics.Measurement {
		m.Phase, m.Message, m.FinishedAt = spec.AnalysisPhaseError, msg, p.cfg.Now()
		return m
	}
	j, err := decode(req.Metric)
	if err != nil {
		return fail(err.Error())
	}
	at := req.At
	if at.IsZero() {
		at = p.cfg.Now()
	}
	samples := p.sample(ctx, req, j, at)
	var verdicts []Verdict
	var errs []string
	for i, jm := range j.Metrics {
		if s := samples[i]; s.errs[0] != nil || s.errs[1] != nil {
			for _, err := range s.errs {
				if err != nil {
					errs = append(errs, err.Error())
				}
			}
			continue
		}
		v, err := Compare(jm, j.ConfidenceOrDefault(), samples[i].Samples)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		verdicts = append(verdicts, v)
	}
	if len(errs) > 0 {
		return fail(cut(strings.Join(errs, "; ")))
	}
	score, err := Score(verdicts)
	if err != nil {
		return fail(cut(err.Error()))
	}
	m.Result, m.Value = score, num(score)
	m.Message = Message(score, verdicts)
	m.FinishedAt = p.cfg.Now()
	return m
}

// sampled is one judge metric's samples, or why they could not be taken
// for the baseline and for the canary.
type sampled struct {
	Samples
	errs [2]error
}

// sample measures every judge metric for both revisions, all at once.
func (p *Provider) sample(ctx context.Context, req metrics.Request, j *spec.Judge, at time.Time) []sampled {
	out := make([]sampled, len(j.Metrics))
	var wg sync.WaitGroup
	for i, jm := range j.Metrics {
		for k, side := range []struct {
			name, revision string
			into           *[]float64
		}{{"baseline", j.Baseline, &out[i].Baseline}, {"canary", j.Canary, &out[i].Canary}} {
			wg.Go(func() {
				*side.into, out[i].errs[k] = p.values(ctx, req, jm, side.name, side.revision, at)
			})
		}
	}
	wg.Wait()
	return out
}

// values measures jm for one revision through the analyzer's providers.
func (p *Provider) values(ctx context.Context, req metrics.Request, jm spec.JudgeMetric, side, revision string, at time.Time) ([]float64, error) {
	where := fmt.Sprintf("metric %s, %s (%s)", jm.Name, side, revision)
	pr, err := jm.Provider.WithRevision(revision)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	r := req
	r.Metric = inner(req.Metric, jm, pr)
	r.ID = req.ID + "/" + jm.Name + "/" + side
	r.At = at
	provider, err := p.cfg.Providers.Provider(r.Metric)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	got := provider.Measure(ctx, r)
	switch got.Phase {
	case "":
	case spec.AnalysisPhaseError:
		return nil, fmt.Errorf("%s: %s", where, got.Message)
	default:
		return nil, fmt.Errorf("%s: the %s provider judged by itself (%s); the judge needs numbers", where, provider.Type(), got.Phase)
	}
	values, err := numbers(got.Result)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return values, nil
}

// numbers are the values of a provider's result: one for a scalar, one
// per element of a list, none for nil (the providers' "no data", such as
// datadog's empty answer).
func numbers(result any) ([]float64, error) {
	switch r := result.(type) {
	case nil:
		return []float64{}, nil
	case float64:
		return []float64{r}, nil
	case []float64:
		return r, nil
	case []any:
		out := make([]float64, len(r))
		for i, e := range r {
			f, ok := e.(float64)
			if !ok {
				return nil, fmt.Errorf("result element %d is a %T, not a number", i, e)
			}
			out[i] = f
		}
		return out, nil
	}
	return nil, fmt.Errorf("result is a %T, not a number or a list of numbers", result)
}

// cut bounds an error message as Message bounds a verdict list.
func cut(s string) string {
	if len(s) <= MaxMessage {
		return s
	}
	i := MaxMessage - len("…")
	for i > 0 && !utf8Start(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
