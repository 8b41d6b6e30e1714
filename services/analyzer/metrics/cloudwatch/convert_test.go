package cloudwatch

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/pkg/spec"
)

func TestQueries(t *testing.T) {
	tests := []struct {
		name    string
		in      []spec.CloudWatchMetricDataQuery
		want    []types.MetricDataQuery
		wantErr string
	}{
		{
			name: "expression",
			in:   []spec.CloudWatchMetricDataQuery{{Id: "q", Expression: aws.String("SUM(METRICS())"), Label: aws.String("l"), Period: &intstr.IntOrString{Type: intstr.String, StrVal: "60"}}},
			want: []types.MetricDataQuery{{Id: aws.String("q"), Expression: aws.String("SUM(METRICS())"), Label: aws.String("l"), Period: aws.Int32(60)}},
		},
		{
			name: "metricStat with dimensions, unit and returnData",
			in: []spec.CloudWatchMetricDataQuery{{Id: "m", ReturnData: aws.Bool(false), MetricStat: &spec.CloudWatchMetricStat{
				Metric: spec.CloudWatchMetricStatMetric{Namespace: aws.String("AWS/ELB"), MetricName: "Latency", Dimensions: []spec.CloudWatchMetricStatMetricDimension{{Name: "LoadBalancerName", Value: "web"}}},
				Period: intstr.FromInt32(300), Stat: "p99", Unit: "Seconds",
			}}},
			want: []types.MetricDataQuery{{Id: aws.String("m"), ReturnData: aws.Bool(false), MetricStat: &types.MetricStat{
				Metric: &types.Metric{Namespace: aws.String("AWS/ELB"), MetricName: aws.String("Latency"), Dimensions: []types.Dimension{{Name: aws.String("LoadBalancerName"), Value: aws.String("web")}}},
				Period: aws.Int32(300), Stat: aws.String("p99"), Unit: types.StandardUnitSeconds,
			}}},
		},
		{
			name:    "a period that is not a number",
			in:      []spec.CloudWatchMetricDataQuery{{Id: "q", Expression: aws.String("x"), Period: &intstr.IntOrString{Type: intstr.String, StrVal: "1m"}}},
			wantErr: `metricDataQueries[0].period: "1m" is not a number of seconds`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := queries(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("queries:\n got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestValue(t *testing.T) {
	tests := []struct {
		name string
		rs   []types.MetricDataResult
		want string
	}{
		{"none", nil, "[]"},
		{"one empty", []types.MetricDataResult{{}}, "[[]]"},
		{"two", []types.MetricDataResult{{Values: []float64{0.5, 1}}, {Values: []float64{3}}}, "[[0.5 1] [3]]"},
		{"non-finite", []types.MetricDataResult{{Values: []float64{math.NaN(), math.Inf(1), math.Inf(-1)}}}, "[[NaN +Inf -Inf]]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := value(tc.rs); got != tc.want {
				t.Errorf("value = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProblem(t *testing.T) {
	ok := types.MetricDataResult{Id: aws.String("ok"), StatusCode: types.StatusCodeComplete, Values: []float64{1}}
	tests := []struct {
		name string
		rs   []types.MetricDataResult
		want string // substring; "" means judgeable
	}{
		{"complete", []types.MetricDataResult{ok}, ""},
		{"no status code", []types.MetricDataResult{{Id: aws.String("a"), Values: []float64{1}}}, ""},
		{"no results", nil, "CloudWatch returned no results"},
		{"empty values", []types.MetricDataResult{ok, {Id: aws.String("b"), StatusCode: types.StatusCodeComplete}}, "no datapoints for b in the interval"},
		{"internal error", []types.MetricDataResult{ok, {Id: aws.String("c"), StatusCode: types.StatusCodeInternalError, Values: []float64{1}}}, "CloudWatch did not complete c (InternalError)"},
		{"forbidden", []types.MetricDataResult{{Id: aws.String("d"), StatusCode: types.StatusCodeForbidden, Messages: []types.MessageData{{Code: aws.String("Forbidden"), Value: aws.String("no access to account 1")}}}}, "d (Forbidden: Forbidden: no access to account 1)"},
		{"partial data left over", []types.MetricDataResult{{Id: aws.String("e"), StatusCode: types.StatusCodePartialData, Values: []float64{1}}}, "e (PartialData)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := problem(tc.rs)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("problem = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestResultsJoinPages(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var rs results
	rs.add(&cloudwatch.GetMetricDataOutput{
		MetricDataResults: []types.MetricDataResult{
			{Id: aws.String("a"), Label: aws.String("A"), Values: []float64{1}, Timestamps: []time.Time{t0}, StatusCode: types.StatusCodePartialData},
			{Id: aws.String("b"), Values: []float64{10}, Timestamps: []time.Time{t0}, StatusCode: types.StatusCodeComplete},
		},
		Messages: []types.MessageData{{Code: aws.String("c1"), Value: aws.String("v1")}},
	})
	rs.add(&cloudwatch.GetMetricDataOutput{
		MetricDataResults: []types.MetricDataResult{
			{Id: aws.String("a"), Values: []float64{2}, Timestamps: []time.Time{t0.Add(-time.Minute)}, StatusCode: types.StatusCodeComplete},
		},
		Messages: []types.MessageData{{Code: aws.String("c2"), Value: aws.String("v2")}},
	})
	if got, want := value(rs.list), "[[1 2] [10]]"; got != want {
		t.Errorf("value = %q, want %q", got, want)
	}
	a := rs.list[0]
	if aws.ToString(a.Label) != "A" || a.StatusCode != types.StatusCodeComplete || len(a.Timestamps) != 2 {
		t.Errorf("joined result = %+v", a)
	}
	if got, want := formatMessages(rs.messages), "c1: v1; c2: v2"; got != want {
		t.Errorf("messages = %q, want %q", got, want)
	}
}
