package spec

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CloudWatch's own limits on a GetMetricData request
// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDataQuery.html):
// a request CloudWatch would refuse every time is reported here, before a
// run starts.
const (
	cloudWatchMaxQueries       = 500
	cloudWatchMaxIDLength      = 255
	cloudWatchMaxExpression    = 2048
	cloudWatchMaxDimensions    = 30
	cloudWatchMaxDimensionPart = 1024
)

// cloudWatchID is CloudWatch's rule for a MetricDataQuery Id: a lowercase
// letter first, then letters, digits and underscores.
var cloudWatchID = regexp.MustCompile(`^[a-z][a-zA-Z0-9_]*$`)

// cloudWatchUnits are CloudWatch's StandardUnit values.
var cloudWatchUnits = []string{
	"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
	"Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
	"Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
	"Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
	"Count/Second", "None",
}

// validateCloudWatch returns every problem of a cloudWatch provider block at
// p: Argo Rollouts' rules and those CloudWatch always refuses (query ids,
// one of expression or metricStat, periods, units, dimensions, 500 queries,
// a request that returns no data at all).
func validateCloudWatch(m *CloudWatchMetric, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	ip := p.Child("interval")
	errs = append(errs, duration(ip, m.Interval)...)
	if m.Interval != "" && !isPlaceholder(string(m.Interval)) {
		if d, err := m.Interval.Duration(); err == nil && d <= 0 {
			errs = append(errs, field.Invalid(ip, string(m.Interval), "must be greater than 0"))
		}
	}

	qp := p.Child("metricDataQueries")
	switch n := len(m.MetricDataQueries); {
	case n == 0:
		return append(errs, field.Required(qp, "must hold at least one query"))
	case n > cloudWatchMaxQueries:
		errs = append(errs, field.TooMany(qp, n, cloudWatchMaxQueries))
	}
	ids := sets.New[string]()
	returnsData := false
	for i, q := range m.MetricDataQueries {
		errs = append(errs, validateCloudWatchQuery(q, qp.Index(i), ids)...)
		if q.ReturnData == nil || *q.ReturnData {
			returnsData = true
		}
	}
	if !returnsData {
		errs = append(errs, field.Invalid(qp, "returnData: false", "at least one query must return data (returnData unset or true); otherwise there is no result to judge"))
	}
	return errs
}

func validateCloudWatchQuery(q CloudWatchMetricDataQuery, p *field.Path, ids sets.Set[string]) field.ErrorList {
	var errs field.ErrorList
	idp := p.Child("id")
	switch {
	case q.Id == "":
		errs = append(errs, field.Required(idp, ""))
	case isPlaceholder(q.Id):
	case len(q.Id) > cloudWatchMaxIDLength:
		errs = append(errs, field.TooLong(idp, q.Id, cloudWatchMaxIDLength))
	case !cloudWatchID.MatchString(q.Id):
		errs = append(errs, field.Invalid(idp, q.Id, "must start with a lowercase letter and hold only letters, digits and underscores"))
	case ids.Has(q.Id):
		errs = append(errs, field.Duplicate(idp, q.Id))
	default:
		ids.Insert(q.Id)
	}

	errs = append(errs, exactlyOne(p, []string{"expression", "metricStat"}, []bool{q.Expression != nil, q.MetricStat != nil})...)
	if e := q.Expression; e != nil {
		ep := p.Child("expression")
		switch {
		case strings.TrimSpace(*e) == "":
			errs = append(errs, field.Required(ep, ""))
		case !isPlaceholder(*e) && len(*e) > cloudWatchMaxExpression:
			errs = append(errs, field.TooLong(ep, "", cloudWatchMaxExpression))
		}
	}
	if q.Period != nil {
		errs = append(errs, cloudWatchPeriod(p.Child("period"), q.Period)...)
	}
	if ms := q.MetricStat; ms != nil {
		errs = append(errs, validateCloudWatchMetricStat(ms, p.Child("metricStat"))...)
	}
	return errs
}

func validateCloudWatchMetricStat(ms *CloudWatchMetricStat, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	mp := p.Child("metric")
	if strings.TrimSpace(ms.Metric.MetricName) == "" {
		errs = append(errs, field.Required(mp.Child("metricName"), ""))
	}
	if ns := ms.Metric.Namespace; ns != nil && strings.TrimSpace(*ns) == "" {
		errs = append(errs, field.Required(mp.Child("namespace"), "must not be empty when set"))
	}
	dp := mp.Child("dimensions")
	if n := len(ms.Metric.Dimensions); n > cloudWatchMaxDimensions {
		errs = append(errs, field.TooMany(dp, n, cloudWatchMaxDimensions))
	}
	for i, d := range ms.Metric.Dimensions {
		for _, f := range []struct{ name, value string }{{"name", d.Name}, {"value", d.Value}} {
			fp := dp.Index(i).Child(f.name)
			switch {
			case f.value == "":
				errs = append(errs, field.Required(fp, ""))
			case !isPlaceholder(f.value) && len(f.value) > cloudWatchMaxDimensionPart:
				errs = append(errs, field.TooLong(fp, "", cloudWatchMaxDimensionPart))
			}
		}
	}
	if strings.TrimSpace(ms.Stat) == "" {
		errs = append(errs, field.Required(p.Child("stat"), ""))
	}
	errs = append(errs, cloudWatchPeriod(p.Child("period"), &ms.Period)...)
	if u := ms.Unit; u != "" && !isPlaceholder(u) && !slices.Contains(cloudWatchUnits, u) {
		errs = append(errs, field.NotSupported(p.Child("unit"), u, cloudWatchUnits))
	}
	return errs
}

// cloudWatchPeriod checks a period in seconds: an integer (or a string
// holding one, or a placeholder) that CloudWatch accepts: 1, 5, 10, 20, 30
// or a multiple of 60.
func cloudWatchPeriod(p *field.Path, v *intstr.IntOrString) field.ErrorList {
	var n int64
	switch {
	case v.Type == intstr.Int:
		n = int64(v.IntVal)
	case isPlaceholder(v.StrVal):
		return nil
	case strings.TrimSpace(v.StrVal) == "":
		return field.ErrorList{field.Required(p, "must be a number of seconds greater than 0")}
	default:
		var err error
		if n, err = strconv.ParseInt(strings.TrimSpace(v.StrVal), 10, 32); err != nil {
			return field.ErrorList{field.Invalid(p, v.StrVal, "must be an integer number of seconds or an {{args.NAME}} placeholder")}
		}
	}
	switch {
	case n <= 0:
		return field.ErrorList{field.Invalid(p, n, "must be a number of seconds greater than 0")}
	case n < 60 && !slices.Contains([]int64{1, 5, 10, 20, 30}, n), n >= 60 && n%60 != 0:
		return field.ErrorList{field.Invalid(p, n, fmt.Sprintf("CloudWatch accepts 1, 5, 10, 20, 30 or a multiple of 60 seconds, not %d", n))}
	}
	return nil
}
