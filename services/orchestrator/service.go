package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/clock"
	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/deadlines"
	"github.com/sluicehq/sluice/internal/jsonlead"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// Source is the CloudEvents source of everything the orchestrator publishes.
const Source = "/sluice/orchestrator"

// TimerService is the <service> token of the result subjects the
// orchestrator's own timer events travel on.
const TimerService = "orchestrator"

// DefaultWorkers is how many decisions a replica makes at once per
// consumer when Config.Commands and Config.Results set no Workers.
const DefaultWorkers = 16

// Durable consumer names, shared by all orchestrator replicas.
const (
	DurableCommands = "orchestrator-commands"
	DurableResults  = "orchestrator-results"
)

// TypeTimerFired is the internal event that carries a due deadline of one
// rollout to whichever replica handles it. Its data is timerData.
const TypeTimerFired = "io.sluice.timer.fired.v1"

type timerData struct {
	Due time.Time `json:"due"`
}

// Config configures the orchestrator service. The zero value plus Defaults
// is a working configuration.
type Config struct {
	// Bus is the stream and bucket configuration to provision.
	Bus events.BusConfig
	// Machine holds the step machine's timeouts.
	Machine machine.Config
	// Commands and Results tune the two durable consumers; Stream, Durable
	// and FilterSubjects are set by the service.
	Commands events.ConsumerConfig
	Results  events.ConsumerConfig
	// Logger receives the service's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics records decisions, conflicts, task durations and rollouts
	// by phase (default telemetry.Default()).
	Metrics *telemetry.Metrics
	// Now is the clock (default Clock's Now, or time.Now without a
	// Clock); tests replace it.
	Now func() time.Time
	// Clock is the bus's time (package clock), which the service binary
	// sets: a deadline one replica writes into a rollout's record is
	// compared by another, so they must all tell the same time whatever
	// their hosts' clocks say. Run syncs it before deciding.
	Clock *clock.Bus
	// StateCache is how many rollouts' decoded states the replica keeps
	// (default DefaultStateCache; StateCacheNone or any negative value:
	// none). A busy rollout is decided on many times a second, and
	// decoding its state from the bucket each time costs more than the
	// decision.
	StateCache int
	// StopTimeout bounds how long a stopping replica waits for the
	// decisions in progress (default daemon.DefaultStopTimeout).
	StopTimeout time.Duration
}

// Defaults and special values of Config.StateCache.
const (
	DefaultStateCache = 1024
	StateCacheNone    = -1
)

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.Bus.Defaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
		if c.Clock != nil {
			c.Now = c.Clock.Now
		}
	}
	if c.Metrics == nil {
		c.Metrics = telemetry.Default()
	}
	if c.StateCache == 0 {
		c.StateCache = DefaultStateCache
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = daemon.DefaultStopTimeout
	}
}

// Validate reports every problem at once, each wrapping
// events.ErrInvalidConfig.
func (c Config) Validate() error {
	errs := []error{c.Bus.Validate()}
	if err := c.Machine.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: orchestrator: %w", events.ErrInvalidConfig, err))
	}
	if c.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: orchestrator: StopTimeout %s must not be negative", events.ErrInvalidConfig, c.StopTimeout))
	}
	return errors.Join(errs...)
}

// Service is one orchestrator replica.
type Service struct {
	client *events.Client
	cfg    Config
	m      machine.Machine
	log    *slog.Logger
	st     store
	timers *deadlines.Scheduler
	lc     daemon.Lifecycle
}

var _ daemon.Service = (*Service)(nil)

// New checks cfg and returns a service that uses client. Call Run to start
// it.
func New(client *events.Client, cfg Config) (*Service, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Service{client: client, cfg: cfg, m: machine.Machine{Config: cfg.Machine}, log: cfg.Logger}, nil
}

// Ready reports whether the service has its streams, bucket and consumers
// in place.
func (s *Service) Ready() bool { return s.lc.Ready() }

// Needs is what the orchestrator uses on the bus. It owns the bus settings,
// so it alone may update the streams.
var Needs = events.Needs{
	Consumers: []events.Durable{
		{Stream: events.StreamCommands, Name: DurableCommands},
		{Stream: events.StreamResults, Name: DurableResults},
	},
	Buckets: []events.Bucket{{Name: BucketRollouts, Description: "Sluice rollout state, one entry per rollout", History: 1, Public: true}},
	Publish: []string{
		events.TaskRoot + "." + tasks.ServiceReplicas + ".>",
		events.TaskRoot + "." + tasks.ServiceTraffic + ".>",
		events.TaskRoot + "." + tasks.ServiceAnalyzer + ".>",
		events.StatusRoot + ".>",
		events.ResultRoot + "." + TimerService + ".>", // timer events
	},
	UpdateStreams: true,
}

// Run provisions the bus, starts consuming and firing timers, and blocks
// until ctx ends; then it stops consuming, lets decisions in progress finish
// (up to Config.StopTimeout), and returns nil.
func (s *Service) Run(ctx context.Context) error {
	return s.lc.Run(ctx, daemon.Plan{
		Name: "orchestrator", Client: s.client, Bus: s.cfg.Bus, Needs: Needs,
		StopTimeout: s.cfg.StopTimeout, Log: s.log, Start: s.start, Clock: s.cfg.Clock,
	})
}

// start opens the store, follows the bucket for timers and the phase
// gauge, and starts the two consumers.
func (s *Service) start(ctx context.Context, r *daemon.Running) error {
	kv := r.Bucket(BucketRollouts)
	s.st = newStore(kv, s.cfg.StateCache)

	commands := events.NewMux()
	for typ, kind := range map[string]string{
		events.TypeRolloutPromote: machine.CommandPromote,
		events.TypeRolloutAbort:   machine.CommandAbort,
		events.TypeRolloutRetry:   machine.CommandRetry,
		events.TypeRolloutPause:   machine.CommandPause,
		events.TypeRolloutResume:  machine.CommandResume,
		events.TypeRolloutUndo:    machine.CommandUndo,
		events.TypeRolloutRestart: machine.CommandRestart,
		events.TypeRolloutDelete:  machine.CommandDelete,
	} {
		commands.Handle(typ, s.commandHandler(kind, false))
	}
	commands.Handle(events.TypeExperimentTerminate, s.commandHandler(machine.CommandTerminate, true))
	commands.Handle(events.TypeExperimentDelete, s.commandHandler(machine.CommandDelete, true))
	commands.Handle(events.TypeRolloutRequested, s.handleRequested)
	commands.Handle(events.TypeExperimentRequested, s.handleExperimentRequested)
	// Templates are the analyzer's; they share the command subjects.
	commands.Handle(events.TypeAnalysisTemplateApply, func(context.Context, events.Delivery, events.Event) error { return nil })

	results := events.NewMux()
	results.Handle(tasks.TypeStarted, s.handleStarted)
	results.Handle(tasks.TypeFinished, s.handleFinished)
	results.Handle(tasks.TypeMeasured, s.handleMeasured)
	results.Handle(TypeTimerFired, s.handleTimer)

	cc := s.cfg.Commands
	cc.Stream, cc.Durable = events.StreamCommands, DurableCommands
	rc := s.cfg.Results
	rc.Stream, rc.Durable = events.StreamResults, DurableResults
	// A decision mostly waits on the bus (a read, a compare-and-swap, the
	// publishes), so more of them run at once than the consumer default.
	for _, c := range []*events.ConsumerConfig{&cc, &rc} {
		if c.Workers == 0 {
			c.Workers = DefaultWorkers
		}
	}

	s.timers = newTimers(s.log, s.cfg.Now, s.fireTimer)
	if err := s.timers.Watch(ctx, kv); err != nil {
		return err
	}
	// Timers stop last: a decision in progress may still set one.
	r.OnStop(daemon.StopFunc(func(context.Context) error { s.timers.Stop(); return nil }))
	if err := s.watchPhases(ctx, kv); err != nil {
		return err
	}
	if err := r.Consume(ctx, cc, commands.Dispatch); err != nil {
		return err
	}
	return r.Consume(ctx, rc, results.Dispatch)
}

// watchPhases keeps the rollouts-by-phase gauge in step with the bucket
// until ctx ends.
func (s *Service) watchPhases(ctx context.Context, kv jetstream.KeyValue) error {
	phases := s.cfg.Metrics.Phases()
	wctx, cancel := context.WithCancel(ctx)
	done, err := events.WatchKV(wctx, kv, func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			phases.Delete(e.Key())
			return
		}
		var phase string
		if lead, ok := jsonlead.Fields(e.Value(), "wakeup", "phase"); ok {
			_ = json.Unmarshal(lead["phase"], &phase)
		} else {
			// An entry written before the phase led the record.
			var rec struct {
				State struct {
					Phase string `json:"phase"`
				} `json:"state"`
			}
			_ = json.Unmarshal(e.Value(), &rec)
			phase = rec.State.Phase
		}
		if phase != "" {
			phases.Set(e.Key(), phase)
		} else {
			phases.Delete(e.Key()) // deleted: only its sequence numbers are kept
		}
	})
	if err != nil {
		cancel()
		return fmt.Errorf("watch rollout phases: %w", err)
	}
	go func() {
		<-ctx.Done()
		cancel()
		<-done
		phases.Forget()
	}()
	return nil
}

// refOf returns the rollout a delivered event is about, from its subject.
func refOf(d events.Delivery, ev events.Event) (events.Ref, error) {
	r, err := events.RefFromSubject(d.Subject)
	if err != nil {
		return r, events.Permanent(err)
	}
	if sub := ev.Subject(); sub != "" && sub != r.String() {
		return r, events.Permanent(fmt.Errorf("event subject %q does not match NATS subject %s (want %q)", sub, d.Subject, r.String()))
	}
	return r, nil
}

// commandHandler handles the commands of kind: a standalone experiment's
// when experiment is set, a rollout's otherwise.
func (s *Service) commandHandler(kind string, experiment bool) events.Handler {
	return func(ctx context.Context, del events.Delivery, ev events.Event) error {
		r, err := refOf(del, ev)
		if err != nil {
			return err
		}
		cause := causeOf(ev)
		cmd := machine.Command{Kind: kind, Experiment: experiment}
		// A command whose data cannot be read is answered, not dropped.
		switch kind {
		case machine.CommandPromote:
			var d events.PromoteData
			if err := events.DecodeData(ev, &d); err != nil {
				return s.refuse(ctx, r, cause, events.RefusedInvalid, err.Error())
			}
			cmd.Full = d.Full
		case machine.CommandUndo:
			var d events.UndoData
			if err := events.DecodeData(ev, &d); err != nil {
				return s.refuse(ctx, r, cause, events.RefusedInvalid, err.Error())
			}
			if d.ToRevision != nil {
				if *d.ToRevision < 0 {
					return s.refuse(ctx, r, cause, events.RefusedInvalid, fmt.Sprintf("toRevision %d must not be negative", *d.ToRevision))
				}
				cmd.ToRevision = *d.ToRevision
			}
		}
		return s.apply(ctx, update{ref: r, obs: machine.Observation{Command: &cmd, Cause: cause}, commandID: ev.ID(), mustExist: true, attempt: del.Attempt})
	}
}

// causeOf is the cause the machine records for command or request ev.
func causeOf(ev events.Event) machine.Cause {
	return machine.Cause{ID: ev.ID(), Type: ev.Type(), Actor: events.Extension(ev, events.ExtActor)}
}

// refuse answers a command the machine never saw: for a rollout that does
// not exist, or with data that cannot be read. Its id derives from the
// command's, so a redelivered command is answered once.
func (s *Service) refuse(ctx context.Context, r events.Ref, cause machine.Cause, code, reason string) error {
	snap := events.Snapshot{Namespace: r.Namespace, Name: r.Name, UpdatedAt: s.cfg.Now()}
	if code != events.RefusedNotFound {
		if rec, rev, err := s.st.load(ctx, r); err == nil && rev != 0 {
			snap = rec.State.Snapshot(s.cfg.Now())
		}
	}
	if slices.Contains(events.ExperimentCommandTypes, cause.Type) {
		snap.Kind = events.KindExperiment
	}
	s.log.Info("command refused", "rollout", r.String(), "command", cause.Type, "id", cause.ID, "actor", cause.Actor, "code", code, "reason", reason)
	return s.answer(ctx, r, events.RefusedType(cause.Type), "refused/"+cause.ID, cause, "",
		events.StatusData{Status: snap, Reason: reason, Command: &events.CommandAnswer{Type: cause.Type, ID: cause.ID, Code: code, Reason: reason}})
}

// answer publishes a status event the machine did not decide on (a
// rejected request, a refused command) with id, which derives from the
// event it answers so that a redelivery is answered once.
func (s *Service) answer(ctx context.Context, r events.Ref, typ, id string, cause machine.Cause, correlation string, data events.StatusData) error {
	out, err := statusEvent(r, machine.StatusEvent{Type: typ, Data: data, ID: id, Cause: cause, Correlation: correlation})
	if err != nil {
		return events.Permanent(err)
	}
	_, err = s.client.Publish(ctx, events.StatusSubject(r), out)
	return err
}

// statusEvent is the CloudEvent of st, a status event of r, with the
// contract's causationid, actor and correlationid extensions.
func statusEvent(r events.Ref, st machine.StatusEvent) (events.Event, error) {
	ev, err := events.New(Source, st.Type, r.String(), st.Data)
	if err != nil {
		return ev, err
	}
	ev.SetID(st.ID)
	setCause(&ev, st.Cause)
	if st.Correlation != "" {
		ev.SetExtension(events.ExtCorrelationID, st.Correlation)
	}
	return ev, nil
}

// setCause sets the causationid and actor extensions of ev.
func setCause(ev *events.Event, cause machine.Cause) {
	if cause.ID != "" {
		ev.SetExtension(events.ExtCausationID, cause.ID)
	}
	if cause.Actor != "" {
		ev.SetExtension(events.ExtActor, cause.Actor)
	}
}

func (s *Service) handleStarted(ctx context.Context, del events.Delivery, ev events.Event) error {
	var d tasks.Started
	return s.handleResult(ctx, del, ev, &d, func() machine.Observation { return machine.Observation{Started: &d} })
}

func (s *Service) handleFinished(ctx context.Context, del events.Delivery, ev events.Event) error {
	var d tasks.Finished
	return s.handleResult(ctx, del, ev, &d, func() machine.Observation { return machine.Observation{Finished: &d} })
}

func (s *Service) handleMeasured(ctx context.Context, del events.Delivery, ev events.Event) error {
	var d tasks.Measured
	return s.handleResult(ctx, del, ev, &d, func() machine.Observation { return machine.Observation{Measured: &d} })
}

func (s *Service) handleTimer(ctx context.Context, del events.Delivery, ev events.Event) error {
	var d timerData
	return s.handleResult(ctx, del, ev, &d, func() machine.Observation { return machine.Observation{Tick: true} })
}

func (s *Service) handleResult(ctx context.Context, del events.Delivery, ev events.Event, data any, obs func() machine.Observation) error {
	r, err := refOf(del, ev)
	if err != nil {
		return err
	}
	if err := events.DecodeData(ev, data); err != nil {
		return err
	}
	o := obs()
	// The subject names the service that published the report; the
	// machine accepts it only for that service's own tasks.
	if o.From, err = events.ServiceFromSubject(del.Subject); err != nil {
		return events.Permanent(err)
	}
	u := update{ref: r, obs: o, attempt: del.Attempt}
	if td, ok := data.(*timerData); ok {
		u.notBefore = td.Due
	}
	// Results for a rollout that no longer exists are stale, not errors.
	return s.apply(ctx, u)
}

// update is one observation to apply to one rollout.
type update struct {
	ref events.Ref
	obs machine.Observation
	// commandID is the event id of a command (empty for task reports): a
	// command whose id the rollout's record lists was applied already,
	// and its second delivery changes nothing, however late it comes.
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
	// notBefore is the due time of a timer event: the replica that fired
	// it saw the deadline come, so it has come. The replica deciding may
	// tell the time a little behind the one that fired (each knows the
	// bus's time within its clock's uncertainty); deciding by its own
	// clock, it would find the deadline not yet due, and the timer lost:
	// every replica fires a deadline under one event id, so the stream
	// drops its own, later, event as a duplicate.
	notBefore time.Time
}

// apply runs one observation through the machine and stores and publishes
// the outcome. Conflicting writes are retried as records.Store.Update
// says; past its bound the message is retried with backoff.
func (s *Service) apply(ctx context.Context, u update) error {
	d := &decision{s: s, update: u, kind: observationKind(u.obs)}
	if u.attempt > 1 {
		d.republish = true
	}
	decide := func(rec *record, rev uint64) error { return d.decide(ctx, rec, rev) }
	k := records.KeyOf(u.ref)
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
	if err == nil && d.missing {
		what, request := "rollout", events.TypeRolloutRequested
		if c := u.obs.Command; c != nil && c.Experiment {
			what, request = "experiment", events.TypeExperimentRequested
		}
		return s.refuse(ctx, u.ref, u.obs.Cause, events.RefusedNotFound,
			fmt.Sprintf("%s %s does not exist: publish %s first", what, u.ref, request))
	}
	if err != nil || d.out == nil {
		return err
	}
	return d.stored(ctx)
}

// decision carries one apply through its compare-and-swap attempts.
type decision struct {
	s *Service
	update
	kind string
	// republish is set until the record's outbox has been published
	// again: a redelivered message may have been decided on before a
	// crash that came before its effects were published.
	republish bool
	// onRecent says that decide is next given the record this replica
	// knows rather than one read from the bucket; verified, that the last
	// attempt was on the bucket's record.
	onRecent, verified bool
	// out is what the last attempt wrote; nil when it wrote nothing.
	out *outcome
	// missing: the rollout does not exist, and the observation must be
	// answered (mustExist).
	missing bool
}

// outcome is a decision that changes the rollout's record.
type outcome struct {
	prev, next machine.State
	effects    []machine.Effect
	now        time.Time
	// unchanged: the state stays; only the command's id is recorded.
	unchanged bool
}

// decide is one attempt: it decides on rec at rev and leaves in rec what
// to write, or returns records.Unchanged (nothing to write) or
// records.ErrStale (decide again on the bucket's record).
func (d *decision) decide(ctx context.Context, rec *record, rev uint64) error {
	if d.out != nil {
		d.lostRace() // called again after a write: it conflicted
	}
	d.verified, d.onRecent, d.out = !d.onRecent, false, nil
	s := d.s
	d.missing = false
	if rev == 0 && d.obs.Request == nil && d.obs.Experiment == nil {
		s.cfg.Metrics.Decision(d.kind, "ignored")
		d.missing = d.mustExist
		return records.Unchanged
	}
	if d.republish && len(rec.Outbox) > 0 {
		if err := s.publishEffects(ctx, d.ref, rec.Outbox); err != nil {
			return err
		}
		d.republish = false
	}
	if d.commandID != "" && slices.Contains(rec.Commands, d.commandID) {
		s.cfg.Metrics.Decision(d.kind, "duplicate")
		return records.Unchanged
	}
	now := s.cfg.Now()
	if now.Before(d.notBefore) {
		now = d.notBefore
	}
	next, effects := s.m.Next(rec.State, d.obs, now)
	unchanged := next.Version == rec.State.Version && len(effects) == 0
	if unchanged && d.commandID == "" {
		if !d.verified {
			// Another replica may have moved the rollout on: what is
			// unchanged here may apply to its record.
			return records.ErrStale
		}
		s.cfg.Metrics.Decision(d.kind, "unchanged")
		return records.Unchanged
	}
	if d.annotate != nil {
		d.annotate(effects)
	}
	out := record{State: next, Outbox: effects, Commands: rememberCommand(rec.Commands, d.commandID)}
	if unchanged {
		// Nothing to do now, but the command must not act when a copy of
		// it comes later: record its id, keep the outbox.
		out.Outbox = rec.Outbox
	}
	d.out = &outcome{prev: rec.State, next: next, effects: effects, now: now, unchanged: unchanged}
	*rec = out
	return nil
}

// lostRace counts the conflict of the last write when it was decided on
// the bucket's record; a conflict on the record this replica knew only
// means that record was out of date.
func (d *decision) lostRace() {
	if d.out != nil && d.verified {
		d.s.cfg.Metrics.CASConflict()
	}
}

// stored records, logs and publishes a decision once it is written.
func (d *decision) stored(ctx context.Context) error {
	s, o := d.s, d.out
	if o.unchanged {
		s.cfg.Metrics.Decision(d.kind, "unchanged")
		return nil
	}
	s.cfg.Metrics.Decision(d.kind, "changed")
	s.recordTask(o.prev, d.obs.Finished, o.now)
	s.logDecision(ctx, d.kind, o.prev, o.next, o.effects)
	return s.publishEffects(ctx, d.ref, o.effects)
}

// rememberedCommands is how many command ids a rollout's record keeps: a
// copy of a command older than the last this many is not recognised.
const rememberedCommands = 64

// rememberCommand returns ids with id added (the oldest dropped past
// rememberedCommands); an empty id leaves ids as they are.
func rememberCommand(ids []string, id string) []string {
	if id == "" {
		return ids
	}
	out := append(slices.Clone(ids), id)
	if len(out) > rememberedCommands {
		out = out[len(out)-rememberedCommands:]
	}
	return out
}

// observationKind names an observation for metrics and logs.
func observationKind(obs machine.Observation) string {
	switch {
	case obs.Request != nil:
		return "request"
	case obs.Experiment != nil:
		return "experiment"
	case obs.Command != nil:
		return "command"
	case obs.Started != nil:
		return "started"
	case obs.Finished != nil:
		return "finished"
	case obs.Measured != nil:
		return "measured"
	case obs.Tick:
		return "tick"
	}
	return "other"
}

// recordTask records the trigger-to-finish time of the task attempt fin
// reports, once: when it was still waiting in the state it was decided on.
func (s *Service) recordTask(prev machine.State, fin *tasks.Finished, now time.Time) {
	if fin == nil {
		return
	}
	candidates := []*machine.TaskRecord{prev.Scale, prev.Route}
	for i := range prev.Runs {
		candidates = append(candidates, &prev.Runs[i].Task, prev.Runs[i].Stop)
	}
	for _, t := range candidates {
		if t == nil || t.ID != fin.TaskID || t.Attempt != fin.Attempt || t.Done || t.Failed || t.SentAt.IsZero() {
			continue
		}
		outcome := fin.Outcome
		switch outcome {
		case tasks.OutcomeSucceeded, tasks.OutcomeFailed, tasks.OutcomeStale:
		default:
			outcome = "other"
		}
		s.cfg.Metrics.TaskFinished(t.Kind, outcome, now.Sub(t.SentAt))
		return
	}
}

// logDecision logs a decision that changed the rollout's state: at info
// level when its phase, revision or step moved, at debug level otherwise.
func (s *Service) logDecision(ctx context.Context, kind string, prev, next machine.State, effects []machine.Effect) {
	level := slog.LevelDebug
	if prev.Phase != next.Phase || prev.Revision != next.Revision || prev.Step != next.Step {
		level = slog.LevelInfo
	}
	s.log.Log(ctx, level, "rollout decided",
		"rollout", next.Ref.String(), "revision", next.Revision, "step", next.Step,
		"phase", next.Phase, "observation", kind, "version", next.Version, "effects", len(effects))
}

// publishEffects publishes every effect with its deterministic id, in
// order, waiting for the stream's acknowledgements of all at once.
func (s *Service) publishEffects(ctx context.Context, r events.Ref, effects []machine.Effect) error {
	out := make([]events.Outgoing, 0, len(effects))
	for _, e := range effects {
		var (
			subject string
			ev      events.Event
			err     error
		)
		switch {
		case e.Task != nil:
			svc, serr := tasks.Service(e.Task.Kind)
			if serr != nil {
				return events.Permanent(serr)
			}
			subject = events.TaskSubject(svc, r)
			ev, err = events.New(Source, tasks.TypeTriggered, r.String(), e.Task)
			ev.SetID(e.Task.EventID())
		case e.Status != nil:
			subject = events.StatusSubject(r)
			ev, err = statusEvent(r, *e.Status)
		default:
			continue
		}
		if err != nil {
			return events.Permanent(err)
		}
		out = append(out, events.Outgoing{Subject: subject, Event: ev})
	}
	if len(out) == 0 {
		return nil
	}
	return s.client.PublishAll(ctx, out)
}

// fireTimer publishes the timer event of r's deadline due. Every replica
// may fire it; the id makes the stream keep one.
func (s *Service) fireTimer(ctx context.Context, r events.Ref, due time.Time) error {
	ev, err := events.New(Source, TypeTimerFired, r.String(), timerData{Due: due})
	if err != nil {
		return err
	}
	ev.SetID(fmt.Sprintf("timer/%s/%s/%d", r.Namespace, r.Name, due.UnixNano()))
	_, err = s.client.Publish(ctx, events.ResultSubject(TimerService, r), ev)
	return err
}
