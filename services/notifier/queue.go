package notifier

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// queue handles a status event (durable notifier): it plans the messages
// the event notifies and queues each as a task event on
// sluice.task.notifier.<namespace>.<rollout> whose id is the message's
// ID, so a status event handled twice (redelivered after a crash) queues
// each message once: the stream drops the repeat.
func (s *Service) queue(ctx context.Context, _ events.Delivery, ev events.Event) error {
	var data events.StatusData
	if err := events.DecodeData(ev, &data); err != nil {
		return err
	}
	ref, err := events.ParseRef(ev.Subject())
	if err != nil {
		return events.Permanent(fmt.Errorf("status event %s: subject: %w", ev.ID(), err))
	}
	if data.Status.Kind == events.KindExperiment {
		// A standalone Experiment's events (its own and its runs'
		// analysis events) notify nothing: Argo's notifications have no
		// trigger for an Experiment, its subscriptions are a Rollout's
		// annotations, and its templates render a Rollout. Nor is its
		// snapshot kept as the previous one of a rollout of the name.
		s.log.Debug("status event of an Experiment: not notified", "experiment", ref, "event", ev.ID(), "type", ev.Type())
		return nil
	}
	if data.Status.Namespace == "" {
		data.Status.Namespace, data.Status.Name = ref.Namespace, ref.Name
	}
	prev, err := s.state.previous(ctx, ref)
	if err != nil {
		return err
	}
	msgs, err := s.setup().Planner.Plan(ctx, ev, data, prev)
	if err != nil {
		return fmt.Errorf("plan the notifications of %s %s: %w", ev.Type(), ev.ID(), err)
	}
	var out []events.Outgoing
	for _, m := range msgs {
		ok, err := s.state.claimOnce(ctx, m)
		if err != nil {
			return err
		}
		if !ok {
			s.cfg.Metrics.Notification(m.Destination.Service, m.Trigger, OutcomeSkipped)
			s.log.Debug("notification skipped: its oncePer value was notified", "rollout", ref, "trigger", m.Trigger, "destination", m.Destination.String())
			continue
		}
		task, err := events.New(Source, TypeNotification, ref.String(), m)
		if err != nil {
			return events.Permanent(err)
		}
		task.SetID(m.ID)
		out = append(out, events.Outgoing{Subject: events.TaskSubject(TaskService, ref), Event: task})
	}
	if len(out) > 0 {
		if err := s.client.PublishAll(ctx, out); err != nil {
			return err
		}
	}
	// After queueing, so that a crash in between plans the event again
	// against the same previous snapshot.
	return s.state.remember(ctx, data.Status)
}

// Outcomes of sluice_notifications_total.
const (
	OutcomeSent    = "sent"
	OutcomeRetried = "retried"
	OutcomeFailed  = "failed"
	OutcomeSkipped = "skipped"
)

// deliver handles a queued message (durable notifier-delivery): unless it
// was delivered already, it sends it through its destination's service,
// in the thread an earlier message of its destination and grouping key
// started, and records the delivery and the thread. A sender's errors map
// onto the consumer: notify.Permanent dead-letters with the reason,
// notify.RetryAfter comes back after the vendor's delay, anything else
// comes back with backoff until the last attempt, then dead-letters.
func (s *Service) deliver(ctx context.Context, d events.Delivery, ev events.Event) error {
	var m notify.Message
	if err := events.DecodeData(ev, &m); err != nil {
		return err
	}
	if m.ID == "" {
		m.ID = ev.ID()
	}
	metrics, svc := s.cfg.Metrics, m.Destination.Service
	sent, err := s.state.wasSent(ctx, m.ID)
	if err != nil {
		return err
	}
	if sent {
		metrics.Notification(svc, m.Trigger, OutcomeSkipped)
		return nil
	}
	setup := s.setup()
	sender, ok := setup.Senders[svc]
	if !ok {
		metrics.Notification(svc, m.Trigger, OutcomeFailed)
		return events.Permanent(fmt.Errorf("%w named %q is configured (destination %s of trigger %s); configured: %v", ErrNoService, svc, m.Destination, m.Trigger, sortedKeys(setup.Senders)))
	}
	if m.Thread, err = s.state.thread(ctx, m); err != nil {
		return err
	}
	start := s.now()
	receipt, err := sender.Send(ctx, m)
	metrics.NotificationDuration(svc, s.now().Sub(start))
	if err != nil {
		return s.failed(d, m, err)
	}
	metrics.Notification(svc, m.Trigger, OutcomeSent)
	s.log.Info("notification sent", "rollout", m.Rollout, "trigger", m.Trigger, "destination", m.Destination.String(), "message", m.ID)
	// The message went out: what follows is bookkeeping, and failing it
	// would send the message again. A failure is logged, not returned.
	if err := s.state.keepThread(ctx, m, receipt.Thread); err != nil {
		s.log.Warn("could not keep the message's thread; the next one starts a new thread", "message", m.ID, "error", err)
	}
	if err := s.state.markSent(ctx, m.ID, s.now()); err != nil {
		s.log.Warn("could not record the delivery; a redelivery would send it again", "message", m.ID, "error", err)
	}
	return nil
}

// failed maps a sender's error onto the consumer and counts it.
func (s *Service) failed(d events.Delivery, m notify.Message, err error) error {
	svc, trigger := m.Destination.Service, m.Trigger
	err = fmt.Errorf("%s to %s: %w", trigger, m.Destination, err)
	last := d.MaxDeliver > 0 && d.Attempt >= uint64(d.MaxDeliver)
	switch delay, hasDelay := notify.RetryDelay(err); {
	case notify.IsPermanent(err):
		s.cfg.Metrics.Notification(svc, trigger, OutcomeFailed)
		return events.Permanent(err)
	case last:
		s.cfg.Metrics.Notification(svc, trigger, OutcomeFailed)
		return err // the consumer dead-letters it: "gave up after N deliveries"
	case hasDelay:
		s.cfg.Metrics.Notification(svc, trigger, OutcomeRetried)
		return events.RetryAfter(err, delay)
	default:
		s.cfg.Metrics.Notification(svc, trigger, OutcomeRetried)
		return err
	}
}

// cdevents hands a status event to the configured CDEvents output.
func (s *Service) cdevents(ctx context.Context, d events.Delivery, ev events.Event) error {
	h := s.setup().CDEvents
	if h == nil {
		return nil
	}
	return h(ctx, d, ev)
}
