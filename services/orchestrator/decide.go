package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// update is one observation to apply to one rollout.
type update struct {
	ref events.Ref
	obs machine.Observation
	// commandID is the event id of a command (empty for task reports): a
	// command whose id the rollout's record holds was applied already,
	// and a later delivery changes nothing (record.Applied).
	commandID string
	// mustExist answers a missing rollout with command.refused (a command
	// for a rollout nobody requested); otherwise a missing rollout ignores
	// the observation, unless it is a request.
	mustExist bool
	// annotate, when set, may add to the effects' data before they are
	// stored.
	annotate func([]machine.Effect)
	// attempt is the delivery attempt of the message that carried the
	// observation; past the first, the outbox is published again.
	attempt uint64
	// seq is a command's sequence in the commands stream (record.CommandSeq).
	seq uint64
	// ahead marks a command decided ahead of its own delivery (order.go),
	// which answers it when the rollout does not exist.
	ahead bool
	// notBefore is the due time of a timer event: the replica that fired
	// it saw the deadline come, so it has come. The replica deciding may
	// tell the time a little behind the one that fired (each knows the
	// bus's time within its clock's uncertainty); deciding by its own
	// clock, it would find the deadline not yet due, and the timer lost:
	// every replica fires a deadline under one event id, so the stream
	// drops its own, later, event as a duplicate.
	notBefore time.Time
}

// Verdicts of one observation, as the decisions metric counts them.
const (
	verdictChanged   = "changed"
	verdictUnchanged = "unchanged"
	verdictDuplicate = "duplicate"
	verdictIgnored   = "ignored"
)

// apply runs one observation through the machine and stores and publishes
// the outcome: applyAll with one update.
func (s *Service) apply(ctx context.Context, u update) error {
	return s.applyAll(ctx, u.ref, []update{u})[0]
}

// applyAll decides on the observations us of rollout r together, in
// order, as if one came after the other, and stores the outcome in one
// compare-and-swap write (the new state, every effect in the outbox, the
// ids of the commands) and publishes the effects in one batch. It returns
// one error per update: the write's and the publish's apply to all; an
// update for a rollout that does not exist that must be answered gets its
// refusal's. Conflicting writes are retried as records.Store.Update says;
// past its bound the messages are retried with backoff.
func (s *Service) applyAll(ctx context.Context, r events.Ref, us []update) []error {
	d := &decision{s: s, ref: r, updates: us, owned: ctx.Value(owned{}) != nil}
	for _, u := range us {
		if u.attempt > 1 {
			d.republish = true
		}
	}
	decide := func(rec *record, rev uint64) error { return d.decide(ctx, rec, rev) }
	k := records.KeyOf(r)
	var err error
	// The first decision is made on the record this replica knows, which
	// spares a read of the bucket; a write conflict, or a decision that
	// would write nothing, is checked against the bucket's record.
	if rec, rev, ok := s.st.Recent(k); ok {
		d.onRecent = true
		_, err = s.st.UpdateFrom(ctx, k, rec, rev, decide)
	} else {
		_, err = s.st.Update(ctx, k, decide)
	}
	if errors.Is(err, records.ErrConflict) {
		d.lostRace()
	}
	errs := make([]error, len(us))
	if err == nil && d.out != nil {
		err = d.stored(ctx)
	}
	if err == nil {
		d.count()
	}
	for i, u := range us {
		errs[i] = err
		if err == nil && d.verdicts[i] == verdictIgnored && u.mustExist && !u.ahead {
			what, request := "rollout", events.TypeRolloutRequested
			if c := u.obs.Command; c != nil && c.Experiment {
				what, request = "experiment", events.TypeExperimentRequested
			}
			errs[i] = s.refuse(ctx, r, u.obs.Cause, events.RefusedNotFound,
				fmt.Sprintf("%s %s does not exist: publish %s first", what, r, request))
		}
	}
	return errs
}

// decision carries one applyAll through its compare-and-swap attempts.
type decision struct {
	s       *Service
	ref     events.Ref
	updates []update
	// republish is set until the record's outbox has been published
	// again: a redelivered message may have been decided on before a
	// crash that came before its effects were published.
	republish bool
	// onRecent says that decide is next given the record this replica
	// knows rather than one read from the bucket; fromBucket, that the
	// last attempt was on a record read from the bucket; verified, that it
	// was read from the leader of the bucket's stream (after an attempt
	// found its record stale). A read from the bucket may be answered by a
	// replica that lags behind, so only the leader's record is trusted to
	// say that an observation changes nothing.
	onRecent, fromBucket, verified bool
	// staled says that the last attempt returned records.ErrStale: the
	// next record is the leader's.
	staled bool
	// owned says that this replica owns the rollout's partition: the
	// record it holds is the truth, and a decision on it that changes
	// nothing needs no check against the bucket.
	owned bool
	// attempts counts the calls of decide so far.
	attempts int
	// verdicts are the last attempt's, one per update.
	verdicts []string
	// out is what the last attempt wrote; nil when it wrote nothing.
	out *outcome
}

// outcome is a decision that changes the rollout's record.
type outcome struct {
	prev, next machine.State
	effects    []machine.Effect
	now        time.Time
	// finished are the task reports decided on, each with the state it
	// was decided on.
	finished []finishedOn
	// unchanged: the state stays; only commands' ids are recorded.
	unchanged bool
}

type finishedOn struct {
	prev machine.State
	fin  *tasks.Finished
}

// decide is one attempt: it decides on rec at rev and leaves in rec what
// to write, or returns records.Unchanged (nothing to write) or
// records.ErrStale (decide again on the bucket's record).
func (d *decision) decide(ctx context.Context, rec *record, rev uint64) error {
	if d.out != nil {
		d.lostRace() // called again after a write: it conflicted
		if d.owned {
			// Not the normal path: another replica wrote the rollout
			// this one owns (it owned the partition a moment ago, or
			// believes it still does). The fence held; decide again on
			// the bucket's record.
			d.s.log.Warn("another replica wrote a rollout this replica owns: its write won, this decision is made again on the bucket's record",
				"rollout", d.ref.String(), "fromBucket", d.fromBucket)
		}
	}
	if !d.onRecent {
		d.s.cfg.Metrics.StateRead(d.readReason())
	}
	d.attempts++
	d.fromBucket, d.verified, d.onRecent, d.staled, d.out = !d.onRecent, d.staled, false, false, nil
	s := d.s
	d.verdicts = make([]string, len(d.updates))
	if d.republish && rev != 0 && len(rec.Outbox) > 0 {
		if err := s.publishEffects(ctx, d.ref, rec.Outbox); err != nil {
			return err
		}
		d.republish = false
	}
	now := s.cfg.Now()
	exists := rev != 0
	state := rec.State
	var (
		effects  []machine.Effect
		ids      []string
		finished []finishedOn
		stale    bool
		seq      uint64 // the last command's sequence decided here
	)
	for i, u := range d.updates {
		switch {
		case !exists && u.obs.Request == nil && u.obs.Experiment == nil:
			d.verdicts[i] = verdictIgnored
			continue
		case u.commandID != "" && (rec.applied(u.commandID) || slices.Contains(ids, u.commandID)):
			d.verdicts[i] = verdictDuplicate
			continue
		}
		at := now
		if at.Before(u.notBefore) {
			at = u.notBefore
		}
		obs := u.obs
		if !obs.Stored.IsZero() && obs.Stored.Before(u.notBefore) {
			obs.Stored = u.notBefore // a timer event fires its own deadline
		}
		next, eff := s.m.Next(state, obs, at)
		if u.annotate != nil {
			u.annotate(eff)
		}
		d.verdicts[i] = verdictChanged
		if next.Version == state.Version && len(eff) == 0 {
			d.verdicts[i] = verdictUnchanged
			// Another replica may have moved the rollout on: what is
			// unchanged here may apply to its record. Not when this
			// replica owns the rollout and decides on what it holds.
			stale = stale || !(d.verified || d.owned && !d.fromBucket)
		} else {
			exists = true
		}
		if u.obs.Finished != nil {
			finished = append(finished, finishedOn{prev: state, fin: u.obs.Finished})
		}
		if u.commandID != "" {
			ids = append(ids, u.commandID)
			seq = max(seq, u.seq)
		}
		state, effects = next, append(effects, eff...)
	}
	unchanged := state.Version == rec.State.Version && len(effects) == 0
	if unchanged && len(ids) == 0 {
		if stale {
			d.staled = true
			return records.ErrStale
		}
		return records.Unchanged
	}
	out := record{State: state, Outbox: effects, Applied: rec.Applied, Commands: rec.Commands, CommandSeq: rec.CommandSeq}
	if unchanged {
		// Nothing to do now, but the commands must not act when a copy
		// comes later: record them as applied, keep the outbox.
		out.Outbox = rec.Outbox
	}
	if len(ids) > 0 {
		out.CommandSeq = max(out.CommandSeq, seq)
		forgotten := 0
		for _, id := range ids {
			var n int
			out.Applied, n = out.withApplied(id, now, s.cfg.Bus.MaxAge)
			out.Commands = nil
			forgotten += n
		}
		if forgotten > 0 {
			s.log.Warn("rollout took more commands within the commands stream's retention than its record keeps: the oldest are forgotten, and a late copy of one would act again",
				"rollout", d.ref.String(), "forgotten", forgotten, "kept", maxApplied, "retention", s.cfg.Bus.MaxAge)
		}
	}
	d.out = &outcome{prev: rec.State, next: state, effects: effects, now: now, finished: finished, unchanged: unchanged}
	*rec = out
	return nil
}

// lostRace counts the conflict of the last write when it was decided on
// the bucket's record; a conflict on the record this replica knew only
// means that record was out of date.
func (d *decision) lostRace() {
	if d.out != nil && d.fromBucket {
		d.s.cfg.Metrics.CASConflict()
	}
}

// Reasons of a decision on a record read from the bucket, as the state
// reads metric counts them.
const (
	readUncached = "uncached"
	readStale    = "stale"
	readConflict = "conflict"
	// readLeader: a decision on a record a replica of the bucket answered
	// changed nothing, which is checked on the leader's record.
	readLeader = "leader"
)

// readReason says why the coming attempt decides on a record read from
// the bucket: the replica knew none, the one it knew was out of date (or
// had to be checked), the last attempt on the bucket's record lost its
// write, or found nothing to do on a record a replica of the bucket
// answered (checked with the leader). With one owner per rollout the
// first and the last should remain.
func (d *decision) readReason() string {
	switch {
	case d.attempts == 0:
		return readUncached
	case d.fromBucket && d.staled:
		return readLeader
	case d.fromBucket:
		return readConflict
	}
	return readStale
}

// count records every observation's verdict, once the decision is final.
func (d *decision) count() {
	for i, u := range d.updates {
		v := d.verdicts[i]
		if v == "" {
			continue
		}
		d.s.cfg.Metrics.Decision(observationKind(u.obs), v)
	}
}

// stored records, logs and publishes a decision once it is written.
func (d *decision) stored(ctx context.Context) error {
	s, o := d.s, d.out
	if o.unchanged {
		return nil
	}
	for _, f := range o.finished {
		s.recordTask(f.prev, f.fin, o.now)
	}
	s.scheduleNext(d.ref, o.next)
	s.logDecision(ctx, d.kinds(), o.prev, o.next, o.effects)
	return s.publishEffects(ctx, d.ref, o.effects)
}

// scheduleNext gives this replica's timers the next deadline of a state it
// has just stored. Every replica learns deadlines from its watch of the
// bucket, but the watch's consumer lives on one node of the bus, and a
// node cut off or stopped stalls it until the client notices missed
// heartbeats (10 s): the replica that made the decision knows at once, so
// a 1 s pause it began does not wait for the watch (TestPartitions saw
// 1 s pauses last 9 s on the majority side). A watch that lags behind
// this sets the deadline of an older state again, which the watch's next
// entries correct; a timer that fires early is not due and changes
// nothing.
func (s *Service) scheduleNext(r events.Ref, next machine.State) {
	if s.timers == nil {
		return
	}
	key := records.KeyOf(r)
	if w, ok := next.NextWakeup(); ok {
		s.timers.Set(key, w)
		return
	}
	s.timers.Delete(key)
}

// kinds names the observations decided on, for the log.
func (d *decision) kinds() string {
	if len(d.updates) == 1 {
		return observationKind(d.updates[0].obs)
	}
	names := make([]string, len(d.updates))
	for i, u := range d.updates {
		names[i] = observationKind(u.obs)
	}
	return strings.Join(names, ",")
}
