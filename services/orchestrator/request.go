package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// handleRequested validates a Rollout manifest and prepares it for the
// machine, or publishes io.sluice.rollout.rejected.v1 with every problem. A rejection
// is a verdict, not a failure: the message is acknowledged.
func (s *Service) handleRequested(ctx context.Context, d events.Delivery, ev events.Event) (*update, error) {
	r, err := refOf(d, ev)
	if err != nil {
		return nil, err
	}
	ro, warnings, problems := parseRollout(r, ev.Data())
	if len(problems) > 0 {
		return nil, s.reject(ctx, r, ev, events.TypeRolloutRejected, problems)
	}
	if len(warnings) > 0 {
		s.log.Warn("rollout request has fields Sluice does not know", "rollout", r.String(), "warnings", warnings)
	}
	return &update{ref: r, obs: machine.Observation{Request: ro, Cause: causeOf(ev)}, commandID: ev.ID(), annotate: withWarnings(warnings), attempt: d.Attempt}, nil
}

// handleExperimentRequested is handleRequested for a standalone
// Experiment.
func (s *Service) handleExperimentRequested(ctx context.Context, d events.Delivery, ev events.Event) (*update, error) {
	r, err := refOf(d, ev)
	if err != nil {
		return nil, err
	}
	ex, warnings, problems := parseExperiment(r, ev.Data())
	if len(problems) > 0 {
		return nil, s.reject(ctx, r, ev, events.TypeExperimentRejected, problems)
	}
	if len(warnings) > 0 {
		s.log.Warn("experiment request has fields Sluice does not know", "experiment", r.String(), "warnings", warnings)
	}
	return &update{ref: r, obs: machine.Observation{Experiment: ex, Cause: causeOf(ev)}, commandID: ev.ID(), annotate: withWarnings(warnings), attempt: d.Attempt}, nil
}

// withWarnings attaches a request's warnings to the accepted event it leads to.
func withWarnings(warnings []string) func([]machine.Effect) {
	return func(effects []machine.Effect) {
		for _, e := range effects {
			if e.Status != nil && (e.Status.Type == events.TypeRolloutAccepted || e.Status.Type == events.TypeExperimentAccepted) {
				e.Status.Data.Warnings = warnings
			}
		}
	}
}

// parseRollout decodes, checks and defaults the manifest of a request for r.
// It returns the warnings (unknown fields) and every problem it finds, each
// with its field path.
func parseRollout(r events.Ref, data []byte) (*spec.Rollout, []string, []string) {
	return parseManifest[*spec.Rollout](r, data, spec.KindRollout)
}

// parseExperiment is parseRollout for a standalone Experiment.
func parseExperiment(r events.Ref, data []byte) (*spec.Experiment, []string, []string) {
	return parseManifest[*spec.Experiment](r, data, spec.KindExperiment)
}

// requestObject is an object a request carries.
type requestObject interface {
	spec.Object
	SetNamespace(string)
}

// parseManifest decodes, checks and defaults the manifest of kind in a
// request for r.
func parseManifest[T requestObject](r events.Ref, data []byte, kind string) (T, []string, []string) {
	var none T
	if len(data) == 0 {
		return none, nil, []string{fmt.Sprintf("data: Required value: the %s manifest as JSON", kind)}
	}
	docs, err := spec.Decode(data)
	if err != nil {
		return none, nil, []string{err.Error()}
	}
	if len(docs) != 1 {
		return none, nil, []string{fmt.Sprintf("data: Invalid value: %d documents: must be exactly one %s", len(docs), kind)}
	}
	obj, ok := docs[0].Object.(T)
	if !ok {
		return none, nil, []string{fmt.Sprintf("kind: Invalid value: %q: must be %s", spec.Describe(docs[0].Object), kind)}
	}
	var warnings []string
	for _, w := range docs[0].Warnings {
		warnings = append(warnings, w.String())
	}
	if obj.GetNamespace() == "" {
		obj.SetNamespace(r.Namespace)
	}
	var errs field.ErrorList
	if obj.GetName() != r.Name {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), obj.GetName(), fmt.Sprintf("must match the %s of the subject (%q)", strings.ToLower(kind), r.Name)))
	}
	if obj.GetNamespace() != r.Namespace {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), obj.GetNamespace(), fmt.Sprintf("must match the namespace of the subject (%q)", r.Namespace)))
	}
	errs = append(errs, obj.Validate()...)
	if len(errs) > 0 {
		out := make([]string, len(errs))
		for i, e := range errs {
			out[i] = e.Error()
		}
		return none, warnings, out
	}
	obj.SetDefaults()
	return obj, warnings, nil
}

// reject publishes the rejection (typ) of request ev for r. Its id
// derives from the request's, so a redelivered request is rejected once.
func (s *Service) reject(ctx context.Context, r events.Ref, ev events.Event, typ string, problems []string) error {
	rec, rev, err := s.st.load(ctx, r)
	if err != nil && !errors.Is(err, records.ErrConflict) {
		return err
	}
	now := s.cfg.Now()
	snap := events.Snapshot{Namespace: r.Namespace, Name: r.Name, Phase: events.PhaseDegraded, Message: "request rejected", UpdatedAt: now}
	what := "invalid Rollout"
	if typ == events.TypeExperimentRejected {
		snap.Kind, snap.Phase, what = events.KindExperiment, events.ExperimentPhaseError, "invalid Experiment"
	}
	if rev != 0 {
		// The rollout carries on with the spec it had.
		snap = rec.State.Snapshot(now)
	}
	s.log.Info("request rejected", "rollout", r.String(), "type", ev.Type(), "request", ev.ID(), "errors", problems)
	return s.answer(ctx, r, typ, "rejected/"+ev.ID(), causeOf(ev), ev.ID(),
		events.StatusData{Status: snap, Errors: problems, Reason: what})
}
