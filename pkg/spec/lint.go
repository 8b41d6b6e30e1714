package spec

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Severity tells an error, which makes a file invalid, from a warning,
// which does not.
type Severity int

// Severities of a Finding.
const (
	SeverityError Severity = iota
	SeverityWarning
)

// Finding is one problem Lint found.
type Finding struct {
	// File is the Source's Name the problem is in; empty for Lint's input.
	File string
	// Document is the document's Number in its file; 0 for problems of the
	// whole file.
	Document int
	// Object names what the problem is in: "Rollout default/web", or
	// "document 3" when the document could not be decoded; empty for a
	// problem of a whole named file.
	Object   string
	Severity Severity
	// Message is the problem, usually "FIELD: DETAIL".
	Message string
}

// String renders f as one line: "FILE: OBJECT: MESSAGE", with "warning: "
// before the message of a warning, leaving out an empty FILE or OBJECT.
func (f Finding) String() string {
	s := f.Message
	if f.Severity == SeverityWarning {
		s = "warning: " + s
	}
	for _, prefix := range []string{f.Object, f.File} {
		if prefix != "" {
			s = prefix + ": " + s
		}
	}
	return s
}

// Report is the outcome of Lint: every finding, in file and document order
// and, in a document, warnings before errors; and every document decoded.
type Report struct {
	Findings []Finding
	// Documents are the documents that could be decoded, in input order,
	// for checks beyond Lint's own (see Add).
	Documents []Linted
	files     []string
}

// Linted is a document Lint decoded, and the file it is in.
type Linted struct {
	File string
	Document
}

// Name is how findings name the document's object: "Rollout default/web",
// or "document 2 (Rollout)" when it has no name.
func (l Linted) Name() string {
	if l.Object.GetName() == "" {
		return fmt.Sprintf("document %d (%s)", l.Number, kindOf(l.Object))
	}
	return Describe(l.Object)
}

// Add adds a finding about document l, keeping the report's order.
func (r *Report) Add(l Linted, sev Severity, msg string) {
	r.Findings = append(r.Findings, Finding{File: l.File, Document: l.Number, Object: l.Name(), Severity: sev, Message: msg})
	r.sort()
}

func (r *Report) sort() {
	order := map[string]int{}
	for i, f := range r.files {
		order[f] = i
	}
	sort.SliceStable(r.Findings, func(i, j int) bool {
		a, b := r.Findings[i], r.Findings[j]
		if order[a.File] != order[b.File] {
			return order[a.File] < order[b.File]
		}
		if a.Document != b.Document {
			return a.Document < b.Document
		}
		return a.Severity > b.Severity // warnings first
	})
}

// Valid reports whether r has no errors. Warnings do not count.
func (r Report) Valid() bool {
	for _, f := range r.Findings {
		if f.Severity == SeverityError {
			return false
		}
	}
	return true
}

// String renders r one finding per line, or "valid" when it has none.
func (r Report) String() string {
	if len(r.Findings) == 0 {
		return "valid"
	}
	lines := make([]string, len(r.Findings))
	for i, f := range r.Findings {
		lines[i] = f.String()
	}
	return strings.Join(lines, "\n")
}

// Source is one input of LintSources.
type Source struct {
	// Name names the input in findings: a file name; "-" is shown as
	// "stdin".
	Name string
	Data []byte
}

// LintOptions change what LintSources reports.
type LintOptions struct {
	// Strict makes unknown fields errors instead of warnings: a misspelt
	// field is a setting that silently does not apply.
	Strict bool
}

// Lint is LintSources of data alone, unnamed, with no options.
func Lint(data []byte) Report {
	return LintSources([]Source{{Data: data}}, LintOptions{})
}

// LintSources decodes and validates every document of every source, as
// `sluice lint` does, and reports every problem: documents that cannot be
// decoded, unknown fields (warnings unless opts.Strict), validation
// errors, an object defined twice (in one source or across them), and a
// source with no documents. Objects are validated as written, before
// defaults. Document numbers count within each source.
func LintSources(srcs []Source, opts LintOptions) Report {
	var r Report
	seen := map[string]Linted{}
	unknown := SeverityWarning
	if opts.Strict {
		unknown = SeverityError
	}
	for _, src := range srcs {
		file := src.Name
		if file == "-" {
			file = "stdin"
		}
		r.files = append(r.files, file)
		results := decodeStream(src.Data)
		if len(results) == 0 {
			object := "input"
			if file != "" {
				object = ""
			}
			r.Findings = append(r.Findings, Finding{File: file, Object: object, Severity: SeverityError, Message: "no documents"})
			continue
		}
		for _, d := range results {
			if d.err != nil {
				r.Findings = append(r.Findings, Finding{
					File:     file,
					Document: d.err.Number,
					Object:   fmt.Sprintf("document %d", d.err.Number),
					Message:  errors.Unwrap(d.err).Error(),
				})
				continue
			}
			l := Linted{File: file, Document: d.doc}
			r.Documents = append(r.Documents, l)
			add := func(sev Severity, msg string) {
				r.Findings = append(r.Findings, Finding{File: file, Document: l.Number, Object: l.Name(), Severity: sev, Message: msg})
			}
			for _, w := range d.doc.Warnings {
				add(unknown, w.String())
			}
			for _, e := range d.doc.Object.Validate() {
				add(SeverityError, e.Error())
			}
			if d.doc.Object.GetName() == "" {
				continue
			}
			key := sharedName(d.doc.Object)
			first, ok := seen[key]
			if !ok {
				seen[key] = l
				continue
			}
			where := fmt.Sprintf("document %d", first.Number)
			if first.File != file {
				where = first.File + " " + where
			}
			if kindOf(first.Object) != kindOf(d.doc.Object) {
				add(SeverityError, fmt.Sprintf("%s (%s) has this name: a namespace holds one Rollout or Experiment of a name, whose commands and status share subjects", first.Name(), where))
			} else {
				add(SeverityError, "defined again; "+where+" defines it first")
			}
		}
	}
	r.sort()
	return r
}

// sharedName is the name o holds: "Rollout default/web" for most kinds,
// but one name for a Rollout and an Experiment of the same namespace and
// name, which would share the sluice.cmd and sluice.status subjects.
func sharedName(o Object) string {
	if k := kindOf(o); k == KindRollout || k == KindExperiment {
		return "Rollout or Experiment " + strings.TrimPrefix(Describe(o), k+" ")
	}
	return Describe(o)
}

// AnalysisRef is a template reference of a Rollout or an Experiment, and
// the path of its templateName.
type AnalysisRef struct {
	Field string
	Ref   AnalysisTemplateRef
}

// AnalysisRefs returns every template o references. For a Rollout: in its
// canary steps (analysis steps and the analyses of experiment steps), its
// background analysis, and its blue/green pre- and post-promotion
// analyses, in that order; for an Experiment, in its analyses. Other kinds
// reference none.
func AnalysisRefs(o Object) []AnalysisRef {
	var out []AnalysisRef
	add := func(at string, a *RolloutAnalysis) {
		if a == nil {
			return
		}
		for i, t := range a.Templates {
			out = append(out, AnalysisRef{Field: fmt.Sprintf("%s.templates[%d].templateName", at, i), Ref: t})
		}
	}
	addExperiment := func(at string, analyses []RolloutExperimentStepAnalysisTemplateRef) {
		for i, a := range analyses {
			out = append(out, AnalysisRef{
				Field: fmt.Sprintf("%s.analyses[%d].templateName", at, i),
				Ref:   AnalysisTemplateRef{TemplateName: a.TemplateName, ClusterScope: a.ClusterScope},
			})
		}
	}
	switch o := o.(type) {
	case *Experiment:
		addExperiment("spec", o.Spec.Analyses)
	case *Rollout:
		if c := o.Spec.Strategy.Canary; c != nil {
			for i, s := range c.Steps {
				add(fmt.Sprintf("spec.strategy.canary.steps[%d].analysis", i), s.Analysis)
				if e := s.Experiment; e != nil {
					addExperiment(fmt.Sprintf("spec.strategy.canary.steps[%d].experiment", i), e.Analyses)
				}
			}
			if c.Analysis != nil {
				add("spec.strategy.canary.analysis", &c.Analysis.RolloutAnalysis)
			}
		}
		if b := o.Spec.Strategy.BlueGreen; b != nil {
			add("spec.strategy.blueGreen.prePromotionAnalysis", b.PrePromotionAnalysis)
			add("spec.strategy.blueGreen.postPromotionAnalysis", b.PostPromotionAnalysis)
		}
	}
	return out
}
