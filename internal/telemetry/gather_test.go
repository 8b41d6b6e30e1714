package telemetry_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// series returns the series of family name whose labels include want.
func series(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// value sums the counters or gauges of name whose labels include want; it
// is -1 when there is no such series.
func value(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	ms := series(t, reg, name, want)
	if len(ms) == 0 {
		return -1
	}
	var sum float64
	for _, m := range ms {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

func gauge(t *testing.T, reg prometheus.Gatherer, name, label, v string) float64 {
	t.Helper()
	return value(t, reg, name, map[string]string{label: v})
}

func histogramCount(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) uint64 {
	t.Helper()
	var n uint64
	for _, m := range series(t, reg, name, want) {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}
