package spec

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate returns every problem with t as written, each with its field
// path. See the package documentation for the rules.
func (t *AnalysisTemplate) Validate() field.ErrorList {
	errs := validateObjectMeta(&t.ObjectMeta, true)
	return append(errs, validateTemplateSpec(&t.Spec, field.NewPath("spec"))...)
}

// Validate returns every problem with t as written, each with its field
// path. Its namespace is not checked: the kind is cluster-scoped.
func (t *ClusterAnalysisTemplate) Validate() field.ErrorList {
	errs := validateObjectMeta(&t.ObjectMeta, false)
	return append(errs, validateTemplateSpec(&t.Spec, field.NewPath("spec"))...)
}

// Validate returns every problem with r as written, each with its field
// path. A run's metrics follow a template's rules; its status phases must
// be known ones.
func (r *AnalysisRun) Validate() field.ErrorList {
	p := field.NewPath("spec")
	errs := validateObjectMeta(&r.ObjectMeta, true)
	errs = append(errs, validateMetrics(r.Spec.Metrics, p.Child("metrics"))...)
	errs = append(errs, validateArgs(r.Spec.Args, p.Child("args"))...)
	errs = append(errs, validateDryRun(r.Spec.DryRun, p.Child("dryRun"))...)
	errs = append(errs, validateRetention(r.Spec.MeasurementRetention, p.Child("measurementRetention"))...)

	sp := field.NewPath("status")
	errs = append(errs, phase(sp.Child("phase"), r.Status.Phase)...)
	for i, mr := range r.Status.MetricResults {
		mp := sp.Child("metricResults").Index(i)
		errs = append(errs, phase(mp.Child("phase"), mr.Phase)...)
		for j, m := range mr.Measurements {
			errs = append(errs, phase(mp.Child("measurements").Index(j).Child("phase"), m.Phase)...)
		}
	}
	return errs
}

var phases = []AnalysisPhase{AnalysisPhasePending, AnalysisPhaseRunning, AnalysisPhaseSuccessful, AnalysisPhaseFailed, AnalysisPhaseError, AnalysisPhaseInconclusive}

func phase(p *field.Path, v AnalysisPhase) field.ErrorList {
	if v == "" || slices.Contains(phases, v) {
		return nil
	}
	return field.ErrorList{field.NotSupported(p, v, phases)}
}

func validateTemplateSpec(s *AnalysisTemplateSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateMetrics(s.Metrics, p.Child("metrics"))...)
	errs = append(errs, undeclaredArgs(s, p)...)
	errs = append(errs, validateArgs(s.Args, p.Child("args"))...)
	errs = append(errs, validateDryRun(s.DryRun, p.Child("dryRun"))...)
	errs = append(errs, validateRetention(s.MeasurementRetention, p.Child("measurementRetention"))...)
	return errs
}

func validateMetrics(metrics []Metric, p *field.Path) field.ErrorList {
	if len(metrics) == 0 {
		return field.ErrorList{field.Required(p, "must define at least one metric")}
	}
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range metrics {
		mp := p.Index(i)
		switch name := metrics[i].Name; {
		case name == "":
			errs = append(errs, field.Required(mp.Child("name"), ""))
		case names.Has(name):
			errs = append(errs, field.Duplicate(mp.Child("name"), name))
		}
		names.Insert(metrics[i].Name)
		errs = append(errs, validateMetric(&metrics[i], mp)...)
	}
	return errs
}

func validateMetric(m *Metric, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, duration(p.Child("interval"), m.Interval)...)
	errs = append(errs, duration(p.Child("initialDelay"), m.InitialDelay)...)

	count, countKnown, e := intOrArg(p.Child("count"), m.Count, 0)
	errs = append(errs, e...)
	// -1 means no failure limit, for metrics judged by
	// consecutiveSuccessLimit alone.
	failures, failuresKnown, e := intOrArg(p.Child("failureLimit"), m.FailureLimit, -1)
	errs = append(errs, e...)
	inconclusive, inconclusiveKnown, e := intOrArg(p.Child("inconclusiveLimit"), m.InconclusiveLimit, 0)
	errs = append(errs, e...)
	_, _, e = intOrArg(p.Child("consecutiveErrorLimit"), m.ConsecutiveErrorLimit, 0)
	errs = append(errs, e...)
	successes, successesKnown, e := intOrArg(p.Child("consecutiveSuccessLimit"), m.ConsecutiveSuccessLimit, 0)
	errs = append(errs, e...)

	if countKnown && count > 1 && m.Interval == "" {
		errs = append(errs, field.Required(p.Child("interval"), "must be set when count is greater than 1"))
	}
	if countKnown && count > 0 {
		for _, l := range []struct {
			name  string
			value int
			known bool
		}{{"failureLimit", failures, failuresKnown}, {"inconclusiveLimit", inconclusive, inconclusiveKnown}, {"consecutiveSuccessLimit", successes, successesKnown}} {
			if l.known && l.value > count {
				errs = append(errs, field.Invalid(p.Child(l.name), l.value, fmt.Sprintf("must not be greater than count (%d)", count)))
			}
		}
	}
	return append(errs, validateProvider(&m.Provider, p.Child("provider"))...)
}

// duration checks a DurationString when it is set and not a placeholder.
func duration(p *field.Path, d DurationString) field.ErrorList {
	if d == "" || isPlaceholder(string(d)) {
		return nil
	}
	if _, err := d.Duration(); err != nil {
		return field.ErrorList{field.Invalid(p, string(d), err.Error())}
	}
	return nil
}

func validateProvider(pr *MetricProvider, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	var set []string
	for _, v := range []struct {
		name     string
		ok       bool
		validate func(*field.Path) field.ErrorList
	}{
		{"prometheus", pr.Prometheus != nil, func(p *field.Path) field.ErrorList { return validatePrometheus(pr.Prometheus, p) }},
		{"web", pr.Web != nil, func(p *field.Path) field.ErrorList { return validateWeb(pr.Web, p) }},
		{"datadog", pr.Datadog != nil, func(p *field.Path) field.ErrorList { return validateDatadog(pr.Datadog, p) }},
		{"newRelic", pr.NewRelic != nil, func(p *field.Path) field.ErrorList { return validateNewRelic(pr.NewRelic, p) }},
		{"job", pr.Job != nil, func(p *field.Path) field.ErrorList { return validateJob(pr.Job, p) }},
		{"cloudWatch", pr.CloudWatch != nil, func(p *field.Path) field.ErrorList { return validateCloudWatch(pr.CloudWatch, p) }},
		{"graphite", pr.Graphite != nil, func(p *field.Path) field.ErrorList { return validateGraphite(pr.Graphite, p) }},
		{"influxdb", pr.Influxdb != nil, func(p *field.Path) field.ErrorList { return validateInfluxdb(pr.Influxdb, p) }},
		{"plugin", len(pr.Plugin) > 0, func(p *field.Path) field.ErrorList { return validatePlugin(pr.Plugin, p) }},
	} {
		if v.ok {
			set = append(set, v.name)
			errs = append(errs, v.validate(p.Child(v.name))...)
		}
	}
	for _, u := range []struct {
		name string
		raw  []byte
	}{{"kayenta", pr.Kayenta}, {"wavefront", pr.Wavefront}, {"skywalking", pr.SkyWalking}} {
		if present(u.raw) {
			set = append(set, u.name)
			errs = append(errs, field.Forbidden(p.Child(u.name), unsupportedProvider(u.name)))
		}
	}
	switch len(set) {
	case 0:
		errs = append(errs, field.Required(p, "must set exactly one provider: "+strings.Join(SupportedProviders, ", ")))
	case 1:
	default:
		errs = append(errs, field.Invalid(p, strings.Join(set, ", "), "must set exactly one provider"))
	}
	return errs
}

// SupportedProviders are the metric providers Sluice measures, by their
// keys in a metric's provider block.
var SupportedProviders = []string{"prometheus", "web", "datadog", "newRelic", "cloudWatch", "graphite", "influxdb", "job", "plugin"}

func unsupportedProvider(name string) string {
	return fmt.Sprintf("unsupported provider %q; Sluice supports %s", name, strings.Join(SupportedProviders, ", "))
}

func validatePrometheus(m *PrometheusMetric, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, httpURL(p.Child("address"), m.Address)...)
	if strings.TrimSpace(m.Query) == "" {
		errs = append(errs, field.Required(p.Child("query"), ""))
	}
	errs = append(errs, atLeast(p.Child("timeout"), m.Timeout, 0)...)
	errs = append(errs, validateHeaders(m.Headers, p.Child("headers"))...)
	if rq := m.RangeQuery; rq != nil {
		rp := p.Child("rangeQuery")
		for _, f := range []struct{ name, value string }{{"start", rq.Start}, {"end", rq.End}, {"step", rq.Step}} {
			if strings.TrimSpace(f.value) == "" {
				errs = append(errs, field.Required(rp.Child(f.name), ""))
			}
		}
		errs = append(errs, duration(rp.Child("step"), DurationString(rq.Step))...)
	}
	return append(errs, validateAuthentication(m.Authentication, p.Child("authentication"))...)
}

func validateWeb(m *WebMetric, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, httpURL(p.Child("url"), m.URL)...)
	mp := p.Child("method")
	methods := []WebMetricMethod{WebMetricMethodGet, WebMetricMethodPost, WebMetricMethodPut}
	if m.Method != "" && !slices.Contains(methods, m.Method) {
		errs = append(errs, field.NotSupported(mp, m.Method, methods))
	}
	hasBody := m.Body != "" || present(m.JSONBody)
	if m.Body != "" && present(m.JSONBody) {
		errs = append(errs, field.Forbidden(p.Child("jsonBody"), "may not be set with body"))
	}
	switch {
	case !hasBody:
	case m.Method == "":
		errs = append(errs, field.Required(mp, "must be POST or PUT when body or jsonBody is set"))
	case m.Method == WebMetricMethodGet:
		errs = append(errs, field.Invalid(mp, m.Method, "must be POST or PUT when body or jsonBody is set"))
	}
	errs = append(errs, atLeast(p.Child("timeoutSeconds"), &m.TimeoutSeconds, 0)...)
	errs = append(errs, validateHeaders(m.Headers, p.Child("headers"))...)
	return append(errs, validateAuthentication(m.Authentication, p.Child("authentication"))...)
}

// httpURL checks a required http or https URL. A value with an
// {{args.NAME}} placeholder is only checked for being set.
func httpURL(p *field.Path, v string) field.ErrorList {
	if strings.TrimSpace(v) == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	if isPlaceholder(v) {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return field.ErrorList{field.Invalid(p, v, "must be an http or https URL")}
	}
	return nil
}

func validateHeaders(headers []WebMetricHeader, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, h := range headers {
		kp := p.Index(i).Child("key")
		if h.Key == "" {
			errs = append(errs, field.Required(kp, ""))
			continue
		}
		if msgs := validation.IsHTTPHeaderName(h.Key); len(msgs) > 0 && !isPlaceholder(h.Key) {
			errs = append(errs, field.Invalid(kp, h.Key, strings.Join(msgs, "; ")))
		}
	}
	return errs
}

func validateAuthentication(a *Authentication, p *field.Path) field.ErrorList {
	if a == nil {
		return nil
	}
	errs := atMostOne(p, []string{"sigv4", "oauth2", "basicAuth"}, []bool{a.Sigv4 != nil, a.OAuth2 != nil, a.BasicAuth != nil})
	if a.OAuth2 != nil && a.OAuth2.TokenURL == "" {
		errs = append(errs, field.Required(p.Child("oauth2", "tokenUrl"), ""))
	}
	return errs
}

// validateArgs checks template or run arguments.
func validateArgs(args []Argument, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, arg := range args {
		ap := p.Index(i)
		errs = append(errs, uniqueName(ap.Child("name"), arg.Name, names)...)
		vf := arg.ValueFrom
		if vf == nil {
			continue
		}
		vp := ap.Child("valueFrom")
		if arg.Value != nil {
			errs = append(errs, field.Forbidden(vp, "may not be set with value"))
		}
		errs = append(errs, exactlyOne(vp, []string{"secretKeyRef", "fieldRef"}, []bool{vf.SecretKeyRef != nil, vf.FieldRef != nil})...)
		if s := vf.SecretKeyRef; s != nil {
			if s.Name == "" {
				errs = append(errs, field.Required(vp.Child("secretKeyRef", "name"), ""))
			}
			if s.Key == "" {
				errs = append(errs, field.Required(vp.Child("secretKeyRef", "key"), ""))
			}
		}
		if vf.FieldRef != nil && vf.FieldRef.FieldPath == "" {
			errs = append(errs, field.Required(vp.Child("fieldRef", "fieldPath"), ""))
		}
	}
	return errs
}

// argRef matches an {{args.NAME}} placeholder, spaces allowed inside the
// braces as Argo Rollouts allows them.
var argRef = regexp.MustCompile(`\{\{\s*args\.([A-Za-z0-9_.-]+?)\s*\}\}`)

// undeclaredArgs reports metrics that use an argument the template does not
// declare: Argo Rollouts fails such a run when it starts, Sluice rejects the
// template up front.
func undeclaredArgs(s *AnalysisTemplateSpec, p *field.Path) field.ErrorList {
	declared := sets.New[string]()
	for _, a := range s.Args {
		declared.Insert(a.Name)
	}
	var errs field.ErrorList
	for i := range s.Metrics {
		data, err := json.Marshal(&s.Metrics[i])
		if err != nil {
			continue
		}
		used := sets.New[string]()
		for _, m := range argRef.FindAllStringSubmatch(string(data), -1) {
			used.Insert(m[1])
		}
		for _, name := range sets.List(used.Difference(declared)) {
			errs = append(errs, field.Invalid(p.Child("metrics").Index(i), "{{args."+name+"}}", "uses an argument not declared in spec.args"))
		}
	}
	return errs
}

func validateDryRun(d []DryRun, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, r := range d {
		if r.MetricName == "" {
			errs = append(errs, field.Required(p.Index(i).Child("metricName"), ""))
		}
	}
	return errs
}

func validateRetention(r []MeasurementRetention, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, m := range r {
		if m.MetricName == "" {
			errs = append(errs, field.Required(p.Index(i).Child("metricName"), ""))
		}
		errs = append(errs, atLeast(p.Index(i).Child("limit"), &m.Limit, 0)...)
	}
	return errs
}
