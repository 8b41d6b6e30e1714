// Package cloudwatch measures metrics with Amazon CloudWatch's
// GetMetricData (github.com/aws/aws-sdk-go-v2/service/cloudwatch), as Argo
// Rollouts' cloudWatch provider does, so its AnalysisTemplates work
// unchanged.
//
// One measurement is one GetMetricData request over [now-interval, now]
// (interval defaults to 5m) with the metric's metricDataQueries, following
// NextToken until the last page, all within Timeout. Credentials and the
// region come from the standard AWS chain (config.LoadDefaultConfig:
// environment, shared config and credentials files, web identity / IRSA,
// EKS Pod Identity, ECS and EC2 metadata), loaded once and cached; the
// endpoint can be moved with AWS_ENDPOINT_URL_CLOUDWATCH or
// AWS_ENDPOINT_URL.
//
// What the conditions see as `result` is what Argo Rollouts gives them: the
// GetMetricData MetricDataResults ([]types.MetricDataResult: Id, Label,
// Timestamps, Values, StatusCode, Messages), so `result[0].Values` is the
// first returned query's datapoints, newest first. The measurement's value
// is Argo's too: every result's Values, "[[0.1 0.2] [3]]".
//
// Unlike Argo Rollouts, a result CloudWatch did not complete (StatusCode
// InternalError, Forbidden, or PartialData after the last page) and a
// returned query with no datapoint are Error measurements: a condition such
// as `all(result[0].Values, {# < 0.01})` is true on an empty list, so a
// misspelt metric name would otherwise promote the canary.
//
// The SDK does not retry (aws.NopRetryer): a throttled or failed request is
// an Error measurement at once and the metric's consecutiveErrorLimit
// decides, as for every provider.
package cloudwatch

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/smithy-go"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/transport"
)

// Type is the provider's name in a metric's provider block.
const Type = "cloudWatch"

const (
	// DefaultTimeout bounds one measurement, every page of it and the
	// credential lookup included, unless Config.Timeout says otherwise.
	// Argo Rollouts sets none.
	DefaultTimeout = 30 * time.Second
	// DefaultInterval is the window queried when the metric sets no
	// interval, as in Argo Rollouts.
	DefaultInterval = 5 * time.Minute
	// MaxPages bounds the pages of one measurement, so that a NextToken
	// that never ends is an Error and not a loop until the timeout.
	MaxPages = 100
	// MetadataMessages is the measurement metadata key of CloudWatch's
	// messages, the key Argo Rollouts uses.
	MetadataMessages = "messages"
	// maxMessage bounds the length of a message taken from an AWS error.
	maxMessage = 512
)

// Config configures the provider. The zero value works: the AWS chain,
// DefaultTimeout, the wall clock.
type Config struct {
	// AWS, when set, is used instead of the configuration
	// config.LoadDefaultConfig finds (tests, or a program embedding the
	// analyzer).
	AWS *aws.Config
	// Timeout bounds one measurement (default DefaultTimeout).
	Timeout time.Duration
	// Now is the clock the query window ends at; nil means time.Now.
	Now func() time.Time
}

// Validate reports a Config that cannot be used.
func (c Config) Validate() error {
	if c.Timeout < 0 {
		return errors.New("cloudwatch: timeout must not be negative")
	}
	return nil
}

// Provider is the cloudWatch metrics.Provider. Safe for concurrent use.
type Provider struct {
	cfg Config

	mu     sync.Mutex
	client *cloudwatch.Client
	region string
	creds  aws.CredentialsProvider
}

var _ metrics.Provider = (*Provider)(nil)

// New returns a provider with cfg, or cfg's Validate error. It reads no
// AWS configuration yet: the first measurement does.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Provider{cfg: cfg}, nil
}

// Type returns "cloudWatch".
func (p *Provider) Type() string { return Type }

// Timeout is the provider's timeout: a cloudWatch block has no timeout
// field.
func (p *Provider) Timeout(spec.Metric) time.Duration { return p.cfg.Timeout }

// Measure runs the metric's GetMetricData once, following its pages. Every
// failure to get a judgeable result is an Error measurement; its message
// never holds a credential.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	m := metrics.Measurement{Provider: Type, StartedAt: p.cfg.Now()}
	cw := req.Metric.Provider.CloudWatch
	if cw == nil {
		return p.fail(m, "metric %q has no cloudWatch provider", req.Metric.Name)
	}
	interval := DefaultInterval
	if cw.Interval != "" {
		d, err := cw.Interval.Duration()
		if err != nil {
			return p.fail(m, "interval: %v", err)
		}
		if d <= 0 {
			return p.fail(m, "interval must be greater than 0")
		}
		interval = d
	}
	qs, err := queries(cw.MetricDataQueries)
	if err != nil {
		return p.fail(m, "%v", err)
	}
	m.Query = describeQueries(qs)

	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	client, creds, err := p.connect(ctx)
	if err != nil {
		return p.fail(m, "%s", p.timedOut(ctx, trim(err.Error())))
	}
	// The secret key cannot reach a message (SigV4 sends only a signature
	// derived from it), but a session token travels in a header: hide
	// both should an error ever echo them.
	secrets := []string{creds.SecretAccessKey, creds.SessionToken}

	end := p.cfg.Now()
	start := end.Add(-interval)
	input := &cloudwatch.GetMetricDataInput{StartTime: &start, EndTime: &end, MetricDataQueries: qs}
	var rs results
	seen := map[string]bool{}
	for page := 1; ; page++ {
		out, err := client.GetMetricData(ctx, input)
		if err != nil {
			return p.fail(m, "%s", p.describe(ctx, err)).Redact(secrets...)
		}
		rs.add(out)
		next := aws.ToString(out.NextToken)
		if next == "" {
			break
		}
		if seen[next] {
			return p.fail(m, "GetMetricData repeated a NextToken on page %d", page).Redact(secrets...)
		}
		if page == MaxPages {
			return p.fail(m, "GetMetricData returned more than %d pages; narrow the interval or the queries", MaxPages).Redact(secrets...)
		}
		seen[next] = true
		input.NextToken = &next
	}

	if msg := formatMessages(rs.messages); msg != "" {
		m.Metadata = map[string]string{MetadataMessages: msg}
	}
	m.Value = value(rs.list)
	if why := problem(rs.list); why != "" {
		return p.fail(m, "%s", why).Redact(secrets...)
	}
	m.Result = rs.list
	m.FinishedAt = p.cfg.Now()
	return m.Redact(secrets...)
}

// connect returns the CloudWatch client, built once, and the current
// credentials. Credentials are retrieved first, so that a missing or
// refused credential is reported as such (the provider caches them until
// they expire).
func (p *Provider) connect(ctx context.Context) (*cloudwatch.Client, aws.Credentials, error) {
	client, region, provider, err := p.load(ctx)
	if err != nil {
		return nil, aws.Credentials{}, err
	}
	if region == "" {
		return nil, aws.Credentials{}, errors.New("no AWS region: set AWS_REGION (or region in the AWS config profile) for the analyzer")
	}
	if provider == nil {
		return nil, aws.Credentials{}, errors.New("no AWS credentials provider")
	}
	creds, err := provider.Retrieve(ctx)
	if err != nil {
		return nil, aws.Credentials{}, fmt.Errorf("AWS credentials from the default chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, IRSA or EKS Pod Identity, instance metadata): %w", err)
	}
	return client, creds, nil
}

func (p *Provider) load(ctx context.Context) (*cloudwatch.Client, string, aws.CredentialsProvider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		return p.client, p.region, p.creds, nil
	}
	// The SDK's own HTTP client, not package transport's: AWS_CA_BUNDLE
	// (a private CA for a VPC endpoint or a TLS-inspecting proxy) can only
	// be applied to it (LoadDefaultConfig refuses any other client when
	// the variable is set). It takes proxies from HTTPS_PROXY and NO_PROXY
	// as transport does, and serves the credential providers (STS,
	// metadata) too.
	var cfg aws.Config
	if p.cfg.AWS != nil {
		cfg = p.cfg.AWS.Copy()
	} else {
		var err error
		cfg, err = config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, "", nil, fmt.Errorf("AWS configuration: %w", err)
		}
	}
	p.client = cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) {
		// One attempt, whatever AWS_MAX_ATTEMPTS says: the metric's
		// limits retry.
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 0
	})
	p.region, p.creds = cfg.Region, cfg.Credentials
	return p.client, p.region, p.creds, nil
}

// describe renders an error of GetMetricData: CloudWatch's own code and
// message for an API error, the failed call without a query string
// otherwise.
func (p *Provider) describe(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("CloudWatch GetMetricData timed out after %s", p.cfg.Timeout)
	}
	var msg string
	var apiErr smithy.APIError
	var respErr *awshttp.ResponseError
	var urlErr *url.Error
	switch {
	case errors.As(err, &apiErr):
		msg = fmt.Sprintf("CloudWatch GetMetricData: %s: %s", apiErr.ErrorCode(), apiErr.ErrorMessage())
		if errors.As(err, &respErr) {
			msg = fmt.Sprintf("CloudWatch GetMetricData: HTTP %d %s: %s", respErr.HTTPStatusCode(), apiErr.ErrorCode(), apiErr.ErrorMessage())
		}
	case errors.As(err, &urlErr):
		msg = "CloudWatch GetMetricData: " + transport.Describe(urlErr)
	default:
		msg = err.Error()
	}
	return p.timedOut(ctx, trim(msg))
}

// timedOut prefixes msg with the timeout when ctx's deadline has passed
// (not when the analyzer cancelled the measurement: it is shutting down).
func (p *Provider) timedOut(ctx context.Context, msg string) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("timed out after %s: %s", p.cfg.Timeout, msg)
	}
	return msg
}

func trim(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func (p *Provider) fail(m metrics.Measurement, format string, args ...any) metrics.Measurement {
	m.Phase = spec.AnalysisPhaseError
	m.Message = fmt.Sprintf(format, args...)
	m.FinishedAt = p.cfg.Now()
	return m
}
