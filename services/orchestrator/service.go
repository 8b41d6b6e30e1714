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
	// and FilterSubjects are set by the service. With Partitions, Results
	// tunes each partition's consumer (Workers default
	// DefaultPartitionWorkers) and Commands is unused.
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
	// InlineState writes every rollout record with its spec and templates
	// inline, as releases before the split records did, and rewrites the
	// records kept split so at start: for a rolling upgrade from such a
	// release, and before rolling back to one (docs/operations.md).
	InlineState bool
	// StopTimeout bounds how long a stopping replica waits for the
	// decisions in progress (default daemon.DefaultStopTimeout).
	StopTimeout time.Duration
	// Partitions, when above 0, gives each rollout one owner at a time
	// (owners.go): commands and results are copied into this many
	// partitions, each consumed by one replica at a time. 0 keeps the
	// shared consumers DurableCommands and DurableResults, where any
	// replica takes any message. Fixed for a bus once set
	// (docs/orchestrator.md).
	Partitions int
	// OwnerTTL is how long a partition stays with a replica that stopped
	// pulling it (died, cut off) before another takes it over (default
	// DefaultOwnerTTL; at least 2 s).
	OwnerTTL time.Duration
}

// MaxPartitions bounds Config.Partitions.
const MaxPartitions = 1024

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
	if c.OwnerTTL == 0 {
		c.OwnerTTL = DefaultOwnerTTL
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
	if c.Partitions < 0 || c.Partitions > MaxPartitions {
		errs = append(errs, fmt.Errorf("%w: orchestrator: --partitions %d must be between 0 (shared consumers) and %d", events.ErrInvalidConfig, c.Partitions, MaxPartitions))
	}
	if c.OwnerTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("%w: orchestrator: --owner-ttl %s must be at least 2s (a pull request lives at least 1s, and expires within half the TTL)", events.ErrInvalidConfig, c.OwnerTTL))
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
	cmdLog commandLog
	owners owners
	// rebalance gives back the partitions beyond this replica's share
	// (with Partitions).
	rebalance *rebalancer
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
	Buckets: []events.Bucket{
		{Name: BucketRollouts, Description: "Sluice rollout state, one entry per rollout", History: 1, Public: true},
		{Name: BucketReplicas, Description: "Sluice orchestrator replicas pulling the partitions, one key per replica", History: 1, TTL: replicasTTL},
	},
	Publish: []string{
		events.TaskRoot + "." + tasks.ServiceReplicas + ".>",
		events.TaskRoot + "." + tasks.ServiceTraffic + ".>",
		events.TaskRoot + "." + tasks.ServiceAnalyzer + ".>",
		events.StatusRoot + ".>",
		events.ResultRoot + "." + TimerService + ".>", // timer events
	},
	UpdateStreams: true,
	// With --partitions (owners.go).
	Streams: []string{StreamOwners},
	Retires: []events.Durable{
		{Stream: events.StreamCommands, Name: DurableCommands},
		{Stream: events.StreamResults, Name: DurableResults},
	},
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
	s.st = newStore(kv, s.cfg.StateCache, s.client.Conn())
	if s.cfg.InlineState {
		s.st.inline = true
		go s.st.inlineAll(ctx, s.log)
	}
	s.cmdLog = commandLog{client: s.client}

	commands := router{}
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
		commands[typ] = s.commandHandler(kind, false)
	}
	commands[events.TypeExperimentTerminate] = s.commandHandler(machine.CommandTerminate, true)
	commands[events.TypeExperimentDelete] = s.commandHandler(machine.CommandDelete, true)
	commands[events.TypeRolloutRequested] = s.handleRequested
	commands[events.TypeExperimentRequested] = s.handleExperimentRequested
	// Templates are the analyzer's; they share the command subjects.
	commands[events.TypeAnalysisTemplateApply] = func(context.Context, events.Delivery, events.Event) (*update, error) { return nil, nil }

	results := router{
		tasks.TypeStarted:  s.handleStarted,
		tasks.TypeFinished: s.handleFinished,
		tasks.TypeMeasured: s.handleMeasured,
		TypeTimerFired:     s.handleTimer,
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
	if s.cfg.Partitions > 0 {
		return s.startPartitions(ctx, r, commands, results)
	}

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

	for _, c := range []struct {
		cfg     events.ConsumerConfig
		r       router
		ordered bool
	}{{cc, commands, true}, {rc, results, false}} {
		sub, err := s.client.ConsumeBatches(ctx, c.cfg, s.batchHandler(c.r, c.ordered))
		if err != nil {
			return err
		}
		r.OnStop(sub)
	}
	return nil
}

// preparer reads a message into the update it asks for, or answers it
// itself (a rejected request, a command whose data cannot be read) and
// returns a nil update.
type preparer func(ctx context.Context, d events.Delivery, ev events.Event) (*update, error)

// router prepares each event type its own way.
type router map[string]preparer

// batchHandler decides on the messages of one rollout that arrived
// together in one decision (applyAll): one state write and one publish
// batch rather than one of each per message. When ordered (commands),
// the rollout's commands stored before the batch and not yet applied are
// decided first, in the same decision (order.go); their own deliveries
// then find them applied.
func (s *Service) batchHandler(rt router, ordered bool) events.BatchHandler {
	return func(ctx context.Context, batch []events.Message) []error {
		if !ordered {
			return s.decideBatch(ctx, rt, batch, 0)
		}
		all := s.withEarlier(ctx, batch, func(typ string) bool {
			_, ok := rt[typ]
			return ok && typ != events.TypeAnalysisTemplateApply
		})
		// Only the delivered messages' outcomes are theirs to settle;
		// the earlier commands' own deliveries settle those.
		return s.decideBatch(ctx, rt, all, len(all)-len(batch))[len(all)-len(batch):]
	}
}

// decideBatch prepares each message of one rollout's batch and decides
// them together; it returns one error per message. The first ahead are
// commands decided ahead of their own delivery, which alone answers them
// when they are refused or rejected: here they only take their place in
// the order.
func (s *Service) decideBatch(ctx context.Context, rt router, batch []events.Message, ahead int) []error {
	errs := make([]error, len(batch))
	var (
		us  []update
		idx []int
	)
	for i, m := range batch {
		p, ok := rt[m.Event.Type()]
		if !ok {
			errs[i] = fmt.Errorf("%w %q: this consumer handles %v", events.ErrUnknownType, m.Event.Type(), rt.types())
			continue
		}
		pctx := ctx
		if i < ahead {
			pctx = context.WithValue(ctx, unanswered{}, true)
		}
		u, err := p(pctx, m.Delivery, m.Event)
		if err != nil || u == nil {
			errs[i] = err
			continue
		}
		if u.commandID != "" {
			u.seq = m.Delivery.Sequence
		}
		u.ahead = i < ahead
		us, idx = append(us, *u), append(idx, i)
	}
	if len(us) == 0 {
		return errs
	}
	results := s.applyAll(ctx, us[0].ref, us)
	if len(us) > 1 && slices.ContainsFunc(results, events.IsPermanent) {
		// One update no decision can take fails them all; decided
		// alone, the others are not dead-lettered with it.
		for j, u := range us {
			results[j] = s.apply(ctx, u)
		}
	}
	for j, err := range results {
		errs[idx[j]] = err
	}
	return errs
}

func (rt router) types() []string {
	out := make([]string, 0, len(rt))
	for t := range rt {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
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

// commandHandler prepares the commands of kind: a standalone experiment's
// when experiment is set, a rollout's otherwise.
func (s *Service) commandHandler(kind string, experiment bool) preparer {
	return func(ctx context.Context, del events.Delivery, ev events.Event) (*update, error) {
		r, err := refOf(del, ev)
		if err != nil {
			return nil, err
		}
		cause := causeOf(ev)
		cmd := machine.Command{Kind: kind, Experiment: experiment}
		// A command whose data cannot be read is answered, not dropped.
		switch kind {
		case machine.CommandPromote:
			var d events.PromoteData
			if err := events.DecodeData(ev, &d); err != nil {
				return nil, s.refuse(ctx, r, cause, events.RefusedInvalid, err.Error())
			}
			cmd.Full = d.Full
		case machine.CommandUndo:
			var d events.UndoData
			if err := events.DecodeData(ev, &d); err != nil {
				return nil, s.refuse(ctx, r, cause, events.RefusedInvalid, err.Error())
			}
			if d.ToRevision != nil {
				if *d.ToRevision < 0 {
					return nil, s.refuse(ctx, r, cause, events.RefusedInvalid, fmt.Sprintf("toRevision %d must not be negative", *d.ToRevision))
				}
				cmd.ToRevision = *d.ToRevision
			}
		}
		return &update{ref: r, obs: machine.Observation{Command: &cmd, Cause: cause}, commandID: ev.ID(), mustExist: true, attempt: del.Attempt}, nil
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
	if ctx.Value(unanswered{}) != nil {
		return nil // decided ahead of its delivery, which answers it
	}
	out, err := statusEvent(r, machine.StatusEvent{Type: typ, Data: data, ID: id, Cause: cause, Correlation: correlation})
	if err != nil {
		return events.Permanent(err)
	}
	_, err = s.client.Publish(ctx, events.StatusSubject(r), out)
	return err
}

// unanswered marks the context of a command prepared ahead of its own
// delivery (order.go): a refusal or a rejection is published by the
// delivery, once, not again by every later command that looks back on
// it.
type unanswered struct{}

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

func (s *Service) handleStarted(ctx context.Context, del events.Delivery, ev events.Event) (*update, error) {
	var d tasks.Started
	return s.handleResult(ctx, del, ev, &d, func() machine.Observation { return machine.Observation{Started: &d} })
}

func (s *Service) handleFinished(ctx context.Context, del events.Delivery, ev events.Event) (*update, error) {
	var d tasks.Finished
	return s.handleResult(ctx, del, ev, &d, func() machine.Observation { return machine.Observation{Finished: &d} })
}

func (s *Service) handleMeasured(ctx context.Context, del events.Delivery, ev events.Event) (*update, error) {
	var d tasks.Measured
	return s.handleResult(ctx, del, ev, &d, func() machine.Observation { return machine.Observation{Measured: &d} })
}

func (s *Service) handleTimer(ctx context.Context, del events.Delivery, ev events.Event) (*update, error) {
	var d timerData
	return s.handleResult(ctx, del, ev, &d, func() machine.Observation { return machine.Observation{Tick: true} })
}

func (s *Service) handleResult(ctx context.Context, del events.Delivery, ev events.Event, data any, obs func() machine.Observation) (*update, error) {
	r, err := refOf(del, ev)
	if err != nil {
		return nil, err
	}
	if err := events.DecodeData(ev, data); err != nil {
		return nil, err
	}
	o := obs()
	// The subject names the service that published the report; the
	// machine accepts it only for that service's own tasks.
	if o.From, err = events.ServiceFromSubject(del.Subject); err != nil {
		return nil, events.Permanent(err)
	}
	// Deadlines are judged at the time the report or timer event was
	// stored (machine.Observation.Stored): the rollout's messages stored
	// before it were decided before it.
	o.Stored = del.Published
	u := &update{ref: r, obs: o, attempt: del.Attempt}
	if td, ok := data.(*timerData); ok {
		u.notBefore = td.Due
	}
	// Results for a rollout that no longer exists are stale, not errors.
	return u, nil
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
