package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// DurationString is a Go duration string such as "30s", "5m" or "1h30m",
// as Argo Rollouts writes metric intervals and delays.
type DurationString string

// Duration parses d. Unlike a pause duration, a bare number is an error
// ("30" has no unit), as it is in Argo Rollouts. So is an empty string: a
// caller checks for "unset" first. Negative durations are errors.
func (d DurationString) Duration() (time.Duration, error) {
	s := string(d)
	if s == "" {
		return 0, fmt.Errorf("empty duration; want a number with a unit, such as 30s, 5m or 1h")
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil && s != "0" {
		return 0, fmt.Errorf("duration %q has no unit; want e.g. %ss", s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q; want a number with a unit, such as 30s, 5m or 1h", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return v, nil
}

// UnmarshalJSON accepts a JSON string or number. A number is kept as
// written, so that Validate can report its missing unit with the field's
// path instead of decoding failing.
func (d *DurationString) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil && n != "" {
		*d = DurationString(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*d = DurationString(s)
	return nil
}

// Indefinite reports whether the pause waits for a promote rather than for
// a duration.
func (p RolloutPause) Indefinite() bool {
	return p.Duration == nil
}

// Length returns how long the pause lasts. An integer, or a string holding
// only an integer, is a number of seconds; any other string is a Go
// duration ("30s", "5m", "1h"). An indefinite pause has length 0. It returns
// an error for a negative or unparsable duration.
func (p RolloutPause) Length() (time.Duration, error) {
	if p.Duration == nil {
		return 0, nil
	}
	if p.Duration.Type == intstr.Int {
		if p.Duration.IntVal < 0 {
			return 0, fmt.Errorf("duration %d is negative", p.Duration.IntVal)
		}
		return time.Duration(p.Duration.IntVal) * time.Second, nil
	}
	s := strings.TrimSpace(p.Duration.StrVal)
	if n, err := strconv.ParseInt(s, 10, 32); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("duration %q is negative", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q; want seconds (30) or a number with a unit (30s, 5m, 1h)", p.Duration.StrVal)
	}
	if v < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return v, nil
}

// isPlaceholder reports whether s contains an {{args.NAME}}-style
// placeholder, whose value is only known when an analysis run is created.
func isPlaceholder(s string) bool {
	return strings.Contains(s, "{{")
}
