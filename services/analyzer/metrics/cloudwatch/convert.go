package cloudwatch

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/pkg/spec"
)

// queries maps a metric's metricDataQueries onto the SDK's, field by field
// as Argo Rollouts does. A period must be an integer number of seconds
// (after argument substitution); Argo would send 0 for "five", which
// CloudWatch refuses on every call.
func queries(in []spec.CloudWatchMetricDataQuery) ([]types.MetricDataQuery, error) {
	out := make([]types.MetricDataQuery, len(in))
	for i, q := range in {
		out[i] = types.MetricDataQuery{
			Id:         aws.String(q.Id),
			Expression: q.Expression,
			Label:      q.Label,
			ReturnData: q.ReturnData,
		}
		if q.Period != nil {
			p, err := period(*q.Period)
			if err != nil {
				return nil, fmt.Errorf("metricDataQueries[%d].period: %w", i, err)
			}
			out[i].Period = &p
		}
		ms := q.MetricStat
		if ms == nil {
			continue
		}
		p, err := period(ms.Period)
		if err != nil {
			return nil, fmt.Errorf("metricDataQueries[%d].metricStat.period: %w", i, err)
		}
		stat := &types.MetricStat{
			Metric: &types.Metric{MetricName: aws.String(ms.Metric.MetricName), Namespace: ms.Metric.Namespace},
			Period: &p,
			Stat:   aws.String(ms.Stat),
			Unit:   types.StandardUnit(ms.Unit),
		}
		for _, d := range ms.Metric.Dimensions {
			stat.Metric.Dimensions = append(stat.Metric.Dimensions, types.Dimension{Name: aws.String(d.Name), Value: aws.String(d.Value)})
		}
		out[i].MetricStat = stat
	}
	return out, nil
}

func period(v intstr.IntOrString) (int32, error) {
	if v.Type == intstr.Int {
		return v.IntVal, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v.StrVal), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number of seconds", v.StrVal)
	}
	return int32(n), nil
}

// describeQueries renders what was asked, for the measurement's Query:
// "rate = errors / requests; errors: AWS/ApplicationELB HTTPCode_Target_5XX_Count{LoadBalancer=app/x} Sum 60s".
func describeQueries(qs []types.MetricDataQuery) string {
	parts := make([]string, 0, len(qs))
	for _, q := range qs {
		id := aws.ToString(q.Id)
		if q.Expression != nil {
			parts = append(parts, id+" = "+*q.Expression)
			continue
		}
		ms := q.MetricStat
		if ms == nil || ms.Metric == nil {
			parts = append(parts, id)
			continue
		}
		var b strings.Builder
		b.WriteString(id + ": ")
		if ns := aws.ToString(ms.Metric.Namespace); ns != "" {
			b.WriteString(ns + " ")
		}
		b.WriteString(aws.ToString(ms.Metric.MetricName))
		if len(ms.Metric.Dimensions) > 0 {
			dims := make([]string, len(ms.Metric.Dimensions))
			for i, d := range ms.Metric.Dimensions {
				dims[i] = aws.ToString(d.Name) + "=" + aws.ToString(d.Value)
			}
			b.WriteString("{" + strings.Join(dims, ",") + "}")
		}
		fmt.Fprintf(&b, " %s %ds", aws.ToString(ms.Stat), aws.ToInt32(ms.Period))
		parts = append(parts, b.String())
	}
	return strings.Join(parts, "; ")
}

// results gathers the pages of one GetMetricData call: a query's
// datapoints may be spread over several pages, so results with the same Id
// are joined, in the order CloudWatch first returned them, and the last
// page's StatusCode is the query's.
type results struct {
	list     []types.MetricDataResult
	byID     map[string]int
	messages []types.MessageData
}

func (r *results) add(out *cloudwatch.GetMetricDataOutput) {
	if r.byID == nil {
		r.byID = map[string]int{}
	}
	r.messages = append(r.messages, out.Messages...)
	for _, res := range out.MetricDataResults {
		id := aws.ToString(res.Id)
		i, seen := r.byID[id]
		if !seen {
			r.byID[id] = len(r.list)
			r.list = append(r.list, res)
			continue
		}
		prev := &r.list[i]
		prev.Timestamps = append(prev.Timestamps, res.Timestamps...)
		prev.Values = append(prev.Values, res.Values...)
		prev.Messages = append(prev.Messages, res.Messages...)
		if res.StatusCode != "" {
			prev.StatusCode = res.StatusCode
		}
		if prev.Label == nil {
			prev.Label = res.Label
		}
	}
}

// value is the measurement's value as Argo Rollouts records it: the Values
// of every result, "[[0.1 0.2] [3]]".
func value(rs []types.MetricDataResult) string {
	vs := make([][]float64, 0, len(rs))
	for _, r := range rs {
		vs = append(vs, r.Values)
	}
	return fmt.Sprintf("%+v", vs)
}

// problem says why rs cannot be judged, or "" when they can: a query that
// CloudWatch did not complete (InternalError, Forbidden, PartialData left
// over), a query with no datapoint in the window, or no result at all.
// Argo Rollouts judges all of these by the conditions, where an empty list
// makes `all(result[0].Values, ...)` true; here missing data is an Error.
func problem(rs []types.MetricDataResult) string {
	if len(rs) == 0 {
		return "CloudWatch returned no results (does any query have returnData unset or true?)"
	}
	var incomplete, empty []string
	for _, r := range rs {
		id := aws.ToString(r.Id)
		switch r.StatusCode {
		case types.StatusCodeComplete, "":
		default:
			s := fmt.Sprintf("%s (%s", id, r.StatusCode)
			if m := formatMessages(r.Messages); m != "" {
				s += ": " + m
			}
			incomplete = append(incomplete, s+")")
			continue
		}
		if len(r.Values) == 0 {
			empty = append(empty, id)
		}
	}
	var msgs []string
	if len(incomplete) > 0 {
		msgs = append(msgs, "CloudWatch did not complete "+strings.Join(incomplete, ", "))
	}
	if len(empty) > 0 {
		msgs = append(msgs, fmt.Sprintf("no datapoints for %s in the interval: check the metric name, namespace and dimensions, or use FILL() in an expression where no data means zero", strings.Join(empty, ", ")))
	}
	return strings.Join(msgs, "; ")
}

// formatMessages renders CloudWatch's messages as "Code: Value; ...".
func formatMessages(ms []types.MessageData) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, strings.TrimSpace(aws.ToString(m.Code)+": "+aws.ToString(m.Value)))
	}
	return strings.Join(parts, "; ")
}
