package spec

import (
	"errors"
	"fmt"
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
	// Document is the document's Number; 0 for problems of the whole input.
	Document int
	// Object names what the problem is in: "Rollout default/web", or
	// "document 3" when the document could not be decoded.
	Object   string
	Severity Severity
	// Message is the problem, usually "FIELD: DETAIL".
	Message string
}

// String renders f as one line: "OBJECT: MESSAGE", with "warning: "
// before the message of a warning.
func (f Finding) String() string {
	if f.Severity == SeverityWarning {
		return f.Object + ": warning: " + f.Message
	}
	return f.Object + ": " + f.Message
}

// Report is the outcome of Lint: every finding, in document order and, in
// a document, warnings before errors.
type Report struct {
	Findings []Finding
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

// Lint decodes and validates every document of data, as `sluice lint`
// does, and reports every problem: documents that cannot be decoded,
// unknown fields (warnings), validation errors, an object defined twice,
// and input with no documents. Objects are validated as written, before
// defaults.
func Lint(data []byte) Report {
	var r Report
	seen := map[string]int{}
	results := decodeStream(data)
	if len(results) == 0 {
		r.Findings = append(r.Findings, Finding{Object: "input", Severity: SeverityError, Message: "no documents"})
	}
	for _, d := range results {
		if d.err != nil {
			r.Findings = append(r.Findings, Finding{
				Document: d.err.Number,
				Object:   fmt.Sprintf("document %d", d.err.Number),
				Message:  errors.Unwrap(d.err).Error(),
			})
			continue
		}
		name := Describe(d.doc.Object)
		if d.doc.Object.GetName() == "" {
			name = fmt.Sprintf("document %d (%s)", d.doc.Number, kindOf(d.doc.Object))
		}
		add := func(sev Severity, msg string) {
			r.Findings = append(r.Findings, Finding{Document: d.doc.Number, Object: name, Severity: sev, Message: msg})
		}
		for _, w := range d.doc.Warnings {
			add(SeverityWarning, w.String())
		}
		for _, e := range d.doc.Object.Validate() {
			add(SeverityError, e.Error())
		}
		if d.doc.Object.GetName() == "" {
			continue
		}
		if first, ok := seen[name]; ok {
			add(SeverityError, fmt.Sprintf("defined again; document %d defines it first", first))
		} else {
			seen[name] = d.doc.Number
		}
	}
	return r
}
