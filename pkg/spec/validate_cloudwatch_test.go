package spec

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TestValidateCloudWatch covers what the testdata files do not:
// placeholders, CloudWatch's limits and accepted periods.
func TestValidateCloudWatch(t *testing.T) {
	expr := func(id string) CloudWatchMetricDataQuery {
		e := "SUM(METRICS())"
		return CloudWatchMetricDataQuery{Id: id, Expression: &e}
	}
	stat := func(period intstr.IntOrString) CloudWatchMetricDataQuery {
		return CloudWatchMetricDataQuery{Id: "m", MetricStat: &CloudWatchMetricStat{Metric: CloudWatchMetricStatMetric{MetricName: "requests"}, Period: period, Stat: "Sum"}}
	}
	many := make([]CloudWatchMetricDataQuery, 501)
	for i := range many {
		many[i] = expr(fmt.Sprintf("q%d", i))
	}
	tests := []struct {
		name string
		m    CloudWatchMetric
		want []string
	}{
		{name: "placeholders pass", m: CloudWatchMetric{Interval: "{{args.window}}", MetricDataQueries: []CloudWatchMetricDataQuery{
			expr("{{args.id}}"), stat(intstr.FromString("{{args.period}}")),
		}}},
		{name: "periods CloudWatch accepts", m: CloudWatchMetric{MetricDataQueries: []CloudWatchMetricDataQuery{
			stat(intstr.FromInt32(1)), {Id: "a", Expression: cloudWatchPtr("x"), Period: cloudWatchPtr(intstr.FromInt32(30))}, {Id: "b", Expression: cloudWatchPtr("x"), Period: cloudWatchPtr(intstr.FromString("3600"))},
		}}},
		{name: "a period of 90 seconds", m: CloudWatchMetric{MetricDataQueries: []CloudWatchMetricDataQuery{stat(intstr.FromInt32(90))}},
			want: []string{"p.metricDataQueries[0].metricStat.period: Invalid value: 90: CloudWatch accepts 1, 5, 10, 20, 30 or a multiple of 60 seconds, not 90"}},
		{name: "a negative interval", m: CloudWatchMetric{Interval: "-5m", MetricDataQueries: []CloudWatchMetricDataQuery{expr("q")}},
			want: []string{`p.interval: Invalid value: "-5m": duration "-5m" is negative`}},
		{name: "more than 500 queries", m: CloudWatchMetric{MetricDataQueries: many},
			want: []string{"p.metricDataQueries: Too many: 501: must have at most 500 items"}},
		{name: "an id too long", m: CloudWatchMetric{MetricDataQueries: []CloudWatchMetricDataQuery{expr("q" + strings.Repeat("x", 255))}},
			want: []string{"p.metricDataQueries[0].id: Too long: may not be more than 255 bytes"}},
		{name: "an empty namespace", m: CloudWatchMetric{MetricDataQueries: []CloudWatchMetricDataQuery{{Id: "m", MetricStat: &CloudWatchMetricStat{Metric: CloudWatchMetricStatMetric{MetricName: "r", Namespace: cloudWatchPtr(" ")}, Period: intstr.FromInt32(60), Stat: "Sum"}}}},
			want: []string{"p.metricDataQueries[0].metricStat.metric.namespace: Required value: must not be empty when set"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range validateCloudWatch(&tc.m, field.NewPath("p")) {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func cloudWatchPtr[T any](v T) *T { return &v }
