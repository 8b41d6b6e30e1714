package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
)

// ErrInvalidOptions is wrapped by every error about a service's options.
var ErrInvalidOptions = errors.New("invalid service options")

// DecodeOptions decodes cfg.Options (nil or empty: {}) into v, a pointer
// to a struct whose json tags are the option names. An option that v has
// no field for fails, naming it and the accepted ones (STYLE: unknown
// configuration is never guessed); so does a value of the wrong type,
// naming the option but never its value, which may be a secret. Then,
// when v has a Validate method, it runs it (a Validate may fill in
// defaults), and when v embeds IgnoredOptions, it logs those that are
// set. Errors wrap ErrInvalidOptions; the caller names the service.
func DecodeOptions(cfg ServiceConfig, v any) error {
	if err := decodeOptions(cfg, v); err != nil {
		return err
	}
	if val, ok := v.(interface{ Validate() error }); ok {
		if err := val.Validate(); err != nil {
			if errors.Is(err, ErrInvalidOptions) {
				return err
			}
			return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
	}
	if ig, ok := v.(interface{ ignoredOptions() IgnoredOptions }); ok {
		ig.ignoredOptions().Log(cfg)
	}
	return nil
}

func decodeOptions(cfg ServiceConfig, v any) error {
	raw := bytes.TrimSpace(cfg.Options)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return fmt.Errorf("%w: want a mapping of option names to values", ErrInvalidOptions)
	}
	accepted := jsonNames(reflect.TypeOf(v).Elem())
	var unknown []string
	for k := range keys {
		if !slices.Contains(accepted, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("%w: unknown option %s (a %s service takes %s)",
			ErrInvalidOptions, quoteAll(unknown), cfg.Type, strings.Join(accepted, ", "))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, describeDecodeError(reflect.TypeOf(v).Elem(), err))
	}
	return nil
}

// describeDecodeError says what is wrong with an option without quoting
// any value: encoding/json's own messages can include one.
func describeDecodeError(t reflect.Type, err error) string {
	var typeErr *json.UnmarshalTypeError
	var optErr *OptionError
	switch {
	case errors.As(err, &optErr):
		return optErr.Error()
	case errors.As(err, &typeErr):
		return fmt.Sprintf("option %q: want %s", optionPath(t, typeErr.Field), kindName(typeErr.Type))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown option " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return "options are not valid JSON"
	}
}

// optionPath is encoding/json's path to a field of t without the Go
// names of embedded structs (HTTPOptions.insecureSkipVerify is the
// option insecureSkipVerify).
func optionPath(t reflect.Type, path string) string {
	var kept []string
	for _, part := range strings.Split(path, ".") {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			kept = append(kept, part)
			continue
		}
		f, ok := t.FieldByName(part)
		if ok && f.Anonymous {
			t = f.Type
			continue
		}
		kept = append(kept, part)
		if f, ok := fieldByJSONName(t, part); ok {
			t = f.Type
		}
	}
	return strings.Join(kept, ".")
}

// fieldByJSONName finds the field of struct t, embedded ones' too,
// whose json name is name.
func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	return t.FieldByNameFunc(func(n string) bool {
		f, _ := t.FieldByName(n)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		return tag == name || (tag == "" && strings.EqualFold(n, name))
	})
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32:
		return "a whole number"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	default:
		return t.String()
	}
}

// ParseHTTPURL parses the value of option as an absolute http or https
// URL. Its error is an *OptionError: it names the option, never the
// value, since a webhook's URL is often its secret.
func ParseHTTPURL(option, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &OptionError{Option: option, Want: "an absolute http or https URL"}
	}
	return u, nil
}

// OptionError is an option's value that a custom decoder refused; it
// names the option and says what is wanted, never the value.
type OptionError struct {
	Option, Want string
}

func (e *OptionError) Error() string { return fmt.Sprintf("option %q: want %s", e.Option, e.Want) }

// jsonNames lists the json names of t's fields, embedded structs' too.
func jsonNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			names = append(names, jsonNames(f.Type)...)
		case !f.IsExported():
		case name == "":
			names = append(names, f.Name)
		default:
			names = append(names, name)
		}
	}
	return names
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

// HTTPOptions are the options of a service that calls its vendor over
// HTTP, beside its own. A sender embeds it in its options and decodes
// them with DecodeHTTPOptions.
type HTTPOptions struct {
	// InsecureSkipVerify skips verifying the vendor's TLS certificate
	// (for a proxy in the middle).
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

func (o HTTPOptions) httpOptions() HTTPOptions { return o }

// DecodeHTTPOptions is DecodeOptions for options that embed HTTPOptions;
// it returns the client to call the vendor with (ServiceConfig.Client,
// with their insecureSkipVerify).
func DecodeHTTPOptions(cfg ServiceConfig, v interface{ httpOptions() HTTPOptions }) (*http.Client, error) {
	if err := DecodeOptions(cfg, v); err != nil {
		return nil, err
	}
	return cfg.Client(v.httpOptions().InsecureSkipVerify)
}

// Client returns the HTTP client to call the vendor with: cfg.HTTPClient
// (http.DefaultClient when nil) or, with insecureSkipVerify, a copy of it
// whose transport does not verify the server's certificate.
func (cfg ServiceConfig) Client(insecureSkipVerify bool) (*http.Client, error) {
	c := cfg.HTTPClient
	if c == nil {
		c = http.DefaultClient
	}
	if !insecureSkipVerify {
		return c, nil
	}
	var t *http.Transport
	switch rt := c.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		t = rt.Clone()
	default:
		return nil, fmt.Errorf("%w: insecureSkipVerify needs an *http.Transport, the client has a %T", ErrInvalidOptions, rt)
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.InsecureSkipVerify = true
	cp := *c
	cp.Transport = t
	return &cp, nil
}

// SendTimeout bounds one delivery attempt when the caller's context has
// no earlier deadline.
const SendTimeout = 30 * time.Second

// Do sends req with client under ctx (bounded by SendTimeout). A
// transport error names the service, the method and the host only: a
// webhook's URL path and query are often its secret (Teams, Slack,
// signed workflow URLs), and net/http's errors quote the whole URL.
// Such an error is worth retrying. The caller closes the response's
// body and classifies its status (CheckResponse).
func Do(ctx context.Context, client *http.Client, service string, req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, SendTimeout)
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		cancel()
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("%s: %s %s: %w", service, req.Method, req.URL.Host, err)
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

// cancelOnClose ends a response's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	defer c.cancel()
	return c.ReadCloser.Close()
}

// SafeURL is u as logs and errors may show it: scheme and host, without
// user info, path or query.
func SafeURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// IgnoredOptions are notifications-engine options an Argo configuration
// may carry and Sluice accepts without using them, so that such a
// configuration still loads: the notifier's delivery retries every
// service (backoff, Retry-After, dead letter after the last attempt) and
// its HTTP client pools connections itself. A sender embeds it in its
// options; DecodeOptions logs the ones set.
type IgnoredOptions struct {
	RetryWaitMin        json.RawMessage `json:"retryWaitMin,omitempty"`
	RetryWaitMax        json.RawMessage `json:"retryWaitMax,omitempty"`
	RetryMax            json.RawMessage `json:"retryMax,omitempty"`
	MaxIdleConns        json.RawMessage `json:"maxIdleConns,omitempty"`
	MaxIdleConnsPerHost json.RawMessage `json:"maxIdleConnsPerHost,omitempty"`
	MaxConnsPerHost     json.RawMessage `json:"maxConnsPerHost,omitempty"`
	IdleConnTimeout     json.RawMessage `json:"idleConnTimeout,omitempty"`
}

func (o IgnoredOptions) ignoredOptions() IgnoredOptions { return o }

// Set lists the ignored options that are set.
func (o IgnoredOptions) Set() []string {
	var set []string
	v := reflect.ValueOf(o)
	for i := range v.NumField() {
		if len(v.Field(i).Bytes()) > 0 {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
			set = append(set, name)
		}
	}
	return set
}

// Log tells, at info level, which of them cfg sets and that Sluice
// does not use them.
func (o IgnoredOptions) Log(cfg ServiceConfig) {
	if set := o.Set(); len(set) > 0 && cfg.Logger != nil {
		cfg.Logger.Info("notification service options not used by Sluice: the notifier's delivery retries and pools connections itself",
			"service", cfg.Name, "options", set)
	}
}
