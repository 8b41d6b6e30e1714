package spec

import (
	"encoding/json"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// AnalysisTemplate is a namespaced template of metrics to measure.
type AnalysisTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AnalysisTemplateSpec `json:"spec"`
}

// ClusterAnalysisTemplate is an AnalysisTemplate usable from every
// namespace. It is cluster-scoped: its metadata.namespace is ignored.
type ClusterAnalysisTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AnalysisTemplateSpec `json:"spec"`
}

// AnalysisTemplateSpec lists the metrics of a template and its arguments.
type AnalysisTemplateSpec struct {
	Metrics []Metric `json:"metrics"`
	// Args are referenced from metrics as {{args.NAME}}.
	Args []Argument `json:"args,omitempty"`
	// DryRun lists metrics whose failures do not fail the run.
	DryRun []DryRun `json:"dryRun,omitempty"`
	// MeasurementRetention bounds how many measurements a run keeps.
	MeasurementRetention []MeasurementRetention `json:"measurementRetention,omitempty"`
}

// Metric is one measurement to take, repeatedly, and how to judge it.
//
// Count and the limits are integers or, in a template, an {{args.NAME}}
// placeholder that becomes an integer when the run is created.
type Metric struct {
	Name string `json:"name"`
	// Interval between measurements. Unset means a single measurement,
	// unless Count asks for more.
	Interval DurationString `json:"interval,omitempty"`
	// InitialDelay before the first measurement.
	InitialDelay DurationString `json:"initialDelay,omitempty"`
	// Count is the number of measurements. Unset means 1 without an
	// Interval, and measuring until the run is terminated with one.
	Count *intstr.IntOrString `json:"count,omitempty"`
	// SuccessCondition and FailureCondition are expressions over `result`.
	// A measurement that meets neither (when both are set) is Inconclusive.
	SuccessCondition string `json:"successCondition,omitempty"`
	FailureCondition string `json:"failureCondition,omitempty"`
	// FailureLimit is how many failed measurements are tolerated; unset
	// means 0 and -1 means no limit.
	FailureLimit *intstr.IntOrString `json:"failureLimit,omitempty"`
	// InconclusiveLimit is how many inconclusive measurements are tolerated;
	// unset means 0.
	InconclusiveLimit *intstr.IntOrString `json:"inconclusiveLimit,omitempty"`
	// ConsecutiveErrorLimit is how many measurement errors in a row are
	// tolerated; unset means 4.
	ConsecutiveErrorLimit *intstr.IntOrString `json:"consecutiveErrorLimit,omitempty"`
	// ConsecutiveSuccessLimit, when above 0, makes the metric Successful
	// after that many successful measurements in a row.
	ConsecutiveSuccessLimit *intstr.IntOrString `json:"consecutiveSuccessLimit,omitempty"`
	// Provider holds exactly one metric provider.
	Provider MetricProvider `json:"provider"`
}

// MetricProvider holds exactly one provider, under Argo Rollouts' names.
// Sluice measures all of them except kayenta, wavefront and skywalking,
// which are kept as raw JSON so that Validate can name them.
type MetricProvider struct {
	Prometheus *PrometheusMetric `json:"prometheus,omitempty"`
	Web        *WebMetric        `json:"web,omitempty"`
	Datadog    *DatadogMetric    `json:"datadog,omitempty"`
	NewRelic   *NewRelicMetric   `json:"newRelic,omitempty"`
	Job        *JobMetric        `json:"job,omitempty"`
	CloudWatch *CloudWatchMetric `json:"cloudWatch,omitempty"`
	Graphite   *GraphiteMetric   `json:"graphite,omitempty"`
	Influxdb   *InfluxdbMetric   `json:"influxdb,omitempty"`
	// Plugin holds one metric plugin's configuration under the plugin's
	// name ("argoproj-labs/sample-prometheus"), as Argo Rollouts' metric
	// plugins take it.
	Plugin map[string]json.RawMessage `json:"plugin,omitempty"`

	Kayenta    json.RawMessage `json:"kayenta,omitempty"`
	Wavefront  json.RawMessage `json:"wavefront,omitempty"`
	SkyWalking json.RawMessage `json:"skywalking,omitempty"`
}

// DatadogMetric is a Datadog metrics query: v1 Query, or v2 Queries
// combined by Formula.
type DatadogMetric struct {
	// Interval is the time window queried, ending now (default 5m).
	Interval DurationString `json:"interval,omitempty"`
	// Query is a v1 metrics query.
	Query string `json:"query,omitempty"`
	// Queries maps names to v2 queries that Formula combines.
	Queries map[string]string `json:"queries,omitempty"`
	// Formula combines Queries by name (v2).
	Formula string `json:"formula,omitempty"`
	// ApiVersion is v1 or v2 (default v1).
	ApiVersion string `json:"apiVersion,omitempty"`
	// Aggregator reduces a v2 series to one value: avg, min, max, sum,
	// last, percentile, mean, l2norm or area.
	Aggregator string `json:"aggregator,omitempty"`
	// SecretRef names the Secret holding address, api-key and app-key
	// (default "datadog").
	SecretRef SecretRef `json:"secretRef,omitempty"`
	// RequestTimeout bounds one request to Datadog (default 10s).
	RequestTimeout DurationString `json:"requestTimeout,omitempty"`
}

// SecretRef names the Secret a provider reads its credentials from.
type SecretRef struct {
	Name string `json:"name,omitempty"`
	// Namespaced: in Argo Rollouts, the Secret is in the rollout's
	// namespace rather than the controller's. Sluice always reads the
	// rollout's namespace (docs/providers).
	Namespaced bool `json:"namespaced,omitempty"`
}

// NewRelicMetric is an NRQL query.
type NewRelicMetric struct {
	// Profile names the Secret holding the account's settings (default
	// "newrelic").
	Profile string `json:"profile,omitempty"`
	Query   string `json:"query"`
	// Timeout of the NRQL query, in seconds.
	Timeout *int64 `json:"timeout,omitempty"`
}

// JobMetric is a Kubernetes Job run as a measurement: it succeeds or fails
// with the Job.
type JobMetric struct {
	Metadata metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec     batchv1.JobSpec   `json:"spec"`
}

// GraphiteMetric is a Graphite render API query.
type GraphiteMetric struct {
	// Address is the base URL of Graphite's HTTP API.
	Address string `json:"address,omitempty"`
	Query   string `json:"query,omitempty"`
}

// InfluxdbMetric is a Flux query.
type InfluxdbMetric struct {
	// Profile names the Secret holding address, authToken and org (default
	// "influxdb").
	Profile string `json:"profile,omitempty"`
	Query   string `json:"query,omitempty"`
}

// CloudWatchMetric is a CloudWatch GetMetricData request over the last
// Interval (default 5m).
type CloudWatchMetric struct {
	Interval          DurationString              `json:"interval,omitempty"`
	MetricDataQueries []CloudWatchMetricDataQuery `json:"metricDataQueries"`
}

// CloudWatchMetricDataQuery is one MetricDataQuery.
type CloudWatchMetricDataQuery struct {
	Id         string                `json:"id,omitempty"`
	Expression *string               `json:"expression,omitempty"`
	Label      *string               `json:"label,omitempty"`
	MetricStat *CloudWatchMetricStat `json:"metricStat,omitempty"`
	Period     *intstr.IntOrString   `json:"period,omitempty"`
	ReturnData *bool                 `json:"returnData,omitempty"`
}

// CloudWatchMetricStat is a metric, its statistic and period.
type CloudWatchMetricStat struct {
	Metric CloudWatchMetricStatMetric `json:"metric,omitempty"`
	Period intstr.IntOrString         `json:"period,omitempty"`
	Stat   string                     `json:"stat,omitempty"`
	Unit   string                     `json:"unit,omitempty"`
}

// CloudWatchMetricStatMetric names a CloudWatch metric.
type CloudWatchMetricStatMetric struct {
	Dimensions []CloudWatchMetricStatMetricDimension `json:"dimensions,omitempty"`
	MetricName string                                `json:"metricName,omitempty"`
	Namespace  *string                               `json:"namespace,omitempty"`
}

// CloudWatchMetricStatMetricDimension is one dimension of a metric.
type CloudWatchMetricStatMetricDimension struct {
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
}

// PrometheusMetric is an instant or range PromQL query.
type PrometheusMetric struct {
	// Address is the base URL of the Prometheus HTTP API.
	Address string `json:"address,omitempty"`
	Query   string `json:"query,omitempty"`
	// Authentication holds at most one way to authenticate.
	Authentication *Authentication `json:"authentication,omitempty"`
	// Timeout of a query, in seconds.
	Timeout *int64 `json:"timeout,omitempty"`
	// Insecure skips TLS certificate verification.
	Insecure bool `json:"insecure,omitempty"`
	// CACert is a PEM bundle of CAs to trust.
	CACert  string            `json:"caCert,omitempty"`
	Headers []WebMetricHeader `json:"headers,omitempty"`
	// RangeQuery, when set, makes Query a range query.
	RangeQuery *PrometheusRangeQueryArgs `json:"rangeQuery,omitempty"`
}

// PrometheusRangeQueryArgs bounds a range query. Start and End are
// expressions (e.g. `now() - duration("5m")`); Step is a duration.
type PrometheusRangeQueryArgs struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
	Step  string `json:"step,omitempty"`
}

// Authentication holds at most one way for a provider to authenticate.
type Authentication struct {
	Sigv4     *Sigv4Config     `json:"sigv4,omitempty"`
	OAuth2    *OAuth2Config    `json:"oauth2,omitempty"`
	BasicAuth *BasicAuthConfig `json:"basicAuth,omitempty"`
}

// Sigv4Config signs requests for Amazon Managed Prometheus.
type Sigv4Config struct {
	Region  string `json:"region,omitempty"`
	Profile string `json:"profile,omitempty"`
	RoleARN string `json:"roleArn,omitempty"`
}

// OAuth2Config gets a bearer token with the client credentials flow.
type OAuth2Config struct {
	TokenURL     string   `json:"tokenUrl,omitempty"`
	ClientID     string   `json:"clientId,omitempty"`
	ClientSecret string   `json:"clientSecret,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
}

// BasicAuthConfig is HTTP basic authentication.
type BasicAuthConfig struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// WebMetric is an HTTP request whose JSON response is the measurement.
type WebMetric struct {
	// Method is GET, POST or PUT; unset means GET.
	Method WebMetricMethod `json:"method,omitempty"`
	URL    string          `json:"url"`
	// Headers are sent with the request.
	Headers []WebMetricHeader `json:"headers,omitempty"`
	// Body and JSONBody are alternatives, with POST or PUT only.
	Body string `json:"body,omitempty"`
	// TimeoutSeconds of the request; unset means 10.
	TimeoutSeconds int64 `json:"timeoutSeconds,omitempty"`
	// JSONPath selects the result from the response; unset means "{$}".
	JSONPath string `json:"jsonPath,omitempty"`
	// Insecure skips TLS certificate verification.
	Insecure bool            `json:"insecure,omitempty"`
	JSONBody json.RawMessage `json:"jsonBody,omitempty"`
	// Authentication holds at most one way to authenticate.
	Authentication *Authentication `json:"authentication,omitempty"`
}

// WebMetricMethod is the HTTP method of a web metric.
type WebMetricMethod string

// HTTP methods a web metric may use.
const (
	WebMetricMethodGet  WebMetricMethod = "GET"
	WebMetricMethodPost WebMetricMethod = "POST"
	WebMetricMethodPut  WebMetricMethod = "PUT"
)

// WebMetricHeader is one HTTP header.
type WebMetricHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Argument is a template argument: a literal Value, a value from ValueFrom,
// or neither, when the referencing rollout supplies it.
type Argument struct {
	Name      string     `json:"name"`
	Value     *string    `json:"value,omitempty"`
	ValueFrom *ValueFrom `json:"valueFrom,omitempty"`
}

// ValueFrom takes an argument's value from elsewhere. Exactly one field is
// set.
type ValueFrom struct {
	SecretKeyRef *SecretKeyRef `json:"secretKeyRef,omitempty"`
	FieldRef     *FieldRef     `json:"fieldRef,omitempty"`
}

// SecretKeyRef selects a key of a Secret in the run's namespace.
type SecretKeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// DryRun names a metric ("*" for all) whose failures do not fail the run.
type DryRun struct {
	MetricName string `json:"metricName"`
}

// MeasurementRetention keeps the last Limit measurements of a metric ("*"
// for all).
type MeasurementRetention struct {
	MetricName string `json:"metricName"`
	Limit      int32  `json:"limit"`
}

// AnalysisRun is one execution of analysis templates: its spec is the
// merged metrics with arguments resolved, its status the measurements.
type AnalysisRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AnalysisRunSpec   `json:"spec"`
	Status AnalysisRunStatus `json:"status,omitempty"`
}

// AnalysisRunSpec is what an analysis run measures.
type AnalysisRunSpec struct {
	Metrics []Metric   `json:"metrics"`
	Args    []Argument `json:"args,omitempty"`
	// Terminate stops the run early; the measurements so far decide it.
	Terminate            bool                   `json:"terminate,omitempty"`
	DryRun               []DryRun               `json:"dryRun,omitempty"`
	MeasurementRetention []MeasurementRetention `json:"measurementRetention,omitempty"`
}

// AnalysisPhase is the phase of a run, a metric or a measurement.
type AnalysisPhase string

// Analysis phases. Successful, Failed, Error and Inconclusive are final.
const (
	AnalysisPhasePending      AnalysisPhase = "Pending"
	AnalysisPhaseRunning      AnalysisPhase = "Running"
	AnalysisPhaseSuccessful   AnalysisPhase = "Successful"
	AnalysisPhaseFailed       AnalysisPhase = "Failed"
	AnalysisPhaseError        AnalysisPhase = "Error"
	AnalysisPhaseInconclusive AnalysisPhase = "Inconclusive"
)

// Completed reports whether p is final.
func (p AnalysisPhase) Completed() bool {
	switch p {
	case AnalysisPhaseSuccessful, AnalysisPhaseFailed, AnalysisPhaseError, AnalysisPhaseInconclusive:
		return true
	}
	return false
}

// AnalysisRunStatus is the progress and verdict of a run.
type AnalysisRunStatus struct {
	Phase         AnalysisPhase  `json:"phase,omitempty"`
	Message       string         `json:"message,omitempty"`
	MetricResults []MetricResult `json:"metricResults,omitempty"`
	StartedAt     *metav1.Time   `json:"startedAt,omitempty"`
	// RunSummary counts metrics by phase.
	RunSummary RunSummary `json:"runSummary,omitempty"`
	// DryRunSummary counts dry-run metrics by phase.
	DryRunSummary *RunSummary `json:"dryRunSummary,omitempty"`
}

// RunSummary counts the metrics of a run by phase; Count is their number.
type RunSummary struct {
	Count        int32 `json:"count,omitempty"`
	Successful   int32 `json:"successful,omitempty"`
	Failed       int32 `json:"failed,omitempty"`
	Inconclusive int32 `json:"inconclusive,omitempty"`
	Error        int32 `json:"error,omitempty"`
}

// MetricResult is the state of one metric in a run: its latest
// measurements and counters over all of them.
type MetricResult struct {
	Name         string        `json:"name"`
	Phase        AnalysisPhase `json:"phase"`
	Measurements []Measurement `json:"measurements,omitempty"`
	Message      string        `json:"message,omitempty"`
	// Count is Successful + Failed + Inconclusive: measurements without error.
	Count              int32 `json:"count,omitempty"`
	Successful         int32 `json:"successful,omitempty"`
	Failed             int32 `json:"failed,omitempty"`
	Inconclusive       int32 `json:"inconclusive,omitempty"`
	Error              int32 `json:"error,omitempty"`
	ConsecutiveError   int32 `json:"consecutiveError,omitempty"`
	ConsecutiveSuccess int32 `json:"consecutiveSuccess,omitempty"`
	DryRun             bool  `json:"dryRun,omitempty"`
	// Metadata is provider data about the metric, such as the resolved query.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Measurement is one measured value and its verdict.
type Measurement struct {
	Phase      AnalysisPhase `json:"phase"`
	Message    string        `json:"message,omitempty"`
	StartedAt  *metav1.Time  `json:"startedAt,omitempty"`
	FinishedAt *metav1.Time  `json:"finishedAt,omitempty"`
	Value      string        `json:"value,omitempty"`
	// Metadata is provider data about the measurement.
	Metadata map[string]string `json:"metadata,omitempty"`
	// ResumeAt is when an asynchronous measurement is checked again.
	ResumeAt *metav1.Time `json:"resumeAt,omitempty"`
}
