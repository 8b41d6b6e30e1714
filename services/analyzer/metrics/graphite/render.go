package graphite

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"math"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/pkg/spec"
)

// ErrNoValues is wrapped by the error of a response that holds no value to
// judge: no series, or a first series whose datapoints are missing or all
// null.
var ErrNoValues = errors.New("no values found")

// renderQuery turns a metric's query into the parameters of a render
// request, as Argo Rollouts does (spec.ParseGraphiteQuery) with format set
// to json. It also returns the query without its whitespace, as the
// measurement's query.
func renderQuery(query string) (url.Values, string, error) {
	params, q, err := spec.ParseGraphiteQuery(query)
	if err != nil {
		return nil, q, fmt.Errorf("query %q %w", q, err)
	}
	params.Set("format", "json")
	return params, q, nil
}

// renderURL is the render API URL under address (which may have a path,
// as a Graphite behind a prefix does) with params as its query string.
func renderURL(address string, params url.Values) (*url.URL, error) {
	base, err := url.Parse(address)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, errors.New("address is not an http or https URL")
	}
	u := *base
	u.Path = path.Join("/", base.Path, "render")
	u.RawPath, u.RawQuery, u.Fragment = "", params.Encode(), ""
	return &u, nil
}

// series is one series of a render API JSON response. Datapoints are
// [value, timestamp] pairs.
type series struct {
	Target     string            `json:"target"`
	Datapoints []json.RawMessage `json:"datapoints"`
}

// outcome is what a render response means for a measurement.
type outcome struct {
	// Values are the first series' non-null values, in time order: what
	// the conditions see as result.
	Values []float64
	// Target names the first series; Series counts them all.
	Target string
	Series int
}

// parseRender reads a render API JSON response. As in Argo Rollouts, only
// the first series counts and its null datapoints are left out. It returns
// an error wrapping ErrNoValues for a response without series or a first
// series without a non-null value, and a plain error for a body that is
// not the render API's JSON.
func parseRender(body []byte) (outcome, error) {
	var all []series
	if err := json.Unmarshal(body, &all); err != nil {
		return outcome{}, fmt.Errorf("response is not render API JSON: %s", jsonMessage(err))
	}
	if len(all) == 0 {
		return outcome{}, fmt.Errorf("%w: graphite returned no series", ErrNoValues)
	}
	first := all[0]
	out := outcome{Target: first.Target, Series: len(all), Values: []float64{}}
	for i, raw := range first.Datapoints {
		v, ok, err := datapoint(raw)
		if err != nil {
			return outcome{}, fmt.Errorf("series %q datapoint %d: %w", first.Target, i, err)
		}
		if ok {
			out.Values = append(out.Values, v)
		}
	}
	switch {
	case len(first.Datapoints) == 0:
		return outcome{}, fmt.Errorf("%w: series %q has no datapoints", ErrNoValues, first.Target)
	case len(out.Values) == 0:
		return outcome{}, fmt.Errorf("%w: the %d datapoints of series %q are all null", ErrNoValues, len(first.Datapoints), first.Target)
	}
	return out, nil
}

// datapoint reads one [value, timestamp] pair. ok is false for a null
// value. A value may be a number or a string holding one (Argo Rollouts
// accepts both); graphite-web writes infinities as 1e9999 and -1e9999,
// which become ±Inf. The timestamp is checked, not used.
func datapoint(raw json.RawMessage) (v float64, ok bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var pair []any
	if err := dec.Decode(&pair); err != nil {
		return 0, false, fmt.Errorf("not a [value, timestamp] pair: %s", jsonMessage(err))
	}
	if len(pair) != 2 {
		return 0, false, fmt.Errorf("not a [value, timestamp] pair: %s", raw)
	}
	switch ts := pair[1].(type) {
	case nil:
	case json.Number:
		if _, err := strconv.ParseFloat(string(ts), 64); err != nil {
			return 0, false, fmt.Errorf("timestamp %s is not a number", ts)
		}
	case string:
		if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
			return 0, false, fmt.Errorf("timestamp %q is not a number", ts)
		}
	default:
		return 0, false, fmt.Errorf("timestamp is a %s, not a number", jsonType(ts))
	}
	switch x := pair[0].(type) {
	case nil:
		return 0, false, nil
	case json.Number:
		return number(string(x))
	case string:
		return number(x)
	}
	return 0, false, fmt.Errorf("value is a %s, not a number", jsonType(pair[0]))
}

// number parses s, keeping an overflow as the infinity it stands for.
func number(s string) (float64, bool, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !(errors.Is(err, strconv.ErrRange) && math.IsInf(f, 0)) {
		return 0, false, fmt.Errorf("value %q is not a number", s)
	}
	return f, true, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case bool:
		return "boolean"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// jsonMessage is err's message without the Go type names that
// encoding/json puts in it.
func jsonMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("found a JSON %s where %s was expected", te.Value, expected(te.Type.String()))
	}
	return err.Error()
}

func expected(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.Contains(goType, "series"):
		return "a series object"
	case goType == "string":
		return "a string"
	}
	return goType
}

// valueText renders values as Argo Rollouts records a graphite
// measurement: "[10.000000,5.500000]".
func valueText(values []float64) string {
	parts := make([]string, len(values))
	for i, f := range values {
		parts[i] = fmt.Sprintf("%f", f)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// maxMessage bounds the part of an error response kept in a message.
const maxMessage = 300

var tags = regexp.MustCompile(`(?s)<[^>]*>`)

// errorText is what to say of an error response's body: its text without
// HTML markup, on one line. graphite-web answers a target it cannot
// evaluate with an HTML page holding a Python traceback; of that, only the
// traceback's last line, the exception, is kept.
func errorText(body []byte) string {
	text := html.UnescapeString(tags.ReplaceAllString(string(body), "\n"))
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			lines = append(lines, l)
		}
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "Traceback (most recent call last)") && i+1 < len(lines) {
			lines = lines[len(lines)-1:]
			break
		}
	}
	msg := strings.TrimSpace(strings.Join(lines, " "))
	if r := []rune(msg); len(r) > maxMessage {
		msg = string(r[:maxMessage]) + "…"
	}
	return msg
}
