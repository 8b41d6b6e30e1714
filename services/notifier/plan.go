package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/notifier/config"
	"github.com/sluicehq/sluice/services/notifier/notify"
	"github.com/sluicehq/sluice/services/notifier/trigger"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// Manifests reads a rollout's latest accepted manifest with the pod
// template of the revision podHash names (orchestrator.Reader.Manifest).
// It returns an error wrapping orchestrator.ErrNoRollout when there is no
// such rollout.
type Manifests interface {
	Manifest(ctx context.Context, r events.Ref, podHash string) (*spec.Rollout, error)
}

// Engine plans with a parsed configuration: the triggers a status event
// fires (trigger.Of), for each the destinations the rollout's annotations
// and labels and the configuration's subscriptions ask for, the
// conditions that hold, and their templates rendered against the
// Argo-shaped rollout.
type Engine struct {
	Config       *config.Config
	Manifests    Manifests
	DashboardURL string
	Log          *slog.Logger
	// Metrics counts notifications that cannot be rendered as failed.
	Metrics *telemetry.Metrics
}

var _ Planner = (*Engine)(nil)

// Plan implements Planner. A rollout the orchestrator no longer has (it
// was deleted) is rendered from the event's snapshot alone. A condition or
// a template that fails for this event is logged and counted (a retry
// would fail the same way); the other notifications go on.
func (e *Engine) Plan(ctx context.Context, ev events.Event, data events.StatusData, prev *events.Snapshot) ([]notify.Message, error) {
	configured := e.Config.Triggers()
	var fired []string
	for _, t := range trigger.Of(ev, data, prev) {
		if slices.Contains(configured, t) {
			fired = append(fired, t)
		}
	}
	if len(fired) == 0 {
		return nil, nil
	}
	ref := events.Ref{Namespace: data.Status.Namespace, Name: data.Status.Name}
	m, err := e.Manifests.Manifest(ctx, ref, data.Status.PodHash)
	switch {
	case errors.Is(err, orchestrator.ErrNoRollout):
		m = nil
	case err != nil:
		return nil, fmt.Errorf("read the manifest of %s: %w", ref, err)
	}
	log := e.Log
	if log == nil {
		log = slog.Default()
	}
	var annotations, labels map[string]string
	if m != nil {
		annotations, labels = m.Annotations, m.Labels
	}
	vars := trigger.Vars(trigger.Rollout(m, data), ev, data, e.Config.Context(), e.DashboardURL)
	evRef := notify.EventRef{ID: ev.ID(), Type: ev.Type(), Actor: events.Extension(ev, events.ExtActor), Time: ev.Time()}

	var out []notify.Message
	for _, t := range fired {
		dests := e.Config.Destinations(t, annotations, labels)
		if len(dests) == 0 {
			continue
		}
		outcomes, err := e.Config.Conditions(t, vars)
		if err != nil {
			log.Warn("a trigger condition could not be evaluated; it sends nothing for this event", "rollout", ref, "trigger", t, "event", ev.ID(), "error", err)
		}
		for _, o := range outcomes {
			if !o.Triggered {
				continue
			}
			n, err := e.Config.Render(o.Templates, vars)
			if err != nil {
				log.Error("notification not sent: its template cannot be rendered for this event", "rollout", ref, "trigger", t, "templates", o.Templates, "event", ev.ID(), "error", err)
				for _, d := range dests {
					e.Metrics.Notification(d.Service, t, OutcomeFailed)
				}
				continue
			}
			for _, d := range dests {
				msg := notify.Message{
					ID:      Hash(ev.ID(), t, strconv.Itoa(o.Index), d.Service, d.Recipient),
					Rollout: ref, Trigger: t, Templates: o.Templates, Destination: d,
					Notification: n, Event: evRef, Phase: data.Status.Phase,
				}
				if o.OncePer != "" {
					msg.Once = Hash(ref.Namespace, ref.Name, t, strconv.Itoa(o.Index), d.Service, d.Recipient, o.OncePer)
				}
				out = append(out, msg)
			}
		}
	}
	return out, nil
}

// lazyReader opens the rollouts bucket on first use: the notifier may
// start before any orchestrator made it.
type lazyReader struct {
	client *events.Client
	mu     sync.Mutex
	reader *orchestrator.Reader
}

func (l *lazyReader) Manifest(ctx context.Context, r events.Ref, podHash string) (*spec.Rollout, error) {
	l.mu.Lock()
	if l.reader == nil {
		rd, err := orchestrator.NewReader(ctx, l.client)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			// No orchestrator ever ran: no rollout to read.
			l.mu.Unlock()
			return nil, fmt.Errorf("%w: %s (%v)", orchestrator.ErrNoRollout, r, err)
		}
		if err != nil {
			l.mu.Unlock()
			return nil, err
		}
		l.reader = rd
	}
	rd := l.reader
	l.mu.Unlock()
	return rd.Manifest(ctx, r, podHash)
}
