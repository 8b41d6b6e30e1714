package spec

import (
	"encoding/json"
	"fmt"
	"regexp"
)

// JudgePlugin is the plugin name of Sluice's built-in canary judge:
// `provider: plugin: sluice/judge: {...}` keeps a template valid Argo YAML.
const JudgePlugin = "sluice/judge"

// JudgeRevision is the placeholder a judge metric's provider block holds
// where the baseline's or the canary's revision goes.
const JudgeRevision = "{{judge.revision}}"

// judgeRevisionRE matches JudgeRevision, spaces allowed inside the braces as
// for {{args.NAME}}.
var judgeRevisionRE = regexp.MustCompile(`\{\{\s*judge\.revision\s*\}\}`)

// Judge directions: the change that is bad.
const (
	JudgeIncrease = "increase"
	JudgeDecrease = "decrease"
	JudgeEither   = "either"
)

// Judge defaults.
const (
	DefaultJudgeConfidence = 0.95
	DefaultJudgeWeight     = 1.0
)

// Judge is the configuration of the sluice/judge plugin: each of Metrics
// is measured for the Baseline and the Canary revision over the same
// window, and the two samples are compared (docs/judge.md).
type Judge struct {
	// Baseline and Canary replace JudgeRevision in each metric's provider
	// block: a pod-template hash, a role, a version label.
	Baseline string `json:"baseline"`
	Canary   string `json:"canary"`
	// Confidence is how sure the test must be that a difference is real
	// before it counts: 1 - the significance level (default 0.95).
	Confidence *float64      `json:"confidence,omitempty"`
	Metrics    []JudgeMetric `json:"metrics"`
}

// JudgeMetric is one metric the judge compares.
type JudgeMetric struct {
	Name string `json:"name"`
	// Direction is the change that is bad: increase (latency, errors),
	// decrease (throughput, success rate) or either.
	Direction string `json:"direction"`
	// Tolerance is the relative change tolerated before a significant
	// difference counts against the canary (default 0).
	Tolerance *float64 `json:"tolerance,omitempty"`
	// Critical: failing this metric makes the score 0.
	Critical bool `json:"critical,omitempty"`
	// MustHaveData: a metric without data fails instead of being left out
	// of the score.
	MustHaveData bool `json:"mustHaveData,omitempty"`
	// Weight in the score (default 1).
	Weight *float64 `json:"weight,omitempty"`
	// Provider is any provider block that yields numbers, measured twice.
	Provider MetricProvider `json:"provider"`
}

// ConfidenceOrDefault is j's confidence, or DefaultJudgeConfidence.
func (j Judge) ConfidenceOrDefault() float64 {
	if j.Confidence == nil {
		return DefaultJudgeConfidence
	}
	return *j.Confidence
}

// WeightOrDefault is m's weight, or DefaultJudgeWeight.
func (m JudgeMetric) WeightOrDefault() float64 {
	if m.Weight == nil {
		return DefaultJudgeWeight
	}
	return *m.Weight
}

// ToleranceOrDefault is m's tolerance, or 0.
func (m JudgeMetric) ToleranceOrDefault() float64 {
	if m.Tolerance == nil {
		return 0
	}
	return *m.Tolerance
}

// JudgeOf decodes the sluice/judge block of p. It returns false when p is
// not the judge's, and an error when the block does not decode (unknown
// fields are left to Validate, which names their paths).
func JudgeOf(p MetricProvider) (*Judge, bool, error) {
	raw, ok := p.Plugin[JudgePlugin]
	if !ok || len(p.Plugin) != 1 {
		return nil, false, nil
	}
	var j Judge
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, true, fmt.Errorf("plugin %s: %w", JudgePlugin, err)
	}
	return &j, true, nil
}

// WithRevision returns p with every JudgeRevision in its strings replaced
// by revision, inserted as text.
func (p MetricProvider) WithRevision(revision string) (MetricProvider, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return p, err
	}
	quoted, _ := json.Marshal(revision) // a string always marshals
	value := quoted[1 : len(quoted)-1]
	data = judgeRevisionRE.ReplaceAllFunc(data, func([]byte) []byte { return value })
	var out MetricProvider
	if err := json.Unmarshal(data, &out); err != nil {
		return p, fmt.Errorf("substituting %s: %w", JudgeRevision, err)
	}
	return out, nil
}

// usesRevision reports whether p holds JudgeRevision anywhere.
func (p MetricProvider) usesRevision() bool {
	data, err := json.Marshal(p)
	return err == nil && judgeRevisionRE.Match(data)
}
