package analyzer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// BucketTemplates holds the templates applied on the bus: an
// AnalysisTemplate under <namespace>.<name>, a ClusterAnalysisTemplate under
// _cluster.<name> (a namespace never starts with "_", so the two cannot
// collide).
const BucketTemplates = "sluice-templates"

// clusterPrefix starts the keys of cluster-scoped templates.
const clusterPrefix = "_cluster"

// templatePrefix starts the types the analyzer owns on the command
// subjects; other command types are the orchestrator's.
const templatePrefix = "io.sluice.analysistemplate."

// storedTemplate is what the templates bucket stores for one template.
type storedTemplate struct {
	// Kind is AnalysisTemplate or ClusterAnalysisTemplate.
	Kind string `json:"kind"`
	// Namespace is empty for a ClusterAnalysisTemplate.
	Namespace string                    `json:"namespace,omitempty"`
	Name      string                    `json:"name"`
	Spec      spec.AnalysisTemplateSpec `json:"spec"`
	// Sequence is the commands stream's sequence of the event that applied
	// it: an older event redelivered late never replaces a newer template.
	Sequence  uint64    `json:"sequence"`
	EventID   string    `json:"eventId,omitempty"`
	AppliedAt time.Time `json:"appliedAt"`
}

func (t storedTemplate) describe() string {
	if t.Kind == spec.KindClusterAnalysisTemplate {
		return t.Kind + " " + t.Name
	}
	return t.Kind + " " + t.Namespace + "/" + t.Name
}

// templateKey is the bucket key of a template: namespace "" means a
// ClusterAnalysisTemplate.
func templateKey(namespace, name string) string {
	if namespace == "" {
		return clusterPrefix + "." + name
	}
	return namespace + "." + name
}

// handleCommand handles the analyzer's share of the commands stream:
// template events. Rollout commands share the subjects and belong to the
// orchestrator: they are acknowledged and ignored, never dead-lettered.
func (s *Service) handleCommand(ctx context.Context, d events.Delivery, ev events.Event) error {
	switch typ := ev.Type(); {
	case typ == events.TypeAnalysisTemplateApply:
		return s.applyTemplate(ctx, d, ev)
	case strings.HasPrefix(typ, templatePrefix):
		return fmt.Errorf("%w %q: the analyzer handles [%s]", events.ErrUnknownType, typ, events.TypeAnalysisTemplateApply)
	}
	return nil
}

// applyTemplate validates an applied template and stores it. An invalid
// template is a permanent error: it is dead-lettered with every problem
// and its field path as the reason.
func (s *Service) applyTemplate(ctx context.Context, d events.Delivery, ev events.Event) error {
	r, err := events.RefFromSubject(d.Subject)
	if err != nil {
		return events.Permanent(err)
	}
	if sub := ev.Subject(); sub != "" && sub != r.String() {
		return events.Permanent(fmt.Errorf("event subject %q does not match NATS subject %s (want %q)", sub, d.Subject, r.String()))
	}
	t, warnings, problems := parseTemplate(s.cfg.Providers, r, ev.Data())
	if len(problems) > 0 {
		s.log.Warn("analysis template rejected", "subject", d.Subject, "event", ev.ID(), "errors", problems)
		what := "analysis template " + r.String()
		if t.Kind != "" {
			what = t.describe()
		}
		return events.Permanent(fmt.Errorf("invalid %s: %s", what, strings.Join(problems, "; ")))
	}
	if len(warnings) > 0 {
		s.log.Warn("analysis template has fields Sluice does not know", "template", t.describe(), "warnings", warnings)
	}
	t.Sequence, t.EventID, t.AppliedAt = d.Sequence, ev.ID(), s.cfg.Now().UTC()
	stored, err := s.storeTemplate(ctx, t)
	if err != nil {
		return err
	}
	if stored {
		s.log.Info("analysis template stored", "template", t.describe(), "key", templateKey(t.Namespace, t.Name), "event", ev.ID())
	} else {
		s.log.Info("analysis template event older than the stored template; ignored", "template", t.describe(), "event", ev.ID())
	}
	return nil
}

// CheckTemplate returns what the analyzer finds in data, the data of a
// template event published for r, with providers measuring the metrics:
// the unknown fields as warnings, and every problem, with its field path,
// that makes the analyzer dead-letter the event instead of storing the
// template. `sluice apply` and `sluice lint` call it so that a template
// they pass is one the analyzer takes.
func CheckTemplate(providers *metrics.Registry, r events.Ref, data []byte) (warnings, problems []string) {
	_, warnings, problems = parseTemplate(providers, r, data)
	return warnings, problems
}

// parseTemplate decodes and checks the data of a template event published
// for r. It returns the unknown fields as warnings and every problem with
// its field path.
func parseTemplate(providers *metrics.Registry, r events.Ref, data []byte) (storedTemplate, []string, []string) {
	if len(data) == 0 {
		return storedTemplate{}, nil, []string{"data: Required value: the AnalysisTemplate or ClusterAnalysisTemplate manifest as JSON"}
	}
	docs, err := spec.Decode(data)
	if err != nil {
		return storedTemplate{}, nil, []string{err.Error()}
	}
	if len(docs) != 1 {
		return storedTemplate{}, nil, []string{fmt.Sprintf("data: Invalid value: %d documents: must be exactly one AnalysisTemplate or ClusterAnalysisTemplate", len(docs))}
	}
	var warnings []string
	for _, w := range docs[0].Warnings {
		warnings = append(warnings, w.String())
	}
	var t storedTemplate
	var errs field.ErrorList
	name := field.NewPath("metadata", "name")
	switch o := docs[0].Object.(type) {
	case *spec.AnalysisTemplate:
		if o.Namespace == "" {
			o.Namespace = r.Namespace
		}
		if o.Namespace != r.Namespace {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), o.Namespace, fmt.Sprintf("must match the namespace of the subject (%q)", r.Namespace)))
		}
		errs = append(errs, o.Validate()...)
		t = storedTemplate{Kind: spec.KindAnalysisTemplate, Namespace: o.Namespace, Name: o.Name, Spec: o.Spec}
	case *spec.ClusterAnalysisTemplate:
		errs = append(errs, o.Validate()...)
		t = storedTemplate{Kind: spec.KindClusterAnalysisTemplate, Name: o.Name, Spec: o.Spec}
	default:
		return storedTemplate{}, warnings, []string{fmt.Sprintf("kind: Invalid value: %q: must be %s or %s", spec.Describe(docs[0].Object), spec.KindAnalysisTemplate, spec.KindClusterAnalysisTemplate)}
	}
	if t.Name != r.Name {
		errs = append(errs, field.Invalid(name, t.Name, fmt.Sprintf("must match the template of the subject (%q)", r.Name)))
	}
	problems := make([]string, 0, len(errs))
	for _, e := range errs {
		problems = append(problems, e.Error())
	}
	if len(problems) == 0 {
		problems = checkTemplateSpec(providers, t.Spec)
	}
	return t, warnings, problems
}

// checkTemplateSpec reports what spec's validation cannot see: conditions
// that do not compile, impossible limits (analysis.CheckTemplate), and
// metrics no registered provider can measure.
func checkTemplateSpec(providers *metrics.Registry, ts spec.AnalysisTemplateSpec) []string {
	var problems []string
	if err := analysis.CheckTemplate(ts); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			problems = append(problems, "spec."+line)
		}
	}
	for i, m := range ts.Metrics {
		if err := providers.Check(m); err != nil {
			problems = append(problems, fmt.Sprintf("spec.metrics[%d].provider: %v", i, err))
		}
	}
	return problems
}

// templateStore reads and writes the templates bucket.
type templateStore = *records.Store[storedTemplate]

// newTemplateStore returns the store of the templates bucket kv. An entry
// that does not decode is replaced by the next template applied under its
// key. leader, when not nil, is the connection through which a run's
// templates are read from the leader of the bucket's stream.
func newTemplateStore(kv jetstream.KeyValue, leader records.Requester) templateStore {
	return records.New(kv, records.Config[storedTemplate]{Name: "analysis template", OverwriteUnreadable: true, Leader: leader})
}

// storeTemplate writes t unless the bucket holds one applied by a later
// event. It reports whether t was written.
func (s *Service) storeTemplate(ctx context.Context, t storedTemplate) (bool, error) {
	stored := false
	_, err := s.templates.Update(ctx, templateKey(t.Namespace, t.Name), func(old *storedTemplate, rev uint64) error {
		if stored = rev == 0 || old.Sequence < t.Sequence; !stored {
			return records.Unchanged
		}
		*old = t
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store %s: %w", t.describe(), err)
	}
	return stored, nil
}

// ErrTemplateNotFound is wrapped by the lookup errors of missing templates.
var ErrTemplateNotFound = errors.New("analysis template not found")

// LookupTemplate finds the template ref names for a rollout in namespace
// in kv, the bucket BucketTemplates, as a run does when it starts. It
// returns an error wrapping ErrTemplateNotFound when the bucket does not
// have it.
func LookupTemplate(ctx context.Context, kv jetstream.KeyValue, namespace string, ref spec.AnalysisTemplateRef) (spec.AnalysisTemplateSpec, error) {
	return lookupTemplate(ctx, newTemplateStore(kv, nil), namespace, ref)
}

// lookupTemplate finds the template ref names for a run in namespace, in
// the bucket of applied templates. It returns an error wrapping
// ErrTemplateNotFound when the bucket does not have it, and a permanent
// error when the stored entry cannot be read. It reads the leader's entry
// (Latest): a replica that lags behind answers with the template as it
// was, or none, and the run would measure the older template, or fail
// its task.
func lookupTemplate(ctx context.Context, templates templateStore, namespace string, ref spec.AnalysisTemplateRef) (spec.AnalysisTemplateSpec, error) {
	ns := namespace
	if ref.ClusterScope {
		ns = ""
	}
	t, rev, err := templates.Latest(ctx, templateKey(ns, ref.TemplateName))
	if err != nil {
		return spec.AnalysisTemplateSpec{}, err
	}
	if rev == 0 {
		if ref.ClusterScope {
			return spec.AnalysisTemplateSpec{}, fmt.Errorf("%w: cluster analysis template %q not found", ErrTemplateNotFound, ref.TemplateName)
		}
		return spec.AnalysisTemplateSpec{}, fmt.Errorf("%w: analysis template %q not found in namespace %q", ErrTemplateNotFound, ref.TemplateName, namespace)
	}
	return t.Spec, nil
}
