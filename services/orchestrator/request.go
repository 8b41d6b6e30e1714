package orchestrator

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// handleRequested validates a Rollout manifest and hands it to the machine,
// or publishes io.sluice.rollout.rejected.v1 with every problem. A rejection
// is a verdict, not a failure: the message is acknowledged.
func (s *Service) handleRequested(ctx context.Context, d events.Delivery, ev events.Event) error {
	r, err := refOf(d, ev)
	if err != nil {
		return err
	}
	ro, warnings, problems := parseRollout(r, ev.Data())
	if len(problems) > 0 {
		return s.reject(ctx, r, ev, problems)
	}
	if len(warnings) > 0 {
		s.log.Warn("rollout request has fields Sluice does not know", "rollout", r.String(), "warnings", warnings)
	}
	return s.apply(ctx, update{ref: r, obs: machine.Observation{Request: ro, Cause: causeOf(ev)}, commandID: ev.ID(), annotate: withWarnings(warnings), attempt: d.Attempt})
}

// withWarnings attaches a request's warnings to the accepted event it leads to.
func withWarnings(warnings []string) func([]machine.Effect) {
	return func(effects []machine.Effect) {
		for _, e := range effects {
			if e.Status != nil && e.Status.Type == events.TypeRolloutAccepted {
				e.Status.Data.Warnings = warnings
			}
		}
	}
}

// parseRollout decodes, checks and defaults the manifest of a request for r.
// It returns the warnings (unknown fields) and every problem it finds, each
// with its field path.
func parseRollout(r events.Ref, data []byte) (*spec.Rollout, []string, []string) {
	if len(data) == 0 {
		return nil, nil, []string{"data: Required value: the Rollout manifest as JSON"}
	}
	docs, err := spec.Decode(data)
	if err != nil {
		return nil, nil, []string{err.Error()}
	}
	if len(docs) != 1 {
		return nil, nil, []string{fmt.Sprintf("data: Invalid value: %d documents: must be exactly one Rollout", len(docs))}
	}
	ro, ok := docs[0].Object.(*spec.Rollout)
	if !ok {
		return nil, nil, []string{fmt.Sprintf("kind: Invalid value: %q: must be %s", spec.Describe(docs[0].Object), spec.KindRollout)}
	}
	var warnings []string
	for _, w := range docs[0].Warnings {
		warnings = append(warnings, w.String())
	}
	if ro.Namespace == "" {
		ro.Namespace = r.Namespace
	}
	var errs field.ErrorList
	if ro.Name != r.Name {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), ro.Name, fmt.Sprintf("must match the rollout of the subject (%q)", r.Name)))
	}
	if ro.Namespace != r.Namespace {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), ro.Namespace, fmt.Sprintf("must match the namespace of the subject (%q)", r.Namespace)))
	}
	errs = append(errs, ro.Validate()...)
	if len(errs) > 0 {
		out := make([]string, len(errs))
		for i, e := range errs {
			out[i] = e.Error()
		}
		return nil, warnings, out
	}
	ro.SetDefaults()
	return ro, warnings, nil
}

// reject publishes the rejection of request ev for r. Its id derives from
// the request's, so a redelivered request is rejected once.
func (s *Service) reject(ctx context.Context, r events.Ref, ev events.Event, problems []string) error {
	rec, rev, err := s.st.load(ctx, r)
	if err != nil && !errors.Is(err, records.ErrConflict) {
		return err
	}
	now := s.cfg.Now()
	snap := events.Snapshot{Namespace: r.Namespace, Name: r.Name, Phase: events.PhaseDegraded, Message: "request rejected", UpdatedAt: now}
	if rev != 0 {
		// The rollout carries on with the spec it had.
		snap = rec.State.Snapshot(now)
	}
	s.log.Info("rollout request rejected", "rollout", r.String(), "request", ev.ID(), "errors", problems)
	return s.answer(ctx, r, events.TypeRolloutRejected, "rejected/"+ev.ID(), causeOf(ev), ev.ID(),
		events.StatusData{Status: snap, Errors: problems, Reason: "invalid Rollout"})
}
