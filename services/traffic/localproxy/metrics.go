package localproxy

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// Metric names. They are public: analysis templates query them.
const (
	MetricRequests = "sluice_proxy_requests_total"
	MetricDuration = "sluice_proxy_request_duration_seconds"
)

// metrics are the proxy's request metrics.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricRequests,
		Help: "Requests answered by the local platform's proxy, by rollout, role of the revision that served them (stable, canary, active, preview, experiment), experiment template (empty for the others) and HTTP status code.",
	}, []string{"namespace", "rollout", "role", "template", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricDuration,
		Help:    "Time from a request's arrival at the local platform's proxy to the end of its response, by rollout, role and experiment template.",
		Buckets: prometheus.DefBuckets,
	}, []string{"namespace", "rollout", "role", "template"})
	var err error
	if requests, err = register(reg, requests); err != nil {
		return nil, err
	}
	if duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	return &metrics{requests: requests, duration: duration}, nil
}

// register registers c, or returns the equal collector registered before
// (a second proxy in one process shares the series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// observe counts one request answered with code after d, served (or meant
// to be) by role; template is the experiment template's name for role
// experiment, else empty.
func (m *metrics) observe(ref events.Ref, role spec.Role, template string, code int, d time.Duration) {
	m.requests.WithLabelValues(ref.Namespace, ref.Name, string(role), template, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(ref.Namespace, ref.Name, string(role), template).Observe(d.Seconds())
}
