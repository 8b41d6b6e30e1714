package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas/local"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

// maxMeasurements is how many recent measurements `get` shows.
const maxMeasurements = 8

// defaultStateDir is sluice dev's --state-dir default; get and logs read
// the local platform's processes under it.
const defaultStateDir = ".sluice"

func newGetCmd(conn *events.ConnConfig) *cobra.Command {
	var o getOptions
	cmd := &cobra.Command{
		Use:   "get <rollout>",
		Short: "Show a rollout: phase, step, weights, replicas, analysis, processes (--watch: live)",
		Long: `Show a rollout: phase, step, set and actual weights, replicas, analysis and
its latest measurements, the latest event and who caused it, and on the
local platform the proxy URL and every process (pid, port, readiness,
restarts, command), read from the state directory of sluice dev or
sluice-replicas (--state-dir). A standalone Experiment's name shows the
experiment, as 'sluice get experiment NAME' does.

With --watch, a terminal is redrawn in place on every status event and
every second (pause countdowns, processes); other output gets a new frame
per event, and -o json one JSON object per line.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGet(cmd, *conn, nounRollout, args[0], o)
		},
	}
	o.addFlags(cmd, nounRollout)

	var xo getOptions
	exp := &cobra.Command{
		Use:   "experiment <experiment>",
		Short: "Show a standalone Experiment: phase, templates, analysis runs, processes (--watch: live)",
		Long: `Show a standalone Experiment: its phase and message, each template's pods
(ReplicaSet, replicas asked for and available, pod-template hash, Service),
its analysis runs and their latest measurements, the latest event and who
caused it, and on the local platform every process of its templates.

With --watch, a terminal is redrawn in place on every status event and
every second; other output gets a new frame per event, and -o json one
JSON object per line.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGet(cmd, *conn, nounExperiment, args[0], xo)
		},
	}
	xo.addFlags(exp, nounExperiment)
	cmd.AddCommand(exp)
	return cmd
}

// getOptions are get's flags.
type getOptions struct {
	ns, output, stateDir string
	watch                bool
}

func (o *getOptions) addFlags(cmd *cobra.Command, noun string) {
	addNamespaceFlagOf(cmd, &o.ns, noun)
	addOutputFlag(cmd, &o.output, "one object per line under --watch")
	cmd.Flags().BoolVarP(&o.watch, "watch", "w", false, "keep watching: redraw on every status event (Ctrl-C to stop)")
	cmd.Flags().StringVar(&o.stateDir, "state-dir", defaultStateDir, "local platform: the state directory of sluice dev or sluice-replicas, for the processes")
}

// runGet shows the noun (rollout, experiment) named arg. A rollout's get
// shows an experiment too; an experiment's get refuses a rollout.
func runGet(cmd *cobra.Command, conn events.ConnConfig, noun, arg string, o getOptions) error {
	r, err := objectRef(noun, arg, o.ns)
	if err != nil {
		return err
	}
	if err := checkOutput(o.output); err != nil {
		return err
	}
	ctx := cmd.Context()
	client, err := connect(ctx, conn)
	if err != nil {
		return err
	}
	defer client.Close()
	v, err := loadView(ctx, client, noun, r)
	if err != nil {
		return err
	}
	if noun == nounExperiment && v.snapshot.Kind != events.KindExperiment {
		return fmt.Errorf("%s is a rollout, not an experiment: `sluice get %s` shows it", r, r)
	}
	out := cmd.OutOrStdout()
	d := display{out: out, json: o.output == outputJSON, stateDir: o.stateDir, ref: r,
		redraw: o.watch && isTerminal(out) && o.output == outputText, paint: painter(useColor(out)),
		current: currentStatus(ctx, client)}
	if err := d.show(v, ""); err != nil {
		return err
	}
	if !o.watch {
		return nil
	}
	return watchRollout(ctx, client, r, v, d)
}

// view is what `get` knows of a rollout, built from its events.
type view struct {
	snapshot     events.Snapshot
	measurements []events.Measurement
	// steps holds each started step's detail ("setWeight 20",
	// "pause 30s") by index, for the current revision.
	steps map[int32]string
	// last is the latest status event.
	last *eventSummary
	// listen is the local.sluice.io/listen of the latest request.
	listen string
	// processes are the local platform's processes, when at hand.
	processes []local.Process
	// lastSeq is the status stream sequence the view is current to.
	lastSeq uint64
}

// apply updates the view with one event of the rollout: a status event,
// or the rollout.requested command whose manifest names the proxy address.
func (v *view) apply(ev events.Event) {
	if ev.Type() == events.TypeRolloutRequested {
		var m struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if events.DecodeData(ev, &m) == nil {
			v.listen = m.Metadata.Annotations[localproxy.AnnotationListen]
		}
		return
	}
	var d events.StatusData
	if events.DecodeData(ev, &d) != nil {
		return
	}
	v.last = &eventSummary{Type: ev.Type(), Time: ev.Time(), Actor: events.Extension(ev, events.ExtActor),
		CausationID: events.Extension(ev, events.ExtCausationID), Reason: d.Reason, Command: d.Command}
	// A refusal of a command for a rollout that does not exist carries no
	// snapshot: keep what is known.
	if d.Status.Phase == "" {
		return
	}
	if d.Status.Revision != v.snapshot.Revision || d.Status.Kind != v.snapshot.Kind {
		v.measurements, v.steps = nil, nil
	}
	v.snapshot = d.Status
	if d.Step != nil && ev.Type() == events.TypeRolloutStepStarted {
		if v.steps == nil {
			v.steps = map[int32]string{}
		}
		v.steps[d.Step.Index] = d.Step.Detail
	}
	if d.Measurement != nil {
		v.measurements = append(v.measurements, *d.Measurement)
		if len(v.measurements) > maxMeasurements {
			v.measurements = v.measurements[len(v.measurements)-maxMeasurements:]
		}
	}
}

// setWeight is the weight the latest setWeight step asked for, up to the
// current step.
func (v view) setWeight() (int32, bool) {
	s := v.snapshot
	if s.StepIndex == nil || s.Aborted {
		return 0, false
	}
	for i := min(*s.StepIndex, s.StepCount-1); i >= 0; i-- {
		if w, ok := strings.CutPrefix(v.steps[i], "setWeight "); ok {
			n, err := strconv.ParseInt(w, 10, 32)
			return int32(n), err == nil
		}
	}
	return 0, false
}

// pauseLeft is how long a timed pause step has left at now.
func (v view) pauseLeft(now time.Time) (time.Duration, bool) {
	s := v.snapshot
	if s.Phase != events.PhasePaused || s.StepIndex == nil {
		return 0, false
	}
	length, ok := strings.CutPrefix(v.steps[*s.StepIndex], "pause ")
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(length)
	if err != nil {
		return 0, false
	}
	for _, pc := range s.PauseConditions {
		if pc.Reason == "CanaryPauseStep" {
			return max(pc.StartTime.Add(d).Sub(now), 0), true
		}
	}
	return 0, false
}

// loadView replays r's events into a view; noun (rollout, experiment)
// names what is looked for in errors.
func loadView(ctx context.Context, client *events.Client, noun string, r events.Ref) (view, error) {
	s, err := client.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		return view{}, err
	}
	notFound := fmt.Errorf("%s %s not found: no status events (was it applied, and is the orchestrator running?)", noun, r)
	last, err := s.GetLastMsgForSubject(ctx, events.StatusSubject(r))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return view{}, notFound
	}
	if err != nil {
		return view{}, err
	}
	var v view
	h, err := client.History(ctx, r)
	if err != nil {
		return view{}, err
	}
	for _, e := range h {
		if e.Err == nil {
			v.apply(e.Event)
		}
	}
	if v.snapshot.Phase == "" {
		if v.last != nil && v.last.Command != nil {
			return view{}, fmt.Errorf("%s %s not found; the latest command for it: %s", noun, r, refusal(v.last.Command))
		}
		return view{}, notFound
	}
	v.lastSeq = last.Sequence
	return v, nil
}

// display renders views of one rollout to out: text frames (redrawn in
// place on a terminal) or JSON lines.
type display struct {
	out      io.Writer
	json     bool
	redraw   bool
	paint    painter
	stateDir string
	ref      events.Ref
	// current reads the rollout's status as the orchestrator holds it now;
	// nil when its records cannot be read.
	current func(events.Ref) (events.Snapshot, bool)
}

// currentStatus returns a reader of rollouts' status as the orchestrator
// holds it now, or nil when its records cannot be read (no orchestrator
// ever ran on the bus, or the caller may not read them). A status event's
// snapshot is the status when it was published: replica counts a finished
// scale-down reported since show only in the record.
func currentStatus(ctx context.Context, client *events.Client) func(events.Ref) (events.Snapshot, bool) {
	rd, err := orchestrator.NewReader(ctx, client)
	if err != nil {
		return nil
	}
	return func(r events.Ref) (events.Snapshot, bool) {
		snap, err := rd.Get(ctx, r)
		return snap, err == nil
	}
}

// withCurrent replaces v's snapshot with the one held now, unless that is
// of an older revision than the events (the record is written before the
// events are published, so it rarely is).
func withCurrent(v view, current func(events.Ref) (events.Snapshot, bool), r events.Ref) view {
	if current == nil {
		return v
	}
	if snap, ok := current(r); ok && snap.Kind == v.snapshot.Kind && snap.Revision >= v.snapshot.Revision {
		if snap.Revision != v.snapshot.Revision {
			v.measurements, v.steps = nil, nil
		}
		v.snapshot = snap
	}
	return v
}

// getJSON is `get -o json`: one object per rendering.
type getJSON struct {
	Status       events.Snapshot      `json:"status"`
	Measurements []events.Measurement `json:"measurements,omitempty"`
	LastEvent    *eventSummary        `json:"lastEvent,omitempty"`
	ProxyURL     string               `json:"proxyURL,omitempty"`
	Processes    []local.Process      `json:"processes,omitempty"`
}

// show renders v; heading, when set, introduces an appended frame.
func (d display) show(v view, heading string) error {
	v = withCurrent(v, d.current, d.ref)
	v.processes, _ = local.Processes(d.stateDir, d.ref)
	if d.json {
		j := getJSON{Status: v.snapshot, Measurements: v.measurements, LastEvent: v.last, Processes: v.processes}
		if v.listen != "" {
			j.ProxyURL = proxyURL(v.listen)
		}
		return writeJSONLine(d.out, j)
	}
	var b strings.Builder
	if heading != "" && !d.redraw {
		fmt.Fprintf(&b, "\n── %s\n", heading)
	}
	renderSnapshot(&b, frame{view: v, now: time.Now(), paint: d.paint})
	text := b.String()
	if d.redraw {
		text = redrawn(text)
	}
	_, err := io.WriteString(d.out, text)
	return err
}

// watchRollout renders r again on every status event after v until ctx
// ends; on a terminal also every second, for countdowns and processes.
func watchRollout(ctx context.Context, client *events.Client, r events.Ref, v view, d display) error {
	s, err := client.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		return err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.StatusSubject(r)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    v.lastSeq + 1,
	})
	if err != nil {
		return err
	}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			if d.redraw {
				if err := d.show(v, ""); err != nil {
					return err
				}
			}
			continue
		}
		if err != nil {
			return err
		}
		ev, err := events.Decode(msg.Data(), msg.Headers())
		if err != nil {
			continue
		}
		v.apply(ev)
		heading := time.Now().Format(time.TimeOnly) + "  " + eventName(ev.Type())
		if w := who(ev); w != "" {
			heading += " " + w
		}
		if err := d.show(v, heading); err != nil {
			return err
		}
	}
}
