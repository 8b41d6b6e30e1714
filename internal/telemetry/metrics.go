package telemetry

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/pkg/events"
)

// Metrics holds every Sluice service metric. Labels are bounded: event
// types, consumer names, task kinds, outcomes and phases come from fixed
// sets; no metric is labelled with a rollout, revision or task id.
//
// The methods of a nil *Metrics do nothing, so code can record
// unconditionally.
type Metrics struct {
	published       *prometheus.CounterVec
	handled         *prometheus.CounterVec
	handlerDuration *prometheus.HistogramVec
	redeliveries    *prometheus.CounterVec
	deadLettered    *prometheus.CounterVec
	pending         *prometheus.GaugeVec
	ackPending      *prometheus.GaugeVec

	rollouts     *prometheus.GaugeVec
	decisions    *prometheus.CounterVec
	casConflicts prometheus.Counter
	pinChanges   prometheus.Counter
	pinsGiven    prometheus.Counter
	stateReads   *prometheus.CounterVec
	reordered    prometheus.Counter
	taskDuration *prometheus.HistogramVec

	workerTasks        *prometheus.CounterVec
	workerTaskDuration *prometheus.HistogramVec

	measurements *prometheus.CounterVec
	verdicts     *prometheus.CounterVec

	routerOps      *prometheus.CounterVec
	routerDuration *prometheus.HistogramVec

	gatewayRequests *prometheus.CounterVec

	notifications        *prometheus.CounterVec
	notificationDuration *prometheus.HistogramVec

	clockUncertainty *prometheus.GaugeVec
	clockBound       *prometheus.GaugeVec
	clockOffset      *prometheus.GaugeVec
}

var _ events.Observer = (*Metrics)(nil)

// taskBuckets span a route change (sub-second) to a slow scale-up or a long
// analysis run (an hour).
var taskBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_events_published_total",
			Help: "Events published, by CloudEvents type and outcome (stored, duplicate, failed).",
		}, []string{"type", "outcome"}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_events_handled_total",
			Help: "Deliveries handled, by durable consumer, CloudEvents type (unknown when undecodable or unhandled) and outcome (acked, retried, dead_lettered).",
		}, []string{"consumer", "type", "outcome"}),
		handlerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_event_handler_duration_seconds",
			Help:    "Time a handler took with one delivery, by durable consumer and CloudEvents type.",
			Buckets: prometheus.DefBuckets,
		}, []string{"consumer", "type"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_consumer_redeliveries_total",
			Help: "Deliveries that were not the message's first, by durable consumer.",
		}, []string{"consumer"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_events_dead_lettered_total",
			Help: "Messages given up and copied to the dead-letter stream, by durable consumer and reason class (malformed, unknown_type, permanent, retries_exhausted, unacknowledged).",
		}, []string{"consumer", "reason"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_consumer_pending_messages",
			Help: "Messages not yet delivered to the durable consumer (num_pending), sampled periodically.",
		}, []string{"stream", "consumer"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_consumer_ack_pending_messages",
			Help: "Messages delivered to the durable consumer and not yet acknowledged (num_ack_pending), sampled periodically.",
		}, []string{"stream", "consumer"}),

		rollouts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_orchestrator_rollouts",
			Help: "Rollouts in the state bucket by phase (Progressing, Paused, Healthy, Degraded), as seen by this orchestrator replica.",
		}, []string{"phase"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_orchestrator_decisions_total",
			Help: "Observations run through the step machine, by observation (request, experiment, command, started, finished, measured, tick) and result (changed, unchanged, ignored, duplicate).",
		}, []string{"observation", "result"}),
		pinChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_orchestrator_pin_changes_total",
			Help: "Partitions this replica was pinned to anew (with --partitions): it forgot the records of their rollouts and reads them from the bucket.",
		}),
		pinsGiven: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_orchestrator_partitions_given_back_total",
			Help: "Partitions this replica gave back because it held more than its share (with --partitions): it stopped pulling them and unpinned them for another replica.",
		}),
		casConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_orchestrator_cas_conflicts_total",
			Help: "Rollout state writes lost to a concurrent writer (compare-and-swap conflicts) and decided again.",
		}),
		stateReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_orchestrator_state_reads_total",
			Help: "Decisions made on a rollout's record read from the state bucket rather than the one this replica knew, by reason: uncached (it knew none), stale (the one it knew was out of date or had to be checked), conflict (a decision on the bucket's record lost its write) or leader (a decision on the record a replica of the bucket answered changed nothing, and is checked on the stream leader's record).",
		}, []string{"reason"}),
		reordered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_orchestrator_commands_reordered_total",
			Help: "Commands decided ahead of their own delivery because a command of the same rollout stored after them was taken first (their delivery was held elsewhere: a replica cut off or paused, or a redelivery).",
		}),
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_orchestrator_task_duration_seconds",
			Help:    "Time from a task attempt's trigger to its finished report, by task kind and outcome.",
			Buckets: taskBuckets,
		}, []string{"kind", "outcome"}),

		workerTasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_worker_tasks_total",
			Help: "Task deliveries a worker service handled, by service, task kind and outcome (Succeeded, Failed, Stale, accepted, error).",
		}, []string{"service", "kind", "outcome"}),
		workerTaskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_worker_task_duration_seconds",
			Help:    "Time a worker's executor took with one task delivery, by service and task kind.",
			Buckets: taskBuckets,
		}, []string{"service", "kind"}),

		measurements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_analyzer_measurements_total",
			Help: "Measurements taken, by metric provider type and phase (Successful, Failed, Inconclusive, Error).",
		}, []string{"provider", "phase"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_analyzer_verdicts_total",
			Help: "Analysis runs completed, by verdict phase.",
		}, []string{"phase"}),

		routerOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_traffic_router_operations_total",
			Help: "Routes applied to a traffic router, by router and result (applied, stale, rejected, error).",
		}, []string{"router", "result"}),
		routerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_traffic_router_operation_duration_seconds",
			Help:    "Time a traffic router took to apply one route, by router.",
			Buckets: prometheus.DefBuckets,
		}, []string{"router"}),
		gatewayRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gateway_requests_total",
			Help: "Requests the gateway's API answered, by route (its pattern, e.g. \"GET /api/v1/rollouts\"; \"other\" when none matched) and status code.",
		}, []string{"route", "code"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_notifications_total",
			Help: "Notifications the notifier handled, by configured service name, trigger and outcome (sent, retried, failed, skipped).",
		}, []string{"service", "trigger", "outcome"}),
		notificationDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_notification_duration_seconds",
			Help:    "Time one attempt to send a notification took, by configured service name.",
			Buckets: prometheus.DefBuckets,
		}, []string{"service"}),
		clockUncertainty: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_clock_uncertainty_seconds",
			Help: "How far, at most, the service's clock (the bus's time, package clock) may be from the bus's: half the round trip of the reading it came from, grown by the drift bound since; by service (orchestrator, analyzer, replicas). Updated at every sync (every 30s).",
		}, []string{"service"}),
		clockBound: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_clock_max_uncertainty_seconds",
			Help: "The largest uncertainty of the bus's time the service accepts (--clock-max-uncertainty), by service: an alert compares sluice_clock_uncertainty_seconds with it.",
		}, []string{"service"}),
		clockOffset: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_clock_offset_seconds",
			Help: "How far the bus's time was ahead of this host's wall clock at the last sync (negative: behind), by service (orchestrator, analyzer, replicas). Sluice decides by the bus's time; a large offset says the host's clock is wrong.",
		}, []string{"service"}),
	}
	for _, c := range []prometheus.Collector{
		m.published, m.handled, m.handlerDuration, m.redeliveries, m.deadLettered, m.pending, m.ackPending,
		m.rollouts, m.decisions, m.casConflicts, m.pinChanges, m.pinsGiven, m.stateReads, m.reordered, m.taskDuration,
		m.workerTasks, m.workerTaskDuration, m.measurements, m.verdicts, m.routerOps, m.routerDuration,
		m.gatewayRequests, m.notifications, m.notificationDuration, m.clockUncertainty, m.clockBound, m.clockOffset,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

var (
	defaultOnce    sync.Once
	defaultMetrics *Metrics
)

// Default returns the process's metrics, registered on
// prometheus.DefaultRegisterer (what the service binaries serve on
// /metrics) on first use. Services use it when their configuration names
// no Metrics.
func Default() *Metrics {
	defaultOnce.Do(func() {
		m, err := New(prometheus.DefaultRegisterer)
		var are prometheus.AlreadyRegisteredError
		if err != nil && !errors.As(err, &are) {
			panic("telemetry: " + err.Error())
		}
		defaultMetrics = m
	})
	return defaultMetrics
}

// Published implements events.Observer.
func (m *Metrics) Published(eventType, outcome string) {
	if m == nil {
		return
	}
	m.published.WithLabelValues(eventType, outcome).Inc()
}

// Handled implements events.Observer.
func (m *Metrics) Handled(consumer, eventType, outcome string, attempt uint64, took time.Duration) {
	if m == nil {
		return
	}
	m.handled.WithLabelValues(consumer, eventType, outcome).Inc()
	m.handlerDuration.WithLabelValues(consumer, eventType).Observe(took.Seconds())
	if attempt > 1 {
		m.redeliveries.WithLabelValues(consumer).Inc()
	}
}

// DeadLettered implements events.Observer.
func (m *Metrics) DeadLettered(consumer, class string) {
	if m == nil {
		return
	}
	m.deadLettered.WithLabelValues(consumer, class).Inc()
}

// ConsumerLag implements events.Observer.
func (m *Metrics) ConsumerLag(stream, consumer string, pending, ackPending uint64) {
	if m == nil {
		return
	}
	m.pending.WithLabelValues(stream, consumer).Set(float64(pending))
	m.ackPending.WithLabelValues(stream, consumer).Set(float64(ackPending))
}

// Decision counts one observation run through the step machine; result is
// changed, unchanged, ignored (a result for a rollout that does not exist) or
// duplicate (a command applied before).
func (m *Metrics) Decision(observation, result string) {
	if m == nil {
		return
	}
	m.decisions.WithLabelValues(observation, result).Inc()
}

// CASConflict counts one lost compare-and-swap on the rollout state.
func (m *Metrics) CASConflict() {
	if m == nil {
		return
	}
	m.casConflicts.Inc()
}

// PinChanged counts one partition pinned to this replica anew.
func (m *Metrics) PinChanged() {
	if m == nil {
		return
	}
	m.pinChanges.Inc()
}

// PartitionGivenBack counts one partition this replica gave back to
// spread the pins.
func (m *Metrics) PartitionGivenBack() {
	if m == nil {
		return
	}
	m.pinsGiven.Inc()
}

// StateRead counts one decision made on a record read from the state
// bucket; reason is uncached, stale or conflict.
func (m *Metrics) StateRead(reason string) {
	if m == nil {
		return
	}
	m.stateReads.WithLabelValues(reason).Inc()
}

// CommandsReordered counts n commands decided ahead of their own
// delivery, before a later command of their rollout.
func (m *Metrics) CommandsReordered(n int) {
	if m == nil {
		return
	}
	m.reordered.Add(float64(n))
}

// TaskFinished records a task attempt's time from trigger to finished report.
func (m *Metrics) TaskFinished(kind, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.taskDuration.WithLabelValues(kind, outcome).Observe(took.Seconds())
}

// WorkerTask records one task delivery carried out by a worker service.
func (m *Metrics) WorkerTask(service, kind, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.workerTasks.WithLabelValues(service, kind, outcome).Inc()
	m.workerTaskDuration.WithLabelValues(service, kind).Observe(took.Seconds())
}

// Measurement counts one measurement taken by the analyzer.
func (m *Metrics) Measurement(provider, phase string) {
	if m == nil {
		return
	}
	m.measurements.WithLabelValues(provider, phase).Inc()
}

// Verdict counts one completed analysis run.
func (m *Metrics) Verdict(phase string) {
	if m == nil {
		return
	}
	m.verdicts.WithLabelValues(phase).Inc()
}

// RouterOperation records one route applied (or not) by router.
func (m *Metrics) RouterOperation(router, result string, took time.Duration) {
	if m == nil {
		return
	}
	m.routerOps.WithLabelValues(router, result).Inc()
	m.routerDuration.WithLabelValues(router).Observe(took.Seconds())
}

// Phases keeps the sluice_orchestrator_rollouts gauge in step with a view
// of the rollout state bucket: Set each entry's phase as it is seen, Delete
// it when it goes. Safe for concurrent use.
type Phases struct {
	m     *Metrics
	mu    sync.Mutex
	byKey map[string]string
}

// Phases returns an empty view that feeds m's rollouts-by-phase gauge.
func (m *Metrics) Phases() *Phases { return &Phases{m: m, byKey: map[string]string{}} }

// Set records that rollout key is in phase.
func (p *Phases) Set(key, phase string) {
	if p == nil || p.m == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old, had := p.byKey[key]
	if had && old == phase {
		return
	}
	if had {
		p.m.rollouts.WithLabelValues(old).Dec()
	}
	p.byKey[key] = phase
	p.m.rollouts.WithLabelValues(phase).Inc()
}

// Delete forgets rollout key.
func (p *Phases) Delete(key string) {
	if p == nil || p.m == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, had := p.byKey[key]; had {
		p.m.rollouts.WithLabelValues(old).Dec()
		delete(p.byKey, key)
	}
}

// Forget drops the whole view (the watcher stopped), removing its
// contribution to the gauge.
func (p *Phases) Forget() {
	if p == nil || p.m == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, old := range p.byKey {
		p.m.rollouts.WithLabelValues(old).Dec()
		delete(p.byKey, k)
	}
}

// GatewayRequest counts a request the gateway's API answered with code;
// route is its pattern, or "other".
func (m *Metrics) GatewayRequest(route string, code int) {
	if m == nil {
		return
	}
	m.gatewayRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}

// Notification counts a notification handled for a configured service and
// trigger with outcome (sent, retried, failed, skipped).
func (m *Metrics) Notification(service, trigger, outcome string) {
	if m == nil {
		return
	}
	m.notifications.WithLabelValues(service, trigger, outcome).Inc()
}

// NotificationDuration observes one attempt to send a notification.
func (m *Metrics) NotificationDuration(service string, took time.Duration) {
	if m == nil {
		return
	}
	m.notificationDuration.WithLabelValues(service).Observe(took.Seconds())
}

// NotificationCounter is the counter Notification increments, for tests.
func (m *Metrics) NotificationCounter(service, trigger, outcome string) prometheus.Counter {
	return m.notifications.WithLabelValues(service, trigger, outcome)
}

// Clock records the estimate of service's clock of the bus's time: its
// offset from the host's wall clock and its uncertainty (clock.Bus.Offset).
func (m *Metrics) Clock(service string, offset, uncertainty time.Duration) {
	if m == nil {
		return
	}
	m.clockOffset.WithLabelValues(service).Set(offset.Seconds())
	m.clockUncertainty.WithLabelValues(service).Set(uncertainty.Seconds())
}

// ClockBound records the largest uncertainty of the bus's time service
// accepts (--clock-max-uncertainty).
func (m *Metrics) ClockBound(service string, bound time.Duration) {
	if m == nil {
		return
	}
	m.clockBound.WithLabelValues(service).Set(bound.Seconds())
}
