package promserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Defaults applied by Config.Defaults.
const (
	// DefaultListen is where `sluice dev` serves the Prometheus HTTP API.
	DefaultListen = "127.0.0.1:9090"
	// DefaultScrapeInterval is short because analysis intervals in demos
	// are short: a rate over 30s needs several samples in 30s.
	DefaultScrapeInterval = time.Second
	// DefaultRetention keeps a day of development data.
	DefaultRetention = 24 * time.Hour
	// DefaultJob is the job label of a target whose labels name none.
	DefaultJob = "sluice"
)

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("invalid prometheus server configuration")

// Config configures the embedded Prometheus. Call Defaults, then Validate
// (Start does both on a copy).
type Config struct {
	// Listen is the TCP address of the HTTP API (default DefaultListen).
	// Port 0 picks a free port; Server.Addr tells which.
	Listen string
	// DataDir holds the tsdb (required; created if missing). A Server
	// started later on the same DataDir serves the data of the earlier
	// one, within Retention. Only one Server may use a DataDir at a time.
	DataDir string
	// ScrapeInterval is how often every target is scraped and how often
	// Targets is asked again (default DefaultScrapeInterval). A scrape
	// times out after the interval or 10s, whichever is shorter.
	ScrapeInterval time.Duration
	// Retention is how long samples are kept (default DefaultRetention).
	// The tsdb deletes whole 2h blocks, so data may outlive it by a block.
	Retention time.Duration
	// Targets returns the endpoints to scrape now. It is called at Start
	// and then every ScrapeInterval, so targets come and go with the
	// processes behind them; it must be safe to call from another
	// goroutine and should return quickly. Nil means no targets.
	Targets func() []Target
	// Logger receives scrape and storage problems (default slog.Default()).
	Logger *slog.Logger
}

// Target is one metrics endpoint.
type Target struct {
	// URL is the full scrape URL, e.g. http://127.0.0.1:8080/metrics
	// (http or https; the path defaults to /metrics; query parameters are
	// sent with every scrape, the first value of each).
	URL string
	// Labels are attached to every series scraped from the target and to
	// its up and scrape_* series, e.g. job, namespace, rollout, role.
	// job defaults to DefaultJob and instance to the URL's host:port.
	// Names beginning with "__" are reserved. A label the target exposes
	// itself wins over one of these (Prometheus' honor_labels: true), so
	// the proxy's own role label is kept as it exports it.
	Labels map[string]string
}

// Defaults fills in the zero fields.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.ScrapeInterval == 0 {
		c.ScrapeInterval = DefaultScrapeInterval
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem at once, each wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		bad("Listen %q: want host:port: %v", c.Listen, err)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		bad("Listen %q: want a numeric port", c.Listen)
	}
	if c.DataDir == "" {
		bad("DataDir is required")
	}
	// Prometheus stores scrape intervals in milliseconds.
	if c.ScrapeInterval < time.Millisecond {
		bad("ScrapeInterval %s must be at least 1ms", c.ScrapeInterval)
	}
	if c.Retention < time.Millisecond {
		bad("Retention %s must be at least 1ms", c.Retention)
	}
	return errors.Join(errs...)
}

// labelSet is t as a Prometheus service discovery target: __address__,
// __scheme__, __metrics_path__ and __param_* from the URL, then Labels.
func (t Target) labelSet() (model.LabelSet, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", t.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("target %q: scheme must be http or https", t.URL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("target %q: no host", t.URL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("target %q: credentials in the URL are not supported", t.URL)
	}
	path := u.Path // the scraper escapes it again
	if path == "" {
		path = "/metrics"
	}
	ls := model.LabelSet{
		model.AddressLabel:     model.LabelValue(u.Host),
		model.SchemeLabel:      model.LabelValue(u.Scheme),
		model.MetricsPathLabel: model.LabelValue(path),
	}
	for name, values := range u.Query() {
		// A target label holds one value per parameter, as in Prometheus.
		ls[model.ParamLabelPrefix+model.LabelName(name)] = model.LabelValue(values[0])
	}
	for name, value := range t.Labels {
		if strings.HasPrefix(name, model.ReservedLabelPrefix) {
			return nil, fmt.Errorf("target %q: label %q: names beginning with %q are reserved", t.URL, name, model.ReservedLabelPrefix)
		}
		if !model.UTF8Validation.IsValidLabelName(name) {
			return nil, fmt.Errorf("target %q: invalid label name %q", t.URL, name)
		}
		if !model.LabelValue(value).IsValid() {
			return nil, fmt.Errorf("target %q: label %q: value is not valid UTF-8", t.URL, name)
		}
		ls[model.LabelName(name)] = model.LabelValue(value)
	}
	return ls, nil
}
